"""The server side: one proxy-to-PostgreSQL connection, its login, and the bytes it sends back.

A :class:`ServerConn` is an asyncio Protocol. After login it is in one of three modes:

* lent to a client (``owner`` set): every chunk from PostgreSQL is forwarded to the client as it is,
  after the :class:`~borealis.pgwire.Session` has seen its frames (it says when a transaction ends);
* private: the proxy itself talks to the server (InitQuery, re-preparing statements, replaying
  parameters, ROLLBACK/DISCARD ALL after a client left); responses are consumed, never forwarded;
* idle in its pool: nothing is expected; anything but asynchronous messages closes it.

The lent mode has a fast path for the common chunk: a whole response to the one sync point outstanding,
ending in ReadyForQuery. Its frame headers are skimmed (type and length only); if none needs handling
(ParameterStatus, ErrorResponse, the copy starts, anything unusual), the chunk goes to the client as it is
and the transaction status comes from its last byte. Anything else takes the general path, which gives the
:class:`~borealis.pgwire.Session` every frame but DataRow and CopyData.

With the optional compiled build, a :mod:`._fastpath` Link reads the socket instead of uvloop (see
``_fastpath.c``): it passes chunks to ``data_received`` as uvloop would, and forwards the statements of a
transaction (or of a pinned session) and their answers itself, in C, once :meth:`ClientConn.answered` arms it.
``BOREALIS_FASTPATH=0`` in the environment turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any

from borealis import pgwire
from borealis.pgwire import SHAPE_DIGITS, UNPINNED_SHAPES, FrameReader, Phase, ProtocolViolation, Session

from ._auth import md5_response, scram_client

if TYPE_CHECKING:
    from ._client import ClientConn

__all__ = [
    "ServerConn",
    "ServerError",
    "close_after_read",
    "connect_server",
    "fastpath_counters",
    "link_reading",
    "new_lane",
    "query_frame",
    "start_link",
    "stop_link",
    "tcp_login",
]

log = logging.getLogger(__name__)

_S = 0x53
_Q = 0x51
_Z = 0x5A
_E = 0x45
_D = 0x44
_d = 0x64
_PARSED = 0x31
_int = struct.Struct("!i")
_unpack_i = _int.unpack_from

# The fast path's table of backend types: 1 passes (DataRow, notices, notifications, FunctionCallResponse),
# 2 completes an extended message only, 3 completes an extended message or belongs to a Query's statements.
# 0 (every other type, ReadyForQuery included since it may only end the chunk) sends the chunk the general way.
_FAST = bytearray(256)
for _t in b"DNAtV":
    _FAST[_t] = 1
for _t in b"123ns":
    _FAST[_t] = 2
for _t in b"TCI":
    _FAST[_t] = 3
_FAST_TABLE = bytes(_FAST)
#: The same for an answer with no extended message to complete: 1 passes, 0 sends it the general way.
_QUERY_TABLE = bytes(1 if kind in (1, 3) else 0 for kind in _FAST_TABLE)  # (mypyc cannot iterate a bytearray)
#: A frame's type and length, in one call.
_unpack_head = struct.Struct("!Bi").unpack_from
#: The last 6 bytes of a chunk that ends with ReadyForQuery -> the transaction status it reports.
_ENDINGS = {b"Z\0\0\0\x05" + s.encode(): s for s in "ITE"}
_READY = Phase.READY

_fastpath: Any
try:
    from . import _fastpath
except ImportError:  # the pure-Python build: uvloop reads every socket
    _fastpath = None
if os.environ.get("BOREALIS_FASTPATH", "1") == "0":
    _fastpath = None  # the C data path, only when it was built and is not turned off
_SERVER_COUNTERS: Any = None
if _fastpath is not None:
    # The same pre-filter and frame table as the Python fast paths (the shapes dict is shared, not copied).
    _fastpath.configure(UNPINNED_SHAPES, SHAPE_DIGITS, _QUERY_TABLE)
    _SERVER_COUNTERS = _fastpath.Counters()  # (a server link counts nothing: its client's link does)


def new_lane(counters: Any, on_return: Callable[[Any], None]) -> Any:
    """A pool's queue in the C data path (``_fastpath.Lane``, closed until the pool is a route), or None without
    it."""
    if _fastpath is None or counters is None:
        return None
    lane = _fastpath.Lane(counters, on_return)
    lane.open = 0
    return lane


def fastpath_counters() -> Any:
    """A new counter set for one proxy's C data path, or None when it is not there."""
    return _fastpath.Counters() if _fastpath is not None else None


def start_link(transport: Any, protocol: Any, server: bool, counters: Any) -> Any:
    """Read ``transport``'s socket through the C data path from now on: the Link, or None without it.

    Only for plaintext sockets (a TLS transport's socket carries records, not messages). The transport keeps
    writing (the Link writes straight to the socket only while the transport buffers nothing).
    """
    if _fastpath is None or counters is None or transport is None or transport.is_closing():
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        link = _fastpath.Link(sock.fileno(), protocol, transport, server, counters)
    except OSError:  # out of descriptors (the dup): uvloop keeps reading, as without the C path
        return None
    try:
        asyncio.get_running_loop().add_reader(link.fileno(), link)
    except (OSError, RuntimeError):
        link.close()
        return None
    transport.pause_reading()
    return link


def stop_link(link: Any) -> None:
    """Stop reading through ``link`` (a Query it forwarded is handed back first) and close its descriptor."""
    fd = link.fileno()
    if fd >= 0:
        asyncio.get_running_loop().remove_reader(fd)
    link.close()


def close_after_read(transport: Any, err: int) -> None:
    """A Link read EOF (``err`` 0) or failed with ``err``: close the transport as uvloop would have."""
    if transport is not None:
        if err:
            transport.abort()
        else:
            transport.close()


def link_reading(link: Any, on: bool) -> None:
    """Pause or resume reading through ``link`` (back-pressure)."""
    fd = link.fileno()
    if fd < 0:
        return
    loop = asyncio.get_running_loop()
    if on:
        loop.add_reader(fd, link)
    else:
        loop.remove_reader(fd)


#: SQLSTATEs of a server that is going away or not yet up (admin/crash shutdown, "starting up").
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03"})


class ServerError(Exception):
    """The server refused us (login or a private query failed): carries its SQLSTATE and message.

    ``transient`` says whether waiting may help: the target is down, restarting or being replaced
    (connection failures, SQLSTATE class 08, shutdown and start-up states), as opposed to a refusal such as a
    wrong password, which would only repeat.
    """

    def __init__(self, message: str, sqlstate: str = "08006", *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.transient = sqlstate.startswith("08") or sqlstate in _TRANSIENT_STATES if transient is None else transient


def query_frame(sql: str) -> bytes:
    """A simple-protocol Query message (text the client sent as bytes that are not UTF-8 goes back as it came)."""
    return pgwire.encode(pgwire.Query(sql))


class _Private:
    __slots__ = ("error", "future", "remaining", "value")

    def __init__(self, future: asyncio.Future[None], syncs: int) -> None:
        self.future = future
        self.remaining = syncs
        self.error: pgwire.ErrorResponse | None = None
        self.value: bytes | None = None


class _Session(Session):
    """The server connection's session, with the fast path's extra steps."""

    __slots__ = ("_spare",)

    def __init__(self, phase: Phase) -> None:
        super().__init__(phase)
        #: The segment answered() finished last, for query() to use again: one allocation fewer per Query.
        self._spare: Any = None

    def query(self) -> None:
        """As :meth:`Session.query`; when no segment is pending, with the segment the last answer finished."""
        spare = self._spare
        segs = self._segments
        if spare is not None and not segs and self.phase is _READY and not self.skipping:
            self._spare = None
            spare.kind = _Q
            spare.remaining = 0
            segs.append(spare)
            return
        super().query()

    def answered(self, data: bytes, end: int, status: str) -> bool:
        """``data`` may be a whole response to the only sync point outstanding, with its ReadyForQuery (of
        ``status``) at ``end``: skim the frames before it (type and length only); True if they fit the rules.

        Completions that only extended messages have (ParseComplete, ...) may not outnumber the extended
        messages sent; with RowDescription, CommandComplete and EmptyQueryResponse they must cover them.
        False leaves the state as it was, for the general path to look at frame by frame (and to raise if the
        server broke the rules). One call does it all: this runs for nearly every answer the proxy forwards.
        """
        segs = self._segments
        if len(segs) != 1 or self.phase is not _READY or self.skipping or self.copy_in or self.copy_out:
            return False
        seg = segs[0]
        if not seg.kind:
            return False
        head = _unpack_head
        remaining = seg.remaining
        pos = 0
        if not remaining:
            # No extended message before the sync point (a simple Query, the usual case): nothing to count,
            # every frame must pass or belong to a Query's statements. The leanest loop: one call per frame.
            table = _QUERY_TABLE
            while pos < end:
                t, length = head(data, pos)
                if not table[t] or length < 4:
                    return False
                pos += 1 + length
            if pos != end:
                return False
        else:
            table = _FAST_TABLE
            strict = completions = 0
            while pos < end:
                t, length = head(data, pos)
                kind = table[t]
                if not kind or length < 4:
                    return False
                pos += 1 + length
                if kind > 1:
                    completions += 1
                    if kind == 2:
                        strict += 1
            if pos != end or strict > remaining or completions < remaining:
                return False
        self._spare = segs.popleft()
        self.transaction_status = status
        return True


class ServerConn(asyncio.Protocol):
    """One connection to PostgreSQL, owned by a pool, lent to one client at a time."""

    def __init__(self, on_lost: Callable[[ServerConn], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader.for_server()
        self.session = _Session(Phase.READY)
        self.owner: ClientConn | None = None
        self.backend_key: tuple[int, bytes] | None = None
        #: Server-side names of the statements prepared on this connection, least recently used first.
        self.prepared: dict[str, None] = {}
        #: Statements whose Parse went out for a client and is not answered yet: [sync points before it, name].
        #: A Parse the server skipped (after an error before the next Sync) made nothing: forgotten then.
        self.parsing: list[list[Any]] = []
        #: Parameter values SET on this connection (lower-case names): exactly what its last client asked for.
        self.applied: dict[str, str] = {}
        self.closed = False
        self.pool: Any = None
        self.idle_since = 0.0
        self.sent_at = 0.0
        self._on_lost = on_lost
        self._private: _Private | None = None
        self._login: asyncio.Queue[tuple[int, bytes]] | None = asyncio.Queue()
        self._connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: The reader holds part of a message (or failed): the next chunk takes the general path. Kept here
        #: because the fast path asks for every chunk, and ``reader.buffered`` is a computed property.
        self._partial = False
        #: The C data path's reader of this socket, from login on (None without it).
        self.link: Any = None

    # -------------------------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._unlink()
        self.closed = True
        if self._private is not None and not self._private.future.done():
            self._private.future.set_exception(ServerError("server connection lost"))
        if self._login is not None:
            self._login.put_nowait((-1, b""))
        owner = self.owner
        if owner is not None:
            owner.server_lost(self)
        self._on_lost(self)

    def pause_reading(self) -> None:
        """The client reads slower than this server answers: stop reading this server."""
        if self.link is not None:
            link_reading(self.link, False)
        elif self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.link is not None:
            link_reading(self.link, True)
        elif self.transport is not None:
            self.transport.resume_reading()

    def _unlink(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            stop_link(link)

    def _link_settle(self, sent_at: float) -> None:
        """The C path forwarded a Query that is still unanswered: record it as :meth:`ClientConn._send_query`
        would have (the Link calls this before anything else of the pair reaches Python)."""
        self.session.query()
        self.sent_at = sent_at

    def _link_closed(self, err: int) -> None:
        self._unlink()
        close_after_read(self.transport, err)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.pause_reading()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            owner = self.owner
            # Not while a Parse awaits its answer: the general path sees which statements were made.
            if owner is not None and not self._partial and self._private is None and self._login is None:
                status = _ENDINGS.get(data[-6:])
                if status is not None and not self.parsing and self.session.answered(data, len(data) - 6, status):
                    sent_at = self.sent_at
                    if sent_at:
                        # As _note_response(), inline: this runs for nearly every answer.
                        stats = self.pool.stats
                        stats.response_latency_us_sum += (_monotonic() - sent_at) * 1e6
                        stats.response_count += 1
                        self.sent_at = 0.0
                    owner.answered(self, data)
                    return
            reader = self.reader
            clean = not self._partial
            self._partial = True  # until the reader has taken the chunk without an error
            reader.feed(data)
            frames = reader.read_frames()
            self._partial = reader.buffered != 0
            self._frames(frames, data, clean)
            reader.check()  # a malformed message behind the good ones: answered now, not with the next bytes
        except ProtocolViolation as exc:
            self._partial = True
            log.warning("server sent bad protocol data: %s", exc)
            if self.owner is not None:
                self.owner.fail(exc.error_response())
            self.close()

    def _note_response(self) -> None:
        # QueryDatabaseResponseLatency: from forwarding a request to the first bytes of its answer.
        stats = self.pool.stats
        stats.response_latency_us_sum += (_monotonic() - self.sent_at) * 1e6
        stats.response_count += 1
        self.sent_at = 0.0

    def _frames(self, frames: list[pgwire.Frame], data: bytes, clean: bool) -> None:
        """Handle the frames of one read (``data``; ``clean``: the reader held nothing before it)."""
        reader = self.reader
        if self._login is not None:
            for t, frame in frames:
                self._login.put_nowait((t, bytes(frame)))
            return
        if self._private is not None:
            self._private_frames(frames)
            return
        owner = self.owner
        session = self.session
        backend = session.backend
        parsing = self.parsing
        for t, frame in frames:
            if t != _D and t != _d:
                backend(t, frame)
                if t == _S and owner is not None:
                    owner.parameter_changed(frame)
                elif parsing:
                    if t == _PARSED:
                        parsing.pop(0)
                    elif t == _Z:
                        self._sync_answered()
        if owner is None:
            self._unowned(frames)
            return
        if self.sent_at:
            self._note_response()
        if clean and reader.buffered == 0:
            owner.write(data)
        elif frames:
            owner.write(b"".join(frames_bytes(frames)))
        if session.phase is not Phase.READY:
            self.close()
            return
        if reader.buffered == 0 and session.at_boundary:
            owner.server_at_boundary(self)

    def _sync_answered(self) -> None:
        # Parses before this sync point with no ParseComplete were skipped after an error: no statement.
        keep: list[list[Any]] = []
        for entry in self.parsing:
            if entry[0] == 0:
                self.prepared.pop(entry[1], None)
            else:
                entry[0] -= 1
                keep.append(entry)
        self.parsing = keep

    # -------------------------------------------------------------------------------- private talk

    def _private_frames(self, frames: list[pgwire.Frame]) -> None:
        priv = self._private
        assert priv is not None
        session = self.session
        for t, frame in frames:
            if t == _D:
                if priv.value is None:
                    row = pgwire.decode_backend(t, frame[5:])
                    assert isinstance(row, pgwire.DataRow)
                    priv.value = row.values[0] if row.values else None
                continue
            session.backend(t, frame)
            if t == _E and priv.error is None:
                err = pgwire.decode_backend(t, frame[5:])
                assert isinstance(err, pgwire.ErrorResponse)
                priv.error = err
            elif t == _Z:
                priv.remaining -= 1
                if priv.remaining == 0:
                    self._private = None
                    if not priv.future.done():
                        priv.future.set_result(None)
                    return
        if session.phase is not Phase.READY:
            self.close()

    async def private(self, frames: list[bytes], *, check: bool = True) -> bytes | None:
        """Send ``frames`` (each sync point answered by one ReadyForQuery), consume every answer.

        Returns the first column of the first DataRow, if any. With ``check``, an ErrorResponse raises
        :class:`ServerError`. Only call this when the session is at a boundary.
        """
        if self.closed or self.transport is None:
            raise ServerError("server connection closed")
        syncs = 0
        for f in frames:
            self.session.frontend(f[0], f)
            if f[0] in b"QSF":
                syncs += 1
        loop = asyncio.get_running_loop()
        priv = _Private(loop.create_future(), syncs)
        self._private = priv
        self.transport.write(b"".join(frames))
        await priv.future
        if check and priv.error is not None:
            raise ServerError(priv.error.message, priv.error.sqlstate)
        return priv.value

    def _unowned(self, frames: list[pgwire.Frame]) -> None:
        # Idle in the pool: only asynchronous messages may come. A FATAL (admin shutdown) ends it.
        if self.session.phase is not Phase.READY:
            self.close()

    # -------------------------------------------------------------------------------- life cycle

    async def login(self, user: str, password: str | None, params: dict[str, str]) -> None:
        """Send the startup packet and authenticate; raise :class:`ServerError` on refusal."""
        assert self.transport is not None and self._login is not None
        # The client's parameters as it sent them: decoded with surrogateescape, encoded back the same way.
        self.transport.write(pgwire.encode(pgwire.StartupMessage({"user": user, **params})))
        scram: Any = None
        queue = self._login
        while True:
            t, frame = await queue.get()
            if t == -1:
                raise ServerError("the server closed the connection during login")
            msg = pgwire.decode_backend(t, frame[5:])
            if isinstance(msg, pgwire.ErrorResponse):
                raise ServerError(msg.message, msg.sqlstate)
            if isinstance(msg, pgwire.AuthenticationOk):
                continue
            if isinstance(msg, pgwire.AuthenticationCleartextPassword | pgwire.AuthenticationMD5Password):
                if password is None:
                    raise ServerError("the server asked for a password and none is known", "28P01")
                answer = (
                    password
                    if isinstance(msg, pgwire.AuthenticationCleartextPassword)
                    else (md5_response(user, password, msg.salt))
                )
                self.transport.write(pgwire.encode(pgwire.PasswordMessage(answer)))
            elif isinstance(msg, pgwire.AuthenticationSASL):
                if password is None or "SCRAM-SHA-256" not in msg.mechanisms:
                    raise ServerError("the server asked for an unsupported SASL mechanism", "28000")
                scram = scram_client(user, password)
                first = scram.get_client_first().encode()
                self.transport.write(pgwire.encode(pgwire.SASLInitialResponse("SCRAM-SHA-256", first)))
            elif isinstance(msg, pgwire.AuthenticationSASLContinue):
                scram.set_server_first(msg.data.decode())
                self.transport.write(pgwire.encode(pgwire.SASLResponse(scram.get_client_final().encode())))
            elif isinstance(msg, pgwire.AuthenticationSASLFinal):
                scram.set_server_final(msg.data.decode())
            elif isinstance(msg, pgwire.ParameterStatus):
                self.session.parameters[msg.name] = msg.value
            elif isinstance(msg, pgwire.BackendKeyData):
                self.backend_key = (msg.process_id, msg.secret_key)
            elif isinstance(msg, pgwire.ReadyForQuery):
                self._login = None
                if not self.closed:
                    self.link = start_link(self.transport, self, True, _SERVER_COUNTERS)
                return
            elif isinstance(msg, pgwire.NoticeResponse | pgwire.NegotiateProtocolVersion):
                continue
            else:
                raise ServerError(f"unexpected message during login: {type(msg).__name__}")

    def write(self, data: bytes) -> None:
        """Send bytes from the owning client."""
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        """Close the connection (a Terminate first, as a polite client does)."""
        self._unlink()
        if self.transport is not None and not self.closed:
            self.closed = True
            try:
                self.transport.write(b"X\0\0\0\x04")
            finally:
                self.transport.close()


def frames_bytes(frames: list[pgwire.Frame]) -> list[memoryview]:
    """The views of frames, for joining."""
    return [f for _, f in frames]


async def connect_server(
    host: str,
    port: int,
    user: str,
    password: str | None,
    params: dict[str, str],
    on_lost: Callable[[ServerConn], None],
    timeout: float = 10.0,
    *,
    unix_path: str | None = None,
) -> ServerConn:
    """Open and log in one server connection: over TCP, or over the unix socket at ``unix_path``."""
    loop = asyncio.get_running_loop()

    async def go() -> ServerConn:
        if unix_path is not None:
            _, conn = await loop.create_unix_connection(lambda: ServerConn(on_lost), unix_path)
        else:
            _, conn = await loop.create_connection(lambda: ServerConn(on_lost), host, port)
        try:
            await conn.login(user, password, params)
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return await asyncio.wait_for(go(), timeout)
    except (OSError, TimeoutError) as exc:
        where = f"{host}:{port}" if unix_path is None else f"{host}:{port} (unix socket)"
        raise ServerError(f"cannot connect to the database at {where}: {exc}") from None


async def tcp_login(host: str, port: int, user: str, password: str, dbname: str, timeout: float) -> None:
    """Log in over TCP and out (what a :class:`~borealis.engine.Verifier` asks); ServerError if refused."""
    conn = await connect_server(host, port, user, password, {"database": dbname}, lambda _: None, timeout)
    conn.close()
