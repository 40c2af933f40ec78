"""A fuzzer of signed Data API and Secrets Manager requests: whatever the body, never a 5xx or a traceback.

Bodies start from valid requests and are bent by hypothesis: members of every JSON type, strings with lone
surrogates and control characters, unknown members, deep nesting, huge numbers, bodies that are not JSON at
all. Every request is signed correctly, so it reaches the codecs and the handlers. Bounded in examples (about
a minute on the CI machine), on the shared Borealis; what it creates is named ``fuzz-*`` and removed.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import BorealisProcess
from tests.security.probe import signed_request

_SETTINGS = settings(
    max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False, database=None
)

# Text as an attacker sends it: any code point, lone surrogates included (hypothesis leaves them out by default).
_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    _text,
)
_json = st.recursive(
    _scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=12
)


def _bend(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bodies near ``base``: some members replaced by any JSON, some removed, some added; or raw bytes."""
    members = sorted(base)
    changed = st.fixed_dictionaries(
        {},
        optional={name: _json for name in members},
    )
    extra = st.dictionaries(_text, _json, max_size=2)
    dropped = st.sets(st.sampled_from(members), max_size=2)

    def build(parts: tuple[dict[str, Any], dict[str, Any], set[str]]) -> bytes:
        new, more, gone = parts
        body = {k: v for k, v in {**base, **new, **more}.items() if k not in gone}
        return json.dumps(body).encode()

    depth = st.integers(min_value=1, max_value=3000).map(
        lambda d: json.dumps(base)[:-1].encode() + b', "x": ' + b"[" * d + b"]" * d + b"}"
    )
    return st.one_of(
        st.tuples(changed, extra, dropped).map(build),
        depth,
        st.binary(max_size=200),
        st.sampled_from([b"", b"null", b"[]", b'"x"', b"1e999999", b'{"a":1}{', b"\xef\xbb\xbf{}"]),
    )


class _Api:
    """A kept-alive connection sending signed requests (reopened when the server closes it)."""

    def __init__(self, proc: BorealisProcess) -> None:
        self.proc = proc
        self.credentials = proc.credentials()
        self.conn = http.client.HTTPConnection("127.0.0.1", proc.api_port, timeout=60)

    def send(
        self, service: str, body: bytes, *, target: str | None = None, path: str = "/", content_type: str = ""
    ) -> tuple[int, bytes]:
        content_type = content_type or ("application/json" if target is None else "application/x-amz-json-1.1")
        raw = signed_request(
            self.proc.url, self.credentials, service=service, body=body, target=target, path=path,
            content_type=content_type,
        )  # fmt: skip
        head, _, payload = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = dict(line.split(": ", 1) for line in lines)
        headers.pop("Content-Length", None)
        for attempt in range(2):
            try:
                self.conn.request("POST", path, body=payload, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.proc.api_port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def api(borealis: BorealisProcess) -> Iterator[_Api]:
    before = _tracebacks(borealis)
    client = _Api(borealis)
    yield client
    client.conn.close()
    sm = borealis.client("secretsmanager")
    for secret in sm.list_secrets(Filters=[{"Key": "name", "Values": ["fuzz-"]}])["SecretList"]:
        sm.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
    assert _tracebacks(borealis) == before, "the fuzz left a traceback in the log"


def _tracebacks(proc: BorealisProcess) -> int:
    return (proc.data_dir / "borealis.log").read_text(errors="replace").count("Traceback")


@pytest.fixture(scope="module")
def arns(borealis: BorealisProcess) -> dict[str, str]:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    return {"resourceArn": cluster["DBClusterArn"], "secretArn": cluster["MasterUserSecret"]["SecretArn"]}


_DATA_API = ["/Execute", "/BatchExecute", "/BeginTransaction", "/CommitTransaction", "/RollbackTransaction"]


def test_data_api_requests_never_get_a_5xx(api: _Api, arns: dict[str, str]) -> None:
    base = {
        **arns,
        "sql": "SELECT :a",
        "database": "postgres",
        "parameters": [{"name": "a", "value": {"stringValue": "x"}}],
        "parameterSets": [[{"name": "a", "value": {"longValue": 1}}]],
        "transactionId": "AAAAAAAAAAAAAAAA",
        "includeResultMetadata": True,
        "formatRecordsAs": "JSON",
    }

    @_SETTINGS
    @given(path=st.sampled_from(_DATA_API), body=_bend(base))
    def fuzz(path: str, body: bytes) -> None:
        status, reply = api.send("rds-data", body, path=path)
        assert status < 500, (path, body[:300], status, reply[:500])

    fuzz()


_SECRETS = ["CreateSecret", "GetSecretValue", "PutSecretValue", "DescribeSecret", "ListSecrets", "UpdateSecret"]


def test_secrets_manager_requests_never_get_a_5xx(api: _Api) -> None:
    base = {
        "Name": "fuzz-secret",
        "SecretId": "fuzz-secret",
        "SecretString": '{"username": "u", "password": "p"}',
        "Description": "fuzz",
        "ClientRequestToken": "fuzz-token-0123456789abcdef0123456789",
        "Filters": [{"Key": "name", "Values": ["fuzz-"]}],
        "MaxResults": 10,
        "Tags": [{"Key": "k", "Value": "v"}],
    }

    @_SETTINGS
    @given(operation=st.sampled_from(_SECRETS), body=_bend(base))
    def fuzz(operation: str, body: bytes) -> None:
        status, reply = api.send("secretsmanager", body, target=f"secretsmanager.{operation}")
        assert status < 500, (operation, body[:300], status, reply[:500])

    fuzz()


_QUERY_ACTIONS = [
    "DescribeDBClusters",
    "DescribeDBInstances",
    "DescribeDBProxies",
    "DescribeDBClusterParameters",
    "DescribeDBEngineVersions",
    "ListTagsForResource",
    "NoSuchAction",
]
_form_value = st.one_of(_text, st.integers().map(str), st.binary(max_size=30).map(lambda b: b.decode("latin-1")))


def test_query_requests_never_get_a_5xx(api: _Api) -> None:
    """RDS's query protocol (read-only actions, so the fuzz creates nothing) and STS: form bodies of any keys
    and values, percent-encoded from any text (lone surrogates become replacement characters there) or raw."""
    from urllib.parse import quote

    def _pct(text: str) -> str:
        # A lone surrogate cannot be UTF-8: sent as its surrogatepass bytes, invalid UTF-8 on the wire.
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    def form(pairs: list[tuple[str, str]]) -> bytes:
        return "&".join(f"{_pct(k)}={_pct(v)}" for k, v in pairs).encode()

    keys = st.sampled_from(
        ["DBClusterIdentifier", "Filters.Filter.1.Name", "Filters.Filter.1.Values.Value.1", "MaxRecords",
         "Marker", "ResourceName", "DBClusterParameterGroupName", "Engine", "Version", "Action"]
    ) | _text  # fmt: skip
    bodies = st.one_of(
        st.tuples(st.sampled_from(_QUERY_ACTIONS), st.lists(st.tuples(keys, _form_value), max_size=6)).map(
            lambda a: form([("Action", a[0]), ("Version", "2014-10-31"), *a[1]])
        ),
        st.binary(max_size=200),
    )

    @_SETTINGS
    @given(service=st.sampled_from(["rds", "sts"]), body=bodies)
    def fuzz(service: str, body: bytes) -> None:
        if service == "sts":
            body = body.replace(b"Version=2014-10-31", b"Version=2011-06-15").replace(
                b"Action=DescribeDBClusters", b"Action=GetCallerIdentity"
            )
        status, reply = api.send(service, body, content_type="application/x-www-form-urlencoded; charset=utf-8")
        assert status < 500, (service, body[:300], status, reply[:500])

    fuzz()
