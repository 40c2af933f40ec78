"""Pure tests: what an idle client holds stays small (the proxy keeps thousands of them).

The benchmark (bench/proxy) measures the whole: 2.3 KiB of RSS per idle client on 2026-11-26, from 6.0.
"""

from __future__ import annotations

from types import SimpleNamespace

from borealis.pgwire import FrameReader
from borealis.proxy import ProxyStats
from borealis.proxy._client import MAX_MESSAGE, ClientConn


def test_readers_share_one_limits_table() -> None:
    a = FrameReader.for_client(max_message_size=MAX_MESSAGE)
    b = FrameReader.for_client(max_message_size=MAX_MESSAGE)
    assert a._limits is b._limits
    assert FrameReader.for_server()._limits is FrameReader.for_server()._limits
    assert FrameReader.for_client()._limits is not a._limits  # another maximum, another table


def test_client_connection_has_slots_and_keeps_no_login_state() -> None:
    rt = SimpleNamespace(stats=ProxyStats("p"))
    client = ClientConn(rt, "READ_WRITE")  # type: ignore[arg-type]
    assert not hasattr(client, "__dict__")
    assert client.stmts is None  # made on the first named Parse
    assert client._auth is None and client._task is None
