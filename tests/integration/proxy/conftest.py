"""Fixtures for the proxy's integration tests: one proxy on the session's Borealis, and how to reach it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import BorealisProcess


class ProxyInfo:
    """A proxy made through the API, with what a client needs to connect to it."""

    def __init__(self, borealis: BorealisProcess, name: str) -> None:
        self.borealis = borealis
        self.name = name
        rds = borealis.client("rds")
        self.host = rds.describe_db_proxies(DBProxyName=name)["DBProxies"][0]["Endpoint"]
        targets = rds.describe_db_proxy_targets(DBProxyName=name)["Targets"]
        self.port = next(t["Port"] for t in targets if t["Type"] == "TRACKED_CLUSTER")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        sm = borealis.client("secretsmanager")
        secret = json.loads(sm.get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])["SecretString"])
        self.secret_arn = cluster["MasterUserSecret"]["SecretArn"]
        self.user = secret["username"]
        self.password = secret["password"]

    def conninfo(self, **extra: Any) -> dict[str, Any]:
        """psycopg connection keywords for this proxy."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": "postgres",
            "connect_timeout": 10,
            **extra,
        }

    def pg_env(self, **extra: str) -> dict[str, str]:
        """The environment for libpq's tools (psql, pgbench) to reach this proxy."""
        env = dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user)
        env.update(PGPASSWORD=self.password, PGDATABASE="postgres", **extra)
        return env

    def dsn(self) -> str:
        """A libpq URL (for psql, pgbench, asyncpg)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/postgres"


def wait_status(rds: Any, name: str, status: str = "available", timeout: float = 30) -> dict[str, Any]:
    """Poll DescribeDBProxies until the proxy has ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = rds.describe_db_proxies(DBProxyName=name)["DBProxies"][0]
        if doc["Status"] == status or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def make_proxy(borealis: BorealisProcess, name: str, **pool: Any) -> ProxyInfo:
    """Create a proxy over the default cluster's master secret, register the cluster, set the pool."""
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    rds.create_db_proxy(
        DBProxyName=name,
        EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": cluster["MasterUserSecret"]["SecretArn"]}],
        RoleArn="arn:aws:iam::000000000000:role/proxy",
        VpcSubnetIds=["subnet-1", "subnet-2"],
    )
    wait_status(rds, name)
    rds.register_db_proxy_targets(DBProxyName=name, DBClusterIdentifiers=["default"])
    if pool:
        rds.modify_db_proxy_target_group(DBProxyName=name, TargetGroupName="default", ConnectionPoolConfig=pool)
    info = ProxyInfo(borealis, name)
    _wait_listening(info)
    return info


def smallest_pool(borealis: BorealisProcess, name: str, borrow_timeout: int) -> ProxyInfo:
    """A proxy with the smallest pool (1% of max_connections); its size is ``info.cap``."""
    info = make_proxy(borealis, name, MaxConnectionsPercent=1, ConnectionBorrowTimeout=borrow_timeout)
    with psycopg.connect(**info.conninfo(), autocommit=True) as conn:
        row = conn.execute("show max_connections").fetchone()
        assert row is not None
        info.cap = max(1, int(row[0]) // 100)  # type: ignore[attr-defined]
    return info


def make_auth_proxy(
    borealis: BorealisProcess, name: str, *, require_tls: bool = False, iam: str = "DISABLED", scheme: str = "NONE"
) -> ProxyInfo:
    """A proxy over the default cluster's master secret with the given RequireTLS, IAMAuth, DefaultAuthScheme."""
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    rds.create_db_proxy(
        DBProxyName=name,
        EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": cluster["MasterUserSecret"]["SecretArn"], "IAMAuth": iam}],
        RoleArn="arn:aws:iam::000000000000:role/proxy",
        VpcSubnetIds=["subnet-1", "subnet-2"],
        RequireTLS=require_tls,
        DefaultAuthScheme=scheme,
    )
    wait_status(rds, name)
    rds.register_db_proxy_targets(DBProxyName=name, DBClusterIdentifiers=["default"])
    info = ProxyInfo(borealis, name)
    _wait_listening(info)
    return info


def _wait_listening(info: ProxyInfo, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((info.host, info.port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"proxy {info.name} not listening on {info.host}:{info.port}")


@pytest.fixture(scope="session")
def proxy(borealis: BorealisProcess) -> Iterator[ProxyInfo]:
    """A proxy with a small pool (MaxConnectionsPercent 5 of max_connections) on the default cluster."""
    yield make_proxy(borealis, "test-proxy", MaxConnectionsPercent=5, ConnectionBorrowTimeout=30)
