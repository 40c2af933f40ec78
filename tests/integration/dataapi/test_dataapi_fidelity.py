"""What real clients found different from AWS (issue 12), each checked through boto3 on the shared Borealis.

Parameter names that start with a digit (Drizzle's ``:1``), rows over 64 KB, the error that starts the
aurora-data-api driver's paging, compact json/jsonb, and CommitTransaction after a failed statement.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest

from borealis.dataapi import RESPONSE_TOO_LARGE, DataApi, UnsupportedResultException
from tests.integration.conftest import BorealisProcess
from tests.integration.dataapi.conftest import Target

from .test_dataapi_statements import Run, _with_api

Execute = Callable[..., dict[str, Any]]


def test_parameter_names_may_start_with_a_digit(execute: Execute) -> None:
    execute("CREATE TABLE IF NOT EXISTS fid_digits (id serial PRIMARY KEY, name text, tags int[])")
    out = execute(
        "insert into fid_digits (name, tags) values (:1, :2::int[]) returning id, name, tags[1:2], tags[:3]",
        [{"name": "1", "value": {"stringValue": "drizzle"}}, {"name": "2", "value": {"stringValue": "{7,8,9}"}},
         {"name": "3", "value": {"longValue": 3}}],
    )  # fmt: skip
    record = out["records"][0]
    assert record[1:] == [
        {"stringValue": "drizzle"},
        {"arrayValue": {"longValues": [7, 8]}},  # a[1:2] is a slice, whatever parameters the call has
        {"longValue": 9},  # a[:3] is the element at the parameter's index, as Drizzle's a[${i}] means
    ]
    # A slice with no lower bound keeps a blank after its colon; the same name twice binds one value.
    out = execute("select tags[: 2] as head, :10 + :10 as twenty from fid_digits where id = :1",
                  {"1": {"longValue": record[0]["longValue"]}, "10": {"longValue": 10}})  # fmt: skip
    assert out["records"] == [[{"arrayValue": {"longValues": [7, 8]}}, {"longValue": 20}]]
    # ':1' in a string, a comment or a dollar quote is text; '::' is a cast.
    out = execute("select ':1' as a, $$:2$$ as b, :3::int as c -- :4", {"3": {"stringValue": "5"}})
    assert out["records"] == [[{"stringValue": ":1"}, {"stringValue": ":2"}, {"longValue": 5}]]


def test_a_missing_digit_parameter_is_named(execute: Execute, data: Any) -> None:
    with pytest.raises(data.exceptions.DatabaseErrorException) as info:
        execute("select :1, :2", {"1": {"longValue": 1}})
    assert "(:2)" in info.value.response["Error"]["Message"]


# ------------------------------------------------------------------------------------------ result sizes


def test_rows_over_64_kb_are_returned(execute: Execute) -> None:
    # data-api-client v2's suites read these from Aurora Serverless v2: the documented 64 KB is not applied.
    execute("CREATE TABLE IF NOT EXISTS fid_big (id int PRIMARY KEY, t text, b bytea)")
    text = "A" * 100_000
    blob = bytes(range(256)) * 2000  # 512,000 bytes: its hex text (1,024,002 characters) is what PG sends
    execute("INSERT INTO fid_big VALUES (1, :t, :b) ON CONFLICT (id) DO UPDATE SET t = :t, b = :b",
            {"t": {"stringValue": text}, "b": {"blobValue": blob}})  # fmt: skip
    assert execute("SELECT t FROM fid_big WHERE id = 1")["records"] == [[{"stringValue": text}]]
    assert execute("SELECT b FROM fid_big WHERE id = 1")["records"] == [[{"blobValue": blob}]]
    out = execute("SELECT t, b FROM fid_big WHERE id = 1", formatRecordsAs="JSON")
    assert json.loads(out["formattedRecords"]) == [{"t": text, "b": base64.b64encode(blob).decode()}]


def test_bytea_counts_by_its_bytes_against_the_response_limit(execute: Execute, data: Any) -> None:
    # 1,000,000 bytes fit in 1 MiB (their hex text, 2,000,002 characters, would not); 1,100,000 do not.
    out = execute("SELECT decode(repeat('ab', 1000000), 'hex') AS b")
    assert len(out["records"][0][0]["blobValue"]) == 1_000_000
    with pytest.raises(data.exceptions.BadRequestException) as info:
        execute("SELECT decode(repeat('ab', 1100000), 'hex') AS b")
    assert info.value.response["Error"]["Message"] == RESPONSE_TOO_LARGE


def test_over_1_mib_is_the_error_that_starts_paging(execute: Execute, data: Any, target: Target) -> None:
    # aurora-data-api pages a query (DECLARE ... CURSOR, FETCH n) when ExecuteStatement fails with these words.
    # 1 MiB of data, or 10 MB in JSON mode (formattedRecords).
    for sql, mode in (("SELECT repeat('x', 60000) FROM generate_series(1, 20)", "NONE"),
                      ("SELECT repeat('x', 600000) FROM generate_series(1, 19)", "JSON")):  # fmt: skip
        with pytest.raises(data.exceptions.BadRequestException) as info:
            execute(sql, formatRecordsAs=mode)
        assert info.value.response["Error"]["Message"] == RESPONSE_TOO_LARGE
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # In a transaction, the refused result leaves the transaction usable: a cursor pages the same query.
    arns = {"resourceArn": target.resource_arn, "secretArn": target.secret_arn}
    tid = data.begin_transaction(**arns)["transactionId"]
    sql = "SELECT g, repeat('x', 60000) FROM generate_series(1, 20) g"
    with pytest.raises(data.exceptions.BadRequestException):
        data.execute_statement(sql=sql, transactionId=tid, **arns)
    data.execute_statement(sql=f"DECLARE fid_pages SCROLL CURSOR FOR {sql}", transactionId=tid, **arns)
    seen = []
    while page := data.execute_statement(sql="FETCH 8 FROM fid_pages", transactionId=tid, **arns)["records"]:
        seen += [row[0]["longValue"] for row in page]
    assert seen == list(range(1, 21))
    assert data.commit_transaction(transactionId=tid, **arns)["transactionStatus"] == "Transaction Committed"


def test_the_aurora_data_api_driver_pages_a_large_result(data: Any, target: Target) -> None:
    import aurora_data_api  # the DB-API driver (and SQLAlchemy dialect's base), a test dependency

    connect = functools.partial(
        aurora_data_api.connect,
        aurora_cluster_arn=target.resource_arn, secret_arn=target.secret_arn, rds_data_client=data, database="postgres",
    )  # fmt: skip
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT g, repeat('x', 3000) AS pad FROM generate_series(1, 2048) g")  # 6 MB: paged
        rows = cur.fetchall()
    assert [row[0] for row in rows] == list(range(1, 2049))
    assert all(row[1] == "x" * 3000 for row in rows)


# ------------------------------------------------------------------------------------------ json, jsonb


def test_json_and_jsonb_come_back_compact(execute: Execute) -> None:
    doc = '{"x": 0, "y": "a, b: c", "z": [0, 0, 1], "n": {"k": 1.50}}'
    compact = '{"x":0,"y":"a, b: c","z":[0,0,1],"n":{"k":1.50}}'
    out = execute("SELECT CAST(:d AS jsonb) AS b, CAST(:d AS json) AS j, :p::json AS p, ARRAY[:d::jsonb] AS a",
                  {"d": {"stringValue": doc}, "p": {"stringValue": '[\n  1,\n\t"two"\n]'}})  # fmt: skip
    jsonb_order = '{"n":{"k":1.50},"x":0,"y":"a, b: c","z":[0,0,1]}'  # jsonb keeps its own key order
    assert out["records"] == [
        [{"stringValue": jsonb_order}, {"stringValue": compact}, {"stringValue": '[1,"two"]'},
         {"arrayValue": {"stringValues": [jsonb_order]}}]
    ]  # fmt: skip
    out = execute("SELECT CAST(:d AS jsonb) AS b", {"d": {"stringValue": doc}}, formatRecordsAs="JSON")
    assert out["formattedRecords"] == json.dumps([{"b": jsonb_order}], separators=(",", ":"))


# ------------------------------------------------------------------------------------------ transactions


def test_commit_after_a_failed_statement(execute: Execute, data: Any, target: Target) -> None:
    # What a DB-API driver does after catching an error: commit. The service answers "Transaction Committed";
    # PostgreSQL rolled the transaction back, so nothing of it stays.
    execute("CREATE TABLE IF NOT EXISTS fid_tx (id int PRIMARY KEY)")
    execute("DELETE FROM fid_tx")
    arns = {"resourceArn": target.resource_arn, "secretArn": target.secret_arn}
    tid = data.begin_transaction(**arns)["transactionId"]
    data.execute_statement(sql="INSERT INTO fid_tx VALUES (1)", transactionId=tid, **arns)
    with pytest.raises(data.exceptions.DatabaseErrorException, match="42P01"):
        data.execute_statement(sql="SELECT * FROM fid_nowhere", transactionId=tid, **arns)
    with pytest.raises(data.exceptions.DatabaseErrorException, match="25P02"):
        data.execute_statement(sql="INSERT INTO fid_tx VALUES (2)", transactionId=tid, **arns)
    assert data.commit_transaction(transactionId=tid, **arns)["transactionStatus"] == "Transaction Committed"
    assert execute("SELECT count(*) FROM fid_tx")["records"] == [[{"longValue": 0}]]
    with pytest.raises(data.exceptions.TransactionNotFoundException):
        data.execute_statement(sql="SELECT 1", transactionId=tid, **arns)


def test_the_aurora_data_api_driver_commits_after_a_caught_error(data: Any, target: Target) -> None:
    import aurora_data_api

    with aurora_data_api.connect(aurora_cluster_arn=target.resource_arn, secret_arn=target.secret_arn,
                                 rds_data_client=data, database="postgres") as conn, conn.cursor() as cur,\
            pytest.raises(aurora_data_api.exceptions.PostgreSQLError.ER_UNDEF_TABLE):  # fmt: skip
        cur.execute("select * from aurora_data_api_nonexistent_test_table")
    # leaving the block committed; a second connection works as usual
    with aurora_data_api.connect(aurora_cluster_arn=target.resource_arn, secret_arn=target.secret_arn,
                                 rds_data_client=data, database="postgres") as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("select CAST(:d AS jsonb)", {"d": '{"x": 0, "y": "0", "z": [0, 0, 1]}'})
        assert cur.fetchone() == ('{"x":0,"y":"0","z":[0,0,1]}',)  # the driver's own suite asserts this form


def test_the_documented_row_limit_is_a_setting(borealis: BorealisProcess) -> None:
    # BOREALIS_DATAAPI_MAX_ROW=65536: AWS's documented 64 KB, with bytea counted by its bytes.
    async def body(api: DataApi, run: Run) -> None:
        for mode in ("NONE", "JSON"):
            with pytest.raises(UnsupportedResultException, match="Packet for query is too large"):
                await run("SELECT 1 AS n, repeat('x', 70000) AS v", request={"formatRecordsAs": mode})
        out = await run("SELECT decode(repeat('ab', 60000), 'hex') AS b")  # 120 002 characters of hex
        assert len(out["records"][0][0]["blobValue"]) == 60_000
        with pytest.raises(UnsupportedResultException, match="Packet for query is too large"):
            await run("SELECT decode(repeat('ab', 70000), 'hex') AS b")

    _with_api(borealis, body, "coroutine", max_row=65536)
