"""The metric store: points at one second, minutes folded in, kept across a reopen, retention as CloudWatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.metrics import MINUTE_RETENTION, SECOND_RETENTION, MetricStore, aggregate
from borealis.metrics._sampler import count_client_backends

NS = "AWS/RDS"
DIMS = {"DBInstanceIdentifier": "db-1"}
T0 = 1_800_000_000.0  # a whole minute (divisible by 60)


def fill(store: MetricStore, values: list[float], start: float = T0, name: str = "ServerlessDatabaseCapacity") -> None:
    for i, v in enumerate(values):
        store.put(NS, name, DIMS, v, "Count", start + i)


def test_seconds_and_minutes_and_a_reopen(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    fill(store, [0.5] * 60 + [1.0] * 30 + [2.0] * 30)  # two minutes
    now = T0 + 120
    # Not flushed yet: reads see the pending points.
    five = store.query(NS, "ServerlessDatabaseCapacity", DIMS, T0, T0 + 120, 5, now=now)
    assert len(five) == 24 and five[0].at == T0 and five[0].count == 5 and five[-1].maximum == 2.0
    assert store.flush(now) == 120
    minutes = store.query(NS, "ServerlessDatabaseCapacity", DIMS, T0, T0 + 120, 60, now=now)
    assert [(p.at, p.count, p.minimum, p.maximum) for p in minutes] == [(T0, 60, 0.5, 0.5), (T0 + 60, 60, 1.0, 2.0)]
    assert minutes[1].statistic("Average") == 1.5
    store.close()

    again = MetricStore(tmp_path / "metrics.db")
    assert [s.name for s in again.series(NS)] == ["ServerlessDatabaseCapacity"]
    hour = again.query(NS, "ServerlessDatabaseCapacity", DIMS, T0, T0 + 3600, 3600, now=now)
    assert len(hour) == 1 and hour[0].count == 120 and hour[0].statistic("Sum") == 30 + 30 + 60
    one = again.query(NS, "ServerlessDatabaseCapacity", DIMS, T0 + 59, T0 + 62, 1, now=now)
    assert [p.maximum for p in one] == [0.5, 1.0, 1.0]
    # A partial minute flushed in two parts adds up.
    fill(again, [4.0] * 10, start=T0 + 120)
    again.flush(now + 10)
    fill(again, [8.0] * 10, start=T0 + 130)
    again.flush(now + 20)
    third = again.query(NS, "ServerlessDatabaseCapacity", DIMS, T0 + 120, T0 + 180, 60, now=now + 20)
    assert [(p.count, p.minimum, p.maximum, p.sum) for p in third] == [(20, 4.0, 8.0, 120.0)]
    again.close()


def test_retention(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    fill(store, [1.0] * 120)
    late = T0 + SECOND_RETENTION + 3600
    store.flush(late)
    # One-second data is gone after 3 hours; the minutes stay for 15 days.
    assert store.query(NS, "ServerlessDatabaseCapacity", DIMS, T0, T0 + 120, 1, now=late) == []
    assert len(store.query(NS, "ServerlessDatabaseCapacity", DIMS, T0, T0 + 120, 60, now=late)) == 2
    fill(store, [1.0], start=late)
    store._pruned = 0.0  # prune again on this flush
    store.flush(T0 + MINUTE_RETENTION + 3600)
    assert store.query(NS, "ServerlessDatabaseCapacity", DIMS, T0, T0 + 120, 60, now=T0 + MINUTE_RETENTION) == []
    store.close()


def test_aggregate_and_percentiles() -> None:
    points = [(T0 + i, float(i)) for i in range(100)]
    [p] = aggregate(points, T0, T0 + 100, 100)
    assert (p.statistic("p50"), p.statistic("p99"), p.statistic("p100")) == (49.0, 98.0, 99.0)
    assert p.statistic("SampleCount") == 100 and p.statistic("p101") is None and p.statistic("Bogus") is None


def test_ignores_non_finite_values(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    store.put(NS, "CPUUtilization", DIMS, float("nan"), "Percent", T0)
    assert store.flush(T0) == 0
    store.close()


@pytest.mark.parametrize(
    ("titles", "expected"),
    [
        (["postgres: checkpointer ", "postgres: background writer ", "postgres: walwriter "], (0, 0)),
        (["postgres: app mydb 127.0.0.1(50412) idle", "postgres: app mydb [local] SELECT"], (2, 2)),
        (["postgres: rdsadmin postgres [local] idle", "postgres: autovacuum launcher "], (0, 0)),
        (["postgres: walsender repl 127.0.0.1(1) streaming 0/3000060"], (0, 0)),
        (["postgres: app mydb 127.0.0.1(50412) idle in transaction", "/usr/bin/python"], (1, 1)),
        (["postgres: app mydb [local] idle", "postgres: app mydb [local] idle in transaction"], (2, 1)),
    ],
)
def test_client_backends_from_process_titles(titles: list[str], expected: tuple[int, int]) -> None:
    assert count_client_backends(titles, frozenset({"rdsadmin"})) == expected
