"""Pure tests: the pool's synchronous borrow, its waiter queue and deadline timer, the hand-off from one
client to the next, and the server side's fast path.

Connections and clients are real objects (the compiled build checks their types) on stand-in transports (no
socket); waiters are small recording objects or real clients.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from borealis.proxy import ProxyStats
from borealis.proxy._client import ClientConn
from borealis.proxy._pool import BorrowTimeout, Pool
from borealis.proxy._server import ServerConn, ServerError, query_frame


class _Transport:
    """Records what is written to it."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        self.closed = True


class _Waiter:
    def __init__(self, timeout: float = 5.0) -> None:
        self.waiting = False
        self.since = time.monotonic()
        self.deadline = self.since + timeout
        self.got: list[Any] = []

    def pool_grant(self, pool: Pool, conn: Any) -> None:
        self.got.append(conn)

    def pool_fail(self, pool: Pool, exc: Exception) -> None:
        self.got.append(exc)


async def _until(done: Callable[[], object], limit: float = 60.0) -> None:
    """Wait for ``done()`` to be true, polling (the timer under test runs on this loop)."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def _pool(stats: ProxyStats, cap_pct: int = 1, timeout: float = 5.0) -> Pool:
    config = {"MaxConnectionsPercent": cap_pct, "MaxIdleConnectionsPercent": 50, "ConnectionBorrowTimeout": timeout}
    return Pool(
        host="127.0.0.1",
        port=1,
        user="u",
        database="d",
        password=lambda: None,
        config=lambda: config,
        stats=stats,
        max_connections={"i": 200},  # cap: 2 at 1%
        key="i",
    )


def _server(pool: Pool, transport: _Transport | None = None) -> ServerConn:
    """A logged-in server connection of ``pool`` on a stand-in transport (not yet in its idle list)."""
    conn = ServerConn(pool._lost)
    conn.connection_made(transport or _Transport())  # type: ignore[arg-type]
    conn._login = None
    conn.pool = pool
    pool.members.add(conn)
    return conn


def _fill(pool: Pool, n: int) -> list[ServerConn]:
    return [_server(pool) for _ in range(n)]


def test_take_is_lifo_and_release_hands_to_the_first_waiter() -> None:
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats)
        a, b = _fill(pool, 2)
        pool.idle = [a, b]
        assert pool.take() is b and pool.take() is a
        assert pool.take() is None and not pool.can_open()
        assert stats.borrowed == 2
        first, second = _Waiter(), _Waiter()
        pool.wait(first)  # type: ignore[arg-type]
        pool.wait(second)  # type: ignore[arg-type]
        gone = _Waiter()
        pool.wait(gone)  # type: ignore[arg-type]
        gone.waiting = False  # a client that left while queued: skipped
        pool.release(a)
        pool.release(b)
        assert first.got == [a] and second.got == [b] and gone.got == []
        assert stats.borrowed == 2 and stats.borrow_count == 4
        pool.release(a)
        assert pool.idle == [a] and stats.borrowed == 1

    asyncio.run(main())


def test_borrow_lends_an_idle_connection_or_queues_only_when_full() -> None:
    # Pool.borrow: take(), can_open() and wait() in one call (a client's borrow).
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats)  # cap 2
        a, b = _fill(pool, 2)
        b.closed = True  # closed while idle, its loss not heard yet: skipped
        pool.idle = [a, b]
        waiter = _Waiter()
        assert pool.borrow(waiter, time.monotonic(), 5.0) is a  # type: ignore[arg-type]
        assert pool.idle == [] and stats.borrowed == 1 and not waiter.waiting
        pool.members.discard(b)  # type: ignore[arg-type]
        assert pool.borrow(waiter, time.monotonic(), 5.0) is None and not waiter.waiting  # type: ignore[arg-type]  # may open
        pool.opening = 1
        before = time.monotonic()
        assert pool.borrow(waiter, time.monotonic(), 5.0) is None and waiter.waiting  # type: ignore[arg-type]  # full: queued
        assert list(pool.waiters) == [waiter] and before <= waiter.since
        assert waiter.deadline == waiter.since + 5.0 and pool._timer is not None
        pool.release(a)  # type: ignore[arg-type]
        assert waiter.got == [a]
        pool.close()

    asyncio.run(main())


def test_caps_are_kept_until_the_config_changes_and_wait_for_max_connections() -> None:
    config = {"MaxConnectionsPercent": 10, "MaxIdleConnectionsPercent": 5}
    known: dict[str, int] = {}
    pool = Pool(host="h", port=1, user="u", database="d", password=lambda: None, config=lambda: config,
                stats=ProxyStats("p"), max_connections=known, key="i")  # fmt: skip
    assert (pool.cap(), pool.idle_cap()) == (1, 0)  # max_connections not known yet: one connection
    known["i"] = 200  # another pool of the same target learnt it: used at once
    assert (pool.cap(), pool.idle_cap()) == (20, 10)
    config["MaxConnectionsPercent"] = 50
    assert pool.cap() == 20  # kept...
    pool.limits_changed()  # ...until the runtime reports a config change
    assert pool.cap() == 100


def test_one_timer_times_waiters_out_in_order() -> None:
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats, timeout=0.1)
        _fill(pool, 2)
        # Late's deadline is far enough after early's that a loaded machine's stalls cannot reach it.
        early, late = _Waiter(0.1), _Waiter(2.0)
        pool.wait(late)  # type: ignore[arg-type]
        pool.wait(early)  # type: ignore[arg-type]  # an earlier deadline moves the timer forward
        await _until(lambda: early.got or late.got)
        assert len(early.got) == 1 and isinstance(early.got[0], BorrowTimeout) and late.got == []
        await _until(lambda: late.got)
        assert isinstance(late.got[0], BorrowTimeout)
        assert stats.borrow_timeouts == 2 and not pool.waiters and pool._timer is None

    asyncio.run(main())


def test_close_fails_waiters_and_a_lost_connection_frees_a_slot() -> None:
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats)
        a, _ = _fill(pool, 2)
        w1, w2 = _Waiter(), _Waiter()
        pool.wait(w1)  # type: ignore[arg-type]
        pool.wait(w2)  # type: ignore[arg-type]
        pool._lost(a)
        assert w1.got == [None]  # a slot came free: the waiter opens a connection itself
        assert pool.can_open()
        pool.close()
        assert len(w2.got) == 1 and isinstance(w2.got[0], ServerError)

    asyncio.run(main())


def test_acquire_waits_for_a_release() -> None:
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats)
        a, _ = _fill(pool, 2)
        asyncio.get_running_loop().call_later(0.05, pool.release, a)
        assert await pool.acquire(1.0) is a
        with pytest.raises(BorrowTimeout):
            await pool.acquire(0.05)
        assert stats.borrow_timeouts == 1

    asyncio.run(main())


def _frame(t: bytes, body: bytes) -> bytes:
    return t + (len(body) + 4).to_bytes(4, "big") + body


_SELECT = (
    _frame(b"T", b"\0\x01a\0" + b"\0" * 6 + b"\0\x17\0\x04\xff\xff\xff\xff\0\0")
    + _frame(b"D", b"\0\x01\0\0\0\x011")
    + _frame(b"C", b"SELECT 1\0")
)


def _lent() -> tuple[ServerConn, ClientConn, _Transport]:
    """A server connection lent to a logged-in client; what the client is sent goes to the transport returned.

    At a boundary outside a transaction the client gives the connection back: it is then in its pool's idle list.
    """
    stats = ProxyStats("p")
    pool = _pool(stats)
    conn = pool.take() or _server(pool)
    stats.borrowed += 1
    client = ClientConn(SimpleNamespace(stats=stats, clients=set()), "READ_WRITE")  # type: ignore[arg-type]
    out = _Transport()
    client.connection_made(out)  # type: ignore[arg-type]
    client.state = "ready"
    client._attach(pool, conn)
    return conn, client, out


def _released(conn: ServerConn, client: ClientConn) -> bool:
    """Whether ``client`` gave ``conn`` back to its pool (what it does at a boundary outside a transaction)."""
    return client.server is None and conn.owner is None and client.pool is not None and client.pool.idle == [conn]


@pytest.mark.parametrize(
    ("sent", "reply", "status"),
    [
        ([query_frame("select 1")], _SELECT + _frame(b"Z", b"I"), "I"),
        ([query_frame("begin; select 1")], _frame(b"C", b"BEGIN\0") + _SELECT + _frame(b"Z", b"T"), "T"),
        (
            [_frame(b"B", b"\0\0\0\0\0\0\0\0"), _frame(b"E", b"\0\0\0\0\0"), b"S\0\0\0\x04"],
            _frame(b"2", b"") + _frame(b"D", b"\0\x01\0\0\0\x011") + _frame(b"C", b"SELECT 1\0") + _frame(b"Z", b"I"),
            "I",
        ),
    ],
)
def test_fast_path_forwards_whole_responses(sent: list[bytes], reply: bytes, status: str) -> None:
    async def main() -> None:
        conn, client, out = _lent()
        for f in sent:
            conn.session.frontend(f[0], f)
        conn.data_received(reply)
        assert out.out == [reply]
        # The boundary was seen: outside a transaction the connection went back, inside it the client keeps it.
        assert _released(conn, client) if status == "I" else client.server is conn
        assert conn.session.at_boundary and conn.session.transaction_status == status
        assert conn.reader.buffered == 0

    asyncio.run(main())


def test_a_query_reuses_the_finished_segment_only_when_nothing_is_pending() -> None:
    async def main() -> None:
        conn, client, out = _lent()
        session = conn.session
        reply = _SELECT + _frame(b"Z", b"I")
        session.query()
        conn.data_received(reply)
        finished = session._spare
        assert finished is not None and session.at_boundary and _released(conn, client)
        assert client.pool is not None and client.pool.take() is conn
        client._attach(client.pool, conn)  # borrowed again
        session.query()  # nothing pending: the finished segment serves again
        assert session._spare is None and session.pending_syncs == 1
        session.query()  # pipelined behind it: a segment of its own
        assert session.pending_syncs == 2 and session._segments[0] is finished
        conn.data_received(reply + reply)  # two answers in one chunk: the general path
        assert b"".join(out.out) == reply * 3 and _released(conn, client)
        assert session.at_boundary and session.transaction_status == "I"

    asyncio.run(main())


def test_chunks_the_fast_path_leaves_to_the_general_one() -> None:
    async def main() -> None:
        # A ParameterStatus inside the response: the client is told (general path).
        conn, client, out = _lent()
        q = query_frame("set timezone = 'UTC'")
        conn.session.frontend(q[0], q)
        reply = _frame(b"C", b"SET\0") + _frame(b"S", b"TimeZone\0UTC\0") + _frame(b"Z", b"I")
        conn.data_received(reply)
        assert b"".join(out.out) == reply and client.params == {"timezone": "UTC"} and _released(conn, client)
        # A response split over two chunks: the first has no ReadyForQuery, the second completes it.
        conn, client, out = _lent()
        conn.session.frontend(q[0], q)
        reply = _SELECT + _frame(b"Z", b"I")
        conn.data_received(reply[:7])
        assert client.server is conn
        conn.data_received(reply[7:])
        assert b"".join(out.out) == reply and _released(conn, client)
        assert conn.session.idle
        # A completion the request cannot have (ParseComplete after a Query) is not waved through: the server
        # connection is closed and the client gets a protocol error and is disconnected.
        conn, client, out = _lent()
        conn.session.frontend(q[0], q)
        conn.data_received(_frame(b"1", b"") + _frame(b"Z", b"I"))
        assert conn.closed and len(out.out) == 1 and out.closed
        assert b"08P01" in out.out[0]
        # Nor a frame whose length cannot be (under 4, its own length field).
        conn, client, out = _lent()
        conn.session.frontend(q[0], q)
        conn.data_received(b"C\0\0\0\x02" + _frame(b"Z", b"I"))
        assert conn.closed and len(out.out) == 1 and out.closed
        assert b"08P01" in out.out[0]

    asyncio.run(main())


def test_clients_borrow_in_the_callback_and_get_connections_handed_over() -> None:
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats, cap_pct=1, timeout=0.2)
        pool._max_connections["i"] = 100  # cap 1
        sent = _Transport()
        server = _server(pool, sent)
        pool.idle.append(server)
        rt = SimpleNamespace(
            stats=stats,
            filters=(),
            current_pool=lambda role, user, database: pool,
            borrow_timeout=lambda: 0.2,
            borrow_seconds=0.2,
            clients=set(),
        )

        def client() -> tuple[ClientConn, _Transport]:
            conn = ClientConn(rt, "READ_WRITE")  # type: ignore[arg-type]
            transport = _Transport()
            conn.transport = transport  # type: ignore[assignment]
            conn.state = "ready"
            return conn, transport

        (a, a_out), (b, b_out), (c, c_out) = client(), client(), client()
        qa, qb, qc = query_frame("select 'a'"), query_frame("select 'b'"), query_frame("select 'c'")
        a.data_received(qa)
        assert sent.out == [qa] and a.server is server  # taken and sent in the same callback
        b.data_received(qb)
        assert b.busy and b.waiting and sent.out == [qa]  # the pool is full: b waits in its queue
        c.data_received(qc)
        server.data_received(_SELECT + _frame(b"Z", b"I"))
        # a's transaction ended: the connection went straight to b, whose query went out at once.
        assert a.server is None and b.server is server and server.owner is b
        assert sent.out == [qa, qb] and not b.busy and c.waiting
        await asyncio.sleep(0.3)
        # c waited past ConnectionBorrowTimeout: an error and ReadyForQuery, and it may try again.
        assert b"53300" in c_out.out[-1] and c_out.out[-1].endswith(_frame(b"Z", b"I"))
        assert not c.busy and not c_out.closed and stats.borrow_timeouts == 1
        server.data_received(_SELECT + _frame(b"Z", b"I"))
        c.data_received(qc)
        assert sent.out[-1] == qc and c.server is server
        assert a_out.out == [_SELECT + _frame(b"Z", b"I")] and b_out.out == a_out.out

    asyncio.run(main())


def test_a_client_keeps_its_pool_only_while_routed_and_never_on_a_reader_endpoint() -> None:
    # A writer endpoint's client borrows from the pool it used last without asking the runtime while the pool
    # stays routed; a reader endpoint's client asks every time (its readers are taken in turn).
    stats = ProxyStats("p")

    async def main() -> None:
        pool = _pool(stats, cap_pct=100)
        pool.routed = True  # as current_pool() leaves a pool it keeps
        asked: list[str] = []

        def current_pool(role: str, user: str, database: str) -> Pool:
            asked.append(role)
            return pool

        rt = SimpleNamespace(stats=stats, filters=(), current_pool=current_pool, borrow_seconds=5.0)
        clients = {role: ClientConn(rt, role) for role in ("READ_WRITE", "READ_ONLY")}  # type: ignore[arg-type]

        def borrow(client: ClientConn) -> None:
            server = _server(pool)
            pool.idle.append(server)
            assert client._borrow_now(time.monotonic()) is server and client.pool is pool
            client.server = None

        for role, times in (("READ_WRITE", 1), ("READ_ONLY", 3)):
            asked.clear()
            for _ in range(3):
                borrow(clients[role])
            assert asked == [role] * times
        pool.routed = False  # a route moved: the writer endpoint's client asks again, and keeps the new answer
        asked.clear()
        borrow(clients["READ_WRITE"])
        pool.routed = True
        borrow(clients["READ_WRITE"])
        assert asked == ["READ_WRITE"]

    asyncio.run(main())


def test_a_finished_answer_hands_the_connection_over_before_it_is_written() -> None:
    # The waiter's query reaches postgres before the answer's send wakes its client; inside a transaction the
    # client keeps the connection and only gets the answer.
    stats = ProxyStats("p")
    log: list[tuple[str, bytes]] = []

    class _Logged(_Transport):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def write(self, data: Any) -> None:
            log.append((self.name, bytes(data)))

    async def main() -> None:
        pool = _pool(stats, cap_pct=1, timeout=5)
        pool._max_connections["i"] = 100  # cap 1
        server = _server(pool, _Logged("server"))
        pool.idle.append(server)
        rt = SimpleNamespace(
            stats=stats, filters=(), current_pool=lambda *a: pool, borrow_timeout=lambda: 5.0, borrow_seconds=5.0
        )
        a, b = ClientConn(rt, "READ_WRITE"), ClientConn(rt, "READ_WRITE")  # type: ignore[arg-type]
        for conn, name in ((a, "a"), (b, "b")):
            conn.transport = _Logged(name)  # type: ignore[assignment]
            conn.state = "ready"
        begin, qb = query_frame("begin"), query_frame("select 'b'")
        a.data_received(begin)
        b.data_received(qb)
        assert b.waiting
        in_tx = _frame(b"C", b"BEGIN\0") + _frame(b"Z", b"T")
        server.data_received(in_tx)
        assert a.server is server and b.waiting and log[-1] == ("a", in_tx)
        commit = query_frame("commit")
        a.data_received(commit)
        done = _frame(b"C", b"COMMIT\0") + _frame(b"Z", b"I")
        server.data_received(done)
        assert a.server is None and b.server is server
        assert log[-2:] == [("server", qb), ("a", done)]

    asyncio.run(main())


def test_query_frames_carry_text_that_was_not_utf8_as_it_came() -> None:
    # Startup parameters are decoded with surrogateescape; SET statements replaying them must not raise.
    body = b"set application_name = 'caf\xe9'\x00"
    assert query_frame("set application_name = 'caf\udce9'") == b"Q" + struct.pack("!i", len(body) + 4) + body
