"""Endpoint listeners: the addresses clients connect to, relaying bytes to an instance's postgres.

A listener resolves its target when a client connects, never when it is created: that is what lets the writer
endpoint follow a failover, a paused instance wake on the first connection, and a cluster with no instance
yet answer with a proper PostgreSQL error instead of a refused connection.

The relay is two asyncio Protocols joined back to back, with flow control in both directions (a side whose
peer's write buffer is full stops reading), and it never looks inside the bytes once connected.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import cast

from borealis import pgwire

__all__ = ["EndpointUnavailable", "Listener", "Resolver"]

log = logging.getLogger(__name__)


class EndpointUnavailable(Exception):
    """No instance can take the connection now; sent to the client as a FATAL ErrorResponse."""

    def __init__(self, message: str, sqlstate: str = "57P03") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


Resolver = Callable[[], Awaitable[tuple[str, int]]]
"""Returns the (host, port) of the postgres to relay to, or raises EndpointUnavailable."""


class _Upstream(asyncio.Protocol):
    """The server side of one relayed connection."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class _Client(asyncio.Protocol):
    """The client side of one relayed connection."""

    transport: asyncio.Transport

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.listener._clients.add(self)
        self.task = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            host, port = await self.listener.resolve()
        except EndpointUnavailable as exc:
            await self._refuse(exc)
            return
        except Exception:
            log.exception("endpoint %s: resolving the target failed", self.listener.name)
            await self._refuse(EndpointUnavailable("internal error in Borealis", "XX000"))
            return
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: _Upstream(self), host, port)
        except OSError as exc:
            await self._refuse(EndpointUnavailable(f"the instance is not reachable: {exc.strerror}", "08006"))
            return
        if self.closed:
            assert upstream.transport is not None
            upstream.transport.close()
            return
        self.upstream = upstream
        assert upstream.transport is not None
        for chunk in self.pending:
            upstream.transport.write(chunk)
        self.pending.clear()

    async def _refuse(self, exc: EndpointUnavailable) -> None:
        """Answer the startup exchange with a FATAL error, as postgres itself does when it cannot serve."""
        buf = b"".join(self.pending)
        self.pending.clear()
        waited = 0.0
        while not self.closed and waited < 10.0:
            if len(buf) >= 8:
                length, code = struct.unpack("!II", buf[:8])
                if length == 8 and code in (pgwire.SSL_REQUEST_CODE, pgwire.GSSENC_REQUEST_CODE):
                    self.transport.write(b"N")
                    buf = buf[8:]
                    continue
                if code == pgwire.CANCEL_REQUEST_CODE or length > pgwire.MAX_STARTUP_PACKET or length < 8:
                    break
                if len(buf) >= length:
                    self.transport.write(pgwire.error_response("FATAL", exc.sqlstate, exc.message))
                    break
            await asyncio.sleep(0.01)
            waited += 0.01
            buf += b"".join(self.pending)
            self.pending.clear()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener._clients.discard(self)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()


class Listener:
    """A TCP endpoint that relays each client to whatever its resolver names at connect time."""

    def __init__(self, name: str, host: str, port: int, resolve: Resolver) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.resolve = resolve
        self._clients: set[_Client] = set()
        self._server: asyncio.Server | None = None

    @property
    def client_connections(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind and start accepting; raises OSError if the address is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Client(self), self.host, self.port, reuse_address=True, backlog=1024
        )

    def disconnect_all(self) -> None:
        """Drop every relayed connection (the instance behind it is going away)."""
        for client in list(self._clients):
            client.transport.close()

    async def close(self) -> None:
        """Stop accepting and drop every connection."""
        if self._server is not None:
            self._server.close()
            self.disconnect_all()
            await self._server.wait_closed()
            self._server = None
        else:
            self.disconnect_all()
