"""Pure tests: a request's change to a record it read is written with compare-and-set (``save_changes``), so
what the reconciler (or anyone) changed in the record meanwhile is kept, and a status that moved is noticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from borealis.control import InvalidTransition, StaleRecord
from borealis.control._plane import save_changes
from borealis.control._records import CLUSTER_TRANSITIONS, INSTANCE_TRANSITIONS
from borealis.store import Store, Table, Versioned


def _store(tmp_path: Path) -> tuple[Store, Table]:
    store = Store(tmp_path / "s.db")
    table = store.table("clusters")
    table.put("c1", {"id": "c1", "status": "available", "scaling": {"min": 0.5}, "http_endpoint": False})
    return store, table


def test_a_change_made_meanwhile_is_kept(tmp_path: Path) -> None:
    _, table = _store(tmp_path)
    before = table.get("c1")
    assert before is not None
    # The reconciler writes its own field between the request's read and its write.
    table.put("c1", {**before, "password_applied": 3})
    after = {**before, "http_endpoint": True}
    written = save_changes(table, before, after, CLUSTER_TRANSITIONS)
    assert written == table.get("c1")
    assert written == {**before, "http_endpoint": True, "password_applied": 3}


def test_a_write_that_races_another_is_done_again_on_the_fresh_record(tmp_path: Path) -> None:
    store, table = _store(tmp_path)
    before = table.get("c1")
    assert before is not None

    class Racing(Table):
        """Someone else writes right after each of the first two reads: the compare-and-set must fail twice."""

        raced = 0

        def read(self, key: str) -> Versioned | None:
            found = super().read(key)
            if self.raced < 2:
                self.raced += 1
                table.put(key, {**table.get(key), f"step{self.raced}": True})  # type: ignore[dict-item]
            return found

    racing = Racing(store, "clusters")
    save_changes(racing, before, {**before, "scaling": {"min": 0}}, CLUSTER_TRANSITIONS)
    assert racing.raced == 2
    assert table.get("c1") == {**before, "scaling": {"min": 0}, "step1": True, "step2": True}


def test_a_status_that_moved_meanwhile_refuses_the_change(tmp_path: Path) -> None:
    _, table = _store(tmp_path)
    before = table.get("c1")
    assert before is not None
    table.put("c1", {**before, "status": "failing-over"})
    with pytest.raises(StaleRecord) as info:
        save_changes(table, before, {**before, "status": "stopping"}, CLUSTER_TRANSITIONS)
    assert (info.value.kind, info.value.key, info.value.status) == ("cluster", "c1", "failing-over")
    assert table.get("c1") == {**before, "status": "failing-over"}
    # A change that does not depend on the status (tags) is written all the same, the status kept.
    tags: list[dict[str, Any]] = [{"Key": "k", "Value": "v"}]
    save_changes(table, before, {**before, "tags": tags}, CLUSTER_TRANSITIONS, same_status=False)
    assert table.get("c1") == {**before, "status": "failing-over", "tags": tags}


def test_removed_fields_go_and_status_moves_are_checked(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    instances = store.table("instances")
    instances.put("i1", {"id": "i1", "status": "available", "paused": True})
    before = instances.get("i1")
    assert before is not None
    save_changes(instances, before, {"id": "i1", "status": "rebooting"}, INSTANCE_TRANSITIONS)
    assert instances.get("i1") == {"id": "i1", "status": "rebooting"}
    with pytest.raises(InvalidTransition):
        save_changes(
            instances, {"id": "i1", "status": "rebooting"}, {"id": "i1", "status": "creating"}, INSTANCE_TRANSITIONS
        )
    assert save_changes(instances, {"id": "gone", "status": "available"}, {"id": "gone"}, INSTANCE_TRANSITIONS) is None
