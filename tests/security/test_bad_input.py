"""Item 8: bad input gets AWS's 4xx error, never a 500 or a logged traceback (codec and Secrets Manager parts).

Lone surrogate escapes go through boto3 itself (its JSON encoder escapes them as ``\\ud800``); the deep
body goes raw, signed as botocore signs.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess
from tests.security.probe import read_response, signed_request

LONE = "caf\ud800e"


def _error(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _tracebacks(proc: BorealisProcess) -> int:
    return (proc.data_dir / "borealis.log").read_text(errors="replace").count("Traceback")


@pytest.fixture
def no_new_traceback(borealis: BorealisProcess) -> Any:
    before = _tracebacks(borealis)
    yield
    assert _tracebacks(borealis) == before, "the log has a new traceback"


@pytest.mark.usefixtures("no_new_traceback")
def test_lone_surrogate_in_secret_string(secretsmanager: Any) -> None:
    name = f"surrogate-{uuid.uuid4().hex[:8]}"
    assert _error(secretsmanager.create_secret, Name=name, SecretString=LONE) == ("SerializationException", 400)
    assert _error(secretsmanager.create_secret, Name=LONE, SecretString="x") == ("SerializationException", 400)
    secretsmanager.create_secret(Name=name, SecretString="caf\u00e9 \U0001f600")  # a real pair is fine
    assert secretsmanager.get_secret_value(SecretId=name)["SecretString"] == "caf\u00e9 \U0001f600"
    secretsmanager.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


@pytest.mark.usefixtures("no_new_traceback")
def test_lone_surrogate_in_data_api_strings(borealis: BorealisProcess) -> None:
    data = borealis.client("rds-data")
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    common = {"resourceArn": cluster["DBClusterArn"], "secretArn": cluster["MasterUserSecret"]["SecretArn"]}
    bad = [
        (data.execute_statement, {**common, "sql": f"SELECT '{LONE}'"}),
        (data.execute_statement, {**common, "sql": "SELECT 1", "database": LONE}),
        (data.batch_execute_statement, {**common, "sql": f"SELECT '{LONE}'", "parameterSets": [[]]}),
        (data.begin_transaction, {**common, "database": LONE}),
        (data.execute_statement, {**common, "sql": "SELECT :v", "parameters": [
            {"name": "v", "value": {"stringValue": LONE}}]}),
    ]  # fmt: skip
    for call, kwargs in bad:
        code, status = _error(call, **kwargs)
        assert status == 400 and code == "BadRequestException", (call, code, status)
    assert data.execute_statement(**common, sql="SELECT 1")["records"] == [[{"longValue": 1}]]


def _raw(proc: BorealisProcess, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", proc.api_port), timeout=60) as sock:
        sock.sendall(request)
        return read_response(sock)


@pytest.mark.usefixtures("no_new_traceback")
@pytest.mark.parametrize("depth", [100_000, 1_000])
def test_deep_json_to_secrets_manager(borealis: BorealisProcess, depth: int) -> None:
    body = b'{"Name": "deep", "SecretString": "x", "Tags": ' + b"[" * depth + b"]" * depth + b"}"
    request = signed_request(
        borealis.url, borealis.credentials(), service="secretsmanager", body=body, target="secretsmanager.CreateSecret"
    )
    status, _, reply = _raw(borealis, request)
    assert status == 400, reply
    assert b"SerializationException" in reply


@pytest.mark.usefixtures("no_new_traceback")
@pytest.mark.parametrize("depth", [100_000, 900])
def test_deep_json_to_the_data_api(borealis: BorealisProcess, depth: int) -> None:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    value = b'{"arrayValue": {"arrayValues": [' * depth + b'{"longValues": [1]}' + b"]}}" * depth
    body = (
        b'{"resourceArn": "%s", "secretArn": "%s", "sql": "SELECT :a", "parameters": [{"name": "a", "value": %s}]}'
        % (cluster["DBClusterArn"].encode(), cluster["MasterUserSecret"]["SecretArn"].encode(), value)
    )
    request = signed_request(
        borealis.url, borealis.credentials(), service="rds-data", body=body, path="/Execute",
        content_type="application/json",
    )  # fmt: skip
    status, _, reply = _raw(borealis, request)
    assert 400 <= status < 500, reply
