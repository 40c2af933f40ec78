"""The boto3 transaction pattern users copy (``transfer_funds``): BeginTransaction, two ExecuteStatements,
CommitTransaction, and RollbackTransaction when anything fails, written as an application would."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.dataapi.conftest import Target


def transfer_funds(client: Any, cluster_arn: str, secret_arn: str, source: int, dest: int, amount: int) -> str:
    """Move ``amount`` from account ``source`` to ``dest`` in one Data API transaction."""
    arns = {"resourceArn": cluster_arn, "secretArn": secret_arn, "database": "postgres"}
    tx = client.begin_transaction(**arns)

    def change(sql: str, account: int) -> None:
        client.execute_statement(
            sql=sql,
            parameters=[
                {"name": "amount", "value": {"longValue": amount}},
                {"name": "id", "value": {"longValue": account}},
            ],
            transactionId=tx["transactionId"],
            **arns,
        )

    try:
        change("UPDATE snip_accounts SET balance = balance - :amount WHERE id = :id", source)
        change("UPDATE snip_accounts SET balance = balance + :amount WHERE id = :id", dest)
        done = client.commit_transaction(
            resourceArn=cluster_arn, secretArn=secret_arn, transactionId=tx["transactionId"]
        )
    except Exception:
        client.rollback_transaction(resourceArn=cluster_arn, secretArn=secret_arn, transactionId=tx["transactionId"])
        raise
    status: str = done["transactionStatus"]
    return status


def test_transfer_funds(data: Any, target: Target) -> None:
    def run(sql: str) -> Any:
        return data.execute_statement(resourceArn=target.resource_arn, secretArn=target.secret_arn, sql=sql)

    run("DROP TABLE IF EXISTS snip_accounts")
    run("CREATE TABLE snip_accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))")
    run("INSERT INTO snip_accounts VALUES (1, 100), (2, 0)")
    transfer = lambda amount: transfer_funds(data, target.resource_arn, target.secret_arn, 1, 2, amount)  # noqa: E731

    assert transfer(30) == "Transaction Committed"
    balances = "SELECT balance FROM snip_accounts ORDER BY id"
    assert run(balances)["records"] == [[{"longValue": 70}], [{"longValue": 30}]]
    # An overdraft breaks the CHECK on the first UPDATE: the error reaches the caller, the rollback runs,
    # and neither account changes.
    with pytest.raises(ClientError) as info:
        transfer(500)
    err = info.value.response["Error"]
    assert err["Code"] == "DatabaseErrorException" and "SQLState: 23514" in err["Message"]
    assert run(balances)["records"] == [[{"longValue": 70}], [{"longValue": 30}]]
    run("DROP TABLE snip_accounts")
