"""The client side: one application connection to a proxy endpoint, from startup packet to Terminate.

A :class:`ClientConn` is an asyncio Protocol that plays a PostgreSQL server. It answers an SSLRequest with
``S`` and upgrades the connection in place (``loop.start_tls``), refusing plaintext when the proxy has
RequireTLS. It authenticates the client itself, as the user's UserAuthConfig says: SCRAM-SHA-256 or MD5
against the user's secret (IAMAuth DISABLED), an IAM auth token sent as a cleartext password (REQUIRED, or
DefaultAuthScheme IAM_AUTH), or either (ENABLED). Then it multiplexes its transactions over pooled server
connections:

* with no server connection, the first frames of a transaction borrow one. An idle one is taken at once,
  inside ``data_received``, and the frames go out in the same callback. When the pool is full the client
  queues itself in the pool (it is a :class:`~._pool.Waiter`) and the connection given back next comes
  straight to it (no Task, no future). Only opening a connection, waiting for a target that is down, or
  replaying parameters runs as a Task. The wait ends at ConnectionBorrowTimeout; the client then gets an
  ErrorResponse per sync point and stays usable;
* while it holds one, frames go through as they are, except the few that name prepared statements
  (Parse, Bind, Describe, Close), which are renamed to the proxy's own server-side names;
* when the server session is idle (at a boundary, outside a transaction), the connection goes back to its
  pool, unless the client is pinned (RDS Proxy's pinning rules, :func:`borealis.pgwire.pinning_reason`).

Protocol-level prepared statements are tracked per client (client name -> server name and the Parse to
replay) and prepared again, privately, on whichever server connection serves a later transaction, as
PgBouncer 1.21+ does; they never pin. A server-side statement is named after its query text and parameter
types, so every client of a server connection shares one: a Parse of a statement the connection already
has is answered ParseComplete by the proxy (when no earlier answer is still to come; otherwise it gets a
name of its own), a client's Close leaves it for the others, and past MAX_SERVER_STATEMENTS per connection
the least recently used are closed. A client can only name its own statements: a name of the proxy's that
the client did not prepare is replaced by one that does not exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import ssl
import struct
import time
from collections.abc import Iterable
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any

from borealis import pgwire
from borealis.iam import TokenError, looks_like_token, verify_token
from borealis.pgwire import SHAPE_DIGITS, STARTUP, UNPINNED_SHAPES, FrameReader, ProtocolViolation, may_pin

from ._auth import MD5Challenge, ScramError, ScramServer
from ._pool import BorrowTimeout, Pool
from ._server import ServerConn, ServerError, close_after_read, link_reading, query_frame, start_link, stop_link

if TYPE_CHECKING:
    from ._manager import ProxyRuntime

__all__ = ["TLS_RECORD_DATA", "ClientConn", "tls_write"]

log = logging.getLogger(__name__)

_int = struct.Struct("!i")
_unpack_i = _int.unpack_from
_Q, _P, _B, _D, _C, _X, _S, _F = b"QPBDCXSF"
_INSPECT = frozenset(b"QPBDCXSF")
_SYNC_POINTS = frozenset(b"QSF")
#: Startup parameters that are not GUCs to replay on server connections.
_NOT_GUCS = frozenset({"user", "database", "replication", "options"})
#: Client messages up to this size are accepted; PostgreSQL's own limit is 1 GiB.
MAX_MESSAGE = 64 << 20
_PENDING_PAUSE = 64
_TIMEOUT_STATE = "53300"
#: The most application data a TLS record to a client carries: postgres's PQ_SEND_BUFFER_SIZE.
TLS_RECORD_DATA = 8192
#: Server-side prepared statements kept per server connection; past it the least recently used are closed.
MAX_SERVER_STATEMENTS = 200
#: Prefix of every server-side statement name the proxy makes (manager.statement_name() and _shared_name()).
_RESERVED = b"_bp"
#: A statement name nothing has: a Close of it is answered CloseComplete, a Bind of it "does not exist".
_NO_STATEMENT = b"_bp_none"
_PARSE_COMPLETE = b"1\0\0\0\x04"
#: Query texts up to this size are remembered, to skip the pinning check when a client repeats one.
_LAST_SQL_MAX = 2048


def tls_write(transport: asyncio.WriteTransport, data: bytes | memoryview) -> None:
    """Write ``data`` to a TLS transport in pieces of at most :data:`TLS_RECORD_DATA` bytes.

    Each write becomes its own TLS records, so no record carries more than postgres would send at once
    (it writes from an 8 KB buffer). Larger records (OpenSSL makes them up to 16 KB) hang some clients:
    libpq before 18 reading without blocking can leave decrypted bytes inside OpenSSL and then wait on a
    socket that has nothing more to say (psycopg #1107, ruby-pg #588).
    """
    view = memoryview(data)
    for start in range(0, len(view), TLS_RECORD_DATA):
        transport.write(view[start : start + TLS_RECORD_DATA])


def _shared_name(rest: bytes) -> str:
    """The server-side name of a statement: the same for the same query text and parameter types
    (``rest``: the Parse body after the name), so clients share one statement per server connection."""
    return "_bps" + hashlib.blake2b(rest, digest_size=12).hexdigest()


def _cstr_end(buf: Any, start: int) -> int:
    """Index of the NUL that ends the string at ``start`` (names are short: scan a bounded window)."""
    window = bytes(buf[start : start + 128])
    end = window.find(b"\0")
    if end < 0:
        end = bytes(buf[start:]).find(b"\0")
        if end < 0:
            raise ProtocolViolation("invalid message: unterminated string")
    return start + end


def _frame(t: int, body: bytes) -> bytes:
    return bytes((t,)) + _int.pack(len(body) + 4) + body


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _options(value: str) -> dict[str, str]:
    """``options=-c a=b -c c=d`` (libpq's way to set GUCs at startup) as parameters."""
    out: dict[str, str] = {}
    words = value.replace("--", "-c ").split()
    for i, word in enumerate(words):
        if word == "-c" and i + 1 < len(words) and "=" in words[i + 1]:
            k, v = words[i + 1].split("=", 1)
            out[k.replace("-", "_")] = v
        elif word.startswith("-c") and "=" in word[2:]:
            k, v = word[2:].split("=", 1)
            out[k.replace("-", "_")] = v
    return out


class ClientConn(asyncio.Protocol):
    """One client connection to a proxy endpoint (and a waiter in a pool's queue while it waits)."""

    # Slots: an idle client costs memory, and a proxy holds thousands of them.
    __slots__ = (
        "_auth",
        "_auth_kind",
        "_last_sql",
        "_link",
        "_parked",
        "_partial",
        "_password",
        "_paused",
        "_pending_raw",
        "_route",
        "_task",
        "busy",
        "closed",
        "connected_at",
        "database",
        "deadline",
        "encrypted",
        "host",
        "key",
        "last_active",
        "params",
        "pending",
        "pinned",
        "pool",
        "reader",
        "role",
        "runtime",
        "server",
        "since",
        "skip_until_sync",
        "state",
        "stats",
        "stmts",
        "tls",
        "transport",
        "user",
        "wait_boundary",
        "waiting",
    )

    def __init__(self, runtime: ProxyRuntime, role: str, host: str = "", tls: ssl.SSLContext | None = None) -> None:
        self.runtime = runtime
        self.role = role
        #: The endpoint's host string (what an IAM token must be signed for) and its TLS context.
        self.host = host
        self.tls = tls
        self.encrypted = False
        self.stats = runtime.stats
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader.for_client(max_message_size=MAX_MESSAGE)
        self.state = "startup"
        self.user = ""
        self.database = ""
        #: The GUCs the client asked for (startup packet, later ParameterStatus), lower-case names.
        self.params: dict[str, str] = {}
        self.server: ServerConn | None = None
        self.pool: Pool | None = None
        #: The pool this client's borrows go to while it stays ``routed`` (see ProxyRuntime.current_pool).
        self._route: Pool | None = None
        self.pinned = False
        self.busy = False
        self.wait_boundary = False
        self.skip_until_sync = False
        self.pending: list[tuple[int, Any]] = []
        #: The chunk the pending frames came in, when they are exactly that chunk (sent as it is later).
        self._pending_raw: bytes | None = None
        #: client statement name -> (server statement name, the Parse frame that makes it); made on first use.
        self.stmts: dict[bytes, tuple[str, bytes]] | None = None
        self.closed = False
        self.key: tuple[int, bytes] = (0, b"")
        self.last_active = self.connected_at = time.monotonic()
        #: In a pool's queue (see :class:`~._pool.Waiter`): since when, until when.
        self.waiting = False
        self.since = 0.0
        self.deadline = 0.0
        #: The last query text that was checked for pinning (and did not pin).
        self._last_sql = b""
        self._password = ""
        self._auth: Any = None
        self._auth_kind = ""
        self._paused = False
        #: The reader holds part of a message (or failed): the next chunk takes the general path. Kept here
        #: because the fast path asks for every chunk, and ``reader.buffered`` is a computed property.
        self._partial = False
        #: The login, TLS upgrade or slow borrow in progress (None when nothing runs for this client).
        self._task: asyncio.Task[None] | None = None
        #: The C data path's reader of this socket, from the first statement it may forward (None without it,
        #: and over TLS).
        self._link: Any = None
        #: The last borrow parked the Query in the pool's C lane (read and cleared by the borrow's caller).
        self._parked = False

    # -------------------------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = transport  # type: ignore[assignment]
        self.stats.client_connections += 1
        self.stats.client_connections_received += 1
        self.runtime.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._unlink()
        if self.closed and self.transport is None:
            return
        self.closed = True
        self.transport = None
        self.waiting = False  # the pool skips it
        self.stats.client_connections -= 1
        self.stats.client_connections_closed += 1
        self.runtime.clients.discard(self)
        self.runtime.manager.forget_key(self.key[0], self)
        if self.pinned:
            self.stats.pinned -= 1
        server, self.server = self.server, None
        if server is not None and self.pool is not None:
            server.owner = None
            _spawn(self._cleanup(server, self.pool, self.pinned))
        if self._task is not None and self.state != "ready":
            self._task.cancel()

    def pause_writing(self) -> None:
        # The client reads slower than the server answers: stop reading the server.
        if self.server is not None:
            self.server.pause_reading()

    def resume_writing(self) -> None:
        if self.server is not None:
            self.server.resume_reading()

    def pause_reading(self) -> None:
        """The server is not taking our bytes fast enough."""
        if self.transport is not None and not self._paused:
            self._paused = True
            if self._link is not None:
                link_reading(self._link, False)
            else:
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Resume reading from the client."""
        if self.transport is not None and self._paused:
            self._paused = False
            if self._link is not None:
                link_reading(self._link, True)
            else:
                self.transport.resume_reading()

    def last_seen(self) -> float:
        """When the client last sent something (monotonic clock), through either data path."""
        link = self._link
        return self.last_active if link is None else max(self.last_active, link.last_active)

    def _unlink(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            stop_link(link)

    def _link_closed(self, err: int) -> None:
        self._unlink()
        close_after_read(self.transport, err)

    def _link_release(self) -> None:
        """The C path is forwarding the answer that ended this client's transaction (it was armed unpinned, in
        a transaction): give the connection back first, as :meth:`answered` does."""
        server, self.server = self.server, None
        if server is not None:
            server.session.transaction_status = "I"
            pool = self.pool
            if pool is not None:
                pool.release(server)
                self._idle_link(pool)

    def data_received(self, data: bytes) -> None:
        now = self.last_active = _monotonic()
        try:
            if (
                data[0] == _Q
                and self.state == "ready"
                and not self.busy
                and not self.skip_until_sync
                and not self._partial
                and 6 <= (size := len(data)) <= MAX_MESSAGE
                and _unpack_i(data, 1)[0] == size - 1
            ):
                # The simple protocol's usual chunk: exactly one Query. No framing, no frame list.
                server = self.server
                if server is None:
                    server = self._borrow_now(now, data)
                    if server is None:
                        if self._parked:
                            self._parked = False
                            return  # in the pool's C lane, which sends it (or hands it back)
                        # Queued in the pool, or a Task borrows: the Query waits (pool_grant/_continue send it).
                        self.busy = True
                        self.pending = [(_Q, data)]  # (the frame as bytes: what a view would give, no view made)
                        self._pending_raw = data
                        return
                # A Query names no protocol-level statement: nothing to prepare first. It goes out in this
                # callback, so its arrival time is when it was forwarded too (one clock read fewer).
                self._send_query(data, server, now)
                return
            reader = self.reader
            clean = not self._partial
            self._partial = True  # until the reader has taken the chunk without an error
            reader.feed(data)
            frames = reader.read_frames()
            self._partial = reader.buffered != 0
            self._frames(frames, data if clean and not self._partial else None)
            reader.check()  # a malformed message behind the good ones
        except ProtocolViolation as exc:
            self._partial = True
            self.fail(exc.error_response())
        except ServerError as exc:
            self.fail(pgwire.error_response("FATAL", exc.sqlstate, str(exc)))

    def _frames(self, frames: list[pgwire.Frame], raw: bytes | None) -> None:
        """Handle frames read from the client (``raw``: the bytes they came in, when exactly those)."""
        if self.state != "ready":
            if self.state == "login" or self.state == "tls":
                # Pipelined ahead of ReadyForQuery: runs after login. Or, in "tls", the startup packet
                # decrypted before start_tls() has handed us the TLS transport (asyncio delivers data on
                # the handshake's last step): handled once it has, so no answer goes out in plaintext.
                self.pending.extend(frames)
            else:
                self._handshake(frames)
            return
        if self.busy:
            self._pending_raw = None
            self.pending.extend(frames)
            if len(self.pending) > _PENDING_PAUSE:
                self.pause_reading()
            return
        if frames:
            self._dispatch(frames, raw)

    # -------------------------------------------------------------------------------- startup and auth

    def _handshake(self, frames: list[pgwire.Frame]) -> None:
        for t, frame in frames:
            if self.closed:
                return
            if t == STARTUP:
                self._startup_packet(frame)
            elif t == ord("p") and self.state == "auth":
                self._auth_message(frame)
            elif t == _X:
                self.close()
            else:
                raise ProtocolViolation(f"unexpected message type {chr(t)!r} during authentication")

    def _startup_packet(self, frame: memoryview) -> None:
        msg = pgwire.decode_startup(frame)
        if isinstance(msg, pgwire.SSLRequest) and self.tls is not None and not self.encrypted:
            if self.state != "startup":
                raise ProtocolViolation("unexpected SSLRequest")
            # Raises if plaintext came after the request: it would run as if it had come over TLS
            # (CVE-2021-23214).
            self.reader.negotiation_done(encrypted=True)
            self.write(b"S")
            # No more plaintext may reach this protocol: start_tls takes the transport over from here.
            assert self.transport is not None
            self.transport.pause_reading()
            self.state = "tls"
            self._task = _spawn(self._start_tls(self.transport, self.tls))
            return
        if isinstance(msg, pgwire.SSLRequest | pgwire.GSSENCRequest):
            # GSSAPI is not served, nor TLS inside TLS: 'N', and the client may go on or give up.
            self.write(b"N")
            self.reader.negotiation_done(encrypted=False)
            return
        if isinstance(msg, pgwire.CancelRequest):
            self.runtime.manager.cancel(msg.process_id, msg.secret_key)
            self.close()
            return
        assert isinstance(msg, pgwire.StartupMessage)
        if self.state != "startup":
            raise ProtocolViolation("unexpected startup packet")
        if msg.parameters.get("replication"):
            raise ProtocolViolation("replication connections are not supported by the proxy", "0A000")
        negotiate = pgwire.negotiate_protocol(msg)
        if negotiate is not None:
            self.write(pgwire.encode(negotiate))
        doc = self.runtime.doc
        if doc["require_tls"] and not self.encrypted:
            self.stats.client_setup_failed_auth += 1
            self.fail(pgwire.error_response("FATAL", "28000", "This RDS Proxy requires TLS connections."))
            return
        self.user = msg.parameters["user"]
        self.database = msg.parameters.get("database") or self.user
        params = {k.lower(): v for k, v in msg.parameters.items() if k not in _NOT_GUCS and not k.startswith("_pq_.")}
        if msg.parameters.get("options"):
            params.update({k.lower(): v for k, v in _options(msg.parameters["options"]).items()})
        self.params = params
        entry = self.runtime.auth_for(self.user)
        if entry is None:
            # Also under DefaultAuthScheme IAM_AUTH: the proxy logs in to PostgreSQL with the role's secret
            # (end-to-end IAM, with no secret at all, is not served yet).
            self.stats.client_setup_failed_auth += 1
            self.fail(
                pgwire.error_response(
                    "FATAL",
                    "28000",
                    f'This RDS Proxy has no credentials for the role "{self.user}". '
                    "Check the credentials for this role and try again.",
                )
            )
            return
        kind, password, iam = entry
        if doc.get("default_auth_scheme") == "IAM_AUTH":
            iam = "REQUIRED"
        self._password = password
        self._auth_kind = kind if iam == "DISABLED" else f"IAM_{iam}"
        self.state = "auth"
        if iam != "DISABLED":
            # As RDS Proxy does: the token comes as a cleartext password (TLS keeps it private on AWS,
            # where IAM auth needs TLS; Borealis allows plaintext unless RequireTLS says otherwise).
            self.write(pgwire.encode(pgwire.AuthenticationCleartextPassword()))
        elif kind == "POSTGRES_MD5":
            self._auth = MD5Challenge()
            self.write(pgwire.encode(pgwire.AuthenticationMD5Password(self._auth.salt)))
        else:
            self._auth = None
            self.write(pgwire.encode(pgwire.AuthenticationSASL(("SCRAM-SHA-256",))))

    def login_timed_out(self) -> None:
        """The client has not finished its startup and authentication in time: refuse it, as postgres does."""
        self.stats.client_setup_failed_auth += 1
        if self.state == "auth":
            self.fail(pgwire.error_response("FATAL", "57014", "canceling authentication due to timeout"))
        else:
            self.close()  # postgres closes silently when no (whole) startup packet came

    def _auth_failed(self) -> None:
        self.stats.client_setup_failed_auth += 1
        self.fail(pgwire.error_response("FATAL", "28P01", f'password authentication failed for user "{self.user}"'))

    def _auth_message(self, frame: memoryview) -> None:
        if self._auth_kind.startswith("IAM_"):
            self._iam_password(frame)
            return
        if self._auth_kind == "POSTGRES_MD5":
            msg = pgwire.decode_frontend_frame(frame)
            assert isinstance(msg, pgwire.PasswordMessage)
            if not self._auth.verify(self.user, self._password, msg.password):
                self._auth_failed()
                return
            self._authenticated()
            return
        try:
            if self._auth is None:
                init = pgwire.decode_frontend_frame(frame, auth=pgwire.SASLInitialResponse)
                assert isinstance(init, pgwire.SASLInitialResponse)
                if init.mechanism != "SCRAM-SHA-256" or init.data is None:
                    raise ProtocolViolation("unsupported SASL mechanism", "28000")
                self._auth = ScramServer(self.runtime.manager.scram_keys.get(self._password))
                first = self._auth.first(init.data)
                self.write(pgwire.encode(pgwire.AuthenticationSASLContinue(first)))
            else:
                resp = pgwire.decode_frontend_frame(frame, auth=pgwire.SASLResponse)
                assert isinstance(resp, pgwire.SASLResponse)
                final = self._auth.final(resp.data)
                self.write(pgwire.encode(pgwire.AuthenticationSASLFinal(final)))
                self._authenticated()
        except ScramError:
            self._auth_failed()
        except UnicodeDecodeError:
            raise ProtocolViolation("malformed SASL message") from None

    def _iam_password(self, frame: memoryview) -> None:
        """Check a cleartext password: an IAM token, or (IAMAuth ENABLED) the secret's password."""
        msg = pgwire.decode_frontend_frame(frame)
        if not isinstance(msg, pgwire.PasswordMessage):
            raise ProtocolViolation("expected a password message", "28000")
        given = msg.password
        if self._auth_kind == "IAM_ENABLED" and not looks_like_token(given):
            if self._password and hmac.compare_digest(given.encode(), self._password.encode()):
                self._authenticated()
            else:
                self._auth_failed()
            return
        manager = self.runtime.manager
        sockname = self.transport.get_extra_info("sockname") if self.transport is not None else None
        hosts = {self.host} | ({str(sockname[0])} if sockname else set())
        try:
            verify_token(
                given,
                user=self.user,
                hosts=hosts,
                port=int(sockname[1]) if sockname else 0,
                region=manager.region,
                secret_for=manager.secret_for,
                now=dt.datetime.now(dt.UTC),
            )
        except TokenError as exc:
            # Why goes to the log only: the client learns no more than that it failed, as with passwords.
            log.info("IAM authentication failed for user %r on proxy %s: %s", self.user, self.runtime.name, exc)
            self.stats.client_setup_failed_auth += 1
            self.fail(pgwire.error_response("FATAL", "28P01", f'IAM authentication failed for user "{self.user}"'))
            return
        self._authenticated()

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Upgrade the connection to TLS; the client then sends its startup packet again, encrypted."""
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(raw, self, context, server_side=True)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, asyncio.CancelledError) as exc:
            # A failed handshake (the client rejected our certificate, or left) closes the socket, but the
            # TLS layer owned it, so this protocol hears nothing: account for the loss here.
            log.debug("TLS handshake with a client of %s failed: %r", self.runtime.name, exc)
            raw.close()
            self.connection_lost(None)
            return
        if transport is None or transport.is_closing():
            # The socket closed mid-handshake without an error: asyncio returns no transport, uvloop a closed
            # one, and neither tells this protocol.
            raw.close()
            self.connection_lost(None)
            return
        if self.closed:
            return
        self.transport = transport
        self.encrypted = True
        self.state = "startup"
        if self.pending:
            frames, self.pending = self.pending, []
            try:
                self._handshake(frames)
            except ProtocolViolation as exc:
                self.fail(exc.error_response())

    def _authenticated(self) -> None:
        self._password = ""
        self._auth = None  # the SCRAM state is not needed again
        self.state = "login"
        self._task = _spawn(self._login())

    async def _login(self) -> None:
        """Report the server's parameters (as this client's settings make them), then ReadyForQuery."""
        key = frozenset(self.params.items())
        try:
            try:
                reported = self.runtime.current_pool(self.role, self.user, self.database).reported.get(key)
            except ServerError as exc:
                if not exc.transient:
                    raise
                reported = None  # no target now: acquire() waits for one
            if reported is None:
                pool, server = await self.runtime.acquire(self.role, self.user, self.database)
                try:
                    await self._apply_params(server)
                except BaseException:
                    pool.discard(server)
                    raise
                reported = dict(server.session.parameters)
                pool.release(server)
                pool.reported[key] = reported
        except BorrowTimeout:
            self.fail(self._timeout_error("FATAL"))
            return
        except ServerError as exc:
            self.fail(pgwire.error_response("FATAL", exc.sqlstate, str(exc)))
            return
        if self.closed:
            return
        self.key = self.runtime.manager.new_key(self)
        out = [pgwire.encode(pgwire.AuthenticationOk())]
        out += [pgwire.encode(pgwire.ParameterStatus(k, v)) for k, v in reported.items()]
        out.append(pgwire.encode(pgwire.BackendKeyData(*self.key)))
        out.append(pgwire.ready_for_query("I"))
        self.write(b"".join(out))
        self.state = "ready"
        self._task = None  # this task, done: an idle client keeps nothing of its login
        self.stats.client_setup_succeeded += 1
        if self.pending:
            frames, self.pending = self.pending, []
            self._dispatch(frames, None)

    # -------------------------------------------------------------------------------- transactions

    def _dispatch(self, frames: list[pgwire.Frame], raw: bytes | None) -> None:
        """Send frames to the server connection, borrowing or preparing first when needed."""
        if self.skip_until_sync:
            frames = self._skip(frames)
            raw = None
            if not frames:
                return
        server = self.server
        if server is None:
            if frames[0][0] == _X and all(t == _X for t, _ in frames):
                self.close()
                return
            server = self._borrow_now(_monotonic())
            if server is None:
                # Queued in the pool, or a Task borrows: the frames wait (_continue sends them).
                self.busy = True
                self.pending = frames
                self._pending_raw = raw
                return
        if self.stmts or len(server.prepared) > MAX_SERVER_STATEMENTS:
            missing, used = self._missing(frames, server)
            if missing or len(server.prepared) + len(missing) > MAX_SERVER_STATEMENTS:
                session = server.session
                if session.at_boundary or session.pending_syncs:
                    self.busy = True
                    self.pending = list(frames)
                    self._pending_raw = raw
                    if session.at_boundary:
                        self._task = _spawn(self._reprepare(missing, used))
                    else:
                        self.wait_boundary = True
                    return
        self._forward(frames, raw, server)

    def _send_query(self, data: bytes, server: ServerConn, now: float) -> None:
        """Send one whole Query message (``data``, as the client sent it) to ``server``, at ``now``."""
        self.stats.query_requests += 1
        if not self.pinned:
            sql = data[5:-1]
            # A repeat of the last text checked is not checked again; most texts fail the pre-filter, and
            # may_pin's own first test (a shape known not to pin) needs no call.
            if sql != self._last_sql and sql.translate(None, SHAPE_DIGITS) not in UNPINNED_SHAPES and may_pin(sql):
                self._classify(sql)
        session = server.session
        if (
            server.link is not None
            and not self.pinned
            and session.transaction_status == "I"
            and session.at_boundary
            and not server.parsing
            and not server._partial
            and server._private is None
            and self._linked()
            and self._link.sent(server.link, now)
        ):
            # Its answer may go out from the C path (which hands the Query back first if anything else comes).
            server.transport.write(data)  # type: ignore[union-attr]
            return
        session.query()
        server.sent_at = now
        server.transport.write(data)  # type: ignore[union-attr]  # (set from connection_made on)

    def _forward(self, frames: list[pgwire.Frame], raw: bytes | None, server: ServerConn) -> None:
        if raw is not None and len(frames) == 1 and frames[0][0] == _Q:
            # The simple protocol's one Query: no loop, no rename, the chunk goes out as it came.
            self._send_query(raw, server, _monotonic())
            return
        frontend = server.session.frontend
        out: list[Any] = []
        rewritten = False
        terminate = False
        for t, frame in frames:
            if t in _INSPECT:
                if t == _X:
                    terminate = True
                    rewritten = True
                    break
                new = self._inspect(t, frame, server, not out)
                if new is not None:
                    rewritten = True
                    if new:
                        frontend(t, new)
                        out.append(new)
                    continue
            frontend(t, frame)
            out.append(frame)
        if out:
            server.sent_at = time.monotonic()
            server.write(raw if raw is not None and not rewritten else b"".join(out))
        if terminate:
            self.close()

    def _inspect(self, t: int, frame: Any, server: ServerConn, first: bool) -> bytes | None:
        """Look at a frame that may pin, count or name a statement; return a renamed frame or None.

        ``first``: no frame of this batch has gone to the server before this one. An empty result means
        the proxy answered the frame itself (a Parse of a statement the server already has).
        """
        if t in (_S, _F):
            self.stats.query_requests += 1
            return None
        if t == _Q:
            self.stats.query_requests += 1
            if not self.pinned:
                self._check_pin(bytes(frame[5:-1]))
            return None
        if t == _P:
            end = _cstr_end(frame, 5)
            name = bytes(frame[5:end])
            if not self.pinned:
                q_end = _cstr_end(frame, end + 1)
                self._check_pin(bytes(frame[end + 1 : q_end]))
            if not name:
                return None
            rest = bytes(frame[end:])
            sname = _shared_name(rest)
            prepared = server.prepared
            if self.stmts is None:
                self.stmts = {}
            if sname in prepared:
                session = server.session
                if first and session.at_boundary and session.transaction_status != "E":
                    # The server has it and every earlier answer has gone to the client: answer here.
                    self.stmts[name] = (sname, _frame(_P, sname.encode() + rest))
                    del prepared[sname]
                    prepared[sname] = None
                    self.write(_PARSE_COMPLETE)
                    return b""
                # Its ParseComplete would have to go between answers still to come: a name of its own.
                sname = sname + self.runtime.manager.statement_name()
            new = _frame(_P, sname.encode() + rest)
            self.stmts[name] = (sname, new)
            prepared[sname] = None
            server.parsing.append([server.session.pending_syncs, sname])
            return new
        if t == _B:
            p_end = _cstr_end(frame, 5)
            s_end = _cstr_end(frame, p_end + 1)
            if s_end == p_end + 1:
                return None
            entry = self._statement(bytes(frame[p_end + 1 : s_end]), server, False)
            if entry is None:
                return None
            return _frame(_B, bytes(frame[5 : p_end + 1]) + entry + bytes(frame[s_end:]))
        if t in (_D, _C):
            if frame[5] != ord("S") or len(frame) <= 7:
                return None
            end = _cstr_end(frame, 6)
            entry = self._statement(bytes(frame[6:end]), server, t == _C)
            if entry is None:
                return None
            return _frame(t, b"S" + entry + b"\0")
        return None

    def _statement(self, name: bytes, server: ServerConn, close: bool) -> bytes | None:
        """The server-side name for this client's statement ``name`` (None: the name stays as it is).

        Server-side statements are shared by every client of the connection, so a client's Close is sent
        as a Close of a name nothing has (CloseComplete, and the statement stays for the others; least
        recently used ones go when there are too many), and a name the client did not prepare never reaches
        a server-side statement that another client made.
        """
        entry = self.stmts.get(name) if self.stmts is not None else None
        if entry is None:
            return _NO_STATEMENT if name.startswith(_RESERVED) else None
        if close:
            del self.stmts[name]  # type: ignore[union-attr]
            return _NO_STATEMENT
        sname = entry[0]
        prepared = server.prepared
        if sname in prepared:  # most recently used
            del prepared[sname]
            prepared[sname] = None
        return sname.encode()

    def _check_pin(self, sql: bytes) -> None:
        """Pin the client if ``sql`` needs a session of its own (a repeat of the last text is not checked)."""
        if sql != self._last_sql and may_pin(sql):
            self._classify(sql)

    def _classify(self, sql: bytes) -> None:
        """Pin the client if ``sql``, which the pre-filter let through, needs a session of its own."""
        exclude = "EXCLUDE_VARIABLE_SETS" in self.runtime.filters
        reason = pgwire.pinning_reason(sql.decode(errors="replace"), exclude_variable_sets=exclude)
        if reason is None:
            # pgbench, ORMs and most applications repeat a few texts: the next identical one skips the regexes.
            # (Not under EXCLUDE_VARIABLE_SETS: then the answer also depends on filters that may change.)
            self._last_sql = sql if len(sql) <= _LAST_SQL_MAX and not exclude else b""
        else:
            self.pinned = True
            self.stats.pinned += 1
            self.stats.pins_total += 1
            log.debug("client of %s pinned: %s", self.runtime.name, reason.value)

    def _missing(self, frames: Iterable[pgwire.Frame], server: ServerConn) -> tuple[list[bytes], set[str]]:
        """Parse frames of this client's statements that these frames use and ``server`` lacks, and the
        server-side names of every statement of this client they use."""
        prepared = server.prepared
        parsed_here: set[bytes] = set()
        missing: list[bytes] = []
        used: set[str] = set()
        for t, frame in frames:
            if t == _P:
                end = _cstr_end(frame, 5)
                parsed_here.add(bytes(frame[5:end]))
                continue
            if t == _B:
                start = _cstr_end(frame, 5) + 1
            elif t == _D and frame[5] == ord("S"):
                start = 6
            else:
                continue
            end = _cstr_end(frame, start)
            if end == start:
                continue
            name = bytes(frame[start:end])
            if name in parsed_here:
                continue
            entry = self.stmts.get(name) if self.stmts is not None else None
            if entry is not None:
                used.add(entry[0])
                if entry[0] not in prepared and entry[1] not in missing:
                    missing.append(entry[1])
        return missing, used

    @staticmethod
    def _victims(server: ServerConn, used: set[str], adding: int) -> list[str]:
        """Least recently used statements to close so that ``adding`` more leave room (none in ``used``)."""
        prepared = server.prepared
        excess = len(prepared) + adding - MAX_SERVER_STATEMENTS * 3 // 4
        victims: list[str] = []
        for sname in prepared:
            if len(victims) >= excess:
                break
            if sname not in used:
                victims.append(sname)
        return victims

    def _borrow_now(self, now: float, query: bytes | None = None) -> ServerConn | None:
        """Borrow without waiting if a connection is idle; else queue in the pool or start a slow borrow.

        Returns the connection (attached, parameters as the client wants them), or None when the frames
        must wait: the pool, or a Task, calls :meth:`_continue` (or answers them with an error) later.
        """
        runtime = self.runtime
        pool = self._route
        if pool is None or not pool.routed:
            try:
                pool = runtime.current_pool(self.role, self.user, self.database)
            except ServerError:
                pool = None  # no target now: the slow borrow waits for one
            else:
                # Kept while the runtime keeps it (Pool.routed); a reader endpoint's clients ask every time,
                # since its readers are taken in turn.
                self._route = pool if self.role != "READ_ONLY" else None
        if pool is not None:
            server = pool.borrow(self, now, runtime.borrow_seconds, query)
            if server is not None:
                server.owner = self
                self.server = server
                self.pool = pool
                if server.applied == self.params:
                    return server
                self._task = _spawn(self._apply_and_continue(pool, server))
                return None
            if self.waiting or self._parked:
                return None  # queued: the pool calls pool_grant() or pool_fail(), or the lane sends it
        self._task = _spawn(self._borrow())
        return None

    def _attach(self, pool: Pool, server: ServerConn) -> None:
        server.owner = self
        self.server = server
        self.pool = pool

    def pool_grant(self, pool: Pool, conn: ServerConn | None) -> None:
        """The pool lends us ``conn`` (we waited in its queue), or a slot came free (None): open one."""
        if conn is None:
            self._task = _spawn(self._borrow())
            return
        if self.closed:
            pool.release(conn)
            return
        conn.owner = self
        self.server = conn
        self.pool = pool
        if conn.applied == self.params:
            raw = self._pending_raw
            if raw is not None and raw[0] == _Q and len(self.pending) == 1 and not self.skip_until_sync:
                # The usual wait: one Query held as it came (see data_received). Send it now, in this callback.
                self.busy = False
                self.pending = []
                self._pending_raw = None
                if self._paused:
                    self.resume_reading()
                try:
                    self._send_query(raw, conn, _monotonic())
                except ProtocolViolation as exc:
                    self.fail(exc.error_response())
                return
            self._continue()
        else:
            self._task = _spawn(self._apply_and_continue(pool, conn))

    def park(self, lane: Any, query: bytes, now: float, timeout: float) -> bool:
        """Wait in the pool's C lane with ``query``, this client's one autocommit Query, if its text is known not
        to pin (as the C path checks it: the last text checked, or a shape known not to pin)."""
        link = self._link
        route = self._route
        if (
            link is None
            or route is None
            or route.lane is not lane
            or self.pinned
            or self.skip_until_sync
            or self._partial
            or self._paused
            or self.closed
            or self.state != "ready"
        ):
            return False
        sql = query[5:-1]
        if sql != self._last_sql and sql.translate(None, SHAPE_DIGITS) not in UNPINNED_SHAPES:
            return False
        lane.timeout = timeout
        if not lane.park(link, query, now, self.params, self._last_sql):
            return False
        self._parked = True
        return True

    def _lane_resume(self, query: bytes) -> None:
        """The Query that waited in the pool's C lane waits here again, for pool_grant() or pool_fail()."""
        self.busy = True
        self.pending = [(_Q, query)]
        self._pending_raw = query

    def _link_adopt(self, server: ServerConn) -> None:
        """A connection the pool's C lane lent this client (Python did not know) is this client's, as if Python
        had lent it: the C path hands something of the pair to Python next."""
        server.owner = self
        self.server = server
        self.pool = server.pool

    def _link_ended(self, server: ServerConn) -> dict[str, str] | None:
        """The C path is forwarding the answer that ended this client's transaction while Queries wait in its
        pool's lane: let go of the connection. Returns its applied parameters when the lane may lend it on from
        C (as ``Pool.release`` would give it to the first of them), or None when it went back here."""
        pool = self.pool
        if (
            pool is not None
            and pool is self._route
            and not server.closed
            and not pool.closed
            and not self.busy
            and not self.skip_until_sync
            and not self._partial
            and not self.closed
        ):
            self.server = None
            server.session.transaction_status = "I"
            server.owner = None
            return server.applied
        self._link_release()
        return None

    def _link_began(self, server: ServerConn) -> None:
        """The C path is forwarding the answer to this client's autocommit Query that opened a transaction (BEGIN):
        the client keeps the connection (if the lane lent it, Python learns of it now), in a transaction."""
        server.owner = self
        self.server = server
        self.pool = server.pool
        server.session.transaction_status = "T"

    def settle_link(self) -> None:
        """Make Python's books exact for this client: a connection the pool's C lane lent it becomes its own, and
        its Query in flight is recorded (the answer then comes through Python)."""
        if self._link is not None:
            self._link.settle()

    def parked(self) -> bool:
        """Whether the client's Query waits in a pool's C lane (it waits for a connection, as ``busy`` does)."""
        link = self._link
        return link is not None and bool(link.parked)

    def _idle_link(self, pool: Pool) -> None:
        """The client gave its connection back: while the pool is saturated, its next Query may park in C (only
        in its kept route's lane: a reader endpoint's client asks the runtime per borrow)."""
        link = self._link
        lane = pool.lane
        if (
            link is not None
            and lane is not None
            and pool is self._route
            and lane.open
            and not self.pinned
            and not self.busy
            and not self.skip_until_sync
            and not self._partial
            and not self.closed
        ):
            link.park_when_idle(lane, self.params, self._last_sql)

    def pool_fail(self, pool: Pool, exc: Exception) -> None:
        """Our wait in the pool's queue ended without a connection."""
        if isinstance(exc, BorrowTimeout):
            self._answer_pending_with(self._timeout_error("ERROR"))
        else:
            # The pool closed (its target moved): borrow again, from the new target.
            self._task = _spawn(self._borrow())

    async def _borrow(self) -> None:
        """The slow borrow: open a connection, or wait for a target that is down (within the timeout)."""
        try:
            pool, server = await self.runtime.acquire(self.role, self.user, self.database)
        except BorrowTimeout:
            self._answer_pending_with(self._timeout_error("ERROR"))
            return
        except ServerError as exc:
            self._answer_pending_with(pgwire.error_response("ERROR", exc.sqlstate, str(exc)))
            return
        if self.closed:
            pool.release(server)
            return
        self._attach(pool, server)
        await self._apply_and_continue(pool, server)

    async def _apply_and_continue(self, pool: Pool, server: ServerConn) -> None:
        try:
            await self._apply_params(server)
        except ServerError as exc:
            if self.server is not server:
                return  # the client left meanwhile: its cleanup has taken the connection
            self.server = None
            pool.discard(server)
            self._answer_pending_with(pgwire.error_response("ERROR", exc.sqlstate, str(exc)))
            return
        self._continue()

    async def _apply_params(self, server: ServerConn) -> None:
        """Make the connection's settings the ones this client asked for, and only those.

        Server connections log in with no client's parameters, so RESET brings back the server's own
        default for whatever an earlier client set and this one did not ask for.
        """
        applied = server.applied
        if applied == self.params:
            return
        sql = [f"SET {_quote_ident(k)} = {_quote_literal(v)}" for k, v in self.params.items() if applied.get(k) != v]
        sql += [f"RESET {_quote_ident(k)}" for k in applied if k not in self.params]
        server.applied = {}  # unknown until the statements succeed: a failure leaves nothing assumed
        await server.private([query_frame("; ".join(sql))])
        server.applied = dict(self.params)

    async def _reprepare(self, missing: list[bytes], used: set[str]) -> None:
        """Prepare what the held frames need, closing the least recently used statements over the cap."""
        server = self.server
        if server is None:
            self._continue()
            return
        victims = self._victims(server, used, len(missing))
        closes = [_frame(_C, b"S" + sname.encode() + b"\0") for sname in victims]
        try:
            await server.private([*closes, *missing, b"S\0\0\0\x04"], check=False)
        except ServerError:
            return  # the server is gone; server_lost has answered the client
        prepared = server.prepared
        for sname in victims:
            prepared.pop(sname, None)
        for frame in missing:
            end = _cstr_end(frame, 5)
            prepared[bytes(frame[5:end]).decode()] = None
        self._continue()

    def _continue(self) -> None:
        """Resume the frames held while borrowing or preparing."""
        self.busy = False
        frames, self.pending = self.pending, []
        raw, self._pending_raw = self._pending_raw, None
        self.resume_reading()
        if self.closed:
            return
        try:
            if frames:
                self._dispatch(frames, raw)
            elif self.server is not None and self.server.session.idle:
                self._release()
        except ProtocolViolation as exc:
            self.fail(exc.error_response())

    def _release(self) -> None:
        server, self.server = self.server, None
        if server is not None and self.pool is not None:
            self.pool.release(server)
            self._idle_link(self.pool)

    def answered(self, server: ServerConn, data: bytes) -> None:
        """``data`` is the server's whole answer to everything sent, ending in ReadyForQuery: send it to the
        client, and give the connection back if the client is done with it.

        The connection goes back first: the next waiter's query then reaches postgres before this answer's
        ``send`` wakes the client (on a busy machine that wake-up often takes the CPU from the proxy), so the
        pool's scarce server connections sit idle for less time. Nothing of this client can be overtaken: its
        next frames read from its socket only after this callback.
        """
        if self.wait_boundary:
            self.write(data)
            self.server_at_boundary(server)
            return
        # What server_at_boundary() does when nothing waits for the boundary, inline: this runs for nearly
        # every answer. Inside a transaction (or pinned, or with frames held) the client keeps the connection.
        status = server.session.transaction_status
        if not self.pinned and not self.busy and status == "I":
            self.server = None
            pool = self.pool
            if pool is not None:
                pool.release(server)
                if self._link is not None:
                    self._idle_link(pool)
        elif server.link is not None:
            self._arm(server, status)
        transport = self.transport
        # As write(), inline.
        if transport is not None and (not self.encrypted or len(data) <= TLS_RECORD_DATA):
            transport.write(data)
        else:
            self.write(data)

    def server_at_boundary(self, server: ServerConn) -> None:
        """The server answered every sync point sent: release it, or run what waited for this moment."""
        if self.wait_boundary:
            self.wait_boundary = False
            missing, used = self._missing(self.pending, server)
            if missing or len(server.prepared) + len(missing) > MAX_SERVER_STATEMENTS:
                self._task = _spawn(self._reprepare(missing, used))
            else:
                self._continue()
            return
        status = server.session.transaction_status
        if not self.pinned and not self.busy and status == "I":
            self._release()
        elif server.link is not None and not server.parsing and not server._partial:
            self._arm(server, status)

    def _arm(self, server: ServerConn, status: str | None) -> None:
        """The client keeps ``server``, which has answered everything sent: if every condition of both Python
        fast paths holds, the next statements and their answers may go through the C path."""
        if (
            status is not None
            and server.link is not None
            and (status == "T" or self.pinned)
            and not self.busy
            and not self.skip_until_sync
            and not self._partial
            and self.server is server
            and self._linked()
        ):
            self._link.arm(server.link, status, self.pinned, self._last_sql)

    def _linked(self) -> bool:
        """Whether the client's socket is read through the C path: made on first use, not at login, so that an
        idle client costs no second descriptor (nor the memory)."""
        if self._link is None:
            if self.encrypted or self._paused or self.closed or self.state != "ready":
                return False
            self._link = start_link(self.transport, self, False, self.stats.fast)
        return self._link is not None

    def server_lost(self, server: ServerConn) -> None:
        """The lent server connection broke: the client's transaction or session state is gone."""
        if self.server is server:
            self.server = None
            self.fail(pgwire.error_response("FATAL", "08006", "the database connection was lost; reconnect"))

    def parameter_changed(self, frame: memoryview) -> None:
        """The server reported a new parameter value in this client's transaction: the client wants it."""
        msg = pgwire.decode_backend(ord("S"), frame[5:])
        assert isinstance(msg, pgwire.ParameterStatus)
        name = msg.name.lower()
        if name in self.params or self.server is not None:
            self.params[name] = msg.value
            if self.server is not None:
                self.server.applied[name] = msg.value

    # -------------------------------------------------------------------------------- errors

    def _timeout_error(self, severity: str) -> bytes:
        seconds = self.runtime.borrow_timeout()
        return pgwire.error_response(
            severity,
            _TIMEOUT_STATE,
            f"Timed-out waiting to acquire database connection (ConnectionBorrowTimeout {seconds:g}s)",
            hint="Too many clients hold database connections; raise MaxConnectionsPercent or retry.",
        )

    def _answer_pending_with(self, error: bytes) -> None:
        """Answer every held sync point with ``error`` + ReadyForQuery; the connection stays usable."""
        frames, self.pending = self.pending, []
        self._pending_raw = None
        self.busy = False
        self.resume_reading()
        out: list[bytes] = []
        unsynced = False
        terminate = False
        for t, _ in frames:
            if t in _SYNC_POINTS:
                out.append(error)
                out.append(pgwire.ready_for_query("I"))
                unsynced = False
            elif t == _X:
                terminate = True
            else:
                unsynced = True
        if unsynced:
            out.append(error)
            self.skip_until_sync = True
        self.write(b"".join(out))
        if terminate:
            self.close()

    def _skip(self, frames: list[pgwire.Frame]) -> list[pgwire.Frame]:
        # After an error in an extended batch, a server discards messages until Sync: do the same.
        for i, (t, _) in enumerate(frames):
            if t == _S:
                self.skip_until_sync = False
                self.write(pgwire.ready_for_query("I"))
                return frames[i + 1 :]
            if t == _X:
                self.close()
                return []
        return []

    # -------------------------------------------------------------------------------- output

    def write(self, data: bytes | memoryview) -> None:
        """Send bytes to the client (over TLS, in records of at most 8 KB, as postgres writes them)."""
        transport = self.transport
        if transport is not None:
            if self.encrypted and len(data) > TLS_RECORD_DATA:
                tls_write(transport, data)
            else:
                transport.write(data)

    def fail(self, error: bytes) -> None:
        """Send an ErrorResponse and close (errors before or outside a transaction cycle are fatal)."""
        self.write(error)
        self.close()

    def close(self) -> None:
        """Close the client connection; its server connection is cleaned and returned."""
        self._unlink()
        if self.transport is not None:
            self.transport.close()

    async def _cleanup(self, server: ServerConn, pool: Pool, pinned: bool) -> None:
        """Make a server connection whose client left safe for the next client, or close it."""
        if server.closed:
            return
        server.resume_reading()  # paused for this client's slow reading: nothing would read the ROLLBACK's answer
        session = server.session
        if not session.at_boundary or server.reader.buffered or session.copy_in or session.copy_out:
            # Mid-response: the simplest safe thing is a fresh connection later.
            pool.discard(server)
            return
        try:
            if session.transaction_status != "I":
                await server.private([query_frame("ROLLBACK")], check=False)
            if pinned:
                await server.private([query_frame("DISCARD ALL")])
                server.prepared.clear()
                server.applied = {}
        except ServerError:
            pool.discard(server)
            return
        pool.release(server)


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("proxy task failed", exc_info=task.exception())
