"""The control plane: clusters and instances, written to the store first and then made so.

Rules:
- Every API call validates, writes the new desired state (with a transitional status such as ``creating`` or
  ``stopping``) to the store, kicks the reconciler and returns at once, as AWS does. Status moves are checked
  against the transition tables of ``_records``.
- The reconciler (``_reconciler``) observes every postgres, plans with a pure function and runs each step in
  an executor, on kicks and on a periodic tick (``TICK``): a long step never blocks another instance's, and
  a postgres that dies is seen at once (its watcher) and one that hangs within a tick or two (its probe).
- Routing questions (where is the writer, which readers are up) are answered by the topology
  (``_topology``), rebuilt whenever something it depends on changes; the listeners, the proxy, the Data API
  and the API workers all ask it.
- A cluster owns its storage volume (``clusters/<id>/volume``): instances come and go, the data stays, as
  with Aurora's shared cluster volume. The writer instance runs postgres on that volume.
- On start-up (after a clean stop or a crash) every cluster is simply reconciled again: the steps are
  idempotent, so a half-done creation or deletion is finished, and servers left running are restarted.
- Records are written by compare-and-set: the reconciler's own moves through ``_update_cluster`` /
  ``_update_instance``, and API requests through :meth:`ControlPlane.save_cluster` / ``save_instance``, which
  write only the fields the request changed (:class:`StaleRecord` if the status it checked has moved).
- The plane acts only while it holds the store's lease (renewed every tick): if another holder has it (a
  plane on another host sharing the store) it stands down, cancelling its steps, until it gets it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import shutil
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from borealis.config import Settings
from borealis.control import _roles
from borealis.control._endpoints import Endpoints
from borealis.control._events import EventLog, Kinds
from borealis.control._failover import choose_writer
from borealis.control._listener import EndpointUnavailable, IamLogin, Listener
from borealis.control._names import generate_password
from borealis.control._ports import free_port, port_free
from borealis.control._reconciler import Action, Executor, Observation, plan, sync_standbys
from borealis.control._records import (
    CLUSTER_TRANSITIONS,
    INSTANCE_TRANSITIONS,
    ClusterRecord,
    InstanceRecord,
    check_transition,
)
from borealis.control._roles import ADMIN_USER
from borealis.control._snapshots import Snapshots
from borealis.control._topology import Address, ClusterView, Topology, Unavailable, build_view
from borealis.engine import (
    Binaries,
    EngineError,
    PostgresServer,
    archive_settings,
    aurora_defaults,
    full_version,
    replication_conninfo,
    restore_command,
)
from borealis.store import Conflict, Sealer, Store, Table

__all__ = ["ADMIN_USER", "TICK", "ControlPlane", "Event", "FailoverRefused", "StaleRecord", "max_connections_for"]

log = logging.getLogger(__name__)


TICK = 1.0
SYNC_GRACE = 10.0
"""Seconds a reader stays a synchronous standby after it started or last streamed (see ``sync_standbys``)."""
"""Seconds between two reconciler passes when nothing kicks it."""
PROBE_TIMEOUT = 2.0
"""A postgres that does not answer its probe within this is unhealthy."""
_RETRY_FIRST, _RETRY_MAX = 1.0, 30.0  # back-off after a failed step, before the same step is tried again
_R = TypeVar("_R", ClusterRecord, InstanceRecord)
_LEASE = "control-plane"
_LEASE_TTL = 10 * TICK


def _own_settings(cluster: dict[str, Any]) -> dict[str, str]:
    """The settings Borealis gives every postgres of a cluster."""
    return {"max_connections": str(max_connections_for(cluster["scaling"]["max"]))}


def max_connections_for(max_acu: float) -> int:
    """Aurora PostgreSQL's default max_connections for a Serverless v2 maximum capacity.

    AWS derives it from the memory of the maximum ACU (about 2 GiB an ACU): 1 ACU gives 189, 4 give 823,
    8 give 1,669, 16 give 3,360, and 32 or more give 5,000; values in between are interpolated.
    """
    points = [(0.5, 90.0), (1.0, 189.0), (4.0, 823.0), (8.0, 1669.0), (16.0, 3360.0), (32.0, 5000.0)]
    if max_acu <= points[0][0]:
        return int(points[0][1])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if max_acu <= x1:
            return round(y0 + (y1 - y0) * (max_acu - x0) / (x1 - x0))
    return 5000


class FailoverRefused(Exception):
    """A failover cannot start now; ``code`` is the AWS error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Event:
    """Progress of a long operation, for the CLI and the logs."""

    cluster: str
    instance: str | None
    message: str


def _cas(
    table: Table,
    key: str,
    load: Callable[[dict[str, Any], int], _R],
    change: Callable[[_R], _R],
    changed: Callable[[], None],
) -> _R | None:
    """Read a record, change it, write it back if the revision is still the one read; again on a conflict."""
    while True:
        found = table.read(key)
        if found is None:
            return None
        record = load(found.doc, found.revision)
        new = change(record)
        if new == record:
            return record
        try:
            table.put(key, new.to_doc(), expect=found.revision)
        except Conflict:
            continue
        changed()
        return new


class StaleRecord(Exception):
    """A record's status moved between the read a request was checked against and its write (see
    :func:`save_changes`); the request should be refused as made against a state that no longer holds."""

    def __init__(self, kind: str, key: str, status: str) -> None:
        super().__init__(f"{kind} {key} is now {status}")
        self.kind = kind
        self.key = key
        self.status = status


def save_changes(
    table: Table,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    transitions: Mapping[str, frozenset[str]],
    *,
    same_status: bool = True,
) -> dict[str, Any] | None:
    """Write the fields a request changed (``after`` against ``before``, the document it read) onto the stored
    document with compare-and-set, so that a change made by someone else meanwhile (the reconciler's status
    moves, a step's bookkeeping) is kept, not overwritten with what the request read.

    Raises :class:`StaleRecord` if the stored status is no longer the one the request was checked against
    (unless ``same_status`` is False: a change that does not depend on it, such as tags); the status move is
    checked against ``transitions``. Returns the document written, or None if it is gone.
    """
    key = str(before["id"])
    changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
    removed = [k for k in before if k not in after]
    while True:
        found = table.read(key)
        if found is None:
            return None
        if same_status and found.doc.get("status") != before.get("status"):
            raise StaleRecord(table.name.rstrip("s"), key, str(found.doc.get("status")))
        doc = {k: v for k, v in found.doc.items() if k not in removed}
        doc.update(changed)
        check_transition(transitions, f"{table.name} {key}", found.doc["status"], doc["status"])
        try:
            table.put(key, doc, expect=found.revision)
        except Conflict:
            continue
        return doc


def _dead_local_holder(holder: str) -> bool:
    """Whether a lease holder (``host:pid:start``) was a process on this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()  # our own pid from an earlier plane in this process (tests)


_PROBE_SQL = """
SELECT pg_is_in_recovery(),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       (CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
             ELSE pg_current_wal_lsn() END) - '0/0'::pg_lsn
"""
# A standby's lag as its primary sees it: 0 once it has replayed everything, else how long ago the WAL it
# replays now was written (replay_lag), as AuroraReplicaLag is measured.
_STANDBYS_SQL = """
SELECT application_name, state,
       CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM replay_lag) * 1000, 0) END
FROM pg_stat_replication
"""
REPLICATION_USER = "rdsrepladmin"
"""The role readers replicate as (Aurora's own name for it)."""
_REPLICATION_SETTINGS = {
    # pg_rewind needs hint-bit changes in the WAL to rejoin a former writer as a reader.
    "wal_log_hints": "on",
    "max_wal_senders": "40",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "recovery_target_timeline": "latest",
}


def _put_checked(table: Table, transitions: Mapping[str, frozenset[str]], kind: str, doc: dict[str, Any]) -> None:
    """Store ``doc`` by compare-and-set on the revision read, its status move checked against ``transitions``."""
    before = table.read(doc["id"])
    if before is not None:
        check_transition(transitions, f"{kind} {doc['id']}", before.doc["status"], doc["status"])
    table.put(doc["id"], doc, expect=0 if before is None else before.revision)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class ControlPlane:
    """Clusters and instances: their records, their postgres servers and their endpoint listeners."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        sealer: Sealer,
        binaries: Binaries,
        engines: Mapping[int, Binaries] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sealer = sealer
        self.binaries = binaries
        """The default engine: clusters created without an EngineVersion run it."""
        self.engines: dict[int, Binaries] = {binaries.version: binaries, **(engines or {})}
        """Every engine by major version; a cluster runs the one of its engine_version."""
        self.clusters = store.table("clusters")
        self.instances = store.table("instances")
        self.root = settings.data_dir / "clusters"
        self.on_event: Callable[[Event], None] = lambda e: None
        self.secret_value: Callable[[str], dict[str, Any]] = lambda arn: {}
        self.delete_secret: Callable[[str], None] = lambda arn: None
        self.extra_ports: Callable[[], set[int]] = set
        self.endpoint_tls: Callable[[str], ssl.SSLContext | None] = lambda host: None
        self.access_key_secret: Callable[[str], str | None] = lambda key_id: None
        self.cluster_parameter: Callable[[dict[str, Any], str], str | None] = lambda cluster, name: None
        """A parameter's value in a cluster's DB cluster parameter group (None: the default)."""
        """The secret access key of an access key id: IAM auth tokens at the endpoints are signed with them."""
        """The TLS context of an endpoint whose host string is given (certificates from Borealis's CA)."""
        self.extra_settings: Callable[[dict[str, Any], dict[str, Any]], dict[str, str]] = lambda cluster, inst: {}
        """Postgres settings an instance runs with on top of Borealis' own (its parameter groups' values), asked
        each time its server starts and by :meth:`reconfigure`."""
        self.before_start: Callable[[dict[str, Any], dict[str, Any], PostgresServer], None] = lambda c, i, s: None
        """Called just before an instance's postgres starts (the scaler writes its capacity settings)."""
        """Ports other parts (proxy endpoints off loopback) hold, so no endpoint gets one twice."""
        self.topology = Topology(self._views)
        self.endpoints = Endpoints(store, settings.host, lambda: self.allocate_port())
        """Custom cluster endpoints (CreateDBClusterEndpoint & co.)."""
        self.events = EventLog(store, settings.region, settings.account_id)
        """The event log (DescribeEvents)."""
        self.on_lag: Callable[[str, str, float], None] = lambda cluster, instance, lag_ms: None
        """Told each reader's replication lag (AuroraReplicaLag, ms) as its writer measures it, every probe."""
        """Where the writer is, which readers are up (see ``_topology``); every router asks it."""
        self._servers: dict[str, PostgresServer] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, Listener] = {}
        self._observed: dict[str, Observation] = {}
        self._exits: dict[str, int] = {}
        self._upstream: dict[str, str] = {}  # reader -> the writer address ("host:port") it was set to follow
        self._sync: dict[str, frozenset[str]] = {}  # writer -> the synchronous standbys it was configured with
        self._lags: dict[str, float] = {}  # reader -> AuroraReplicaLag in ms, as its writer last measured it
        self._ports: dict[str, int] = {}  # instance -> the port its postgres had, tried first at its next start
        self._started: dict[str, float] = {}  # instance -> when its postgres last started (monotonic)
        self._streamed: dict[str, float] = {}  # reader -> when its writer last saw it streaming (monotonic)
        self._conninfo: dict[str, str] = {}  # reader -> its primary_conninfo
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures in a row, monotonic not-before)
        self._executor = Executor(self._step_done)
        self._dirty: set[str] = set()
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._closing = False
        self._changed = asyncio.Condition()
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        """Who holds the store's control-plane lease: host, process, start."""
        self.leading = False
        """Whether this plane holds the store's lease, and so acts (see :meth:`_renew_lease`)."""
        self.snapshots = Snapshots(self)
        """DB cluster snapshots and restores from them (see ``_snapshots``)."""

    # ----------------------------------------------------------------------------------------- queries

    @property
    def engine_version(self) -> str:
        """The engine version of the default engine, as Aurora writes it (``18.6``)."""
        return full_version(self.binaries)

    def engine_version_of(self, major: int) -> str:
        """The full engine version of the engine of a major version (KeyError if none)."""
        return full_version(self.engines[major])

    def binaries_for(self, cluster: Mapping[str, Any]) -> Binaries:
        """The engine a cluster runs: the major version of its engine_version (the default if none)."""
        major = str(cluster.get("engine_version", "")).split(".")[0]
        return self.engines.get(int(major), self.binaries) if major.isdigit() else self.binaries

    @property
    def generation(self) -> int:
        """The topology's generation: grows on every change that may move a route (see ``_topology``)."""
        return self.topology.generation

    def cluster(self, ident: str) -> dict[str, Any] | None:
        """The stored record of a cluster."""
        return self.clusters.get(ident)

    def instance(self, ident: str) -> dict[str, Any] | None:
        """The stored record of an instance."""
        return self.instances.get(ident)

    def cluster_instances(self, cluster_id: str) -> list[dict[str, Any]]:
        """The instances of a cluster, oldest first."""
        return [i for i in self.instances.values() if i["cluster"] == cluster_id]

    def cluster_record(self, ident: str) -> ClusterRecord | None:
        """The typed record of a cluster, with its store revision."""
        found = self.clusters.read(ident)
        return None if found is None else ClusterRecord.from_doc(found.doc, found.revision)

    def instance_record(self, ident: str) -> InstanceRecord | None:
        """The typed record of an instance, with its store revision."""
        found = self.instances.read(ident)
        return None if found is None else InstanceRecord.from_doc(found.doc, found.revision)

    def instance_records(self, cluster_id: str | None = None) -> list[InstanceRecord]:
        """The typed records of a cluster's instances (or of all), oldest first."""
        out = [InstanceRecord.from_doc(v.doc, v.revision) for _, v in self.store.scan(self.instances.name)]
        return out if cluster_id is None else [i for i in out if i.cluster == cluster_id]

    def writer_of(self, cluster_id: str) -> dict[str, Any] | None:
        """The stored record of the cluster's writer (as the topology names it), if it has one."""
        member = self.topology.writer(cluster_id)
        return None if member is None else self.instances.get(member.id)

    def server(self, instance_id: str) -> PostgresServer | None:
        """The running postgres of an instance, if it runs."""
        return self._servers.get(instance_id)

    def observation(self, instance_id: str) -> Observation | None:
        """What the reconciler last saw of an instance's postgres (role, timeline, LSN, health, lag)."""
        return self._observed.get(instance_id)

    def used_ports(self) -> set[int]:
        """Every endpoint port given out so far."""
        ports = {c["port"] for c in self.clusters.values()}
        ports |= {c["reader_port"] for c in self.clusters.values()}
        ports |= {i["port"] for i in self.instances.values()}
        return ports | self.endpoints.used_ports() | self.extra_ports()

    def allocate_port(self, start: int | None = None, *, taken: frozenset[int] = frozenset()) -> int:
        """The first port from ``start`` (the port base) that no endpoint uses and the OS has free."""
        used = self.used_ports() | taken
        port = self.settings.port_base if start is None else start
        while port in used or not port_free(self.settings.host, port):
            port += 1
            if port > 65535:
                raise RuntimeError("no free port left above the port base")
        return port

    def reader_address(self, port: int) -> tuple[str, int]:
        """Where a cluster's reader endpoint listens.

        On AWS the reader endpoint has its own host name and the cluster's port. On the default loopback
        host we do the same with a second loopback address (127.0.0.2), so ``ReaderEndpoint`` + ``Port``
        connects as it does on AWS; on any other host the reader gets a port of its own.
        """
        if self.settings.host == "127.0.0.1" and port_free("127.0.0.2", port):
            return "127.0.0.2", port
        return self.settings.host, self.allocate_port(port + 1, taken=frozenset({port}))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some state change; False on timeout."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            return True

    def _views(self) -> dict[str, ClusterView]:
        """The topology's source: records, plus where each running postgres listens."""
        addresses = {iid: Address(s.host, s.port, s.socket_dir) for iid, s in self._servers.items()}
        lags = {iid: o.lag_ms for iid, o in self._observed.items() if o.lag_ms is not None}
        instances = self.instance_records()
        return {
            doc["id"]: build_view(ClusterRecord.from_doc(doc), instances, addresses, lags)
            for doc in self.clusters.values()
        }

    # ----------------------------------------------------------------------------------------- changes

    def put_cluster(self, doc: dict[str, Any]) -> None:
        """Store a cluster record (its status move checked against the table) and reconcile it."""
        _put_checked(self.clusters, CLUSTER_TRANSITIONS, "cluster", doc)
        self.kick(doc["id"])

    def put_instance(self, doc: dict[str, Any]) -> None:
        """Store an instance record (its status move checked against the table) and reconcile its cluster."""
        _put_checked(self.instances, INSTANCE_TRANSITIONS, "instance", doc)
        self.kick(doc["cluster"])

    def save_cluster(self, before: Mapping[str, Any], after: dict[str, Any], *, same_status: bool = True) -> None:
        """Store what a request changed in a cluster record it read (``before``), by compare-and-set (see
        :func:`save_changes`: :class:`StaleRecord` if its status moved meanwhile), and reconcile it."""
        doc = save_changes(self.clusters, before, after, CLUSTER_TRANSITIONS, same_status=same_status)
        if doc is not None:
            after.update(doc)
            self.topology.changed()
            self.kick(str(before["id"]))

    def save_instance(self, before: Mapping[str, Any], after: dict[str, Any], *, same_status: bool = True) -> None:
        """As :meth:`save_cluster`, for an instance record."""
        doc = save_changes(self.instances, before, after, INSTANCE_TRANSITIONS, same_status=same_status)
        if doc is not None:
            after.update(doc)
            self.topology.changed()
            self.kick(str(before["cluster"]))

    def _update_cluster(self, cid: str, change: Callable[[ClusterRecord], ClusterRecord]) -> ClusterRecord | None:
        """Read, change and write back a cluster record with compare-and-set, retrying on a conflict."""
        return _cas(self.clusters, cid, ClusterRecord.from_doc, change, self.topology.changed)

    def _update_instance(self, iid: str, change: Callable[[InstanceRecord], InstanceRecord]) -> InstanceRecord | None:
        """Read, change and write back an instance record with compare-and-set, retrying on a conflict."""
        return _cas(self.instances, iid, InstanceRecord.from_doc, change, self.topology.changed)

    def request_failover(self, cluster_id: str, target: str | None) -> None:
        """Start a failover of the cluster, to ``target`` or to the best reader (FailoverDBCluster).

        Raises :class:`FailoverRefused` (with the AWS error code) when the cluster cannot fail over now.
        """
        cluster = self.cluster_record(cluster_id)
        if cluster is None:
            raise FailoverRefused("DBClusterNotFoundFault", f"DBCluster {cluster_id} not found.")
        if cluster.status != "available":
            raise FailoverRefused(
                "InvalidDBClusterStateFault", f"DB cluster {cluster_id} is not in available state ({cluster.status})."
            )
        instances = self.instance_records(cluster_id)
        readers = [i for i in instances if not i.is_writer and i.status != "deleting"]
        if target is not None:
            chosen = next((i for i in instances if i.id == target), None)
            if chosen is None:
                raise FailoverRefused("DBInstanceNotFoundFault", f"DBInstance {target} not found.")
            if chosen.is_writer:
                raise FailoverRefused(
                    "InvalidDBInstanceStateFault", f"DB instance {target} is already the writer of {cluster_id}."
                )
            if chosen.status != "available" or chosen.id not in self._servers:
                raise FailoverRefused("InvalidDBInstanceStateFault", f"DB instance {target} is not available.")
        elif not any(i.status == "available" and i.id in self._servers for i in readers):
            raise FailoverRefused(
                "InvalidDBClusterStateFault",
                f"DB cluster {cluster_id} has no available Aurora Replica to fail over to.",
            )

        def ask(c: ClusterRecord) -> ClusterRecord:
            return replace(c.moved_to("failing-over"), extra={**c.extra, "failover_target": target})

        self._update_cluster(cluster_id, ask)
        self.kick(cluster_id)

    def kick(self, cluster_id: str) -> None:
        """Make the reconciler look at the cluster now."""
        self.topology.changed()
        if self._closing:
            return
        self._dirty.add(cluster_id)
        self._wakeup.set()
        self._background.add(asyncio.ensure_future(self._notify()))
        self._background = {t for t in self._background if not t.done()}

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def start(self) -> None:
        """Bring every stored cluster back (after a restart or a crash) and start the reconciler."""
        held = self.store.lease(_LEASE)
        if held is not None and _dead_local_holder(held.holder):
            # A Borealis killed on this host (kill -9) left its lease to expire: take it over at once.
            self.store.release_lease(_LEASE, held.holder)
        deadline = time.monotonic() + _LEASE_TTL + 1.0
        # The data directory's lock already keeps a second Borealis out; the lease is the store's own guard,
        # for the day the store is shared between hosts. A holder we cannot tell is gone is waited out.
        while not self.store.acquire_lease(_LEASE, self._holder, _LEASE_TTL):
            if time.monotonic() > deadline:
                raise RuntimeError("another control plane holds this store's lease")
            await asyncio.sleep(0.5)
        self.leading = True
        for doc in self.clusters.values():
            self.kick(doc["id"])
        self._loop_task = asyncio.ensure_future(self._run())
        self.snapshots.resume()

    async def close(self) -> None:
        """Stop every server and listener; the stored state is kept for the next start."""
        self._closing = True
        await self.snapshots.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._executor.close()
        for task in self._probes.values():
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
        for listener in list(self._listeners.values()):
            await listener.close()
        self._listeners.clear()
        await asyncio.gather(*(self._stop_server(i) for i in list(self._servers)), return_exceptions=True)
        with contextlib.suppress(Exception):
            self.store.release_lease(_LEASE, self._holder)

    def _emit(self, cluster: str, instance: str | None, message: str) -> None:
        log.info("%s%s: %s", cluster, f"/{instance}" if instance else "", message)
        try:
            self.on_event(Event(cluster, instance, message))
        except Exception:  # a progress display must never break the control plane
            log.exception("progress callback failed")

    # ----------------------------------------------------------------------------------------- reconcile

    async def _run(self) -> None:
        """The reconciler loop: a pass over the kicked clusters at once, over every cluster each tick."""
        next_tick = time.monotonic()
        while not self._closing:
            timeout = max(0.0, next_tick - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            self._wakeup.clear()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self._dirty.update(doc["id"] for doc in self.clusters.values())
                await self._renew_lease()
                self._start_probes()
            if not self.leading:
                self._dirty.clear()  # stood down: another plane acts on the store's records now
                continue
            dirty, self._dirty = self._dirty, set()
            for cid in dirty:
                try:
                    await self._pass(cid)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("reconciling cluster %s failed", cid)
                    self._emit(cid, None, f"error: {exc}")
                    self._mark_failed(cid)
            await self._notify()

    async def _renew_lease(self) -> None:
        """Renew the store's lease; stand down (stop acting, cancel the steps under way) if another holder has
        it, as a plane that lost it to another host must, and act again once it gets it back.

        On one host nobody else takes it: the data directory's lock keeps a second Borealis out, and an expired
        lease is simply renewed. It matters once the store is shared between hosts.
        """
        try:
            held = self.store.acquire_lease(_LEASE, self._holder, _LEASE_TTL)
        except Exception:  # a store that cannot be reached: keep acting on what is known, try again next tick
            log.exception("renewing the control-plane lease failed")
            return
        if held == self.leading:
            return
        self.leading = held
        if held:
            log.warning("control plane: holds the store's lease again; acting again")
            self._dirty.update(doc["id"] for doc in self.clusters.values())
            return
        other = self.store.lease(_LEASE)
        log.warning(
            "control plane: the store's lease is held by %s; standing down (no more steps until it is back)",
            other.holder if other is not None else "another plane",
        )
        await self._executor.close()

    async def _pass(self, cid: str) -> None:
        """Observe, plan and act on one cluster."""
        cluster = self.cluster_record(cid)
        if cluster is None:
            return
        if cluster.status != "deleting":
            await self._ensure_listeners(cluster)
        instances = self.instance_records(cid)
        observed = {i.id: self._observe(i.id) for i in instances}
        actions = plan(cluster, instances, observed, self._executor.busy)
        now = time.monotonic()
        for action in actions:
            failed = self._failures.get(action.key())
            if failed is not None and failed[1] > now:
                continue  # a step that just failed waits for its back-off before it is tried again
            log.debug("%s %s: %s", action.kind, action.target, action.reason)
            if action.kind == "cluster-status":
                self._settle_cluster(cid, action)
            elif action.kind == "instance-status":
                self._settle_instance(cid, action)
            else:
                self._executor.submit(action, functools.partial(self._perform, cid, action))

    def _observe(self, iid: str) -> Observation:
        """The last probe's findings, with what the plane itself knows (process, address, configuration)."""
        server = self._servers.get(iid)
        if server is None or not server.status().running:
            return Observation(running=False, exit_code=self._exits.get(iid))
        seen = self._observed.get(iid) or Observation(running=True)
        inst = self.instances.get(iid)
        recent = max(self._started.get(iid, 0.0), self._streamed.get(iid, 0.0))
        return replace(
            seen,
            running=True,
            sync_candidate=inst is not None and inst["role"] != "writer" and time.monotonic() - recent < SYNC_GRACE,
            address=f"{server.host}:{server.port}",
            upstream=self._upstream.get(iid),
            sync=self._sync.get(iid),
            lag_ms=self._lags.get(iid),
        )

    def _settle_cluster(self, cid: str, action: Action) -> None:
        assert action.status is not None
        status = action.status
        before = self.cluster_record(cid)
        self._update_cluster(cid, lambda c: c.moved_to(status))
        self._emit(cid, None, f"cluster {status}")
        kind = {
            ("creating", "available"): Kinds.CLUSTER_CREATED,
            ("starting", "available"): Kinds.CLUSTER_STARTED,
            ("stopping", "stopped"): Kinds.CLUSTER_STOPPED,
        }.get((before.status if before is not None else "", status))
        if kind is not None:
            self.events.record(kind, cid)

    def _settle_instance(self, cid: str, action: Action) -> None:
        assert action.status is not None
        status = action.status
        self._update_instance(action.target, lambda i: i.moved_to(status))
        if status == "available":
            self._emit(cid, action.target, "instance available")

    def _step_done(self, action: Action, error: BaseException | None) -> None:
        """After a step: remember a failure (for the back-off and the statuses), and look again."""
        cid = self._cluster_of(action)
        if error is None:
            self._failures.pop(action.key(), None)
        else:
            count = self._failures.get(action.key(), (0, 0.0))[0] + 1
            delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (count - 1))
            self._failures[action.key()] = (count, time.monotonic() + delay)
            log.error("%s of %s failed: %s", action.kind, action.target, error, exc_info=error)
            if action.kind == "failover":
                self.events.record(Kinds.FAILOVER_FAILED, action.target, error)
            if cid is not None:
                self._emit(cid, None, f"error: {error}")
                self._mark_failed(cid)
        if cid is not None:
            self.kick(cid)

    def _cluster_of(self, action: Action) -> str | None:
        if action.kind in ("failover", "delete-cluster"):
            return action.target
        inst = self.instances.get(action.target)
        return None if inst is None else str(inst["cluster"])

    def _mark_failed(self, cluster_id: str) -> None:
        self._update_cluster(cluster_id, lambda c: c.moved_to("failed") if c.status == "creating" else c)
        for inst in self.instance_records(cluster_id):
            if inst.status in ("creating", "rebooting", "starting"):
                self._update_instance(inst.id, lambda i: i.moved_to("failed"))

    async def _perform(self, cid: str, action: Action) -> None:
        steps: dict[str, Callable[[str, str], Awaitable[None]]] = {
            "start": self._step_start,
            "restart": self._step_start,
            "stop": self._step_stop,
            "pause": self._step_pause,
            "bootstrap": self._step_bootstrap,
            "apply-password": self._step_password,
            "delete-instance": self._step_delete_instance,
            "delete-cluster": self._step_delete_cluster,
            "follow": self._step_follow,
            "sync": self._step_sync,
            "failover": self._step_failover,
        }
        await steps[action.kind](cid, action.target)

    def _start_probes(self) -> None:
        """Probe every running postgres (role, timeline, LSN), each in its own task."""
        for iid, server in list(self._servers.items()):
            task = self._probes.get(iid)
            if task is None or task.done():
                self._probes[iid] = asyncio.ensure_future(self._probe(iid, server))

    async def _probe(self, iid: str, server: PostgresServer) -> None:
        before = self._observed.get(iid)
        try:
            row, standbys = await asyncio.wait_for(self._probe_query(iid, server), PROBE_TIMEOUT)
            streaming = frozenset(name for name, state, _ in standbys if state == "streaming")
            seen = Observation(True, True, bool(row[0]), _int(row[1]), _int(row[2]), streaming=streaming)
            now = time.monotonic()
            for name, state, lag in standbys:
                self._lags[name] = float(lag)
                if state == "streaming":
                    self._streamed[name] = now
                    reader = self.instances.get(name)
                    if reader is not None:
                        self._tell_lag(reader["cluster"], name, float(lag))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("probe of %s failed: %s", iid, exc)
            failures = (before.failures if before is not None else 0) + 1
            seen = Observation(server.status().running, False, failures=failures)
        if self._servers.get(iid) is not server:
            return
        self._observed[iid] = seen
        if before is None or (before.healthy, before.in_recovery, before.streaming, before.failures) != (
            seen.healthy,
            seen.in_recovery,
            seen.streaming,
            seen.failures,
        ):
            inst = self.instances.get(iid)
            if inst is not None:
                self.kick(inst["cluster"])

    def _tell_lag(self, cid: str, iid: str, lag: float) -> None:
        try:
            self.on_lag(cid, iid, lag)
        except Exception:  # a metrics sink must never break the probes
            log.exception("publishing the lag of %s failed", iid)

    async def _probe_query(
        self, iid: str, server: PostgresServer
    ) -> tuple[tuple[Any, ...], list[tuple[str, str, float]]]:
        inst = self.instances.get(iid)
        cluster = inst and self.clusters.get(inst["cluster"])
        if not cluster:
            raise RuntimeError("no cluster record")
        # A new connection each time, as a client's would be: a postmaster that stops accepting connections
        # (hung, or out of processes) fails the probe, where a connection kept open would still answer.
        conn = await self._admin(server)
        try:
            row = await (await conn.execute(_PROBE_SQL)).fetchone()
            assert row is not None
            standbys: list[tuple[str, str, float]] = []
            if not row[0]:
                rows = await (await conn.execute(_STANDBYS_SQL)).fetchall()
                standbys = [(str(r[0]), str(r[1]), float(r[2] or 0.0)) for r in rows]
        finally:
            await conn.close()
        return tuple(row), standbys

    # ----------------------------------------------------------------------------------------- steps

    def _volume(self, doc: Mapping[str, Any]) -> Path:
        """Where a cluster keeps its data while it has no instance (and where it was before instances had
        data directories of their own): the writer adopts it."""
        return self.root / str(doc["id"]) / "volume"

    def _instance_dir(self, inst: Mapping[str, Any]) -> Path:
        return self.root / str(inst["cluster"]) / "instances" / str(inst["id"])

    def _datadir(self, inst: Mapping[str, Any]) -> Path:
        return self._instance_dir(inst) / "data"

    def _server_for(self, inst: Mapping[str, Any], port: int) -> PostgresServer:
        log_dir = self._instance_dir(inst) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        binaries = self.binaries_for(self.clusters.get(str(inst["cluster"])) or {})
        return PostgresServer(self._datadir(inst), binaries, port=port, host="127.0.0.1", log_dir=log_dir)

    def _settings_for(self, cluster: dict[str, Any], inst: dict[str, Any]) -> dict[str, str]:
        """Every setting an instance's postgres runs with: Borealis's, its parameter groups', its role's."""
        # Aurora's default parameter group's values first, so that the instance's own groups win over them.
        defaults = aurora_defaults(self.binaries_for(cluster))
        settings = {**defaults, **_own_settings(cluster), **_REPLICATION_SETTINGS, **self.extra_settings(cluster, inst)}
        settings["wal_keep_size"] = f"{self.settings.wal_keep_mb}MB"
        # Every instance archives: the writer its WAL, a reader what it received (see engine._archive). A
        # reader further behind than the writer keeps WAL reads the rest from the archive, then streams again;
        # a writer only reads it in archive recovery, which it never starts in, so every instance has it.
        archive = self.archive_of(cluster["id"])
        settings.update(archive_settings(archive, self.settings.archive_timeout))
        settings["restore_command"] = restore_command(archive)
        iid = inst["id"]
        if inst["role"] == "writer":
            sync = sorted(self._sync.get(iid, frozenset()))
            # Quorum commit: a commit returns once any one reader has it, so a failover to the most advanced
            # reader loses no acknowledged commit; with no reader left, commits do not wait.
            names = ", ".join('"' + n.replace('"', '""') + '"' for n in sync)
            settings["synchronous_standby_names"] = f"ANY 1 ({names})" if sync else ""
        elif iid in self._conninfo:
            settings["primary_conninfo"] = self._conninfo[iid]
        return settings

    async def _prepare_writer_data(self, cid: str, cluster: dict[str, Any], server: PostgresServer) -> None:
        """A writer's data directory: the cluster volume if there is one (adopted), else a new initdb."""
        volume = PostgresServer(self._volume(cluster), self.binaries_for(cluster), port=5432, host="127.0.0.1")
        if volume.is_initialized():
            self._emit(cid, None, "adopting the cluster volume as the writer's data directory")
            await volume.stop()  # a postmaster an earlier run left on it
            server.datadir.parent.mkdir(parents=True, exist_ok=True)
            if server.datadir.exists():
                shutil.rmtree(server.datadir)
            volume.datadir.rename(server.datadir)
            server.set_standby(False)
            return
        if server.datadir.exists():  # a creation interrupted half-way: start it over
            shutil.rmtree(server.datadir)
        self._emit(cid, None, "initialising the cluster volume (initdb)")
        admin_password = self.sealer.open(cluster["admin_password"])
        await server.initdb(superuser=ADMIN_USER, password=admin_password, settings=_own_settings(cluster))

    # ----------------------------------------------------------------------------------------- snapshots

    def archive_of(self, cluster_id: str) -> Path:
        """The cluster's WAL archive: its writers, one after the other, archive into it."""
        return self.root / cluster_id / "archive"

    def volume_of(self, cluster_id: str) -> Path:
        """Where a cluster keeps its data while it has no instance (a restore lays its snapshot down there)."""
        return self._volume({"id": cluster_id})

    def running_writer(self, cluster_id: str) -> PostgresServer | None:
        """The postgres of the cluster's writer, if it runs (a snapshot is a base backup of it)."""
        writer = self.topology.writer(cluster_id)
        server = self._servers.get(writer.id) if writer is not None else None
        return server if server is not None and server.status().running else None

    def resting_data(self, cluster_id: str) -> Path | None:
        """The data directory of a cluster whose writer does not run: the writer's own, else the volume."""
        for inst in self.cluster_instances(cluster_id):
            if inst["role"] == "writer" and (self._datadir(inst) / "PG_VERSION").is_file():
                return self._datadir(inst)
        volume = self.volume_of(cluster_id)
        return volume if (volume / "PG_VERSION").is_file() else None

    async def replication_source(self, cluster_id: str, name: str, passfile: Path) -> str:
        """A replication conninfo to the cluster's writer for a client called ``name`` (a base backup)."""
        return await self._replication_source(cluster_id, name, passfile)

    def final_snapshot_done(self, cluster_id: str) -> None:
        """The final snapshot of a cluster being deleted is made (or failed): its deletion goes on."""
        self._update_cluster(
            cluster_id, lambda c: replace(c, extra={k: v for k, v in c.extra.items() if k != "final_snapshot"})
        )
        self.kick(cluster_id)

    def restore_done(self, cluster_id: str, *, failed: bool) -> None:
        """A restored cluster's volume is laid down (or could not be): it becomes available (or failed)."""

        def done(c: ClusterRecord) -> ClusterRecord:
            extra = {k: v for k, v in c.extra.items() if k not in ("restore_from", "restore_pitr")}
            return replace(c.moved_to("failed") if failed else c, extra=extra)

        self._update_cluster(cluster_id, done)
        self.kick(cluster_id)

    async def _replication_source(self, cid: str, iid: str, passfile: Path | None = None) -> str:
        """A conninfo to the cluster's writer as the replication role (created on the writer at first use),
        with its password in a passfile only the reader's OS user reads."""
        writer = self.topology.writer(cid)
        wserver = self._servers.get(writer.id) if writer is not None else None
        cluster = self.clusters.get(cid)
        if writer is None or wserver is None or cluster is None:
            raise RuntimeError(f"the writer of {cid} is not running")
        if not cluster.get("repl_password"):
            sealed = self.sealer.seal(generate_password())
            self._update_cluster(cid, lambda c: replace(c, extra={**c.extra, "repl_password": sealed}))
            cluster = self.clusters.get(cid) or cluster
        password = self.sealer.open(cluster["repl_password"])
        if not cluster.get("repl_role"):
            await self._create_replication_role(wserver, cluster, password)
            self._update_cluster(cid, lambda c: replace(c, extra={**c.extra, "repl_role": True}))
        inst = self.instances.get(iid) or {"id": iid, "cluster": cid}
        passfile = passfile or self._instance_dir(inst) / "replication.pass"
        wserver.write_passfile(passfile, REPLICATION_USER, password)
        return replication_conninfo(
            host=wserver.host, port=wserver.port, user=REPLICATION_USER, passfile=passfile, application_name=iid
        )

    async def _create_replication_role(self, server: PostgresServer, cluster: dict[str, Any], password: str) -> None:
        conn = await self._admin(server)
        async with conn:
            await conn.execute("SET log_min_error_statement TO panic")
            await conn.execute("SET log_statement TO none")
            user = sql.Identifier(REPLICATION_USER)
            exists = await (
                await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [REPLICATION_USER])
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(user, sql.Literal(password))
            )
            # What pg_rewind reads from its source server, without making the role a superuser.
            for function in (
                "pg_ls_dir(text, boolean, boolean)",
                "pg_stat_file(text, boolean)",
                "pg_read_binary_file(text)",
                "pg_read_binary_file(text, bigint, bigint, boolean)",
            ):
                await conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog." + function + " TO {}").format(user))

    async def _ensure_listeners(self, cluster: ClusterRecord) -> None:
        cid = cluster.id
        wanted = {
            f"cluster/{cid}/writer": (self.settings.host, cluster.port, self._resolver(cid, "writer")),
            f"cluster/{cid}/reader": (cluster.reader_host, cluster.reader_port, self._reader_resolver(cid)),
        }
        for inst in self.instance_records(cid):
            if inst.status != "deleting":
                wanted[f"instance/{inst.id}"] = (
                    self.settings.host,
                    inst.port,
                    self._resolver(cid, f"instance:{inst.id}", f"DB instance {inst.id}"),
                )
        custom = self.endpoints.of(cid)
        for doc in custom:
            key = f"endpoint/{doc['id']}"
            if doc["status"] == "deleting":
                listener = self._listeners.pop(key, None)
                if listener is not None:
                    await listener.close()
                self.endpoints.table.delete(doc["id"])
            else:
                wanted[key] = (
                    doc["host"],
                    doc.get("listen_port") or cluster.port,
                    self._custom_resolver(cid, doc["id"]),
                )
        for key, (host, port, resolver) in wanted.items():
            current = self._listeners.get(key)
            if current is not None and (current.host, current.port) == (host, port):
                continue
            if current is not None:
                await current.close()
            listener = Listener(
                key,
                host,
                port,
                resolver,
                login_timeout=self.settings.login_timeout,
                tls=self.endpoint_tls(host),
                force_ssl=self._force_ssl(cid),
                iam=IamLogin(
                    enabled=self._iam_enabled(cid),
                    socket_for=self._internal_socket,
                    region=self.settings.region,
                    secret_for=self.access_key_secret,
                ),
            )
            await listener.start()
            self._listeners[key] = listener
        for doc in custom:
            if doc["status"] in ("creating", "modifying"):
                self.endpoints.settle(doc["id"])

    def _custom_resolver(self, cid: str, ident: str) -> Callable[[], Awaitable[tuple[str, int]]]:
        async def resolve() -> tuple[str, int]:
            doc = self.endpoints.table.get(ident)
            if doc is None:
                raise EndpointUnavailable(f"DB cluster endpoint {ident} does not exist", "08006")
            try:
                members = await self.topology.route_custom(
                    cid, doc["type"], doc["static"], doc["excluded"], f"the custom endpoint {ident}"
                )
            except Unavailable as exc:
                raise EndpointUnavailable(exc.message, exc.sqlstate) from None
            member = min(members, key=lambda m: self._listener_load(m.id))
            assert member.host is not None and member.port is not None
            return member.host, member.port

        return resolve

    def _iam_enabled(self, cid: str) -> Callable[[], bool]:
        def enabled() -> bool:
            doc = self.clusters.get(cid)
            return bool(doc and doc.get("iam_auth"))

        return enabled

    def _internal_socket(self, host: str, port: int) -> str | None:
        """The unix socket of the instance listening on (host, port): the login path of
        :meth:`PostgresServer.internal_conninfo` (peer authentication that admits only the OS user running
        Borealis, as any role), for the endpoints' IAM logins."""
        for server in self._servers.values():
            if server.port == port and server.host == host:
                info = psycopg.conninfo.conninfo_to_dict(server.internal_conninfo(user=ADMIN_USER))
                return f"{info['host']}/.s.PGSQL.{info['port']}"
        return None

    def _force_ssl(self, cid: str) -> Callable[[], bool]:
        def force_ssl() -> bool:
            doc = self.clusters.get(cid)
            if doc is None:
                return False
            return (self.cluster_parameter(doc, "rds.force_ssl") or "off").lower() in ("1", "on", "true")

        return force_ssl

    def _resolver(self, cid: str, kind: str, what: str | None = None) -> Callable[[], Awaitable[tuple[str, int]]]:
        async def resolve() -> tuple[str, int]:
            try:
                member = await self.topology.route(cid, kind, what)
            except Unavailable as exc:
                raise EndpointUnavailable(exc.message, exc.sqlstate) from None
            assert member.host is not None and member.port is not None
            return member.host, member.port

        return resolve

    def _reader_resolver(self, cid: str) -> Callable[[], Awaitable[tuple[str, int]]]:
        to_writer = self._resolver(cid, "writer", f"the reader endpoint of {cid}")

        async def resolve() -> tuple[str, int]:
            readers = self.topology.readers(cid)
            if readers and self.topology.cluster(cid) is not None:
                # Spread connections across readers (least connections), as the reader endpoint's DNS does.
                member = min(readers, key=lambda m: self._listener_load(m.id))
                assert member.host is not None and member.port is not None
                return member.host, member.port
            # With no reader, Aurora's reader endpoint connects to the writer.
            return await to_writer()

        return resolve

    def _listener_load(self, instance_id: str) -> int:
        listener = self._listeners.get(f"instance/{instance_id}")
        return 0 if listener is None else listener.client_connections

    async def _step_start(self, cid: str, iid: str) -> None:
        """Start (or restart) an instance's postgres, bootstrap the cluster once, and mark it available.

        A writer's data directory is the cluster volume (adopted) or a new initdb; a reader's is a base
        backup of the writer, or, for a former writer, its own directory rewound onto the writer's timeline.
        """
        cluster = self.clusters.get(cid)
        inst = self.instances.get(iid)
        if cluster is None or inst is None:
            return
        was = inst["status"]
        rejoining = False
        if iid in self._servers:
            self._emit(cid, iid, "restarting postgres")
            await self._stop_server(iid)
        if inst["status"] == "stopped":
            self._update_instance(iid, lambda i: i.moved_to("starting"))
        port = self._ports.get(iid)
        if port is None or not port_free("127.0.0.1", port):
            port = free_port("127.0.0.1")
        server = self._server_for(inst, port)
        writer = inst["role"] == "writer"
        if writer and not server.is_initialized():
            await self._prepare_writer_data(cid, cluster, server)
        elif writer and server.is_standby():
            log.warning("%s is the writer but its data directory is a standby's: starting it as a primary", iid)
            server.set_standby(False)
        elif not writer:
            source = await self._replication_source(cid, iid)
            if not server.is_initialized():
                self._emit(cid, iid, "copying the writer's data (pg_basebackup)")
                await server.basebackup(source)
            elif not server.is_standby():
                rejoining = True
                await self._rejoin(cid, iid, server, source)
            self._conninfo[iid] = source
            self._upstream[iid] = self._writer_address(cid) or ""
        self._emit(cid, iid, "starting postgres")
        started = time.monotonic()
        server.enable_wal_archiving(self.archive_of(cid))
        server.configure(self._settings_for(cluster, inst))
        self.before_start(cluster, inst, server)
        await server.start()
        self._servers[iid] = server
        self._ports[iid] = port
        self._started[iid] = time.monotonic()
        self._exits.pop(iid, None)
        self._observed[iid] = Observation(running=True)
        self.topology.changed()
        self._watchers[iid] = asyncio.ensure_future(self._watch(cid, iid, server))
        self._emit(cid, iid, f"postgres ready in {time.monotonic() - started:.1f}s")
        if writer:
            await self._bootstrap(cluster, server)
            await self._apply_master_password(cluster, inst)
        else:
            # From now on the writer's commits wait for this reader too (before it is reported available).
            wid = self.topology.writer(cid)
            if wid is not None and wid.id in self._servers:
                await self._step_sync(cid, wid.id)
        socket_dir = str(server.socket_dir)
        record = self._update_instance(
            iid,
            lambda i: (
                i if i.status == "deleting" else replace(i.moved_to("available"), pg_port=port, pg_socket=socket_dir)
            ),
        )
        if record is not None and record.status == "available":
            self._emit(cid, iid, "instance available")
            kind = {"creating": Kinds.INSTANCE_CREATED, "starting": Kinds.INSTANCE_STARTED}.get(
                was, Kinds.INSTANCE_REJOINED if rejoining else Kinds.INSTANCE_RESTARTED
            )
            self.events.record(kind, iid)

    async def _rejoin(self, cid: str, iid: str, server: PostgresServer, source: str) -> None:
        """A former writer becomes a reader: rewound onto the writer's timeline, or copied again if it cannot be."""
        self._emit(cid, iid, "rewinding the former writer onto the new writer's timeline (pg_rewind)")
        try:
            await server.rewind(source)
        except EngineError as exc:
            self._emit(cid, iid, f"pg_rewind failed ({exc}); copying the writer's data again")
            shutil.rmtree(server.datadir, ignore_errors=True)
            await server.basebackup(source)

    def _writer_address(self, cid: str) -> str | None:
        writer = self.topology.writer(cid)
        server = self._servers.get(writer.id) if writer is not None else None
        return None if server is None else f"{server.host}:{server.port}"

    async def _step_follow(self, cid: str, iid: str) -> None:
        """Point a running reader at the writer's current address (after a failover or a writer restart)."""
        server, cluster, inst = self._servers.get(iid), self.clusters.get(cid), self.instances.get(iid)
        if server is None or cluster is None or inst is None or inst["role"] == "writer":
            return
        source = await self._replication_source(cid, iid)
        self._conninfo[iid] = source
        self._upstream[iid] = self._writer_address(cid) or ""
        server.configure(self._settings_for(cluster, inst))
        await server.reload()
        self._emit(cid, iid, f"following the writer at {self._upstream[iid]}")

    async def _step_sync(self, cid: str, iid: str) -> None:
        """Make the writer's synchronous standbys the readers that stream from it now (ANY 1 of them)."""
        server, cluster, inst = self._servers.get(iid), self.clusters.get(cid), self.instances.get(iid)
        if server is None or cluster is None or inst is None or inst["role"] != "writer":
            return
        instances = self.instance_records(cid)
        wanted = sync_standbys(instances, {i.id: self._observe(i.id) for i in instances})
        if self._sync.get(iid) == wanted:
            return
        self._sync[iid] = wanted
        server.configure(self._settings_for(cluster, inst))
        await server.reload()

    async def _step_failover(self, cid: str, target: str) -> None:
        """Promote the best reader (or the one asked for) and make the old writer a reader.

        Planned (the writer runs): the old writer is stopped cleanly first, which sends its last WAL to every
        connected reader, so no commit is lost and no transaction sees a writer that is not the writer.
        After a crash (or a hang: the old writer is killed), only the readers holding the furthest WAL qualify
        (see ``_failover``). The endpoints keep their addresses: the topology moves the writer.
        """
        cluster = self.cluster_record(cid)
        if cluster is None:
            return
        instances = self.instance_records(cid)
        observed = {i.id: self._observe(i.id) for i in instances}
        old = next((i for i in instances if i.is_writer), None)
        asked = cluster.get("failover_target")
        planned = old is not None and observed[old.id].running and observed[old.id].failures < 3
        choice = choose_writer(instances, observed, target=asked, crashed=not planned)
        if old is None or choice is None:
            why = "no reader can take over" if choice is None else "the cluster has no writer"
            self._emit(cid, None, f"failover not possible: {why}")
            self._finish_failover(cid)
            return
        started = time.monotonic()
        self._emit(cid, None, f"Started cross AZ failover to DB instance: {choice.id}")
        self.events.record(Kinds.FAILOVER_STARTED, cid, choice.id)
        self._update_cluster(cid, lambda c: c.moved_to("failing-over") if c.status == "available" else c)
        await self._executor.cancel(old.id)  # a restart of the old writer that hangs does not matter now
        old_server = self._servers.get(old.id)
        cluster_doc = self.clusters.get(cid) or {}
        new_server = self._servers.get(choice.id)
        if new_server is None:
            raise RuntimeError(f"{choice.id} is not running")
        promoter = await asyncio.wait_for(self._admin(new_server), 10.0)
        if old_server is not None and planned:
            # Writes still flow while this runs; the shutdown checkpoint then has little left to write.
            await self._checkpoint(old_server, cluster_doc)
        checkpointed = time.monotonic()
        if old_server is not None:
            # A planned failover stops the writer cleanly (its WAL reaches the readers); a hung one is killed.
            await self._stop_server(old.id, mode="fast" if planned else "immediate", timeout=10.0 if planned else 2.0)
        stopped = time.monotonic()
        if self._servers.get(choice.id) is not new_server:
            raise RuntimeError(f"{choice.id} stopped during the failover")
        await self._promote(promoter)
        promoted = time.monotonic()
        with self.store.transaction():
            self._update_instance(choice.id, lambda i: replace(i, role="writer"))
            self._update_instance(
                old.id,
                lambda i: replace(i if i.status == "deleting" else i.moved_to("rebooting"), role="reader"),
            )
        self._conninfo.pop(choice.id, None)
        self._upstream.pop(choice.id, None)
        self._sync.pop(choice.id, None)
        self._sync.pop(old.id, None)
        self._lags.pop(choice.id, None)
        self._finish_failover(cid)
        self.events.record(Kinds.FAILOVER_FINISHED, cid, choice.id)
        self._emit(
            cid,
            None,
            f"Completed failover to DB instance: {choice.id} in {time.monotonic() - started:.2f}s "
            f"(checkpoint {checkpointed - started:.2f}s, old writer stopped in {stopped - checkpointed:.2f}s, "
            f"promotion {promoted - stopped:.2f}s)",
        )

    async def _checkpoint(self, server: PostgresServer, cluster: dict[str, Any]) -> None:
        try:
            conn = await asyncio.wait_for(self._admin(server), 5.0)
            async with conn:
                await asyncio.wait_for(conn.execute("CHECKPOINT"), 30.0)
        except Exception as exc:  # only a speed-up: the stop writes the checkpoint anyway
            log.warning("checkpoint before the failover failed: %s", exc)

    async def _promote(self, conn: psycopg.AsyncConnection[Any], timeout: float = 60.0) -> None:
        """Promote through SQL and watch it finish closely (pg_ctl and pg_promote(true) look every 100 ms)."""
        async with conn:
            await conn.execute("SELECT pg_promote(false)")
            deadline = time.monotonic() + timeout
            while True:
                row = await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone()
                if row is not None and not row[0]:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the promotion did not finish within {timeout:g}s")
                await asyncio.sleep(0.005)

    def _finish_failover(self, cid: str) -> None:
        def done(c: ClusterRecord) -> ClusterRecord:
            extra = {k: v for k, v in c.extra.items() if k != "failover_target"}
            return replace(c.moved_to("available") if c.status == "failing-over" else c, extra=extra)

        self._update_cluster(cid, done)

    async def _step_stop(self, cid: str, iid: str) -> None:
        await self._stop_server(iid)
        self._update_instance(iid, lambda i: i if i.status == "deleting" else i.moved_to("stopped"))
        self.events.record(Kinds.INSTANCE_STOPPED, iid)

    async def _step_pause(self, cid: str, iid: str) -> None:
        """Auto-pause: stop its postgres (a clean shutdown); the status stays, the workers see no postgres."""
        await self._stop_server(iid)

    def set_paused(self, instance_id: str, paused: bool) -> bool:
        """Mark an instance paused (the reconciler stops its postgres and leaves it stopped) or not (it starts
        again); the record's status does not change, as on AWS. False if the instance does not exist."""

        def change(i: InstanceRecord) -> InstanceRecord:
            extra = {k: v for k, v in i.extra.items() if k not in ("paused", "resuming")}
            # "resuming" until the waker sees it serve (resumed()): the Data API answers DatabaseResumingException
            # meanwhile, not DatabaseUnavailableException.
            return replace(i, extra={**extra, "paused": True} if paused else {**extra, "resuming": True})

        record = self._update_instance(instance_id, change)
        if record is None:
            return False
        self.kick(record.cluster)
        return True

    def resumed(self, instance_id: str) -> None:
        """A woken instance serves again (its record loses the ``resuming`` mark)."""
        self._update_instance(
            instance_id, lambda i: replace(i, extra={k: v for k, v in i.extra.items() if k != "resuming"})
        )

    async def wake(self, instance_id: str) -> None:
        """Make a paused instance serve again (the topology's waker); returns at once if it is not paused."""
        await self.topology.wake(instance_id)

    def emit(self, cluster: str, instance: str | None, message: str) -> None:
        """Report progress or an event (the log and the progress display)."""
        self._emit(cluster, instance, message)

    async def _step_bootstrap(self, cid: str, iid: str) -> None:
        cluster, server = self.clusters.get(cid), self._servers.get(iid)
        if cluster is not None and server is not None:
            await self._bootstrap(cluster, server)

    async def _step_password(self, cid: str, iid: str) -> None:
        cluster, inst = self.clusters.get(cid), self.instances.get(iid)
        if cluster is not None and inst is not None:
            await self._apply_master_password(cluster, inst)

    async def reconfigure(self, instance_id: str) -> bool:
        """Rewrite a running instance's settings (:attr:`extra_settings` included) and reload them.

        False if its postgres is not running (it gets them when it starts).
        """
        inst = self.instances.get(instance_id)
        server = self._servers.get(instance_id)
        cluster = self.clusters.get(inst["cluster"]) if inst is not None else None
        if inst is None or cluster is None or server is None or not server.status().running:
            return False
        server.configure(self._settings_for(cluster, inst))
        await server.reload()
        return True

    async def _watch(self, cid: str, iid: str, server: PostgresServer) -> None:
        """Notice at once a postgres that exits on its own (a crash): the plan then restarts it."""
        code = await server.wait_exit()
        if self._servers.get(iid) is server and not self._closing:
            log.warning("postgres of %s exited unexpectedly with code %s", iid, code)
            del self._servers[iid]
            self._exits[iid] = code
            self._update_instance(iid, lambda i: replace(i, pg_port=None, pg_socket=None))
            self._observed.pop(iid, None)
            self.kick(cid)

    async def _stop_server(self, iid: str, *, mode: str = "fast", timeout: float = 60.0) -> None:
        server = self._servers.pop(iid, None)
        self._observed.pop(iid, None)
        self.topology.changed()
        watcher = self._watchers.pop(iid, None)
        if watcher is not None:
            watcher.cancel()
        probe = self._probes.pop(iid, None)
        if probe is not None:
            # Let the probe end (it closes its own connection) before the server stops: a probe in flight when
            # an auto-pause stops postgres must not outlive the server it asks.
            probe.cancel()
            await asyncio.wait({probe}, timeout=5)
        listener = self._listeners.get(f"instance/{iid}")
        if listener is not None:
            listener.disconnect_all()
        if server is not None:
            # Workers route by the stored address: it goes before the server does.
            self._update_instance(iid, lambda i: replace(i, pg_port=None, pg_socket=None))
            await server.stop(mode=mode, timeout=timeout)

    async def _admin(self, server: PostgresServer) -> psycopg.AsyncConnection[Any]:
        # Over the unix socket by peer authentication: no password to keep, and nobody else can log in so.
        return await psycopg.AsyncConnection.connect(server.internal_conninfo(user=ADMIN_USER), autocommit=True)

    async def _bootstrap(self, cluster: dict[str, Any], server: PostgresServer) -> None:
        """Make Aurora's roles and a non-superuser master (on every start: that also fixes a cluster made by an
        older Borealis, whose master was a superuser); create the initial database once."""
        master = cluster["master_username"]
        conn = await self._admin(server)
        async with conn:
            await _roles.ensure_roles(conn)
            await _roles.close_old_holes(conn)
            await _roles.ensure_master(conn, master)
            if cluster.get("bootstrapped"):
                return
            self._emit(cluster["id"], None, "creating the master user and database")
            dbname = cluster.get("database_name")
            if dbname and dbname != "postgres":
                await _roles.ensure_database(conn, dbname, master)
        done = self._update_cluster(cluster["id"], lambda c: replace(c, bootstrapped=True, password_applied=-1))
        if done is not None:
            cluster.update(done.to_doc())

    def master_password(self, cluster: dict[str, Any]) -> str | None:
        """The master user's current password (from the managed secret or the sealed record)."""
        if cluster.get("master_secret_arn"):
            value = self.secret_value(cluster["master_secret_arn"])
            password = value.get("password")
            return password if isinstance(password, str) else None
        sealed = cluster.get("master_password")
        return self.sealer.open(sealed) if sealed else None

    async def _apply_master_password(self, cluster: dict[str, Any], inst: dict[str, Any]) -> None:
        cluster = self.clusters.get(cluster["id"]) or cluster
        if cluster.get("password_applied") == cluster.get("password_version", 0):
            return
        server = self._servers.get(inst["id"])
        password = self.master_password(cluster)
        if server is None or password is None:
            return
        conn = await self._admin(server)
        async with conn:
            # A password cannot be a bind parameter in ALTER ROLE; sql.Literal quotes it safely. Postgres
            # would write the statement to its log if it failed, so statement logging is off for it.
            await conn.execute("SET log_min_error_statement TO panic")
            await conn.execute("SET log_statement TO none")
            await conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(cluster["master_username"]), sql.Literal(password)
                )
            )
        # Only the version this step applied: a password changed again while it ran (its version is newer)
        # is applied by the next step, and whatever else changed in the record meanwhile is kept.
        applied = int(cluster.get("password_version", 0))
        self._update_cluster(cluster["id"], lambda c: replace(c, password_applied=applied))

    async def _step_delete_instance(self, cid: str, iid: str) -> None:
        inst = self.instances.get(iid)
        if inst is not None:
            await self._delete_instance(inst)

    async def _step_delete_cluster(self, cid: str, target: str) -> None:
        doc = self.clusters.get(cid)
        if doc is not None:
            await self._delete_cluster(doc)

    async def _delete_instance(self, inst: dict[str, Any]) -> None:
        await self._stop_server(inst["id"])
        listener = self._listeners.pop(f"instance/{inst['id']}", None)
        if listener is not None:
            await listener.close()
        others = [i for i in self.cluster_instances(inst["cluster"]) if i["id"] != inst["id"]]
        datadir = self._datadir(inst)
        if inst["role"] == "writer" and not others and (datadir / "PG_VERSION").exists():
            # The last instance goes, the data stays (Aurora's cluster volume): the next writer adopts it.
            volume = self._volume({"id": inst["cluster"]})
            shutil.rmtree(volume, ignore_errors=True)
            datadir.rename(volume)
        shutil.rmtree(self._instance_dir(inst), ignore_errors=True)
        memories = (self._ports, self._conninfo, self._upstream, self._sync, self._lags, self._exits, self._started)
        for memory in (*memories, self._streamed):
            memory.pop(inst["id"], None)
        self.endpoints.forget_instance(inst["id"])
        self.events.record(Kinds.INSTANCE_DELETED, inst["id"])
        self.instances.delete(inst["id"])
        self._emit(inst["cluster"], inst["id"], "instance deleted")

    async def _delete_cluster(self, cluster: dict[str, Any]) -> None:
        cid = cluster["id"]
        for inst in self.cluster_instances(cid):
            await self._delete_instance(inst)
        custom = [f"endpoint/{d['id']}" for d in self.endpoints.of(cid)]
        for key in (f"cluster/{cid}/writer", f"cluster/{cid}/reader", *custom):
            listener = self._listeners.pop(key, None)
            if listener is not None:
                await listener.close()
        for doc in self.endpoints.of(cid):
            self.endpoints.table.delete(doc["id"])
        if cluster.get("retain_backups"):  # DeleteAutomatedBackups false: the archive moves out first
            self.snapshots.backups.retain(cluster)
        shutil.rmtree(self.root / cid, ignore_errors=True)
        if cluster.get("master_secret_arn"):
            try:
                self.delete_secret(cluster["master_secret_arn"])
            except Exception:
                log.exception("deleting the master secret of %s failed", cid)
        self.clusters.delete(cid)
        self._emit(cid, None, "cluster deleted")
