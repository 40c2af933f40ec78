"""Wires the parts together for `borealis up`: store, keys, secrets, engine, control plane, HTTP front.

The app runs in the foreground on one event loop (uvloop where available). It owns a lock on the data
directory, so two Borealis processes never manage the same clusters, and a small ``borealis.json`` there
that tells the other commands (`borealis env`, `status`, `psql`) where the running API is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import uvicorn

from borealis import __version__
from borealis.aws import Gateway, RequestContext
from borealis.config import Settings
from borealis.control import ControlPlane, Event
from borealis.dataapi import DataApi
from borealis.engine import Binaries
from borealis.iam import AccessKeys, write_credentials_file
from borealis.proxy import ProxyManager
from borealis.secrets import SecretsManager
from borealis.services import rds as rds_service
from borealis.services import rds_data as rds_data_service
from borealis.services import rds_proxy as rds_proxy_service
from borealis.services import secretsmanager as secretsmanager_service
from borealis.store import Sealer, Store

__all__ = ["App", "StartupError"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StartupError(Exception):
    """Borealis cannot start; the message is one line for the user."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the app decides how to shut down, postgres first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class App:
    """One Borealis: everything `borealis up` runs."""

    def __init__(self, settings: Settings, *, on_event: Callable[[Event], None] | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self.ready = asyncio.Event()
        self.started_at = time.monotonic()
        self._lock_fd: int | None = None
        self._http: _Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.store: Store | None = None
        self.control: ControlPlane | None = None
        self.proxies: ProxyManager | None = None
        self.data_api: DataApi | None = None

    # --------------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Open the data directory, start the API and bring back (or create) the clusters."""
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        self.store = store = Store(s.data_dir / "borealis.db")
        sealer = Sealer(s.data_dir / "secrets.key")
        keys = AccessKeys(store, sealer)
        key_id, secret = keys.admin()
        write_credentials_file(s.data_dir / "credentials", key_id, secret)
        self.secrets = SecretsManager(store, s.data_dir / "secrets.key", account_id=s.account_id, region=s.region)
        try:
            binaries = Binaries.find(None if s.postgres == "embedded" else s.postgres)
        except Exception as exc:
            raise StartupError(str(exc)) from None
        self.control = control = ControlPlane(s, store, sealer, binaries)
        control.secret_value = self.secrets.secret_json
        control.delete_secret = self.secrets.delete_owned
        if self.on_event is not None:
            control.on_event = self.on_event
        self.proxies = ProxyManager(control, self.secrets, secret_for=keys.secret_for)
        control.extra_ports = self.proxies.registry.used_ports
        self.rds = {
            **rds_service.handlers(control, self.secrets),
            **rds_proxy_service.handlers(self.proxies.registry),
        }
        self.data_api = DataApi(control, self.secrets, region=s.region, account_id=s.account_id)
        gateway = Gateway(
            {
                "rds": self.rds,
                "rds-data": rds_data_service.handlers(self.data_api),
                "secretsmanager": secretsmanager_service.handlers(self.secrets),
            },
            keys.secret_for,
            fallback=self._fallback,
        )
        await self._start_http(gateway)
        self._write_state()
        await control.start()
        await self.proxies.start()
        if s.create_default_cluster and control.cluster(s.default_cluster) is None and not self._was_created():
            await self._create_default_cluster()
        self._ready_task = asyncio.ensure_future(self._watch_ready())

    async def _start_http(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        config = uvicorn.Config(
            app,
            host=self.settings.host,
            port=self.settings.api_port,
            lifespan="off",
            access_log=False,
            log_level="warning",
            http="httptools",
            loop="none",
            server_header=False,
        )
        self._http = _Server(config)
        self._http_task = asyncio.ensure_future(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                exc = self._http_task.exception() if not self._http_task.cancelled() else None
                raise StartupError(
                    f"cannot serve the API on {self.settings.host}:{self.settings.api_port}: "
                    f"{exc or 'address already in use?'}"
                )
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop every postgres and listener, then the API; the stored state stays for the next start."""
        if self.data_api is not None:
            await self.data_api.close()
        if self.proxies is not None:
            await self.proxies.close()
        if self.control is not None:
            await self.control.close()
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, 10)
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(OSError):
            (self.settings.data_dir / "borealis.json").unlink()
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

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the default cluster is available (what /health reports)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return self.ready.is_set()

    # --------------------------------------------------------------------------------------- HTTP extras

    async def _fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Non-AWS paths: /health for readiness probes and scripts."""
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path in ("/health", "/_borealis/health"):
            ready = self.ready.is_set()
            body = json.dumps(
                {
                    "status": "ready" if ready else "starting",
                    "version": __version__,
                    "clusters": self._summary(),
                }
            ).encode()
            await _respond(send, 200 if ready else 503, body, b"application/json")
            return
        await _respond(send, 404, b'{"message": "Not Found"}', b"application/json")

    def _summary(self) -> dict[str, str]:
        if self.control is None:
            return {}
        return {c["id"]: c["status"] for c in self.control.clusters.values()}


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
