"""The proxy's server connections go over postgres's unix socket, and only for passwords PostgreSQL accepted.

pg_hba.conf lets Borealis in over the socket as any role, so what guards it is the proxy's verifier: a
secret's password opens socket connections only after PostgreSQL accepted it over TCP (SCRAM).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo, _wait_listening, wait_status


def _proxy_for(borealis: BorealisProcess, name: str, username: str, password: str) -> ProxyInfo:
    """A proxy on the default cluster whose only secret names ``username`` with ``password``."""
    rds, sm = borealis.client("rds"), borealis.client("secretsmanager")
    arn = sm.create_secret(Name=name, SecretString=json.dumps({"username": username, "password": password}))["ARN"]
    rds.create_db_proxy(
        DBProxyName=name,
        EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": arn}],
        RoleArn="arn:aws:iam::000000000000:role/proxy",
        VpcSubnetIds=["subnet-1", "subnet-2"],
    )
    wait_status(rds, name)
    rds.register_db_proxy_targets(DBProxyName=name, DBClusterIdentifiers=["default"])
    info = ProxyInfo(borealis, name)
    info.user, info.password = username, password
    _wait_listening(info)
    return info


@pytest.fixture(scope="module")
def role(borealis: BorealisProcess) -> Iterator[str]:
    name = f"proxy_unix_{time.time_ns()}"
    with borealis.master_connect() as conn:
        conn.autocommit = True
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'right-password'")
        yield name
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_server_connections_use_the_unix_socket(borealis: BorealisProcess, role: str) -> None:
    proxy = _proxy_for(borealis, "unix-ok", role, "right-password")
    with psycopg.connect(**proxy.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT inet_server_addr() IS NULL, current_user, current_setting('port')").fetchone()
    assert row is not None
    assert row[0] is True, "the proxy reached postgres over TCP, not its unix socket"
    assert row[1] == role
    # The port postgres listens on is the one the proxy's target names: the socket is that server's.
    with borealis.master_connect() as admin:
        port = admin.execute("SELECT current_setting('port')").fetchone()
    assert port is not None and row[2] == port[0]


def test_a_secret_with_the_wrong_password_is_refused(borealis: BorealisProcess, role: str) -> None:
    # The socket would let the proxy in as the role whatever the password: the secret's password must still
    # be one PostgreSQL accepts, as over TCP (RDS Proxy's own logins to the database use it).
    proxy = _proxy_for(borealis, "unix-wrong", role, "not-the-password")
    for _ in range(3):  # and again: a refusal is never remembered as a success
        with pytest.raises(psycopg.OperationalError) as caught, psycopg.connect(**proxy.conninfo()) as conn:
            conn.execute("SELECT 1")
        assert "password authentication failed" in str(caught.value)
