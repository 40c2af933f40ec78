"""``GET /metrics``: Prometheus text behind a bearer token, read by prometheus_client's parser, with our series.

Its own Borealis with one API process, so every call is served (and counted) by the process that answers
``/metrics``.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import BorealisProcess

INSTANCE = "default-instance-1"


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    proc = BorealisProcess(tmp_path_factory.mktemp("prom") / "data", workers=1)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _scrape(borealis: BorealisProcess) -> tuple[str, dict[str, Any]]:
    """The body of GET /metrics, with the bearer token a Prometheus scrape config reads from the data directory
    (``bearer_token_file``), and its families by name."""
    token = (borealis.data_dir / "metrics.token").read_text().strip()
    req = urllib.request.Request(borealis.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    found = [
        s.value
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family, labels, families[family].samples)
    return float(found[0])


def test_metrics_are_parsed_and_count_real_calls(single: BorealisProcess) -> None:
    rds = single.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    with pytest.raises(ClientError):
        rds.describe_db_clusters(DBClusterIdentifier="no-such-cluster")
    secret_arn = cluster["MasterUserSecret"]["SecretArn"]
    password = json.loads(single.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])[
        "password"
    ]
    marker = f"prometheus_marker_{uuid.uuid4().hex}"
    data = single.client("rds-data")
    for _ in range(3):
        data.execute_statement(resourceArn=cluster["DBClusterArn"], secretArn=secret_arn, sql=f"SELECT '{marker}'")
    with pytest.raises(ClientError) as err:
        data.execute_statement(resourceArn=cluster["DBClusterArn"], secretArn=secret_arn, sql="SELECT * FROM nowhere")
    failed = err.value.response["Error"]["Code"]  # as the client saw it (DatabaseErrorException)

    text, families = _scrape(single)
    requests = "borealis_api_requests"  # the parser drops a counter's _total from the family name
    assert _value(families, requests, requests + "_total", operation="DescribeDBClusters", code="OK") >= 1
    assert (
        _value(families, requests, requests + "_total", operation="DescribeDBClusters", code="DBClusterNotFoundFault")
        == 1
    )
    assert (
        _value(families, requests, requests + "_total", service="rds-data", operation="ExecuteStatement", code="OK")
        == 3
    )
    assert (
        _value(
            families, requests, requests + "_total", service="rds-data", operation="ExecuteStatement",
            code=failed,
        )
        == 1
    )  # fmt: skip
    hist = "borealis_dataapi_request_duration_seconds"
    assert families[hist].type == "histogram"
    assert _value(families, hist, hist + "_count", operation="ExecuteStatement") == 4
    assert _value(families, hist, hist + "_bucket", operation="ExecuteStatement", le="+Inf") == 4
    assert _value(families, hist, hist + "_sum", operation="ExecuteStatement") > 0

    up = _value(
        families, "borealis_instance_up", "borealis_instance_up", cluster="default", instance="default-instance-1"
    )
    assert up == 1
    roles = {s.labels["role"] for s in families["borealis_instance_up"].samples}
    assert roles == {"writer"}

    # Nothing secret or user-written: no SQL text, no password, no access key.
    key, secret = single.credentials()
    for private in (marker, "nowhere", password, key, secret):
        assert private not in text


def test_the_metrics_stores_latest_values_are_exposed(single: BorealisProcess) -> None:
    # The scaler records ServerlessDatabaseCapacity each second it runs; poll, the first sample takes a moment.
    deadline = time.monotonic() + 120
    capacity: list[float] = []
    while not capacity and time.monotonic() < deadline:
        _, families = _scrape(single)
        latest = families.get("borealis_rds_serverless_database_capacity")
        capacity = [
            s.value for s in (latest.samples if latest is not None else []) if s.labels == {"instance": INSTANCE}
        ]
        time.sleep(0.5)
    assert capacity, "no ServerlessDatabaseCapacity for default-instance-1 in /metrics"
    assert 0 <= capacity[0] <= 4  # the default cluster's MaxCapacity


def test_metrics_need_the_bearer_token_and_other_paths_do_not_leak(single: BorealisProcess) -> None:
    req = urllib.request.Request(single.url + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 404
    # Without the token (or with a wrong one) a caller learns nothing: the series name clusters and instances.
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(single.url + "/metrics", headers=headers), timeout=30)
        assert err.value.code == 401
        assert b"default" not in err.value.read()
    assert ((single.data_dir / "metrics.token").stat().st_mode & 0o777) == 0o600
    _, families = _scrape(single)
    assert "borealis_instance_up" in families


def test_calls_served_by_worker_processes_are_counted(borealis: BorealisProcess) -> None:
    """The session's Borealis runs two API processes: calls on separate connections spread over both (the kernel
    picks one per connection), and /metrics, answered by the main process, counts every one of them."""
    requests = "borealis_api_requests"

    def executed() -> float:
        _, families = _scrape(borealis)
        samples = families[requests].samples if requests in families else []
        return sum(
            s.value for s in samples if s.labels.get("operation") == "ExecuteStatement" and s.labels.get("code") == "OK"
        )

    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    arn, secret_arn = cluster["DBClusterArn"], cluster["MasterUserSecret"]["SecretArn"]
    calls = 24
    deadline = time.monotonic() + 60
    before = executed()
    time.sleep(1.5)  # the workers write their counts each second: let a call of an earlier test land first
    while time.monotonic() < deadline and executed() != before:
        before = executed()
        time.sleep(1.5)
    for _ in range(calls):  # a new client (so a new connection) per call
        borealis.client("rds-data").execute_statement(resourceArn=arn, secretArn=secret_arn, sql="SELECT 1")
    counted = before
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counted = executed()
        if counted - before >= calls:
            break
        time.sleep(0.5)
    assert counted - before == calls
    worker = borealis.data_dir / "api-metrics-1.json"
    assert worker.stat().st_mode & 0o777 == 0o600
    # The worker served some of them (all 24 on the main process: a chance of 1 in 2**24).
    assert json.loads(worker.read_text())["rds-data/ExecuteStatement"]["ok"] > 0
