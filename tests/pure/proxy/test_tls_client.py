"""The client side's TLS negotiation on a loopback socket, with no PostgreSQL behind it (on asyncio and uvloop).

SSLRequest is answered 'S' and the connection upgraded; RequireTLS refuses a plaintext startup with 28000;
an aborted handshake leaves no client behind in the runtime or the stats.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from borealis.proxy import ProxyStats
from borealis.proxy._client import ClientConn
from borealis.proxy._manager import ProxyManager
from borealis.proxy._tls import CertificateAuthority

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _startup(user: str) -> bytes:
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0\0"
    return struct.pack("!i", len(body) + 4) + body


def _runtime() -> Any:
    manager = SimpleNamespace(forget_key=lambda pid, client: None)
    return SimpleNamespace(
        name="p",
        stats=ProxyStats("p"),
        clients=set(),
        manager=manager,
        doc={"require_tls": True, "default_auth_scheme": "NONE", "auth": []},
        auth_for=lambda user: None,
    )


def _run(loop_kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())


async def _serve(rt: Any, ca: CertificateAuthority) -> tuple[asyncio.AbstractServer, int]:
    ctx = ca.server_context("127.0.0.1")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientConn(rt, "READ_WRITE", "127.0.0.1", ctx), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _settle(rt: Any) -> None:
    for _ in range(3000):
        if not rt.clients:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_tls_upgrade_and_require_tls(tmp_path: Path, loop_kind: str) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    rt = _runtime()

    async def main() -> None:
        server, port = await _serve(rt, ca)
        client_ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        # Plaintext startup: refused with 28000 because the proxy requires TLS.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_startup("u"))
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[:1] == b"E" and b"28000" in data and b"requires TLS" in data
        writer.close()
        # SSLRequest, 'S', a verified handshake, then the startup packet over TLS gets past the TLS check
        # (and stops at the user's credentials, which this runtime has none of).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(SSL_REQUEST)
        assert await reader.readexactly(1) == b"S"
        await writer.start_tls(client_ctx, server_hostname="127.0.0.1")
        writer.write(_startup("u"))
        data = await asyncio.wait_for(reader.read(), 5)
        assert b"28000" in data and b"no credentials" in data
        writer.close()
        # Bytes behind the SSLRequest (CVE-2021-23214): refused, no 'S'.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(SSL_REQUEST + _startup("u"))
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[:1] == b"E" and b"08P01" in data
        writer.close()
        # A client that leaves mid-handshake leaves nothing behind.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(SSL_REQUEST)
        assert await reader.readexactly(1) == b"S"
        writer.write(b"\x16\x03\x01\x00\x05hello")  # not a real ClientHello
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await _settle(rt)
        server.close()
        await server.wait_closed()

    _run(loop_kind, main)
    assert not rt.clients
    assert rt.stats.client_connections == 0
    assert rt.stats.client_connections_received == 4


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_clients_that_do_not_log_in_are_disconnected_by_the_janitor(tmp_path: Path, loop_kind: str) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    rt = _runtime()
    rt.doc["idle_client_timeout"] = 1800
    rt.pools = {}
    janitor = SimpleNamespace(runtimes={"p": rt}, login_timeout=0.0)

    async def main() -> None:
        server, port = await _serve(rt, ca)
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        # An SSLRequest, then no handshake: a pre-login connection too.
        tls_r, tls_w = await asyncio.open_connection("127.0.0.1", port)
        tls_w.write(SSL_REQUEST)
        assert await tls_r.readexactly(1) == b"S"
        for _ in range(3000):
            if len(rt.clients) == 2:
                break
            await asyncio.sleep(0.01)
        ProxyManager.sweep(janitor)  # type: ignore[arg-type]
        assert await asyncio.wait_for(silent_r.read(), 30) == b""
        assert await asyncio.wait_for(tls_r.read(), 30) == b""
        silent_w.close()
        tls_w.close()
        await _settle(rt)
        server.close()
        await server.wait_closed()

    _run(loop_kind, main)
    assert not rt.clients, [c.state for c in rt.clients]
    assert rt.stats.client_setup_failed_auth == 2
