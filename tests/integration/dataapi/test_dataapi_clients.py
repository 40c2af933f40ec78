"""The Data API through the other real clients: the aws CLI, the AWS SDK for JavaScript v3, the npm
data-api-client 1.3.1 (AWS SDK v2) and Drizzle ORM's AWS Data API driver. The JavaScript scripts live in
tests/clients/ (npm packages installed by .ci/run); each asserts its own results and exits non-zero on a
failure. A missing node fails these tests: they never skip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import BorealisProcess
from tests.integration.dataapi.conftest import Target

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


def _env(borealis: BorealisProcess, target: Target) -> dict[str, str]:
    env = borealis.env()
    env.update(BOREALIS_URL=borealis.url, RESOURCE_ARN=target.resource_arn, SECRET_ARN=target.secret_arn)
    return env


def test_aws_cli(borealis: BorealisProcess, target: Target) -> None:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    assert aws, "the aws CLI is a test dependency (awscli in the test extras)"
    base = [aws, "rds-data", "--endpoint-url", borealis.url, "--output", "json"]
    arns = ["--resource-arn", target.resource_arn, "--secret-arn", target.secret_arn]
    params = json.dumps([{"name": "a", "value": {"stringValue": "hello"}}])
    out = subprocess.run(
        [*base, "execute-statement", *arns, "--sql", "SELECT :a AS a, 'aGVsbG8='::text::bytea AS b, 1 > 0 AS c",
         "--parameters", params],
        env=_env(borealis, target), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["records"] == [
        [{"stringValue": "hello"}, {"blobValue": "YUdWc2JHOD0="}, {"booleanValue": True}]
    ]
    tx = subprocess.run(
        [*base, "begin-transaction", *arns], env=_env(borealis, target), capture_output=True, text=True, timeout=60
    )
    assert tx.returncode == 0, tx.stderr
    tid = json.loads(tx.stdout)["transactionId"]
    done = subprocess.run(
        [*base, "commit-transaction", *arns, "--transaction-id", tid],
        env=_env(borealis, target), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(done.stdout) == {"transactionStatus": "Transaction Committed"}
    bad = subprocess.run(
        [*base, "execute-statement", *arns, "--sql", "SELECT nope"],
        env=_env(borealis, target), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "(DatabaseErrorException)" in bad.stderr and "SQLState: 42703" in bad.stderr


def _node(script: str, borealis: BorealisProcess, target: Target) -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed: the JavaScript client tests need Node.js 18+"
    if not (CLIENTS / "node_modules").is_dir():
        pytest.fail("tests/clients/node_modules is missing: run `npm ci --prefix tests/clients` (done by .ci/run)")
    out = subprocess.run(
        [node, str(CLIENTS / script)], env=_env(borealis, target), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}"


def test_aws_sdk_js_v3(borealis: BorealisProcess, target: Target) -> None:
    _node("dataapi_sdk_v3.mjs", borealis, target)


def test_data_api_client(borealis: BorealisProcess, target: Target) -> None:
    _node("dataapi_client.cjs", borealis, target)


def test_data_api_client_transaction_example(borealis: BorealisProcess, target: Target) -> None:
    _node("dataapi_client_transaction.cjs", borealis, target)


def test_drizzle_aws_data_api(borealis: BorealisProcess, target: Target) -> None:
    # Drizzle's driver sends :1, :2, ...: inserts with returning, selects, updates, transactions.
    _node("drizzle_dataapi.mjs", borealis, target)
