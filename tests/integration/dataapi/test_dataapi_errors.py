"""Each Data API error with the code, HTTP status and wording AWS gives, and bad inputs that must not 500."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess
from tests.integration.dataapi.conftest import Target

Execute = Callable[..., dict[str, Any]]


def error(exc: ClientError) -> tuple[str, int, str]:
    err = exc.response["Error"]
    return err["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], err["Message"]


def call(data: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        data.execute_statement(**kwargs)
    return error(info.value)


def test_sql_error_format(execute: Execute) -> None:
    with pytest.raises(ClientError) as info:
        execute("SELECT * FROM dapi_nowhere WHERE a = :a", {"a": {"longValue": 1}})
    assert error(info.value) == (
        "DatabaseErrorException",
        400,
        'ERROR: relation "dapi_nowhere" does not exist\n  Position: 15; SQLState: 42P01',
    )
    with pytest.raises(ClientError) as info:
        execute("SELECT :abc + 'x'::int", {"abc": {"longValue": 1}})
    message = error(info.value)[2]
    assert message.endswith("Position: 15; SQLState: 22P02")  # positions refer to the SQL as sent


def test_validation_errors(execute: Execute, data: Any, target: Target) -> None:
    for kwargs, expected in [
        ({"sql": "SELECT 1; SELECT 2"}, "Multistatements aren't supported."),
        ({"sql": "SELECT 1", "schema": "public"}, "The schema parameter isn't supported"),
    ]:
        code, status, message = call(data, resourceArn=target.resource_arn, secretArn=target.secret_arn, **kwargs)
        assert (code, status, message) == ("ValidationException", 400, expected)
    assert execute("SELECT 1; ;  -- trailing")["records"] == [[{"longValue": 1}]]


def test_request_size_limit(data: Any, target: Target) -> None:
    """4 MiB of SQL and values per request, AWS's limit, checked before anything reaches PostgreSQL."""
    code, status, message = call(
        data,
        resourceArn=target.resource_arn,
        secretArn=target.secret_arn,
        sql="SELECT :v",
        parameters=[{"name": "v", "value": {"stringValue": "x" * (4 * 1024 * 1024)}}],
    )
    assert (code, status, message) == ("BadRequestException", 400, "Request size exceeds the maximum of 4194304 bytes")


def test_members_outside_the_models_constraints(data: Any, target: Target) -> None:
    common = {"resourceArn": target.resource_arn, "secretArn": target.secret_arn, "sql": "SELECT 1"}
    for kwargs, rule in [
        ({"formatRecordsAs": "XML"}, "Member must satisfy enum value set: [NONE, JSON]"),
        ({"database": "d" * 65}, "Member must have length less than or equal to 64"),
    ]:
        code, status, message = call(data, **common, **kwargs)
        assert (code, status) == ("BadRequestException", 400)
        assert message.startswith("1 validation error detected: Value at ") and message.endswith(rule)
    out = data.execute_statement(**common, formatRecordsAs="NONE", database="postgres")
    assert out["records"] == [[{"longValue": 1}]]


@pytest.mark.parametrize(
    ("parameters", "code", "fragment"),
    [
        ([], "DatabaseErrorException", "No value specified for parameter 1"),
        ([{"name": "a", "value": {"arrayValue": {"longValues": [1]}}}], "BadRequestException", "Array parameters"),
        ([{"name": "a", "value": {"stringValue": "x"}, "typeHint": "DATE"}], "DatabaseErrorException", "Parse Error"),
        ([{"name": "a", "value": {"stringValue": "a\x00b"}}], "DatabaseErrorException", "0x00"),
        (
            [{"name": "a", "value": {"stringValue": "2024-13-01"}, "typeHint": "DATE"}],
            "DatabaseErrorException",
            "22008",
        ),
    ],
)
def test_bad_parameters(data: Any, target: Target, parameters: list[Any], code: str, fragment: str) -> None:
    got = call(
        data, resourceArn=target.resource_arn, secretArn=target.secret_arn, sql="SELECT :a", parameters=parameters
    )
    assert got[0] == code and got[1] == 400 and fragment in got[2], got


def test_wrong_types_bypassing_client_validation(borealis: BorealisProcess, target: Target) -> None:
    key, secret = borealis.credentials()
    raw = boto3.client(
        "rds-data",
        endpoint_url=borealis.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    for params in (
        [{"name": "a", "value": {"longValue": "12"}}],
        [{"name": "a", "value": {"longValue": 1, "stringValue": "x"}}],
        [{"name": "a", "value": {}}],
        [{"name": "a"}],
    ):
        with pytest.raises(ClientError) as info:
            raw.execute_statement(
                resourceArn=target.resource_arn, secretArn=target.secret_arn, sql="SELECT :a", parameters=params
            )
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, params
    with pytest.raises(ClientError) as info:
        raw.execute_statement(resourceArn=target.resource_arn, secretArn=target.secret_arn, sql="x" * 70000)
    assert error(info.value)[:2] == ("BadRequestException", 400)


def test_resource_and_secret_errors(borealis: BorealisProcess, data: Any, target: Target) -> None:
    missing = target.resource_arn.rsplit(":", 1)[0] + ":nosuchcluster"
    code, status, message = call(data, resourceArn=missing, secretArn=target.secret_arn, sql="SELECT 1")
    assert (code, status) == ("HttpEndpointNotEnabledException", 400)
    assert message.startswith("HttpEndpoint is not enabled for cluster nosuchcluster")
    code, status, _ = call(
        data, resourceArn="arn:aws:rds:us-east-1:000000000000:db:x", secretArn=target.secret_arn, sql="SELECT 1"
    )
    assert (code, status) == ("BadRequestException", 400)
    unknown_secret = target.secret_arn.rsplit(":", 1)[0] + ":nosuch-AbCdEf"
    code, status, message = call(data, resourceArn=target.resource_arn, secretArn=unknown_secret, sql="SELECT 1")
    assert (code, status) == ("SecretsErrorException", 400) and "can't find the specified secret" in message

    sm = borealis.client("secretsmanager")
    name = f"dapi-{time.time_ns()}"
    no_password = sm.create_secret(Name=name + "-a", SecretString=json.dumps({"username": "postgres"}))["ARN"]
    code, status, _ = call(data, resourceArn=target.resource_arn, secretArn=no_password, sql="SELECT 1")
    assert (code, status) == ("InvalidSecretException", 400)
    wrong = sm.create_secret(Name=name + "-b", SecretString=json.dumps({"username": "postgres", "password": "nope"}))
    code, status, message = call(data, resourceArn=target.resource_arn, secretArn=wrong["ARN"], sql="SELECT 1")
    assert (code, status) == ("DatabaseErrorException", 400)
    assert 'password authentication failed for user "postgres"' in message and "SQLState: 28P01" in message


def test_disabled_http_endpoint(borealis: BorealisProcess, data: Any, target: Target, execute: Execute) -> None:
    rds = borealis.client("rds")
    rds.disable_http_endpoint(ResourceArn=target.resource_arn)
    try:
        time.sleep(1.2)  # the Data API trusts a cluster record for a second
        code, status, message = call(data, resourceArn=target.resource_arn, secretArn=target.secret_arn, sql="SELECT 1")
        assert (code, status) == ("HttpEndpointNotEnabledException", 400)
        assert message.startswith("HttpEndpoint is not enabled for cluster default")
    finally:
        rds.enable_http_endpoint(ResourceArn=target.resource_arn)
    time.sleep(1.2)
    assert execute("SELECT 1")["records"] == [[{"longValue": 1}]]


def test_execute_sql_is_refused(data: Any, target: Target) -> None:
    with pytest.raises(ClientError) as info:
        data.execute_sql(
            dbClusterOrInstanceArn=target.resource_arn, awsSecretStoreArn=target.secret_arn, sqlStatements="SELECT 1"
        )
    code, status, message = error(info.value)
    assert (code, status) == ("BadRequestException", 400) and "isn't supported" in message


def test_response_size_limits(execute: Execute, data: Any) -> None:
    # 1 MiB of database data per response (20 rows of 60 000 bytes), 10 MB in JSON mode; more in
    # test_dataapi_fidelity.py (the exception the aurora-data-api driver pages on, rows over 64 KB).
    with pytest.raises(data.exceptions.BadRequestException) as info:
        execute("SELECT repeat('x', 60000) FROM generate_series(1, 20)")
    assert "response size limit" in info.value.response["Error"]["Message"]
    out = execute("SELECT repeat('x', 60000) AS v FROM generate_series(1, 20)", formatRecordsAs="JSON")
    assert len(json.loads(out["formattedRecords"])) == 20
    big = "é" * 300_000  # a large unicode value both ways: 600 000 bytes
    assert execute("SELECT :v", {"v": {"stringValue": big}})["records"] == [[{"stringValue": big}]]


def test_duplicate_labels_in_json_mode(execute: Execute) -> None:
    with pytest.raises(ClientError) as info:
        execute("SELECT 1 AS a, 2 AS a", formatRecordsAs="JSON")
    assert error(info.value)[:2] == ("BadRequestException", 400)
