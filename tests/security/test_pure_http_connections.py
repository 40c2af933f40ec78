"""The HTTP server's cap on open connections (an in-process server on loopback; no Borealis needed).

Idle connections cost an attacker nothing, and the API's process also runs the endpoints and proxies, whose
clients need file descriptors: at ``max_connections`` a new connection displaces the longest-idle one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

from borealis.aws import Gateway, HttpLimits, HttpServer


def test_a_new_connection_displaces_the_longest_idle_one() -> None:
    loop = asyncio.new_event_loop()
    server = HttpServer(Gateway({}, {}.get), limits=HttpLimits(max_connections=20))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop.run_until_complete(server.start("127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(20):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(0.01)  # distinct idle deadlines: the first is the oldest
        deadline = time.monotonic() + 10
        while len(server.connections) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.connections) == 20
        with socket.create_connection(("127.0.0.1", port), timeout=10) as newcomer:
            newcomer.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert newcomer.recv(65536).startswith(b"HTTP/1.1 404 ")  # served
        socks[0].settimeout(10)
        with contextlib.suppress(ConnectionResetError):  # closed: an empty read, or a reset
            assert socks[0].recv(1) == b"", "the oldest idle connection is closed"
        assert len(server.connections) <= 20
        socks[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert socks[-1].recv(65536).startswith(b"HTTP/1.1 404 ")  # the others are still served
    finally:
        for sock in socks:
            sock.close()
        asyncio.run_coroutine_threadsafe(server.stop(timeout=2), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_body_in_tiny_chunks_costs_its_size() -> None:
    """A signed request whose 1 MB body comes in 1-byte chunks (chunked encoding): before, each chunk was kept
    as its own bytes object (~40 MB for 1 MB); one growing buffer now."""
    import tracemalloc

    loop = asyncio.new_event_loop()
    server = HttpServer(Gateway({"rds": {}}, {"AKIDKNOWN": "secret"}.get))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop.run_until_complete(server.start("127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    size = 1_000_000
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked"
        b"\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDKNOWN/20240101/us-east-1/rds/aws4_request, "
        b"SignedHeaders=host, Signature=00\r\nX-Amz-Date: 20240101T000000Z\r\n\r\n"
    )
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(head)
            for _ in range(size // 10_000):
                sock.sendall(b"1\r\na\r\n" * 10_000)
            sock.sendall(b"0\r\n\r\n")
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 403 "), reply  # expired, whatever the body: it was read whole
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        asyncio.run_coroutine_threadsafe(server.stop(timeout=2), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert peak < 10 * size, f"{peak / size:.0f} bytes of memory per byte of body"
