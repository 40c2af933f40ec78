"""A deleted cluster's retained automated backups: kept apart from a new cluster of the same name, trimmed by
retention, and gone once the retention period has passed since the deletion (no postgres: a stand-in plane)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest

from borealis.config import Settings
from borealis.control._snapshots import SnapshotError, Snapshots
from borealis.store import Sealer, Store

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
RID = "cluster-RETAINEDEXAMPLE"


class _Plane:
    """What Snapshots and Backups ask of the control plane, without servers."""

    def __init__(self, root: Path) -> None:
        self.settings = Settings(data_dir=root)
        self.store = Store(root / "state.db")
        self.clusters = self.store.table("clusters")
        self.sealer = Sealer(root / "key")
        self.events: list[str] = []

    def archive_of(self, cluster_id: str) -> Path:
        return self.settings.data_dir / "clusters" / cluster_id / "archive"

    def cluster(self, ident: str) -> dict[str, Any] | None:
        return self.clusters.get(ident)

    def master_password(self, cluster: dict[str, Any]) -> str:
        return "the master password"

    def emit(self, cluster_id: str, instance_id: str | None, message: str) -> None:
        self.events.append(message)

    def running_writer(self, cluster_id: str) -> None:
        return None


def _wal(segment: int) -> str:
    return f"00000001{0:08X}{segment:08X}"


def _snapshot(snapshots: Snapshots, ident: str, kind: str, days_ago: float, segment: int) -> None:
    completed = (NOW - dt.timedelta(days=days_ago)).isoformat()
    snapshots.table.put(ident, {"id": ident, "cluster": "c1", "type": kind, "status": "available", "percent": 100,
                                "created": completed, "completed": completed, "wal_start": _wal(segment),
                                "source": {}})  # fmt: skip
    snapshots.data(ident).mkdir(parents=True)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[_Plane, Snapshots]:
    plane = _Plane(tmp_path)
    snapshots = Snapshots(cast(Any, plane))
    snapshots.backups.clock = lambda: NOW
    cluster = {"id": "c1", "resource_id": RID, "status": "deleting", "backup_retention": 2,
               "engine": "aurora-postgresql", "master_username": "postgres", "admin_password": "sealed"}  # fmt: skip
    plane.clusters.put("c1", cluster)
    _snapshot(snapshots, "rds:c1-old", "automated", 3, 0x10)
    _snapshot(snapshots, "rds:c1-new", "automated", 1, 0x20)
    _snapshot(snapshots, "manual-1", "manual", 1, 0x20)
    archive = plane.archive_of("c1")
    archive.mkdir(parents=True)
    for segment in (0x0F, 0x10, 0x20, 0x21):
        (archive / f"{_wal(segment)}.gz").write_bytes(b"wal")
    snapshots.backups.retain(cluster)
    plane.clusters.delete("c1")
    return plane, snapshots


def test_retained_backups_are_kept_apart_and_trimmed_by_retention(setup: tuple[_Plane, Snapshots]) -> None:
    plane, snapshots = setup
    backups = snapshots.backups
    home = plane.settings.data_dir / "retained" / RID
    assert not plane.archive_of("c1").exists() and (home / "archive").is_dir()
    [record] = backups.retained()
    assert (record["cluster"], record["retention"], record["deleted"]) == ("c1", 2, NOW.isoformat())
    assert plane.sealer.open(record["source"]["master_password"]) == "the master password"
    # A new cluster called c1 does not see them as its own; the retained set does.
    assert backups.automated("c1") == []
    assert sorted(b.ident for b in backups.automated("", retained=RID)) == ["rds:c1-new", "rds:c1-old"]
    backups.tick()  # retention as for a live cluster: only the WAL no kept backup needs goes
    assert sorted(b.ident for b in backups.automated("", retained=RID)) == ["rds:c1-new", "rds:c1-old"]
    assert sorted(p.name for p in (home / "archive").iterdir()) == [f"{_wal(s)}.gz" for s in (0x10, 0x20, 0x21)]
    window = backups.retained_window(RID)
    assert window is not None and window[0] == NOW - dt.timedelta(days=3)


def test_retained_backups_expire_with_the_retention_period_after_the_deletion(setup: tuple[_Plane, Snapshots]) -> None:
    plane, snapshots = setup
    backups = snapshots.backups
    backups.clock = lambda: NOW + dt.timedelta(days=2, minutes=1)
    backups.tick()
    assert backups.retained() == [] and backups.automated("", retained=RID) == []
    assert not (plane.settings.data_dir / "retained" / RID).exists()
    assert not snapshots.data("rds:c1-old").exists()
    assert snapshots.get("manual-1") is not None  # manual snapshots outlive everything


def test_delete_retained_refuses_unknown_and_live_clusters(setup: tuple[_Plane, Snapshots]) -> None:
    plane, snapshots = setup
    backups = snapshots.backups
    with pytest.raises(SnapshotError) as exc:
        backups.delete_retained("cluster-NOSUCH")
    assert exc.value.code == "DBClusterAutomatedBackupNotFoundFault"
    plane.clusters.put("c2", {"id": "c2", "resource_id": "cluster-LIVE", "status": "available"})
    with pytest.raises(SnapshotError) as exc:
        backups.delete_retained("cluster-LIVE")
    assert exc.value.code == "InvalidDBClusterAutomatedBackupStateFault"
    assert backups.delete_retained(RID)["resource_id"] == RID
    assert backups.retained() == [] and snapshots.get("rds:c1-new") is None
