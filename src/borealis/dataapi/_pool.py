"""Warm PostgreSQL connections for the Data API: one small pool per (cluster, user, password, database).

psycopg (libpq) opens each connection (SCRAM, startup options, libpq's error texts); the socket is then
handed to a long-lived asyncio protocol that reads frames with :class:`borealis.pgwire.FrameReader`.  A
statement is Parse, Bind, Describe, Execute and Sync in one write (what ``PQsendQueryParams`` sends), with
the type OID and format of every parameter given by the caller (so a string is ``text`` as on AWS, never
inferred) and every result column in text format, which is what the Data API decoders take.  Compared with
libpq's wait loop this saves registering and unregistering a reader on the event loop for every query.
The session settings the decoders rely on are startup options, so a new connection costs no extra round
trip.  Outside transactions a statement is kept prepared on each connection (:meth:`PgConnection.prepared`,
up to ``statement_cache`` per connection, as asyncpg and pgJDBC do), which halves PostgreSQL's own work on
a short query: parse, analysis and planning happen once.

The pool follows asyncpg's: holders in a LIFO idle list (the warmest connection serves next), a bound on
the number open, waiters served in order, monotonic timestamps for idle reaping.  The password is part of
the key, so a changed or wrong secret never reuses a connection opened with another password.  A pool is
tied to one postgres server object: when the writer restarts, the pool's connections are dropped.

Pooled connections go over the server's unix socket when it has one (a send there costs about a third of
one on loopback TCP).  pg_hba.conf trusts that socket, so the socket alone would let any password in: the
:class:`Verifier` first logs in over TCP with SCRAM, as any client would, and only a password PostgreSQL
itself accepted for that user on that server lets connections be opened over the socket, for a short time
(``verify_ttl``) after which the next new connection logs in over TCP again.  A failed login forgets the
user's verified password; a newly verified one replaces it (a role has one password).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg

from borealis.engine import Verifier
from borealis.pgwire import DEFAULT_MAX_MESSAGE, PROGRAM_LIMIT_EXCEEDED, FrameReader

__all__ = [
    "COMMAND_OK",
    "EMPTY_QUERY",
    "FATAL_ERROR",
    "TUPLES_OK",
    "PgConnection",
    "PgError",
    "Pool",
    "PoolKey",
    "Result",
    "Verifier",
    "scram_login",
]

PoolKey = tuple[str, str, str, str]  # cluster id, user, password, database

# What the decoders in _results.py assume; sent as startup options (no round trip).
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=1"
)

# The SQLSTATEs of the errors a server sends during startup, by their fixed message text.
_STARTUP_ERRORS = (
    ("password authentication failed", "28P01"),
    ("no password supplied", "28P01"),
    ('role "', "28000"),
    ('database "', "3D000"),
    ("too many clients", "53300"),
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
)


class PgError(Exception):
    """An ErrorResponse from PostgreSQL (or libpq's own failure), with the fields AWS's message uses."""

    def __init__(
        self,
        message: str,
        sqlstate: str = "",
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        where: str | None = None,
        connection_lost: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.severity = severity
        self.detail = detail
        self.hint = hint
        self.position = position
        self.where = where
        self.connection_lost = connection_lost

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> PgError:
        """An ErrorResponse's fields (by their one-letter codes) as a PgError."""
        position = fields.get("P")
        return cls(
            fields.get("M") or "unknown error",
            fields.get("C", ""),
            severity=fields.get("V") or fields.get("S") or "ERROR",
            detail=fields.get("D"),
            hint=fields.get("H"),
            position=int(position) if position and position.isdigit() else None,
            where=fields.get("W"),
        )

    @classmethod
    def from_result(cls, res: Result) -> PgError:
        """The error of a FATAL_ERROR result."""
        return res.error or cls("unknown error", "XX000")

    @classmethod
    def from_psycopg(cls, exc: psycopg.Error) -> PgError:
        """A psycopg exception (a failed connect, a lost connection) as a PgError."""
        diag = exc.diag
        primary = diag.message_primary
        if primary is None:
            # libpq's own text, e.g. 'connection to server at "127.0.0.1", port 5 failed: FATAL:  ...'
            text = str(exc).strip()
            marker = text.rfind("FATAL:  ")
            primary = text[marker + 8 :].strip() if marker >= 0 else text
        sqlstate = diag.sqlstate
        if sqlstate is None:
            # libpq does not pass on the SQLSTATE of a failed startup; the server's messages are fixed.
            sqlstate = next((code for text, code in _STARTUP_ERRORS if text in primary), "08006")
        return cls(
            primary,
            sqlstate,
            detail=diag.message_detail,
            hint=diag.message_hint,
            connection_lost=diag.sqlstate is None,
        )


class Result:
    """One statement's outcome, read off the wire: status, columns, text rows, command tag or error.

    Mirrors the few ``PGresult`` accessors the executor uses, so the decoders take the same values.
    """

    __slots__ = ("command_status", "error", "fields", "rows", "shape", "status", "truncated")

    def __init__(
        self, status: int, fields: list[tuple[bytes, int, int, int, int]] | None = None, shape: bytes = b""
    ) -> None:
        self.status = status
        # (name, table oid, column number, type oid, type modifier); shared by results of one shape: read only
        self.fields = fields or []
        self.shape = shape  # the RowDescription as sent: equal shapes have equal fields
        self.rows: list[list[bytes | None]] = []
        self.command_status: bytes | None = None
        self.error: PgError | None = None
        # Rows past the statement's byte cap were dropped (see PgConnection.execute): too large to return.
        self.truncated = False

    @property
    def nfields(self) -> int:
        return len(self.fields)

    @property
    def ntuples(self) -> int:
        return len(self.rows)

    def fname(self, i: int) -> bytes:
        return self.fields[i][0]

    def ftable(self, i: int) -> int:
        return self.fields[i][1]

    def ftablecol(self, i: int) -> int:
        return self.fields[i][2]

    def ftype(self, i: int) -> int:
        return self.fields[i][3]

    def fmod(self, i: int) -> int:
        return self.fields[i][4]

    def get_value(self, row: int, column: int) -> bytes | None:
        return self.rows[row][column]

    @property
    def command_tuples(self) -> int | None:
        """The row count of the command tag (``INSERT 0 3`` -> 3), None when the tag has none."""
        tag = self.command_status
        if not tag:
            return None
        last = tag.rpartition(b" ")[2]
        return int(last) if last.isdigit() else None


# Result statuses (the values of libpq's ExecStatusType, for readable logs).
EMPTY_QUERY = 0
COMMAND_OK = 1
TUPLES_OK = 2
COPY_OUT = 3
COPY_IN = 4
FATAL_ERROR = 7
COPY_BOTH = 8

log = logging.getLogger("borealis.dataapi")

_u16 = struct.Struct("!H").unpack_from
_i16 = struct.Struct("!h").unpack_from
_i32 = struct.Struct("!i").unpack_from
_field = struct.Struct("!IhIhih").unpack_from
# Describe (portal ""), Execute (portal "", no row limit), Sync: the same bytes after every Bind.
_EXECUTE_SYNC = b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"
_TAIL = b"D\x00\x00\x00\x06P\x00" + _EXECUTE_SYNC
_TERMINATE = b"X\x00\x00\x00\x04"


def extended_query(
    sql: bytes,
    values: Sequence[bytes | None] | None,
    oids: Sequence[int] | None,
    formats: Sequence[int] | None,
    name: bytes = b"",
) -> bytes:
    """Parse, Bind, Describe, Execute and Sync (statement ``name``, unnamed by default): one write, one round trip.

    What libpq's ``PQsendQueryParams`` sends; every result column comes back in text format.
    """
    noids = len(oids) if oids else 0
    parse_body = name + b"\x00" + sql + b"\x00" + struct.pack(f"!H{noids}I", noids, *(oids or ()))
    return b"".join((b"P", struct.pack("!i", len(parse_body) + 4), parse_body, bind_execute(name, values, formats)))


def bind_execute(
    name: bytes, values: Sequence[bytes | None] | None, formats: Sequence[int] | None, describe: bool = True
) -> bytes:
    """Bind the prepared statement ``name`` to the unnamed portal, then Describe (unless told not to), Execute
    and Sync."""
    nvalues = len(values) if values else 0
    nformats = len(formats) if formats else 0
    bind = [
        b"\x00",
        name,
        b"\x00",
        struct.pack(f"!H{nformats}H", nformats, *(formats or ())),
        struct.pack("!H", nvalues),
    ]
    if values:
        for value in values:
            if value is None:
                bind.append(b"\xff\xff\xff\xff")
            else:
                bind.append(struct.pack("!i", len(value)))
                bind.append(value)
    bind.append(b"\x00\x00")  # no result formats: all text
    bind_body = b"".join(bind)
    return b"".join((b"B", struct.pack("!i", len(bind_body) + 4), bind_body, _TAIL if describe else _EXECUTE_SYNC))


def _simple_query(sql: bytes) -> bytes:
    return b"Q" + struct.pack("!i", len(sql) + 5) + sql + b"\x00"


# DISCARD ALL but DEALLOCATE ALL and DISCARD PLANS (see PgConnection.cleanup), one simple query.
_RESET_SESSION = _simple_query(
    b"CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all();"
    b" DISCARD TEMP; DISCARD SEQUENCES"
)
_DISCARD_ALL = _simple_query(b"DISCARD ALL")


def _close_statement(name: bytes) -> bytes:
    return b"C" + struct.pack("!i", len(name) + 6) + b"S" + name + b"\x00"


# The errors of a cached statement that went away or went stale; both come before the statement runs, so
# preparing it again and re-sending is safe (outside a transaction block).
_STALE = (("0A000", "cached plan must not change result type"), ("26000", "prepared statement"))


def _error_fields(body: memoryview) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = bytes(body)
    pos = 0
    while pos < len(raw) and raw[pos]:
        end = raw.index(b"\x00", pos + 1)
        out[chr(raw[pos])] = raw[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return out


def _is_stale(err: PgError, name: bytes) -> bool:
    """The error says the cached statement ``name`` is stale or gone (not an error of the statement's own)."""
    if err.sqlstate == "0A000":
        return err.message == _STALE[0][1]
    return err.sqlstate == "26000" and f'"{name.decode()}"' in err.message


def _row_description(raw: bytes) -> list[tuple[bytes, int, int, int, int]]:
    count = _u16(raw, 5)[0]
    pos = 7
    fields = []
    for _ in range(count):
        end = raw.index(0, pos)
        table, column, oid, _size, mod, _fmt = _field(raw, end + 1)
        fields.append((raw[pos:end], table, column, oid, mod))
        pos = end + 19
    return fields


_UNKNOWN: Any = object()  # a statement whose results were not seen yet (see PgConnection.described)


class _Expired(Exception):
    """A statement's time limit passed (set on its waiter by the timer)."""


class _Waiter(Protocol):
    """What waits for a statement's results: an asyncio future, or a :class:`_Notify`."""

    def done(self) -> bool: ...

    def set_result(self, results: list[Result], /) -> None: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


Settled = Callable[[list[Result] | None, BaseException | None], None]
"""Called once with (results, None) or (None, the error): see :meth:`PgConnection.send_cached`."""


class _Notify:
    """A waiter that calls its function at once when settled, where a future would schedule a callback.

    Its time limit is kept by :class:`Deadlines` (one sweep for a pool), not by a timer of its own.
    """

    __slots__ = ("_done", "deadline", "deadlines", "fn")

    def __init__(self, fn: Settled, deadline: float, deadlines: Deadlines) -> None:
        self.fn = fn
        self.deadline = deadline
        self.deadlines = deadlines
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, results: list[Result]) -> None:
        self._settle(results, None)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(None, exc)

    def _settle(self, results: list[Result] | None, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self.deadlines.active.discard(self)
        try:
            self.fn(results, exc)
        except Exception:  # called from the protocol's data_received: never raise into the reader
            log.exception("a statement's result callback failed")


class Deadlines:
    """The time limits of a pool's :class:`_Notify` waiters in flight, checked by one sweep every ``period``.

    A timer per statement (``call_later`` and its cancel) costs more than the rest of sending it; a
    limit of tens of seconds does not need more precision than this.  The sweep runs only while
    statements are in flight.
    """

    period = 0.05

    def __init__(self) -> None:
        self.active: set[_Notify] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, waiter: _Notify, loop: asyncio.AbstractEventLoop) -> None:
        self.active.add(waiter)
        if self._timer is None:
            self._timer = loop.call_later(self.period, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for waiter in [w for w in self.active if w.deadline <= now]:
            waiter.set_exception(TimeoutError())
        if self.active:
            self._timer = loop.call_later(self.period, self._sweep, loop)


def _expire(waiter: _Waiter) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class _Protocol(asyncio.Protocol):
    """The long-lived reader of one server connection: frames in, results out when ReadyForQuery comes."""

    def __init__(self, max_frame: int = DEFAULT_MAX_MESSAGE) -> None:
        # A longer message is refused as its header arrives, before any of it is buffered (see _violation).
        self.reader = FrameReader.for_server(max_message_size=max_frame)
        self.transport: asyncio.Transport | None = None
        self.waiter: _Waiter | None = None
        self.results: list[Result] = []
        self.current: Result | None = None
        self.tx_status = b"I"
        self.lost: PgError | None = None
        self.parsed = False  # a ParseComplete came (a named statement now exists on the server)
        # The bytes of row data the running statement may keep (0: no cap), and how many it has kept; past
        # the cap rows are dropped as they come and on_overflow runs once (it cancels the statement).
        self.cap = 0
        self.kept = 0
        self.on_overflow: Callable[[], None] | None = None
        # Session state may have changed (a ParameterStatus came, or the caller said so): reset before reuse.
        self.dirty = False
        # standard_conforming_strings as the server last reported it: the placeholder lexer must follow it.
        self.standard_strings = True
        self.shapes: dict[bytes, tuple[bytes, list[tuple[bytes, int, int, int, int]]]] = {}
        self.loop = asyncio.get_running_loop()  # protocols are made by create_connection, on the loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = PgError("server closed the connection unexpectedly", "08006", connection_lost=True)
        self._fail(self.lost)

    def _fail(self, err: PgError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def _violation(self, exc: Exception) -> None:
        """The server's bytes broke the reader's rules: fail the statement and drop the connection.

        A row longer than the reader's limit, which no response may hold, answers as a result past its cap
        (the caller reports the response-size error); the rest of the row cannot be skipped, so the
        connection goes (and PostgreSQL ends the statement when it finds the socket closed).
        """
        current, waiter = self.current, self.waiter
        if getattr(exc, "sqlstate", "") == PROGRAM_LIMIT_EXCEEDED and current is not None and waiter is not None:
            current.truncated = True
            results, self.results = [*self.results, current], []
            self.current = self.waiter = None
            self.lost = PgError("a row longer than any response may hold", "54000", connection_lost=True)
            if not waiter.done():
                waiter.set_result(results)
        else:
            self.lost = PgError(f"protocol error from the server: {exc}", "08P01", connection_lost=True)
            self._fail(self.lost)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            frames = reader.read_frames()
        except Exception as exc:
            self._violation(exc)
            return
        for t, frame in frames:
            if t == 68:  # D DataRow
                current = self.current
                if current is None or current.truncated:
                    continue
                count = _u16(frame, 5)[0]
                pos = 7
                size = 0
                row: list[bytes | None] = []
                for _ in range(count):
                    n = _i32(frame, pos)[0]
                    pos += 4
                    if n < 0:
                        row.append(None)
                    else:
                        row.append(frame[pos : pos + n].tobytes())
                        pos += n
                        size += n
                current.rows.append(row)
                if self.cap:
                    self.kept += size
                    if self.kept > self.cap:
                        # Keep the row that crossed the cap (the caller's limit check stops there too).
                        current.truncated = True
                        if self.on_overflow is not None:
                            self.on_overflow()
            elif t == 84:  # T RowDescription: a statement's is the same every time, so parse it once
                raw = frame.tobytes()
                known = self.shapes.get(raw)
                if known is None:
                    if len(self.shapes) >= 256:
                        self.shapes.clear()
                    known = self.shapes[raw] = (raw, _row_description(raw))
                self.current = Result(TUPLES_OK, known[1], known[0])
            elif t == 67:  # C CommandComplete
                result = self.current or Result(COMMAND_OK)
                result.command_status = frame[5:-1].tobytes()
                self.results.append(result)
                self.current = None
            elif t == 90:  # Z ReadyForQuery
                self.tx_status = frame[5:6].tobytes()
                self.kept = 0
                results, self.results = self.results, []
                self.current = None
                waiter, self.waiter = self.waiter, None
                if waiter is not None and not waiter.done():
                    waiter.set_result(results)
            elif t == 69:  # E ErrorResponse
                if self.waiter is None:
                    continue  # e.g. FATAL before the server closes an idle connection: connection_lost follows
                if self.current is not None and self.current.truncated:
                    # Most likely our own cancel (57014); the call fails for the result's size either way.
                    self.results.append(self.current)
                    self.current = None
                    continue
                result = Result(FATAL_ERROR)
                result.error = PgError.from_fields(_error_fields(frame[5:]))
                self.results.append(result)
                self.current = None
            elif t == 49:  # 1 ParseComplete
                self.parsed = True
            elif t == 83:  # S ParameterStatus: a reported setting changed (SET, set_config, SET ROLE, ...)
                self.dirty = True
                if frame[5:33].tobytes() == b"standard_conforming_strings\x00":
                    self.standard_strings = frame[33:-1].tobytes() != b"off"
            elif t == 73:  # I EmptyQueryResponse
                self.results.append(Result(EMPTY_QUERY))
                self.current = None
            elif t in (71, 72, 87):  # G/H/W: COPY, which the Data API cannot serve; the connection is dropped
                self.results.append(Result({71: COPY_IN, 72: COPY_OUT}.get(t, COPY_BOTH)))
                self.lost = PgError("the connection was left in COPY mode", "08006", connection_lost=True)
                waiter, self.waiter = self.waiter, None
                results, self.results = self.results, []
                if waiter is not None and not waiter.done():
                    waiter.set_result(results)
                if self.transport is not None:
                    self.transport.abort()
                return
            # ParseComplete, BindComplete, NoData, ParameterStatus, NoticeResponse, ...: nothing to do.
        try:
            reader.check()  # a bad header behind these frames (a huge row): now, not when more bytes come
        except Exception as exc:
            self._violation(exc)


class PgConnection:
    """One server connection: send a statement with typed parameters, get its results back.

    psycopg (libpq) opens and authenticates the connection; from then on the socket belongs to a
    long-lived asyncio protocol reading frames with :class:`borealis.pgwire.FrameReader`, so a statement
    costs one write and the reads it needs, with no per-query reader registration.
    """

    __slots__ = (
        "_closes",
        "_names",
        "backend_pid",
        "cancelling",
        "conn",
        "described",
        "full_reset",
        "idle_since",
        "proto",
        "statement_cache",
        "statements",
    )

    def __init__(self, conn: psycopg.AsyncConnection[Any], proto: _Protocol) -> None:
        self.conn = conn
        self.proto = proto
        self.backend_pid = conn.pgconn.backend_pid
        # The CancelRequest sent when a result outgrew its cap: the connection serves no one until it is done,
        # so a late cancel never hits the next caller's statement.
        self.cancelling: asyncio.Future[None] | None = None
        self.full_reset = False  # the next reset must be DISCARD ALL (see cleanup)
        proto.on_overflow = self._overflowed
        # A role or database may default to standard_conforming_strings = off (reported at login).
        proto.standard_strings = conn.pgconn.parameter_status(b"standard_conforming_strings") != b"off"
        self.idle_since = time.monotonic()
        # Named server-side statements, by (SQL, parameter types), least recently used first; see prepared().
        self.statement_cache = 0
        self.statements: collections.OrderedDict[tuple[bytes, tuple[int, ...]], bytes] = collections.OrderedDict()
        self._names = 0
        self._closes: list[bytes] = []  # Close messages for evicted statements, sent with the next statement
        # What a cached statement's results look like (RowDescription bytes and fields; None: no rows), learnt
        # from its first run: later runs skip Describe.  PostgreSQL refuses to run a statement whose result
        # type changed ("cached plan must not change result type"), which makes it stale: prepared again.
        self.described: dict[bytes, tuple[bytes, list[tuple[bytes, int, int, int, int]]] | None] = {}

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        user: str,
        password: str,
        dbname: str,
        timeout: float,
        *,
        unix_dir: str | None = None,
        max_frame: int = DEFAULT_MAX_MESSAGE,
    ) -> PgConnection:
        """Open and authenticate; raises :class:`PgError` with the server's message on failure.

        With ``unix_dir`` the connection goes over the server's unix socket in that directory, where the
        server does not ask for the password: only for credentials a :class:`Verifier` has just accepted.
        A message from the server longer than ``max_frame`` bytes fails its statement (see
        ``_Protocol._violation``) and closes the connection.
        """
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=unix_dir or host,
                port=port,
                user=user,
                password=password,
                dbname=dbname,
                autocommit=True,
                connect_timeout=max(1, int(timeout)),
                options=SESSION_OPTIONS,
                application_name="borealis-data-api",
                sslmode="disable",
                gssencmode="disable",
            )
        except psycopg.Error as exc:
            raise PgError.from_psycopg(exc) from None
        try:
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(lambda: _Protocol(max_frame), sock=sock)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, proto)

    @property
    def ok(self) -> bool:
        """The connection is open and usable."""
        return self.proto.lost is None

    @property
    def in_transaction(self) -> bool:
        """A transaction block is open (or failed) on the server side, or a statement is running."""
        return self.proto.tx_status != b"I" or self.proto.waiter is not None

    @property
    def needs_cleanup(self) -> bool:
        """Before serving another caller, :meth:`cleanup` must run (session state changed, a cancel in flight)."""
        return self.proto.dirty or self.cancelling is not None

    @property
    def standard_strings(self) -> bool:
        """standard_conforming_strings is on in this session (as the server last reported it)."""
        return self.proto.standard_strings

    def mark_dirty(self, full: bool = False) -> None:
        """The caller's statement may change session state: reset the session before the next caller;
        ``full``: the statement may have made SQL-level prepared statements too (see :meth:`cleanup`)."""
        self.proto.dirty = True
        if full:
            self.full_reset = True

    async def cleanup(self) -> None:
        """Wait for a pending cancel, then reset the session if it may have changed.

        The reset brings back what the connection started with (its startup options are the defaults
        ``RESET`` returns to), closes cursors, drops temporary tables, ``LISTEN`` registrations and session
        advisory locks, forgets sequence values, and ends any ``SET ROLE``: what ``DISCARD ALL`` does but
        ``DEALLOCATE ALL``, so the statements cached here survive.  After a statement that may have made
        SQL-level prepared statements, it is ``DISCARD ALL`` itself, and the cache goes with it.  Raises
        PgError (the connection must then be dropped) if the reset fails.
        """
        if self.cancelling is not None:
            with contextlib.suppress(BaseException):
                await self.cancelling
            self.cancelling = None
        if self.proto.dirty:
            full = self.full_reset
            results = await self._send(_DISCARD_ALL if full else _RESET_SESSION, 10)
            if not results or any(r.status == FATAL_ERROR for r in results):
                raise PgError("the session could not be reset", "55000")
            if full:
                self.statements.clear()
                self.described.clear()
                self._closes.clear()
                self.full_reset = False
            self.proto.dirty = False  # the reset's own ParameterStatus messages set it again

    def _overflowed(self) -> None:
        # Cancel the statement whose rows passed the cap, outside a transaction block only: inside one a
        # cancel would abort the caller's transaction, so there the rest is read and dropped.
        if self.proto.tx_status == b"I" and self.cancelling is None:
            self.cancelling = asyncio.ensure_future(self._cancel_request())

    async def _cancel_request(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.cancel_safe(timeout=5)

    @property
    def transaction_failed(self) -> bool:
        """The transaction block is aborted (statements fail until ROLLBACK)."""
        return self.proto.tx_status == b"E"

    async def execute(
        self,
        sql: bytes,
        values: Sequence[bytes | None] | None = None,
        oids: Sequence[int] | None = None,
        formats: Sequence[int] | None = None,
        timeout: float | None = None,
        cap: int = 0,
    ) -> list[Result]:
        """Run one statement (extended protocol, text results); raises PgError if the connection fails.

        With ``cap``, rows past the first ``cap`` bytes of row data are dropped as they arrive and the
        result is marked ``truncated`` (outside a transaction block the statement is also cancelled), so a
        huge result costs no more memory than the caller's limit.

        After ``timeout`` seconds (or cancelled), it cancels the statement on the server and waits for it to
        end, so the connection stays usable, then raises TimeoutError (or CancelledError).  The time limit
        is one timer on the loop, not an ``asyncio.timeout`` context: this is the hot path.
        """
        return await self._send(extended_query(sql, values, oids, formats), timeout, cap=cap)

    async def _send(
        self, message: bytes, timeout: float | None, expect: Result | None = None, cap: int = 0
    ) -> list[Result]:
        proto = self.proto
        if proto.lost is not None:
            raise proto.lost
        if proto.waiter is not None:
            raise PgError("another statement is running on this connection", "55000")
        transport = proto.transport
        assert transport is not None
        loop = proto.loop
        waiter: asyncio.Future[list[Result]] = loop.create_future()
        proto.waiter = waiter
        proto.current = expect  # rows that come without a RowDescription (see _bind_cached)
        proto.cap = cap
        transport.write(message)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # The task was cancelled while waiting: the statement still runs on the server.
            await self._cancel()
            raise
        except _Expired:
            await self._cancel()
            raise TimeoutError from None
        finally:
            if timer is not None:
                timer.cancel()

    async def prepared(
        self,
        sql: bytes,
        values: Sequence[bytes | None] | None = None,
        oids: Sequence[int] | None = None,
        formats: Sequence[int] | None = None,
        timeout: float | None = None,
        cap: int = 0,
    ) -> list[Result]:
        """:meth:`execute` through a named statement kept on the server, parsed and planned once.

        What drivers do (pgJDBC, asyncpg): the first call sends Parse with a fresh name, later ones only
        Bind/Execute.  PostgreSQL re-plans a statement by itself when what it depends on changes (DDL,
        ``search_path``); a statement that went stale (its result type changed) or away (``DEALLOCATE
        ALL``, ``DISCARD ALL``) fails before it runs, and is then prepared afresh and sent again.  Only
        outside a transaction block (where that error would abort the transaction) and with a cache size;
        otherwise this is :meth:`execute`.
        """
        if self.statement_cache <= 0 or self.proto.tx_status != b"I":
            return await self.execute(sql, values, oids, formats, timeout, cap)
        cached = self._bind_cached(sql, values, oids, formats)
        if cached is not None:
            results = await self._send(cached[0], timeout, cached[1], cap)
            if not self.stale(results, sql, oids):
                return results
        key = (sql, tuple(oids) if oids else ())
        self._names += 1
        name = b"_borealis_%d" % self._names
        self.proto.parsed = False
        message = self._take_closes() + extended_query(sql, values, oids, formats, name)
        results = await self._send(message, timeout, cap=cap)
        if self.proto.parsed:
            self.statements[key] = name
            last = results[-1] if results else None
            if last is not None and last.status == TUPLES_OK:
                self.described[name] = (last.shape, last.fields)
            elif last is not None and last.status in (COMMAND_OK, EMPTY_QUERY):
                self.described[name] = None
            while len(self.statements) > self.statement_cache:
                _, old = self.statements.popitem(last=False)
                self.described.pop(old, None)
                self._closes.append(_close_statement(old))
        return results

    def send_cached(
        self,
        sql: bytes,
        values: Sequence[bytes | None] | None,
        oids: Sequence[int] | None,
        formats: Sequence[int] | None,
        timeout: float,
        settled: Settled,
        deadlines: Deadlines,
        cap: int = 0,
    ) -> bool:
        """Send Bind/Execute for a statement already prepared here, without a coroutine: the hot path.

        ``settled`` is called once, straight from the reader (no task, no future, no loop turn), with the
        results, with ``TimeoutError`` when ``timeout`` passes as ``deadlines`` sees it (then run
        :meth:`finish_expired`), or with a :class:`PgError` when the connection fails.  A stale
        statement's error comes back as a result, as :meth:`prepared` would see it before retrying: check
        :meth:`stale`.  Returns False, sending nothing, when :meth:`prepared` must do it (the statement is
        not cached here, or the connection is busy or in a transaction block).
        """
        proto = self.proto
        if self.statement_cache <= 0 or proto.tx_status != b"I" or proto.lost is not None or proto.waiter:
            return False
        cached = self._bind_cached(sql, values, oids, formats)
        if cached is None:
            return False
        loop = proto.loop
        waiter = _Notify(settled, loop.time() + timeout, deadlines)
        proto.waiter = waiter
        proto.current = cached[1]
        proto.cap = cap
        assert proto.transport is not None
        proto.transport.write(cached[0])
        deadlines.add(waiter, loop)
        return True

    def _bind_cached(
        self,
        sql: bytes,
        values: Sequence[bytes | None] | None,
        oids: Sequence[int] | None,
        formats: Sequence[int] | None,
    ) -> tuple[bytes, Result | None] | None:
        """What to write to run the statement cached here for ``sql`` and ``oids``, and the result its rows
        go to when they come without a RowDescription (Describe is skipped once it is known); None when the
        statement is not cached here."""
        key = (sql, tuple(oids) if oids else ())
        name = self.statements.get(key)
        if name is None:
            return None
        self.statements.move_to_end(key)
        described = self.described.get(name, _UNKNOWN)
        if described is _UNKNOWN:
            return self._take_closes() + bind_execute(name, values, formats), None
        expect = None if described is None else Result(TUPLES_OK, described[1], described[0])
        return self._take_closes() + bind_execute(name, values, formats, describe=False), expect

    def stale(self, results: list[Result], sql: bytes, oids: Sequence[int] | None) -> bool:
        """The results of :meth:`send_cached` say the cached statement went stale or away: forget it."""
        err = results[-1].error if results else None
        if err is None:
            return False
        key = (sql, tuple(oids) if oids else ())
        name = self.statements.get(key)
        if name is None or self.proto.tx_status != b"I" or not _is_stale(err, name):
            return False
        del self.statements[key]
        self.described.pop(name, None)
        if err.sqlstate == "0A000":
            self._closes.append(_close_statement(name))
        return True

    async def finish_expired(self) -> None:
        """After :meth:`send_cached`'s statement timed out: cancel it on the server and wait for it to end."""
        await self._cancel()

    def _take_closes(self) -> bytes:
        if not self._closes:
            return b""
        closes, self._closes = self._closes, []
        return b"".join(closes)

    async def _cancel(self) -> None:
        """Cancel the running statement on the server and wait for its ReadyForQuery (else drop it)."""
        proto = self.proto
        if proto.lost is not None or proto.waiter is None:
            return
        # The caller's future is done (cancelled, expired); the rest of the statement's replies go here.
        drain: asyncio.Future[list[Result]] = proto.loop.create_future()
        proto.waiter = drain
        try:
            await self.conn.cancel_safe(timeout=5)
            await asyncio.wait_for(drain, 10)
        except BaseException:
            self.abort()

    async def simple(self, sql: bytes) -> Result:
        """Run a parameterless statement and return its last result (BEGIN, COMMIT, catalog reads)."""
        results = await self.execute(sql)
        return results[-1]

    def abort(self) -> None:
        """Drop the connection at once (it is in a state that cannot be reused)."""
        proto = self.proto
        if proto.lost is None:
            proto.lost = PgError("the connection was closed", "08006", connection_lost=True)
        if proto.transport is not None:
            proto.transport.abort()

    async def close(self) -> None:
        """Close the connection (never raises)."""
        with contextlib.suppress(Exception):
            if self.proto.lost is None and self.proto.transport is not None:
                self.proto.lost = PgError("the connection was closed", "08006", connection_lost=True)
                self.proto.transport.write(_TERMINATE)
            if self.proto.transport is not None:
                self.proto.transport.close()
        with contextlib.suppress(Exception):
            await self.conn.close()


async def scram_login(host: str, port: int, user: str, password: str, dbname: str, timeout: float) -> None:
    """Log in over TCP (the server asks for the password: SCRAM) and log out; PgError if refused."""
    conn = await PgConnection.connect(host, port, user, password, dbname, timeout)
    await conn.close()


class Pool:
    """The connections of one (cluster, user, password, database) on one postgres server.

    With ``unix_dir`` and a ``verifier``, a connection is opened over the unix socket only once the
    verifier vouches for the key's password (see :class:`Verifier`), and over TCP otherwise.
    """

    def __init__(
        self,
        key: PoolKey,
        server: object,
        host: str,
        port: int,
        *,
        size: int,
        connect_timeout: float,
        unix_dir: str | None = None,
        verifier: Verifier | None = None,
        statement_cache: int = 0,
        max_frame: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.key = key
        self.statement_cache = statement_cache
        self.max_frame = max_frame
        self.server = server
        self.host = host
        self.port = port
        self.unix_dir = unix_dir if verifier is not None else None
        self.verifier = verifier
        self.size = size
        self.connect_timeout = connect_timeout
        self.idle: list[PgConnection] = []  # LIFO: the last one released is the next one used
        self.open = 0  # idle + in use + being opened
        self.closed = False
        self._waiters: collections.deque[asyncio.Future[PgConnection | None]] = collections.deque()
        # Per-database catalog caches (pg_type rows, table column facts), filled by the executor.
        self.deadlines = Deadlines()  # of the statements sent with send_cached
        self.types: dict[int, Any] = {}
        self.columns: dict[tuple[int, int], Any] = {}
        self.decoders: dict[Any, Any] = {}
        self.known_shapes: set[bytes] = set()  # RowDescriptions whose column types are all in `types`

    def try_acquire(self) -> PgConnection | None:
        """An idle, usable connection at once, or None (the hot path: no await, no timer)."""
        while self.idle:
            conn = self.idle.pop()
            if conn.ok:
                return conn
            self.discard(conn)
        return None

    async def acquire(self) -> PgConnection:
        """A usable connection: an idle one, a new one if below the bound, or the next one released."""
        while self.idle:
            conn = self.idle.pop()
            if conn.ok:
                return conn
            self.open -= 1
            await conn.close()
        if self.open < self.size:
            self.open += 1
            try:
                conn = await self._connect()
            except BaseException:
                self.open -= 1
                self._wake_one()
                raise
            conn.statement_cache = self.statement_cache
            return conn
        waiter: asyncio.Future[PgConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            conn_or_slot = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._wake_one()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        if conn_or_slot is not None:
            return conn_or_slot
        return await self.acquire()  # a slot was freed: open a connection of our own

    async def _connect(self) -> PgConnection:
        user, password, database = self.key[1], self.key[2], self.key[3]
        verifier, unix_dir, timeout = self.verifier, self.unix_dir, self.connect_timeout
        if verifier is not None and unix_dir is not None:
            # The password must be one PostgreSQL accepted over TCP, recently: the socket trusts anyone.
            await verifier.verify(self.host, self.port, user, password, database, timeout)
            try:
                return await PgConnection.connect(
                    self.host, self.port, user, password, database, timeout, unix_dir=unix_dir,
                    max_frame=self.max_frame,
                )  # fmt: skip
            except PgError as err:
                if err.sqlstate not in ("08006", "08001"):
                    raise
                self.unix_dir = None  # no socket there (another host, an older server): TCP from now on
        return await PgConnection.connect(
            self.host, self.port, user, password, database, timeout, max_frame=self.max_frame
        )

    async def acquire_detached(self) -> PgConnection:
        """A connection for a transaction, held outside the pool's bound (see :meth:`adopt`).

        An idle pooled connection is taken out of the pool (its slot freed for a new one); otherwise a new
        connection is opened.  Transactions can then never use up the connections that calls outside a
        transaction wait for: an abandoned transaction holds its own connection until it expires, and only
        PostgreSQL's ``max_connections`` bounds how many there are.
        """
        conn = self.try_acquire()
        if conn is not None:
            self.open -= 1
            self._wake_one()
            return conn
        conn = await self._connect()
        conn.statement_cache = self.statement_cache
        return conn

    def adopt(self, conn: PgConnection) -> None:
        """Take back a connection from :meth:`acquire_detached` once its transaction ended: into the pool
        while the pool has room for it, closed otherwise."""
        if self.closed or not conn.ok or conn.in_transaction or self.open >= self.size:
            _spawn(conn.close())
            return
        self.open += 1
        self.release(conn)

    def release(self, conn: PgConnection) -> None:
        """Give a connection back: to the next waiter, else the idle list; a broken one is closed."""
        if self.closed or not conn.ok or conn.in_transaction:
            self.discard(conn)
            return
        if conn.needs_cleanup:
            _spawn(self._cleaned(conn))
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    async def clean(self, conn: PgConnection) -> None:
        """Run :meth:`PgConnection.cleanup` on a borrowed connection; one that fails it is dropped."""
        try:
            await conn.cleanup()
        except BaseException:
            conn.abort()

    async def _cleaned(self, conn: PgConnection) -> None:
        await self.clean(conn)
        self.release(conn)

    def discard(self, conn: PgConnection) -> None:
        """Close a connection that must not be reused (broken, or left in an unknown state)."""
        self.open -= 1
        _spawn(conn.close())
        self._wake_one()

    def _wake_one(self) -> None:
        # A slot opened: let the first waiter open a connection itself.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def reap(self, max_idle: float) -> None:
        """Close connections idle longer than ``max_idle`` seconds (the oldest are at the front)."""
        cutoff = time.monotonic() - max_idle
        stale = [c for c in self.idle if c.idle_since < cutoff]
        if not stale:
            return
        self.idle = [c for c in self.idle if c.idle_since >= cutoff]
        self.open -= len(stale)
        for conn in stale:
            await conn.close()

    async def close(self) -> None:
        """Close every idle connection; connections in use are closed when they come back."""
        self.closed = True
        idle, self.idle = self.idle, []
        self.open -= len(idle)
        for conn in idle:
            await conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PgError("the database connection pool is closing", "57P01"))


_background: set[asyncio.Future[None]] = set()


def _spawn(coro: Any) -> None:
    """Run ``coro`` in the background, keeping a reference until it ends."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
