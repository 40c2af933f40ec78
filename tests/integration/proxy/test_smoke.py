"""First contact: a psycopg client through the proxy."""

from __future__ import annotations

import psycopg

from .conftest import ProxyInfo


def test_select_through_proxy(proxy: ProxyInfo) -> None:
    with psycopg.connect(**proxy.conninfo()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select %s::int", [41]).fetchone() == (41,)
