"""Secrets Manager through the real Gateway with a real boto3 client: shapes and AWS error codes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from borealis.secrets import SecretsManager

TOKEN = "c" * 32


def test_create_get_describe(client: Any) -> None:
    created = client.create_secret(
        Name="app/db",
        SecretString=json.dumps({"username": "u", "password": "p"}),
        Description="credentials",
        Tags=[{"Key": "env", "Value": "dev"}],
    )
    assert created["ARN"].startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-")
    # boto3 fills in ClientRequestToken (an idempotency token); it becomes the VersionId.
    assert len(created["VersionId"]) == 36
    got = client.get_secret_value(SecretId=created["ARN"])
    assert json.loads(got["SecretString"]) == {"username": "u", "password": "p"}
    assert got["VersionStages"] == ["AWSCURRENT"]
    assert isinstance(got["CreatedDate"], dt.datetime)
    desc = client.describe_secret(SecretId="app/db")
    assert desc["Description"] == "credentials"
    assert desc["Tags"] == [{"Key": "env", "Value": "dev"}]
    assert desc["VersionIdsToStages"] == {created["VersionId"]: ["AWSCURRENT"]}
    assert desc["LastAccessedDate"].time() == dt.time(0, 0)
    assert desc["RotationEnabled"] is False
    assert "DeletedDate" not in desc
    # The partial ARN (without the random suffix) names the secret too.
    assert client.describe_secret(SecretId=created["ARN"][:-7])["Name"] == "app/db"


def test_binary_and_versions(client: Any) -> None:
    first = client.create_secret(Name="bin", SecretBinary=b"\x00\x01")
    second = client.put_secret_value(SecretId="bin", SecretBinary=b"\x02")
    assert second["VersionStages"] == ["AWSCURRENT"]
    assert client.get_secret_value(SecretId="bin")["SecretBinary"] == b"\x02"
    previous = client.get_secret_value(SecretId="bin", VersionStage="AWSPREVIOUS")
    assert (previous["VersionId"], previous["SecretBinary"]) == (first["VersionId"], b"\x00\x01")
    versions = client.list_secret_version_ids(SecretId="bin")["Versions"]
    assert {v["VersionId"] for v in versions} == {first["VersionId"], second["VersionId"]}
    client.update_secret_version_stage(
        SecretId="bin",
        VersionStage="AWSCURRENT",
        MoveToVersionId=first["VersionId"],
        RemoveFromVersionId=second["VersionId"],
    )
    assert client.get_secret_value(SecretId="bin")["SecretBinary"] == b"\x00\x01"


def test_idempotent_put(client: Any) -> None:
    client.create_secret(Name="s", SecretString="one")
    a = client.put_secret_value(SecretId="s", SecretString="two", ClientRequestToken=TOKEN)
    b = client.put_secret_value(SecretId="s", SecretString="two", ClientRequestToken=TOKEN)
    assert a["VersionId"] == b["VersionId"] == TOKEN
    with pytest.raises(client.exceptions.ResourceExistsException):
        client.put_secret_value(SecretId="s", SecretString="three", ClientRequestToken=TOKEN)


def test_update_and_tags(client: Any) -> None:
    client.create_secret(Name="s", SecretString="one")
    out = client.update_secret(SecretId="s", Description="new", SecretString="two")
    assert client.get_secret_value(SecretId="s")["VersionId"] == out["VersionId"]
    client.tag_resource(SecretId="s", Tags=[{"Key": "a", "Value": "1"}])
    client.untag_resource(SecretId="s", TagKeys=["missing"])
    assert client.describe_secret(SecretId="s")["Tags"] == [{"Key": "a", "Value": "1"}]
    client.untag_resource(SecretId="s", TagKeys=["a"])
    assert "Tags" not in client.describe_secret(SecretId="s")


def test_list_secrets_with_paginator_and_filters(client: Any) -> None:
    for i in range(5):
        client.create_secret(Name=f"svc/{i}", SecretString="v", Tags=[{"Key": "n", "Value": str(i % 2)}])
    client.create_secret(Name="other", SecretString="v")
    pages = list(client.get_paginator("list_secrets").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["SecretList"]) for p in pages] == [2, 2, 2]
    names = [e["Name"] for p in pages for e in p["SecretList"]]
    assert names == ["svc/0", "svc/1", "svc/2", "svc/3", "svc/4", "other"]
    odd = client.list_secrets(Filters=[{"Key": "tag-value", "Values": ["1"]}])["SecretList"]
    assert [e["Name"] for e in odd] == ["svc/1", "svc/3"]
    not_svc = client.list_secrets(Filters=[{"Key": "name", "Values": ["!svc/"]}])["SecretList"]
    assert [e["Name"] for e in not_svc] == ["other"]
    entry = odd[0]
    assert isinstance(entry["CreatedDate"], dt.datetime)
    assert list(entry["SecretVersionsToStages"].values()) == [["AWSCURRENT"]]


def test_delete_and_restore(client: Any) -> None:
    client.create_secret(Name="s", SecretString="v")
    out = client.delete_secret(SecretId="s", RecoveryWindowInDays=7)
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=6, hours=23) < out["DeletionDate"] - now <= dt.timedelta(days=7)
    with pytest.raises(client.exceptions.InvalidRequestException) as info:
        client.get_secret_value(SecretId="s")
    assert "marked for deletion" in info.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidRequestException):
        client.create_secret(Name="s", SecretString="v")
    with pytest.raises(client.exceptions.InvalidRequestException):
        client.delete_secret(SecretId="s")
    assert "DeletedDate" in client.describe_secret(SecretId="s")
    assert client.list_secrets()["SecretList"] == []
    assert len(client.list_secrets(IncludePlannedDeletion=True)["SecretList"]) == 1
    client.restore_secret(SecretId="s")
    assert client.get_secret_value(SecretId="s")["SecretString"] == "v"
    client.delete_secret(SecretId="s", ForceDeleteWithoutRecovery=True)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_secret(SecretId="s")


def test_random_password(client: Any) -> None:
    password = client.get_random_password(PasswordLength=20, ExcludePunctuation=True)["RandomPassword"]
    assert len(password) == 20 and password.isalnum()
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.get_random_password(PasswordLength=5000)


# ---- every error path, as a client sees it ------------------------------------------------------


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize(
    ("operation", "kwargs"),
    [
        ("get_secret_value", {"SecretId": "missing"}),
        ("describe_secret", {"SecretId": "missing"}),
        ("put_secret_value", {"SecretId": "missing", "SecretString": "v"}),
        ("update_secret", {"SecretId": "missing", "Description": "d"}),
        ("delete_secret", {"SecretId": "missing"}),
        ("restore_secret", {"SecretId": "missing"}),
        ("tag_resource", {"SecretId": "missing", "Tags": [{"Key": "k", "Value": "v"}]}),
        ("untag_resource", {"SecretId": "missing", "TagKeys": ["k"]}),
        ("list_secret_version_ids", {"SecretId": "missing"}),
        ("update_secret_version_stage", {"SecretId": "missing", "VersionStage": "AWSCURRENT"}),
    ],
)
def test_not_found(client: Any, operation: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        getattr(client, operation)(**kwargs)
    assert info.value.response["Error"]["Message"] == "Secrets Manager can't find the specified secret."


def test_forced_delete_of_missing_secret_succeeds(client: Any) -> None:
    assert client.delete_secret(SecretId="missing", ForceDeleteWithoutRecovery=True)["Name"] == "missing"


def test_value_not_found(client: Any) -> None:
    client.create_secret(Name="empty")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_secret_value(SecretId="empty")
    client.put_secret_value(SecretId="empty", SecretString="v")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_secret_value(SecretId="empty", VersionId="d" * 32)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_secret_value(SecretId="empty", VersionStage="AWSPREVIOUS")


def test_exists(client: Any) -> None:
    client.create_secret(Name="s", SecretString="v")
    with pytest.raises(client.exceptions.ResourceExistsException) as info:
        client.create_secret(Name="s", SecretString="v")
    assert _error(info) == ("ResourceExistsException", 400)


def test_invalid_parameters(client: Any) -> None:
    client.create_secret(Name="s", SecretString="v")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("create_secret", {"Name": "both", "SecretString": "v", "SecretBinary": b"b"}),
        ("create_secret", {"Name": "bad name!"}),
        ("create_secret", {"Name": "t", "Tags": [{"Key": "aws:reserved", "Value": "v"}]}),
        ("put_secret_value", {"SecretId": "s", "SecretString": "v", "SecretBinary": b"b"}),
        ("delete_secret", {"SecretId": "s", "RecoveryWindowInDays": 6}),
        ("delete_secret", {"SecretId": "s", "RecoveryWindowInDays": 31}),
        ("delete_secret", {"SecretId": "s", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": True}),
        ("list_secrets", {"Filters": [{"Key": "name", "Values": ["bad*value"]}]}),
        ("list_secrets", {"MaxResults": 101}),
    ]
    for operation, kwargs in cases:
        with pytest.raises(client.exceptions.InvalidParameterException) as info:
            getattr(client, operation)(**kwargs)
        assert _error(info) == ("InvalidParameterException", 400), operation


def test_invalid_requests(client: Any, secrets_manager: SecretsManager) -> None:
    version = client.create_secret(Name="s", SecretString="v")["VersionId"]
    secrets_manager.create_secret("rds!cluster-1234", secret_string='{"password":"p"}', owning_service="rds")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("put_secret_value", {"SecretId": "s"}),
        ("get_secret_value", {"SecretId": "s", "VersionStage": "X", "VersionId": version}),
        ("create_secret", {"Name": "r", "AddReplicaRegions": [{"Region": "eu-west-1"}]}),
        ("put_secret_value", {"SecretId": "rds!cluster-1234", "SecretString": "x"}),
        ("delete_secret", {"SecretId": "rds!cluster-1234"}),
    ]
    for operation, kwargs in cases:
        with pytest.raises(client.exceptions.InvalidRequestException):
            getattr(client, operation)(**kwargs)
    assert client.describe_secret(SecretId="rds!cluster-1234")["OwningService"] == "rds"


def test_invalid_next_token(client: Any) -> None:
    with pytest.raises(client.exceptions.InvalidNextTokenException):
        client.list_secrets(NextToken="not-a-token")
