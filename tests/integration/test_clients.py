"""What a user runs by hand: the `borealis` subcommands, the aws CLI, and SigV4 refusals over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import BorealisProcess


def _borealis(
    borealis: BorealisProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "borealis", args[0], "--data-dir", str(borealis.data_dir), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _aws(borealis: BorealisProcess, *args: str) -> subprocess.CompletedProcess[str]:
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    return subprocess.run(
        [aws, *args, "--endpoint-url", borealis.url, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=borealis.env(),
    )


def test_env_exports_work_with_the_aws_cli(borealis: BorealisProcess) -> None:
    out = _borealis(borealis, "env")
    assert out.returncode == 0, out.stderr
    assert f"export AWS_ENDPOINT_URL={borealis.url}" in out.stdout
    # Where the running Borealis is, as comments, and this installation's bin on PATH for a second shell.
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    endpoints = f"writer {cluster['Endpoint']}:{cluster['Port']}, reader {cluster['ReaderEndpoint']}:{cluster['Port']}"
    assert f"# cluster default: {endpoints}, user postgres" in out.stdout
    assert f"AWS API at {borealis.url}" in out.stdout.splitlines()[0]
    # aws CLI v1 pins rds in us-east-1 to rds.amazonaws.com unless --endpoint-url is given (it ignores
    # AWS_ENDPOINT_URL there), so rds gets the flag; secretsmanager shows the exports alone are enough.
    script = out.stdout + (
        "\naws secretsmanager list-secrets --output json > /dev/null"
        '\naws rds describe-db-clusters --endpoint-url "$AWS_ENDPOINT_URL" --output json\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = "/usr/bin:/bin"  # no venv: the exports put it on PATH
    script += "\ncommand -v borealis >&2\n"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.stderr.strip() == os.path.join(os.path.dirname(sys.executable), "borealis")
    assert done.returncode == 0, done.stderr
    clusters = json.loads(done.stdout)["DBClusters"]
    assert "default" in [c["DBClusterIdentifier"] for c in clusters]


def test_status_table(borealis: BorealisProcess) -> None:
    out = _borealis(borealis, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["CLUSTER", "STATUS", "VERSION", "WRITER", "READER", "ACU"]
    default = next(line.split() for line in lines if line.startswith("default "))
    assert default[1] == "available"
    port = default[3].rpartition(":")[2]
    assert port.isdigit() and default[4] == f"127.0.0.2:{port}"  # the reader with its port, as the writer
    assert any(line.split()[:3] == ["default-instance-1", "default", "available"] for line in lines)


def test_psql_opens_on_the_cluster(borealis: BorealisProcess) -> None:
    out = _borealis(borealis, "psql", "default", "--", "-At", "-c", "select 40 + 2, current_user")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42|postgres"


def test_cli_errors_are_one_line(borealis: BorealisProcess, tmp_path: Any) -> None:
    out = _borealis(borealis, "psql", "no-such-cluster")
    assert out.returncode == 1
    assert out.stderr.strip() == "borealis: DBClusterNotFoundFault: DBCluster no-such-cluster not found."
    stopped = subprocess.run(
        [sys.executable, "-m", "borealis", "status", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 1
    assert "Traceback" not in stopped.stderr and stopped.stderr.count("\n") == 1


def test_aws_cli_rds_and_secrets(borealis: BorealisProcess) -> None:
    out = _aws(borealis, "rds", "describe-db-clusters", "--db-cluster-identifier", "default")
    assert out.returncode == 0, out.stderr
    cluster = json.loads(out.stdout)["DBClusters"][0]
    arn = cluster["MasterUserSecret"]["SecretArn"]
    out = _aws(borealis, "secretsmanager", "get-secret-value", "--secret-id", arn)
    assert out.returncode == 0, out.stderr
    assert json.loads(json.loads(out.stdout)["SecretString"])["username"] == "postgres"
    out = _aws(borealis, "rds", "describe-db-instances", "--db-instance-identifier", "missing")
    assert out.returncode != 0
    assert "DBInstanceNotFound" in out.stderr
    out = _aws(
        borealis,
        "rds",
        "create-db-cluster",
        "--db-cluster-identifier",
        "default",
        "--engine",
        "aurora-postgresql",
        "--master-username",
        "x",
        "--master-user-password",
        "password-123",
    )
    assert out.returncode != 0
    assert "DBClusterAlreadyExistsFault" in out.stderr


@pytest.mark.parametrize(
    ("service", "creds", "code", "status"),
    [
        ("rds", ("AKIAUNKNOWNUNKNOWN00", "x" * 40), "InvalidClientTokenId", 403),
        ("rds", (None, "wrong-secret-" + "x" * 27), "SignatureDoesNotMatch", 403),
        ("secretsmanager", ("AKIAUNKNOWNUNKNOWN00", "x" * 40), "UnrecognizedClientException", 400),
        ("secretsmanager", (None, "wrong-secret-" + "x" * 27), "InvalidSignatureException", 400),
    ],
)
def test_bad_signatures_are_refused(
    borealis: BorealisProcess, service: str, creds: tuple[str | None, str], code: str, status: int
) -> None:
    key, _ = borealis.credentials()
    client = borealis.client(service, key=creds[0] or key, secret=creds[1])
    with pytest.raises(ClientError) as exc:
        if service == "rds":
            client.describe_db_clusters()
        else:
            client.list_secrets()
    assert exc.value.response["Error"]["Code"] == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_unknown_action_as_aws_answers(borealis: BorealisProcess) -> None:
    rds = borealis.client("rds")
    with pytest.raises(ClientError) as exc:
        rds.describe_reserved_db_instances()  # an action Borealis does not serve
    assert exc.value.response["Error"]["Code"] == "InvalidAction"


def test_health(borealis: BorealisProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(borealis.url + "/health", timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"status": "ready"}  # nothing more for unauthenticated callers
