"""The auto-pause rules as pure functions: who pauses, who wakes with whom."""

from __future__ import annotations

import pytest

from borealis.serverless._pause import Member, to_pause, to_wake

W = Member("w", writer=True, tier=1, idle_for=400)
R0 = Member("r0", writer=False, tier=0, idle_for=400)
R5 = Member("r5", writer=False, tier=5, idle_for=400)


def busy(m: Member) -> Member:
    return Member(m.id, m.writer, m.tier, idle_for=10, paused=m.paused)


def paused(m: Member) -> Member:
    return Member(m.id, m.writer, m.tier, m.idle_for, paused=True)


CASES = [
    ("min capacity above 0: never", [W], None, False, set()),
    ("a lone idle writer pauses", [W], 300, False, {"w"}),
    ("not idle long enough", [W], 500, False, set()),
    ("an open connection keeps it up", [busy(W)], 300, False, set()),
    ("an RDS Proxy keeps the cluster awake", [W, R0, R5], 300, True, set()),
    ("writer and tier 0-1 reader pause together", [W, R0], 300, False, {"w", "r0"}),
    ("a busy tier-0 reader keeps the writer up", [W, busy(R0)], 300, False, set()),
    ("a busy writer keeps its tier-0 reader up", [busy(W), R0], 300, False, set()),
    ("a busy tier-5 reader keeps the writer up, and stays", [W, busy(R5)], 300, False, set()),
    ("an idle tier-5 reader pauses alone", [busy(W), R5], 300, False, {"r5"}),
    ("everything idle: everything pauses", [W, R0, R5], 300, False, {"w", "r0", "r5"}),
    ("a paused tier-5 reader does not block the writer", [W, paused(R5)], 300, False, {"w"}),
    ("already paused: nothing to do", [paused(W), paused(R0)], 300, False, set()),
]


@pytest.mark.parametrize(("members", "seconds", "proxy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_to_pause(members: list[Member], seconds: float | None, proxy: bool, expected: set[str]) -> None:
    assert to_pause(members, seconds, proxy=proxy) == expected


def test_to_wake() -> None:
    everyone = [paused(W), paused(R0), paused(R5)]
    assert to_wake(everyone, "w") == ["w", "r0"]  # the group; the tier-5 reader sleeps on
    assert to_wake(everyone, "r0") == ["w", "r0"]
    assert to_wake(everyone, "r5") == ["w", "r0", "r5"]  # a reader wakes the writer first
    assert to_wake([W, paused(R5)], "r5") == ["r5"]
    assert to_wake([W, R0], "w") == [] and to_wake([W], "nobody") == []


def test_min_auto_pause_setting(tmp_path: object) -> None:
    from pathlib import Path

    from borealis.config import load_settings

    assert load_settings({}, env={"BOREALIS_DATA_DIR": "/nonexistent"}).min_auto_pause == 300
    assert load_settings({}, env={"BOREALIS_DATA_DIR": "/x", "BOREALIS_MIN_AUTO_PAUSE": "1"}).min_auto_pause == 1
    assert load_settings({"min_auto_pause": 5}, env={"BOREALIS_DATA_DIR": "/x"}).min_auto_pause == 5
    toml = Path(str(tmp_path)) / "b.toml"
    toml.write_text("min_auto_pause = 2\nresume_wait = 250\n")
    loaded = load_settings({}, env={"BOREALIS_DATA_DIR": "/x"}, config_file=toml)
    assert (loaded.min_auto_pause, loaded.resume_wait) == (2, 250)


def test_the_reconciler_keeps_a_paused_instance_down() -> None:
    """A record marked paused is stopped if it runs and left stopped, its status untouched (as on AWS)."""
    from borealis.control import ClusterRecord, InstanceRecord, Observation
    from borealis.control._reconciler import plan

    cluster = ClusterRecord.from_doc({"id": "c", "status": "available", "port": 1, "bootstrapped": True})
    paused = InstanceRecord.from_doc(
        {"id": "w", "cluster": "c", "status": "available", "role": "writer", "port": 2, "paused": True}
    )
    running = plan(cluster, [paused], {"w": Observation(running=True)}, frozenset())
    assert [(a.kind, a.target) for a in running] == [("pause", "w")]
    assert plan(cluster, [paused], {"w": Observation(running=False)}, frozenset()) == []
    awake = InstanceRecord.from_doc({"id": "w", "cluster": "c", "status": "available", "role": "writer", "port": 2})
    woken = plan(cluster, [awake], {"w": Observation(running=False)}, frozenset())
    assert [(a.kind, a.target) for a in woken] == [("start", "w")]


def test_a_resume_ends_only_once_the_record_carries_the_address_workers_route_by() -> None:
    # A paused instance keeps its status; its stored address (pg_port) is cleared on pause and written again
    # only once the restarted postgres is set up. API workers route by it: until then, "resuming" must stay.
    from types import SimpleNamespace

    from borealis.serverless._autopause import AutoPause

    records = {"w": {"id": "w", "cluster": "c", "status": "available", "role": "writer", "port": 2}}
    pause = AutoPause(SimpleNamespace(instance=records.get))
    assert not pause._available("w")
    records["w"]["pg_port"] = 5432
    assert pause._available("w")
    records["w"]["status"] = "rebooting"
    assert not pause._available("w")
