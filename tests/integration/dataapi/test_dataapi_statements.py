"""Statements outside transactions are prepared once per pooled connection, and stay correct when that goes stale.

Driven in-process against the shared Borealis's postgres (the same fake control plane as the unix-socket
tests), so the tests can look at the connection's cache and at ``pg_prepared_statements``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from borealis.dataapi import DataApi, DataApiSettings, DatabaseErrorException, StatementTimeoutException
from borealis.engine._config import socket_dir_for
from tests.integration.conftest import BorealisProcess

from .test_dataapi_unix import ARN, _Control, _Secrets, _Server

Run = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(params=["coroutine", "direct"])
def entry(request: pytest.FixtureRequest) -> str:
    """Each test runs through both ways in: ``execute_statement`` and the HTTP callback's ``start_statement``."""
    return str(request.param)


def _with_api(
    borealis: BorealisProcess, body: Callable[[DataApi, Run], Awaitable[None]], entry: str, **settings: Any
) -> None:
    with borealis.master_connect() as conn:
        row = conn.execute("SELECT host(inet_server_addr()), inet_server_port()").fetchone()
        secret = borealis.client("secretsmanager")
        rds = borealis.client("rds")
    assert row is not None
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    value = secret.get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])["SecretString"]
    secrets = _Secrets()
    secrets.values["s"] = json.loads(value)
    socket_dir = socket_dir_for(
        (borealis.data_dir / "clusters" / "default" / "instances" / "default-instance-1" / "data").absolute()
    )
    api = DataApi(
        _Control(_Server(row[0], int(row[1]), socket_dir)),
        secrets,
        region="us-east-1",
        settings=DataApiSettings(**settings),
    )

    async def run(
        sql: str, tx: str | None = None, request: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        """Run ``sql`` with ``params`` as its parameters; ``request``: more ExecuteStatement members."""
        p: dict[str, Any] = {"resourceArn": ARN, "secretArn": "s", "sql": sql, **(request or {})}
        if params:
            p["parameters"] = [{"name": k, "value": v} for k, v in params.items()]
        if tx is not None:
            p["transactionId"] = tx
        if entry == "coroutine":
            return await api.execute_statement(p)
        later: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def settle(outcome: dict[str, Any] | BaseException) -> None:
            assert not later.done(), "settled twice"
            if isinstance(outcome, BaseException):
                later.set_exception(outcome)
            else:
                later.set_result(outcome)

        out = api.start_statement(p, settle)
        return await later if out is None else out

    async def main() -> None:
        try:
            await body(api, run)
        finally:
            await api.close()

    asyncio.run(main())


def _ours(out: dict[str, Any]) -> int:
    return int(out["records"][0][0]["longValue"])


COUNT = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '\\_borealis\\_%'"


def test_a_repeated_statement_is_prepared_once(borealis: BorealisProcess, entry: str) -> None:
    async def body(api: DataApi, run: Run) -> None:
        for i in range(5):
            out = await run("SELECT :n::int + 1", n={"longValue": i})
            assert out["records"] == [[{"longValue": i + 1}]]
        (pool,) = api._pools.values()
        (conn,) = pool.idle
        assert len(conn.statements) == 1
        assert _ours(await run(COUNT)) == 2  # the SELECT and this count

    _with_api(borealis, body, entry)


def test_stale_and_deallocated_statements_are_prepared_again(borealis: BorealisProcess, entry: str) -> None:
    table = f"stmt_{time.time_ns()}"

    async def body(api: DataApi, run: Run) -> None:
        await run(f"CREATE TABLE {table} (a int)")
        await run(f"INSERT INTO {table} VALUES (1)")
        for _ in range(3):
            assert (await run(f"SELECT * FROM {table}"))["records"] == [[{"longValue": 1}]]
        # The cached plan's result type changes: PostgreSQL refuses it before running; we prepare again.
        await run(f"ALTER TABLE {table} ADD COLUMN b text DEFAULT 'x'")
        assert (await run(f"SELECT * FROM {table}"))["records"] == [[{"longValue": 1}, {"stringValue": "x"}]]
        # The statements are dropped behind the cache's back.
        await run("DEALLOCATE ALL")
        assert (await run(f"SELECT * FROM {table}"))["records"] == [[{"longValue": 1}, {"stringValue": "x"}]]
        await run("DISCARD ALL")
        assert (await run(f"SELECT * FROM {table}"))["records"] == [[{"longValue": 1}, {"stringValue": "x"}]]
        await run(f"DROP TABLE {table}")
        with pytest.raises(DatabaseErrorException, match="42P01"):
            await run(f"SELECT * FROM {table}")

    _with_api(borealis, body, entry)


def test_errors_of_cached_statements_are_the_statements_own(borealis: BorealisProcess, entry: str) -> None:
    async def body(api: DataApi, run: Run) -> None:
        assert (await run("SELECT 10 / :d", d={"longValue": 2}))["records"] == [[{"longValue": 5}]]
        with pytest.raises(DatabaseErrorException, match="division by zero"):
            await run("SELECT 10 / :d", d={"longValue": 0})
        assert (await run("SELECT 10 / :d", d={"longValue": 5}))["records"] == [[{"longValue": 2}]]
        with pytest.raises(DatabaseErrorException, match="42601"):
            await run("SELEC 1")  # a syntax error: Parse fails, nothing is cached
        (pool,) = api._pools.values()
        (conn,) = pool.idle
        assert [key[0] for key in conn.statements] == [b"SELECT 10 / $1"]

    _with_api(borealis, body, entry)


def test_the_cache_is_bounded_and_transactions_use_unnamed_statements(borealis: BorealisProcess, entry: str) -> None:
    async def body(api: DataApi, run: Run) -> None:
        for i in range(6):
            await run(f"SELECT {i}")
        assert _ours(await run(COUNT)) <= 3  # two kept, plus one whose Close goes with the next statement
        tx = (await api.begin_transaction({"resourceArn": ARN, "secretArn": "s"}))["transactionId"]
        before = _ours(await run(COUNT, tx))
        for i in range(3):
            await run(f"SELECT {i} + 100", tx)
        assert _ours(await run(COUNT, tx)) == before
        await api.commit_transaction({"resourceArn": ARN, "secretArn": "s", "transactionId": tx})

    _with_api(borealis, body, entry, statement_cache=2)


def test_no_cache_when_turned_off(borealis: BorealisProcess, entry: str) -> None:
    async def body(api: DataApi, run: Run) -> None:
        for _ in range(3):
            await run("SELECT 1")
        assert _ours(await run(COUNT)) == 0

    _with_api(borealis, body, entry, statement_cache=0)


def test_a_cached_statement_that_runs_too_long_is_cancelled(borealis: BorealisProcess, entry: str) -> None:
    async def body(api: DataApi, run: Run) -> None:
        await run("SELECT pg_sleep(:s)", s={"doubleValue": 0})  # now prepared: the next call is sent at once
        started = time.monotonic()
        with pytest.raises(StatementTimeoutException) as info:
            await run("SELECT pg_sleep(:s)", s={"doubleValue": 300})
        assert time.monotonic() - started < 120  # cut at the call timeout, not after the statement's 300 s
        assert info.value.fields["dbConnectionId"] > 0
        # The connection was cancelled, waited for, and given back usable, its statement still prepared.
        (pool,) = api._pools.values()
        assert [len(conn.statements) for conn in pool.idle] == [1]
        assert (await run("SELECT pg_sleep(:s)", s={"doubleValue": 0}))["records"] == [[{"stringValue": ""}]]

    # Long enough for the first call's login and Parse on a loaded machine; short enough to wait out.
    _with_api(borealis, body, entry, call_timeout=5.0)


def test_a_renamed_column_is_seen_by_a_cached_statement(borealis: BorealisProcess, entry: str) -> None:
    """Later runs of a cached statement skip Describe; a change of its columns must still show."""
    table = f"stmt_{time.time_ns()}"

    async def body(api: DataApi, run: Run) -> None:
        async def as_json(sql: str) -> Any:
            return json.loads((await run(sql, request={"formatRecordsAs": "JSON"}))["formattedRecords"])

        await run(f"CREATE TABLE {table} (a int)")
        await run(f"INSERT INTO {table} VALUES (1)")
        for _ in range(3):
            assert await as_json(f"SELECT * FROM {table}") == [{"a": 1}]
        await run(f"ALTER TABLE {table} RENAME COLUMN a TO z")
        assert await as_json(f"SELECT * FROM {table}") == [{"z": 1}]
        await run(f"ALTER TABLE {table} ALTER COLUMN z TYPE text")
        assert await as_json(f"SELECT * FROM {table}") == [{"z": "1"}]
        assert await as_json(f"SELECT * FROM {table} WHERE false") == []
        await run(f"DROP TABLE {table}")

    _with_api(borealis, body, entry)
