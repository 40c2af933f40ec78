"""Session state through the proxy: what one client does never shows in another client's session.

Server connections are shared (LIFO: the connection a client gives back is the next one lent), so each
test runs its clients one after the other on what is, without the fix, the same server connection.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo, make_proxy


@pytest.fixture(scope="module")
def state_proxy(borealis: BorealisProcess) -> ProxyInfo:
    return make_proxy(borealis, "state-proxy", MaxConnectionsPercent=5, ConnectionBorrowTimeout=30)


def _one(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_currval_and_lastval_are_the_clients_own(state_proxy: ProxyInfo) -> None:
    with psycopg.connect(**state_proxy.conninfo(), autocommit=True) as setup:
        setup.execute("drop sequence if exists pin_seq; create sequence pin_seq")
    for _ in range(10):
        with (
            psycopg.connect(**state_proxy.conninfo(), autocommit=True) as a,
            psycopg.connect(**state_proxy.conninfo(), autocommit=True) as b,
        ):
            mine = _one(a, "select nextval('pin_seq')")
            theirs = _one(b, "select nextval('pin_seq')")
            assert theirs > mine
            assert _one(a, "select currval('pin_seq')") == mine
            assert _one(a, "select lastval()") == mine
            assert _one(b, "select currval('pin_seq')") == theirs
            # setval sets this session's currval too.
            a.execute("select setval('pin_seq', 1000)")
            b.execute("select nextval('pin_seq')")
            assert _one(a, "select currval('pin_seq')") == 1000


def test_startup_parameters_do_not_leak_to_the_next_client(state_proxy: ProxyInfo) -> None:
    for _ in range(5):
        with psycopg.connect(
            **state_proxy.conninfo(),
            autocommit=True,
            options="-c statement_timeout=150 -c search_path=nowhere",
            application_name="leaky",
        ) as first:
            assert _one(first, "show search_path") == "nowhere"
            assert _one(first, "show statement_timeout") == "150ms"
            assert _one(first, "select current_setting('application_name')") == "leaky"
        with psycopg.connect(**state_proxy.conninfo(), autocommit=True) as plain:
            assert _one(plain, "show search_path") == '"$user", public'
            assert _one(plain, "show statement_timeout") == "0"
            assert _one(plain, "select current_setting('application_name')") == ""
            plain.execute("select pg_sleep(0.3)")  # not cancelled by another client's statement_timeout
        # And the client that asked for the settings has them again on whichever connection it gets.
        with psycopg.connect(
            **state_proxy.conninfo(), autocommit=True, options="-c search_path=nowhere", application_name="again"
        ) as again:
            assert _one(again, "show search_path") == "nowhere"
            assert _one(again, "select current_setting('application_name')") == "again"
            assert _one(again, "show statement_timeout") == "0"


def _server_statements(info: ProxyInfo) -> int:
    """Statements prepared on the server connection the next transaction runs on (the LIFO top)."""
    with psycopg.connect(**info.conninfo(), autocommit=True, prepare_threshold=None) as conn:
        return int(_one(conn, "select count(*) from pg_prepared_statements"))


def test_prepared_statements_are_shared_and_do_not_pile_up(state_proxy: ProxyInfo) -> None:
    import asyncio

    import asyncpg

    texts = ["select $1::int + 1", "select $1::text || 'x'", "select count(*) from generate_series(1, $1::int)"]

    async def client(i: int) -> None:
        conn = await asyncpg.connect(state_proxy.dsn())
        try:
            assert await conn.fetchval(texts[0], i) == i + 1
            assert await conn.fetchval(texts[1], str(i)) == f"{i}x"
            assert await conn.fetchval(texts[2], 3) == 3
        finally:
            await conn.close()

    async def main() -> None:
        for start in range(0, 300, 10):
            await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(start, start + 10))), 120)

    asyncio.run(main())
    # One server-side statement per text (and per asyncpg introspection query), however many clients used it.
    assert _server_statements(state_proxy) <= 10


def test_statements_per_server_connection_are_capped(state_proxy: ProxyInfo) -> None:
    from borealis.proxy._client import MAX_SERVER_STATEMENTS

    with psycopg.connect(**state_proxy.conninfo(), autocommit=True, prepare_threshold=0) as conn:
        conn.execute("select 1").fetchone()  # the pool's LIFO top from now on
        for i in range(MAX_SERVER_STATEMENTS + 60):
            assert conn.execute(f"select {i} + %s::int", [1]).fetchone() == (i + 1,)
        count = int(_one(conn, "select count(*) from pg_prepared_statements"))
        assert 0 < count <= MAX_SERVER_STATEMENTS + 1
        # The client's statements still run after their server-side ones were closed: prepared again.
        for i in range(5):
            assert conn.execute(f"select {i} + %s::int", [1]).fetchone() == (i + 1,)


def test_a_client_sees_only_its_own_statement_names(state_proxy: ProxyInfo) -> None:
    with psycopg.connect(**state_proxy.conninfo(), autocommit=True, prepare_threshold=0) as a:
        assert a.execute("select %s::int * 3", [2]).fetchone() == (6,)
        names = [r[0] for r in a.execute("select name from pg_prepared_statements").fetchall()]
        assert names
        # Another client naming a server-side statement it did not prepare gets "does not exist".
        with psycopg.connect(**state_proxy.conninfo(), autocommit=True) as b:
            for name in names:
                res = b.pgconn.describe_prepared(name.encode())
                assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
                assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"
        assert a.execute("select %s::int * 3", [3]).fetchone() == (9,)


def test_shared_statements_after_errors(state_proxy: ProxyInfo) -> None:
    for _ in range(2):
        with psycopg.connect(**state_proxy.conninfo(), autocommit=True, prepare_threshold=0) as conn:
            # A Parse that fails makes no statement: the same text fails the same way next time.
            for _ in range(2):
                with pytest.raises(psycopg.errors.UndefinedTable):
                    conn.execute("select * from no_such_table_here where x = %s", [1])
            # A statement made in a batch whose execution failed stays usable.
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("select 1 / %s::int", [0])
            assert conn.execute("select 1 / %s::int", [1]).fetchone() == (1,)


def test_a_flush_with_a_body_never_reaches_postgres(state_proxy: ProxyInfo) -> None:
    # postgres answers such a Flush with an ErrorResponse and a ReadyForQuery: forwarded, that
    # ReadyForQuery could reach the next client of the server connection (found by tests/security's fuzzer).
    from tests.security.test_fuzz_wire import Target, _Wire

    target = Target("proxy", state_proxy.host, state_proxy.port, state_proxy.user, state_proxy.password)
    with psycopg.connect(**state_proxy.conninfo(), autocommit=True) as witness:
        for _ in range(20):
            wire = _Wire(target)
            try:
                wire.login(target)
                wire.sock.sendall(b"H\0\0\0\x0bpayload" + b"\x0c\0\0\0\x04")
                kind, body = wire.read()
            finally:
                wire.close()
            assert kind == ord("E") and b"C08P01\0" in body and b"invalid message length 11" in body
            assert _one(witness, "select 41 + 1") == 42


def test_shared_statements_in_pipeline_mode(state_proxy: ProxyInfo) -> None:
    # In a pipeline a Parse often comes behind answers still to come: it gets a name of its own then, and
    # a Parse at the front of a batch is answered by the proxy when the server has the statement.
    conns = [psycopg.connect(**state_proxy.conninfo(), autocommit=True) for _ in range(3)]
    try:
        for round_ in range(4):
            for n, conn in enumerate(conns):
                with conn.pipeline():
                    curs = [conn.execute("select %s::int * %s::int", [i, n + round_], prepare=True) for i in range(6)]
                    texts = [conn.execute("select %s::text || '!'", [f"{i}"], prepare=True) for i in range(3)]
                assert [c.fetchone() for c in curs] == [(i * (n + round_),) for i in range(6)]
                assert [c.fetchone() for c in texts] == [(f"{i}!",) for i in range(3)]
    finally:
        for conn in conns:
            conn.close()
