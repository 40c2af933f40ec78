"""Pooling behaviour: pinning, borrow timeout, clients that vanish mid-transaction, idle timeout, fuzzing."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo, smallest_pool


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("select pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def tiny(borealis: BorealisProcess) -> ProxyInfo:
    """A proxy with the smallest pool and a 1-second borrow timeout."""
    return smallest_pool(borealis, "tiny-proxy", 1)


def _hold(info: ProxyInfo, sql: str, n: int) -> list[psycopg.Connection[Any]]:
    conns = []
    for _ in range(n):
        conn = psycopg.connect(**info.conninfo(), autocommit=True)
        conn.execute(sql)
        conns.append(conn)
    return conns


def test_set_pins_and_filter_unpins(borealis: BorealisProcess, tiny: ProxyInfo) -> None:
    rds = borealis.client("rds")
    pinned = _hold(tiny, "set application_name = 'pinned'", tiny.cap)  # type: ignore[attr-defined]
    a = pinned[0]
    try:
        assert a.execute("show application_name").fetchone() == ("pinned",)
        # A pinned client holds the only connection: another client times out, with a SQLSTATE, and
        # stays usable.
        with psycopg.connect(**tiny.conninfo(), autocommit=True) as b:
            with pytest.raises(psycopg.OperationalError) as exc:
                b.execute("select 1")
            assert exc.value.sqlstate == "53300"
            for conn in pinned:
                conn.close()
            assert b.execute("select 1").fetchone() == (1,)
    finally:
        for conn in pinned:
            conn.close()
    # The pinned server connection was cleaned (DISCARD ALL) before reuse.
    with psycopg.connect(**tiny.conninfo(), autocommit=True) as c:
        assert c.execute("show application_name").fetchone() != ("pinned",)
    rds.modify_db_proxy_target_group(
        DBProxyName="tiny-proxy",
        TargetGroupName="default",
        ConnectionPoolConfig={"SessionPinningFilters": ["EXCLUDE_VARIABLE_SETS"]},
    )
    time.sleep(0.3)
    unpinned = _hold(tiny, "set work_mem = '8MB'", tiny.cap)  # type: ignore[attr-defined]
    try:
        with psycopg.connect(**tiny.conninfo(), autocommit=True) as b:
            assert b.execute("select 2").fetchone() == (2,)  # SET did not pin: b got a connection
    finally:
        for conn in unpinned:
            conn.close()
    rds.modify_db_proxy_target_group(
        DBProxyName="tiny-proxy", TargetGroupName="default", ConnectionPoolConfig={"SessionPinningFilters": []}
    )
    time.sleep(0.3)


def test_borrow_timeout_keeps_connection_usable(tiny: ProxyInfo) -> None:
    holders = [psycopg.connect(**tiny.conninfo()) for _ in range(tiny.cap)]  # type: ignore[attr-defined]
    holder = holders[0]
    try:
        for h in holders:
            h.execute("select 1")  # psycopg opened a transaction: every server connection is held
        with psycopg.connect(**tiny.conninfo(), autocommit=True) as waiting:
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError) as exc:
                waiting.execute("select 1")
            assert exc.value.sqlstate == "53300"
            assert 0.8 < time.monotonic() - started < 30  # at the 1 s borrow timeout, not a hang (margin for load)
            holder.rollback()
            assert waiting.execute("select 3").fetchone() == (3,)
    finally:
        for h in holders:
            h.close()


def test_vanished_client_is_rolled_back(tiny: ProxyInfo) -> None:
    with psycopg.connect(**tiny.conninfo(), autocommit=True) as setup:
        setup.execute("create table if not exists vanish (id int)")
        setup.execute("delete from vanish")
    conn = psycopg.connect(**tiny.conninfo())
    conn.execute("insert into vanish values (1)")
    conn.pgconn.finish()  # no ROLLBACK, no Terminate handling by psycopg: the socket just closes
    with psycopg.connect(**tiny.conninfo(), autocommit=True) as after:
        assert after.execute("select count(*) from vanish").fetchone() == (0,)
        assert after.execute("select 1").fetchone() == (1,)
        assert after.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _startup(user: str) -> bytes:
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0postgres\0\0"
    return struct.pack("!i", len(body) + 4) + body


def _exchange(host: str, port: int, data: bytes, timeout: float = 3) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return b""
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


def test_bad_input_gets_sqlstate(proxy: ProxyInfo) -> None:
    cases = {
        b"GET / HTTP/1.1\r\n\r\n": b"08P01",
        struct.pack("!ii", 8, 0x00020000): b"0A000",  # protocol 2.0
        struct.pack("!ii", 1 << 30, 196608): b"08P01",  # oversize startup packet
    }
    for data, state in cases.items():
        out = _exchange(proxy.host, proxy.port, data)
        assert out.startswith(b"E") and state in out, (data, out)
    # A good startup packet and, in the same read, a message whose length is impossible: the startup is
    # answered (AuthenticationSASL), then the violation at once, without waiting for more bytes.
    out = _exchange(proxy.host, proxy.port, _startup(proxy.user) + b"p\x00\x00\x00\x02")
    assert out.startswith(b"R") and b"E" in out and b"08P01" in out, out


def test_fuzz_listener_survives(proxy: ProxyInfo) -> None:
    """Mutated protocol bytes at the listener; a well-behaved client keeps working all along."""
    rng = random.Random(4)
    seeds = [
        _startup(proxy.user),
        _startup(proxy.user) + b"p\0\0\0\x20SCRAM-SHA-256\0\0\0\0\x08n,,n=,r=abc",
        struct.pack("!ii", 8, 80877103) + _startup(proxy.user),  # SSLRequest, then startup
        struct.pack("!iiii", 16, 80877102, 1234, 5678),  # CancelRequest with an unknown key
        _startup(proxy.user) + b"Q\0\0\0\x0dselect 1\0X\0\0\0\x04",
    ]
    stop = threading.Event()
    errors: list[BaseException] = []

    def steady() -> None:
        try:
            with psycopg.connect(**proxy.conninfo(), autocommit=True) as conn:
                while not stop.is_set():
                    assert conn.execute("select 7").fetchone() == (7,)
                    time.sleep(0.01)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=steady)
    worker.start()
    deadline = time.monotonic() + 20
    n = 0
    try:
        while n < 300 and time.monotonic() < deadline:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                pos = rng.randrange(len(data))
                if op < 0.5:
                    data[pos] = rng.randrange(256)
                elif op < 0.75:
                    del data[pos:]
                    if not data:
                        data = bytearray(b"\0")
                else:
                    data[pos:pos] = rng.randbytes(rng.randint(1, 16))
            _exchange(proxy.host, proxy.port, bytes(data), timeout=2)
            n += 1
    finally:
        stop.set()
        worker.join(30)
    assert not errors, errors
    assert n >= 100
    with psycopg.connect(**proxy.conninfo(), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
