"""The Data API under a careless or hostile caller (issue 11 items 3, 6, 7 and 10), through boto3.

* A call's memory is bounded by the response limits: three concurrent 5-million-row SELECTs leave the API
  process within a small multiple of them (RSS measured before and after), and the statements are cancelled.
* A transaction id is bound to the cluster and the secret (its user and password) that began it.
* Abandoned transactions never make calls outside a transaction wait.

The memory and pool tests run their own Borealis with one API process, so what they measure and hold is in
one process and no other test's load disturbs it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.net import postgres_pids
from tests.security.conftest import BorealisProcess

BIG_SELECT = "select g, repeat('y', 100) from generate_series(1, 5000000) g"


def _error(exc: ClientError) -> tuple[str, int, str]:
    err = exc.response["Error"]
    return err["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], err.get("Message", "")


def _arns(borealis: BorealisProcess) -> tuple[str, str]:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    return cluster["DBClusterArn"], cluster["MasterUserSecret"]["SecretArn"]


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis of its own with one API process and a 10 s call limit (so a starved call fails quickly)."""
    proc = BorealisProcess(tmp_path_factory.mktemp("dapi-sec") / "data", workers=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOREALIS_DATAAPI_CALL_TIMEOUT", "10")
        mp.setenv("BOREALIS_DATAAPI_POOL_SIZE", "40")
        proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _three_oversized(solo: BorealisProcess, sql: str) -> tuple[int, int]:
    """Run ``sql`` three times at once, each from its own client; each must be refused for the response size
    limit. Returns the API process's RSS before and its peak (VmHWM, reset first) while they ran, in KiB."""
    assert solo.proc is not None
    pid = solo.proc.pid
    resource, secret = _arns(solo)
    before = _rss_kib(pid)
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) from here on
    outcomes: list[tuple[str, int, str] | str] = []

    def big() -> None:
        try:
            solo.client("rds-data").execute_statement(resourceArn=resource, secretArn=secret, sql=sql)
            outcomes.append("no error")
        except ClientError as exc:
            outcomes.append(_error(exc))

    threads = [threading.Thread(target=big) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    peak = _rss_kib(pid, "VmHWM")
    print(f"API process RSS before {before} KiB, peak {peak} KiB, now {_rss_kib(pid)} KiB")
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert outcome != "no error"
        _code, status, message = outcome
        assert status == 400 and "response size limit" in message, outcome
    return before, peak


def test_memory_of_oversized_results_is_bounded(solo: BorealisProcess) -> None:
    """Issue 11 item 3: rows past the 1 MiB limit are not kept, and the statement is cancelled."""
    resource, secret = _arns(solo)
    solo.client("rds-data").execute_statement(resourceArn=resource, secretArn=secret, sql="select 1")  # warm pool
    before, peak = _three_oversized(solo, BIG_SELECT)
    # 1 MiB of data a call, three calls: tens of MB at most, where reading it all took gigabytes.
    assert (peak - before) < 200 * 1024, (before, peak)
    # The statements were cancelled, not left to run to the end.
    with solo.master_connect() as conn:
        deadline = time.monotonic() + 60
        running = -1
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from pg_stat_activity where query like %s and pid <> pg_backend_pid()"
                " and state = 'active'",
                ("%generate_series(1, 5000000)%",),
            ).fetchone()
            assert row is not None
            running = int(row[0])
            if running == 0:
                break
            time.sleep(0.2)
        assert running == 0


def test_a_row_longer_than_any_response_is_not_buffered(solo: BorealisProcess) -> None:
    """One 100 MB row, three at once: refused as its header arrives (PostgreSQL sends a row whole)."""
    resource, secret = _arns(solo)
    before, peak = _three_oversized(solo, "select repeat('x', 100000000)")
    assert (peak - before) < 200 * 1024, (before, peak)
    data = solo.client("rds-data")
    assert data.execute_statement(resourceArn=resource, secretArn=secret, sql="select 1")["records"]


def test_abandoned_transactions_do_not_starve_other_calls(solo: BorealisProcess) -> None:
    """Issue 11 item 7: more abandoned transactions than the pool's 40 connections; calls still run."""
    resource, secret = _arns(solo)
    data = solo.client("rds-data")
    tids = [data.begin_transaction(resourceArn=resource, secretArn=secret)["transactionId"] for _ in range(45)]
    assert len(set(tids)) == 45
    # Before: every call waited for a pooled connection until its time limit (StatementTimeoutException).
    for i in range(5):
        out = data.execute_statement(resourceArn=resource, secretArn=secret, sql=f"select {i} as n")
        assert out["records"] == [[{"longValue": i}]]
    # Every transaction still works, and ending them gives the connections back.
    for tid in tids:
        data.rollback_transaction(resourceArn=resource, secretArn=secret, transactionId=tid)
    out = data.execute_statement(resourceArn=resource, secretArn=secret, sql="select 1")
    assert out["records"] == [[{"longValue": 1}]]


@pytest.fixture
def other_user(borealis: BorealisProcess) -> Iterator[tuple[str, str]]:
    """A second login role and a secret of its own: (role, the secret's ARN)."""
    name = f"dapi_sec_{time.time_ns()}"
    with borealis.master_connect() as conn:
        conn.autocommit = True
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'other-password'")
        try:
            sm = borealis.client("secretsmanager")
            secret = json.dumps({"username": name, "password": "other-password"})
            yield name, sm.create_secret(Name=name, SecretString=secret)["ARN"]
        finally:
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_a_transaction_is_bound_to_its_cluster_and_secret(borealis: BorealisProcess, other_user: Any) -> None:
    """Issue 11 item 6: another user's secret, a missing secret or another cluster cannot use the id."""
    role, other_secret = other_user
    resource, master_secret = _arns(borealis)
    data = borealis.client("rds-data")
    sm = borealis.client("secretsmanager")
    master = json.loads(sm.get_secret_value(SecretId=master_secret)["SecretString"])
    same_user_wrong_password = sm.create_secret(
        Name=f"{role}-wrong", SecretString=json.dumps({"username": master["username"], "password": "not-it"})
    )["ARN"]
    missing_secret = master_secret.rsplit(":", 1)[0] + ":no-such-secret-AbCdEf"
    other_cluster = resource.rsplit(":", 1)[0] + ":some-other-cluster"
    other_region = resource.replace(":us-east-1:", ":eu-west-1:")

    tid = data.begin_transaction(resourceArn=resource, secretArn=master_secret)["transactionId"]
    sql = "select current_user::text"

    def refused(expected: tuple[str, int], call: Any, **kwargs: Any) -> None:
        with pytest.raises(ClientError) as info:
            call(transactionId=tid, **kwargs)
        code, status, message = _error(info.value)
        assert (code, status) == expected, (code, status, message)

    not_found = ("TransactionNotFoundException", 404)
    for secret in (other_secret, same_user_wrong_password):
        refused(not_found, data.execute_statement, resourceArn=resource, secretArn=secret, sql=sql)
        refused(
            not_found, data.batch_execute_statement, resourceArn=resource, secretArn=secret, sql=sql,
            parameterSets=[[]],
        )  # fmt: skip
        refused(not_found, data.commit_transaction, resourceArn=resource, secretArn=secret)
        refused(not_found, data.rollback_transaction, resourceArn=resource, secretArn=secret)
    secrets_error = ("SecretsErrorException", 400)
    refused(secrets_error, data.execute_statement, resourceArn=resource, secretArn=missing_secret, sql=sql)
    refused(secrets_error, data.commit_transaction, resourceArn=resource, secretArn=missing_secret)
    refused(secrets_error, data.rollback_transaction, resourceArn=resource, secretArn=missing_secret)
    for cluster in (other_cluster, other_region):
        refused(not_found, data.execute_statement, resourceArn=cluster, secretArn=master_secret, sql=sql)
        refused(not_found, data.commit_transaction, resourceArn=cluster, secretArn=master_secret)

    # None of that touched the transaction: its owner goes on, as the master user, and commits.
    out = data.execute_statement(resourceArn=resource, secretArn=master_secret, sql=sql, transactionId=tid)
    assert out["records"] == [[{"stringValue": master["username"]}]]
    status = data.commit_transaction(resourceArn=resource, secretArn=master_secret, transactionId=tid)
    assert status["transactionStatus"] == "Transaction Committed"

    # The other user's own transactions run as that user, and the master secret cannot use them either.
    tid = data.begin_transaction(resourceArn=resource, secretArn=other_secret)["transactionId"]
    refused(not_found, data.execute_statement, resourceArn=resource, secretArn=master_secret, sql=sql)
    out = data.execute_statement(resourceArn=resource, secretArn=other_secret, sql=sql, transactionId=tid)
    assert out["records"] == [[{"stringValue": role}]]
    data.rollback_transaction(resourceArn=resource, secretArn=other_secret, transactionId=tid)


def _postmaster(data_dir: Path) -> int:
    pids = set(postgres_pids(data_dir))
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        if ppid not in pids:
            return pid
    raise AssertionError(f"no postmaster among {pids}")


def test_after_a_postmaster_crash_the_database_is_unavailable_not_resuming(solo: BorealisProcess) -> None:
    """Issue 11 item 10: a crashed writer is not "resuming after being auto-paused" (it never paused).

    Last in this module: it kills the module's Borealis's postgres (Borealis restarts it).
    """
    resource, secret = _arns(solo)
    data = solo.client("rds-data")
    assert data.execute_statement(resourceArn=resource, secretArn=secret, sql="select 1")["records"]
    os.kill(_postmaster(solo.data_dir), signal.SIGKILL)
    errors: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + 120
    recovered = False
    while time.monotonic() < deadline:
        try:
            data.execute_statement(resourceArn=resource, secretArn=secret, sql="select 1")
        except ClientError as exc:
            errors.append(_error(exc))
            time.sleep(0.02)
            continue
        if errors:
            recovered = True
            break
        time.sleep(0.02)  # the old connections may not have noticed yet
    assert recovered, errors[-5:]
    codes = {code for code, _, _ in errors}
    assert not [e for e in errors if "auto-paused" in e[2]], errors
    # The writer was down while it restarted: AWS's error for an unavailable writer (504), and for the
    # pooled connections the crash cut, the server's own error.
    assert "DatabaseUnavailableException" in codes, errors
    assert codes <= {"DatabaseUnavailableException", "DatabaseErrorException"}, errors
    assert all(status == 504 for code, status, _ in errors if code == "DatabaseUnavailableException")
