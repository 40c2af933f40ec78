"""The proxy data path's owner: one :class:`ProxyRuntime` per proxy, listeners per endpoint, the janitor.

``ProxyManager.reconcile(name)`` brings the running listeners in line with the stored proxy (the registry
calls it on every change): an endpoint listens once its proxy has a target (on the target cluster's port,
at the endpoint's own loopback address). The janitor closes clients idle longer than IdleClientTimeout and
server connections idle in a pool for longer than a few minutes.

Each endpoint listener serves TLS with a certificate from the CA in ``DATA_DIR/ca`` (made on first start).
A borrow whose target is down (the writer rebooting or being replaced) waits for it within
ConnectionBorrowTimeout (:meth:`ProxyRuntime.acquire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from borealis import pgwire
from borealis.control import ControlPlane
from borealis.engine import Verifier

from ._auth import ScramKeys
from ._client import ClientConn
from ._pool import Pool
from ._registry import ProxyRegistry
from ._server import ServerConn, ServerError, tcp_login
from ._stats import REGISTRY, MetricsRegistry, ProxyStats
from ._tls import CertificateAuthority

__all__ = ["ProxyManager", "ProxyRuntime"]

log = logging.getLogger(__name__)

#: Server connections idle in a pool this long are closed (RDS Proxy closes unused ones eventually).
SERVER_IDLE_SECONDS = 300.0
_JANITOR_PERIOD = 1.0
#: Client states in which the client owes the next step (a startup packet, a TLS handshake, a password).
_LOGGING_IN = frozenset({"startup", "tls", "auth"})
#: Seconds a password PostgreSQL accepted over TCP lets pools open connections over the unix socket.
_VERIFY_TTL = 10.0

#: (instance id, host, port, unix socket directory or None): where a pool connects.
_Target = tuple[str, str, int, str | None]


class ProxyRuntime:
    """The live side of one proxy: its clients, its pools and its stats."""

    def __init__(self, manager: ProxyManager, name: str) -> None:
        self.manager = manager
        self.name = name
        self.stats: ProxyStats = manager.metrics.stats(name)
        self.clients: set[ClientConn] = set()
        self.pools: dict[tuple[str, str, str], Pool] = {}
        self.stats.in_transaction = lambda: sum(p.in_transaction() for p in self.pools.values())
        self.doc: dict[str, Any] = manager.registry.proxy(name)
        self._rr = itertools.count()
        #: role -> (control plane generation, candidate targets): what _target() resolved, kept until the
        #: control plane reports a change (its generation moves) or the proxy's record changes.
        self._targets: dict[str, tuple[int, list[_Target]]] = {}
        #: (role, user, database) -> pool: what current_pool() resolved, kept until routes_moved().
        self._pools: dict[tuple[str, str, str], Pool] = {}
        self.filters: tuple[str, ...] = ()
        #: ConnectionBorrowTimeout in seconds, as of the last set_doc() (read per queued borrow).
        self.borrow_seconds = 0.0
        # The topology tells us when routes may have moved (routes_moved()), so a borrow asks it nothing.
        # Without one (test doubles of the control plane) nothing is kept.
        topology = getattr(manager.control, "topology", None)
        self._topology: Any = topology if hasattr(topology, "watch") else None
        if self._topology is not None:
            self._topology.watch(self.routes_moved)
        self.set_doc(self.doc)

    def set_doc(self, doc: dict[str, Any]) -> None:
        """The proxy's stored record changed: use it, and resolve targets again."""
        self.doc = doc
        config = self.config()
        self.filters = tuple(config.get("SessionPinningFilters") or ())
        self.borrow_seconds = float(config["ConnectionBorrowTimeout"])
        self.routes_moved()
        for pool in self.pools.values():
            pool.limits_changed()  # MaxConnectionsPercent, MaxIdleConnectionsPercent may have moved
            if pool.lane is not None:
                pool.lane.timeout = self.borrow_seconds  # (what the Queries the C path parks may wait)

    def routes_moved(self) -> None:
        """A target may have moved (the topology's generation moved, or the proxy's record changed): every
        kept route is looked up again on its next borrow."""
        self._targets.clear()
        self._pools.clear()
        for pool in self.pools.values():
            pool.set_routed(False)

    def config(self) -> dict[str, Any]:
        """The target group's ConnectionPoolConfig."""
        pool: dict[str, Any] = self.doc["target_group"]["pool"]
        return pool

    def borrow_timeout(self) -> float:
        """ConnectionBorrowTimeout, seconds."""
        return self.borrow_seconds

    def auth_for(self, user: str) -> tuple[str, str, str] | None:
        """(ClientPasswordAuthType, password, IAMAuth) of the proxy's secret for ``user``, or None."""
        for entry in self.doc["auth"]:
            try:
                secret = self.manager.secrets.secret_json(entry["SecretArn"])
            except Exception:
                continue
            if secret.get("username") == user and secret.get("password") is not None:
                return entry["ClientPasswordAuthType"], str(secret["password"]), entry.get("IAMAuth") or "DISABLED"
        return None

    def _target(self, role: str) -> _Target:
        """(instance id, host, port, unix socket directory or None) of the postgres that serves ``role`` now.

        Resolved from the control plane's records once, then kept until its ``generation`` moves (a writer
        or instance change, a server started or lost); readers are taken in turn.
        """
        generation = getattr(self.manager.control, "generation", None)
        cached = self._targets.get(role)
        if cached is not None and generation is not None and cached[0] == generation:
            found = cached[1]
        else:
            found = self._resolve(role)
            if generation is not None:
                self._targets[role] = (generation, found)
        if len(found) == 1:
            return found[0]
        return found[next(self._rr) % len(found)]

    def _resolve(self, role: str) -> list[_Target]:
        cid = self.doc["target_group"].get("cluster")
        if not cid:
            raise ServerError("this RDS Proxy has no registered target", "08001")
        topology = self.manager.control.topology
        if role == "READ_ONLY":
            members = topology.readers(cid)
            if not members:
                # Waiting helps only if some reader exists and is coming back (rebooting, starting).
                view = topology.cluster(cid)
                raise ServerError(
                    "the read-only proxy endpoint has no available reader instance",
                    "08001",
                    transient=bool(view and view.readers),
                )
        else:
            writer = topology.writer(cid)
            if writer is None:
                raise ServerError(f"the DB cluster {cid} has no writer instance", "08001")
            members = (writer,)
        out = []
        for member in members:
            if not member.ready or member.host is None or member.port is None:
                raise ServerError(f"the DB instance {member.id} is not running", "08001")
            socket_dir = None if member.socket_dir is None else str(member.socket_dir)
            out.append((member.id, member.host, member.port, socket_dir))
        return out

    def current_pool(self, role: str, user: str, database: str) -> Pool:
        """:meth:`pool_for`, kept until :meth:`routes_moved` (the borrow path).

        A pool kept here is marked ``routed``: a client that borrowed from it borrows from it again without
        asking (see ``ClientConn._borrow_now``) until the mark is taken away.
        """
        key = (role, user, database)
        cached = self._pools.get(key)
        if cached is not None and not cached.closed:
            return cached
        pool = self.pool_for(role, user, database)
        if self._topology is not None and role != "READ_ONLY":  # readers are taken in turn, per borrow
            self._pools[key] = pool
            pool.set_routed(True)
        return pool

    async def acquire(self, role: str, user: str, database: str) -> tuple[Pool, ServerConn]:
        """Borrow a server connection for ``role``, waiting within ConnectionBorrowTimeout for a target.

        When the writer is unavailable (rebooting, restarting, being replaced by a failover), the borrow is
        retried with a short back-off until the deadline, as RDS Proxy holds new transactions while the
        cluster's writer changes; a refusal that would only repeat (a wrong password) is raised at once.
        On the deadline the last error is raised: it says why no target was reachable.
        """
        deadline = time.monotonic() + self.borrow_timeout()
        delay = 0.05
        while True:
            try:
                pool = self.current_pool(role, user, database)
                return pool, await pool.acquire(max(0.0, deadline - time.monotonic()))
            except ServerError as exc:
                remaining = deadline - time.monotonic()
                if not exc.transient or remaining <= 0 or self.manager.closing:
                    raise
                log.debug("proxy %s waits for its %s target: %s", self.name, role, exc)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def pool_for(self, role: str, user: str, database: str) -> Pool:
        """The pool for the current target of ``role``, created on first use."""
        iid, host, port, socket_dir = self._target(role)
        key = (iid, user, database)
        pool = self.pools.get(key)
        if pool is None or pool.host != host or pool.port != port or pool.socket_dir != socket_dir:
            if pool is not None:
                pool.close()
            pool = self.pools[key] = Pool(
                host=host,
                port=port,
                user=user,
                database=database,
                password=lambda: self._password(user),
                config=self.config,
                stats=self.stats,
                max_connections=self.manager.max_connections,
                key=iid,
                socket_dir=socket_dir,
                verifier=self.manager.verifier,
            )
        return pool

    def _password(self, user: str) -> str | None:
        found = self.auth_for(user)
        return found[1] if found else None

    def close(self) -> None:
        """Disconnect every client and close every pool."""
        if self._topology is not None:
            self._topology.unwatch(self.routes_moved)
        for client in list(self.clients):
            client.close()
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()


class ProxyManager:
    """Every proxy's runtime and listeners, in the Borealis process."""

    def __init__(
        self,
        control: ControlPlane,
        secrets: Any,
        *,
        secret_for: Callable[[str], str | None] | None = None,
        metrics: MetricsRegistry = REGISTRY,
    ) -> None:
        self.control = control
        self.secrets = secrets
        #: The secret access key of a key id (IAM auth tokens are signed with the API's access keys).
        self.secret_for: Callable[[str], str | None] = secret_for or (lambda key_id: None)
        #: The region IAM auth tokens must be signed for (the one the API serves).
        self.region: str = control.settings.region
        #: Seconds a client may take from connecting to having authenticated (authentication_timeout).
        self.login_timeout = float(control.settings.login_timeout)
        #: The CA of the proxy endpoints' certificates, ``DATA_DIR/ca/root.crt``; made in :meth:`start`.
        self.ca = CertificateAuthority(control.settings.data_dir / "ca")
        self.metrics = metrics
        self.registry = ProxyRegistry(control)
        self.registry.on_change = self._changed
        self.runtimes: dict[str, ProxyRuntime] = {}
        self.listeners: dict[str, tuple[str, int, asyncio.Server]] = {}
        self.scram_keys = ScramKeys()
        #: max_connections per target instance, read once.
        self.max_connections: dict[str, int] = {}
        #: Vouches for the secrets' passwords before pools connect over the targets' unix sockets (None: TCP).
        self.verifier = Verifier(_VERIFY_TTL, login=tcp_login) if control.settings.proxy_unix_socket else None
        self._keys: dict[int, ClientConn] = {}
        self._stmt_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._janitor: asyncio.Task[None] | None = None
        self.closing = False
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Make (or load) the CA, bring back every stored proxy's listeners and start the janitor."""
        self.ca.ensure()
        for doc in self.registry.proxies.values():
            await self.reconcile(doc["name"])
        self._janitor = asyncio.ensure_future(self._janitor_loop())

    async def close(self) -> None:
        """Stop listening, disconnect everyone."""
        self.closing = True
        if self._janitor is not None:
            self._janitor.cancel()
        for name in list(self.listeners):
            await self._stop_listener(name)
        for rt in self.runtimes.values():
            rt.close()
        for task in list(self._tasks):
            task.cancel()

    def _changed(self, name: str) -> None:
        if self.closing:
            return
        task = asyncio.ensure_future(self.reconcile(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reconcile(self, name: str) -> None:
        """Make the listeners and runtime of proxy ``name`` match its stored record."""
        async with self._lock:
            doc = self.registry.proxies.get(name)
            if doc is None:
                for ep_name, (proxy, _, _) in list(self.listeners.items()):
                    if proxy == name:
                        await self._stop_listener(ep_name)
                rt = self.runtimes.pop(name, None)
                if rt is not None:
                    rt.close()
                self.metrics.drop(name)
                return
            rt = self.runtimes.get(name)
            if rt is None:
                rt = self.runtimes[name] = ProxyRuntime(self, name)
            old_cluster = rt.doc["target_group"].get("cluster")
            rt.set_doc(doc)
            if old_cluster != doc["target_group"].get("cluster"):
                for pool in rt.pools.values():
                    pool.close()
                rt.pools.clear()
            wanted = {}
            for ep in self.registry.proxy_endpoints(name):
                port = self.registry.listen_port(ep)
                if port is not None:
                    wanted[ep["name"]] = (ep, port)
            for ep_name, (proxy, port, _) in list(self.listeners.items()):
                if proxy == name and (ep_name not in wanted or wanted[ep_name][1] != port):
                    await self._stop_listener(ep_name)
            for ep_name, (ep, port) in wanted.items():
                if ep_name not in self.listeners:
                    await self._start_listener(rt, ep, port)
            self.registry.set_status(name, "available")

    async def _start_listener(self, rt: ProxyRuntime, ep: dict[str, Any], port: int) -> None:
        loop = asyncio.get_running_loop()
        role = ep["role"]
        host = ep["host"]
        try:
            tls = self.ca.server_context(host)
        except (OSError, ValueError) as exc:
            log.error("proxy endpoint %s serves no TLS: %s", ep["name"], exc)
            tls = None
        try:
            server = await loop.create_server(
                lambda: ClientConn(rt, role, host, tls), host, port, reuse_address=True, backlog=4096
            )
        except OSError as exc:
            log.error("proxy endpoint %s cannot listen on %s:%s: %s", ep["name"], ep["host"], port, exc)
            return
        self.listeners[ep["name"]] = (rt.name, port, server)
        log.info("proxy endpoint %s listening on %s:%s", ep["name"], ep["host"], port)

    async def _stop_listener(self, ep_name: str) -> None:
        entry = self.listeners.pop(ep_name, None)
        if entry is None:
            return
        _, _, server = entry
        server.close()
        rt = self.runtimes.get(entry[0])
        if rt is not None:
            for client in list(rt.clients):
                client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    # ------------------------------------------------------------------------------------------ cancel keys

    def new_key(self, client: ClientConn) -> tuple[int, bytes]:
        """A BackendKeyData of the proxy's own for ``client`` (its process id is unique among clients)."""
        while True:
            pid = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
            if pid and pid not in self._keys:
                self._keys[pid] = client
                return pid, os.urandom(4)

    def forget_key(self, pid: int, client: ClientConn) -> None:
        """The client left."""
        if self._keys.get(pid) is client:
            del self._keys[pid]

    def cancel(self, pid: int, secret: bytes) -> None:
        """A CancelRequest with the proxy's key: cancel what that client runs on its server connection."""
        client = self._keys.get(pid)
        if client is None or client.key[1] != secret:
            return  # as PostgreSQL: a wrong key is ignored silently
        if client.server is None:
            client.settle_link()  # a connection the pool's C lane lent it: Python's books learn of it first
        server = client.server
        if server is None or server.backend_key is None or client.pool is None:
            return
        spid, skey = server.backend_key
        pool = client.pool
        packet = pgwire.encode(pgwire.CancelRequest(spid, skey))

        async def send() -> None:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(pool.host, pool.port)
                writer.write(packet)
                await writer.drain()
                writer.close()

        task = asyncio.ensure_future(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def statement_name(self) -> str:
        """A server-side prepared statement name no other statement has."""
        return f"_bp{next(self._stmt_ids)}"

    # ------------------------------------------------------------------------------------------ janitor

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(_JANITOR_PERIOD)
            try:
                self.sweep()
            except Exception:
                log.exception("proxy janitor failed")

    def sweep(self) -> None:
        """Close idle clients past IdleClientTimeout, clients that have not authenticated within the login
        timeout (however many bytes they trickle in), and pooled connections idle too long."""
        now = time.monotonic()
        login_deadline = now - self.login_timeout
        for rt in self.runtimes.values():
            limit = float(rt.doc["idle_client_timeout"])
            for client in list(rt.clients):
                if now - client.last_seen() > limit and not client.busy and not client.parked():
                    client.close()
                elif client.state in _LOGGING_IN and client.connected_at < login_deadline:
                    client.login_timed_out()
            for pool in rt.pools.values():
                pool.reap(SERVER_IDLE_SECONDS)
