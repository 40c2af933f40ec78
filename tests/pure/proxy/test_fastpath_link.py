"""The C data path's Link on its own, over socket pairs: what it forwards, what it hands to Python, and that
nothing it holds outlives a close. It is built in the compiled build only (scripts/test-compiled runs this file
with BOREALIS_EXPECT_COMPILED=1, where the first test makes sure it is there); the integration tests
(tests/integration/proxy/test_fastpath.py) run the proxy with it end to end.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import borealis.proxy._server  # noqa: F401  (configures the C path's pre-filter and frame table)
from borealis.pgwire import may_pin

try:
    from borealis.proxy import _fastpath
except ImportError:
    _fastpath = None  # type: ignore[assignment]

needs_fastpath = pytest.mark.skipif(_fastpath is None, reason="the pure build has no C data path")


def test_the_compiled_build_has_it() -> None:
    assert (_fastpath is not None) == (os.environ.get("BOREALIS_EXPECT_COMPILED") == "1")


class Proto:
    """What a Link calls back: data_received, _link_closed, _link_settle, _link_release."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.closed: list[int] = []
        self.settled: list[float] = []
        self.released = 0
        self.began: list[Any] = []
        self.adopted: list[Any] = []
        self.ended: list[Any] = []
        #: What _link_ended answers: the connection's parameters (the lane lends it on), or None.
        self.lend_on: dict[str, str] | None = None

    def _link_release(self) -> None:
        self.released += 1

    def _link_began(self, server: Any) -> None:
        self.began.append(server)

    def _link_ended(self, server: Any) -> dict[str, str] | None:
        self.ended.append(server)
        return self.lend_on

    def _link_adopt(self, server: Any) -> None:
        self.adopted.append(server)

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def _link_closed(self, err: int) -> None:
        self.closed.append(err)

    def _link_settle(self, sent_at: float) -> None:
        self.settled.append(sent_at)


class Transport:
    def __init__(self) -> None:
        self.buffered = 0
        self.written: list[bytes] = []
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _q(sql: bytes) -> bytes:
    return b"Q" + struct.pack("!i", len(sql) + 5) + sql + b"\0"


def _frame(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!i", len(body) + 4) + body


def _answer(status: bytes) -> bytes:
    row = _frame(b"D", struct.pack("!hi", 1, 1) + b"1")
    return row + _frame(b"C", b"SELECT 1\0") + _frame(b"Z", status)


class Pair:
    """A client link and a server link, each over a socket pair: ``app`` is the client, ``pg`` the server."""

    def __init__(self) -> None:
        assert _fastpath is not None
        self.app, client_end = socket.socketpair()
        self.pg, server_end = socket.socketpair()
        for s in (self.app, self.pg, client_end, server_end):
            s.settimeout(5)
        self.cp, self.sp = Proto(), Proto()
        self.ct, self.st = Transport(), Transport()
        self.counters = _fastpath.Counters()
        self.client = _fastpath.Link(client_end.fileno(), self.cp, self.ct, False, self.counters)
        self.server = _fastpath.Link(server_end.fileno(), self.sp, self.st, True, self.counters)
        client_end.close()  # the Links read their own duplicates
        server_end.close()

    def close(self) -> None:
        self.client.close()
        self.server.close()
        self.app.close()
        self.pg.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    yield p
    p.close()


@needs_fastpath
def test_a_transactions_round_trip_stays_in_c(pair: Pair) -> None:
    sql = b"select 1"
    assert pair.client.arm(pair.server, "T", False, sql) is True
    for _ in range(3):
        pair.app.sendall(_q(sql))
        pair.client()
        assert pair.pg.recv(100) == _q(sql)
        assert pair.server.inflight
        pair.pg.sendall(_answer(b"T"))
        pair.server()
        assert pair.app.recv(100) == _answer(b"T")
        assert not pair.server.inflight and pair.client.armed
    assert (pair.counters.queries, pair.counters.responses) == (3, 3)
    assert pair.cp.data == [] and pair.sp.data == [] and pair.sp.settled == []


@needs_fastpath
def test_anything_else_goes_to_python_with_the_query_in_flight_first(pair: Pair) -> None:
    sql = b"select 1"
    pair.client.arm(pair.server, "T", False, sql)
    pair.app.sendall(_q(sql))
    pair.client()
    pair.pg.recv(100)
    # A second Query before the answer: handed back (settled), then to the client protocol as it came.
    pair.app.sendall(_q(b"select 2"))
    pair.client()
    assert len(pair.sp.settled) == 1 and pair.cp.data == [_q(b"select 2")]
    assert not pair.client.armed and not pair.server.inflight
    # The answer now goes to Python too (the pair is disarmed).
    pair.pg.sendall(_answer(b"T"))
    pair.server()
    assert pair.sp.data == [_answer(b"T")]
    pair.app.setblocking(False)
    with pytest.raises(BlockingIOError):
        pair.app.recv(100)  # the client got nothing from the C path


@needs_fastpath
@pytest.mark.parametrize(
    "chunk",
    [
        _q(b"select 1") + _q(b"select 1"),  # two messages in one chunk
        _q(b"select 1")[:-3],  # part of one
        b"P" + _q(b"select 1")[1:],  # another type
        b"Q\0\0\0\x05\0",  # a length that is not the chunk's
        b"Q\0\0\0\x04",  # too short
        _q(b"select set_config('a.b', 'c', false)"),  # a text whose shape is not known not to pin
    ],
)
def test_chunks_that_are_not_one_known_query_go_to_python(pair: Pair, chunk: bytes) -> None:
    pair.client.arm(pair.server, "T", False, b"select 1")
    pair.app.sendall(chunk)
    pair.client()
    assert pair.cp.data == [chunk]
    assert pair.counters.queries == 0
    pair.pg.setblocking(False)
    with pytest.raises(BlockingIOError):
        pair.pg.recv(100)  # nothing reached the server


@needs_fastpath
@pytest.mark.parametrize(
    "answer",
    [
        _frame(b"E", b"SERROR\0C22012\0Mdivision by zero\0\0") + _frame(b"Z", b"E"),
        _frame(b"S", b"application_name\0x\0") + _frame(b"C", b"SET\0") + _frame(b"Z", b"T"),
        _answer(b"T")[:-1],  # cut short
        b"D" + struct.pack("!i", 1000) + b"xx" + _frame(b"Z", b"T"),  # a frame whose length runs past the end
    ],
)
def test_answers_that_are_not_plain_go_to_python(pair: Pair, answer: bytes) -> None:
    pair.client.arm(pair.server, "T", False, b"select 1")
    pair.app.sendall(_q(b"select 1"))
    pair.client()
    pair.pg.recv(100)
    pair.pg.sendall(answer)
    pair.server()
    assert pair.sp.data == [answer] and len(pair.sp.settled) == 1
    pair.app.setblocking(False)
    with pytest.raises(BlockingIOError):
        pair.app.recv(100)  # the client got nothing from the C path


@needs_fastpath
def test_the_end_of_a_transaction(pair: Pair) -> None:
    # Unpinned: the connection goes back (the client protocol's _link_release), then the answer goes out.
    pair.client.arm(pair.server, "T", False, b"commit")
    pair.app.sendall(_q(b"commit"))
    pair.client()
    pair.pg.recv(100)
    pair.pg.sendall(_answer(b"I"))
    pair.server()
    assert pair.cp.released == 1 and pair.app.recv(100) == _answer(b"I")
    assert not pair.client.armed and pair.sp.data == [] and pair.sp.settled == []
    # Pinned: the session is the client's, whatever the status; an answer that changes it goes to Python.
    pair.client.arm(pair.server, "T", True, b"")
    pair.app.sendall(_q(b"commit"))
    pair.client()
    pair.pg.recv(100)
    pair.pg.sendall(_answer(b"I"))
    pair.server()
    assert pair.cp.released == 1 and pair.sp.data == [_answer(b"I")] and len(pair.sp.settled) == 1


@needs_fastpath
def test_an_autocommit_query_python_sent(pair: Pair) -> None:
    # Python lent the connection and wrote the Query; the answer (still autocommit) goes out here, after the
    # connection went back.
    assert pair.client.sent(pair.server, 1.0) is True
    assert pair.server.inflight and pair.client.armed
    pair.pg.sendall(_answer(b"I"))
    pair.server()
    assert pair.cp.released == 1 and pair.app.recv(100) == _answer(b"I")
    assert not pair.client.armed and pair.counters.responses == 1
    # A BEGIN: the client keeps the connection (Python hears of it first) and the pair stays armed for the
    # transaction.
    assert pair.client.sent(pair.server, 2.0) is True
    pair.pg.sendall(_answer(b"T"))
    pair.server()
    assert pair.cp.began == [pair.sp] and pair.app.recv(100) == _answer(b"T") and pair.cp.released == 1
    assert pair.client.armed and not pair.server.inflight and pair.sp.data == [] and pair.sp.settled == []
    # An error in it: the answer goes to Python.
    assert pair.client.arm(pair.server, "T", False, b"select 1") is True  # (the text as known not to pin)
    pair.app.sendall(_q(b"select 1"))
    pair.client()
    assert pair.pg.recv(100) == _q(b"select 1")
    error = _frame(b"E", b"SERROR\0C22012\0Mdivision by zero\0\0") + _frame(b"Z", b"E")
    pair.pg.sendall(error)
    pair.server()
    assert len(pair.sp.settled) == 1 and pair.sp.data == [error] and not pair.client.armed
    # One Query in flight on a connection at a time, for one client.
    assert pair.client.sent(pair.server, 3.0) is True
    assert pair.client.sent(pair.server, 4.0) is False
    other = Pair()
    try:
        assert other.client.sent(pair.server, 5.0) is False
    finally:
        other.close()


@needs_fastpath
def test_a_known_shape_with_other_numbers_stays_in_c(pair: Pair) -> None:
    assert not may_pin(b"select abalance from shape_cache_t where aid = 17")
    assert pair.client.arm(pair.server, "T", False, b"") is True
    for aid in (1, 22, 333, 1):  # the shape found in UNPINNED_SHAPES once, then kept in C
        sql = b"select abalance from shape_cache_t where aid = %d" % aid
        pair.app.sendall(_q(sql))
        pair.client()
        assert pair.pg.recv(100) == _q(sql)
        pair.pg.sendall(_answer(b"T"))
        pair.server()
        assert pair.app.recv(100) == _answer(b"T")
    # Another shape, never checked (the same length, the same digits): Python looks.
    for sql in (
        b"select abalance from shape_cache_t where bid = 1",
        b"select abalance from shape_cache_u where aid = 1",
    ):
        pair.app.sendall(_q(sql))
        pair.client()
        assert pair.cp.data[-1] == _q(sql)
        pair.client.arm(pair.server, "T", False, b"")
    assert pair.counters.queries == 4


@needs_fastpath
def test_a_transport_with_bytes_queued_keeps_the_order(pair: Pair) -> None:
    pair.client.arm(pair.server, "T", False, b"select 1")
    pair.st.buffered = 10  # the server's transport still holds bytes: ours must go after them
    pair.app.sendall(_q(b"select 1"))
    pair.client()
    assert pair.cp.data == [_q(b"select 1")] and pair.counters.queries == 0


@needs_fastpath
def test_the_clients_transport_holding_bytes(pair: Pair) -> None:
    pair.client.arm(pair.server, "T", False, b"select 1")
    pair.app.sendall(_q(b"select 1"))
    pair.client()
    pair.pg.recv(100)
    pair.ct.buffered = 10  # the answer must queue behind them: Python writes it
    pair.pg.sendall(_answer(b"T"))
    pair.server()
    assert pair.sp.data == [_answer(b"T")] and len(pair.sp.settled) == 1 and pair.counters.responses == 0


class Raising(Proto):
    def data_received(self, data: bytes) -> None:
        raise RuntimeError("data_received failed")

    def _link_release(self) -> None:
        raise RuntimeError("release failed")


@needs_fastpath
def test_a_callback_that_raises_aborts_its_connection() -> None:
    assert _fastpath is not None
    app, end = socket.socketpair()
    t = Transport()
    link = _fastpath.Link(end.fileno(), Raising(), t, False, _fastpath.Counters())
    end.close()
    try:
        app.sendall(b"anything")
        with pytest.raises(RuntimeError, match="data_received failed"):
            link()
        assert t.aborted  # as uvloop aborts a transport whose data_received raised
    finally:
        link.close()
        app.close()


@needs_fastpath
def test_a_release_that_raises_still_answers_and_aborts_the_server(pair: Pair) -> None:
    assert _fastpath is not None
    pair.client.close()
    app, end = socket.socketpair()
    ct = Transport()
    client = _fastpath.Link(end.fileno(), Raising(), ct, False, pair.counters)
    end.close()
    try:
        client.arm(pair.server, "T", False, b"commit")
        app.sendall(_q(b"commit"))
        client()
        pair.pg.recv(100)
        pair.pg.sendall(_answer(b"I"))
        with pytest.raises(RuntimeError, match="release failed"):
            pair.server()
        app.settimeout(5)
        assert app.recv(100) == _answer(b"I")  # the client has its answer
        assert pair.st.aborted and not ct.aborted  # the connection whose state is unknown goes
    finally:
        client.close()
        app.close()


@needs_fastpath
def test_start_link_falls_back_when_the_descriptor_cannot_be_duplicated() -> None:
    from borealis.proxy._server import start_link

    class Sock:
        def fileno(self) -> int:
            return 1 << 20  # not open: the dup fails as it would with no descriptor left

    class Tr(Transport):
        paused = False

        def is_closing(self) -> bool:
            return False

        def get_extra_info(self, name: str) -> Any:
            return Sock() if name == "socket" else None

        def pause_reading(self) -> None:
            self.paused = True

    assert _fastpath is not None
    tr = Tr()
    assert start_link(tr, Proto(), False, _fastpath.Counters()) is None
    assert not tr.paused  # uvloop keeps reading


@needs_fastpath
def test_eof_and_close(pair: Pair) -> None:
    pair.client.arm(pair.server, "T", False, b"select 1")
    pair.app.sendall(_q(b"select 1"))
    pair.client()
    pair.app.shutdown(socket.SHUT_WR)
    pair.client()
    # EOF with a Query in flight: handed back first, then the protocol hears of the EOF.
    assert pair.cp.closed == [0] and len(pair.sp.settled) == 1
    pair.server.close()
    assert pair.server.fileno() == -1 and not pair.client.armed
    pair.server()  # a closed link reads nothing
    assert pair.sp.data == []
    with pytest.raises(ValueError):
        pair.server.arm(pair.client, "T", False, b"")  # a server's link is never armed


@needs_fastpath
def test_links_do_not_leak() -> None:
    assert _fastpath is not None
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    links: list[Any] = []
    for _ in range(50):
        p = Pair()
        p.client.arm(p.server, "T", True, b"")
        links.append(p)
    for p in links:
        p.app.close()
        p.pg.close()
    del links, p
    gc.collect()  # armed pairs and their protocols' bound methods form cycles: the collector frees them
    assert len(os.listdir("/proc/self/fd")) == before


class Rig:
    """One server link and ``n`` client links, and a pool's Lane: ``apps[i]`` is client i's end, ``pg`` the server's."""

    def __init__(self, n: int) -> None:
        assert _fastpath is not None
        self.counters = _fastpath.Counters()
        self.returned: list[Any] = []
        self.lane = _fastpath.Lane(self.counters, self.returned.append)
        self.pg, server_end = socket.socketpair()
        self.sp, self.st = Proto(), Transport()
        self.server = _fastpath.Link(server_end.fileno(), self.sp, self.st, True, self.counters)
        server_end.close()
        self.apps: list[socket.socket] = []
        self.cps: list[Proto] = []
        self.clients: list[Any] = []
        for _ in range(n):
            app, end = socket.socketpair()
            proto = Proto()
            self.clients.append(_fastpath.Link(end.fileno(), proto, Transport(), False, self.counters))
            end.close()
            self.apps.append(app)
            self.cps.append(proto)
        for sock in (self.pg, *self.apps):
            sock.settimeout(5)

    def ask(self, i: int, sql: bytes) -> None:
        """Client i sends ``sql`` and the C path reads it."""
        self.apps[i].sendall(_q(sql))
        self.clients[i]()

    def answer(self, status: bytes = b"I") -> None:
        """The server answers the Query in flight, and the C path reads it."""
        self.pg.sendall(_answer(status))
        self.server()

    def close(self) -> None:
        for link in (*self.clients, self.server):
            link.close()
        for sock in (self.pg, *self.apps):
            sock.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(3)
    yield r
    r.close()


PARAMS = {"application_name": "app"}


@needs_fastpath
def test_a_saturated_pools_queries_park_and_are_lent_in_order(rig: Rig) -> None:
    sql = b"select 1"
    # Python parks the first Query (its pool was full); the others, idle clients whose text is known, park in C.
    assert rig.lane.park(rig.clients[0], _q(sql), 1.0, PARAMS, sql) is True
    for i in (1, 2):
        assert rig.clients[i].park_when_idle(rig.lane, dict(PARAMS), sql) is True
        rig.ask(i, sql)
        assert rig.clients[i].parked and rig.cps[i].data == []
    assert rig.lane.count == 3 and rig.lane.head_since == 1.0
    # A connection given back goes to the first, whose Query is sent from C; each answer lends it to the next.
    assert rig.lane.grant(rig.server, dict(PARAMS), 2.0) is True
    assert rig.server.lane_held and rig.lane.count == 2
    for i in range(3):
        assert rig.pg.recv(100) == _q(sql)
        rig.answer()
        assert rig.apps[i].recv(100) == _answer(b"I")
        assert rig.clients[i].idle  # its next Query may park again
    # Nothing waits: the connection goes back to the pool (its server protocol), and Python saw none of it.
    assert rig.returned == [rig.sp] and not rig.server.lane_held
    assert all(p.data == [] and p.adopted == [] for p in (*rig.cps, rig.sp))
    assert rig.counters.borrows == 3 and rig.counters.queries == 3 and rig.counters.responses == 3


@needs_fastpath
def test_an_idle_client_parks_only_behind_others(rig: Rig) -> None:
    sql = b"select 1"
    assert rig.clients[0].park_when_idle(rig.lane, PARAMS, sql) is True
    rig.ask(0, sql)  # nothing waits: Python borrows (there may be an idle connection)
    assert rig.cps[0].data == [_q(sql)] and not rig.clients[0].parked and not rig.clients[0].idle
    assert rig.lane.park(rig.clients[1], _q(sql), 1.0, PARAMS, sql) is True
    assert rig.clients[2].park_when_idle(rig.lane, PARAMS, b"") is True
    rig.ask(2, b"create temp table t (a int)")  # not known not to pin: Python looks
    assert rig.cps[2].data == [_q(b"create temp table t (a int)")] and rig.lane.count == 1
    rig.lane.open = 0  # the pool is no longer the route
    assert rig.clients[0].park_when_idle(rig.lane, PARAMS, sql) is True
    rig.ask(0, sql)
    assert rig.cps[0].data[-1] == _q(sql) and rig.lane.count == 1


@needs_fastpath
def test_the_pools_own_waiters_and_other_parameters_come_first(rig: Rig) -> None:
    sql = b"select 1"
    assert rig.lane.park(rig.clients[0], _q(sql), 1.0, PARAMS, sql) is True
    assert rig.lane.park(rig.clients[1], _q(sql), 2.0, {"application_name": "other"}, sql) is True
    assert rig.lane.park(rig.clients[2], _q(sql), 3.0, PARAMS, sql) is True
    assert rig.lane.grant(rig.server, {"application_name": "else"}, 4.0) is False  # SET first: Python's way
    got = rig.lane.pop()
    assert got is not None and got[0] is rig.cps[0] and got[1] == _q(sql) and got[2] == 1.0
    assert not rig.clients[0].parked
    rig.lane.park(rig.clients[0], _q(sql), 3.5, PARAMS, sql)  # (back, at the tail)
    assert rig.lane.grant(rig.server, dict(PARAMS), 4.0) is False  # the head needs other parameters
    assert rig.lane.pop() is not None  # client 1, Python's way
    assert rig.lane.grant(rig.server, dict(PARAMS), 4.0) is True  # client 2 came first now
    assert rig.pg.recv(100) == _q(sql)
    rig.lane.py_since = 2.5  # one of the pool's own waiters came before client 0
    rig.answer()
    assert rig.apps[2].recv(100) == _answer(b"I") and rig.returned == [rig.sp] and rig.lane.count == 1


@needs_fastpath
def test_a_parked_client_that_sends_more_or_leaves(rig: Rig) -> None:
    sql = b"select 1"
    for i in range(3):
        assert rig.lane.park(rig.clients[i], _q(sql), float(i), PARAMS, sql) is True
    # More bytes: the parked Query goes to Python in front of them, and leaves the queue.
    rig.ask(1, b"select 2")
    assert rig.cps[1].data == [_q(sql) + _q(b"select 2")] and rig.lane.count == 2
    # EOF: the Query goes with the connection.
    rig.apps[2].close()
    rig.clients[2]()
    assert rig.cps[2].closed == [0] and rig.lane.count == 1
    # Python closes one: out of the queue too.
    rig.clients[0].close()
    assert rig.lane.count == 0 and rig.lane.head_since == float("inf")


@needs_fastpath
def test_timeouts_and_a_closing_pool(rig: Rig) -> None:
    sql = b"select 1"
    rig.lane.timeout = 5.0
    for i in range(3):
        assert rig.lane.park(rig.clients[i], _q(sql), float(i), PARAMS, sql) is True
    assert [g[0] for g in rig.lane.expire(6.5)] == [rig.cps[0], rig.cps[1]]
    assert rig.lane.count == 1 and not rig.clients[0].parked
    assert [g[0] for g in rig.lane.drain()] == [rig.cps[2]] and rig.lane.count == 0 and rig.lane.open == 0


@needs_fastpath
def test_a_lane_held_pair_goes_to_python_adopted(rig: Rig) -> None:
    sql = b"select 1"
    rig.lane.park(rig.clients[0], _q(sql), 1.0, PARAMS, sql)
    rig.lane.grant(rig.server, dict(PARAMS), 2.0)
    assert rig.pg.recv(100) == _q(sql)
    # An error: the client takes the connection over (Python learns who has it) before the answer reaches Python.
    error = _frame(b"E", b"SERROR\0C22012\0Mdivision by zero\0\0") + _frame(b"Z", b"I")
    rig.pg.sendall(error)
    rig.server()
    assert rig.cps[0].adopted == [rig.sp] and rig.sp.settled == [2.0] and rig.sp.data == [error]
    assert not rig.server.lane_held and rig.returned == []


@needs_fastpath
def test_a_lent_begin_keeps_the_connection(rig: Rig) -> None:
    sql = b"begin"
    rig.lane.park(rig.clients[0], _q(sql), 1.0, PARAMS, sql)
    rig.lane.park(rig.clients[1], _q(sql), 1.5, PARAMS, sql)
    rig.lane.grant(rig.server, dict(PARAMS), 2.0)
    assert rig.pg.recv(100) == _q(sql)
    rig.answer(b"T")
    # The client holds it in Python's books now (_link_began), armed for its transaction; nobody else gets it.
    assert rig.cps[0].began == [rig.sp] and rig.apps[0].recv(100) == _answer(b"T")
    assert not rig.server.lane_held and rig.clients[0].armed and rig.lane.count == 1
    # Its COMMIT ends it while a Query waits: Python lets go (_link_ended) and the lane lends it on from C.
    assert not may_pin(b"commit")
    rig.cps[0].lend_on = dict(PARAMS)
    rig.ask(0, b"commit")
    assert rig.pg.recv(100) == _q(b"commit")
    rig.answer(b"I")
    assert rig.cps[0].ended == [rig.sp] and rig.cps[0].released == 0 and rig.apps[0].recv(100) == _answer(b"I")
    assert rig.pg.recv(100) == _q(sql) and rig.server.lane_held and rig.lane.count == 0 and rig.clients[0].idle
    # Its BEGIN: the same again, but now nothing waits: the connection goes back through Python's own hook.
    rig.answer(b"T")
    assert rig.cps[1].began == [rig.sp]
    rig.apps[1].recv(100)
    rig.ask(1, b"commit")
    rig.pg.recv(100)
    rig.answer(b"I")
    assert rig.cps[1].ended == [] and rig.cps[1].released == 1 and rig.apps[1].recv(100) == _answer(b"I")


@needs_fastpath
def test_lanes_do_not_leak() -> None:
    assert _fastpath is not None
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    rigs = []
    for _ in range(20):
        r = Rig(3)
        r.lane.park(r.clients[0], _q(b"select 1"), 1.0, PARAMS, b"select 1")
        r.lane.park(r.clients[1], _q(b"select 1"), 1.0, PARAMS, b"select 1")
        r.lane.grant(r.server, dict(PARAMS), 2.0)
        rigs.append(r)
    for r in rigs:
        r.pg.close()
        for app in r.apps:
            app.close()
    del rigs, r
    gc.collect()  # lanes, parked links and their protocols form cycles: the collector frees them
    assert len(os.listdir("/proc/self/fd")) == before


_frames = st.lists(
    st.tuples(st.sampled_from(b"QPBDCTZESINnst1239\x00\xff"), st.binary(max_size=40), st.integers(-8, 60)),
    min_size=1,
    max_size=4,
)


def _build(frames: list[tuple[int, bytes, int]]) -> bytes:
    """Frames of any type, body and declared length (the true one, or off by up to +-8)."""
    out = b""
    for t, body, skew in frames:
        size = len(body) + 4 + (skew if skew <= 8 else 0)
        out += bytes([t]) + struct.pack("!i", size) + body
    return out


#: A Query as a client sends it (its text without NULs), or any frames.
_chunks = st.one_of(_frames.map(_build), st.binary(max_size=40).map(lambda b: _q(b.replace(b"\0", b""))))
#: An answer made of frames the C path passes, ending in ReadyForQuery of any status, or any frames.
_answers = st.one_of(
    _frames.map(_build),
    st.tuples(
        st.lists(st.tuples(st.sampled_from(b"DCTINE"), st.binary(max_size=30)), max_size=4),
        st.sampled_from([b"I", b"T", b"E"]),
    ).map(lambda a: b"".join(_frame(bytes([t]), body) for t, body in a[0]) + _frame(b"Z", a[1])),
)


@needs_fastpath
@settings(max_examples=400, deadline=None)
@given(sent=_chunks, answer=_answers, pinned=st.booleans(), status=st.sampled_from("TIE"))
def test_any_bytes_either_go_through_whole_or_reach_python_whole(
    sent: bytes, answer: bytes, pinned: bool, status: str
) -> None:
    p = Pair()
    try:
        p.pg.setblocking(False)
        p.app.setblocking(False)
        p.client.arm(p.server, status, pinned, b"")
        p.app.sendall(sent)
        p.client()
        try:
            forwarded = p.pg.recv(1 << 16)
        except BlockingIOError:
            forwarded = b""
        # Either the server got the chunk as it came and Python nothing, or the other way round.
        assert (forwarded, p.cp.data) in ((sent, []), (b"", [sent]))
        event("Query through C" if forwarded else "Query to Python")
        if not forwarded:
            return
        p.pg.sendall(answer)
        p.server()
        try:
            got = p.app.recv(1 << 16)
        except BlockingIOError:
            got = b""
        assert (got, p.sp.data) in ((answer, []), (b"", [answer]))
        event("answer through C" if got else "answer to Python")
        # Whatever did not go through was handed back with the Query in flight first.
        assert len(p.sp.settled) == (0 if got else 1)
    finally:
        p.close()


def _echo(chunk: bytes, status: bytes) -> bytes:
    """A server's answers to the Queries in ``chunk``: each one's text as its only row."""
    out, pos = b"", 0
    while pos + 5 <= len(chunk):
        (size,) = struct.unpack_from("!i", chunk, pos + 1)
        text = chunk[pos + 5 : pos + size]
        out += _frame(b"D", struct.pack("!hi", 1, len(text)) + text) + _frame(b"C", b"SELECT 1\0")
        out += _frame(b"Z", status)
        pos += 1 + size
    return out


#: (operation, client, server, flag): parks, lends and answers weighted up, so that most runs lend from C.
_OPS = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 6, 7, 8, 9, 10, 11]),
        st.integers(0, 3),
        st.integers(0, 1),
        st.booleans(),
    ),
    min_size=10,
    max_size=80,
)


@needs_fastpath
@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_any_sequence_of_lane_operations_keeps_each_answer_with_its_client(
    ops: list[tuple[int, int, int, bool]],
) -> None:
    """Parks, lends, answers (ending the statement or opening a transaction), other bytes, closes, timeouts,
    pops, the pool's own waiters and a closed route, in any order: the queue holds exactly the parked clients,
    and every row a client gets is the answer to its own Query."""
    assert _fastpath is not None
    rig = Rig(4)
    pgs, servers, sps = [rig.pg], [rig.server], [rig.sp]
    pg2, end = socket.socketpair()
    sps.append(Proto())
    servers.append(_fastpath.Link(end.fileno(), sps[1], Transport(), True, rig.counters))
    end.close()
    pgs.append(pg2)
    for sock in (*pgs, *rig.apps):
        sock.setblocking(False)
    now = 0.0
    try:
        for op, i, j, flag in ops:
            now += 0.01
            sql = b"select %d" % i
            client, server = rig.clients[i], servers[j]
            if op == 0:
                rig.lane.park(client, _q(sql), now, PARAMS, sql)
            elif op == 1:
                client.park_when_idle(rig.lane, PARAMS, sql)
            elif op == 2 and client.fileno() >= 0:
                rig.apps[i].sendall(_q(sql))
                client()
            elif op == 3:
                rig.lane.grant(server, dict(PARAMS) if flag else {"application_name": "other"}, now)
            elif op == 4 and server.fileno() >= 0:
                try:
                    asked = pgs[j].recv(1 << 16)
                except BlockingIOError:
                    asked = b""
                if asked:
                    pgs[j].sendall(_echo(asked, b"T" if flag and i == 0 else b"I"))
                    server()
            elif op == 5 and client.fileno() >= 0:
                rig.apps[i].sendall(b"S\0\0\0\x04")  # a Sync: not a Query
                client()
            elif op == 6 and flag:
                client.close()
            elif op == 7:
                rig.lane.pop()
            elif op == 8:
                rig.lane.expire(now - (0.5 if flag else 0.05))
            elif op == 9:
                rig.lane.py_since = now - 0.2 if flag else float("inf")
            elif op == 10 and flag and i == 0:
                server.close()
            elif op == 11:
                rig.lane.open = int(flag)
            assert rig.lane.count == sum(1 for c in rig.clients if c.parked)
        event("lent from C" if rig.counters.borrows else "nothing lent")
        event("answered from C" if rig.counters.responses else "nothing answered from C")
        for i, app in enumerate(rig.apps):
            try:
                got = app.recv(1 << 20)
            except BlockingIOError:
                got = b""
            pos = 0
            while pos + 5 <= len(got):
                (size,) = struct.unpack_from("!i", got, pos + 1)
                if got[pos : pos + 1] == b"D":
                    assert got[pos + 11 : pos + 1 + size] == b"select %d" % i
                pos += 1 + size
    finally:
        servers[1].close()
        pg2.close()
        rig.close()
