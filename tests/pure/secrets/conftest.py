"""Fixtures: a SecretsManager on a temporary store, and a real boto3 client served in-process.

The boto3 client never opens a socket: a botocore ``before-send`` hook hands each signed request to the
real `borealis.aws.Gateway` ASGI app and returns its reply as a botocore AWSResponse, so the tests see
exactly what a client over HTTP would (model parsing, SigV4, error codes), in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from borealis.aws import Gateway
from borealis.secrets import SecretsManager
from borealis.services.secretsmanager import handlers
from borealis.store import Store

ACCOUNT = "123456789012"
REGION = "us-east-1"
ACCESS_KEY = "AKIDBOREALISTEST0001"
SECRET_KEY = "borealis-test-secret-key"


class _Raw:
    """The `raw` botocore reads an AWSResponse's body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _call_asgi(app: Gateway, request: AWSPreparedRequest) -> AWSResponse:
    url = urlsplit(request.url)
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": url.path or "/",
        "raw_path": (url.path or "/").encode(),
        "query_string": url.query.encode(),
        "headers": [(k.lower().encode(), _as_bytes(v)) for k, v in request.headers.items()],
        "server": ("127.0.0.1", 443),
        "client": ("127.0.0.1", 50000),
    }
    if "host" not in {name for name, _ in scope["headers"]}:
        # urllib3 adds Host on the wire, and SigV4 signed it: add it the same way.
        scope["headers"].append((b"host", url.netloc.encode()))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return AWSResponse(request.url, start["status"], headers, _Raw(payload))


@pytest.fixture
def secrets_manager(tmp_path: Path) -> Iterator[SecretsManager]:
    store = Store(tmp_path / "state.db")
    yield SecretsManager(store, tmp_path / "secrets.key", account_id=ACCOUNT, region=REGION)
    store.close()


@pytest.fixture
def client(secrets_manager: SecretsManager) -> Any:
    """A boto3 secretsmanager client whose requests are served by the Gateway in-process."""
    app = Gateway(
        {"secretsmanager": handlers(secrets_manager)},
        lambda key: SECRET_KEY if key == ACCESS_KEY else None,
    )
    c = boto3.session.Session().client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url="https://borealis.test",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )
    c.meta.events.register("before-send.secretsmanager.*", lambda request, **_: _call_asgi(app, request))
    return c
