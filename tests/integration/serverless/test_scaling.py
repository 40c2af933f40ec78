"""Capacity follows a real load on a real Borealis: it rises under CPU load, comes down after, stays within the
range, is enforced by the cgroup, and boto3's CloudWatch client reads it."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from borealis.engine import Cgroups
from tests.integration.conftest import BorealisProcess

INSTANCE = "default-instance-1"


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis of its own (the load would disturb the shared one), default cluster 0.5-4 ACUs."""
    proc = BorealisProcess(tmp_path_factory.mktemp("scaling") / "data")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def capacity_series(cloudwatch: Any, dims: list[dict[str, str]], seconds: int = 120) -> list[tuple[dt.datetime, float]]:
    now = dt.datetime.now(dt.UTC)
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "cap",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/RDS", "MetricName": "ServerlessDatabaseCapacity", "Dimensions": dims},
                    "Period": 1,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - dt.timedelta(seconds=seconds),
        EndTime=now + dt.timedelta(seconds=1),
        ScanBy="TimestampAscending",
    )
    result = out["MetricDataResults"][0]
    return list(zip(result["Timestamps"], result["Values"], strict=True))


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)


def test_capacity_rises_under_load_and_falls_after(scaled: BorealisProcess) -> None:
    cloudwatch = scaled.client("cloudwatch")
    dims = [{"Name": "DBInstanceIdentifier", "Value": INSTANCE}]
    wait_until("the idle capacity is published", lambda: bool(capacity_series(cloudwatch, dims, 30)))
    assert {v for _, v in capacity_series(cloudwatch, dims, 30)} == {0.5}  # idle: MinCapacity

    stop = threading.Event()

    def burn() -> None:
        with contextlib.suppress(psycopg.Error), scaled.master_connect() as conn:
            conn.autocommit = True
            while not stop.is_set():
                conn.execute("SELECT count(*) FROM generate_series(1, 3000000)")

    workers = [threading.Thread(target=burn) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        wait_until("capacity rises under load", lambda: max(v for _, v in capacity_series(cloudwatch, dims)) >= 2)
        quota = _quota(scaled.data_dir)
        assert quota is None or quota >= 2 * 0.25 * 100_000  # the cgroup follows: 2 ACUs = half a CPU
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    series = capacity_series(cloudwatch, dims)
    peak = max(v for _, v in series)
    assert peak <= 4.0 and all(v * 2 == int(v * 2) for _, v in series)  # MaxCapacity, half steps
    wait_until("capacity falls after the load", lambda: capacity_series(cloudwatch, dims, 10)[-1][1] < peak, 180)

    # The cluster's series is the mean of its (one) instance; ListMetrics names both.
    cluster = capacity_series(cloudwatch, [{"Name": "DBClusterIdentifier", "Value": "default"}])
    assert cluster and max(v for _, v in cluster) >= 2
    names = {
        (m["MetricName"], m["Dimensions"][0]["Name"]) for m in cloudwatch.list_metrics(Namespace="AWS/RDS")["Metrics"]
    }
    for metric in ("ServerlessDatabaseCapacity", "ACUUtilization", "CPUUtilization", "FreeableMemory"):
        assert (metric, "DBInstanceIdentifier") in names and (metric, "DBClusterIdentifier") in names
    assert ("DatabaseConnections", "DBInstanceIdentifier") in names
    stats = cloudwatch.get_metric_statistics(
        Namespace="AWS/RDS",
        MetricName="CPUUtilization",
        Dimensions=dims,
        StartTime=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
        EndTime=dt.datetime.now(dt.UTC),
        Period=60,
        Statistics=["Maximum"],
    )
    assert max(p["Maximum"] for p in stats["Datapoints"]) > 10


def _quota(data_dir: Path) -> int | None:
    """The CPU quota of the instance's cgroup, None where the machine has no writable cgroup."""
    found = Cgroups.detect(data_dir.absolute(), move_self=False)
    if not found.enabled or found.cpu_parent is None:
        return None
    path = found.cpu_parent / INSTANCE / ("cpu.max" if found.version == 2 else "cpu.cfs_quota_us")
    return int(path.read_text().split()[0])
