"""Pure tests of choose_writer: promotion tier, then size, then lag; after a crash only the furthest WAL."""

from __future__ import annotations

from borealis.control import InstanceRecord, Observation
from borealis.control._failover import choose_writer, instance_size


def _r(iid: str, tier: int = 1, klass: str = "db.r6g.large", status: str = "available") -> InstanceRecord:
    return InstanceRecord(id=iid, cluster="c", status=status, role="reader", port=1, promotion_tier=tier,
                          instance_class=klass)  # fmt: skip


def _up(lsn: int = 100, lag: float = 0.0) -> Observation:
    return Observation(running=True, healthy=True, in_recovery=True, lsn=lsn, lag_ms=lag)


WRITER = InstanceRecord(id="w", cluster="c", status="available", role="writer", port=1, promotion_tier=0)


def test_tier_then_size_then_lag() -> None:
    readers = [_r("a", tier=2), _r("b", tier=1, klass="db.r6g.large"), _r("c", tier=1, klass="db.r6g.2xlarge")]
    observed = {"a": _up(), "b": _up(), "c": _up()}
    choice = choose_writer([WRITER, *readers], observed)
    assert choice is not None and choice.id == "c"
    observed = {"a": _up(), "b": _up(lag=5), "c": _up(lag=1)}
    same = [_r("b", tier=1), _r("c", tier=1)]
    choice = choose_writer(same, observed)
    assert choice is not None and choice.id == "c"


def test_only_running_healthy_available_readers_qualify() -> None:
    readers = [_r("a", tier=0), _r("b", tier=1), _r("c", tier=0, status="creating")]
    observed = {"a": Observation(running=True, healthy=False), "b": _up(), "c": _up()}
    choice = choose_writer([WRITER, *readers], observed)
    assert choice is not None and choice.id == "b"
    assert choose_writer([WRITER], {}) is None
    assert choose_writer([WRITER, _r("x")], {}) is None


def test_a_named_target_or_nothing() -> None:
    readers = [_r("a", tier=0), _r("b", tier=5)]
    observed = {"a": _up(), "b": _up()}
    choice = choose_writer(readers, observed, target="b")
    assert choice is not None and choice.id == "b"
    assert choose_writer(readers, observed, target="w") is None
    assert choose_writer(readers, {"a": _up()}, target="b") is None


def test_after_a_crash_only_the_furthest_readers_qualify() -> None:
    # With quorum commit (ANY 1) an acknowledged commit may be on one reader only: promote one that has it.
    readers = [_r("a", tier=0), _r("b", tier=1)]
    observed = {"a": _up(lsn=100), "b": _up(lsn=180)}
    planned = choose_writer(readers, observed)
    crashed = choose_writer(readers, observed, crashed=True)
    assert planned is not None and planned.id == "a"
    assert crashed is not None and crashed.id == "b"


def test_sizes() -> None:
    assert instance_size("db.r6g.2xlarge") > instance_size("db.r6g.xlarge") > instance_size("db.r6g.large")
    assert instance_size("db.serverless") > instance_size("db.r6g.16xlarge")
