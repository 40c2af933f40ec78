"""The statements of a transaction, and of a pinned session, through the proxy: what the C data path forwards
itself in the compiled build (``_fastpath.c``) and Python forwards in the pure one, with the same answers.

The raw client logs in with libpq, then writes simple-protocol Query messages to the socket itself, so that a
test decides exactly what goes out in one write, and when (two Queries before the first answer, a socket shut
while a statement runs). CI runs this file in both builds: pure first, then compiled (scripts/test-compiled),
where each test also checks that the C path forwarded what it should.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from typing import Any

import psycopg
import pytest

from borealis._build import fastpath_built
from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo, smallest_pool

#: The C data path runs in the server too (the same PYTHONPATH and environment).
FAST = fastpath_built() and os.environ.get("BOREALIS_FASTPATH", "1") != "0"
PINNED = "database_connections_currently_session_pinned"


@pytest.fixture(scope="module")
def fast(borealis: BorealisProcess) -> ProxyInfo:
    """A proxy with the smallest pool."""
    info = smallest_pool(borealis, "fastpath-proxy", 10)
    with psycopg.connect(**info.conninfo(), autocommit=True) as conn:
        conn.execute("create table if not exists fast_t (id int, note text)")
    return info


def _query(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


class Raw:
    """A client logged in by libpq that then speaks the simple protocol itself, message by message."""

    def __init__(self, info: ProxyInfo, **extra: Any) -> None:
        self.conn = psycopg.connect(**info.conninfo(sslmode="disable", **extra), autocommit=True)
        self.sock = socket.socket(fileno=os.dup(self.conn.pgconn.socket))
        self.sock.setblocking(True)
        self.sock.settimeout(20)
        self.buf = b""

    def send(self, *sqls: str) -> None:
        """Every Query in one write."""
        self.sock.sendall(b"".join(_query(s) for s in sqls))

    def answer(self) -> tuple[list[list[str | None]], list[str], str | None, str]:
        """Read one answer up to its ReadyForQuery: (rows, command tags, SQLSTATE of an error, status)."""
        rows: list[list[str | None]] = []
        tags: list[str] = []
        error = None
        while True:
            while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack_from("!i", self.buf, 1)[0]:
                chunk = self.sock.recv(1 << 20)
                assert chunk, "the proxy closed the connection"
                self.buf += chunk
            t, n = self.buf[0:1], struct.unpack_from("!i", self.buf, 1)[0]
            body, self.buf = self.buf[5 : 1 + n], self.buf[1 + n :]
            if t == b"D":
                (count,) = struct.unpack_from("!h", body, 0)
                pos, row = 2, []
                for _ in range(count):
                    (size,) = struct.unpack_from("!i", body, pos)
                    pos += 4
                    row.append(None if size < 0 else body[pos : pos + size].decode())
                    pos += max(size, 0)
                rows.append(row)
            elif t == b"C":
                tags.append(body[:-1].decode())
            elif t == b"E":
                fields = dict((f[:1], f[1:]) for f in body.split(b"\0") if f)
                error = fields[b"C"].decode()
            elif t == b"Z":
                return rows, tags, error, body.decode()

    def one(self, sql: str) -> str | None:
        self.send(sql)
        rows, _, error, _ = self.answer()
        assert error is None, f"{sql}: {error}"
        return rows[0][0] if rows else None

    def close(self) -> None:
        self.sock.close()
        self.conn.close()


def _fast_queries(borealis: BorealisProcess, metric: str = "fastpath_queries_total") -> float:
    """``borealis_proxy_<metric>`` of the test proxy, from GET /metrics."""
    token = (borealis.data_dir / "metrics.token").read_text().strip()
    req = urllib.request.Request(borealis.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    found = re.search(rf'^borealis_proxy_{metric}\{{proxy="fastpath-proxy"\}} (\S+)$', text, re.M)
    assert found, f"no borealis_proxy_{metric} for fastpath-proxy in /metrics"
    return float(found.group(1))


def _wait_unpinned(borealis: BorealisProcess) -> None:
    """Until the proxy has seen the last pinned client go (it reads the EOF in its own time)."""
    deadline = time.monotonic() + 10
    while _fast_queries(borealis, PINNED) != 0:
        assert time.monotonic() < deadline, "a pinned client is still counted 10 s after it left"
        time.sleep(0.05)


def test_a_transactions_statements_and_answers(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    before, queries = _fast_queries(borealis), _fast_queries(borealis, "query_requests_total")
    raw = Raw(fast)
    try:
        raw.send("begin")
        assert raw.answer()[3] == "T"
        raw.send("insert into fast_t values (1, 'a'), (2, 'b')")
        assert raw.answer()[1:] == (["INSERT 0 2"], None, "T")
        for i in range(20):
            raw.send(f"select {i}, 'x' || {i}")
            rows, tags, error, status = raw.answer()
            assert (rows, tags, error, status) == ([[str(i), f"x{i}"]], ["SELECT 1"], None, "T")
        raw.send("update fast_t set note = 'c' where id = 2")
        assert raw.answer()[1:] == (["UPDATE 1"], None, "T")
        raw.send("select count(*) from fast_t where note = 'c'")
        assert raw.answer()[0] == [["1"]]
        raw.send("rollback")
        assert raw.answer()[1:] == (["ROLLBACK"], None, "I")
        assert raw.one("select count(*) from fast_t") == "0"
    finally:
        raw.close()
    # QueryRequests counts every statement whichever path forwarded it (begin, insert, 20, update, count,
    # rollback, count: 26).
    assert _fast_queries(borealis, "query_requests_total") - queries == 26
    forwarded = _fast_queries(borealis) - before
    if FAST:
        # The statements after BEGIN, up to the ROLLBACK; a text of a new shape goes to Python first, for the
        # pinning check (may_pin learns the shape): of the 20 selects, at least the last 19 took the C path.
        assert forwarded >= 19
    else:
        assert forwarded == 0


def test_a_second_query_before_the_first_answer(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    raw = Raw(fast)
    try:
        raw.send("begin")
        raw.answer()
        for _ in range(5):
            # In two writes: the second arrives while the first is in flight (on the C path: handed back).
            raw.send("select pg_sleep(0.05), 1")
            raw.send("select 2")
            assert raw.answer()[0] == [["", "1"]]
            assert raw.answer()[0] == [["2"]]
            # In one write: two messages in one chunk.
            raw.send("select 3", "select 4")
            assert raw.answer()[0] == [["3"]]
            assert raw.answer()[0] == [["4"]]
            assert raw.one("select 5") == "5"
        raw.send("commit")
        assert raw.answer()[3] == "I"
    finally:
        raw.close()


def test_a_large_answer_in_a_transaction(fast: ProxyInfo) -> None:
    raw = Raw(fast)
    try:
        raw.send("begin")
        raw.answer()
        for _ in range(3):
            raw.send("select repeat('x', 1000) from generate_series(1, 3000)")  # 3 MB: many reads
            rows, tags, error, status = raw.answer()
            assert (len(rows), tags, error, status) == (3000, ["SELECT 3000"], None, "T")
            assert all(r == ["x" * 1000] for r in rows)
            assert raw.one("select 'small'") == "small"
        raw.send("commit")
        assert raw.answer()[3] == "I"
    finally:
        raw.close()


def test_an_error_in_a_transaction(fast: ProxyInfo) -> None:
    raw = Raw(fast)
    try:
        for _ in range(3):
            raw.send("begin")
            raw.answer()
            assert raw.one("select 1") == "1"
            raw.send("select 1/0")
            assert raw.answer()[2:] == ("22012", "E")
            raw.send("select 1")
            assert raw.answer()[2:] == ("25P02", "E")
            raw.send("rollback")
            assert raw.answer()[2:] == (None, "I")
            assert raw.one("select 2") == "2"
    finally:
        raw.close()


def test_a_client_that_vanishes_with_a_statement_running(fast: ProxyInfo) -> None:
    cap = fast.cap  # type: ignore[attr-defined]
    for _ in range(3):
        raw = Raw(fast)
        raw.send("begin")
        raw.answer()
        raw.send("insert into fast_t values (9, 'vanished')")
        raw.answer()
        raw.send("select pg_sleep(0.5), 'stale answer'")
        raw.sock.shutdown(socket.SHUT_RDWR)  # no Terminate: the socket just closes, the statement runs on
        raw.close()
        # Every server connection of the pool, at once: none may be lent with that statement's answer to come.
        clients = [Raw(fast) for _ in range(cap)]
        try:
            for c in clients:
                c.send("begin")
                assert c.answer()[3] == "T"
            for i, c in enumerate(clients):
                assert c.one(f"select {i}") == str(i)
                assert c.one("select count(*) from fast_t where id = 9") == "0"
            for c in clients:
                c.send("commit")
                assert c.answer()[3] == "I"
        finally:
            for c in clients:
                c.close()


def test_a_pinned_session_and_a_pin_inside_a_transaction(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    raw = Raw(fast)
    try:
        assert raw.one("set application_name = 'fastpinned'") is None
        assert _fast_queries(borealis, PINNED) == 1
        before = _fast_queries(borealis)
        for _ in range(10):
            assert raw.one("select current_setting('application_name')") == "fastpinned"
        if FAST:
            assert _fast_queries(borealis) - before == 10  # a pinned session's statements: all on the C path
        # A sequence function pins the client (its session's currval), on whichever path it arrives.
        raw.one("create sequence if not exists fast_seq")
        mine = raw.one("select nextval('fast_seq')")
        assert raw.one("select currval('fast_seq')") == mine
    finally:
        raw.close()
    raw = Raw(fast)
    try:
        raw.send("begin")
        raw.answer()
        assert raw.one("select 1") == "1"
        _wait_unpinned(borealis)
        assert raw.one("select set_config('application_name', 'pinned in tx', false)") == "pinned in tx"
        raw.send("commit")
        raw.answer()
        # Pinned (set_config may set a session value): the session stays this client's, after the COMMIT too.
        assert _fast_queries(borealis, PINNED) == 1
        assert raw.one("select current_setting('application_name')") == "pinned in tx"
    finally:
        raw.close()
    # A pinned connection is cleaned before anyone else gets it.
    for _ in range(fast.cap):  # type: ignore[attr-defined]
        with psycopg.connect(**fast.conninfo(), autocommit=True) as conn:
            assert conn.execute("show application_name").fetchone() not in (("fastpinned",), ("pinned in tx",))


def test_pgbench_tpcb_like_keeps_its_sums(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    """16 clients over the smallest pool: every transaction's statements, and its end, through either path."""
    env = fast.pg_env(PGSSLMODE="disable")
    subprocess.run(["pgbench", "-i", "-s", "1", "-q"], env=env, capture_output=True, timeout=120, check=True)
    before = _fast_queries(borealis)
    out = subprocess.run(
        ["pgbench", "-n", "-M", "simple", "-c", "16", "-j", "2", "-t", "100"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "number of transactions actually processed: 1600/1600" in out.stdout
    with psycopg.connect(**fast.conninfo(), autocommit=True) as conn:
        sums = conn.execute(
            "select (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches),"
            " (select sum(tbalance) from pgbench_tellers), (select sum(delta) from pgbench_history),"
            " (select count(*) from pgbench_history)"
        ).fetchone()
    assert sums is not None and sums[0] == sums[1] == sums[2] == sums[3] and sums[4] == 1600
    if FAST:
        # BEGIN goes through Python (it borrows); the other six statements of each transaction may not.
        assert _fast_queries(borealis) - before >= 1600 * 5


def test_autocommit_clients_over_a_full_pool(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    """More clients than connections, each Query borrowing: the connection goes back as its answer goes out
    (on the C path, the next client's Query is sent from there), and every client gets its own answers."""
    n = fast.cap * 3 + 1  # type: ignore[attr-defined]
    queries = _fast_queries(borealis, "query_requests_total")
    clients = [Raw(fast) for _ in range(n)]
    errors: list[str] = []

    def run(k: int, raw: Raw) -> None:
        try:
            for i in range(40):
                got = raw.one(f"select {k * 1000 + i}, pg_backend_pid()")
                if got != str(k * 1000 + i):
                    errors.append(f"client {k} query {i}: {got}")
            raw.send("select 1 / 0")
            if raw.answer()[2:] != ("22012", "I"):
                errors.append(f"client {k}: no error")
        except Exception as exc:  # reported below, with the others
            errors.append(f"client {k}: {exc!r}")

    threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    assert not errors, errors[:5]
    assert _fast_queries(borealis, "query_requests_total") - queries == n * 41


#: A statement whose answer says when it ran (microseconds since the epoch).
_WHEN = "select (extract(epoch from clock_timestamp()) * 1000000)::bigint"


def _hold_all(info: ProxyInfo) -> list[Raw]:
    """Every connection of the pool, each held by a client inside a transaction."""
    holders = [Raw(info) for _ in range(info.cap)]  # type: ignore[attr-defined]
    for h in holders:
        h.send("begin")
        assert h.answer()[3] == "T"
    return holders


def _let_go(holders: list[Raw]) -> None:
    for h in holders:
        h.send("commit")
        h.answer()
        h.close()


def _lends(borealis: BorealisProcess) -> float:
    return _fast_queries(borealis, "fastpath_borrows_total")


def test_parked_queries_take_their_turn_with_other_waiters(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    """A saturated pool serves its waiters in the order they came, whichever queue they wait in: simple Queries
    parked in C (the first by Python, the next by the C path itself) and an extended-protocol client in Python's."""
    first, last = Raw(fast), Raw(fast)
    for raw in (first, last):
        raw.one(_WHEN)  # the text is checked once; the client then holds no connection
    lends = _lends(borealis)
    holders = _hold_all(fast)
    ran: dict[str, int] = {}

    def extended() -> None:
        with psycopg.connect(**fast.conninfo(sslmode="disable"), autocommit=True) as conn:
            row = conn.execute(_WHEN + " + %s::bigint", [0]).fetchone()
            assert row is not None
            ran["extended"] = int(row[0])

    waiter = threading.Thread(target=extended)
    try:
        first.send(_WHEN)
        time.sleep(0.3)
        waiter.start()
        time.sleep(0.5)
        last.send(_WHEN)
        time.sleep(0.3)
        # One connection comes free: each waiter in turn gets it, on its own.
        holders[0].send("commit")
        holders[0].answer()
        ran["first"] = int(first.answer()[0][0][0] or 0)
        ran["last"] = int(last.answer()[0][0][0] or 0)
        waiter.join(30)
    finally:
        _let_go(holders)
        first.close()
        last.close()
    assert ran["first"] < ran["extended"] < ran["last"], ran
    if FAST:
        assert _lends(borealis) - lends >= 2  # both simple Queries were lent their connection from C


def test_parked_queries_time_out_and_their_clients_go_on(borealis: BorealisProcess) -> None:
    info = smallest_pool(borealis, "lane-timeout-proxy", 1)
    clients = [Raw(info), Raw(info)]
    for raw in clients:
        assert raw.one("select 1") == "1"
    holders = _hold_all(info)
    try:
        for raw in clients:
            raw.send("select 1")
            time.sleep(0.2)
        for raw in clients:
            rows, _, error, status = raw.answer()
            assert (rows, error, status) == ([], "53300", "I")
    finally:
        _let_go(holders)
    for raw in clients:
        assert raw.one("select 2") == "2"
        raw.close()


def test_a_parked_client_that_sends_more_or_leaves(borealis: BorealisProcess, fast: ProxyInfo) -> None:
    one, more, gone = Raw(fast), Raw(fast), Raw(fast)
    for raw in (one, more, gone):
        assert raw.one("select 1") == "1"
    holders = _hold_all(fast)
    try:
        one.send("select 1")  # parked by Python: the pool is full
        time.sleep(0.2)
        more.send("select 1")  # parked by the C path
        time.sleep(0.2)
        more.send("select 2")  # more bytes: the parked Query goes back to Python, in front of them
        gone.send("select 1")
        time.sleep(0.2)
        gone.close()  # leaves with its Query parked
        time.sleep(0.2)
    finally:
        _let_go(holders)
    assert one.answer()[0] == [["1"]]
    assert more.answer()[0] == [["1"]] and more.answer()[0] == [["2"]]
    one.close()
    more.close()
    # Every connection came back: as many clients as connections can each hold one again.
    _let_go(_hold_all(fast))


def test_a_query_lent_from_the_lane_can_be_cancelled(fast: ProxyInfo) -> None:
    raw = Raw(fast)
    raw.one("select pg_sleep(0)")
    holders = _hold_all(fast)
    try:
        raw.send("select pg_sleep(8)")  # parked: the pool is full
        time.sleep(0.3)
        holders[0].send("commit")  # lent its connection (from C, in the compiled build), and running
        holders[0].answer()
        time.sleep(0.5)
        started = time.monotonic()
        raw.conn.cancel()
        _, _, error, status = raw.answer()
        took = time.monotonic() - started
    finally:
        _let_go(holders[1:])
        holders[0].close()
        raw.close()
    assert (error, status) == ("57014", "I") and took < 5, (error, took)


def test_the_janitor_spares_a_client_whose_query_waits(borealis: BorealisProcess) -> None:
    """IdleClientTimeout closes idle clients; one whose Query waits for a connection is not idle."""
    info = smallest_pool(borealis, "lane-janitor-proxy", 30)
    borealis.client("rds").modify_db_proxy(DBProxyName="lane-janitor-proxy", IdleClientTimeout=2)
    parked, queued = Raw(info), Raw(info)
    for raw in (parked, queued):
        assert raw.one("select 1") == "1"
    holders = _hold_all(info)
    stop = threading.Event()

    def keep_busy() -> None:  # the holders are not idle
        while not stop.is_set():
            for h in holders:
                h.one("select 1")
            time.sleep(0.3)

    busy = threading.Thread(target=keep_busy)
    busy.start()
    try:
        parked.send("select 1")  # parked (in the C lane, in the compiled build)
        queued.send("select 7 /* not known */")  # in the pool's own queue
        time.sleep(4.5)
    finally:
        stop.set()
        busy.join()
        _let_go(holders)
    assert parked.answer()[0] == [["1"]]
    assert queued.answer()[0] == [["7"]]
    parked.close()
    queued.close()
