"""node-postgres (npm ``pg``) and ``@aws-sdk/rds-signer`` through the proxy: TLS verify-full, named prepared
queries over transaction pooling, IAM tokens. The script is tests/clients/proxy_pg.mjs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import make_auth_proxy

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


def test_node_postgres(borealis: BorealisProcess) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the JavaScript client tests need Node.js 18+")
    if not (CLIENTS / "node_modules" / "pg").is_dir():
        pytest.fail("tests/clients/node_modules is missing pg: run `npm ci --prefix tests/clients` (done by .ci/run)")
    info = make_auth_proxy(borealis, "node-proxy", require_tls=True, iam="ENABLED")
    borealis.client("rds").modify_db_proxy_target_group(
        DBProxyName=info.name, TargetGroupName="default", ConnectionPoolConfig={"MaxConnectionsPercent": 5}
    )
    env = borealis.env()
    env.update(
        PROXY_HOST=info.host,
        PROXY_PORT=str(info.port),
        PROXY_USER=info.user,
        PROXY_PASSWORD=info.password,
        PROXY_CA=str(borealis.data_dir / "ca" / "root.crt"),
    )
    out = subprocess.run(
        [node, str(CLIENTS / "proxy_pg.mjs")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")
