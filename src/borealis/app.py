"""Wires the parts together for `borealis up`: store, keys, secrets, engine, control plane, HTTP front.

The app runs in the foreground on one event loop (uvloop where available), with worker processes
that share the API port and serve the Data API (``--workers``; see "workers" below). It owns a lock on the data
directory, so two Borealis processes never manage the same clusters, and a small ``borealis.json`` there
that tells the other commands (`borealis env`, `status`, `psql`) where the running API is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

from borealis import pgwire
from borealis.aws import AWSError, Gateway, HttpLimits, HttpServer, RequestContext
from borealis.config import Settings
from borealis.console import Console
from borealis.control import ADMIN_USER, Address, ControlPlane, Event, Topology, max_connections_for, stored_views
from borealis.dataapi import DataApi, transaction_owner
from borealis.engine import Binaries, Cgroups, allowed_overlay
from borealis.iam import AccessKeys, write_credentials_file
from borealis.insights import Insights
from borealis.metrics import MetricStore
from borealis.metrics._alarms import AlarmBook, run_alarms
from borealis.prometheus import CONTENT_TYPE as PROMETHEUS_TEXT
from borealis.prometheus import ApiMetrics, publish_snapshots, read_snapshots, remove_snapshots
from borealis.prometheus import render as render_prometheus
from borealis.proxy import CertificateAuthority, ProxyManager, server_context
from borealis.secrets import SecretsManager
from borealis.serverless import AutoPause, Scaler
from borealis.services import logs as logs_service
from borealis.services import monitoring as monitoring_service
from borealis.services import pi as pi_service
from borealis.services import rds as rds_service
from borealis.services import rds_data as rds_data_service
from borealis.services import rds_extend
from borealis.services import rds_proxy as rds_proxy_service
from borealis.services import secretsmanager as secretsmanager_service
from borealis.services import sts as sts_service
from borealis.store import Sealer, Store, private_dir, private_file, private_files

__all__ = ["App", "StartupError"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StartupError(Exception):
    """Borealis cannot start; the message is one line for the user."""


class App:
    """One Borealis: everything `borealis up` runs."""

    def __init__(self, settings: Settings, *, on_event: Callable[[Event], None] | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self.ready = asyncio.Event()
        self.started_at = time.monotonic()
        self._lock_fd: int | None = None
        self._http: HttpServer | None = None
        self.store: Store | None = None
        self.control: ControlPlane | None = None
        self.proxies: ProxyManager | None = None
        self.data_api: DataApi | None = None
        self.metrics: MetricStore | None = None
        self.alarms: AlarmBook | None = None
        self._alarm_task: asyncio.Future[None] | None = None
        self.scaler: Scaler | None = None
        self.insights: Insights | None = None
        self._workers: list[subprocess.Popen[bytes]] = []
        self._rotation_task: asyncio.Future[None] | None = None
        self.api_metrics = ApiMetrics()
        self.console: Console | None = None

    # --------------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Open the data directory, start the API and bring back (or create) the clusters."""
        s = self.settings
        private_dir(s.data_dir)
        self._lock()
        for warning in s.exposure_warnings():
            log.warning("%s", warning)
        self.store = store = Store(s.data_dir / "borealis.db")
        sealer = Sealer(s.data_dir / "secrets.key")
        keys = AccessKeys(store, sealer)
        key_id, secret = keys.admin()
        write_credentials_file(s.data_dir / "credentials", key_id, secret)
        self.secrets = SecretsManager(store, s.data_dir / "secrets.key", account_id=s.account_id, region=s.region)
        try:
            setting = None if s.postgres == "embedded" else s.postgres
            default = Binaries.find(setting).version
            # The master (rds_superuser) may create the allowed extensions: postgres runs from an overlay.
            engines = {b.version: allowed_overlay(b, s.data_dir / "engines") for b in Binaries.available(setting)}
        except Exception as exc:
            raise StartupError(str(exc)) from None
        self.control = control = ControlPlane(s, store, sealer, engines[default], engines)
        control.secret_value = self.secrets.secret_json
        control.delete_secret = self.secrets.delete_owned
        if self.on_event is not None:
            control.on_event = self.on_event
        self.proxies = ProxyManager(control, self.secrets, secret_for=keys.secret_for)
        registry = self.proxies.registry
        autopause = AutoPause(
            control,
            has_proxy=lambda cid: any(d["target_group"].get("cluster") == cid for d in registry.proxies.values()),
        )
        control.topology.waker = autopause.wake
        self.metrics = MetricStore(s.data_dir / "metrics.db")
        self.metrics.recording = s.monitoring
        self.alarms = AlarmBook(s.data_dir / "alarms.json", region=s.region, account=s.account_id)
        self.metrics_token = metrics_token(s.data_dir)
        self.insights = Insights(control, s.data_dir, admin_user=ADMIN_USER)
        self.scaler = Scaler(
            control,
            self.metrics,
            Cgroups.detect(s.data_dir),
            internal_users=frozenset({ADMIN_USER}),
            max_connections_for=max_connections_for,
            autopause=autopause,
        )
        control.before_start = self.scaler.before_start
        metrics = self.metrics
        control.on_lag = lambda cluster, instance, lag: metrics.put(
            "AWS/RDS", "AuroraReplicaLag", {"DBInstanceIdentifier": instance}, lag, "Milliseconds", time.time()
        )
        control.extra_ports = self.proxies.registry.used_ports
        control.endpoint_tls = self.proxies.ca.server_context
        control.access_key_secret = keys.secret_for
        self.rds = rds_extend.extend(
            {**rds_service.handlers(control, self.secrets), **rds_proxy_service.handlers(self.proxies.registry)},
            control,
            self.proxies.registry,
        )
        self.data_api = DataApi(control, self.secrets, region=s.region, account_id=s.account_id, node=0)
        self.data_api.resume_wait = s.resume_wait / 1000
        self.console = Console(
            control=control,
            data_api=self.data_api,
            secrets=self.secrets,
            metrics=self.metrics,
            rds=self.rds,
            proxies=self.proxies,
            keys=keys,
            region=s.region,
            account_id=s.account_id,
            secure=s.tls,
            admin_user=ADMIN_USER,
            insights=self.insights,
        )
        services = {
            "rds": self.rds,
            "rds-data": rds_data_service.handlers(self.data_api),
            "secretsmanager": secretsmanager_service.handlers(self.secrets, self._rotate_master_secret),
            "sts": sts_service.handlers(keys, s.account_id),
            "cloudwatch": monitoring_service.handlers(self.metrics, self.alarms),
            "logs": logs_service.handlers(control),
            "pi": pi_service.handlers(self.insights),
        }
        if s.monitoring:  # GET /metrics counts every call
            services = {name: self.api_metrics.instrument(name, h) for name, h in services.items()}
        gateway = Gateway(
            services,
            keys.secret_for,
            fallback=self._fallback,
            tokens=keys.token_for,
            region=s.region,
        )
        await self._start_http(gateway)
        self._start_workers()
        self._write_state()
        private_files(s.data_dir)  # what earlier versions left readable (borealis.db, the log) included
        await control.start()
        self.scaler.start()
        self.insights.start()
        if s.monitoring:
            self._alarm_task = asyncio.ensure_future(run_alarms(self.alarms, self.metrics))
        await self.proxies.start()
        if s.create_default_cluster and control.cluster(s.default_cluster) is None and not self._was_created():
            await self._create_default_cluster()
        self._ready_task = asyncio.ensure_future(self._watch_ready())
        self._rotation_task = asyncio.ensure_future(self._rotate_due_secrets())

    @property
    def worker_count(self) -> int:
        """HTTP API processes in all, this one included (``--workers``; 0 means one per CPU but one)."""
        return worker_count(self.settings)

    async def _start_http(self, gateway: Gateway) -> None:
        count = self.worker_count
        # One process serves everything itself: no routing to ask on every request.
        route = _Router(self.settings.data_dir, 0, count, main=True).route if count > 1 else None
        self._http = HttpServer(gateway, route=route, limits=http_limits(self.settings))
        try:
            if count > 1:
                # SO_REUSEPORT would let us share a port another program (another Borealis) listens on, and
                # the kernel would split clients between the two: check with a plain bind that it is free.
                _probe_port(self.settings.host, self.settings.api_port)
            await self._http.start(
                self.settings.host, self.settings.api_port, reuse_port=count > 1, tls=api_tls(self.settings, issue=True)
            )
            if count > 1:
                await self._http.start_unix(str(node_socket(self.settings.data_dir, 0)))
        except OSError as exc:
            self._http = None
            where = f"{self.settings.host}:{self.settings.api_port}"
            raise StartupError(f"cannot serve the API on {where}: {exc}") from None

    def _start_workers(self) -> None:
        """Start the worker processes (nodes 1..n-1); each serves the Data API on the same port."""
        count = self.worker_count
        remove_snapshots(self.settings.data_dir)  # a previous run's workers' counts
        for node in range(1, count):
            args = json.dumps(
                {
                    "data_dir": str(self.settings.data_dir),
                    "host": self.settings.host,
                    "api_port": self.settings.api_port,
                    "region": self.settings.region,
                    "node": node,
                    "workers": count,
                    "parent": os.getpid(),
                    "monitoring": self.settings.monitoring,
                    "tls": self.settings.tls,
                    "http_idle_timeout": self.settings.http_idle_timeout,
                    "http_request_timeout": self.settings.http_request_timeout,
                }
            )
            code = "import sys, borealis.app as a; a.worker_main(sys.argv[1])"
            self._workers.append(subprocess.Popen([sys.executable, "-c", code, args], stdin=subprocess.DEVNULL))

    async def _stop_workers(self) -> None:
        for proc in self._workers:
            with contextlib.suppress(OSError):
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self._workers:
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait()
        self._workers.clear()

    async def stop(self) -> None:
        """Stop every postgres and listener, then the API; the stored state stays for the next start."""
        if self._rotation_task is not None:
            self._rotation_task.cancel()
        await self._stop_workers()
        if self.data_api is not None:
            await self.data_api.close()
        if self.proxies is not None:
            await self.proxies.close()
        if self.insights is not None:  # its connections go before the servers do
            await self.insights.close()
        if self.control is not None:
            await self.control.close()
        if self.scaler is not None:  # after the servers stopped, so their cgroups can go
            await self.scaler.close()
        if self._alarm_task is not None:
            self._alarm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alarm_task
        if self.metrics is not None:
            self.metrics.close()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.stop(10)
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(OSError):
            (self.settings.data_dir / "borealis.json").unlink()
        with contextlib.suppress(OSError):
            node_socket(self.settings.data_dir, 0).unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock(self) -> None:
        path = self.settings.data_dir / "borealis.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(
                f"another Borealis is already running on {self.settings.data_dir} (see `borealis status`)"
            ) from None
        self._lock_fd = fd

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "api_url": self.settings.api_url, "region": self.settings.region}
        path = self.settings.data_dir / "borealis.json"
        private_file(path)
        path.write_text(json.dumps(state))

    def _was_created(self) -> bool:
        """The default cluster is made once; if the user deleted it, it stays deleted."""
        assert self.store is not None
        return self.store.table("meta").get("default_cluster_created") is not None

    async def _create_default_cluster(self) -> None:
        assert self.store is not None
        name = self.settings.default_cluster
        ctx = RequestContext("rds", "CreateDBCluster", self.settings.region, "internal", str(uuid.uuid4()))
        await self.rds["CreateDBCluster"](
            ctx,
            {
                "DBClusterIdentifier": name,
                "Engine": "aurora-postgresql",
                "MasterUsername": "postgres",
                "ManageMasterUserPassword": True,
                "EnableHttpEndpoint": True,
                "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 4.0},
            },
        )
        await self.rds["CreateDBInstance"](
            ctx,
            {
                "DBInstanceIdentifier": f"{name}-instance-1",
                "DBClusterIdentifier": name,
                "DBInstanceClass": "db.serverless",
                "Engine": "aurora-postgresql",
            },
        )
        self.store.table("meta").put("default_cluster_created", {"at": time.time()})

    async def _rotate_master_secret(self, arn: str) -> None:
        """Rotate an RDS-managed master user secret now, as RotateMasterUserPassword does (RotateSecret)."""
        tags = {t["Key"]: t["Value"] for t in self.secrets.describe_secret(arn).get("Tags", [])}
        cluster = tags.get("aws:rds:primaryDBClusterArn", "")
        ctx = RequestContext("rds", "ModifyDBCluster", self.settings.region, "internal", str(uuid.uuid4()))
        params = {"DBClusterIdentifier": cluster, "RotateMasterUserPassword": True, "ApplyImmediately": True}
        try:
            await self.rds["ModifyDBCluster"](ctx, params)
        except AWSError as exc:
            raise AWSError("InvalidRequestException", f"RDS cannot rotate this secret now: {exc.message}") from None

    async def _rotate_due_secrets(self) -> None:
        """Rotate RDS-managed secrets when their schedule says (every 7 days by default), checked each minute."""
        while True:
            await asyncio.sleep(60)
            for arn in self.secrets.due_rotations():
                try:
                    await self._rotate_master_secret(arn)
                except AWSError as exc:
                    log.warning("scheduled rotation of %s: %s", arn, exc.message)

    def _all_available(self) -> bool:
        control = self.control
        if control is None:
            return False
        name = self.settings.default_cluster
        if self.settings.create_default_cluster and control.cluster(name) is not None:
            cluster = control.cluster(name) or {}
            insts = control.cluster_instances(name)
            # Stored statuses say what should be; a started server says what is (after a restart the
            # records read "available" before their postgres runs again).
            return cluster.get("status") == "available" and all(
                i["status"] == "available" and control.server(i["id"]) is not None for i in insts
            )
        return True

    async def _watch_ready(self) -> None:
        assert self.control is not None
        await self.control.wait_for(self._all_available, timeout=3600)
        self.ready.set()

    # --------------------------------------------------------------------------------------- HTTP extras

    async def _fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Non-AWS paths: /health for readiness probes and scripts."""
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if self.console is not None and Console.handles(path):  # the web console (borealis.console)
            await self.console(scope, receive, send)
            return
        if path in ("/health", "/_borealis/health"):
            # Unauthenticated: ready or not, nothing else (no cluster names, statuses or version); the rest is
            # for signed callers (DescribeDBClusters, `borealis status`).
            ready = self.ready.is_set()
            body = b'{"status": "ready"}' if ready else b'{"status": "starting"}'
            await _respond(send, 200 if ready else 503, body, b"application/json")
            return
        if path == "/metrics" and scope.get("method") in ("GET", "HEAD"):
            # Prometheus cannot sign with SigV4, so a scrape shows the bearer token from DATA_DIR/metrics.token
            # (`bearer_token_file` in a scrape config): the series name clusters, instances and proxies, which
            # unauthenticated callers must not learn (as /health tells them nothing but ready or not).
            sent = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(sent, b"Bearer " + self.metrics_token.encode()):
                await _respond(send, 401, b'{"message": "Missing or wrong bearer token"}', b"application/json")
                return
            api = self.api_metrics
            if self.worker_count > 1:  # the workers' calls, from the files they write every second
                api = api.merged(read_snapshots(self.settings.data_dir, range(1, self.worker_count)))
            body = render_prometheus(api, self.control, self.metrics)
            await _respond(send, 200, body, PROMETHEUS_TEXT)
            return
        await _respond(send, 404, b'{"message": "Not Found"}', b"application/json")


METRICS_TOKEN_FILE = "metrics.token"


def metrics_token(data_dir: Path) -> str:
    """The bearer token that GET /metrics asks for, made on first start (DATA_DIR/metrics.token, mode 0600)."""
    path = data_dir / METRICS_TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = token_urlsafe(32)
        private_file(path)
        path.write_text(token + "\n")
    return token


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------- workers
#
# Worker processes serve the Data API on the API port next to the main process (SO_REUSEPORT: the kernel
# spreads connections over them).  The main process (node 0) owns the control plane: the store's writes,
# the reconciler, the postgres children, the proxies.  A worker (node 1..n-1) reads what it needs from the
# store (WAL lets another process read): cluster and instance records (instances carry ``pg_port``, the
# writer's postgres port), access keys and secrets.  It forwards, as raw HTTP over the owner's unix socket
# in the data directory, every request it does not serve itself: other services (rds, secretsmanager),
# /health and the rest go to the main process; a Data API call naming a transaction goes to the node that
# holds it (the transaction id's first byte).  Workers die with the main process (PR_SET_PDEATHSIG) and
# ignore Ctrl-C, which the main process answers by stopping them.

_DATA_API_TX_PATHS = frozenset(("/Execute", "/BatchExecute", "/CommitTransaction", "/RollbackTransaction"))
_STORE_TTL = 1.0  # seconds a worker trusts what it read from the store
_KNOCK_TIMEOUT = 60.0  # seconds a worker's wake-up login waits for a paused instance to serve


def api_tls(settings: Settings, *, issue: bool) -> ssl.SSLContext | None:
    """The HTTP API's TLS context with ``--tls`` (None without): a certificate from Borealis's CA.

    The main process issues it (``issue``) before the workers start; they load the same files.
    """
    if not settings.tls:
        return None
    ca = CertificateAuthority(settings.data_dir / "ca")
    try:
        if issue:
            cert, key = ca.issue(settings.host, "api")
        else:
            cert, key = ca.directory / "api.crt", ca.directory / "api.key"
        return server_context(cert, key)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise StartupError(f"cannot set up TLS for the API from {ca.directory}: {exc}") from None


def http_limits(settings: Settings) -> HttpLimits:
    """The HTTP server's limits, with the timeouts the settings give."""
    return HttpLimits(idle_timeout=settings.http_idle_timeout, request_timeout=settings.http_request_timeout)


def worker_count(settings: Settings) -> int:
    """HTTP API processes in all: ``settings.workers``, 0 meaning one per CPU but one, at most 64.

    One CPU is left to PostgreSQL, which runs on this machine too: on two CPUs one API process serves the
    Data API faster than two (docs/benchmarks.md), since two API processes, postgres and the clients would
    otherwise take turns on every core.
    """
    count = settings.workers
    if not count:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        count = cpus - 1
    return max(1, min(64, count))


def _probe_port(host: str, port: int) -> None:
    """Raise OSError if ``host:port`` cannot be bound without SO_REUSEPORT (someone listens there)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _unlink_if_ours(path: Path, inode: int | None) -> None:
    """Remove a socket file only if it is still the one this process made: after a kill -9 and a restart,
    the same path may already belong to the next Borealis's process, which must keep it."""
    with contextlib.suppress(OSError):
        if inode is not None and path.stat().st_ino == inode:
            path.unlink()


_TRANSACTION_ID = re.compile(rb'"transactionId"\s*:\s*"([A-Za-z0-9+/=]{4})')


def node_socket(data_dir: Path, node: int) -> Path:
    """The unix socket on which node ``node`` takes forwarded requests."""
    return data_dir / f"api-{node}.sock"


class _Router:
    """Which process serves a request (see :data:`borealis.aws.Route`)."""

    def __init__(self, data_dir: Path, node: int, count: int, *, main: bool) -> None:
        self.node = node
        self.main = main
        self.count = count
        self.sockets = [str(node_socket(data_dir, i)) for i in range(count)]

    def route(self, path: str, classified: Any, body: bytes) -> str | None:
        if self.count <= 1:
            return None
        if classified is None or not hasattr(classified, "endpoint") or classified.endpoint.name != "rds-data":
            return None if self.main else self.sockets[0]
        if path in _DATA_API_TX_PATHS and b"transactionId" in body:
            # The owner is in the id's first 4 characters: read them without parsing the whole body (the
            # gateway parses it once, later). Inside a JSON string the key's quotes would be escaped, so
            # this matches the top-level member only; anything unusual (escapes) takes the full parse.
            match = _TRANSACTION_ID.search(body)
            if match is not None:
                tid: object = match.group(1).decode("ascii")
            else:
                try:
                    tid = json.loads(body).get("transactionId")
                except (ValueError, AttributeError):
                    return None
            owner = transaction_owner(tid)
            if owner is not None and owner != self.node and owner < self.count:
                return self.sockets[owner]
        return None


class _StoreClusters:
    """The Data API's view of clusters in a worker: the same topology as the main process's, read from the
    store (instance records carry where their postgres listens) and trusted for a second."""

    def __init__(self, store: Store, host: str) -> None:
        self.clusters = store.table("clusters")
        self.instances = store.table("instances")
        self.host = host
        self._waking: dict[str, asyncio.Future[None]] = {}
        self.topology = Topology(lambda: stored_views(self.clusters.values(), self.instances.values()), ttl=_STORE_TTL)
        # One object per address, so the Data API keeps its pool while the address stays the same.
        self._by_address: dict[Address, Address] = {}

    def cluster(self, ident: str) -> dict[str, Any] | None:
        return self.clusters.get(ident)

    @property
    def generation(self) -> int:
        return self.topology.generation

    def writer_of(self, cluster_id: str) -> dict[str, Any] | None:
        member = self.topology.writer(cluster_id)
        if member is None:
            return None
        # The stored record, as the main process gives it: the Data API reads ``paused`` and ``resuming`` there.
        return self.instances.get(member.id) or {"id": member.id, "role": member.role, "status": member.status}

    def server(self, instance_id: str) -> Address | None:
        member = self.topology.member(instance_id)
        if member is None or not member.ready or member.host is None or member.port is None:
            # The view may be up to a second older than the record the caller just read (say, a resume that
            # ended meanwhile: "not paused" there, "not serving" here): look at the store again before
            # saying it does not serve, as the Data API would answer DatabaseUnavailableException.
            self.topology.changed()
            member = self.topology.member(instance_id)
        if member is None or not member.ready or member.host is None or member.port is None:
            return None
        address = Address(member.host, member.port, member.socket_dir)
        return self._by_address.setdefault(address, address)

    async def wake(self, instance_id: str) -> None:
        """Resume a paused instance from a worker, as a Data API call does on AWS.

        The main process owns auto-pause, and a login attempt on any endpoint of the instance is what resumes
        it there, so the worker starts one on the instance's endpoint and holds it until postgres answers.
        Concurrent calls share one attempt.
        """
        running = self._waking.get(instance_id)
        if running is None or running.done():
            running = asyncio.ensure_future(self._knock(instance_id))
            self._waking[instance_id] = running
        await asyncio.shield(running)

    async def _knock(self, instance_id: str) -> None:
        inst = self.instances.get(instance_id)
        if inst is None or not inst.get("port"):
            return
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, int(inst["port"])), _KNOCK_TIMEOUT)
        try:
            writer.write(pgwire.encode(pgwire.StartupMessage({"user": ADMIN_USER, "database": "postgres"})))
            await writer.drain()
            # The first byte comes from postgres (its authentication request) once the instance serves again.
            await asyncio.wait_for(reader.read(1), _KNOCK_TIMEOUT)
        finally:
            writer.close()


class _StoreSecrets:
    """Secrets in a worker: read through a SecretsManager on the same store and key, cached for a second.

    The main process may rotate a secret at any time: values are read again after a second, and at once
    after an authentication failure (:meth:`forget`).
    """

    def __init__(self, store: Store, key_file: Path, *, account_id: str, region: str) -> None:
        self._args = (store, key_file)
        self._account_id = account_id
        self._region = region
        self._manager = self._fresh()
        self._values: dict[str, tuple[float, dict[str, Any]]] = {}

    def _fresh(self) -> SecretsManager:
        store, key_file = self._args
        return SecretsManager(store, key_file, account_id=self._account_id, region=self._region, read_only=True)

    def secret_json(self, secret_id: str) -> dict[str, Any]:
        now = time.monotonic()
        cached = self._values.get(secret_id)
        if cached is not None and cached[0] > now:
            return dict(cached[1])
        self._manager = self._fresh()  # sees secrets created or rotated since
        value = self._manager.secret_json(secret_id)
        if len(self._values) > 1000:
            self._values.clear()
        self._values[secret_id] = (now + _STORE_TTL, value)
        return dict(value)

    def forget(self, secret_id: Any) -> None:
        if isinstance(secret_id, str):
            self._values.pop(secret_id, None)


def worker_main(arguments: str) -> None:
    """Entry point of a worker process (started by :meth:`App._start_workers`)."""
    a = json.loads(arguments)
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != a["parent"]:
        return  # the main process is gone already
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops us
    logging.basicConfig(level=logging.WARNING, format=f"borealis[worker {a['node']}]: %(levelname)s: %(message)s")
    try:
        import uvloop

        uvloop.run(_worker(a))
    except ImportError:
        asyncio.run(_worker(a))


async def _worker(a: dict[str, Any]) -> None:
    data_dir = Path(a["data_dir"])
    node, count = int(a["node"]), int(a["workers"])
    store = Store(data_dir / "borealis.db")
    sealer = Sealer(data_dir / "secrets.key")
    keys = AccessKeys(store, sealer)
    settings = Settings(
        data_dir=data_dir,
        region=a["region"],
        tls=bool(a["tls"]),
        http_idle_timeout=float(a["http_idle_timeout"]),
        http_request_timeout=float(a["http_request_timeout"]),
    )
    secrets = _StoreSecrets(store, data_dir / "secrets.key", account_id=settings.account_id, region=a["region"])
    data_api = DataApi(
        _StoreClusters(store, a["host"]), secrets, region=a["region"], account_id=settings.account_id, node=node
    )
    api = ApiMetrics()  # counted here, written for the main process's GET /metrics
    monitoring = bool(a.get("monitoring", True))
    data_handlers = rds_data_service.handlers(data_api)
    gateway = Gateway(
        {"rds-data": api.instrument("rds-data", data_handlers) if monitoring else data_handlers},
        keys.secret_for,
        tokens=keys.token_for,
        region=a["region"],
    )
    http = HttpServer(gateway, route=_Router(data_dir, node, count, main=False).route, limits=http_limits(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await http.start_unix(str(node_socket(data_dir, node)))
    inode = node_socket(data_dir, node).stat().st_ino
    await http.start(a["host"], int(a["api_port"]), reuse_port=True, tls=api_tls(settings, issue=False))
    publisher = asyncio.ensure_future(publish_snapshots(api, data_dir, node) if monitoring else asyncio.sleep(0))
    try:
        await stop.wait()
    finally:
        await http.stop(5)
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        await data_api.close()
        store.close()
        _unlink_if_ours(node_socket(data_dir, node), inode)
