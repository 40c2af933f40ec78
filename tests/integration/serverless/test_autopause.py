"""Auto-pause and resume on a real Borealis: an idle instance pauses (capacity 0, status available), the next
connection through any endpoint resumes it (wrong credentials too), an open connection prevents the pause, and
a Data API call fails fast with DatabaseResumingException while it resumes, then succeeds."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

INSTANCE = "default-instance-1"
CLIENTS = Path(__file__).resolve().parents[2] / "clients"


@pytest.fixture(scope="module")
def pausing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis of its own whose default cluster pauses after 3 s without connections, with a worker process
    beside the main one (the Data API is served by both)."""
    proc = BorealisProcess(tmp_path_factory.mktemp("pause") / "data", workers=2, extra_args=("--min-auto-pause", "1"))
    proc.start()
    try:
        out = proc.client("rds").modify_db_cluster(
            DBClusterIdentifier="default",
            ServerlessV2ScalingConfiguration={"MinCapacity": 0, "MaxCapacity": 4, "SecondsUntilAutoPause": 3},
            ApplyImmediately=True,
        )
        assert out["DBCluster"]["ServerlessV2ScalingConfiguration"]["SecondsUntilAutoPause"] == 3
        yield proc
    finally:
        proc.stop()


def events(proc: BorealisProcess, code: str) -> int:
    return len(re.findall(rf"{INSTANCE}: RDS-EVENT-{code}", proc.output.read_text()))


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def wait_paused(proc: BorealisProcess) -> None:
    """Wait for the next pause to finish (the count of RDS-EVENT-0371 to grow past the resumes)."""
    wait_until("the instance pauses", lambda: events(proc, "0371") > events(proc, "0373"))


def connect(proc: BorealisProcess, host: str, port: int, password: str | None = None) -> psycopg.Connection[Any]:
    rds = proc.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = proc.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
    value = json.loads(secret["SecretString"])
    return psycopg.connect(
        host=host,
        port=port,
        user=value["username"],
        password=password or value["password"],
        dbname="postgres",
        connect_timeout=30,
    )


def test_pause_and_resume_through_every_endpoint(pausing: BorealisProcess) -> None:
    rds = pausing.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    instance = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
    custom = rds.create_db_cluster_endpoint(
        DBClusterIdentifier="default", DBClusterEndpointIdentifier="pause-any", EndpointType="ANY"
    )
    wait_until(
        "the custom endpoint is available",
        lambda: (
            rds.describe_db_cluster_endpoints(DBClusterEndpointIdentifier="pause-any")["DBClusterEndpoints"][0][
                "Status"
            ]
            == "available"
        ),
    )
    endpoints = {
        "writer": (cluster["Endpoint"], cluster["Port"]),
        "reader": (cluster["ReaderEndpoint"], cluster["Port"]),
        "instance": (instance["Endpoint"]["Address"], instance["Endpoint"]["Port"]),
        "custom": (custom["Endpoint"], cluster["Port"]),
    }
    for name, (host, port) in endpoints.items():
        wait_paused(pausing)
        # Paused: capacity 0, status still available (as on AWS).
        instance = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
        assert instance["DBInstanceStatus"] == "available"
        resumed = events(pausing, "0373")
        with connect(pausing, host, port) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,), name
        assert events(pausing, "0373") == resumed + 1, name

    # A connection attempt with a wrong password resumes it too; the client sees the usual auth error.
    wait_paused(pausing)
    resumed = events(pausing, "0373")
    with pytest.raises(psycopg.OperationalError) as err:
        connect(pausing, *endpoints["writer"], password="wrong-password")
    assert "password authentication failed" in str(err.value)
    wait_until("the wrong login resumed it", lambda: events(pausing, "0373") > resumed)

    # DescribeEvents lists them.
    listed = rds.describe_events(SourceType="db-instance", SourceIdentifier=INSTANCE, Duration=60)["Events"]
    messages = " | ".join(e["Message"] for e in listed)
    for text in ("Initiated pause", "is paused", "Initiated resume", "resumed"):
        assert text in messages, messages

    # CloudWatch shows a pause as capacity 0 (the scaler publishes it on its next tick).
    cloudwatch = pausing.client("cloudwatch")
    wait_paused(pausing)

    def capacity(stat: str) -> float:
        now = time.time()
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/RDS",
            MetricName="ServerlessDatabaseCapacity",
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": INSTANCE}],
            StartTime=now - 600,
            EndTime=now + 1,
            Period=60,
            Statistics=[stat],
        )["Datapoints"]
        values = [float(p[stat]) for p in points]
        return (min if stat == "Minimum" else max)(values, default=-1.0)

    wait_until("CloudWatch shows capacity 0", lambda: capacity("Minimum") == 0)
    assert capacity("Maximum") >= 0.5


def test_an_open_connection_prevents_the_pause(pausing: BorealisProcess) -> None:
    cluster = pausing.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    with connect(pausing, cluster["Endpoint"], cluster["Port"]) as conn:
        pauses = events(pausing, "0371")
        # Idle in the session for well past SecondsUntilAutoPause (3 s): at least three pause periods.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.5)
        assert events(pausing, "0371") == pauses
        assert conn.execute("SELECT 2").fetchone() == (2,)
    wait_until("it pauses once the connection closes", lambda: events(pausing, "0371") > pauses)


def test_data_api_resumes_with_database_resuming_exception(pausing: BorealisProcess) -> None:
    rds = pausing.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    data = pausing.client("rds-data")
    args = {
        "resourceArn": cluster["DBClusterArn"],
        "secretArn": cluster["MasterUserSecret"]["SecretArn"],
        "sql": "SELECT 42",
    }
    wait_paused(pausing)
    with pytest.raises(ClientError) as err:
        data.execute_statement(**args)
    assert err.value.response["Error"]["Code"] == "DatabaseResumingException"
    assert "resuming after being auto-paused" in err.value.response["Error"]["Message"]
    # The retry-with-backoff pattern AWS recommends succeeds once the writer is back.
    delay = 0.05
    for _ in range(40):
        try:
            out = data.execute_statement(**args)
            break
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "DatabaseResumingException"
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    else:
        raise AssertionError("the Data API never served after the resume")
    assert out["records"] == [[{"longValue": 42}]]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def _execute_on_node(proc: BorealisProcess, node: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """ExecuteStatement, signed as boto3 signs it, served by API process ``node`` alone (its unix socket in the
    data directory), where the kernel would otherwise spread TCP connections over every process."""
    key, secret = proc.credentials()
    request = AWSRequest(
        "POST", proc.url + "/Execute", data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(key, secret), "rds-data", "us-east-1").add_auth(request)
    conn = _UnixHTTPConnection(str(proc.data_dir / f"api-{node}.sock"))
    try:
        headers = {"Host": proc.url.split("//", 1)[1], **dict(request.headers.items())}
        conn.request("POST", "/Execute", body=request.body, headers=headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        conn.close()


def test_a_data_api_call_on_a_worker_resumes_the_writer(pausing: BorealisProcess) -> None:
    # Auto-pause lives in the main process; a call served by a worker must resume the writer all the same.
    cluster = pausing.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    body = {
        "resourceArn": cluster["DBClusterArn"],
        "secretArn": cluster["MasterUserSecret"]["SecretArn"],
        "sql": "SELECT 43",
    }
    wait_paused(pausing)
    resumed = events(pausing, "0373")
    status, out = _execute_on_node(pausing, 1, body)
    assert status == 400 and "resuming after being auto-paused" in out.get("message", ""), out
    deadline = time.monotonic() + 60
    while (answer := _execute_on_node(pausing, 1, body))[0] != 200:
        assert "resuming" in answer[1].get("message", ""), answer
        assert time.monotonic() < deadline, "a call on the worker never resumed the writer"
        time.sleep(0.2)
    assert answer[1]["records"] == [[{"longValue": 43}]]
    assert events(pausing, "0373") > resumed


NODE_RETRY = r"""
const { Client } = require('pg');
const [host, port, user, password] = process.argv.slice(2);
async function once() {
  const client = new Client({
    host, port: Number(port), user, password, database: 'postgres', connectionTimeoutMillis: 30000 });
  await client.connect();
  try { return (await client.query('SELECT 7 AS n')).rows[0].n; } finally { await client.end(); }
}
(async () => {
  for (let attempt = 0, delay = 100; attempt < 8; attempt++, delay *= 2) {
    try { console.log(JSON.stringify({ n: await once(), attempt })); return; }
    catch (e) { console.error(String(e)); await new Promise(r => setTimeout(r, delay)); }
  }
  process.exit(1);
})();
"""


def test_node_postgres_with_retries_across_a_pause(pausing: BorealisProcess, tmp_path: Path) -> None:
    cluster = pausing.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = pausing.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
    value = json.loads(secret["SecretString"])
    script = CLIENTS / "pause_retry.cjs"
    script.write_text(NODE_RETRY)
    try:
        wait_paused(pausing)
        out = subprocess.run(
            ["node", str(script), cluster["Endpoint"], str(cluster["Port"]), value["username"], value["password"]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=CLIENTS,
        )
    finally:
        script.unlink()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 7 and result["attempt"] == 0  # held while postgres starts: no error, no retry needed
