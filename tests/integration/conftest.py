"""Fixtures that run a real `borealis up` (a subprocess, as a user runs it) on free ports.

`borealis` is session-scoped: one Borealis with its default cluster for every test that only needs a running
service. Tests that restart or kill Borealis make their own with `BorealisProcess`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config

from tests.net import free_port, free_port_base, postgres_pids, processes_for

__all__ = ["BorealisProcess", "free_port", "free_port_base", "postgres_pids", "processes_for"]


class BorealisProcess:
    """One `borealis up` subprocess with its own data directory and ports."""

    def __init__(
        self,
        data_dir: Path,
        *,
        default_cluster: bool = True,
        workers: int | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.extra_env = extra_env or {}
        self.workers = workers
        self.extra_args = extra_args
        self.api_port = free_port()
        self.port_base = free_port_base()
        self.default_cluster = default_cluster
        self.proc: subprocess.Popen[str] | None = None
        self.output = data_dir.parent / f"{data_dir.name}-stdout.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 120, *, wait: bool = True) -> None:
        """Run `borealis up`; with ``wait``, return once /health says it is ready."""
        args = [
            sys.executable, "-m", "borealis", "up",
            "--data-dir", str(self.data_dir),
            "--api-port", str(self.api_port),
            "--port-base", str(self.port_base),
        ]  # fmt: skip
        if not self.default_cluster:
            args.append("--no-default-cluster")
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        args += self.extra_args
        out = self.output.open("a")
        env = {**os.environ, **self.extra_env} if self.extra_env else None
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"borealis up exited with {self.proc.returncode}:\n{self.output.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        self._check_build()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"borealis up not ready in {timeout}s:\n{self.output.read_text()}")

    def _check_build(self) -> None:
        # scripts/test-compiled: the server must run the compiled build too (its first line says which runs).
        if os.environ.get("BOREALIS_EXPECT_COMPILED") == "1":
            lines = self.output.read_text().splitlines()
            banners = [line for line in lines if line.startswith("Borealis ") and ": starting in " in line]
            if not banners or "(compiled (mypyc) + C data path)" not in banners[-1]:
                raise RuntimeError(f"borealis up does not run the compiled build: {banners[-1:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def credentials(self) -> tuple[str, str]:
        text = (self.data_dir / "credentials").read_text().splitlines()
        values = dict(line.split(" = ", 1) for line in text if " = " in line)
        return values["aws_access_key_id"], values["aws_secret_access_key"]

    def client(self, service: str, **kwargs: Any) -> Any:
        key, secret = self.credentials()
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=kwargs.pop("region_name", "us-east-1"),
            aws_access_key_id=kwargs.pop("key", key),
            aws_secret_access_key=kwargs.pop("secret", secret),
            config=Config(retries={"max_attempts": 1}),
            **kwargs,
        )

    def env(self) -> dict[str, str]:
        key, secret = self.credentials()
        env = dict(os.environ)
        env.update(
            AWS_ENDPOINT_URL=self.url,
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        env.pop("AWS_PROFILE", None)
        return env

    def master_connect(
        self,
        cluster_id: str = "default",
        *,
        host: str | None = None,
        port: int | None = None,
        dbname: str | None = None,
    ) -> psycopg.Connection[Any]:
        """Connect as the master user with the password from the cluster's managed secret."""
        rds = self.client("rds")
        cluster = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
        secret = self.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
        value = json.loads(secret["SecretString"])
        return psycopg.connect(
            host=host or cluster["Endpoint"],
            port=port or cluster["Port"],
            user=value["username"],
            password=value["password"],
            dbname=dbname or cluster.get("DatabaseName", "postgres"),
            connect_timeout=10,
        )


@pytest.fixture(scope="session")
def borealis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A running Borealis with its default cluster, shared by the session.

    It runs two API processes whatever the machine (the default leaves a CPU to PostgreSQL, which is one
    process on two CPUs), so every test of the API also goes through a worker and its forwarding.
    """
    data_dir = tmp_path_factory.mktemp("borealis") / "data"
    proc = BorealisProcess(data_dir, workers=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        leftover = processes_for(data_dir)
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert not leftover, f"postgres processes left behind: {leftover}"


@pytest.fixture
def rds(borealis: BorealisProcess) -> Any:
    return borealis.client("rds")


@pytest.fixture
def secretsmanager(borealis: BorealisProcess) -> Any:
    return borealis.client("secretsmanager")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.pg)
