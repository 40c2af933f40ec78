"""Continuous backup: automated base backups, their retention, the restorable window, point-in-time restore.

Rules:
- Every cluster's writer archives its WAL into the cluster's archive (``engine._archive``). A base backup of
  the running writer (``pg_basebackup``, as a snapshot is taken) is an ``automated`` snapshot named as AWS
  names them (``rds:<cluster>-YYYY-MM-DD-HH-MM``): the first once a cluster's writer is up, then one every
  ``backup_interval_minutes``. A paused or stopped cluster gets none (nothing changes while it rests).
- Retention (:func:`plan_retention`, pure): automated backups completed before the BackupRetentionPeriod
  window go, except the newest of them, which is what restores to the window's first moments; archived WAL
  older than the first segment the oldest kept backup needs goes too. A deleted cluster's automated backups
  go with it, unless DeleteDBCluster was asked to keep them (``DeleteAutomatedBackups`` false).
- Retained automated backups (a deleted cluster's, keyed by its resource id, as AWS keys them): its automated
  snapshots and its archive (moved to ``DATA_DIR/retained/<resource id>``) with what a restore needs of the
  cluster. Retention goes on as for the cluster, and when the retention period has passed since the
  deletion, all of it goes (nothing new is archived, so AWS's retained backups expire completely too).
  RestoreDBClusterToPointInTime restores from them by SourceDbClusterResourceId up to the deletion.
- The restorable window runs from the oldest automated backup's completion to now while the writer runs (a
  restore closes the writer's current WAL segment itself, so every commit up to the request is in the
  archive), or to the time of the newest archived file while the cluster rests (its last segment was
  archived when it stopped).
- A point-in-time restore stores the new cluster first (``creating``, its plan under ``restore_pitr``); the
  work then copies the chosen base backup into the new cluster's volume, replays the source's archive up to
  the target in a postgres of its own (which archives its new timeline into the new cluster's archive), and
  stops it; the first instance of the new cluster adopts the volume. After a restart the work starts over.
- A clone (RestoreType ``copy-on-write``) restores to the latest time with a reflink copy where the file
  system has them (each side then writes its own blocks), else a full copy; an event says which. Hard links
  are never used: postgres rewrites data files in place, so a linked file would change the backup too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from borealis.control._ports import free_port
from borealis.control._roles import ADMIN_USER
from borealis.engine import (
    EngineError,
    PostgresServer,
    archive_path,
    archive_settings,
    archived_files,
    recovery_settings,
)
from borealis.engine._process import run

if TYPE_CHECKING:
    from borealis.control._plane import ControlPlane
    from borealis.control._snapshots import Snapshots

__all__ = [
    "BACKUP_TICK",
    "RETRY_AFTER",
    "Backup",
    "Backups",
    "Retention",
    "backup_due",
    "choose_base",
    "plan_retention",
    "restorable_window",
]

log = logging.getLogger(__name__)

BACKUP_TICK = 10.0
"""Seconds between two looks at which cluster needs a base backup or a retention pass."""
RETRY_AFTER = dt.timedelta(minutes=1)
"""How long after a failed automated backup the next attempt waits."""
_RECOVERY_TIMEOUT = 6 * 3600.0
_SEAL_TIMEOUT = 600.0
_NOT_REACHED = "recovery ended before configured recovery target was reached"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------------------------------- pure rules


@dataclass(frozen=True)
class Backup:
    """An automated base backup: when it became usable and the first archived WAL segment it needs."""

    ident: str
    completed: dt.datetime
    wal_start: str | None


@dataclass(frozen=True)
class Retention:
    """What a retention pass removes: automated backups (by id) and archived WAL files (by name)."""

    backups: tuple[str, ...]
    wal: tuple[str, ...]


def _segment(name: str) -> str | None:
    """The log and segment part of a WAL file name (timeline left out, as pg_archivecleanup compares)."""
    head = name[:24]
    if len(head) == 24 and all(c in "0123456789ABCDEF" for c in head):
        return head[8:]
    return None  # a timeline history file, kept: they are tiny and every later timeline needs them


def plan_retention(backups: Sequence[Backup], wal: Sequence[str], days: int, now: dt.datetime) -> Retention:
    """What goes when ``days`` of restorable time are kept at ``now`` (see the module's rules)."""
    cutoff = now - dt.timedelta(days=days)
    ordered = sorted(backups, key=lambda b: b.completed)
    before = [b for b in ordered if b.completed < cutoff]
    drop = before[:-1]  # the newest backup before the window restores to its start
    kept = ordered[len(drop) :]
    first = _segment(kept[0].wal_start) if kept and kept[0].wal_start else None
    if first is None:
        return Retention(tuple(b.ident for b in drop), ())
    old = [n for n in wal if (seg := _segment(n)) is not None and seg < first]
    return Retention(tuple(b.ident for b in drop), tuple(old))


def backup_due(
    last: dt.datetime | None, now: dt.datetime, interval: dt.timedelta, failed: dt.datetime | None = None
) -> bool:
    """Whether a cluster whose newest automated backup completed at ``last`` needs another one (not within
    :data:`RETRY_AFTER` of a failed attempt at ``failed``: a writer that cannot be backed up is not hammered)."""
    if failed is not None and now - failed < RETRY_AFTER:
        return False
    return last is None or now - last >= interval


def restorable_window(backups: Sequence[Backup], latest: dt.datetime | None) -> tuple[dt.datetime, dt.datetime] | None:
    """Earliest and latest restorable times, or None while there is no base backup to restore from."""
    if not backups or latest is None:
        return None
    earliest = min(b.completed for b in backups)
    return earliest, max(earliest, latest)


def choose_base(backups: Sequence[Backup], target: dt.datetime | None) -> Backup | None:
    """The newest backup completed by ``target`` (the newest of all for the latest time)."""
    usable = [b for b in backups if target is None or b.completed <= target]
    return max(usable, key=lambda b: b.completed, default=None)


# ---------------------------------------------------------------------------------------------- the work


def _last_archived(archive: Path) -> dt.datetime | None:
    """When ``archive`` last grew (None while it is empty)."""
    names = archived_files(archive)
    if not names:
        return None
    # Names sort by timeline, then position: the greatest is the file archived last.
    newest = archive_path(archive, max(names)).stat().st_mtime
    return dt.datetime.fromtimestamp(newest, dt.UTC)


def _reflinks(directory: Path) -> bool:
    """Whether the file system under ``directory`` makes reflink (copy-on-write) copies."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".reflink-probe"
    copy = directory / ".reflink-probe.copy"
    try:
        probe.write_bytes(b"borealis")
        result = subprocess.run(["cp", "--reflink=always", probe, copy], capture_output=True, timeout=30)
        return result.returncode == 0
    finally:
        probe.unlink(missing_ok=True)
        copy.unlink(missing_ok=True)


class Backups:
    """The automated backups and point-in-time restores of one control plane."""

    def __init__(self, plane: ControlPlane, snapshots: Snapshots, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.plane = plane
        self.snapshots = snapshots
        self.clock = clock
        self._failed: dict[str, dt.datetime] = {}

    # ------------------------------------------------------------------------------------------ queries

    def automated(self, cluster_id: str, *, retained: str | None = None) -> list[Backup]:
        """The available automated backups of a cluster (of the deleted one whose resource id is ``retained``)."""
        out = []
        for doc in self.snapshots.all():
            if doc["type"] != "automated" or doc["status"] != "available" or doc.get("retained") != retained:
                continue
            if retained is not None or doc["cluster"] == cluster_id:
                completed = dt.datetime.fromisoformat(doc.get("completed") or doc["created"])
                out.append(Backup(doc["id"], completed, doc.get("wal_start")))
        return out

    def latest(self, cluster_id: str) -> dt.datetime | None:
        """The latest restorable time: now while the writer runs, else when the archive last grew."""
        if self.plane.running_writer(cluster_id) is not None:
            return self.clock()
        return _last_archived(self.plane.archive_of(cluster_id))

    def window(self, cluster_id: str) -> tuple[dt.datetime, dt.datetime] | None:
        """Earliest and latest restorable times of a cluster (None before its first automated backup)."""
        with contextlib.suppress(OSError):
            return restorable_window(self.automated(cluster_id), self.latest(cluster_id))
        return None

    # ------------------------------------------------------------------------------------------ retained

    def retained_dir(self, resource_id: str) -> Path:
        """Where a deleted cluster's retained archive is kept."""
        return self.plane.settings.data_dir / "retained" / resource_id

    def retained(self) -> list[dict[str, Any]]:
        """Every retained automated backup (of deleted clusters), oldest deletion first."""
        return sorted(self.snapshots.retained.values(), key=lambda d: (d["deleted"], d["resource_id"]))

    def retained_window(self, resource_id: str) -> tuple[dt.datetime, dt.datetime] | None:
        """Earliest and latest restorable times of a retained automated backup (None: nothing to restore)."""
        with contextlib.suppress(OSError):
            latest = _last_archived(self.retained_dir(resource_id) / "archive")
            return restorable_window(self.automated("", retained=resource_id), latest)
        return None

    def retain(self, cluster: dict[str, Any]) -> None:
        """Keep a cluster's automated backups and archive past its deletion (it is being deleted now)."""
        rid, cid = cluster["resource_id"], cluster["id"]
        home = self.retained_dir(rid)
        home.mkdir(parents=True, exist_ok=True)
        archive = self.plane.archive_of(cid)
        if archive.is_dir():
            archive.rename(home / "archive")
        for doc in self.snapshots.all():
            if doc["type"] == "automated" and doc["cluster"] == cid and not doc.get("retained"):
                self.snapshots.table.put(doc["id"], {**doc, "retained": rid})
        record = {
            "resource_id": rid,
            "cluster": cid,
            "deleted": self.clock().isoformat(),
            "retention": int(cluster.get("backup_retention") or 1),
            "source": self.snapshots.source_of(cluster),
        }
        self.snapshots.retained.put(rid, record)
        self.plane.emit(cid, None, f"automated backups retained as {rid}")

    def delete_retained(self, resource_id: str) -> dict[str, Any]:
        """Remove a retained automated backup now (DeleteDBClusterAutomatedBackup); its record as it was."""
        from borealis.control._snapshots import SnapshotError

        record = self.snapshots.retained.get(resource_id)
        if record is None:
            if any(c.get("resource_id") == resource_id for c in self.plane.clusters.values()):
                raise SnapshotError("InvalidDBClusterAutomatedBackupStateFault", "The automated backups of "
                                    f"{resource_id} belong to a cluster that exists.")  # fmt: skip
            raise SnapshotError("DBClusterAutomatedBackupNotFoundFault", f"No automated backup for {resource_id}.")
        if self._restoring_from(resource_id):
            raise SnapshotError("InvalidDBClusterAutomatedBackupStateFault", f"The automated backups of "
                                f"{resource_id} are being restored from.")  # fmt: skip
        self._drop_retained(resource_id)
        return record

    def _restoring_from(self, resource_id: str) -> bool:
        return any((c.get("restore_pitr") or {}).get("retained") == resource_id for c in self.plane.clusters.values())

    def _drop_retained(self, resource_id: str) -> None:
        for doc in self.snapshots.all():
            if doc.get("retained") == resource_id:
                self.snapshots.forget(doc["id"])
        shutil.rmtree(self.retained_dir(resource_id), ignore_errors=True)
        self.snapshots.retained.delete(resource_id)

    def _expire_retained(self, now: dt.datetime) -> None:
        """Retention on retained backups; all of one goes once its retention period has passed since deletion."""
        for record in self.retained():
            rid = record["resource_id"]
            if self._restoring_from(rid):
                continue
            days = int(record["retention"])
            if now - dt.datetime.fromisoformat(record["deleted"]) > dt.timedelta(days=days):
                self._drop_retained(rid)
                continue
            archive = self.retained_dir(rid) / "archive"
            self._apply(plan_retention(self.automated("", retained=rid), archived_files(archive), days, now), archive)

    def _apply(self, retention: Retention, archive: Path) -> None:
        for ident in retention.backups:
            self.snapshots.forget(ident)
        for name in retention.wal:
            archive_path(archive, name).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Take the base backups that are due and apply retention, every :data:`BACKUP_TICK` seconds."""
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("automated backups: a pass failed")
            await asyncio.sleep(BACKUP_TICK)

    def tick(self) -> None:
        """One pass: start the due base backups, drop what retention and deleted clusters leave behind."""
        now = self.clock()
        interval = dt.timedelta(minutes=self.plane.settings.backup_interval_minutes)
        for doc in self.snapshots.all():
            if doc["type"] == "automated" and doc["status"] != "creating" and not doc.get("retained"):
                cluster = self.plane.cluster(doc["cluster"])
                if doc["status"] == "failed":
                    self._failed[doc["cluster"]] = now
                if cluster is None or doc["status"] == "failed":
                    self.snapshots.forget(doc["id"])
        for cluster in self.plane.clusters.values():
            cid = cluster["id"]
            backups = self.automated(cid)
            archive = self.plane.archive_of(cid)
            days = int(cluster.get("backup_retention") or 1)
            self._apply(plan_retention(backups, archived_files(archive), days, now), archive)
            if cluster["status"] != "available" or self.snapshots.taking(cid, automated=True):
                continue
            if self.plane.running_writer(cid) is None:
                continue
            last = max((b.completed for b in backups), default=None)
            if backup_due(last, now, interval, self._failed.get(cid)):
                ident = f"rds:{cid}-{now:%Y-%m-%d-%H-%M}"
                if self.snapshots.get(ident) is None:
                    self.snapshots.create(cid, ident, kind="automated")
        self._expire_retained(now)

    # ------------------------------------------------------------------------------------------ restore

    def restore(
        self,
        source_id: str,
        target: dt.datetime | None,
        cluster_doc: dict[str, Any],
        *,
        clone: bool,
        retained: str | None = None,
    ) -> None:
        """Store ``cluster_doc`` (a new, ``creating`` cluster) and restore ``source_id`` at ``target`` into it
        (from the retained automated backup whose resource id is ``retained``, if given).

        ``target`` None is the latest restorable time. Raises ``SnapshotError`` when no backup covers it.
        """
        from borealis.control._snapshots import SnapshotError

        base = choose_base(self.automated(source_id, retained=retained), target)
        if base is None:
            raise SnapshotError("InvalidRestoreFault", f"DBCluster {source_id} has no backup to restore from yet.")
        plan = {
            "source": source_id,
            "backup": base.ident,
            "target": None if target is None else target.isoformat(),
            "clone": clone,
            "retained": retained,
        }
        self.plane.put_cluster({**cluster_doc, "restore_pitr": plan})
        self.snapshots.spawn(self._restore(cluster_doc["id"]))

    def resume(self) -> None:
        """After a start: restores a stopped or killed Borealis left half-done start over."""
        for cluster in self.plane.clusters.values():
            if cluster.get("restore_pitr"):
                self.snapshots.spawn(self._restore(cluster["id"]))

    async def _seal(self, source_id: str) -> None:
        """Have every commit of the source's running writer archived: one more commit (so that any time up to
        now lies before a commit, as recovery wants), then a segment switch, then wait for the archiver."""
        server = self.plane.running_writer(source_id)
        if server is None:
            return
        conn = await psycopg.AsyncConnection.connect(server.internal_conninfo(user=ADMIN_USER), autocommit=True)
        async with conn:
            await conn.execute("SELECT pg_current_xact_id()")
            row = await (await conn.execute("SELECT pg_walfile_name(pg_switch_wal())")).fetchone()
        assert row is not None
        wanted = archive_path(self.plane.archive_of(source_id), str(row[0]))
        if not await self.plane.wait_for(wanted.exists, _SEAL_TIMEOUT):
            raise RuntimeError(f"the WAL segment {row[0]} of {source_id} was not archived in time")

    async def _restore(self, cid: str) -> None:
        cluster = self.plane.cluster(cid)
        if cluster is None or not cluster.get("restore_pitr"):
            return
        plan = cluster["restore_pitr"]
        source = plan["source"]
        target = dt.datetime.fromisoformat(plan["target"]) if plan.get("target") else None
        retained = plan.get("retained")
        archive = self.retained_dir(retained) / "archive" if retained else self.plane.archive_of(source)

        async def lay_down(staging: Path) -> bool:
            if not retained:  # a deleted cluster archived everything as it stopped
                await self._seal(source)
            base = self.snapshots.data(plan["backup"])
            await self._lay_down(cid, base, staging, clone=bool(plan.get("clone")))
            if not await self._recover(cid, cluster, staging, archive, target):
                # Every archived commit is before the target: replaying all of them is the state at the target.
                await self._lay_down(cid, base, staging, clone=bool(plan.get("clone")), quiet=True)
                await self._recover(cid, cluster, staging, archive, None)
            return True

        done = f"restored {source} to {plan.get('target') or 'its latest restorable time'}"
        await self.snapshots.lay_down_volume(cid, f"point-in-time restore of {source}", lay_down, done)

    async def _lay_down(self, cid: str, base: Path, staging: Path, *, clone: bool, quiet: bool = False) -> None:
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        reflink = clone and _reflinks(staging.parent)
        if not quiet:
            how = (
                "a reflink (copy-on-write) copy"
                if reflink
                else "a full copy (the file system has no reflinks)"
                if clone
                else "a full copy"
            )
            self.plane.emit(cid, None, f"restoring the base backup as {how}")
        mode = "--reflink=always" if reflink else "--reflink=never"
        await run(["cp", "-a", "-T", mode, base, staging], None, timeout=_RECOVERY_TIMEOUT, what="cp")

    async def _recover(
        self, cid: str, cluster: dict[str, Any], datadir: Path, source: Path, target: dt.datetime | None
    ) -> bool:
        """Replay the archive ``source`` on ``datadir`` up to ``target``; False if the archive ends before it."""
        log_dir = datadir.with_name("restore-log")
        server = PostgresServer(
            datadir, self.plane.binaries_for(cluster), port=free_port("127.0.0.1"), host="127.0.0.1", log_dir=log_dir
        )
        server.enable_wal_archiving(self.plane.archive_of(cid))
        # "on", not "always": the segments it replays are the source's, already in the source's archive.
        settings = archive_settings(self.plane.archive_of(cid), self.plane.settings.archive_timeout, "on")
        server.configure({**settings, **recovery_settings(source, target)})
        server.set_standby(False)
        server.set_recovery()
        self.plane.emit(cid, None, "replaying the archived WAL")
        try:
            await server.start(timeout=_RECOVERY_TIMEOUT)
            while not await self._promoted(server):
                if not server.status().running:
                    raise EngineError(f"postgres stopped during recovery\n{server.log_file.read_text()[-2000:]}")
                await asyncio.sleep(0.2)
        except EngineError as exc:
            if _NOT_REACHED in str(exc) and target is not None:
                return False
            raise
        finally:
            await server.stop()
        return True

    @staticmethod
    async def _promoted(server: PostgresServer) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(
                server.internal_conninfo(user=ADMIN_USER), autocommit=True, connect_timeout=10
            )
        except psycopg.OperationalError:
            return False
        async with conn:
            row = await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone()
        return row is not None and not row[0]
