"""Warm PostgreSQL connections for the Data API: one small pool per (cluster, user, password, database).

Each connection is a psycopg ``AsyncConnection`` used for what it does well (connecting, SCRAM, the async
wait loop) while statements go through its libpq handle directly: ``PQsendQueryParams`` is Parse, Bind,
Describe, Execute and Sync in one round trip, with the type OID and format of every parameter given by the
caller (so a string is ``text`` as on AWS, never inferred) and every result column in text format, which is
what the Data API decoders take.  The session settings the decoders rely on are startup options, so a new
connection costs no extra round trip.

The pool follows asyncpg's: holders in a LIFO idle list (the warmest connection serves next), a bound on
the number open, waiters served in order, monotonic timestamps for idle reaping.  The password is part of
the key, so a changed or wrong secret never reuses a connection opened with another password.  A pool is
tied to one postgres server object: when the writer restarts, the pool's connections are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import generators, pq

__all__ = ["PgConnection", "PgError", "Pool", "PoolKey"]

PoolKey = tuple[str, str, str, str]  # cluster id, user, password, database

# What the decoders in _results.py assume; sent as startup options (no round trip).
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=1"
)

_F = pq.DiagnosticField

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
    def from_result(cls, res: pq.abc.PGresult) -> PgError:
        """Read an error result's fields."""

        def field(code: _F) -> str | None:
            raw = res.error_field(code)
            return None if raw is None else raw.decode("utf-8", "replace")

        position = field(_F.STATEMENT_POSITION)
        message = field(_F.MESSAGE_PRIMARY)
        if message is None:
            message = res.get_error_message().strip() or "unknown error"
        return cls(
            message,
            field(_F.SQLSTATE) or "",
            severity=field(_F.SEVERITY_NONLOCALIZED) or "ERROR",
            detail=field(_F.MESSAGE_DETAIL),
            hint=field(_F.MESSAGE_HINT),
            position=int(position) if position and position.isdigit() else None,
            where=field(_F.CONTEXT),
        )

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


class PgConnection:
    """One server connection: send a statement with typed parameters, get libpq results back."""

    __slots__ = ("backend_pid", "conn", "idle_since", "pgconn")

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
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
            )
        except psycopg.Error as exc:
            raise PgError.from_psycopg(exc) from None
        return cls(conn)

    @property
    def ok(self) -> bool:
        """The connection is open and usable."""
        return self.pgconn.status == pq.ConnStatus.OK

    @property
    def in_transaction(self) -> bool:
        """A transaction block is open (or failed) on the server side."""
        return self.pgconn.transaction_status != pq.TransactionStatus.IDLE

    async def execute(
        self,
        sql: bytes,
        values: Sequence[bytes | None] | None = None,
        oids: Sequence[int] | None = None,
        formats: Sequence[int] | None = None,
    ) -> list[pq.abc.PGresult]:
        """Run one statement (extended protocol, text results); raises PgError if the connection fails."""
        pgconn = self.pgconn
        try:
            pgconn.send_query_params(sql, values, oids, formats, 0)
            results: list[pq.abc.PGresult] = await self.conn.wait(generators.execute(pgconn))
        except psycopg.Error as exc:
            raise PgError.from_psycopg(exc) from None
        return results

    async def simple(self, sql: bytes) -> pq.abc.PGresult:
        """Run a parameterless statement and return its last result (BEGIN, COMMIT, catalog reads)."""
        results = await self.execute(sql)
        return results[-1]

    async def close(self) -> None:
        """Close the connection (never raises)."""
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
