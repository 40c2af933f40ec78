"""Pure tests: typed records round-trip their documents, and status moves follow the transition tables."""

from __future__ import annotations

import pytest

from borealis.control import ClusterRecord, InstanceRecord, InvalidTransition
from borealis.control._records import CLUSTER_TRANSITIONS, INSTANCE_TRANSITIONS, SERVING, SHOULD_RUN


def test_instance_round_trip_keeps_unknown_fields() -> None:
    doc = {"id": "i1", "cluster": "c", "status": "available", "role": "writer", "port": 5000,
           "promotion_tier": 2, "instance_class": "db.serverless", "tags": [{"Key": "k", "Value": "v"}]}  # fmt: skip
    record = InstanceRecord.from_doc(doc, revision=7)
    assert record.revision == 7
    assert record.is_writer and record.serving and record.should_run
    assert record.get("tags") == [{"Key": "k", "Value": "v"}]
    assert record.to_doc() == doc  # runtime fields stay absent until known
    started = InstanceRecord.from_doc({**doc, "pg_port": 6000, "pg_socket": "/tmp/x"})
    assert started.to_doc()["pg_port"] == 6000


def test_cluster_round_trip() -> None:
    doc = {"id": "c", "status": "creating", "port": 5432, "reader_host": "127.0.0.2", "reader_port": 5432,
           "scaling": {"min": 0.5, "max": 4}, "bootstrapped": False, "password_version": 0,
           "password_applied": -1}  # fmt: skip
    record = ClusterRecord.from_doc(doc)
    assert record.to_doc() == doc
    assert record.get("scaling") == {"min": 0.5, "max": 4}
    assert record.running
    assert not ClusterRecord.from_doc({**doc, "status": "stopped"}).running


@pytest.mark.parametrize(
    ("old", "new"),
    [("creating", "available"), ("available", "stopping"), ("stopping", "stopped"), ("stopped", "starting"),
     ("starting", "available"), ("available", "failing-over"), ("failing-over", "available"),
     ("creating", "failed"), ("available", "deleting"), ("stopped", "deleting"), ("failed", "deleting")],
)  # fmt: skip
def test_allowed_cluster_moves(old: str, new: str) -> None:
    record = ClusterRecord(id="c", status=old, port=1)
    assert record.moved_to(new).status == new


@pytest.mark.parametrize(
    ("old", "new"),
    [("stopped", "available"), ("creating", "stopping"), ("deleting", "available"), ("available", "creating"),
     ("stopping", "available"), ("available", "no-such-status")],
)  # fmt: skip
def test_refused_cluster_moves(old: str, new: str) -> None:
    with pytest.raises(InvalidTransition):
        ClusterRecord(id="c", status=old, port=1).moved_to(new)


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [("creating", "available", True), ("available", "rebooting", True), ("rebooting", "available", True),
     ("stopped", "starting", True), ("deleting", "available", False), ("stopped", "rebooting", False),
     ("available", "creating", False), ("failed", "rebooting", True)],
)  # fmt: skip
def test_instance_moves(old: str, new: str, ok: bool) -> None:
    record = InstanceRecord(id="i", cluster="c", status=old, role="reader", port=1)
    if ok:
        assert record.moved_to(new).status == new
    else:
        with pytest.raises(InvalidTransition):
            record.moved_to(new)


def test_tables_are_closed() -> None:
    # Every status a table moves to is itself a row of the table: no status without a way out.
    for table in (CLUSTER_TRANSITIONS, INSTANCE_TRANSITIONS):
        for targets in table.values():
            assert targets <= set(table)
    assert SERVING <= SHOULD_RUN
    assert "rebooting" in SHOULD_RUN and "rebooting" not in SERVING
