"""The control plane: clusters and instances, written to the store first and then made so.

Rules:
- Every API call validates, writes the new desired state (with a transitional status such as ``creating`` or
  ``stopping``) to the store, kicks the cluster's reconciler and returns at once, as AWS does.
- One reconciler task per cluster drives the running processes towards the stored state, one step at a time,
  and moves statuses to their resting values (``available``, ``stopped``) or removes deleted records. A kick
  while it runs makes it run once more, so no change is lost.
- A cluster owns its storage volume (``clusters/<id>/volume``): instances come and go, the data stays, as
  with Aurora's shared cluster volume. The writer instance runs postgres on that volume.
- On start-up (after a clean stop or a crash) every cluster is simply reconciled again: the steps are
  idempotent, so a half-done creation or deletion is finished, and servers left running are restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from borealis.config import Settings
from borealis.control._listener import EndpointUnavailable, IamLogin, Listener
from borealis.engine import Binaries, PostgresServer
from borealis.store import Sealer, Store

__all__ = ["ADMIN_USER", "ControlPlane", "Event", "max_connections_for"]

log = logging.getLogger(__name__)

ADMIN_USER = "rdsadmin"
"""The internal superuser Borealis manages clusters with, as Aurora's own ``rdsadmin``."""

RUNNING_STATES = frozenset({"creating", "available", "rebooting", "starting"})


def _own_settings(cluster: dict[str, Any]) -> dict[str, str]:
    """The settings Borealis gives every postgres of a cluster."""
    return {"max_connections": str(max_connections_for(cluster["scaling"]["max"]))}


def max_connections_for(max_acu: float) -> int:
    """Aurora PostgreSQL's default max_connections for a Serverless v2 maximum capacity.

    AWS derives it from the memory of the maximum ACU (about 2 GiB an ACU): 1 ACU gives 189, 4 give 823,
    8 give 1,669, 16 give 3,360, and 32 or more give 5,000; values in between are interpolated.
    """
    points = [(0.5, 90.0), (1.0, 189.0), (4.0, 823.0), (8.0, 1669.0), (16.0, 3360.0), (32.0, 5000.0)]
    if max_acu <= points[0][0]:
        return int(points[0][1])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if max_acu <= x1:
            return round(y0 + (y1 - y0) * (max_acu - x0) / (x1 - x0))
    return 5000


@dataclass(frozen=True)
class Event:
    """Progress of a long operation, for the CLI and the logs."""

    cluster: str
    instance: str | None
    message: str


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class ControlPlane:
    """Clusters and instances: their records, their postgres servers and their endpoint listeners."""

    def __init__(self, settings: Settings, store: Store, sealer: Sealer, binaries: Binaries) -> None:
        self.settings = settings
        self.store = store
        self.sealer = sealer
        self.binaries = binaries
        self.clusters = store.table("clusters")
        self.instances = store.table("instances")
        self.root = settings.data_dir / "clusters"
        self.on_event: Callable[[Event], None] = lambda e: None
        self.secret_value: Callable[[str], dict[str, Any]] = lambda arn: {}
        self.delete_secret: Callable[[str], None] = lambda arn: None
        self.extra_ports: Callable[[], set[int]] = set
        self.endpoint_tls: Callable[[str], ssl.SSLContext | None] = lambda host: None
        self.access_key_secret: Callable[[str], str | None] = lambda key_id: None
        self.cluster_parameter: Callable[[dict[str, Any], str], str | None] = lambda cluster, name: None
        """A parameter's value in a cluster's DB cluster parameter group (None: the default)."""
        """The secret access key of an access key id: IAM auth tokens at the endpoints are signed with them."""
        """The TLS context of an endpoint whose host string is given (certificates from Borealis's CA)."""
        self.extra_settings: Callable[[dict[str, Any], dict[str, Any]], dict[str, str]] = lambda cluster, inst: {}
        """Postgres settings an instance runs with on top of Borealis' own (its parameter groups' values), asked
        each time its server starts and by :meth:`reconfigure`."""
        self.before_start: Callable[[dict[str, Any], dict[str, Any], PostgresServer], None] = lambda c, i, s: None
        """Called just before an instance's postgres starts (the scaler writes its capacity settings)."""
        """Ports other parts (proxy endpoints off loopback) hold, so no endpoint gets one twice."""
        self._servers: dict[str, PostgresServer] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, Listener] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._background: set[asyncio.Future[None]] = set()
        self._closing = False
        self._changed = asyncio.Condition()
        self.generation = 0
        """Bumped on every change that may move a cluster's targets (a record written through the control
        plane, a reconcile pass, a postgres started, stopped or lost), so readers such as the proxy can keep
        what they resolved and look again only when it differs."""

    # ----------------------------------------------------------------------------------------- queries

    @functools.cached_property
    def engine_version(self) -> str:
        """The engine version the binaries run, as Aurora writes it (``16.9``)."""
        out = subprocess.run(
            [str(self.binaries.tool("postgres")), "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"(\d+)\.(\d+)", out)
        return f"{match.group(1)}.{match.group(2)}" if match else str(self.binaries.version)

    def cluster(self, ident: str) -> dict[str, Any] | None:
        """The stored record of a cluster."""
        return self.clusters.get(ident)

    def instance(self, ident: str) -> dict[str, Any] | None:
        """The stored record of an instance."""
        return self.instances.get(ident)

    def cluster_instances(self, cluster_id: str) -> list[dict[str, Any]]:
        """The instances of a cluster, oldest first."""
        return [i for i in self.instances.values() if i["cluster"] == cluster_id]

    def writer_of(self, cluster_id: str) -> dict[str, Any] | None:
        """The writer instance of a cluster, if it has one."""
        for inst in self.cluster_instances(cluster_id):
            if inst["role"] == "writer" and inst["status"] != "deleting":
                return inst
        return None

    def server(self, instance_id: str) -> PostgresServer | None:
        """The running postgres of an instance, if it runs."""
        return self._servers.get(instance_id)

    def used_ports(self) -> set[int]:
        """Every endpoint port given out so far."""
        ports = {c["port"] for c in self.clusters.values()}
        ports |= {c["reader_port"] for c in self.clusters.values()}
        ports |= {i["port"] for i in self.instances.values()}
        return ports | self.extra_ports()

    def allocate_port(self, start: int | None = None, *, taken: frozenset[int] = frozenset()) -> int:
        """The first port from ``start`` (the port base) that no endpoint uses and the OS has free."""
        used = self.used_ports() | taken
        port = self.settings.port_base if start is None else start
        while port in used or not _port_free(self.settings.host, port):
            port += 1
            if port > 65535:
                raise RuntimeError("no free port left above the port base")
        return port

    def reader_address(self, port: int) -> tuple[str, int]:
        """Where a cluster's reader endpoint listens.

        On AWS the reader endpoint has its own host name and the cluster's port. On the default loopback
        host we do the same with a second loopback address (127.0.0.2), so ``ReaderEndpoint`` + ``Port``
        connects as it does on AWS; on any other host the reader gets a port of its own.
        """
        if self.settings.host == "127.0.0.1" and _port_free("127.0.0.2", port):
            return "127.0.0.2", port
        return self.settings.host, self.allocate_port(port + 1, taken=frozenset({port}))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some state change; False on timeout."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            return True

    # ----------------------------------------------------------------------------------------- changes

    def put_cluster(self, doc: dict[str, Any]) -> None:
        """Store a cluster record and reconcile it."""
        self.clusters.put(doc["id"], doc)
        self.kick(doc["id"])

    def put_instance(self, doc: dict[str, Any]) -> None:
        """Store an instance record and reconcile its cluster."""
        self.instances.put(doc["id"], doc)
        self.kick(doc["cluster"])

    def kick(self, cluster_id: str) -> None:
        """Make the cluster's reconciler run (again)."""
        self.generation += 1
        if self._closing:
            return
        self._dirty.add(cluster_id)
        task = self._tasks.get(cluster_id)
        if task is None or task.done():
            self._tasks[cluster_id] = asyncio.ensure_future(self._reconcile_loop(cluster_id))
        self._background.add(asyncio.ensure_future(self._notify()))
        self._background = {t for t in self._background if not t.done()}

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def start(self) -> None:
        """Bring every stored cluster back (after a restart or a crash)."""
        for doc in self.clusters.values():
            self.kick(doc["id"])

    async def close(self) -> None:
        """Stop every server and listener; the stored state is kept for the next start."""
        self._closing = True
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for listener in list(self._listeners.values()):
            await listener.close()
        self._listeners.clear()
        await asyncio.gather(*(self._stop_server(i) for i in list(self._servers)), return_exceptions=True)

    def _emit(self, cluster: str, instance: str | None, message: str) -> None:
        log.info("%s%s: %s", cluster, f"/{instance}" if instance else "", message)
        try:
            self.on_event(Event(cluster, instance, message))
        except Exception:  # a progress display must never break the control plane
            log.exception("progress callback failed")

    # ----------------------------------------------------------------------------------------- reconcile

    async def _reconcile_loop(self, cluster_id: str) -> None:
        while cluster_id in self._dirty and not self._closing:
            self._dirty.discard(cluster_id)
            try:
                await self._reconcile(cluster_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("reconciling cluster %s failed", cluster_id)
                self._emit(cluster_id, None, f"error: {exc}")
                await asyncio.sleep(1.0)
                if self.clusters.get(cluster_id) is not None:
                    self._mark_failed(cluster_id, str(exc))
            self.generation += 1
            await self._notify()

    def _mark_failed(self, cluster_id: str, reason: str) -> None:
        doc = self.clusters.get(cluster_id)
        if doc is None:
            return
        if doc["status"] == "creating":
            doc["status"] = "failed"
            self.clusters.put(cluster_id, doc)
        for inst in self.cluster_instances(cluster_id):
            if inst["status"] in ("creating", "rebooting", "starting"):
                inst["status"] = "failed"
                self.instances.put(inst["id"], inst)

    async def _reconcile(self, cluster_id: str) -> None:
        doc = self.clusters.get(cluster_id)
        if doc is None:
            return
        status = doc["status"]
        if status == "deleting":
            await self._delete_cluster(doc)
            return
        if status == "creating":
            await self._ensure_volume(doc)
        await self._ensure_listeners(doc)

        stop_all = status in ("stopping", "stopped")
        for inst in self.cluster_instances(cluster_id):
            if inst["status"] == "deleting":
                await self._delete_instance(inst)
            elif stop_all:
                await self._stop_server(inst["id"])
                if inst["status"] != "stopped":
                    inst["status"] = "stopped"
                    self.instances.put(inst["id"], inst)
            elif inst["status"] in RUNNING_STATES or inst["status"] == "stopped":
                await self._ensure_instance(doc, inst)

        doc = self.clusters.get(cluster_id) or doc
        if doc["status"] in ("creating", "starting", "resetting-master-credentials"):
            doc["status"] = "available"
            self.clusters.put(cluster_id, doc)
            self._emit(cluster_id, None, "cluster available")
        elif doc["status"] == "stopping":
            doc["status"] = "stopped"
            self.clusters.put(cluster_id, doc)
            self._emit(cluster_id, None, "cluster stopped")

    def _volume(self, doc: dict[str, Any]) -> Path:
        return self.root / str(doc["id"]) / "volume"

    def _instance_dir(self, inst: dict[str, Any]) -> Path:
        return self.root / str(inst["cluster"]) / "instances" / str(inst["id"])

    async def _ensure_volume(self, doc: dict[str, Any]) -> None:
        volume = self._volume(doc)
        # The port is only a placeholder in the config file: every start passes the instance's real one.
        server = PostgresServer(volume, self.binaries, port=5432, host="127.0.0.1", log_dir=volume.parent / "log")
        if server.is_initialized():
            return
        if volume.exists():  # a creation interrupted half-way: start it over
            shutil.rmtree(volume)
        self._emit(doc["id"], None, "initialising the cluster volume (initdb)")
        volume.parent.mkdir(parents=True, exist_ok=True)
        admin_password = self.sealer.open(doc["admin_password"])
        await server.initdb(superuser=ADMIN_USER, password=admin_password, settings=_own_settings(doc))

    async def _ensure_listeners(self, doc: dict[str, Any]) -> None:
        cid = doc["id"]
        wanted = {
            f"cluster/{cid}/writer": (self.settings.host, doc["port"], self._writer_resolver(cid)),
            f"cluster/{cid}/reader": (doc["reader_host"], doc["reader_port"], self._reader_resolver(cid)),
        }
        for inst in self.cluster_instances(cid):
            if inst["status"] != "deleting":
                wanted[f"instance/{inst['id']}"] = (
                    self.settings.host,
                    inst["port"],
                    self._instance_resolver(inst["id"]),
                )
        for key, (host, port, resolver) in wanted.items():
            current = self._listeners.get(key)
            if current is not None and (current.host, current.port) == (host, port):
                continue
            if current is not None:
                await current.close()
            listener = Listener(
                key,
                host,
                port,
                resolver,
                login_timeout=self.settings.login_timeout,
                tls=self.endpoint_tls(host),
                force_ssl=self._force_ssl(cid),
                iam=IamLogin(
                    enabled=self._iam_enabled(cid),
                    socket_for=self._internal_socket,
                    region=self.settings.region,
                    secret_for=self.access_key_secret,
                ),
            )
            await listener.start()
            self._listeners[key] = listener

    def _iam_enabled(self, cid: str) -> Callable[[], bool]:
        def enabled() -> bool:
            doc = self.clusters.get(cid)
            return bool(doc and doc.get("iam_auth"))

        return enabled

    def _internal_socket(self, host: str, port: int) -> str | None:
        """The unix socket of the instance listening on (host, port): the login path only the OS user
        running Borealis has (the socket directory is its own, mode 0700)."""
        for server in self._servers.values():
            if server.port == port and server.host == host:
                return str(server.socket_dir / f".s.PGSQL.{server.port}")
        return None

    def _force_ssl(self, cid: str) -> Callable[[], bool]:
        def force_ssl() -> bool:
            doc = self.clusters.get(cid)
            if doc is None:
                return False
            return (self.cluster_parameter(doc, "rds.force_ssl") or "off").lower() in ("1", "on", "true")

        return force_ssl

    def _cluster_ready(self, cid: str) -> dict[str, Any]:
        doc = self.clusters.get(cid)
        if doc is None:
            raise EndpointUnavailable(f"DB cluster {cid} does not exist", "08006")
        if doc["status"] in ("stopped", "stopping"):
            raise EndpointUnavailable(f"DB cluster {cid} is stopped", "57P03")
        return doc

    def _target(self, inst: dict[str, Any] | None, what: str) -> tuple[str, int]:
        if inst is None:
            raise EndpointUnavailable(f"{what} has no DB instance to serve it", "57P03")
        server = self._servers.get(inst["id"])
        if server is None or inst["status"] != "available":
            raise EndpointUnavailable(f"DB instance {inst['id']} is not available (status: {inst['status']})", "57P03")
        return server.host, server.port

    def _writer_resolver(self, cid: str) -> Callable[[], Any]:
        async def resolve() -> tuple[str, int]:
            self._cluster_ready(cid)
            return self._target(self.writer_of(cid), f"the writer endpoint of {cid}")

        return resolve

    def _reader_resolver(self, cid: str) -> Callable[[], Any]:
        async def resolve() -> tuple[str, int]:
            self._cluster_ready(cid)
            readers = [
                i
                for i in self.cluster_instances(cid)
                if i["role"] == "reader" and i["status"] == "available" and i["id"] in self._servers
            ]
            if readers:  # spread connections across readers, as the reader endpoint's DNS does
                readers.sort(key=lambda i: self._listener_load(i["id"]))
                return self._target(readers[0], f"the reader endpoint of {cid}")
            # With no reader, Aurora's reader endpoint connects to the writer.
            return self._target(self.writer_of(cid), f"the reader endpoint of {cid}")

        return resolve

    def _listener_load(self, instance_id: str) -> int:
        listener = self._listeners.get(f"instance/{instance_id}")
        return 0 if listener is None else listener.client_connections

    def _instance_resolver(self, iid: str) -> Callable[[], Any]:
        async def resolve() -> tuple[str, int]:
            inst = self.instances.get(iid)
            if inst is None:
                raise EndpointUnavailable(f"DB instance {iid} does not exist", "08006")
            self._cluster_ready(inst["cluster"])
            return self._target(inst, f"DB instance {iid}")

        return resolve

    async def _ensure_instance(self, cluster: dict[str, Any], inst: dict[str, Any]) -> None:
        iid = inst["id"]
        running = self._servers.get(iid)
        restart = inst["status"] == "rebooting"
        if running is not None and running.status().running and not restart:
            await self._apply_master_password(cluster, inst)
            if inst["status"] != "available":
                inst["status"] = "available"
                self.instances.put(iid, inst)
                self._emit(cluster["id"], iid, "instance available")
            return
        if running is not None:
            self._emit(cluster["id"], iid, "restarting postgres")
            await self._stop_server(iid)
        if inst["status"] == "stopped":
            inst["status"] = "starting"
            self.instances.put(iid, inst)
        self._emit(cluster["id"], iid, "starting postgres")
        started = time.monotonic()
        volume = self._volume(cluster)
        log_dir = self._instance_dir(inst) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port("127.0.0.1")
        server = PostgresServer(volume, self.binaries, port=port, host="127.0.0.1", log_dir=log_dir)
        server.configure({**_own_settings(cluster), **self.extra_settings(cluster, inst)})
        self.before_start(cluster, inst, server)
        await server.start()
        self._servers[iid] = server
        self.generation += 1
        self._watchers[iid] = asyncio.ensure_future(self._watch(cluster["id"], iid, server))
        self._emit(cluster["id"], iid, f"postgres ready in {time.monotonic() - started:.1f}s")
        await self._bootstrap(cluster, server)
        await self._apply_master_password(cluster, inst)
        inst = self.instances.get(iid) or inst
        inst["status"] = "available"
        inst["pg_port"] = port
        self.instances.put(iid, inst)
        self.generation += 1
        self._emit(cluster["id"], iid, "instance available")

    async def reconfigure(self, instance_id: str) -> bool:
        """Rewrite a running instance's settings (:attr:`extra_settings` included) and reload them.

        False if its postgres is not running (it gets them when it starts).
        """
        inst = self.instances.get(instance_id)
        server = self._servers.get(instance_id)
        cluster = self.clusters.get(inst["cluster"]) if inst is not None else None
        if inst is None or cluster is None or server is None or not server.status().running:
            return False
        server.configure({**_own_settings(cluster), **self.extra_settings(cluster, inst)})
        await server.reload()
        return True

    async def _watch(self, cid: str, iid: str, server: PostgresServer) -> None:
        """Restart a postgres that exits on its own (a crash), as RDS restarts a failed instance."""
        code = await server.wait_exit()
        if self._servers.get(iid) is server and not self._closing:
            log.warning("postgres of %s exited unexpectedly with code %s; restarting", iid, code)
            del self._servers[iid]
            self.kick(cid)  # (bumps the generation)

    async def _stop_server(self, iid: str) -> None:
        server = self._servers.pop(iid, None)
        self.generation += 1
        watcher = self._watchers.pop(iid, None)
        if watcher is not None:
            watcher.cancel()
        listener = self._listeners.get(f"instance/{iid}")
        if listener is not None:
            listener.disconnect_all()
        if server is not None:
            await server.stop()

    async def _admin(self, server: PostgresServer, cluster: dict[str, Any]) -> psycopg.AsyncConnection[Any]:
        password = self.sealer.open(cluster["admin_password"])
        return await psycopg.AsyncConnection.connect(server.dsn(user=ADMIN_USER, password=password), autocommit=True)

    async def _bootstrap(self, cluster: dict[str, Any], server: PostgresServer) -> None:
        """Create the master user, Aurora's predefined roles and the initial database, once."""
        if cluster.get("bootstrapped"):
            return
        self._emit(cluster["id"], None, "creating the master user and database")
        master = cluster["master_username"]
        conn = await self._admin(server, cluster)
        async with conn:
            for role in ("rds_superuser", "rds_iam", "rds_replication", "rds_password"):
                exists = await (await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])).fetchone()
                if not exists:
                    await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            exists = await (await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [master])).fetchone()
            if not exists:
                # The master user is a real superuser here (on Aurora it holds rds_superuser), so that
                # everything a developer does on Aurora, CREATE EXTENSION included, works locally.
                await conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN SUPERUSER CREATEDB CREATEROLE").format(sql.Identifier(master))
                )
                await conn.execute(
                    sql.SQL("GRANT rds_superuser TO {} WITH ADMIN OPTION").format(sql.Identifier(master))
                )
            dbname = cluster.get("database_name")
            if dbname and dbname != "postgres":
                exists = await (await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname])).fetchone()
                if not exists:
                    await conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(master))
                    )
        fresh = self.clusters.get(cluster["id"]) or cluster
        fresh["bootstrapped"] = True
        fresh["password_applied"] = -1
        self.clusters.put(cluster["id"], fresh)
        cluster.update(fresh)

    def master_password(self, cluster: dict[str, Any]) -> str | None:
        """The master user's current password (from the managed secret or the sealed record)."""
        if cluster.get("master_secret_arn"):
            value = self.secret_value(cluster["master_secret_arn"])
            password = value.get("password")
            return password if isinstance(password, str) else None
        sealed = cluster.get("master_password")
        return self.sealer.open(sealed) if sealed else None

    async def _apply_master_password(self, cluster: dict[str, Any], inst: dict[str, Any]) -> None:
        cluster = self.clusters.get(cluster["id"]) or cluster
        if cluster.get("password_applied") == cluster.get("password_version", 0):
            return
        server = self._servers.get(inst["id"])
        password = self.master_password(cluster)
        if server is None or password is None:
            return
        conn = await self._admin(server, cluster)
        async with conn:
            # A password cannot be a bind parameter in ALTER ROLE; sql.Literal quotes it safely. Postgres
            # would write the statement to its log if it failed, so statement logging is off for it.
            await conn.execute("SET log_min_error_statement TO panic")
            await conn.execute("SET log_statement TO none")
            await conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(cluster["master_username"]), sql.Literal(password)
                )
            )
        cluster["password_applied"] = cluster.get("password_version", 0)
        self.clusters.put(cluster["id"], cluster)

    async def _delete_instance(self, inst: dict[str, Any]) -> None:
        await self._stop_server(inst["id"])
        listener = self._listeners.pop(f"instance/{inst['id']}", None)
        if listener is not None:
            await listener.close()
        shutil.rmtree(self._instance_dir(inst), ignore_errors=True)
        self.instances.delete(inst["id"])
        self._emit(inst["cluster"], inst["id"], "instance deleted")

    async def _delete_cluster(self, doc: dict[str, Any]) -> None:
        cid = doc["id"]
        for inst in self.cluster_instances(cid):
            await self._delete_instance(inst)
        for key in (f"cluster/{cid}/writer", f"cluster/{cid}/reader"):
            listener = self._listeners.pop(key, None)
            if listener is not None:
                await listener.close()
        shutil.rmtree(self.root / cid, ignore_errors=True)
        if doc.get("master_secret_arn"):
            try:
                self.delete_secret(doc["master_secret_arn"])
            except Exception:
                log.exception("deleting the master secret of %s failed", cid)
        self.clusters.delete(cid)
        self._emit(cid, None, "cluster deleted")
