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
