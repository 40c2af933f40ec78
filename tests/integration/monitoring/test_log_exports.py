"""CloudWatch Logs exports with boto3: a real postgres error, made through psycopg, read back through `logs`."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

GROUP = "/aws/rds/cluster/default/postgresql"
INSTANCE = "default-instance-1"


def _poll(check: Any, deadline: float = 90) -> Any:
    """``check()`` until it returns something true, for up to ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found or time.monotonic() > end:
            return found
        time.sleep(0.5)


def test_postgres_errors_reach_cloudwatch_logs(borealis: BorealisProcess) -> None:
    rds, logs = borealis.client("rds"), borealis.client("logs")
    with pytest.raises(ClientError) as err:
        logs.get_log_events(logGroupName=GROUP, logStreamName=INSTANCE)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"  # not exported yet

    changed = rds.modify_db_cluster(
        DBClusterIdentifier="default", CloudwatchLogsExportConfiguration={"EnableLogTypes": ["postgresql"]}
    )["DBCluster"]
    try:
        assert changed["EnabledCloudwatchLogsExports"] == ["postgresql"]
        groups = logs.describe_log_groups(logGroupNamePrefix="/aws/rds/cluster/default/")["logGroups"]
        assert [g["logGroupName"] for g in groups] == [GROUP] and groups[0]["storedBytes"] > 0
        assert groups[0]["logGroupArn"].endswith(f":log-group:{GROUP}")
        streams = logs.describe_log_streams(logGroupName=GROUP)["logStreams"]
        assert INSTANCE in [s["logStreamName"] for s in streams]
        assert all(s["lastEventTimestamp"] >= s["firstEventTimestamp"] for s in streams)

        marker = f"marker_{uuid.uuid4().hex[:12]}"
        started = int(time.time() * 1000) - 1000
        with borealis.master_connect() as conn, pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(f"select 1/0 as {marker}")

        def statement() -> list[dict[str, Any]]:
            found = logs.filter_log_events(logGroupName=GROUP, filterPattern=f'"{marker}"', startTime=started)
            return list(found["events"])

        (event,) = _poll(statement)
        assert event["logStreamName"] == INSTANCE and f"select 1/0 as {marker}" in event["message"]
        assert abs(event["timestamp"] - started) < 120_000
        errors = logs.filter_log_events(
            logGroupName=GROUP,
            logStreamNames=[INSTANCE],
            filterPattern='ERROR "division by zero"',
            startTime=event["timestamp"],
        )["events"]
        assert any("ERROR:  division by zero" in e["message"] for e in errors)

        # The newest events (the default: from the tail), then backwards until the token comes back unchanged.
        tail = logs.get_log_events(logGroupName=GROUP, logStreamName=INSTANCE, limit=5)
        assert 1 <= len(tail["events"]) <= 5
        seen, token, pages = [e["message"] for e in tail["events"]], tail["nextBackwardToken"], 0
        while pages < 1000:
            page = logs.get_log_events(logGroupName=GROUP, logStreamName=INSTANCE, nextToken=token, limit=20)
            seen = [e["message"] for e in page["events"]] + seen
            if page["nextBackwardToken"] == token:
                break
            token, pages = page["nextBackwardToken"], pages + 1
        assert page["events"] == [] and any(marker in m for m in seen)

        # From the head, forwards, with boto3's paginator-free loop as the CLI does it.
        head = logs.get_log_events(logGroupName=GROUP, logStreamName=INSTANCE, startFromHead=True, limit=20)
        forward, token, pages = [e["message"] for e in head["events"]], head["nextForwardToken"], 0
        while pages < 1000:
            page = logs.get_log_events(logGroupName=GROUP, logStreamName=INSTANCE, nextToken=token, limit=20)
            forward += [e["message"] for e in page["events"]]
            if page["nextForwardToken"] == token:
                break
            token, pages = page["nextForwardToken"], pages + 1
        assert forward[: len(seen)] == seen[: len(forward)] and any(marker in m for m in forward)

        # FilterLogEvents pages with its paginator; every page at most the limit.
        paginator = logs.get_paginator("filter_log_events")
        paged = [
            e for p in paginator.paginate(logGroupName=GROUP, filterPattern="LOG", PaginationConfig={"PageSize": 3})
            for e in p["events"]
        ]  # fmt: skip
        assert paged and all("LOG" in e["message"] for e in paged)
        assert len({e["eventId"] for e in paged}) == len(paged)

        with pytest.raises(ClientError) as err:
            logs.get_log_events(logGroupName=GROUP, logStreamName="no-such-instance")
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
        with pytest.raises(ClientError) as err:
            logs.filter_log_events(logGroupName=GROUP, filterPattern='{ $.level = "ERROR" }')
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    finally:
        rds.modify_db_cluster(
            DBClusterIdentifier="default", CloudwatchLogsExportConfiguration={"DisableLogTypes": ["postgresql"]}
        )
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/rds/cluster/default/")["logGroups"] == []
