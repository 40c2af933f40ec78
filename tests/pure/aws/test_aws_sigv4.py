"""SigV4 verification and request recognition: each refusal with AWS's code and status per protocol."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from aws_harness import Recorder
from botocore import UNSIGNED
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from borealis.aws._sigv4 import SigV4Verifier, canonical_path, canonical_query

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:db-AbCdEf"
CLUSTER_ARN = "arn:aws:rds:eu-west-1:000000000000:cluster:app"


def _services(recorder: Recorder) -> dict:
    return {
        "rds": {"DescribeDBClusters": recorder.returning({"DBClusters": []})},
        "secretsmanager": {"GetSecretValue": recorder.returning({"Name": "x"})},
        "rds-data": {"BeginTransaction": recorder.returning({"transactionId": "t"})},
    }


CALLS = {
    "rds": lambda c: c.describe_db_clusters(),
    "secretsmanager": lambda c: c.get_secret_value(SecretId="x"),
    "rds-data": lambda c: c.begin_transaction(resourceArn=CLUSTER_ARN, secretArn=SECRET_ARN),
}


def _error(harness, service: str, **client_kwargs) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        CALLS[service](harness.client(service, **client_kwargs))
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


@pytest.mark.parametrize("service", ["rds", "secretsmanager", "rds-data"])
def test_valid_signature(harness_factory, recorder: Recorder, service: str) -> None:
    harness = harness_factory(_services(recorder))
    CALLS[service](harness.client(service))
    assert len(recorder.calls) == 1


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("rds", "InvalidClientTokenId", 403),
        ("secretsmanager", "UnrecognizedClientException", 400),
        ("rds-data", "UnrecognizedClientException", 403),
    ],
)
def test_unknown_access_key(harness_factory, recorder: Recorder, service: str, code: str, status: int) -> None:
    harness = harness_factory(_services(recorder))
    assert _error(harness, service, key="AKIDNOBODY")[:2] == (code, status)
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("rds", "SignatureDoesNotMatch", 403),
        ("secretsmanager", "InvalidSignatureException", 400),
        ("rds-data", "InvalidSignatureException", 403),
    ],
)
def test_wrong_secret(harness_factory, recorder: Recorder, service: str, code: str, status: int) -> None:
    harness = harness_factory(_services(recorder))
    assert _error(harness, service, secret="not-the-secret")[:2] == (code, status)
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("rds", "SignatureDoesNotMatch", 403),
        ("secretsmanager", "InvalidSignatureException", 400),
        ("rds-data", "InvalidSignatureException", 403),
    ],
)
@pytest.mark.parametrize("offset", [dt.timedelta(minutes=20), dt.timedelta(minutes=-20)])
def test_clock_skew(
    harness_factory, recorder: Recorder, service: str, code: str, status: int, offset: dt.timedelta
) -> None:
    harness = harness_factory(_services(recorder), clock=lambda: dt.datetime.now(dt.UTC) + offset)
    got_code, got_status, message = _error(harness, service)
    assert (got_code, got_status) == (code, status)
    # Our clock ahead: the request is too old; behind: it is dated in the future.
    expected = "Signature expired: " if offset > dt.timedelta(0) else "Signature not yet current: "
    assert message.startswith(expected)


def test_small_skew_is_accepted(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(_services(recorder), clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
    CALLS["rds"](harness.client("rds"))
    assert len(recorder.calls) == 1


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("rds", "MissingAuthenticationToken", 403),
        ("secretsmanager", "MissingAuthenticationTokenException", 403),
        ("rds-data", "MissingAuthenticationTokenException", 403),
    ],
)
def test_missing_authorization(harness_factory, recorder: Recorder, service: str, code: str, status: int) -> None:
    harness = harness_factory(_services(recorder))
    assert _error(harness, service, signature_version=UNSIGNED)[:2] == (code, status)
    assert recorder.calls == []


def test_tampered_body_is_refused(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(_services(recorder))
    rds = harness.client("rds")

    def tamper(request, **_kwargs) -> None:
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        request.body = body.replace(b"DescribeDBClusters", b"DescribeDBClusters&MaxRecords=20")

    rds.meta.events.register_first("before-send", tamper)
    with pytest.raises(ClientError) as caught:
        rds.describe_db_clusters()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_unserved_service_is_refused(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(_services(recorder))
    status, _, _ = harness.signed(
        "ec2", "POST", "/", b"Action=DescribeInstances", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 400  # not a service we serve


def test_presigned_query_auth(harness_factory, recorder: Recorder) -> None:
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    harness = harness_factory(_services(recorder))
    request = AWSRequest(
        "GET", "http://localhost:4566/", params={"Action": "DescribeDBClusters", "Version": "2014-10-31"}
    )
    SigV4QueryAuth(Credentials("AKIDBOREALISTEST", "borealis-secret-key"), "rds", "eu-west-1", 300).add_auth(request)
    prepared = request.prepare()
    status, _, body = harness.asgi("GET", prepared.url, {}, b"")
    assert status == 200, body
    assert len(recorder.calls) == 1


def test_non_aws_requests_go_to_fallback(harness_factory, recorder: Recorder) -> None:
    seen: list[str] = []

    async def fallback(scope, receive, send) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    harness = harness_factory(_services(recorder), fallback=fallback)
    assert harness.asgi("GET", "http://localhost:4566/health", {}, b"")[0] == 200
    assert harness.asgi("GET", "http://localhost:4566/metrics", {}, b"")[0] == 200
    assert seen == ["/health", "/metrics"]
    bare = harness_factory(_services(recorder))
    assert bare.asgi("GET", "http://localhost:4566/console", {}, b"")[0] == 404


def test_canonical_helpers_match_botocore() -> None:
    assert canonical_path("/a/./b//../c/") == "/a/c/"
    assert canonical_path("/") == "/"
    assert canonical_path("/x%3Ay") == "/x%253Ay"
    assert canonical_query("b=2&a=1&a=0&c=%20x", drop_signature=False) == "a=0&a=1&b=2&c=%20x"
    assert canonical_query("X-Amz-Signature=abc&k=v", drop_signature=True) == "k=v"


def test_signing_keys_are_cached() -> None:
    verifier = SigV4Verifier(lambda _key: "s")
    first = verifier.signing_key("s", "20240101", "us-east-1", "rds")
    assert verifier.signing_key("s", "20240101", "us-east-1", "rds") is first


@given(key=st.binary(min_size=0, max_size=200), message=st.binary(max_size=300))
def test_keyed_mac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    from borealis.aws._sigv4 import KeyedMac

    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    mac = KeyedMac(key)
    assert mac.hexdigest(message) == expected
    assert mac.hexdigest(message) == expected  # the key's states are copied, not used up


def _signed_with_token(token: str | None, *, presign: bool = False) -> tuple[dict, str, str]:
    """A request signed by botocore with temporary credentials: (headers, path, query string)."""
    from botocore.auth import SigV4Auth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials("ASIATEMPORARY0000001", "temp-secret", token)
    request = AWSRequest(method="POST", url="http://127.0.0.1:9/?Action=GetCallerIdentity", data=b"")
    if presign:
        SigV4QueryAuth(creds, "sts", "us-east-1", expires=60).add_auth(request)
    else:
        SigV4Auth(creds, "sts", "us-east-1").add_auth(request)
    prepared = request.prepare()
    path, _, query = prepared.url.partition("//")[2].partition("/")[2].partition("?")
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers["host"] = "127.0.0.1:9"
    return headers, "/" + path, query


@pytest.mark.parametrize("presign", [False, True])
def test_session_token_must_match_the_temporary_key(presign: bool) -> None:
    from borealis.aws._sigv4 import AuthFailure, read_signature

    verifier = SigV4Verifier({"ASIATEMPORARY0000001": "temp-secret"}.get, tokens={"ASIATEMPORARY0000001": "tok"}.get)

    def check(token: str | None) -> None:
        headers, path, query = _signed_with_token(token, presign=presign)
        from borealis.aws._sigv4 import query_params

        signed = read_signature(headers.get("authorization"), query_params(query) if presign else {}, headers)
        verifier.verify(signed, method="POST", raw_path=path, query_string=query, headers=headers, body=b"")

    check("tok")
    for wrong in (None, "tok2"):
        with pytest.raises(AuthFailure) as caught:
            check(wrong)
        assert caught.value.reason == "unknown_key"
