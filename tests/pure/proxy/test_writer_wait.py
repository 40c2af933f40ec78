"""Pure tests: a borrow waits (within ConnectionBorrowTimeout) for a cluster's writer to come back.

The runtime runs against a stand-in control plane whose writer is missing or not running for a while;
pools are stand-ins too, so no socket is opened.
"""

from __future__ import annotations

import asyncio
import copy
import time
from types import SimpleNamespace
from typing import Any

import pytest

from borealis.control import Address, ClusterRecord, InstanceRecord, Topology
from borealis.control._topology import build_view
from borealis.proxy import MetricsRegistry
from borealis.proxy._client import ClientConn
from borealis.proxy._manager import ProxyRuntime
from borealis.proxy._server import ServerConn, ServerError


class _Control:
    """A cluster ``c1`` whose writer ``w1`` runs only once ``up`` is set; routes come from a real Topology."""

    def __init__(self) -> None:
        self._up = False
        self._writer: dict[str, Any] | None = {"id": "w1", "role": "writer", "status": "rebooting"}
        self.topology = Topology(self._views)

    def _views(self) -> dict[str, Any]:
        cluster = ClusterRecord(id="c1", status="available", port=5432)
        insts = [InstanceRecord.from_doc({"cluster": "c1", "port": 6000, **self._writer})] if self._writer else []
        addresses = {i.id: Address("127.0.0.1", 5999) for i in insts} if self._up else {}
        return {"c1": build_view(cluster, insts, addresses)}

    @property
    def generation(self) -> int:
        return self.topology.generation

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        if value and self._writer is not None:  # the reboot is over
            self._writer = {**self._writer, "status": "available"}
        self.topology.changed()  # as the control plane does when a server starts or stops

    @property
    def writer(self) -> dict[str, Any] | None:
        return self._writer

    @writer.setter
    def writer(self, value: dict[str, Any] | None) -> None:
        self._writer = value
        self.topology.changed()


class _Pool:
    def __init__(self, fail: ServerError | None = None) -> None:
        self.fail = fail
        self.calls = 0
        self.host, self.port = "127.0.0.1", 5999
        self.routed = False

    def set_routed(self, routed: bool) -> None:
        self.routed = routed

    async def acquire(self, timeout: float) -> str:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return "server-connection"


def _runtime(control: _Control, borrow_timeout: float) -> ProxyRuntime:
    doc = {"target_group": {"cluster": "c1", "pool": {"ConnectionBorrowTimeout": borrow_timeout}}, "auth": []}
    manager = SimpleNamespace(
        metrics=MetricsRegistry(),
        registry=SimpleNamespace(proxy=lambda name: doc),
        control=control,
        closing=False,
        max_connections={},
    )
    rt = ProxyRuntime(manager, "p")  # type: ignore[arg-type]
    pool = _Pool()

    def pool_for(role: str, user: str, database: str) -> Any:
        rt._target(role)  # raises while the writer is down, as the real pool_for does
        return pool

    rt.pool_for = pool_for  # type: ignore[method-assign]
    return rt


def test_borrow_waits_for_the_writer() -> None:
    control = _Control()
    rt = _runtime(control, borrow_timeout=120)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, setattr, control, "up", True)
        t0 = time.monotonic()
        _, server = await rt.acquire("READ_WRITE", "u", "db")
        assert server == "server-connection"  # type: ignore[comparison-overlap]  # a stand-in pool
        return time.monotonic() - t0

    # Served once the writer runs, well before the borrow timeout (the margin absorbs a loaded machine's stalls).
    assert 0.25 < asyncio.run(main()) < 60


def test_borrow_gives_up_at_the_borrow_timeout() -> None:
    rt = _runtime(_Control(), borrow_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(ServerError, match="not running") as exc:
        asyncio.run(rt.acquire("READ_WRITE", "u", "db"))
    assert exc.value.sqlstate == "08001"
    assert 0.2 < time.monotonic() - t0 < 30  # at the borrow timeout, not never (a loaded machine may stall)


def test_refusals_that_would_repeat_are_not_retried() -> None:
    control = _Control()
    control.up = True
    rt = _runtime(control, borrow_timeout=5)
    refused = _Pool(ServerError('password authentication failed for user "u"', "28P01"))
    rt.pool_for = lambda role, user, database: refused  # type: ignore[method-assign, assignment, return-value]
    with pytest.raises(ServerError) as exc:
        asyncio.run(rt.acquire("READ_WRITE", "u", "db"))
    assert not exc.value.transient
    assert refused.calls == 1  # not tried again until the borrow timeout


def test_transient_states() -> None:
    assert ServerError("x").transient
    assert ServerError("x", "57P03").transient  # the database system is starting up
    assert not ServerError("x", "28P01").transient
    assert not ServerError("x", "08001", transient=False).transient


def test_query_database_response_latency_is_measured() -> None:
    # The server side times from forwarding a request to the first bytes of its answer.
    from borealis.proxy import ProxyStats
    from borealis.proxy._client import ClientConn
    from borealis.proxy._server import query_frame

    stats = ProxyStats("p")
    written: list[bytes] = []

    async def main() -> None:
        conn = ServerConn(lambda c: None)
        conn._login = None
        conn.pool = SimpleNamespace(stats=stats)
        owner = ClientConn(SimpleNamespace(stats=stats, clients=set()), "READ_WRITE")  # type: ignore[arg-type]
        owner.connection_made(SimpleNamespace(write=written.append))  # type: ignore[arg-type]
        owner.state = "ready"
        owner.pinned = True  # keeps the connection (this one has no pool)
        owner.server = conn
        conn.owner = owner
        q = query_frame("select 1")
        conn.session.frontend(q[0], q)
        conn.sent_at = time.monotonic() - 0.002
        conn.data_received(b"C\0\0\0\x0dSELECT 1\0" + b"Z\0\0\0\x05I")

    asyncio.run(main())
    assert written
    assert stats.response_count == 1
    assert stats.response_latency_us_sum >= 2000
    assert stats.samples()["QueryDatabaseResponseLatency"] >= 2000


def test_target_is_kept_until_the_control_plane_generation_moves() -> None:
    # The runtime resolves the writer from the topology once, and again only when the topology reports a
    # change (its generation moved): the borrow hot path asks nothing.
    control = _Control()
    control.up = True
    control.writer = {"id": "w1", "role": "writer", "status": "available"}
    rt = _runtime(control, borrow_timeout=1)
    resolved = []
    resolve = rt._resolve

    def counting(role: str) -> list[tuple[str, str, int, str | None]]:
        resolved.append(role)
        return resolve(role)

    rt._resolve = counting  # type: ignore[method-assign]
    assert rt._target("READ_WRITE")[:3] == ("w1", "127.0.0.1", 5999)
    assert rt._target("READ_WRITE")[:3] == ("w1", "127.0.0.1", 5999)
    assert len(resolved) == 1
    control._writer = {"id": "w2", "role": "writer", "status": "available"}  # a failover...
    assert rt._target("READ_WRITE")[0] == "w1"  # ...not reported yet
    control.topology.changed()
    assert rt._target("READ_WRITE")[0] == "w2"
    assert len(resolved) == 2
    # A target that is down is not kept: every borrow looks again until it is back.
    control.up = False
    with pytest.raises(ServerError):
        rt._target("READ_WRITE")
    control.up = True
    assert rt._target("READ_WRITE")[0] == "w2"
    # A change to the proxy's own record (ModifyDBProxyTargetGroup, say) also resolves again.
    rt.set_doc(rt.doc)
    rt._target("READ_WRITE")
    assert len(resolved) == 5


def test_a_client_keeps_its_route_until_the_topology_or_the_proxy_record_changes() -> None:
    # A client borrows again from the pool it used last without asking the runtime, until the topology reports
    # a change (a failover here) or the proxy's record changes; then its next borrow resolves the target again.
    control = _Control()
    control.up = True
    rt = _runtime(control, borrow_timeout=7)
    del rt.pool_for  # the real one: real pools (none opens a connection while an idle one is there)
    rt.manager.verifier = None  # (TCP only)
    doc = rt.doc
    doc["target_group"]["pool"].update(MaxConnectionsPercent=100, MaxIdleConnectionsPercent=100)
    asked: list[str] = []
    current = rt.current_pool

    def counting(role: str, user: str, database: str) -> Any:
        asked.append(role)
        return current(role, user, database)

    rt.current_pool = counting  # type: ignore[method-assign]

    async def main() -> None:
        client = ClientConn(rt, "READ_WRITE")
        client.state, client.user, client.database = "ready", "u", "db"

        def borrow() -> Any:
            """Borrow with one idle connection in every pool (the new writer's made first); the pool used."""
            rt.pool_for("READ_WRITE", "u", "db")  # made if new, not marked routed: only current_pool() does
            for pool in rt.pools.values():
                pool.idle[:] = [ServerConn(pool._lost)]  # idle, logged in as far as a borrow looks
            client.server = None
            assert client._borrow_now(time.monotonic()) is not None
            return client.pool

        first = borrow()
        assert asked == ["READ_WRITE"] and first is rt.pools["w1", "u", "db"] and first.routed
        assert borrow() is first and len(asked) == 1  # kept: the runtime was not asked
        control.writer = {"id": "w2", "role": "writer", "status": "available"}  # a failover, reported
        assert not first.routed
        second = borrow()
        assert second is rt.pools["w2", "u", "db"] and len(asked) == 2
        assert borrow() is second and len(asked) == 2
        # A change to the proxy's record (ModifyDBProxyTargetGroup): resolved again, the new timeout used.
        changed = copy.deepcopy(doc)
        changed["target_group"]["pool"]["ConnectionBorrowTimeout"] = 9
        rt.set_doc(changed)
        assert not second.routed and rt.borrow_seconds == 9
        assert borrow() is second and len(asked) == 3
        # The pool full (max_connections 1, a connection lent): the client queues with the new timeout.
        rt.manager.max_connections["w2"] = 1
        second.members.add(client.server)  # type: ignore[arg-type]
        client.server = None
        assert client._borrow_now(time.monotonic()) is None and client.waiting and len(asked) == 3
        assert client.deadline - client.since == pytest.approx(9)
        client.waiting = False  # (gone from the queue, so closing the pool starts no new borrow)
        second.close()  # a closed pool is never a kept route
        assert not second.routed

    asyncio.run(main())
