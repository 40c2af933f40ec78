"""Endpoint listeners: the addresses clients connect to, relaying bytes to an instance's postgres.

A listener resolves its target when a client has sent a valid startup packet, never when it is created nor
when a TCP connection is merely accepted: that is what lets the writer endpoint follow a failover, a paused
instance wake on the first real login, a cluster with no instance yet answer with a proper PostgreSQL
error instead of a refused connection, and thousands of idle or silent sockets cost postgres nothing (each
accepted socket used to open a postgres connection at once, and 2,000 of them filled max_connections).

Before the relay starts the listener plays the first steps of a PostgreSQL server itself:

* SSLRequest is answered ``S`` and TLS starts when the listener has a TLS context (a certificate from
  Borealis's CA naming the endpoint), else ``N``; a TLS ClientHello as the very first bytes is PostgreSQL
  17's direct negotiation (``sslnegotiation=direct``, ALPN ``postgresql``); GSSENCRequest is answered ``N``.
  Each request is allowed once, as postgres allows. TLS ends at the listener: postgres behind it is reached
  in plaintext over loopback, and the listener writes TLS records of at most 8 KB, as postgres does;
* with ``force_ssl`` on (the cluster's ``rds.force_ssl``), a plaintext startup packet is refused as RDS
  refuses it: 28000, "no pg_hba.conf entry ... no encryption";
* a CancelRequest is sent to the server whose backend the key names: the listener remembers, per relayed
  connection, the BackendKeyData postgres sent and where that postgres is, so a cancel reaches the right
  server even when the endpoint would now resolve elsewhere (a reader endpoint spreading connections, a
  writer endpoint after failover);
* a client that has not sent a whole startup packet within ``login_timeout`` seconds is disconnected, as
  postgres's ``authentication_timeout`` does; postgres's own timeout covers authentication after that;
* on a cluster with IAM database authentication on, the listener logs in to postgres itself, over the
  instance's unix socket (a path only the OS user running Borealis can use: no password, no TCP), and asks
  whether the user is a member of ``rds_iam``. A member authenticates here, with an IAM token as a
  cleartext password and only with one (checked as RDS Proxy checks it: SigV4, this endpoint's host and
  port, the user, 15 minutes, a known key), then gets that session; anyone else is relayed over TCP to
  postgres, which asks for their password as usual.

Then the relay is two asyncio Protocols joined back to back, with flow control in both directions (a side
whose peer's write buffer is full stops reading). The server side skims frames only until the first
ReadyForQuery (to learn the cancel key); after that no byte is looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from borealis import pgwire
from borealis.iam import TokenError, verify_token
from borealis.pgwire import ProtocolViolation

__all__ = ["DEFAULT_LOGIN_TIMEOUT", "EndpointUnavailable", "IamLogin", "Listener", "Resolver"]

log = logging.getLogger(__name__)

#: Seconds a client may take to send its startup packet (PostgreSQL's authentication_timeout default).
DEFAULT_LOGIN_TIMEOUT = 60.0
#: Seconds a forwarded CancelRequest may take to be delivered.
_CANCEL_TIMEOUT = 10.0
_K = ord("K")
_Z = ord("Z")
_E = ord("E")
_TLS_HANDSHAKE = 0x16
#: The most application data per TLS record: postgres's send buffer (larger records hang libpq < 18).
_TLS_RECORD_DATA = 8192
#: The most plaintext one TLS record holds (16 KB): one read takes a whole record.
_READ_SIZE = 16384
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

_IAM_MEMBER_SQL = "select pg_has_role(current_user, 'rds_iam', 'member')"
#: PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: the longest password message accepted.
_MAX_PASSWORD = 65535


@dataclass(frozen=True)
class IamLogin:
    """What a listener needs for IAM database authentication (EnableIAMDatabaseAuthentication)."""

    enabled: Callable[[], bool]
    """Whether the cluster has IAM database authentication on, now."""
    socket_for: Callable[[str, int], str | None]
    """The unix socket of the postgres a resolver named by (host, port): the internal login path."""
    region: str
    """The region tokens must be signed for."""
    secret_for: Callable[[str], str | None]
    """The secret access key of an access key id."""


class _Tls:
    """Server-side TLS over a transport, by memory BIOs: the handshake can start from bytes already read
    (a direct ClientHello), and every record carries at most :data:`_TLS_RECORD_DATA` bytes."""

    __slots__ = ("direct", "incoming", "obj", "outgoing", "ready", "transport")

    def __init__(self, context: ssl.SSLContext, transport: asyncio.Transport, *, direct: bool = False) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.transport = transport
        #: Started by a ClientHello with no SSLRequest: postgres then requires ALPN "postgresql", so that no
        #: other protocol's client can be talked into a PostgreSQL session.
        self.direct = direct
        self.ready = False

    def feed(self, data: bytes) -> bytes:
        """Bytes from the client in, plaintext out (b"" until the handshake is done); raises ssl.SSLError."""
        self.incoming.write(data)
        if not self.ready:
            try:
                self.obj.do_handshake()
                self.ready = True
            except ssl.SSLWantReadError:
                pass
            self._flush()
            if not self.ready:
                return b""
            if self.direct and self.obj.selected_alpn_protocol() != "postgresql":
                raise ssl.SSLError("direct TLS connection without the postgresql ALPN protocol")
        # Read while encrypted bytes are left (one record per read): no exception in the common case.
        incoming, obj = self.incoming, self.obj
        read = obj.read
        chunks = []
        while incoming.pending or obj.pending():
            try:
                chunk = read(_READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        if self.outgoing.pending:  # a key update, a session ticket: rare
            self._flush()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def write(self, data: bytes | memoryview) -> None:
        """Encrypt and send ``data``."""
        if len(data) <= _TLS_RECORD_DATA:
            self.obj.write(data)
        else:
            view = memoryview(data)
            write = self.obj.write
            for start in range(0, len(view), _TLS_RECORD_DATA):
                write(view[start : start + _TLS_RECORD_DATA])
        self.transport.write(self.outgoing.read())

    def shutdown(self) -> None:
        """Send close_notify, as postgres does before it closes (libpq takes a bare EOF for an error)."""
        with contextlib.suppress(ssl.SSLError, ValueError):  # the peer's close_notify is not awaited
            self.obj.unwrap()
        self._flush()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out:
            self.transport.write(out)


class _Upstream(asyncio.Protocol):
    """The server side of one relayed connection."""

    def __init__(self, client: _Client, *, capture: bool = False) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        #: Skims the login's frames for BackendKeyData; dropped at the first ReadyForQuery or error.
        self.reader: pgwire.FrameReader | None = pgwire.FrameReader.for_server()
        #: The listener's own exchange (the IAM login): frames are kept, not relayed, until it is done.
        self.captured: list[tuple[int, bytes]] | None = [] if capture else None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.captured is not None:
            self._capture(data)
            return
        self.client.send(data)
        if self.reader is not None:
            self._watch(data)

    def _capture(self, data: bytes) -> None:
        assert self.reader is not None and self.captured is not None
        try:
            self.reader.feed(data)
            for t, frame in self.reader.read_frames():
                self.captured.append((t, bytes(frame)))
                if t == _Z and self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(None)
        except ProtocolViolation:
            if self.transport is not None:
                self.transport.close()

    async def exchange(self, data: bytes) -> list[tuple[int, bytes]]:
        """Send ``data`` and return the frames answered up to ReadyForQuery (or up to the connection's end)."""
        assert self.transport is not None and self.captured is not None
        self.captured = []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        await self.waiter
        return self.captured

    def relay(self) -> None:
        """The listener's exchange is over: relay from now on."""
        self.captured = None
        self.reader = None

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
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)  # exchange() returns what came (a FATAL ErrorResponse, say)
        if self.captured is None:
            self.client.close()

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
        self.tls: _Tls | None = None
        #: Waiting for the password message (an IAM token) after AuthenticationCleartextPassword.
        self.password: asyncio.Future[bytes] | None = None

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

    def send(self, data: bytes | memoryview) -> None:
        """Send bytes to the client (encrypted, once TLS has started)."""
        if self.tls is not None:
            try:
                self.tls.write(data)
            except ssl.SSLError:
                self.transport.close()
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            try:
                data = self.tls.feed(data)
            except ssl.SSLError as exc:
                log.debug("endpoint %s: TLS with a client failed: %s", self.listener.name, exc)
                self.transport.close()
                return
            if not data:
                return
        elif not self.started and not self.buf and data[:1] == bytes((_TLS_HANDSHAKE,)):
            self._direct_tls(data)
            return
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(data)
        elif self.password is not None:
            self.buf += data
            try:
                self._password_message()
            except ProtocolViolation as exc:
                self._fatal(exc.error_response())
        elif self.started:
            self.pending.append(data)
        else:
            self.buf += data
            try:
                self._startup()
            except ProtocolViolation as exc:
                self._fatal(exc.error_response())

    def _password_message(self) -> None:
        buf = self.buf
        if len(buf) < 5:
            return
        length = int.from_bytes(buf[1:5], "big")
        if buf[0] != ord("p") or not 4 < length <= _MAX_PASSWORD + 4:
            raise ProtocolViolation("expected a password response", "28000")
        if len(buf) < 1 + length:
            return
        frame = bytes(buf[: 1 + length])
        if len(buf) > 1 + length:
            self.pending.append(bytes(buf[1 + length :]))
        self.buf = bytearray()
        waiter, self.password = self.password, None
        assert waiter is not None
        if not waiter.done():
            waiter.set_result(frame)

    def _direct_tls(self, hello: bytes) -> None:
        """A ClientHello as the first bytes: PostgreSQL 17's ``sslnegotiation=direct``."""
        context = self.listener.tls
        if context is None:
            # What postgres without TLS does: the bytes are no startup packet it knows.
            self._fatal(pgwire.error_response("FATAL", "08P01", "direct TLS negotiation is not supported here"))
            return
        self.negotiated.add(pgwire.SSL_REQUEST_CODE)
        self.tls = _Tls(context, self.transport, direct=True)
        self.data_received(hello)

    def _startup(self) -> None:
        """Answer the startup-phase packets that have arrived, up to and including the startup packet."""
        buf = self.buf
        while not self.started and not self.closed and buf:
            if buf[0] == _TLS_HANDSHAKE:
                raise ProtocolViolation("a TLS handshake is only accepted as the first bytes or after 'S'")
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
                if code in self.negotiated or (self.tls is not None and code == pgwire.SSL_REQUEST_CODE):
                    raise ProtocolViolation("duplicate SSLRequest or GSSENCRequest packet")
                self.negotiated.add(code)
                context = self.listener.tls
                if isinstance(msg, pgwire.SSLRequest) and context is not None and self.tls is None:
                    if buf:
                        # Plaintext behind the request would pass for encrypted (CVE-2021-23214).
                        raise ProtocolViolation("received unencrypted data after SSL request")
                    self.transport.write(b"S")
                    self.tls = _Tls(context, self.transport)
                    return
                self.send(b"N")
            elif isinstance(msg, pgwire.CancelRequest):
                self.listener.cancel((msg.process_id, msg.secret_key), packet)
                self.close()
                return
            else:
                if self.tls is None and self.listener.force_ssl():
                    assert isinstance(msg, pgwire.StartupMessage)
                    params = msg.parameters
                    host = self.transport.get_extra_info("peername") or ("",)
                    raise ProtocolViolation(
                        f'no pg_hba.conf entry for host "{host[0]}", user "{params["user"]}", '
                        f'database "{params.get("database") or params["user"]}", no encryption',
                        "28000",
                    )
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
        self.target = (host, port)
        iam = listener.iam
        if iam is not None and iam.enabled():
            path = iam.socket_for(host, port)
            try:
                if path is not None and await self._iam_login(iam, packet, path):
                    return
            except TimeoutError:
                # No password in time: what postgres says when authentication_timeout passes.
                self._fatal(pgwire.error_response("FATAL", "57014", "canceling authentication due to timeout"))
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
        upstream.transport.write(packet)
        for chunk in self.pending:
            upstream.transport.write(chunk)
        self.pending.clear()
        self.upstream = upstream
        self.task = None

    async def _internal(self, packet: bytes, path: str) -> tuple[_Upstream, list[tuple[int, bytes]]] | None:
        """Log in over the internal path with the client's startup packet: the session and postgres's answer
        (up to ReadyForQuery), or None when no session came of it (no such role or database, no socket)."""
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_unix_connection(lambda: _Upstream(self, capture=True), path)
        except OSError as exc:
            log.warning("endpoint %s: no internal login path (%s): relaying", self.listener.name, exc)
            return None
        assert upstream.transport is not None
        try:
            login = await upstream.exchange(packet)
        except BaseException:
            upstream.transport.close()
            raise
        if not login or login[-1][0] != _Z:
            upstream.transport.close()
            return None
        return upstream, login

    async def _iam_member(self, packet: bytes, path: str) -> bool:
        """Whether the user of ``packet`` is a member of rds_iam (asked in a session of its own, closed at once)."""
        found = await self._internal(packet, path)
        if found is None:
            # No such role or database, say: postgres says so over TCP too, but only after a password
            # exchange, so that nobody learns which roles exist without one.
            return False
        upstream, _ = found
        assert upstream.transport is not None
        try:
            answer = await upstream.exchange(pgwire.encode(pgwire.Query(_IAM_MEMBER_SQL)))
        finally:
            upstream.transport.write(b"X\0\0\0\x04")
            upstream.transport.close()
        rows = [pgwire.decode_backend(t, f[5:]) for t, f in answer if t == ord("D")]
        return bool(rows) and isinstance(rows[0], pgwire.DataRow) and rows[0].values[0] == b"t"

    async def _iam_login(self, iam: IamLogin, packet: bytes, path: str) -> bool:
        """Authenticate an rds_iam member by token, then log in over the internal path. False: relay over TCP.

        No postgres session is held while the client has its password to send: the membership question
        uses a session of its own, closed at once, and the client's session is made after the token.
        """
        if not await self._iam_member(packet, path):
            return False
        startup = pgwire.decode_startup(packet)
        assert isinstance(startup, pgwire.StartupMessage)
        user = startup.parameters["user"]
        waiter = self.password = asyncio.get_running_loop().create_future()
        self.send(pgwire.encode(pgwire.AuthenticationCleartextPassword()))
        # A password pipelined behind the startup packet waits in pending: it is the first thing to read.
        self.buf = bytearray(b"".join(self.pending))
        self.pending.clear()
        self._password_message()
        frame = await asyncio.wait_for(waiter, self.listener.login_timeout)
        token = frame[5:-1].decode("utf-8", "replace")
        sockname = self.transport.get_extra_info("sockname")
        hosts = {self.listener.host} | ({str(sockname[0])} if sockname else set())
        try:
            verify_token(
                token,
                user=user,
                hosts=hosts,
                port=int(sockname[1]) if sockname else self.listener.port,
                region=iam.region,
                secret_for=iam.secret_for,
                now=dt.datetime.now(dt.UTC),
            )
        except TokenError as exc:
            # Why goes to the log only: the client learns what RDS tells it, no more.
            log.info("endpoint %s: IAM authentication failed for user %r: %s", self.listener.name, user, exc)
            self._fatal(pgwire.error_response("FATAL", "28P01", f'PAM authentication failed for user "{user}"'))
            return True
        if self.closed:
            return True
        found = await self._internal(packet, path)
        if found is None:
            self._fatal(pgwire.error_response("FATAL", "08006", "the instance did not accept the login; retry"))
            return True
        upstream, login = found
        transport = upstream.transport
        assert transport is not None
        if self.closed:
            transport.close()
            return True
        for t, body in login:
            if t == _K:
                msg = pgwire.decode_backend(t, body[5:])
                assert isinstance(msg, pgwire.BackendKeyData)
                self.remember_key((msg.process_id, msg.secret_key))
        # AuthenticationOk, the parameters, the cancel key, ReadyForQuery: postgres's own answer to the login.
        self.send(b"".join(body for _, body in login))
        upstream.relay()
        for chunk in self.pending:
            transport.write(chunk)
        self.pending.clear()
        self.upstream = upstream
        self.task = None
        return True

    def remember_key(self, key: CancelKey) -> None:
        """postgres told this client its cancel key: a CancelRequest with it goes to the same server."""
        if not self.closed:
            self.key = key
            self.listener._keys[key] = self.target

    def _fatal(self, error: bytes) -> None:
        if not self.closed:
            self.send(error)
            self.close()

    def close(self) -> None:
        """Close the client's connection (politely, over TLS)."""
        if self.tls is not None and self.tls.ready and not self.closed:
            self.tls.shutdown()
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
    target to relay it to. ``tls`` serves TLS (SSLRequest and direct); ``force_ssl`` is asked at each
    plaintext login.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        resolve: Resolver,
        *,
        login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
        tls: ssl.SSLContext | None = None,
        force_ssl: Callable[[], bool] = lambda: False,
        iam: IamLogin | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.resolve = resolve
        self.login_timeout = login_timeout
        #: The TLS context clients are served with (None: SSLRequest is answered 'N').
        self.tls = tls
        #: Whether plaintext logins are refused now (the cluster's rds.force_ssl).
        self.force_ssl = force_ssl
        #: IAM database authentication (None: every login is relayed to postgres as it is).
        self.iam = iam
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
