"""Drive the Gateway in-process with real botocore clients (helpers for the aws tests).

botocore builds and signs each request as it would for AWS; a `before-send` hook hands the prepared
request to the ASGI app instead of the network, and botocore's own parser reads our response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse, HeadersDict
from botocore.config import Config
from botocore.credentials import Credentials

from borealis.aws import Gateway, Handler

ACCESS_KEY = "AKIDBOREALISTEST"
SECRET_KEY = "borealis-secret-key"
REGION = "eu-west-1"
ENDPOINT = "http://localhost:4566"


class _Raw:
    """What AWSResponse expects of urllib3's response: a `stream()` of body chunks."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_args: Any, **_kwargs: Any) -> Iterator[bytes]:
        yield self._body


class Harness:
    """One Gateway, an event loop to run it on, and helpers to call it as clients do."""

    def __init__(self, services: Mapping[str, Mapping[str, Handler]], **gateway_kwargs: Any) -> None:
        self.gateway = Gateway(services, {ACCESS_KEY: SECRET_KEY}.get, **gateway_kwargs)
        self.loop = asyncio.new_event_loop()
        self.last: tuple[int, dict[str, str], bytes] | None = None

    def close(self) -> None:
        self.loop.close()

    def asgi(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Run one HTTP request through the ASGI app; return status, headers and body."""
        parts = urlsplit(url)
        header_list = [(k.lower().encode(), v if isinstance(v, bytes) else str(v).encode()) for k, v in headers.items()]
        if "host" not in {k.lower() for k in headers}:
            header_list.append((b"host", parts.netloc.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": parts.scheme,
            "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "headers": header_list,
        }
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.loop.run_until_complete(self.gateway(scope, receive, send))
        start = sent[0]
        out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        out_body = b"".join(m.get("body", b"") for m in sent[1:])
        self.last = (start["status"], out_headers, out_body)
        return self.last

    def _before_send(self, request: Any, **_kwargs: Any) -> AWSResponse:
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode()
        elif hasattr(body, "read"):
            body = body.read()
        status, headers, payload = self.asgi(request.method, request.url, dict(request.headers), body)
        response_headers = HeadersDict()
        for k, v in headers.items():
            response_headers[k] = v
        return AWSResponse(request.url, status, response_headers, _Raw(payload))

    def client(self, service: str, *, secret: str = SECRET_KEY, key: str = ACCESS_KEY, **config: Any) -> Any:
        """A boto3 client for `service` whose requests go to the in-process gateway."""
        session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)
        client = session.client(
            service,
            endpoint_url=ENDPOINT,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )
        client.meta.events.register("before-send", self._before_send)
        return client

    def signed(
        self,
        service: str,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        secret: str = SECRET_KEY,
    ) -> tuple[int, dict[str, str], bytes]:
        """Sign a hand-made request with botocore's SigV4 and run it (for bodies no client would send)."""
        request = AWSRequest(method=method, url=ENDPOINT + path, data=body, headers=dict(headers))
        SigV4Auth(Credentials(ACCESS_KEY, secret), service, REGION).add_auth(request)
        prepared = request.prepare()
        return self.asgi(method, prepared.url, dict(prepared.headers), body)


class Recorder:
    """Handlers that record what they were given and return canned output."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def returning(self, output: dict[str, Any]) -> Handler:
        async def handler(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
            self.calls.append((ctx, args))
            return output

        return handler

    def raising(self, exc: BaseException) -> Handler:
        async def handler(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
            self.calls.append((ctx, args))
            raise exc

        return handler
