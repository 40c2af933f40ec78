"""Pure tests of the reconciler's plan: records + observations + steps under way -> actions with reasons."""

from __future__ import annotations

from borealis.control import ClusterRecord, InstanceRecord, Observation
from borealis.control._reconciler import Action, plan

UP = Observation(running=True, healthy=True, in_recovery=False, timeline=1, lsn=100)


def _cluster(status: str = "available", *, bootstrapped: bool = True, password_applied: int = 0) -> ClusterRecord:
    return ClusterRecord(id="c", status=status, port=5432, bootstrapped=bootstrapped, password_applied=password_applied)


def _inst(iid: str = "w", status: str = "available", role: str = "writer") -> InstanceRecord:
    return InstanceRecord(id=iid, cluster="c", status=status, role=role, port=6000)


def _kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.target) for a in actions]


def test_a_new_cluster_is_initialised_first_and_nothing_else_happens_meanwhile() -> None:
    cluster = _cluster("creating", bootstrapped=False)
    actions = plan(cluster, [_inst(status="creating")], {}, frozenset(), initialized=False)
    assert _kinds(actions) == [("initdb", "c")]
    assert plan(cluster, [_inst(status="creating")], {}, frozenset({"c"}), initialized=False) == []


def test_a_new_instance_is_started_bootstrapped_and_settled_and_then_the_cluster() -> None:
    cluster = _cluster("creating", bootstrapped=False, password_applied=-1)
    inst = _inst(status="creating")
    assert _kinds(plan(cluster, [inst], {}, frozenset(), initialized=True)) == [("start", "w")]
    # While the start runs, the cluster waits for it.
    assert plan(cluster, [inst], {}, frozenset({"w"}), initialized=True) == []
    actions = plan(cluster, [inst], {"w": UP}, frozenset(), initialized=True)
    assert _kinds(actions) == [("bootstrap", "w")]
    assert "master user" in actions[0].reason
    cluster = _cluster("creating", password_applied=-1)
    assert _kinds(plan(cluster, [inst], {"w": UP}, frozenset(), initialized=True)) == [("apply-password", "w")]
    cluster = _cluster("creating")
    actions = plan(cluster, [inst], {"w": UP}, frozenset(), initialized=True)
    assert [(a.kind, a.status) for a in actions] == [("instance-status", "available")]
    actions = plan(cluster, [_inst()], {"w": UP}, frozenset(), initialized=True)
    assert [(a.kind, a.target, a.status) for a in actions] == [("cluster-status", "c", "available")]
    assert plan(_cluster(), [_inst()], {"w": UP}, frozenset(), initialized=True) == []


def test_a_crashed_postgres_is_restarted_with_its_exit_code_as_the_reason() -> None:
    actions = plan(
        _cluster(), [_inst()], {"w": Observation(running=False, exit_code=-9)}, frozenset(), initialized=True
    )
    assert _kinds(actions) == [("start", "w")]
    assert "code -9" in actions[0].reason


def test_reboot_restarts() -> None:
    assert _kinds(plan(_cluster(), [_inst(status="rebooting")], {"w": UP}, frozenset(), initialized=True)) == [
        ("restart", "w")
    ]


def test_stopping_a_cluster_stops_running_servers_then_settles() -> None:
    insts = [_inst(status="stopping"), _inst("r", status="available", role="reader")]
    actions = plan(_cluster("stopping"), insts, {"w": UP}, frozenset(), initialized=True)
    assert [(a.kind, a.target, a.status) for a in actions] == [("stop", "w", None), ("instance-status", "r", "stopped")]
    insts = [_inst(status="stopped"), _inst("r", status="stopped", role="reader")]
    actions = plan(_cluster("stopping"), insts, {}, frozenset(), initialized=True)
    assert [(a.kind, a.status) for a in actions] == [("cluster-status", "stopped")]
    assert plan(_cluster("stopped"), insts, {}, frozenset(), initialized=True) == []


def test_a_hung_step_on_one_instance_does_not_hold_up_another() -> None:
    insts = [_inst(status="rebooting"), _inst("r", status="creating", role="reader")]
    actions = plan(_cluster(), insts, {}, frozenset({"w"}), initialized=True)
    assert _kinds(actions) == [("start", "r")]


def test_deleting() -> None:
    insts = [_inst(status="deleting"), _inst("r", role="reader")]
    actions = plan(_cluster(), insts, {"r": UP}, frozenset(), initialized=True)
    assert _kinds(actions) == [("delete-instance", "w")]
    assert _kinds(plan(_cluster("deleting"), insts, {}, frozenset(), initialized=True)) == [("delete-cluster", "c")]
    assert plan(_cluster("deleting"), insts, {}, frozenset({"r"}), initialized=True) == []


def test_a_failed_instance_is_left_alone() -> None:
    assert plan(_cluster(), [_inst(status="failed")], {}, frozenset(), initialized=True) == []
