"""STS: GetCallerIdentity, AssumeRole and GetSessionToken; temporary credentials working on every service."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

from .tools import aws_json, node

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy/cdk-hnb659fds-deploy-role"


def _client(borealis: BorealisProcess, service: str, creds: dict[str, Any]) -> Any:
    return boto3.client(
        service,
        endpoint_url=borealis.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
        config=Config(retries={"max_attempts": 1}),
    )


def test_caller_identity_of_the_admin_key(borealis: BorealisProcess) -> None:
    who = borealis.client("sts").get_caller_identity()
    assert who["Account"] == ACCOUNT
    assert who["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert who["UserId"].startswith("AIDA") and len(who["UserId"]) == 21


def test_assumed_role_credentials_work_on_every_service(borealis: BorealisProcess) -> None:
    sts = borealis.client("sts")
    out = sts.assume_role(RoleArn=ROLE, RoleSessionName="terraform@ci", DurationSeconds=900)
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"]
    assert (
        out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/cdk-hnb659fds-deploy-role/terraform@ci"
    )
    assert out["AssumedRoleUser"]["AssumedRoleId"].endswith(":terraform@ci")
    with pytest.raises(ClientError) as err:  # role chaining: one hour at most, as on AWS
        _client(borealis, "sts", creds).assume_role(RoleArn=ROLE, RoleSessionName="chained", DurationSeconds=7200)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    chained = _client(borealis, "sts", creds).assume_role(RoleArn=ROLE, RoleSessionName="chained")
    assert chained["AssumedRoleUser"]["Arn"].endswith("/chained")
    who = _client(borealis, "sts", creds).get_caller_identity()
    assert who["Arn"] == out["AssumedRoleUser"]["Arn"] and who["UserId"] == out["AssumedRoleUser"]["AssumedRoleId"]
    rds = _client(borealis, "rds", creds)
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = _client(borealis, "secretsmanager", creds).get_secret_value(
        SecretId=cluster["MasterUserSecret"]["SecretArn"]
    )
    assert json.loads(secret["SecretString"])["username"] == "postgres"
    # The Data API runs in two processes here: whichever takes the call knows a key made after it started.
    data = _client(borealis, "rds-data", creds)
    for i in range(4):
        result = data.execute_statement(
            resourceArn=cluster["DBClusterArn"],
            secretArn=cluster["MasterUserSecret"]["SecretArn"],
            sql=f"SELECT {i}",
        )
        assert result["records"] == [[{"longValue": i}]]


def test_temporary_key_needs_its_session_token(borealis: BorealisProcess) -> None:
    creds = borealis.client("sts").get_session_token(DurationSeconds=900)["Credentials"]
    assert _client(borealis, "sts", creds).get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    for token in (None, creds["SessionToken"][:-1] + "x"):
        with pytest.raises(ClientError) as err:
            _client(borealis, "rds", {**creds, "SessionToken": token}).describe_db_clusters()
        assert err.value.response["Error"]["Code"] == "InvalidClientTokenId"
    with pytest.raises(ClientError) as err:
        _client(borealis, "sts", creds).get_session_token()
    assert err.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize(
    ("arn", "session", "code"),
    [
        ("arn:aws:iam::123456789012:role/other", "s1", "AccessDenied"),
        ("not-an-arn-but-long-enough", "s1", "ValidationError"),
        (ROLE, "bad name!", "ValidationError"),
    ],
)
def test_assume_role_refusals(borealis: BorealisProcess, arn: str, session: str, code: str) -> None:
    with pytest.raises(ClientError) as err:
        borealis.client("sts").assume_role(RoleArn=arn, RoleSessionName=session)
    assert err.value.response["Error"]["Code"] == code


def test_assume_role_duration_bounds(borealis: BorealisProcess) -> None:
    with pytest.raises(ClientError) as err:
        borealis.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="s1", DurationSeconds=43201)
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_aws_cli_sts(borealis: BorealisProcess) -> None:
    who = aws_json(borealis, "sts", "get-caller-identity")
    assert who["Account"] == ACCOUNT
    creds = aws_json(borealis, "sts", "assume-role", "--role-arn", ROLE, "--role-session-name", "cli")["Credentials"]
    env = borealis.env()
    env.update(
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
    )
    assert aws_json(borealis, "sts", "get-caller-identity", env=env)["Arn"].endswith(
        "assumed-role/cdk-hnb659fds-deploy-role/cli"
    )
    assert aws_json(borealis, "rds", "describe-global-clusters", env=env) == {"GlobalClusters": []}


def test_describe_global_clusters(borealis: BorealisProcess) -> None:
    rds = borealis.client("rds")
    assert rds.describe_global_clusters()["GlobalClusters"] == []
    with pytest.raises(ClientError) as err:
        rds.describe_global_clusters(GlobalClusterIdentifier="nope")
    assert err.value.response["Error"]["Code"] == "GlobalClusterNotFoundFault"


def test_js_sdk_v3_sts_and_tags(borealis: BorealisProcess) -> None:
    node("iac_sdk_v3.mjs", borealis, ROLE_ARN=ROLE)
