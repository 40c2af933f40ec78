"""The rest-json protocol (rds-data) through a real boto3 client."""

from __future__ import annotations

import json

import pytest
from aws_harness import Recorder
from botocore.exceptions import ClientError

from borealis.aws import AWSError

ARN = "arn:aws:rds:eu-west-1:000000000000:cluster:app"
SECRET = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:db-AbCdEf"


def test_execute_statement_round_trip(harness_factory, recorder: Recorder) -> None:
    result = {
        "records": [[{"longValue": 1}, {"stringValue": "a"}, {"blobValue": b"\x00\xff"}, {"isNull": True}]],
        "columnMetadata": [{"name": "id", "typeName": "int8", "nullable": 0}],
        "numberOfRecordsUpdated": 0,
    }
    harness = harness_factory({"rds-data": {"ExecuteStatement": recorder.returning(result)}})
    out = harness.client("rds-data").execute_statement(
        resourceArn=ARN,
        secretArn=SECRET,
        sql="select :id, :name, :data",
        database="postgres",
        includeResultMetadata=True,
        parameters=[
            {"name": "id", "value": {"longValue": 7}},
            {"name": "name", "value": {"stringValue": "x"}, "typeHint": "UUID"},
            {"name": "data", "value": {"blobValue": b"\x01\x02"}},
            {"name": "n", "value": {"isNull": True}},
            {"name": "f", "value": {"doubleValue": 2.5}},
        ],
    )
    ctx, args = recorder.calls[0]
    assert ctx.service == "rds-data"
    assert ctx.operation == "ExecuteStatement"
    assert args == {
        "resourceArn": ARN,
        "secretArn": SECRET,
        "sql": "select :id, :name, :data",
        "database": "postgres",
        "includeResultMetadata": True,
        "parameters": [
            {"name": "id", "value": {"longValue": 7}},
            {"name": "name", "value": {"stringValue": "x"}, "typeHint": "UUID"},
            {"name": "data", "value": {"blobValue": b"\x01\x02"}},
            {"name": "n", "value": {"isNull": True}},
            {"name": "f", "value": {"doubleValue": 2.5}},
        ],
    }
    assert out["records"] == result["records"]
    assert out["columnMetadata"] == result["columnMetadata"]
    assert harness.last[1]["content-type"] == "application/json"


def test_begin_commit_transaction(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {
            "rds-data": {
                "BeginTransaction": recorder.returning({"transactionId": "tx-1"}),
                "CommitTransaction": recorder.returning({"transactionStatus": "Transaction Committed"}),
            }
        }
    )
    data = harness.client("rds-data")
    tx = data.begin_transaction(resourceArn=ARN, secretArn=SECRET)["transactionId"]
    assert data.commit_transaction(resourceArn=ARN, secretArn=SECRET, transactionId=tx)["transactionStatus"] == (
        "Transaction Committed"
    )
    assert [c[0].operation for c in recorder.calls] == ["BeginTransaction", "CommitTransaction"]


def test_modeled_error_with_extra_fields(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {
            "rds-data": {
                "ExecuteStatement": recorder.raising(
                    AWSError("StatementTimeoutException", "too slow", fields={"dbConnectionId": 42})
                ),
                "RollbackTransaction": recorder.raising(AWSError("NotFoundException", "no tx")),
            }
        }
    )
    data = harness.client("rds-data")
    with pytest.raises(data.exceptions.StatementTimeoutException) as caught:
        data.execute_statement(resourceArn=ARN, secretArn=SECRET, sql="select pg_sleep(99)")
    assert caught.value.response["dbConnectionId"] == 42
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert harness.last[1]["x-amzn-errortype"] == "StatementTimeoutException"
    with pytest.raises(data.exceptions.NotFoundException) as missing:
        data.rollback_transaction(resourceArn=ARN, secretArn=SECRET, transactionId="t")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_unimplemented_and_unknown_routes(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds-data": {"ExecuteStatement": recorder.returning({})}})
    with pytest.raises(ClientError) as caught:
        harness.client("rds-data").begin_transaction(resourceArn=ARN, secretArn=SECRET)
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    status, headers, _ = harness.signed("rds-data", "POST", "/Nope", b"{}", {"Content-Type": "application/json"})
    assert status == 404
    assert headers["x-amzn-errortype"] == "UnknownOperationException"


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b'"a string"',
        b'{"resourceArn": "a", "secretArn": "s"}',
        b'{"resourceArn": "a", "secretArn": "s", "sql": "x", "parameters": {"a": 1}}',
        b'{"resourceArn": "a", "secretArn": "s", "sql": "x", "parameters": [{"value": {"blobValue": "!!"}}]}',
        b'{"resourceArn": "a", "secretArn": "s", "sql": "x", "parameters": [{"value": {"longValue": "7"}}]}',
    ],
)
def test_bad_bodies_are_bad_request(harness_factory, recorder: Recorder, body: bytes) -> None:
    harness = harness_factory({"rds-data": {"ExecuteStatement": recorder.returning({})}})
    status, headers, out = harness.signed("rds-data", "POST", "/Execute", body, {"Content-Type": "application/json"})
    assert status == 400
    assert headers["x-amzn-errortype"] == "BadRequestException"
    assert "message" in json.loads(out)
    assert recorder.calls == []


def test_handler_crash(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds-data": {"ExecuteStatement": recorder.raising(ZeroDivisionError("x"))}})
    with pytest.raises(ClientError) as caught:
        harness.client("rds-data").execute_statement(resourceArn=ARN, secretArn=SECRET, sql="select 1")
    assert caught.value.response["Error"]["Code"] == "InternalFailure"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "\\ud83d\\ude00", "b": 1}', {"a": "\U0001f600", "b": 1}),  # a surrogate pair is one character
        (b'{"n": 1180591620717411303424}', {"n": 2**70}),  # past 64 bits
        (b'{"x": NaN}', {"x": pytest.approx(float("nan"), nan_ok=True)}),
        (b'{"s": "caf\\u00e9 \xe2\x9c\x93"}', {"s": "café ✓"}),
        (b"  ", {}),
    ],
)
def test_json_bodies_read_as_the_standard_library_reads_them(body: bytes, expected: dict[str, object]) -> None:
    from borealis.aws._json import load_json

    assert load_json(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1',
        b'{"a": "\xff"}',
        b"{'a': 1}",
        b'{"a": 1} x',
        b'{"a": "\\ud800", "b": 1}',  # a lone surrogate: valid JSON, but no Unicode text
        b'{"a": ["\\udfff"], "n": 1180591620717411303424}',  # the same where orjson refuses the integer first
        b'{"a": "x\\uDBFF"}',
        b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser recurses
        b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
    ],
)
def test_malformed_json_bodies_are_refused(body: bytes) -> None:
    from borealis.aws._errors import InputError
    from borealis.aws._json import load_json

    with pytest.raises(InputError):
        load_json(body)
