"""A pool of server connections for one (target instance, user, database): holders, a LIFO idle list,
FIFO waiters with monotonic deadlines.

The cap is MaxConnectionsPercent of the target's ``max_connections`` (read once with SHOW on the pool's
first connection); idle connections above MaxIdleConnectionsPercent are closed when they come back.
A client that finds the pool exhausted waits up to ConnectionBorrowTimeout, in arrival order.

Borrowing is synchronous on the hot path, as in PgBouncer's objects.c: :meth:`Pool.take` hands out an idle
connection at once; a client that finds none while the pool is full queues *itself* (:meth:`Pool.wait`),
and :meth:`Pool.release` gives the returned connection straight to the first waiter, which forwards its
held frames in the same callback. No Task, no future. One timer per pool (for the earliest deadline) times
waiters out. A waiter is any object with the :class:`Waiter` methods; :meth:`Pool.acquire` wraps a future
in one for the code that may await (logins, opening a connection).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from time import monotonic as _monotonic
from typing import Any, Protocol

from borealis.engine import Verifier

from ._server import ServerConn, ServerError, connect_server, new_lane, query_frame
from ._stats import ProxyStats

__all__ = ["BorrowTimeout", "Pool", "Waiter"]

log = logging.getLogger(__name__)

#: Seconds to open and log in one server connection.
_CONNECT_TIMEOUT = 10.0
_INF = float("inf")


class BorrowTimeout(Exception):
    """No server connection came free within ConnectionBorrowTimeout."""


class Waiter(Protocol):
    """What waits in a pool's queue: a client connection, or a future (:class:`_FutureWaiter`)."""

    #: False once the waiter has left the queue (served, timed out, gone): the pool skips it then.
    waiting: bool
    #: time.monotonic() when it started waiting, and when it gives up.
    since: float
    deadline: float

    def pool_grant(self, pool: Pool, conn: ServerConn | None) -> None:
        """A connection lent to the waiter, or None: a slot came free, open a connection yourself."""

    def pool_fail(self, pool: Pool, exc: Exception) -> None:
        """The wait ended without a connection: :class:`BorrowTimeout`, or ServerError (the pool closed)."""

    def park(self, lane: Any, query: bytes, now: float, timeout: float) -> bool:
        """Wait in the pool's C lane (``query``: the one autocommit Query the waiter holds); False: not this one."""

    def _lane_resume(self, query: bytes) -> None:
        """A Query that waited in the C lane is the waiter's again: it waits for pool_grant or pool_fail now."""


class _FutureWaiter:
    __slots__ = ("deadline", "future", "since", "waiting")

    def __init__(self, future: asyncio.Future[ServerConn | None], since: float, deadline: float) -> None:
        self.future = future
        self.since = since
        self.deadline = deadline
        self.waiting = True

    def pool_grant(self, pool: Pool, conn: ServerConn | None) -> None:
        self.waiting = False
        if self.future.done():  # the awaiting task was cancelled meanwhile
            if conn is not None:
                pool.release(conn)
            return
        self.future.set_result(conn)

    def pool_fail(self, pool: Pool, exc: Exception) -> None:
        self.waiting = False
        if not self.future.done():
            self.future.set_exception(exc)

    def park(self, lane: Any, query: bytes, now: float, timeout: float) -> bool:
        return False

    def _lane_resume(self, query: bytes) -> None:
        pass


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
        socket_dir: str | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.host = host
        self.port = port
        #: The target's unix socket, used once ``verifier`` vouches for the password (None: TCP only).
        self.socket_dir = socket_dir
        self.unix_path = None if socket_dir is None or verifier is None else f"{socket_dir}/.s.PGSQL.{port}"
        self._verifier = verifier
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
        self.waiters: collections.deque[Waiter] = collections.deque()
        #: Server-reported parameters per set of client startup parameters (what a login reports).
        self.reported: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        self.closed = False
        #: The runtime's current route for this pool's (role, user, database): clients that borrowed from it
        #: borrow from it again without asking the runtime. Cleared when a route may have moved, and on close.
        self.routed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        #: (cap, idle cap), kept once max_connections is known, until limits_changed() (None: work them out).
        self._kept_caps: tuple[int, int] | None = None
        #: The C data path's queue (``_fastpath.Lane``), or None without it. Clients of a saturated pool park
        #: their autocommit Queries there; it lends the connections given back to them, from C (see _fastpath.c).
        #: Its waiters and the ones in ``waiters`` are served in the order they came.
        self.lane: Any = new_lane(stats.fast, self._lane_return)

    def set_routed(self, routed: bool) -> None:
        """Mark the pool as its (role, user, database)'s current route, or not: only then may clients park in
        its lane, and a client whose route may have moved asks the runtime again."""
        self.routed = routed
        if self.lane is not None:
            self.lane.open = 1 if routed and not self.closed else 0

    def _waiters_changed(self) -> None:
        # The lane serves its own first waiter only before the first of ``waiters`` (which may have stopped
        # waiting: then the lane asks this pool, which skips it).
        lane = self.lane
        if lane is not None:
            waiters = self.waiters
            lane.py_since = waiters[0].since if waiters else _INF

    # ------------------------------------------------------------------------------------------ limits

    def cap(self) -> int:
        """The most connections this pool may hold."""
        return self._caps()[0]

    def idle_cap(self) -> int:
        """The most idle connections kept (MaxIdleConnectionsPercent of max_connections)."""
        return self._caps()[1]

    def limits_changed(self) -> None:
        """The ConnectionPoolConfig may have changed: work the caps out again on next use."""
        self._kept_caps = None

    def _caps(self) -> tuple[int, int]:
        # Every borrow that finds no idle connection and every release needs the caps: they are kept (in
        # _kept_caps, read inline there) until the config changes (the runtime calls limits_changed()). Not
        # before max_connections is known: it is read once per target, by whichever pool connects first, and
        # never changes after.
        kept = self._kept_caps
        if kept is not None:
            return kept
        mc = self._max_connections.get(self._key)
        config = self._config()
        idle = (mc or 1) * int(config["MaxIdleConnectionsPercent"]) // 100
        # Until the first connection has told us max_connections, one connection.
        cap = 1 if mc is None else max(1, mc * int(config["MaxConnectionsPercent"]) // 100)
        if mc is not None:
            self._kept_caps = (cap, idle)
        return cap, idle

    @property
    def size(self) -> int:
        """Connections held plus connections being opened."""
        return len(self.members) + self.opening

    # ------------------------------------------------------------------------------------------ borrow

    def take(self) -> ServerConn | None:
        """An idle connection, lent at once, or None (then open one if :meth:`can_open`, else :meth:`wait`)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                stats = self.stats
                stats.borrowed += 1
                stats.borrow_count += 1
                return conn
        return None

    def borrow(self, waiter: Waiter, now: float, timeout: float, query: bytes | None = None) -> ServerConn | None:
        """An idle connection, lent at once; else None, with ``waiter`` queued from ``now`` (monotonic) for
        ``timeout`` seconds (``waiter.waiting``) when the pool is full, or not queued when one may be opened.
        With ``query`` (the one autocommit Query it holds), a full pool may queue it in the lane instead
        (``waiter.park``): then the C path sends it, and the waiter is not ``waiting``.

        :meth:`take`, :meth:`can_open` and :meth:`wait` in one call: a client borrows this way per
        transaction, and with more clients than connections nearly every borrow queues.
        """
        idle = self.idle
        if idle:
            conn = idle[-1]
            if conn.closed:  # (closed while idle, its loss not yet heard: take() skips those)
                taken = self.take()
                if taken is not None:
                    return taken
            else:
                idle.pop()
                stats = self.stats
                stats.borrowed += 1
                stats.borrow_count += 1
                return conn
        cap = (self._kept_caps or self._caps())[0]
        if len(self.members) + self.opening < cap:
            return None
        deadline = now + timeout
        lane = self.lane
        if query is None or lane is None or not lane.open or not waiter.park(lane, query, now, timeout):
            waiter.since = now
            waiter.deadline = deadline
            waiter.waiting = True
            self.waiters.append(waiter)
            if len(self.waiters) == 1:
                self._waiters_changed()
        if self._timer is None or deadline < self._timer_at:
            self._schedule(deadline)
        return None

    def can_open(self) -> bool:
        """Whether the pool may open another connection now."""
        return len(self.members) + self.opening < self._caps()[0]

    def wait(self, waiter: Waiter) -> None:
        """Queue ``waiter`` (its ``since`` and ``deadline`` set) for the next connection given back."""
        waiter.waiting = True
        self.waiters.append(waiter)
        if len(self.waiters) == 1:
            self._waiters_changed()
        if self._timer is None or waiter.deadline < self._timer_at:
            self._schedule(waiter.deadline)

    async def acquire(self, timeout: float) -> ServerConn:
        """A logged-in server connection, or :class:`BorrowTimeout` / :class:`ServerError`.

        A new connection logs in with no client's parameters: each client's are SET (and others' RESET)
        when it borrows one, and a RESET can only undo what was not in the startup packet.
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            conn = self.take()
            if conn is not None:
                return conn
            if self.can_open():
                conn = await self._open()
                self._lent(time.monotonic() - start)
                return conn
            if deadline <= time.monotonic():
                self.stats.borrow_timeouts += 1
                raise BorrowTimeout
            waiter = _FutureWaiter(asyncio.get_running_loop().create_future(), start, deadline)
            self.wait(waiter)
            try:
                got = await waiter.future
            finally:
                waiter.waiting = False
            if got is not None:
                return got
            # None: a slot came free (a connection closed); loop to open one.

    def _lent(self, waited: float) -> None:
        stats = self.stats
        stats.borrowed += 1
        stats.borrow_count += 1
        stats.borrow_latency_us_sum += waited * 1e6

    async def _open(self) -> ServerConn:
        self.opening += 1
        self.stats.database_connection_requests += 1
        try:
            # The client's database, not the default one named after the user.
            startup = {"database": self.database}
            conn = await self._connect(startup)
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

    async def _connect(self, startup: dict[str, str]) -> ServerConn:
        password = self._password()
        unix_path, verifier = self.unix_path, self._verifier
        if unix_path is not None and verifier is not None and password is not None:
            # The socket lets Borealis in as any role (peer): only a password PostgreSQL accepted over TCP,
            # recently, opens connections there. A refusal is the login's error, as over TCP.
            await verifier.verify(self.host, self.port, self.user, password, self.database, _CONNECT_TIMEOUT)
            try:
                return await connect_server(
                    self.host, self.port, self.user, password, startup, self._lost, _CONNECT_TIMEOUT,
                    unix_path=unix_path,
                )  # fmt: skip
            except ServerError as exc:
                if exc.sqlstate != "08006":
                    raise
                # No socket there (a server starting, another host): this connection goes over TCP.
                log.debug("proxy pool for %s: unix socket %s unusable (%s); using TCP", self._key, unix_path, exc)
        return await connect_server(self.host, self.port, self.user, password, startup, self._lost, _CONNECT_TIMEOUT)

    def release(self, conn: ServerConn) -> None:
        """Give back a connection that is idle (at a boundary, outside a transaction).

        The first waiter gets it at once (and may have written to it before this returns).
        """
        stats = self.stats
        conn.owner = None
        if conn.closed or self.closed:
            stats.borrowed -= 1
            conn.close()
            return
        waiter = self._first_waiter() if self.waiters else None
        if waiter is not None:
            stats.borrow_count += 1
            stats.borrow_latency_us_sum += (_monotonic() - waiter.since) * 1e6
            waiter.pool_grant(self, conn)
            return
        lane = self.lane
        if lane is not None and lane.count:
            link = conn.link
            if link is not None and lane.grant(link, conn.applied, _monotonic()):
                return  # lent from C (and its Query sent): the connection is the lane's now
            # The first parked Query needs other parameters SET first (or the connection has no C path): it
            # goes the Python way.
            got = lane.pop()
            if got is not None:
                client, query, since = got
                stats.borrow_count += 1
                stats.borrow_latency_us_sum += (_monotonic() - since) * 1e6
                client._lane_resume(query)
                client.pool_grant(self, conn)
                return
        stats.borrowed -= 1
        cap, idle_cap = self._kept_caps or self._caps()
        idle = self.idle
        if len(idle) >= idle_cap or len(self.members) + self.opening > cap:
            conn.close()
            return
        conn.idle_since = _monotonic()
        idle.append(conn)

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

    def _lane_return(self, conn: ServerConn) -> None:
        """The lane gives back a connection it lent (no parked Query may take it now): as if its client had."""
        self.release(conn)

    def _first_waiter(self) -> Waiter | None:
        """The first waiter of ``waiters`` (out of the queue, no longer waiting), unless the lane's first came
        earlier or none waits; those that stopped waiting are dropped on the way."""
        waiters = self.waiters
        lane = self.lane
        first = lane.head_since if lane is not None and lane.count else _INF
        found: Waiter | None = None
        while waiters:
            waiter = waiters[0]
            if waiter.waiting and first < waiter.since:
                break  # the lane's first waiter came earlier
            waiters.popleft()
            if waiter.waiting:
                waiter.waiting = False
                found = waiter
                break
        self._waiters_changed()
        return found

    def _slot_freed(self) -> None:
        waiter = self._first_waiter()
        if waiter is not None:
            waiter.pool_grant(self, None)
            return
        lane = self.lane
        if lane is not None:
            got = lane.pop()
            if got is not None:
                client, query, _since = got
                client._lane_resume(query)
                client.pool_grant(self, None)

    # ------------------------------------------------------------------------------------------ deadlines

    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        # time.monotonic() and the loop's clock may differ: convert the delay, not the instant.
        self._timer = loop.call_later(max(0.0, when - time.monotonic()), self._expire)
        self._timer_at = when

    def _expire(self) -> None:
        """The pool's deadline timer: time out every waiter whose deadline has passed."""
        self._timer = None
        # Within a millisecond counts as due: the loop's timers have millisecond resolution and may fire a
        # little early, which would otherwise re-arm the timer for a few microseconds, again and again.
        now = time.monotonic() + 0.001
        keep: collections.deque[Waiter] = collections.deque()
        expired: list[Waiter] = []
        for waiter in self.waiters:
            if not waiter.waiting:
                continue
            (expired if waiter.deadline <= now else keep).append(waiter)
        self.waiters = keep
        self._waiters_changed()
        lane = self.lane
        parked = lane.expire(now) if lane is not None else []
        nxt = min(w.deadline for w in keep) if keep else _INF
        if lane is not None and lane.count:
            nxt = min(nxt, lane.head_since + lane.timeout)
        if nxt < _INF:
            self._schedule(nxt)
        for waiter in expired:
            waiter.waiting = False
            self.stats.borrow_timeouts += 1
            waiter.pool_fail(self, BorrowTimeout())
        for client, query, _since in parked:
            self.stats.borrow_timeouts += 1
            client._lane_resume(query)
            client.pool_fail(self, BorrowTimeout())

    # ------------------------------------------------------------------------------------------ upkeep

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
        """Close every connection; waiters are told (and look for the new target)."""
        self.closed = True
        self.set_routed(False)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self.members):
            conn.close()
        waiters, self.waiters = self.waiters, collections.deque()
        self._waiters_changed()
        for waiter in waiters:
            if waiter.waiting:
                waiter.waiting = False
                waiter.pool_fail(self, ServerError("the proxy target went away"))
        if self.lane is not None:
            for client, query, _since in self.lane.drain():
                client._lane_resume(query)
                client.pool_fail(self, ServerError("the proxy target went away"))
