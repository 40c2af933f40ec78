"""The Performance Insights sampler: once a second, the active sessions of every instance that has it on.

One tick (rules):

1. On the event loop, list the instances whose record has Performance Insights enabled and whose postgres runs
   (the control plane's server for it reports running). A stopped or paused instance is never woken or
   connected to: it just has no samples.
2. For each, one query on a connection of its own, kept open between ticks: Borealis's internal superuser over
   the unix socket (``PostgresServer.internal_conninfo``, peer authentication: no tenant user, no password).
   The query reads pg_stat_activity's client backends that are not idle (not this connection, not Borealis's
   own sessions) and the sample is recorded in the :class:`InsightsStore` at that second.
3. Every ``statements_every`` ticks, the same connection reads pg_stat_statements (created in the
   ``postgres`` database by that superuser the first time, on a writer whose engine preloads it) and records
   the counts added since the previous reading, by query id. The connection resolves names in pg_catalog
   only, and the view is read by its schema-qualified name, locked and checked to be the extension's own
   (owned by a superuser): the tenant may create the extension, move it, and make look-alikes, and a
   look-alike's functions would run as the superuser.
4. A failed query or connection closes that connection; the next attempt waits a little (``_RETRY``), so a
   stopping server is not hammered. Every ``flush_every`` seconds the store writes its minutes (in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ._model import Session
from ._store import InsightsStore

__all__ = ["ACTIVITY_QUERY", "Sampler", "pi_settings"]

log = logging.getLogger(__name__)

ACTIVITY_QUERY = (
    "SELECT usename, usesysid::int8, datname, datid::int8, application_name, "
    "COALESCE(host(client_addr), '[local]'), wait_event_type, wait_event, query, query_id, state "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND state IS NOT NULL AND state <> 'idle' "
    "AND pid <> pg_backend_pid()"
)
"""The one query a sample costs."""

_STATEMENTS_QUERY = (
    "SELECT queryid::text, SUM(calls)::float8, SUM(total_exec_time)::float8, SUM(rows)::float8 "
    "FROM {}.pg_stat_statements WHERE queryid IS NOT NULL AND userid <> (SELECT oid FROM pg_roles "
    "WHERE rolname = current_user) GROUP BY queryid"
)
# The extension's schema: any, since its owner (the master, who may create it) may move it (ALTER EXTENSION ...
# SET SCHEMA) into a schema of theirs.
_STATEMENTS_SCHEMA = (
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
    "WHERE e.extname = 'pg_stat_statements'"
)
# Asked with the view locked (so it cannot be dropped, moved or replaced until the read is done): whether the
# relation of that name in that schema is the extension's own view, owned by a superuser. A tenant's look-alike
# (a view calling a function of theirs) would run that function as the superuser the sampler is.
_STATEMENTS_GENUINE = (
    "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_extension e ON e.extname = 'pg_stat_statements' JOIN pg_depend d ON d.classid = 'pg_class'::regclass "
    "AND d.objid = c.oid AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e' "
    "JOIN pg_roles r ON r.oid = c.relowner WHERE n.nspname = %s AND c.relname = 'pg_stat_statements' "
    "AND c.relkind = 'v' AND r.rolsuper)"
)
_ENSURE_STATEMENTS = (
    "SELECT NOT pg_is_in_recovery() AND 'pg_stat_statements' = ANY(string_to_array(replace("
    "current_setting('shared_preload_libraries'), ' ', ''), ',')) AND EXISTS (SELECT 1 FROM "
    "pg_available_extensions WHERE name = 'pg_stat_statements'), EXISTS (SELECT 1 FROM pg_extension "
    "WHERE extname = 'pg_stat_statements')"
)
_QUERY_TIMEOUT = 5.0
_RETRY = 5.0


def pi_settings(doc: dict[str, Any] | None) -> dict[str, Any]:
    """An instance's (or cluster's) Performance Insights settings as stored: enabled, retention (days),
    kms_key, mode."""
    found = (doc or {}).get("performance_insights") or {}
    return {
        "enabled": bool(found.get("enabled", False)),
        "retention": int(found.get("retention", 7)),
        "kms_key": found.get("kms_key"),
        "mode": found.get("mode", "standard"),
    }


@dataclass
class _Link:
    server: Any
    conn: psycopg.AsyncConnection[Any] | None = None
    not_before: float = 0.0
    statements: bool | None = None  # pg_stat_statements readable (None: not checked on this connection)
    previous: dict[str, tuple[float, float, float]] | None = None


class Sampler:
    """Samples the instances of a control plane that have Performance Insights on, into a store."""

    def __init__(
        self,
        control: Any,
        store: InsightsStore,
        *,
        admin_user: str,
        interval: float = 1.0,
        statements_every: int = 10,
        flush_every: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``control`` is the ControlPlane (``instances``, ``server``); ``admin_user`` the internal superuser,
        whose sessions (Borealis's own work) are not counted."""
        self.control = control
        self.store = store
        self.admin_user = admin_user
        self.interval = interval
        self.statements_every = statements_every
        self.flush_every = flush_every
        self.clock = clock
        self.ticks = 0
        self._links: dict[str, _Link] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop the loop, close the connections, write the store's minutes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for iid in list(self._links):
            await self._drop(iid)
        await asyncio.to_thread(self.store.close)

    def _targets(self) -> list[tuple[str, Any, int]]:
        out = []
        for inst in list(self.control.instances.values()):
            settings = pi_settings(inst)
            if not settings["enabled"]:
                continue
            server = self.control.server(inst["id"])
            if server is None or not server.status().running:
                continue
            out.append((inst["id"], server, settings["retention"]))
        return out

    async def _run(self) -> None:
        next_at = time.monotonic()
        flushed = time.monotonic()
        while True:
            try:
                targets = self._targets()
                wanted = {iid for iid, _, _ in targets}
                for iid in [i for i in self._links if i not in wanted]:
                    await self._drop(iid)
                for iid, _, days in targets:
                    self.store.set_retention(iid, days)
                at = int(self.clock())
                statements = self.ticks % self.statements_every == 0
                await asyncio.gather(*(self._sample(iid, server, at, statements) for iid, server, _ in targets))
                self.ticks += 1
                if time.monotonic() - flushed >= self.flush_every:
                    flushed = time.monotonic()
                    await asyncio.to_thread(self.store.flush)
                    # A deleted instance's samples go with it (its DbiResourceId is never used again).
                    known = {str(i["id"]) for i in list(self.control.instances.values())}
                    await asyncio.to_thread(self.store.keep_only, known)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad tick must not stop sampling
                log.exception("performance insights tick failed")
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a loaded machine): skip, do not burst
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def _drop(self, iid: str) -> None:
        link = self._links.pop(iid, None)
        if link is not None and link.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.conn.close(), _QUERY_TIMEOUT)

    async def _connect(self, iid: str, server: Any) -> _Link | None:
        link = self._links.get(iid)
        if link is not None and link.server is not server:
            await self._drop(iid)  # a restarted postgres: a new server object, a new connection
            link = None
        if link is None:
            link = self._links[iid] = _Link(server)
        if link.conn is not None and not link.conn.closed:
            return link
        if time.monotonic() < link.not_before:
            return None
        try:
            link.conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    server.internal_conninfo(user=self.admin_user),
                    autocommit=True,
                    application_name="borealis performance insights",
                ),
                _QUERY_TIMEOUT,
            )
        except Exception as exc:
            link.not_before = time.monotonic() + _RETRY
            log.debug("performance insights cannot connect to %s: %s", iid, exc)
            return None
        link.statements = None
        return link

    async def _sample(self, iid: str, server: Any, at: int, statements: bool) -> None:
        link = await self._connect(iid, server)
        if link is None or link.conn is None:
            return
        conn = link.conn
        try:
            cur = await asyncio.wait_for(conn.execute(ACTIVITY_QUERY), _QUERY_TIMEOUT)
            rows = await cur.fetchall()
            self.store.record(iid, at, list(self.sessions(rows)))
            if statements:
                await self._statements(iid, link, conn, at)
        except Exception as exc:
            log.debug("performance insights sample of %s failed: %s", iid, exc)
            link.not_before = time.monotonic() + _RETRY
            link.conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), _QUERY_TIMEOUT)

    def sessions(self, rows: Iterable[tuple[Any, ...]]) -> Iterable[Session]:
        """pg_stat_activity rows (:data:`ACTIVITY_QUERY`'s columns) as sessions, Borealis's own left out."""
        for user, user_id, db, db_id, app, host, wtype, wevent, query, query_id, state in rows:
            if user == self.admin_user:
                continue
            yield Session(
                user=user or "",
                user_id=int(user_id or 0),
                database=db or "",
                database_id=int(db_id or 0),
                application=app or "",
                host=host or "[local]",
                wait_event_type=wtype,
                wait_event=wevent,
                query=query or "",
                query_id=int(query_id) if query_id else None,
                state=state or "active",
            )

    @staticmethod
    async def _read_statements(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]] | None:
        """pg_stat_statements' rows by query id, or None when the relation is not the extension's own view."""
        row = await (await conn.execute(_STATEMENTS_SCHEMA)).fetchone()
        if row is None:
            return None
        schema = sql.Identifier(str(row[0]))
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '2s'")
            await conn.execute(sql.SQL("LOCK TABLE {}.pg_stat_statements IN ACCESS SHARE MODE").format(schema))
            genuine = await (await conn.execute(_STATEMENTS_GENUINE, (str(row[0]),))).fetchone()
            if not (genuine and genuine[0]):
                return None
            cur = await conn.execute(sql.SQL(_STATEMENTS_QUERY).format(schema))
            return list(await cur.fetchall())

    async def _statements(self, iid: str, link: _Link, conn: psycopg.AsyncConnection[Any], at: int) -> None:
        if link.statements is None:
            row = await (await asyncio.wait_for(conn.execute(_ENSURE_STATEMENTS), _QUERY_TIMEOUT)).fetchone()
            can_create, exists = bool(row and row[0]), bool(row and row[1])
            if can_create and not exists:
                await asyncio.wait_for(
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public"), 30
                )
                exists = True
            link.statements = exists
        if not link.statements:
            return
        found = await asyncio.wait_for(self._read_statements(conn), _QUERY_TIMEOUT)
        if found is None:
            link.statements = False  # not the extension's own view: never read it (on this connection)
            log.warning("performance insights: %s's pg_stat_statements is not the extension's; not read", iid)
            return
        now = {str(q): (float(c or 0), float(t or 0), float(r or 0)) for q, c, t, r in found}
        previous, link.previous = link.previous, now
        if previous is None:
            return  # the first reading is the baseline
        deltas: dict[str, tuple[float, float, float]] = {}
        for q, (calls, ms, rows) in now.items():
            before = previous.get(q, (0.0, 0.0, 0.0))
            delta = (calls - before[0], ms - before[1], rows - before[2])
            if delta[0] < 0:  # pg_stat_statements_reset(), or the entry was evicted and came back
                delta = (calls, ms, rows)
            if delta[0] > 0:
                deltas[q] = delta
        if deltas:
            self.store.record_statements(iid, at, deltas)
