"""Endpoint listeners: the addresses clients connect to, relaying bytes to an instance's postgres.

A listener resolves its target when a client has sent a valid startup packet, never when it is created nor
when a TCP connection is merely accepted: that is what lets the writer endpoint follow a failover, a paused
instance wake on the first real login, a cluster with no instance yet answer with a proper PostgreSQL
error instead of a refused connection, and thousands of idle or silent sockets cost postgres nothing (each
accepted socket used to open a postgres connection at once, and 2,000 of them filled max_connections).

Before the relay starts the listener plays the first steps of a PostgreSQL server itself:

* SSLRequest and GSSENCRequest are answered ``N`` (each at most once, as postgres allows), and the client
  goes on in plaintext or leaves;
* a CancelRequest is sent to the server whose backend the key names: the listener remembers, per relayed
  connection, the BackendKeyData postgres sent and where that postgres is, so a cancel reaches the right
  server even when the endpoint would now resolve elsewhere (a reader endpoint spreading connections, a
  writer endpoint after failover);
* a client that has not sent a whole startup packet within ``login_timeout`` seconds is disconnected, as
  postgres's ``authentication_timeout`` does; postgres's own timeout covers authentication after that.

Then the relay is two asyncio Protocols joined back to back, with flow control in both directions (a side
whose peer's write buffer is full stops reading). The server side skims frames only until the first
ReadyForQuery (to learn the cancel key); after that no byte is looked at.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import cast

from borealis import pgwire
from borealis.pgwire import ProtocolViolation

__all__ = ["DEFAULT_LOGIN_TIMEOUT", "EndpointUnavailable", "Listener", "Resolver"]

log = logging.getLogger(__name__)

#: Seconds a client may take to send its startup packet (PostgreSQL's authentication_timeout default).
DEFAULT_LOGIN_TIMEOUT = 60.0
#: Seconds a forwarded CancelRequest may take to be delivered.
_CANCEL_TIMEOUT = 10.0
_K = ord("K")
_Z = ord("Z")
_E = ord("E")
_TLS_HANDSHAKE = 0x16
_header = struct.Struct("!ii")


class EndpointUnavailable(Exception):
    """No instance can take the connection now; sent to the client as a FATAL ErrorResponse."""

    def __init__(self, message: str, sqlstate: str = "57P03") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


Resolver = Callable[[], Awaitable[tuple[str, int]]]
"""Returns the (host, port) of the postgres to relay to, or raises EndpointUnavailable."""

CancelKey = tuple[int, bytes]


class _Upstream(asyncio.Protocol):
    """The server side of one relayed connection."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        #: Skims the login's frames for BackendKeyData; dropped at the first ReadyForQuery or error.
        self.reader: pgwire.FrameReader | None = pgwire.FrameReader.for_server()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)
        if self.reader is not None:
            self._watch(data)

    def _watch(self, data: bytes) -> None:
        reader = self.reader
        assert reader is not None
        try:
            reader.feed(data)
            for t, frame in reader.read_frames():
                if t == _K:
                    msg = pgwire.decode_backend(t, frame[5:])
                    assert isinstance(msg, pgwire.BackendKeyData)
                    self.client.remember_key((msg.process_id, msg.secret_key))
                elif t in (_Z, _E):
                    self.reader = None
                    return
        except ProtocolViolation:
            self.reader = None  # postgres's bytes go to the client as they are; only the cancel key is lost

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
        #: Startup-phase bytes not yet understood.
        self.buf = bytearray()
        #: Bytes the client sent after its startup packet, before the relay started.
        self.pending: list[bytes] = []
        self.started = False
        self.negotiated: set[int] = set()
        self.closed = False
        self.key: CancelKey | None = None
        self.target: tuple[str, int] = ("", 0)
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.listener._clients.add(self)
        self.timer = asyncio.get_running_loop().call_later(self.listener.login_timeout, self._timed_out)

    def _timed_out(self) -> None:
        # As postgres does when no whole startup packet arrives: close, with nothing to say to the client.
        self.timer = None
        if not self.started:
            log.debug("endpoint %s: a client sent no startup packet in time", self.listener.name)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(data)
        elif self.started:
            self.pending.append(data)
        else:
            self.buf += data
            try:
                self._startup()
            except ProtocolViolation as exc:
                self._fatal(exc.error_response())

    def _startup(self) -> None:
        """Answer the startup-phase packets that have arrived, up to and including the startup packet."""
        buf = self.buf
        while not self.started and not self.closed and buf:
            if buf[0] == _TLS_HANDSHAKE:
                raise ProtocolViolation("direct TLS negotiation is not supported; use sslnegotiation=postgres")
            if len(buf) < 8:
                return
            length, code = _header.unpack_from(buf)
            if not 8 <= length <= pgwire.MAX_STARTUP_PACKET:
                raise ProtocolViolation("invalid length of startup packet")
            if len(buf) < length:
                return
            packet = bytes(buf[:length])
            del buf[:length]
            msg = pgwire.decode_startup(packet)
            if isinstance(msg, pgwire.SSLRequest | pgwire.GSSENCRequest):
                if code in self.negotiated:
                    raise ProtocolViolation("duplicate SSLRequest or GSSENCRequest packet")
                self.negotiated.add(code)
                self.transport.write(b"N")
            elif isinstance(msg, pgwire.CancelRequest):
                self.listener.cancel((msg.process_id, msg.secret_key), packet)
                self.transport.close()
                return
            else:
                self.started = True
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
                if buf:
                    self.pending.append(bytes(buf))
                self.buf = bytearray()
                self.task = asyncio.ensure_future(self._connect(packet))

    async def _connect(self, packet: bytes) -> None:
        listener = self.listener
        try:
            host, port = await asyncio.wait_for(listener.resolve(), listener.login_timeout)
        except EndpointUnavailable as exc:
            self._fatal(pgwire.error_response("FATAL", exc.sqlstate, exc.message))
            return
        except TimeoutError:
            self._fatal(pgwire.error_response("FATAL", "57P03", f"endpoint {listener.name} has no instance ready"))
            return
        except Exception:
            log.exception("endpoint %s: resolving the target failed", listener.name)
            self._fatal(pgwire.error_response("FATAL", "XX000", "internal error in Borealis"))
            return
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: _Upstream(self), host, port)
        except OSError as exc:
            self._fatal(pgwire.error_response("FATAL", "08006", f"the instance is not reachable: {exc.strerror}"))
            return
        assert upstream.transport is not None
        if self.closed:
            upstream.transport.close()
            return
        self.target = (host, port)
        upstream.transport.write(packet)
        for chunk in self.pending:
            upstream.transport.write(chunk)
        self.pending.clear()
        self.upstream = upstream
        self.task = None

    def remember_key(self, key: CancelKey) -> None:
        """postgres told this client its cancel key: a CancelRequest with it goes to the same server."""
        if not self.closed:
            self.key = key
            self.listener._keys[key] = self.target

    def _fatal(self, error: bytes) -> None:
        if not self.closed:
            self.transport.write(error)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener._clients.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.key is not None:
            self.listener._keys.pop(self.key, None)
        if self.task is not None:
            self.task.cancel()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()


class Listener:
    """A TCP endpoint that relays each client to whatever its resolver names once the client has started.

    ``login_timeout`` bounds, in seconds, both the wait for a client's startup packet and the wait for a
    target to relay it to.
    """

    def __init__(
        self, name: str, host: str, port: int, resolve: Resolver, *, login_timeout: float = DEFAULT_LOGIN_TIMEOUT
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.resolve = resolve
        self.login_timeout = login_timeout
        self._clients: set[_Client] = set()
        #: Cancel key of each relayed session -> the (host, port) of its postgres.
        self._keys: dict[CancelKey, tuple[str, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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

    def cancel(self, key: CancelKey, packet: bytes) -> None:
        """Deliver a CancelRequest to the server of the session it names (an unknown key is ignored, as
        postgres ignores it)."""
        target = self._keys.get(key)
        if target is None:
            return
        task = asyncio.ensure_future(self._send_cancel(target, packet))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_cancel(self, target: tuple[str, int], packet: bytes) -> None:
        try:
            async with asyncio.timeout(_CANCEL_TIMEOUT):
                reader, writer = await asyncio.open_connection(*target)
                writer.write(packet)
                await reader.read()  # postgres closes the connection once it has handled the request
                writer.close()
        except (OSError, TimeoutError) as exc:
            log.info("endpoint %s: a cancel request could not be delivered: %s", self.name, exc)

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
        for task in list(self._tasks):
            task.cancel()
