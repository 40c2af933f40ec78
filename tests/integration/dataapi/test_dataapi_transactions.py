"""Transactions and batches through boto3: commit, rollback, expiry, a concurrent call, an aborted one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import BorealisProcess
from tests.integration.dataapi.conftest import CALL_TIMEOUT, IDLE_TIMEOUT, Target

Execute = Callable[..., dict[str, Any]]


@pytest.fixture
def table(execute: Execute) -> str:
    execute("DROP TABLE IF EXISTS dapi_tx")
    execute("CREATE TABLE dapi_tx (id int PRIMARY KEY, v text)")
    return "dapi_tx"


def begin(data: Any, target: Target) -> str:
    tid: str = data.begin_transaction(resourceArn=target.resource_arn, secretArn=target.secret_arn)["transactionId"]
    return tid


def end(data: Any, target: Target, tid: str, commit: bool = True) -> str:
    call = data.commit_transaction if commit else data.rollback_transaction
    status: str = call(resourceArn=target.resource_arn, secretArn=target.secret_arn, transactionId=tid)[
        "transactionStatus"
    ]
    return status


def count(execute: Execute) -> int:
    value: int = execute("SELECT count(*) FROM dapi_tx")["records"][0][0]["longValue"]
    return value


def test_commit_makes_rows_visible(data: Any, target: Target, execute: Execute, table: str) -> None:
    tid = begin(data, target)
    assert 100 < len(tid) <= 192
    execute("INSERT INTO dapi_tx VALUES (1, 'a')", transactionId=tid)
    assert count(execute) == 0  # not visible outside the transaction yet
    assert execute("SELECT count(*) FROM dapi_tx", transactionId=tid)["records"] == [[{"longValue": 1}]]
    assert end(data, target, tid) == "Transaction Committed"
    assert count(execute) == 1
    with pytest.raises(data.exceptions.TransactionNotFoundException) as info:
        execute("SELECT 1", transactionId=tid)
    assert info.value.response["Error"]["Message"] == f"Transaction {tid} isn't found"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_rollback_discards(data: Any, target: Target, execute: Execute, table: str) -> None:
    tid = begin(data, target)
    execute("INSERT INTO dapi_tx VALUES (2, 'b')", transactionId=tid)
    assert end(data, target, tid, commit=False) == "Rollback Complete"
    assert count(execute) == 0
    with pytest.raises(data.exceptions.TransactionNotFoundException):
        end(data, target, tid, commit=False)


def test_failed_statement_aborts_the_transaction(data: Any, target: Target, execute: Execute, table: str) -> None:
    tid = begin(data, target)
    execute("INSERT INTO dapi_tx VALUES (3, 'c')", transactionId=tid)
    with pytest.raises(data.exceptions.DatabaseErrorException):
        execute("INSERT INTO dapi_tx VALUES (3, 'dup')", transactionId=tid)
    with pytest.raises(data.exceptions.DatabaseErrorException) as info:
        execute("SELECT 1", transactionId=tid)
    assert "SQLState: 25P02" in info.value.response["Error"]["Message"]
    # The commit answers as the service does (see test_dataapi_fidelity.py); PostgreSQL rolled back.
    assert end(data, target, tid) == "Transaction Committed"
    assert count(execute) == 0


def test_idle_transaction_expires(data: Any, target: Target, execute: Execute, table: str) -> None:
    tid = begin(data, target)
    execute("INSERT INTO dapi_tx VALUES (4, 'd')", transactionId=tid)
    time.sleep(IDLE_TIMEOUT + 0.5)
    with pytest.raises(data.exceptions.TransactionNotFoundException):
        execute("SELECT 1", transactionId=tid)
    assert count(execute) == 0


def test_concurrent_call_on_a_busy_transaction_fails_at_once(
    borealis: BorealisProcess, data: Any, target: Target, execute: Execute
) -> None:
    tid = begin(data, target)
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            execute("SELECT pg_advisory_xact_lock(84121)", transactionId=tid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # The first call blocks on a lock this test holds, so it is surely running (on the server) when the second
    # call comes, however slowly a loaded machine starts the thread or sends the request.
    with borealis.master_connect() as holder:
        holder.autocommit = True
        holder.execute("SELECT pg_advisory_lock(84121)")
        worker = threading.Thread(target=slow)
        worker.start()
        deadline = time.monotonic() + 60
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%(84121)'"
        while holder.execute(waiting).fetchone() != (1,):
            assert time.monotonic() < deadline, "the first call never reached the server"
            time.sleep(0.05)
        with pytest.raises(data.exceptions.DatabaseErrorException) as info:
            execute("SELECT 1", transactionId=tid)
        assert worker.is_alive()  # refused at once, while the first call still runs: not after waiting for it
        holder.execute("SELECT pg_advisory_unlock(84121)")
    assert info.value.response["Error"]["Message"] == "Transaction is still running a query"
    worker.join()
    assert not errors
    assert end(data, target, tid) == "Transaction Committed"


def test_batch_and_batch_in_a_transaction(data: Any, target: Target, execute: Execute, table: str) -> None:
    sets = [
        [{"name": "id", "value": {"longValue": i}}, {"name": "v", "value": {"stringValue": f"r{i}"}}] for i in range(5)
    ]
    out = data.batch_execute_statement(
        resourceArn=target.resource_arn,
        secretArn=target.secret_arn,
        sql="INSERT INTO dapi_tx VALUES (:id, :v)",
        parameterSets=sets,
    )
    assert out["updateResults"] == [{"generatedFields": []}] * 5
    assert count(execute) == 5
    # A failing set rolls the whole batch back outside a transaction.
    with pytest.raises(data.exceptions.DatabaseErrorException):
        data.batch_execute_statement(
            resourceArn=target.resource_arn,
            secretArn=target.secret_arn,
            sql="INSERT INTO dapi_tx VALUES (:id, 'x')",
            parameterSets=[[{"name": "id", "value": {"longValue": 10}}], [{"name": "id", "value": {"longValue": 1}}]],
        )
    assert count(execute) == 5
    tid = begin(data, target)
    data.batch_execute_statement(
        resourceArn=target.resource_arn,
        secretArn=target.secret_arn,
        sql="DELETE FROM dapi_tx WHERE id = :id",
        parameterSets=[[{"name": "id", "value": {"longValue": 0}}], [{"name": "id", "value": {"longValue": 1}}]],
        transactionId=tid,
    )
    assert end(data, target, tid, commit=False) == "Rollback Complete"
    assert count(execute) == 5


def test_call_timeout_and_continue_after_timeout(data: Any, target: Target, execute: Execute, table: str) -> None:
    with pytest.raises(data.exceptions.StatementTimeoutException) as info:
        execute(f"SELECT pg_sleep({CALL_TIMEOUT + 2})")
    assert info.value.response["dbConnectionId"] > 0
    # A statement that is already prepared takes the direct lane (send_cached): its time limit too, as boto3
    # sees it, and the connection comes back cancelled and usable, its statement still prepared.
    assert execute("SELECT pg_sleep(:s)", {"s": {"doubleValue": 0}})["records"] == [[{"stringValue": ""}]]
    with pytest.raises(data.exceptions.StatementTimeoutException) as info:
        execute("SELECT pg_sleep(:s)", {"s": {"doubleValue": CALL_TIMEOUT + 2}})
    assert info.value.response["dbConnectionId"] > 0
    assert execute("SELECT pg_sleep(:s)", {"s": {"doubleValue": 0}})["records"] == [[{"stringValue": ""}]]
    with pytest.raises(data.exceptions.StatementTimeoutException):
        execute(f"INSERT INTO dapi_tx SELECT 99, 'late' FROM pg_sleep({CALL_TIMEOUT + 0.5})", continueAfterTimeout=True)
    deadline = time.monotonic() + 60
    while count(execute) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count(execute) == 1  # the statement went on and committed
