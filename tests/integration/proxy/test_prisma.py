"""Prisma 7's client with ``@prisma/adapter-pg`` through the proxy over TLS, as issue 12's seed uses it.

Prisma 7 with a driver adapter needs no engine binary: ``prisma generate`` builds the client from the schema in
WebAssembly, and the client compiles queries in WebAssembly and runs them through node-postgres. Only the
migration engine is a binary, downloaded from Prisma's servers, which this machine cannot reach: the schema's
tables are made by SQL instead (tests/clients/prisma_proxy.mjs), and the CLI is pointed at a stand-in
migration engine that it never runs for ``generate``. The script and schema are in tests/clients.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import make_auth_proxy

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


def _prisma_env(borealis: BorealisProcess, stand_in: Path) -> dict[str, str]:
    env = borealis.env()
    env.update(
        PRISMA_SCHEMA_ENGINE_BINARY=str(stand_in),
        # No update check or telemetry: nothing beyond 127.0.0.1.
        CHECKPOINT_DISABLE="1",
        PRISMA_HIDE_UPDATE_MESSAGE="1",
    )
    return env


def test_prisma_client_with_adapter_pg_through_the_proxy(borealis: BorealisProcess, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the JavaScript client tests need Node.js 20.19+")
    cli = CLIENTS / "node_modules" / "prisma" / "build" / "index.js"
    if not cli.is_file() or not (CLIENTS / "node_modules" / "@prisma" / "adapter-pg").is_dir():
        pytest.fail("tests/clients/node_modules lacks prisma: run `npm ci --prefix tests/clients` (done by .ci/run)")
    stand_in = tmp_path / "schema-engine"
    stand_in.write_text("#!/bin/sh\necho 'the migration engine is not used by these tests' >&2\nexit 1\n")
    stand_in.chmod(0o755)
    env = _prisma_env(borealis, stand_in)
    generate = subprocess.run(
        [node, str(cli), "generate", "--schema", "prisma/schema.prisma"],
        cwd=CLIENTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert generate.returncode == 0, generate.stdout + generate.stderr
    assert (CLIENTS / ".prisma-client" / "query_compiler_fast_bg.wasm").is_file()

    info = make_auth_proxy(borealis, "prisma-proxy", require_tls=True)
    borealis.client("rds").modify_db_proxy_target_group(
        DBProxyName=info.name, TargetGroupName="default", ConnectionPoolConfig={"MaxConnectionsPercent": 5}
    )
    env.update(
        PROXY_HOST=info.host,
        PROXY_PORT=str(info.port),
        PROXY_USER=info.user,
        PROXY_PASSWORD=info.password,
        PROXY_CA=str(borealis.data_dir / "ca" / "root.crt"),
    )
    out = subprocess.run(
        [node, str(CLIENTS / "prisma_proxy.mjs")], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok"), out.stdout
