"""An alarm on the default cluster's DatabaseConnections goes to ALARM while real connections are open, and back
to OK once they are closed: the scaler's sampling, the metric store and the periodic evaluation together."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import psycopg

from tests.integration.conftest import BorealisProcess

INSTANCE = "default-instance-1"
EXTRA = 8  # connections opened on top of whatever the instance has
DIMS = [{"Name": "DBInstanceIdentifier", "Value": INSTANCE}]


def _wait_for(cloudwatch: Any, name: str, state: str, deadline: float = 120) -> str:
    end = time.monotonic() + deadline
    seen = ""
    while time.monotonic() < end:
        seen = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]
        if seen == state:
            break
        time.sleep(1)
    return seen


def _recent_peak(cloudwatch: Any) -> float | None:
    """The most connections the writer had in any second of the last minute (None: not sampled yet)."""
    now = dt.datetime.now(dt.UTC)
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "conns",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/RDS", "MetricName": "DatabaseConnections", "Dimensions": DIMS},
                    "Period": 1,
                    "Stat": "Maximum",
                },
            },
            {"Id": "peak", "Expression": "MAX(conns)"},
        ],
        StartTime=now - dt.timedelta(seconds=60),
        EndTime=now,
    )
    values = next(r for r in out["MetricDataResults"] if r["Id"] == "peak")["Values"]
    return max(values, default=None)


def test_alarm_follows_real_connections(borealis: BorealisProcess) -> None:
    cloudwatch = borealis.client("cloudwatch")
    name = f"busy-{uuid.uuid4().hex[:8]}"
    end = time.monotonic() + 60
    peak = _recent_peak(cloudwatch)
    while peak is None and time.monotonic() < end:  # the scaler samples once a second
        time.sleep(1)
        peak = _recent_peak(cloudwatch)
    assert peak is not None, "no DatabaseConnections sampled for the writer"
    # Half-way between what the instance has now and what it has with the extra connections: the
    # connections other parts keep (pools) may come and go by one or two without crossing it.
    threshold = peak + EXTRA / 2
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/RDS",
        MetricName="DatabaseConnections",
        Dimensions=DIMS,
        Statistic="Maximum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    try:
        assert _wait_for(cloudwatch, name, "OK") == "OK"
        connections: list[psycopg.Connection[Any]] = []
        try:
            for _ in range(EXTRA):
                conn = borealis.master_connect()
                conn.execute("select 1")
                connections.append(conn)
            assert _wait_for(cloudwatch, name, "ALARM") == "ALARM"
        finally:
            for conn in connections:
                conn.close()
        assert _wait_for(cloudwatch, name, "OK") == "OK"
        history = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")
        summaries = [h["HistorySummary"] for h in history["AlarmHistoryItems"]]
        assert summaries[:2] == ["Alarm updated from ALARM to OK", "Alarm updated from OK to ALARM"]
        reason = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateReason"]
        assert reason.startswith("Threshold Crossed")
    finally:
        cloudwatch.delete_alarms(AlarmNames=[name])
