"""Cluster snapshots: taken from a cluster's writer, kept under ``DATA_DIR/snapshots/<id>``, restored as a volume.

Rules:
- A snapshot's record is written (status ``creating``) before any work; the work runs in a background task
  and moves it to ``available`` (or ``failed``). On start-up, a snapshot still ``creating`` (Borealis died
  half-way) is made again from the start, and a restore still under way is laid down again: both steps
  begin by removing what a half-done run left.
- A snapshot of a cluster whose writer runs is a base backup of it (``pg_basebackup`` over the replication
  role, so writes are not blocked); otherwise (stopped, paused, no instance) it is a copy of the writer's data
  directory, or of the cluster volume, made while no postgres runs on it.
- A snapshot keeps what a restore needs from its source (engine version, master user and its password at
  the time, port, database name, scaling): manual snapshots outlive their cluster.
- A final snapshot (DeleteDBCluster with FinalDBSnapshotIdentifier) holds the cluster's deletion: the
  reconciler deletes the instances (the writer's data goes back to the cluster volume), the volume is copied,
  and only then is the cluster deleted.
- A restore makes a cluster with no instance whose status stays ``creating`` while the snapshot's data is
  copied into its volume (``cp -a --reflink=auto``: a reflink clone where the file system has them); the
  first instance created in it adopts the volume instead of running initdb.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from borealis.control._backups import Backups
from borealis.engine import PostgresServer, backup_start_wal
from borealis.engine._process import run

from ._records import SHOULD_RUN

if TYPE_CHECKING:
    from borealis.control._plane import ControlPlane

__all__ = ["SnapshotError", "Snapshots"]

log = logging.getLogger(__name__)

_COPY_TIMEOUT = 6 * 3600.0
_SETTLE_TIMEOUT = 300.0
_BASEBACKUP_TRIES = 4
_PROGRESS_EVERY = 0.5
_SOURCE_FIELDS = ("engine", "engine_version", "master_username", "port", "database_name", "scaling",
                  "storage_encrypted", "iam_auth", "resource_id", "created", "admin_password")  # fmt: skip


class SnapshotError(Exception):
    """A snapshot operation refused; ``code`` is the AWS error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


async def _copy(src: Path, dest: Path) -> None:
    """Copy a data directory with owners and modes (a reflink clone where the file system supports it)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # -T: dest is the copy itself, never a directory to copy into (should one have come back meanwhile).
    await run(["cp", "-a", "-T", "--reflink=auto", src, dest], None, timeout=_COPY_TIMEOUT, what="cp")


def _initialized(datadir: Path) -> bool:
    return (datadir / "PG_VERSION").is_file() and (datadir / "global" / "pg_control").is_file()


class Snapshots:
    """The DB cluster snapshots of one control plane."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.table = plane.store.table("snapshots")
        self.retained = plane.store.table("retained_backups")
        """Deleted clusters' retained automated backups, by resource id (see ``_backups``)."""
        self.root = plane.settings.data_dir / "snapshots"
        self._tasks: set[asyncio.Task[None]] = set()
        self.backups = Backups(plane, self)
        """Automated backups and point-in-time restores (see ``_backups``)."""

    def get(self, ident: str) -> dict[str, Any] | None:
        """The stored record of a snapshot."""
        return self.table.get(ident)

    def all(self) -> list[dict[str, Any]]:
        """Every snapshot, oldest first."""
        return sorted(self.table.values(), key=lambda d: (d["created"], d["id"]))

    def taking(self, cluster_id: str, *, automated: bool = False) -> bool:
        """Whether a snapshot of the cluster is being made now (an automated backup only if ``automated``:
        it is a base backup of the running writer, never a copy of a resting data directory, so starting the
        cluster need not wait for it)."""
        return any(
            d["cluster"] == cluster_id
            and d["status"] == "creating"
            and not d.get("source_snapshot")
            and (automated or d["type"] != "automated")
            for d in self.table.values()
        )

    def data(self, ident: str) -> Path:
        """Where a snapshot's data directory is."""
        return self.root / ident / "data"

    # ------------------------------------------------------------------------------------------ requests

    def create(
        self, cluster_id: str, ident: str, *, kind: str = "manual", tags: list[Any] | None = None, final: bool = False
    ) -> dict[str, Any]:
        """Record a new snapshot of a cluster (``creating``) and start taking it."""
        cluster = self.plane.cluster(cluster_id)
        if cluster is None:
            raise SnapshotError("DBClusterNotFoundFault", f"DBCluster {cluster_id} not found.")
        if ident in self.table:
            raise SnapshotError("DBClusterSnapshotAlreadyExistsFault", f"Cannot create the snapshot because a "
                                f"snapshot with the identifier {ident} already exists.")  # fmt: skip
        if kind == "manual":
            self._check_quota()
        if not final and cluster["status"] not in ("available", "stopped", "backing-up"):
            raise SnapshotError(
                "InvalidDBClusterStateFault", f"Cannot create a snapshot because the cluster is {cluster['status']}."
            )
        doc: dict[str, Any] = {
            "id": ident,
            "cluster": cluster_id,
            "type": kind,
            "status": "creating",
            "percent": 0,
            "created": _now(),
            "tags": list(tags or []),
            "final": final,
            "source": self.source_of(cluster),
        }
        self.table.put(ident, doc)
        self.spawn(self._make(ident))
        return doc

    def source_of(self, cluster: dict[str, Any]) -> dict[str, Any]:
        """What a restore needs of ``cluster``, as it is now (its master password sealed)."""
        source = {k: cluster.get(k) for k in _SOURCE_FIELDS}
        password = self.plane.master_password(cluster)
        if password is not None:
            source["master_password"] = self.plane.sealer.seal(password)
        return source

    def copy(self, source_id: str, ident: str, tags: list[Any] | None = None) -> dict[str, Any]:
        """Record a copy of an available snapshot (``creating``) and start copying it."""
        source = self.get(source_id)
        if source is None:
            raise SnapshotError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {source_id} not found.")
        if ident in self.table:
            raise SnapshotError("DBClusterSnapshotAlreadyExistsFault", f"Cannot create the snapshot because a "
                                f"snapshot with the identifier {ident} already exists.")  # fmt: skip
        if source["status"] != "available":
            raise SnapshotError("InvalidDBClusterSnapshotStateFault", f"Snapshot {source_id} is not available.")
        self._check_quota()
        doc = {**source, "id": ident, "type": "manual", "status": "creating", "percent": 0, "created": _now(),
               "source_snapshot": source_id, "final": False, "tags": list(tags or [])}  # fmt: skip
        self.table.put(ident, doc)
        self.spawn(self._make(ident))
        return doc

    def _check_quota(self) -> None:
        quota = self.plane.settings.snapshot_quota
        if sum(1 for d in self.table.values() if d["type"] == "manual") >= quota:
            raise SnapshotError("SnapshotQuotaExceededFault", f"Cannot create more than {quota} manual snapshots.")

    def set_attribute(self, ident: str, name: str, add: list[str], remove: list[str]) -> dict[str, Any]:
        """Add and remove values of a manual snapshot's attribute (``restore``: the accounts that may restore it)."""
        doc = self.get(ident)
        if doc is None:
            raise SnapshotError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {ident} not found.")
        if doc["type"] != "manual":
            raise SnapshotError("InvalidDBClusterSnapshotStateFault", f"Only manual snapshots can be shared: {ident}.")
        attributes = dict(doc.get("attributes") or {})
        values = [v for v in attributes.get(name, []) if v not in remove]
        values += [v for v in add if v not in values]
        if len([v for v in values if v != "all"]) > 20:
            raise SnapshotError(
                "SharedSnapshotQuotaExceededFault", "A snapshot can be shared with 20 accounts at most."
            )
        attributes[name] = values
        self._update(ident, attributes=attributes)
        return self.get(ident) or doc

    def forget(self, ident: str) -> None:
        """Remove an automated backup (retention, or its cluster is gone), whatever its state."""
        self.table.delete(ident)
        shutil.rmtree(self.root / ident, ignore_errors=True)

    def delete(self, ident: str) -> dict[str, Any]:
        """Delete a snapshot that is not being made, copied or restored from."""
        doc = self.get(ident)
        if doc is None:
            raise SnapshotError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {ident} not found.")
        busy = doc["status"] == "creating" or any(
            s.get("source_snapshot") == ident and s["status"] == "creating" for s in self.table.values()
        )
        busy = busy or any(
            c.get("restore_from") == ident or (c.get("restore_pitr") or {}).get("backup") == ident
            for c in self.plane.clusters.values()
        )
        if doc["type"] == "automated":
            raise SnapshotError(
                "InvalidDBClusterSnapshotStateFault",
                f"Cannot delete the automated snapshot {ident}: it goes with the retention period or its cluster.",
            )
        if busy:
            raise SnapshotError(
                "InvalidDBClusterSnapshotStateFault", f"Cannot delete the snapshot {ident}: it is in use."
            )
        self.table.delete(ident)
        shutil.rmtree(self.root / ident, ignore_errors=True)
        return {**doc, "status": "deleted"}

    def restore(self, ident: str, cluster_doc: dict[str, Any]) -> None:
        """Store ``cluster_doc`` (a new, ``creating`` cluster) and lay the snapshot's data down as its volume."""
        doc = self.get(ident)
        if doc is None:
            raise SnapshotError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {ident} not found.")
        if doc["status"] != "available":
            raise SnapshotError("InvalidDBClusterSnapshotStateFault", f"Snapshot {ident} is not available.")
        self.plane.put_cluster({**cluster_doc, "restore_from": ident})
        self.spawn(self._restore(cluster_doc["id"]))

    def resume(self) -> None:
        """After a start: finish what a Borealis that stopped or died left half-done."""
        for doc in self.table.values():
            if doc["status"] == "creating":
                self.spawn(self._make(doc["id"]))
        for cluster in self.plane.clusters.values():
            if cluster.get("restore_from"):
                self.spawn(self._restore(cluster["id"]))
        self.backups.resume()
        self.spawn(self.backups.run())

    async def close(self) -> None:
        """Cancel the work under way (it is done again at the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------------------------------ work

    def spawn(self, work: Any) -> None:
        """Run ``work`` in the background until it ends or :meth:`close` cancels it."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _update(self, ident: str, **fields: Any) -> None:
        doc = self.get(ident)
        if doc is not None:
            self.table.put(ident, {**doc, **fields})

    async def _make(self, ident: str) -> None:
        doc = self.get(ident)
        if doc is None or doc["status"] != "creating":
            return
        dest = self.data(ident)
        try:
            shutil.rmtree(dest.parent, ignore_errors=True)
            dest.parent.mkdir(parents=True, mode=0o700)
            progress = asyncio.ensure_future(self._progress(ident, dest, self._expected(doc)))
            try:
                if doc.get("source_snapshot"):
                    src = self.data(doc["source_snapshot"])
                    if _initialized(src):
                        await _copy(src, dest)
                else:
                    await self._take(doc, dest)
            finally:
                progress.cancel()
            self._update(ident, status="available", percent=100, size=_size(dest), empty=not _initialized(dest),
                         completed=_now(), wal_start=backup_start_wal(dest))  # fmt: skip
            self.plane.emit(doc["cluster"], None, f"snapshot {ident} available")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("snapshot %s failed", ident)
            self._update(ident, status="failed")
            self.plane.emit(doc["cluster"], None, f"snapshot {ident} failed: {exc}")
        if doc.get("final"):
            # The cluster's deletion waited for this snapshot; a failed one does not keep it (AWS neither).
            self.plane.final_snapshot_done(doc["cluster"])

    def _expected(self, doc: dict[str, Any]) -> int:
        """About how many bytes the snapshot will hold (its source's size), for PercentProgress."""
        if doc.get("source_snapshot"):
            return int((self.get(doc["source_snapshot"]) or {}).get("size") or 0)
        writer = self.plane.running_writer(doc["cluster"])
        source = writer.datadir if writer is not None else self.plane.resting_data(doc["cluster"])
        return _size(source) if source is not None else 0

    async def _progress(self, ident: str, dest: Path, expected: int) -> None:
        """Move PercentProgress with the bytes copied so far (at most 99 until the snapshot is available)."""
        while expected > 0:
            await asyncio.sleep(_PROGRESS_EVERY)
            percent = min(99, 100 * _size(dest) // expected)
            doc = self.get(ident)
            if doc is None or doc["status"] != "creating":
                return
            if percent > doc.get("percent", 0):
                self._update(ident, percent=percent)

    async def _take(self, doc: dict[str, Any], dest: Path) -> None:
        cid = doc["cluster"]
        if doc.get("final"):
            # The reconciler deletes the instances first; the writer's data goes back to the cluster volume.
            await self.plane.wait_for(lambda: not self.plane.cluster_instances(cid), _COPY_TIMEOUT)
        if self.plane.cluster(cid) is None:
            raise RuntimeError(f"the cluster {cid} was deleted before its snapshot was made")
        await self._settled(cid)
        writer = self.plane.running_writer(cid)
        if writer is not None:
            passfile = dest.parent / "replication.pass"
            server = PostgresServer(dest, writer.binaries, port=5432, host="127.0.0.1", log_dir=dest.parent / "log")
            self.plane.emit(cid, None, f"snapshot {doc['id']}: base backup of the writer")
            for attempt in range(_BASEBACKUP_TRIES):
                try:
                    source = await self.plane.replication_source(cid, f"snapshot-{doc['id']}", passfile)
                    await server.basebackup(source)
                    break
                except Exception:
                    # A writer still starting up (or failing over) refuses a replication connection for a moment.
                    if attempt == _BASEBACKUP_TRIES - 1:
                        raise
                    log.warning("snapshot %s: base backup failed, trying again", doc["id"], exc_info=True)
                    shutil.rmtree(dest, ignore_errors=True)
                    await asyncio.sleep(1.0 + attempt)
                    await self._settled(cid)
            server.set_standby(False)
            passfile.unlink(missing_ok=True)
            return
        if doc["type"] == "automated":
            raise RuntimeError("the writer stopped before its automated backup was taken")  # taken again later
        src = self.plane.resting_data(cid)
        if src is not None:
            self.plane.emit(cid, None, f"snapshot {doc['id']}: copying the stopped writer's data directory")
            await _copy(src, dest)

    async def _settled(self, cid: str) -> None:
        """Wait until the cluster's writer serves or is meant to rest (stopped, paused, none).

        After a start the reconciler brings instances back while unfinished snapshots resume: copying a writer's
        data directory as postgres starts on it gives a torn copy, and a base backup needs the writer serving.
        """
        deadline = time.monotonic() + _SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            writer = self.plane.topology.writer(cid)
            if writer is None or writer.status not in SHOULD_RUN:
                return
            if writer.ready and self.plane.running_writer(cid) is not None:
                return
            await asyncio.sleep(0.2)

    async def lay_down_volume(
        self, cid: str, what: str, lay_down: Callable[[Path], Awaitable[bool]], done: str | None = None
    ) -> None:
        """End a restore into cluster ``cid``: ``lay_down`` fills a staging directory (False: nothing to lay
        down, the cluster starts empty), which then becomes the cluster's volume, and the restore is done.

        A failure is logged (as ``what`` into ``cid``), told as an event, and ends the restore as failed; a
        cancellation (Borealis stopping) leaves the restore to be done again at the next start.
        """
        volume = self.plane.volume_of(cid)
        staging = volume.with_name("volume.restoring")
        try:
            if await lay_down(staging):
                shutil.rmtree(volume, ignore_errors=True)
                staging.rename(volume)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s into %s failed", what, cid)
            self.plane.emit(cid, None, f"restore failed: {exc}")
            self.plane.restore_done(cid, failed=True)
            return
        if done is not None:
            self.plane.emit(cid, None, done)
        self.plane.restore_done(cid, failed=False)

    async def _restore(self, cid: str) -> None:
        cluster = self.plane.cluster(cid)
        if cluster is None or not cluster.get("restore_from"):
            return
        ident = cluster["restore_from"]
        src = self.data(ident)

        async def lay_down(staging: Path) -> bool:
            if not _initialized(src):
                return False  # a snapshot of a cluster that never had data: its first instance runs initdb
            self.plane.emit(cid, None, f"restoring snapshot {ident}")
            await _copy(src, staging)
            return True

        await self.lay_down_volume(cid, f"restoring {ident}", lay_down)
