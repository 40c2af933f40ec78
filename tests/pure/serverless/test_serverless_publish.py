"""Pure test: the scaler writes at most one value per series and second, so a tick that comes late after a stall
(two ticks in one wall-clock second) cannot turn two capacities into their mean, a capacity never set."""

from __future__ import annotations

from pathlib import Path

from borealis.metrics import MetricStore
from borealis.serverless import Scaler


def test_two_ticks_in_one_second_write_the_first_value_only(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    scaler = Scaler(None, store, None, internal_users=frozenset(), max_connections_for=lambda acu: 100)  # type: ignore[arg-type]
    dims = {"DBInstanceIdentifier": "i1"}
    scaler._publish(dims, {"ServerlessDatabaseCapacity": 1.0}, 1000.1)
    scaler._publish(dims, {"ServerlessDatabaseCapacity": 1.5}, 1000.9)  # late tick, same second
    scaler._publish({"DBClusterIdentifier": "c1"}, {"ServerlessDatabaseCapacity": 1.5}, 1000.9)  # another series
    scaler._publish(dims, {"ServerlessDatabaseCapacity": 2.0}, 1001.0)
    points = store.query("AWS/RDS", "ServerlessDatabaseCapacity", dims, 990, 1010, 1, now=1002)
    assert [(p.at, p.maximum) for p in points] == [(1000, 1.0), (1001, 2.0)]
    cluster = store.query(
        "AWS/RDS", "ServerlessDatabaseCapacity", {"DBClusterIdentifier": "c1"}, 990, 1010, 1, now=1002
    )
    assert [p.maximum for p in cluster] == [1.5]
    store.close()
