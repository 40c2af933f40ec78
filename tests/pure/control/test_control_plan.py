"""Pure tests of the reconciler's plan: records + observations + steps under way -> actions with reasons."""

from __future__ import annotations

from dataclasses import replace

from borealis.control import ClusterRecord, InstanceRecord, Observation
from borealis.control._reconciler import HANG_PROBES, Action, plan

UP = Observation(running=True, healthy=True, in_recovery=False, timeline=1, lsn=100, address="127.0.0.1:7000")
SYNCED = replace(UP, sync=frozenset())


def _cluster(status: str = "available", *, bootstrapped: bool = True, password_applied: int = 0) -> ClusterRecord:
    return ClusterRecord(id="c", status=status, port=5432, bootstrapped=bootstrapped, password_applied=password_applied)


def _inst(iid: str = "w", status: str = "available", role: str = "writer") -> InstanceRecord:
    return InstanceRecord(id=iid, cluster="c", status=status, role=role, port=6000)


def _kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.target) for a in actions]


def test_a_new_cluster_without_instances_is_available_at_once() -> None:
    cluster = _cluster("creating", bootstrapped=False)
    assert [(a.kind, a.status) for a in plan(cluster, [], {}, frozenset())] == [("cluster-status", "available")]


def test_a_new_instance_is_started_bootstrapped_and_settled_and_then_the_cluster() -> None:
    cluster = _cluster("creating", bootstrapped=False, password_applied=-1)
    inst = _inst(status="creating")
    assert _kinds(plan(cluster, [inst], {}, frozenset())) == [("start", "w")]
    # While the start runs, the cluster waits for it.
    assert plan(cluster, [inst], {}, frozenset({"w"})) == []
    actions = plan(cluster, [inst], {"w": UP}, frozenset())
    assert _kinds(actions) == [("bootstrap", "w")]
    assert "master user" in actions[0].reason
    cluster = _cluster("creating", password_applied=-1)
    assert _kinds(plan(cluster, [inst], {"w": UP}, frozenset())) == [("apply-password", "w")]
    cluster = _cluster("creating")
    actions = plan(cluster, [inst], {"w": UP}, frozenset())
    assert [(a.kind, a.status) for a in actions] == [("instance-status", "available")]
    actions = plan(cluster, [_inst()], {"w": SYNCED}, frozenset())
    assert [(a.kind, a.target, a.status) for a in actions] == [("cluster-status", "c", "available")]
    assert plan(_cluster(), [_inst()], {"w": SYNCED}, frozenset()) == []
    # Once running, the writer's synchronous standbys are set (to none while no reader streams).
    assert _kinds(plan(_cluster(), [_inst()], {"w": UP}, frozenset())) == [("sync", "w")]


def _reader(iid: str = "r", status: str = "available", tier: int = 1) -> InstanceRecord:
    return InstanceRecord(id=iid, cluster="c", status=status, role="reader", port=6001, promotion_tier=tier)


READER_UP = Observation(
    running=True, healthy=True, in_recovery=True, lsn=100, upstream="127.0.0.1:7000", sync_candidate=True
)


def test_a_reader_waits_for_the_writer_then_is_copied_and_follows_it() -> None:
    insts = [_inst(status="creating"), _reader(status="creating")]
    # The writer is not up yet: only it starts; the cluster waits for both.
    assert _kinds(plan(_cluster("creating"), insts, {}, frozenset())) == [("start", "w")]
    actions = plan(_cluster("creating"), [_inst(), _reader(status="creating")], {"w": SYNCED}, frozenset())
    assert _kinds(actions) == [("start", "r")]
    # A running reader that follows an old address of the writer is pointed at the new one.
    moved = replace(READER_UP, upstream="127.0.0.1:6999")
    synced = replace(SYNCED, sync=frozenset({"r"}))
    actions = plan(_cluster(), [_inst(), _reader()], {"w": synced, "r": moved}, frozenset())
    assert [(a.kind, a.target) for a in actions] == [("follow", "r")]
    assert "127.0.0.1:7000" in actions[0].reason


def test_synchronous_standbys_are_the_running_streaming_readers() -> None:
    insts = [_inst(), _reader(), _reader("r2"), _reader("gone", status="deleting")]
    stale = replace(READER_UP, sync_candidate=False)  # runs, but has not streamed for a while
    observed = {"w": SYNCED, "r": READER_UP, "r2": stale, "gone": READER_UP}
    actions = plan(_cluster(), insts, observed, frozenset())
    assert [(a.kind, a.target) for a in actions] == [("delete-instance", "gone"), ("sync", "w")]
    assert "synchronous standbys: r" in actions[1].reason
    synced = replace(SYNCED, sync=frozenset({"r"}))
    assert _kinds(plan(_cluster(), insts, {**observed, "w": synced}, frozenset())) == [("delete-instance", "gone")]


def test_a_dead_writer_fails_over_when_a_reader_runs_and_restarts_in_place_otherwise() -> None:
    dead = Observation(running=False, exit_code=-9)
    actions = plan(_cluster(), [_inst(), _reader()], {"w": dead, "r": READER_UP}, frozenset())
    assert _kinds(actions) == [("failover", "c")]
    assert "code -9" in actions[0].reason
    # A reader being busy (a hung start) does not hold the failover up.
    actions = plan(_cluster(), [_inst(), _reader(), _reader("r2")], {"w": dead, "r": READER_UP}, frozenset({"r2"}))
    assert _kinds(actions) == [("failover", "c")]
    # No reader running: crash recovery in place.
    assert _kinds(plan(_cluster(), [_inst(), _reader()], {"w": dead}, frozenset())) == [("start", "w")]
    # After a Borealis restart nothing runs and nothing crashed: start, not fail over.
    assert _kinds(plan(_cluster(), [_inst(), _reader()], {}, frozenset())) == [("start", "w")]


def test_a_hung_writer_fails_over_after_enough_unanswered_probes() -> None:
    hung = Observation(running=True, healthy=False, failures=HANG_PROBES - 1, address="127.0.0.1:7000")
    actions = plan(_cluster(), [_inst(), _reader()], {"w": hung, "r": READER_UP}, frozenset())
    assert "failover" not in [a.kind for a in actions]
    hung = replace(hung, failures=HANG_PROBES)
    actions = plan(_cluster(), [_inst(), _reader()], {"w": hung, "r": READER_UP}, frozenset())
    assert _kinds(actions) == [("failover", "c")]


def test_an_asked_failover_and_deleting_the_writer_fail_over() -> None:
    assert _kinds(plan(_cluster("failing-over"), [_inst(), _reader()], {}, frozenset())) == [("failover", "c")]
    insts = [_inst(status="deleting"), _reader()]
    assert _kinds(plan(_cluster(), insts, {"w": SYNCED, "r": READER_UP}, frozenset())) == [("failover", "c")]
    # The last instance: deleted (its data is kept as the cluster volume).
    assert _kinds(plan(_cluster(), [_inst(status="deleting")], {}, frozenset())) == [("delete-instance", "w")]


def test_a_crashed_postgres_is_restarted_with_its_exit_code_as_the_reason() -> None:
    actions = plan(_cluster(), [_inst()], {"w": Observation(running=False, exit_code=-9)}, frozenset())
    assert _kinds(actions) == [("start", "w")]
    assert "code -9" in actions[0].reason


def test_reboot_restarts() -> None:
    assert _kinds(plan(_cluster(), [_inst(status="rebooting")], {"w": UP}, frozenset())) == [("restart", "w")]


def test_stopping_a_cluster_stops_running_servers_then_settles() -> None:
    insts = [_inst(status="stopping"), _inst("r", status="available", role="reader")]
    actions = plan(_cluster("stopping"), insts, {"w": UP}, frozenset())
    assert [(a.kind, a.target, a.status) for a in actions] == [("stop", "w", None), ("instance-status", "r", "stopped")]
    insts = [_inst(status="stopped"), _inst("r", status="stopped", role="reader")]
    actions = plan(_cluster("stopping"), insts, {}, frozenset())
    assert [(a.kind, a.status) for a in actions] == [("cluster-status", "stopped")]
    assert plan(_cluster("stopped"), insts, {}, frozenset()) == []


def test_a_hung_step_on_one_instance_does_not_hold_up_another() -> None:
    insts = [_inst(), _reader("r1", status="rebooting"), _reader("r2", status="creating")]
    actions = plan(_cluster(), insts, {"w": SYNCED}, frozenset({"r1"}))
    assert _kinds(actions) == [("start", "r2")]


def test_deleting() -> None:
    insts = [_inst(), _reader(status="deleting")]
    actions = plan(_cluster(), insts, {"w": SYNCED}, frozenset())
    assert _kinds(actions) == [("delete-instance", "r")]
    assert _kinds(plan(_cluster("deleting"), insts, {}, frozenset())) == [("delete-cluster", "c")]
    assert plan(_cluster("deleting"), insts, {}, frozenset({"r"})) == []


def test_a_failed_instance_is_left_alone() -> None:
    assert plan(_cluster(), [_inst(status="failed")], {}, frozenset()) == []


def test_a_final_snapshot_holds_the_deletion_but_not_the_instances_readers_first() -> None:
    cluster = replace(_cluster("deleting"), extra={"final_snapshot": "snap"})
    writer, reader = _inst(status="deleting"), _reader(status="deleting")
    # Readers go first, so the writer's data is the last left and becomes the volume the snapshot copies.
    assert _kinds(plan(cluster, [writer, reader], {"w": UP}, frozenset())) == [("delete-instance", "r")]
    assert _kinds(plan(cluster, [writer], {"w": UP}, frozenset())) == [("delete-instance", "w")]
    assert plan(cluster, [], {}, frozenset()) == []
    assert _kinds(plan(_cluster("deleting"), [], {}, frozenset())) == [("delete-cluster", "c")]


def test_a_cluster_being_restored_waits_for_its_volume() -> None:
    cluster = replace(_cluster("creating"), extra={"restore_from": "snap"})
    assert plan(cluster, [], {}, frozenset()) == []
    assert plan(cluster, [_inst(status="creating")], {}, frozenset()) == []  # no initdb before the data is there
    assert [(a.kind, a.status) for a in plan(_cluster("creating"), [], {}, frozenset())] == [
        ("cluster-status", "available")
    ]
