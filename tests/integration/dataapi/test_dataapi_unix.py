"""The Data API's pooled connections go over postgres's unix socket, and only for verified passwords.

pg_hba.conf trusts the unix socket, so these tests check what guards it: a password is used there only
after PostgreSQL accepted it over TCP (SCRAM), and only for a short time after.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from borealis.dataapi import DataApi, DataApiSettings, DatabaseErrorException
from borealis.engine._config import socket_dir_for
from tests.integration.conftest import BorealisProcess

from .conftest import Target

ARN = "arn:aws:rds:us-east-1:000000000000:cluster:default"


def test_data_api_connections_use_the_unix_socket(borealis: BorealisProcess, target: Target) -> None:
    # Fresh clients land on every process sharing the API port (main and workers).
    for _ in range(8):
        out = borealis.client("rds-data").execute_statement(
            resourceArn=target.resource_arn,
            secretArn=target.secret_arn,
            sql="SELECT inet_server_addr() IS NULL AS over_unix_socket",
        )
        assert out["records"] == [[{"booleanValue": True}]]


class _Server:
    def __init__(self, host: str, port: int, socket_dir: Path) -> None:
        self.host, self.port, self.socket_dir = host, port, socket_dir


class _Control:
    def __init__(self, server: _Server) -> None:
        self._server = server

    def cluster(self, ident: str) -> dict[str, Any] | None:
        return {"id": ident, "http_endpoint": True, "status": "available"} if ident == "default" else None

    def writer_of(self, cluster_id: str) -> dict[str, Any] | None:
        return {"id": "writer", "status": "available"}

    def server(self, instance_id: str) -> _Server:
        return self._server


class _Secrets:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    def secret_json(self, secret_id: str) -> dict[str, Any]:
        return dict(self.values[secret_id])


@pytest.fixture
def role(borealis: BorealisProcess) -> Any:
    name = f"dapi_unix_{time.time_ns()}"
    with borealis.master_connect() as conn:
        conn.autocommit = True
        row = conn.execute("SELECT host(inet_server_addr()), inet_server_port()").fetchone()
        assert row is not None
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'first-password'")
        yield name, row[0], int(row[1]), conn
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_only_verified_passwords_reach_the_unix_socket(borealis: BorealisProcess, role: Any) -> None:
    name, host, port, admin = role
    socket_dir = socket_dir_for(
        (borealis.data_dir / "clusters" / "default" / "instances" / "default-instance-1" / "data").absolute()
    )
    assert (socket_dir / f".s.PGSQL.{port}").exists()
    secrets = _Secrets()
    secrets.values["right"] = {"username": name, "password": "first-password"}
    secrets.values["wrong"] = {"username": name, "password": "not-the-password"}
    secrets.values["empty"] = {"username": name, "password": ""}
    api = DataApi(
        _Control(_Server(host, port, socket_dir)),
        secrets,
        region="us-east-1",
        settings=DataApiSettings(verify_ttl=0.5),
    )
    sql = "SELECT inet_server_addr() IS NULL AS over_unix_socket, current_user::text AS who"

    async def call(secret: str) -> Any:
        return await api.execute_statement({"resourceArn": ARN, "secretArn": secret, "sql": sql})

    async def run() -> None:
        try:
            out = await call("right")
            assert out["records"] == [[{"booleanValue": True}, {"stringValue": name}]]
            # The right password is verified and its pool is warm: a wrong or empty one still gets nothing.
            for secret in ("wrong", "empty", "wrong"):
                with pytest.raises(DatabaseErrorException) as info:
                    await call(secret)
                assert "SQLState: 28P01" in info.value.message
            # Rotated in PostgreSQL behind the secret's back: once the verification expires, no new
            # connection opens with the old password, over the socket or otherwise.
            await asyncio.to_thread(admin.execute, f"ALTER ROLE {name} PASSWORD 'second-password'")
            await asyncio.sleep(0.6)
            for pool in list(api._pools.values()):
                await pool.close()
            api._pools.clear()
            with pytest.raises(DatabaseErrorException) as info:
                await call("right")
            assert "SQLState: 28P01" in info.value.message
            secrets.values["right"] = {"username": name, "password": "second-password"}
            out = await call("right")
            assert out["records"] == [[{"booleanValue": True}, {"stringValue": name}]]
            assert not api.verifier.is_verified(host, port, name, "first-password")
        finally:
            await api.close()

    asyncio.run(run())


def test_tcp_only_when_the_unix_socket_is_off(borealis: BorealisProcess, role: Any) -> None:
    name, host, port, _ = role
    secrets = _Secrets()
    secrets.values["right"] = {"username": name, "password": "first-password"}
    socket_dir = socket_dir_for(
        (borealis.data_dir / "clusters" / "default" / "instances" / "default-instance-1" / "data").absolute()
    )
    api = DataApi(
        _Control(_Server(host, port, socket_dir)),
        secrets,
        region="us-east-1",
        settings=DataApiSettings(unix_socket=False),
    )

    async def run() -> Any:
        try:
            return await api.execute_statement(
                {"resourceArn": ARN, "secretArn": "right", "sql": "SELECT inet_server_addr() IS NULL"}
            )
        finally:
            await api.close()

    assert asyncio.run(run())["records"] == [[{"booleanValue": False}]]
