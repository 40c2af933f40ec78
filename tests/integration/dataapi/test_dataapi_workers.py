"""The API served by several processes (``--workers``; the shared fixture runs two) behaves as one.

Each fresh boto3 client opens a new TCP connection, and the kernel spreads connections over the processes
that share the port (SO_REUSEPORT). So a transaction driven from many fresh clients has calls land on
processes that do not hold it, which must forward them; and rds/secretsmanager calls landing on a worker
must reach the main process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.conftest import BorealisProcess, processes_for

from .conftest import Target


def test_worker_processes_run(borealis: BorealisProcess) -> None:
    assert borealis.proc is not None
    others = [pid for pid in processes_for(borealis.data_dir) if pid != borealis.proc.pid]
    workers = [pid for pid in others if b"borealis.app" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 1  # --workers 2: the main process and one worker


def test_a_transaction_over_many_connections(borealis: BorealisProcess, target: Target) -> None:
    def fresh() -> Any:
        return borealis.client("rds-data")

    common = {"resourceArn": target.resource_arn, "secretArn": target.secret_arn}
    fresh().execute_statement(sql="CREATE TABLE IF NOT EXISTS spread (n int)", **common)
    fresh().execute_statement(sql="TRUNCATE spread", **common)
    tx = fresh().begin_transaction(**common)["transactionId"]
    for n in range(24):
        fresh().execute_statement(
            sql="INSERT INTO spread VALUES (:n)",
            parameters=[{"name": "n", "value": {"longValue": n}}],
            transactionId=tx,
            **common,
        )
    # Not visible outside the transaction before the commit, all of it after.
    before = fresh().execute_statement(sql="SELECT count(*) FROM spread", **common)["records"]
    assert before == [[{"longValue": 0}]]
    assert fresh().commit_transaction(transactionId=tx, **common)["transactionStatus"] == "Transaction Committed"
    after = fresh().execute_statement(sql="SELECT count(*), sum(n) FROM spread", **common)["records"]
    assert after == [[{"longValue": 24}, {"longValue": sum(range(24))}]]


def test_other_services_reach_the_main_process_from_any_worker(borealis: BorealisProcess) -> None:
    for _ in range(12):
        clusters = borealis.client("rds").describe_db_clusters()["DBClusters"]
        assert "default" in [c["DBClusterIdentifier"] for c in clusters]
        assert borealis.client("secretsmanager").list_secrets()["SecretList"]
