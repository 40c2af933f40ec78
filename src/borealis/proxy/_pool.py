"""A pool of server connections for one (target instance, user, database): holders, a LIFO idle list,
FIFO waiters with monotonic deadlines.

The cap is MaxConnectionsPercent of the target's ``max_connections`` (read once with SHOW on the pool's
first connection); idle connections above MaxIdleConnectionsPercent are closed when they come back.
A client that finds the pool exhausted waits up to ConnectionBorrowTimeout, in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from ._server import ServerConn, ServerError, connect_server, query_frame
from ._stats import ProxyStats

__all__ = ["BorrowTimeout", "Pool"]

log = logging.getLogger(__name__)


class BorrowTimeout(Exception):
    """No server connection came free within ConnectionBorrowTimeout."""


class Pool:
    """Server connections to one target for one (user, database)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        database: str,
        password: Callable[[], str | None],
        config: Callable[[], dict[str, Any]],
        stats: ProxyStats,
        max_connections: dict[str, int],
        key: str,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self._password = password
        self._config = config
        self.stats = stats
        # Shared per target: max_connections is read once, the first time any pool of the target connects.
        self._max_connections = max_connections
        self._key = key
        self.idle: list[ServerConn] = []
        self.members: set[ServerConn] = set()
        self.opening = 0
        self.waiters: collections.deque[asyncio.Future[ServerConn | None]] = collections.deque()
        #: Server-reported parameters per set of client startup parameters (what a login reports).
        self.reported: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        self.closed = False

    # ------------------------------------------------------------------------------------------ limits

    def cap(self) -> int:
        """The most connections this pool may hold."""
        mc = self._max_connections.get(self._key)
        if mc is None:
            return 1  # until the first connection has told us max_connections
        return max(1, mc * int(self._config()["MaxConnectionsPercent"]) // 100)

    def idle_cap(self) -> int:
        """The most idle connections kept (MaxIdleConnectionsPercent of max_connections)."""
        mc = self._max_connections.get(self._key) or 1
        return mc * int(self._config()["MaxIdleConnectionsPercent"]) // 100

    @property
    def size(self) -> int:
        """Connections held plus connections being opened."""
        return len(self.members) + self.opening

    # ------------------------------------------------------------------------------------------ borrow

    async def acquire(self, params: dict[str, str], timeout: float) -> ServerConn:
        """A logged-in server connection, or :class:`BorrowTimeout` / :class:`ServerError`."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    self._lent(conn, start)
                    return conn
            if self.size < self.cap():
                conn = await self._open(params)
                self._lent(conn, start)
                return conn
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.borrow_timeouts += 1
                raise BorrowTimeout
            fut: asyncio.Future[ServerConn | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                got = await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                self.stats.borrow_timeouts += 1
                raise BorrowTimeout from None
            finally:
                if not fut.done():
                    fut.cancel()
                with _suppress_value_error():
                    self.waiters.remove(fut)
            if got is not None and not got.closed:
                self._lent(got, start)
                return got
            # None: a slot came free (a connection closed); loop to open one.

    def _lent(self, conn: ServerConn, start: float) -> None:
        stats = self.stats
        stats.borrowed += 1
        stats.borrow_count += 1
        stats.borrow_latency_us_sum += int((time.monotonic() - start) * 1e6)

    async def _open(self, params: dict[str, str]) -> ServerConn:
        self.opening += 1
        self.stats.database_connection_requests += 1
        try:
            conn = await connect_server(self.host, self.port, self.user, self._password(), params, self._lost)
            conn.pool = self
            if self._key not in self._max_connections:
                value = await conn.private([query_frame("SHOW max_connections")])
                self._max_connections[self._key] = int(value or b"100")
            init = self._config()["InitQuery"]
            if init:
                await conn.private([query_frame(init)])
        except BaseException:
            self.opening -= 1
            self._slot_freed()
            raise
        self.opening -= 1
        self.members.add(conn)
        self.stats.database_connections += 1
        return conn

    def release(self, conn: ServerConn) -> None:
        """Give back a connection that is idle (at a boundary, outside a transaction)."""
        self.stats.borrowed -= 1
        conn.owner = None
        if conn.closed or self.closed:
            conn.close()
            return
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                self.stats.borrowed += 1
                fut.set_result(conn)
                return
        if len(self.idle) >= self.idle_cap() or self.size > self.cap():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def discard(self, conn: ServerConn) -> None:
        """A lent connection is unusable: close it and let a waiter open another."""
        self.stats.borrowed -= 1
        conn.owner = None
        conn.close()

    def _lost(self, conn: ServerConn) -> None:
        if conn in self.members:
            self.members.discard(conn)
            self.stats.database_connections -= 1
            if conn in self.idle:
                self.idle.remove(conn)
            self._slot_freed()

    def _slot_freed(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def in_transaction(self) -> int:
        """Lent connections inside a transaction block now (sampled for the metric)."""
        return sum(1 for c in self.members if c.owner is not None and c.session.transaction_status in ("T", "E"))

    def reap(self, max_idle: float) -> None:
        """Close connections idle for longer than ``max_idle`` seconds (the janitor calls this)."""
        now = time.monotonic()
        keep = []
        for conn in self.idle:
            if now - conn.idle_since > max_idle:
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep

    def close(self) -> None:
        """Close every connection; waiters get nothing."""
        self.closed = True
        for conn in list(self.members):
            conn.close()
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(ServerError("the proxy target went away"))
        self.waiters.clear()


class _suppress_value_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ValueError
