"""The one answer to "where is the writer, which readers are up, wake this instance", for every caller.

Endpoint listeners (their resolvers), the RDS Proxy runtime, the Data API and the API worker processes all
ask a :class:`Topology` instead of reading records themselves, so the rules of routing live here once:

- a cluster's **writer** is its instance whose record says ``role = writer`` (the control plane moves the
  role on a failover, after the promotion); it is **ready** when its postgres runs and its status is one of
  :data:`~borealis.control._records.SERVING`;
- its **readers** are the other instances; the ready ones serve the reader endpoint, which falls back to
  the writer when there is none (as Aurora's does);
- a stopped (or stopping) cluster serves nothing.

Interface (what other parts build on)::

    topo.generation -> int           grows on every change that may move a route; cache until it does
    topo.watch(fn) / unwatch(fn)     fn() is called each time the generation moves (drop what you cached)
    topo.cluster(cid) -> ClusterView | None    the cluster's status, writer and readers (frozen)
    topo.writer(cid) -> Member | None          its writer, ready or not
    topo.readers(cid) -> tuple[Member, ...]    its ready readers, in promotion-tier order
    topo.member(iid) -> Member | None          one instance
    topo.serving(cid, type, static, excluded)  the ready members of a custom endpoint
    await topo.route(cid, "writer" | "reader" | iid-kind)  -> Member, waking it if needed and waiting
                                                while it should run (starting, restarting) but does not
                                                serve yet; raises Unavailable(message, sqlstate, transient)
    await topo.wake(iid)             make the instance serve; returns at once if it does already
    topo.waker = async fn(iid)       installed by the serverless scaler (auto-pause): resume a paused
                                     instance and return when it serves, or raise Unavailable

A :class:`Member` carries what a caller needs to connect (``host``, ``port``, the unix ``socket_dir``) and
what monitoring reads (``lag_ms``: AuroraReplicaLag of a reader, ``None`` for the writer or when unknown).

Two kinds of topology exist, with the same rules (:func:`build_view`): the main process's, rebuilt from the
records and the running servers whenever the control plane calls :meth:`Topology.changed`, and a worker's,
read from the store again once its view is ``ttl`` seconds old (the generation then moves only if the view
did).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._records import SERVING, SHOULD_RUN, ClusterRecord, InstanceRecord

__all__ = ["Address", "ClusterView", "Member", "Topology", "Unavailable", "build_view", "stored_views"]


class Unavailable(Exception):
    """No instance can serve the request now; ``sqlstate`` for the wire, ``transient`` if waiting may help."""

    def __init__(self, message: str, sqlstate: str = "57P03", *, transient: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Address:
    """Where a running postgres listens: TCP host and port, and its unix socket directory."""

    host: str
    port: int
    socket_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """One instance of a cluster, as routing sees it."""

    id: str
    cluster: str
    role: str
    status: str
    promotion_tier: int
    host: str | None = None
    port: int | None = None
    socket_dir: Path | None = None
    lag_ms: float | None = None

    @property
    def ready(self) -> bool:
        """Whether clients can be routed to it now."""
        return self.port is not None and self.status in SERVING

    @property
    def is_writer(self) -> bool:
        """Whether it is its cluster's writer."""
        return self.role == "writer"


@dataclass(frozen=True, slots=True)
class ClusterView:
    """A cluster's status, writer and readers."""

    id: str
    status: str
    writer: Member | None
    readers: tuple[Member, ...]

    @property
    def ready_readers(self) -> tuple[Member, ...]:
        """The readers that can take connections now."""
        return tuple(r for r in self.readers if r.ready)

    @property
    def members(self) -> tuple[Member, ...]:
        """Writer first, then readers."""
        return ((self.writer,) if self.writer is not None else ()) + self.readers


def build_view(
    cluster: ClusterRecord,
    instances: Iterable[InstanceRecord],
    addresses: Mapping[str, Address],
    lags: Mapping[str, float] | None = None,
) -> ClusterView:
    """The routing view of one cluster (pure): records plus where each running postgres listens."""
    writer: Member | None = None
    readers: list[Member] = []
    for inst in instances:
        if inst.cluster != cluster.id or inst.status == "deleting":
            continue
        address = addresses.get(inst.id)
        member = Member(
            inst.id,
            inst.cluster,
            inst.role,
            inst.status,
            inst.promotion_tier,
            None if address is None else address.host,
            None if address is None else address.port,
            None if address is None else address.socket_dir,
            None if inst.is_writer or lags is None else lags.get(inst.id),
        )
        if inst.is_writer and writer is None:
            writer = member
        else:
            readers.append(member)
    readers.sort(key=lambda m: m.promotion_tier)
    return ClusterView(cluster.id, cluster.status, writer, tuple(readers))


def stored_views(
    clusters: Iterable[Mapping[str, Any]], instances: Iterable[Mapping[str, Any]]
) -> dict[str, ClusterView]:
    """Views from stored documents alone, for a process that runs no postgres (an API worker).

    A running postgres's address is in its instance's record (``pg_port``, ``pg_socket``), written when it
    started and cleared when it stopped.
    """
    records = [InstanceRecord.from_doc(doc) for doc in instances]
    addresses = {
        r.id: Address("127.0.0.1", r.pg_port, Path(r.pg_socket) if r.pg_socket else None) for r in records if r.pg_port
    }
    return {str(c["id"]): build_view(ClusterRecord.from_doc(c), records, addresses) for c in clusters}


Loader = Callable[[], Mapping[str, ClusterView]]

# How often a login held by :meth:`Topology.route` looks again when no change is signalled (a worker's view
# only moves when it reloads; a change made in another thread signals nothing).
_RECHECK = 0.5


class Topology:
    """The routing answers (see the module docstring), cached until the generation moves."""

    def __init__(self, load: Loader, *, ttl: float | None = None) -> None:
        self._load = load
        self._ttl = ttl
        self._views: Mapping[str, ClusterView] = {}
        self._by_instance: dict[str, Member] = {}
        self._stale = True
        self._expires = 0.0
        self._generation = 0
        self.waker: Callable[[str], Awaitable[None]] | None = None
        """Resumes a paused instance (installed by the serverless scaler); see :meth:`wake`."""
        self._waiters: set[asyncio.Future[None]] = set()
        self._watchers: list[Callable[[], None]] = []

    @property
    def generation(self) -> int:
        """A number that grows whenever a route may have moved."""
        self._refresh()
        return self._generation

    def watch(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` whenever the generation moves, so a hot path can keep routes without asking
        :attr:`generation` each time. It runs inside :meth:`changed` (on the event loop's thread), or inside
        the reload of a ``ttl`` view, which only happens when something reads this topology."""
        self._watchers.append(fn)

    def unwatch(self, fn: Callable[[], None]) -> None:
        """Stop calling ``fn`` (see :meth:`watch`)."""
        with contextlib.suppress(ValueError):
            self._watchers.remove(fn)

    def changed(self) -> None:
        """Something that routes depend on changed (a record, a server started or lost): look again."""
        self._generation += 1
        self._stale = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self._moved()

    def _moved(self) -> None:
        for fn in list(self._watchers):
            fn()

    async def _next_change(self, timeout: float) -> None:
        """Return after the next :meth:`changed`, or after ``timeout`` seconds, whichever comes first."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.discard(waiter)

    def _refresh(self) -> None:
        if self._ttl is not None and time.monotonic() >= self._expires:
            self._stale = True
        if not self._stale:
            return
        views = dict(self._load())
        self._stale = False
        if self._ttl is not None:
            self._expires = time.monotonic() + self._ttl
            moved = views != self._views
            if moved:
                self._generation += 1
        else:
            moved = False
        self._views = views
        self._by_instance = {m.id: m for v in views.values() for m in v.members}
        if moved:
            self._moved()

    # -- queries ---------------------------------------------------------------------------------------

    def cluster(self, cluster_id: str) -> ClusterView | None:
        """The cluster's routing view, or None if it does not exist."""
        self._refresh()
        return self._views.get(cluster_id)

    def clusters(self) -> list[ClusterView]:
        """Every cluster's view."""
        self._refresh()
        return list(self._views.values())

    def writer(self, cluster_id: str) -> Member | None:
        """The cluster's writer (ready or not), or None."""
        view = self.cluster(cluster_id)
        return None if view is None else view.writer

    def readers(self, cluster_id: str) -> tuple[Member, ...]:
        """The cluster's readers that can take connections now."""
        view = self.cluster(cluster_id)
        return () if view is None else view.ready_readers

    def member(self, instance_id: str) -> Member | None:
        """One instance's routing view, or None."""
        self._refresh()
        return self._by_instance.get(instance_id)

    # -- routing ---------------------------------------------------------------------------------------

    def _view(self, cluster_id: str) -> ClusterView:
        view = self.cluster(cluster_id)
        if view is None:
            raise Unavailable(f"DB cluster {cluster_id} does not exist", "08006", transient=False)
        if view.status in ("stopped", "stopping"):
            raise Unavailable(f"DB cluster {cluster_id} is stopped", "57P03", transient=False)
        return view

    def serving(
        self, cluster_id: str, endpoint_type: str, static: list[str], excluded: list[str]
    ) -> tuple[Member, ...]:
        """The ready members a custom endpoint routes to: ``READER`` readers only, ``ANY`` any instance; its
        static members if it has them, else every one not excluded. Raises :class:`Unavailable` as
        :meth:`pick` does for a cluster that is gone or stopped."""
        return tuple(m for m in self._custom(cluster_id, endpoint_type, static, excluded) if m.ready)

    def _custom(self, cluster_id: str, endpoint_type: str, static: list[str], excluded: list[str]) -> list[Member]:
        view = self._view(cluster_id)
        members = view.members if endpoint_type == "ANY" else view.readers
        return [m for m in members if m.id in static] if static else [m for m in members if m.id not in excluded]

    async def route_custom(
        self, cluster_id: str, endpoint_type: str, static: list[str], excluded: list[str], what: str
    ) -> tuple[Member, ...]:
        """The ready members of a custom endpoint (see :meth:`serving`), as :meth:`route` finds one for the other
        endpoints: a paused member is woken first, and one that should run but does not serve yet is waited for
        (the caller bounds the wait). Raises :class:`Unavailable` when no member could serve."""
        while True:
            chosen = self._custom(cluster_id, endpoint_type, static, excluded)
            ready = tuple(m for m in chosen if m.ready)
            if ready:
                return ready
            if not chosen:
                raise Unavailable(f"{what} has no available DB instance", "57P03")
            await self.wake(chosen[0].id)
            now = [self.member(m.id) or m for m in chosen]
            if any(m.ready for m in now):
                continue
            if not any(m.status in SHOULD_RUN for m in now):
                raise Unavailable(f"{what} has no available DB instance", "57P03")
            await self._next_change(_RECHECK if self._ttl is None else min(_RECHECK, self._ttl))

    def pick(self, cluster_id: str, kind: str, what: str) -> Member | None:
        """The member for ``kind`` ("writer", "reader", or "instance:<id>") now, or None if none is ready.

        Raises :class:`Unavailable` when no member could ever serve (no cluster, stopped, no instance).
        """
        view = self._view(cluster_id)
        if kind.startswith("instance:"):
            member = self._by_instance.get(kind[len("instance:") :])
            if member is None:
                raise Unavailable(f"{what} does not exist", "08006", transient=False)
            return member
        if kind == "reader" and view.ready_readers:
            return view.ready_readers[0]
        # With no ready reader, Aurora's reader endpoint connects to the writer.
        if view.writer is None:
            raise Unavailable(f"{what} has no DB instance to serve it", "57P03")
        return view.writer

    async def route(self, cluster_id: str, kind: str, what: str | None = None) -> Member:
        """The ready member for ``kind`` (see :meth:`pick`), woken first if it is paused.

        A member that should run (:data:`~borealis.control._records.SHOULD_RUN`: starting after a restart of
        Borealis, restarting after a crash, rebooting) but does not serve yet is waited for, as a paused one
        is while it resumes; the caller bounds the wait (the endpoints' login timeout). One that is really
        down (failed, stopped, its cluster stopped or gone) raises :class:`Unavailable` at once.
        """
        what = what or f"the {kind} endpoint of {cluster_id}"
        while True:
            # Picked again on every look: a failover may have moved the writer meanwhile.
            member = self.pick(cluster_id, kind, what)
            assert member is not None
            if member.ready:
                return member
            await self.wake(member.id)
            member = self.member(member.id) or member
            if member.ready:
                return member
            if member.status not in SHOULD_RUN:
                raise Unavailable(f"DB instance {member.id} is not available (status: {member.status})", "57P03")
            await self._next_change(_RECHECK if self._ttl is None else min(_RECHECK, self._ttl))

    async def wake(self, instance_id: str) -> None:
        """Make ``instance_id`` serve: returns at once if it does; else asks the waker (auto-pause), if any.

        Without a waker (no serverless scaler, or an instance that is simply down) it returns too: the
        caller looks at :meth:`member` again and reports what it finds.
        """
        member = self.member(instance_id)
        if member is None or member.ready or self.waker is None:
            return
        await self.waker(instance_id)
        self.changed()
