"""Warm PostgreSQL connections for the Data API: one small pool per (cluster, user, password, database).

psycopg (libpq) opens each connection (SCRAM, startup options, libpq's error texts); the socket is then
handed to a long-lived asyncio protocol that reads frames with :class:`borealis.pgwire.FrameReader`.  A
statement is Parse, Bind, Describe, Execute and Sync in one write (what ``PQsendQueryParams`` sends), with
the type OID and format of every parameter given by the caller (so a string is ``text`` as on AWS, never
inferred) and every result column in text format, which is what the Data API decoders take.  Compared with
libpq's wait loop this saves registering and unregistering a reader on the event loop for every query.
The session settings the decoders rely on are startup options, so a new connection costs no extra round
trip.

The pool follows asyncpg's: holders in a LIFO idle list (the warmest connection serves next), a bound on
the number open, waiters served in order, monotonic timestamps for idle reaping.  The password is part of
the key, so a changed or wrong secret never reuses a connection opened with another password.  A pool is
tied to one postgres server object: when the writer restarts, the pool's connections are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from borealis.pgwire import FrameReader

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

    __slots__ = ("command_status", "error", "fields", "rows", "status")

    def __init__(self, status: int, fields: list[tuple[bytes, int, int, int, int]] | None = None) -> None:
        self.status = status
        self.fields = fields or []  # (name, table oid, column number, type oid, type modifier)
        self.rows: list[list[bytes | None]] = []
        self.command_status: bytes | None = None
        self.error: PgError | None = None

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

_u16 = struct.Struct("!H").unpack_from
_i16 = struct.Struct("!h").unpack_from
_i32 = struct.Struct("!i").unpack_from
_field = struct.Struct("!IhIhih").unpack_from
# Describe (portal ""), Execute (portal "", no row limit), Sync: the same bytes after every Bind.
_TAIL = b"D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"
_TERMINATE = b"X\x00\x00\x00\x04"


def extended_query(
    sql: bytes,
    values: Sequence[bytes | None] | None,
    oids: Sequence[int] | None,
    formats: Sequence[int] | None,
) -> bytes:
    """Parse, Bind, Describe, Execute and Sync for the unnamed statement: one write, one round trip.

    What libpq's ``PQsendQueryParams`` sends; every result column comes back in text format.
    """
    noids = len(oids) if oids else 0
    parse_body = b"\x00" + sql + b"\x00" + struct.pack(f"!H{noids}I", noids, *(oids or ()))
    parts = [b"P", struct.pack("!i", len(parse_body) + 4), parse_body]
    nvalues = len(values) if values else 0
    nformats = len(formats) if formats else 0
    bind = [b"\x00\x00", struct.pack(f"!H{nformats}H", nformats, *(formats or ())), struct.pack("!H", nvalues)]
    if values:
        for value in values:
            if value is None:
                bind.append(b"\xff\xff\xff\xff")
            else:
                bind.append(struct.pack("!i", len(value)))
                bind.append(value)
    bind.append(b"\x00\x00")  # no result formats: all text
    bind_body = b"".join(bind)
    parts += (b"B", struct.pack("!i", len(bind_body) + 4), bind_body, _TAIL)
    return b"".join(parts)


def _error_fields(body: memoryview) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = bytes(body)
    pos = 0
    while pos < len(raw) and raw[pos]:
        end = raw.index(b"\x00", pos + 1)
        out[chr(raw[pos])] = raw[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return out


class _Protocol(asyncio.Protocol):
    """The long-lived reader of one server connection: frames in, results out when ReadyForQuery comes."""

    def __init__(self) -> None:
        self.reader = FrameReader.for_server()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[list[Result]] | None = None
        self.results: list[Result] = []
        self.current: Result | None = None
        self.tx_status = b"I"
        self.lost: PgError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = PgError("server closed the connection unexpectedly", "08006", connection_lost=True)
        self._fail(self.lost)

    def _fail(self, err: PgError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            frames = reader.read_frames()
        except Exception as exc:
            self.lost = PgError(f"protocol error from the server: {exc}", "08P01", connection_lost=True)
            self._fail(self.lost)
            if self.transport is not None:
                self.transport.abort()
            return
        for t, frame in frames:
            if t == 68:  # D DataRow
                current = self.current
                if current is None:
                    continue
                count = _u16(frame, 5)[0]
                pos = 7
                row: list[bytes | None] = []
                for _ in range(count):
                    n = _i32(frame, pos)[0]
                    pos += 4
                    if n < 0:
                        row.append(None)
                    else:
                        row.append(frame[pos : pos + n].tobytes())
                        pos += n
                current.rows.append(row)
            elif t == 84:  # T RowDescription
                count = _u16(frame, 5)[0]
                pos = 7
                fields = []
                for _ in range(count):
                    end = pos
                    while frame[end]:
                        end += 1
                    name = frame[pos:end].tobytes()
                    table, column, oid, _size, mod, _fmt = _field(frame, end + 1)
                    fields.append((name, table, column, oid, mod))
                    pos = end + 19
                self.current = Result(TUPLES_OK, fields)
            elif t == 67:  # C CommandComplete
                result = self.current or Result(COMMAND_OK)
                result.command_status = frame[5:-1].tobytes()
                self.results.append(result)
                self.current = None
            elif t == 90:  # Z ReadyForQuery
                self.tx_status = frame[5:6].tobytes()
                results, self.results = self.results, []
                self.current = None
                waiter, self.waiter = self.waiter, None
                if waiter is not None and not waiter.done():
                    waiter.set_result(results)
            elif t == 69:  # E ErrorResponse
                if self.waiter is None:
                    continue  # e.g. FATAL before the server closes an idle connection: connection_lost follows
                result = Result(FATAL_ERROR)
                result.error = PgError.from_fields(_error_fields(frame[5:]))
                self.results.append(result)
                self.current = None
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


class PgConnection:
    """One server connection: send a statement with typed parameters, get its results back.

    psycopg (libpq) opens and authenticates the connection; from then on the socket belongs to a
    long-lived asyncio protocol reading frames with :class:`borealis.pgwire.FrameReader`, so a statement
    costs one write and the reads it needs, with no per-query reader registration.
    """

    __slots__ = ("backend_pid", "conn", "idle_since", "proto")

    def __init__(self, conn: psycopg.AsyncConnection[Any], proto: _Protocol) -> None:
        self.conn = conn
        self.proto = proto
        self.backend_pid = conn.pgconn.backend_pid
        self.idle_since = time.monotonic()

    @classmethod
    async def connect(cls, host: str, port: int, user: str, password: str, dbname: str, timeout: float) -> PgConnection:
        """Open and authenticate; raises :class:`PgError` with the server's message on failure."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=host,
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
            _, proto = await loop.create_connection(_Protocol, sock=sock)
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
    def transaction_failed(self) -> bool:
        """The transaction block is aborted (statements fail until ROLLBACK)."""
        return self.proto.tx_status == b"E"

    async def execute(
        self,
        sql: bytes,
        values: Sequence[bytes | None] | None = None,
        oids: Sequence[int] | None = None,
        formats: Sequence[int] | None = None,
    ) -> list[Result]:
        """Run one statement (extended protocol, text results); raises PgError if the connection fails.

        Cancelled (a call's time limit), it cancels the statement on the server and waits for it to end,
        so the connection stays usable.
        """
        proto = self.proto
        if proto.lost is not None:
            raise proto.lost
        if proto.waiter is not None:
            raise PgError("another statement is running on this connection", "55000")
        transport = proto.transport
        assert transport is not None
        waiter: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        transport.write(extended_query(sql, values, oids, formats))
        try:
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            await self._cancel(waiter)
            raise

    async def _cancel(self, waiter: asyncio.Future[list[Result]]) -> None:
        if waiter.done():
            return
        try:
            await self.conn.cancel_safe(timeout=5)
            await asyncio.wait_for(asyncio.shield(waiter), 10)
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


class Pool:
    """The connections of one (cluster, user, password, database) on one postgres server."""

    def __init__(
        self,
        key: PoolKey,
        server: object,
        host: str,
        port: int,
        *,
        size: int,
        connect_timeout: float,
    ) -> None:
        self.key = key
        self.server = server
        self.host = host
        self.port = port
        self.size = size
        self.connect_timeout = connect_timeout
        self.idle: list[PgConnection] = []  # LIFO: the last one released is the next one used
        self.open = 0  # idle + in use + being opened
        self.closed = False
        self._waiters: collections.deque[asyncio.Future[PgConnection | None]] = collections.deque()
        # Per-database catalog caches (pg_type rows, table column facts), filled by the executor.
        self.types: dict[int, Any] = {}
        self.columns: dict[tuple[int, int], Any] = {}
        self.decoders: dict[Any, Any] = {}

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
                user, password, database = self.key[1], self.key[2], self.key[3]
                return await PgConnection.connect(self.host, self.port, user, password, database, self.connect_timeout)
            except BaseException:
                self.open -= 1
                self._wake_one()
                raise
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

    def release(self, conn: PgConnection) -> None:
        """Give a connection back: to the next waiter, else the idle list; a broken one is closed."""
        if self.closed or not conn.ok or conn.in_transaction:
            self.discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def discard(self, conn: PgConnection) -> None:
        """Close a connection that must not be reused (broken, or left in an unknown state)."""
        self.open -= 1
        task = asyncio.ensure_future(conn.close())
        _background.add(task)
        task.add_done_callback(_background.discard)
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
