"""Item 9: signatures as strict as AWS's: the region of the credential scope, presigned expiry and dates."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess


def _client(borealis: BorealisProcess, service: str, region: str) -> Any:
    key, secret = borealis.credentials()
    return boto3.client(
        service,
        endpoint_url=borealis.url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def _refusal(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@pytest.mark.parametrize(
    ("service", "operation", "code", "status"),
    [
        ("rds", "describe_db_clusters", "SignatureDoesNotMatch", 403),
        ("secretsmanager", "list_secrets", "InvalidSignatureException", 400),
        ("sts", "get_caller_identity", "SignatureDoesNotMatch", 403),
    ],
)
def test_a_scope_for_another_region_is_refused(
    borealis: BorealisProcess, service: str, operation: str, code: str, status: int
) -> None:
    client = _client(borealis, service, "eu-west-1")
    got = _refusal(getattr(client, operation))
    assert got == (code, status, "Credential should be scoped to a valid region, not 'eu-west-1'.")
    getattr(borealis.client(service), operation)()  # the right region still works


def test_a_data_api_call_for_another_region_is_refused(borealis: BorealisProcess) -> None:
    data = _client(borealis, "rds-data", "ap-south-1")
    code, status, message = _refusal(
        data.execute_statement,
        resourceArn="arn:aws:rds:us-east-1:000000000000:cluster:default",
        secretArn="arn:aws:secretsmanager:us-east-1:000000000000:secret:x",
        sql="SELECT 1",
    )
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "not 'ap-south-1'" in message


def _presigned(borealis: BorealisProcess, *, expires: int, at: dt.datetime) -> str:
    """A presigned DescribeDBClusters URL, signed as botocore signs but stamped at ``at``."""
    key, secret = borealis.credentials()
    request = AWSRequest("GET", borealis.url + "/", params={"Action": "DescribeDBClusters", "Version": "2014-10-31"})
    auth = SigV4QueryAuth(Credentials(key, secret), "rds", "us-east-1", expires=expires)
    request.context["timestamp"] = at.strftime("%Y%m%dT%H%M%SZ")
    auth._modify_request_before_signing(request)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, signature)
    return str(request.prepare().url)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_presigned_urls(borealis: BorealisProcess) -> None:
    now = dt.datetime.now(dt.UTC)
    status, body = _get(_presigned(borealis, expires=604800, at=now))
    assert status == 200, body
    status, body = _get(_presigned(borealis, expires=604801, at=now))
    assert status == 400 and "X-Amz-Expires must be less than a week" in body, body
    status, body = _get(_presigned(borealis, expires=900, at=now + dt.timedelta(days=3)))
    assert status == 403 and "Signature not yet current" in body, body
    status, body = _get(_presigned(borealis, expires=900, at=now - dt.timedelta(hours=1)))
    assert status == 403 and "Request has expired" in body, body
