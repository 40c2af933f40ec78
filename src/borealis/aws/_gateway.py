"""The ASGI application serving every registered AWS service on one HTTP port.

How a request is recognised (the same signals real AWS front ends use):

1. signed (SigV4 `Authorization` header, or `X-Amz-Credential` in the query string): the credential
   scope's service ("rds", "monitoring", ...) names the service; then `X-Amz-Target` means json, a
   rest-json service routes by method and path, and otherwise it is query (form `Action=...`);
2. unsigned with `X-Amz-Target`, on a rest-json route, or a form POST with `Action=`: an AWS request
   missing its signature, refused in that protocol's terms;
3. anything else (`/health`, `/metrics`, the console) goes to the `fallback` app, or 404.

Every AWS request is verified with SigV4 before its body is parsed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InputError
from ._query import parse_form
from ._service import Reply, ServiceEndpoint, protocol_error
from ._sigv4 import AuthFailure, SigV4Verifier, query_params, read_signature
from ._types import ASGIApp, Direct, Handler, Receive, RequestContext, Scope, Send

__all__ = ["Gateway"]

log = logging.getLogger("borealis.aws")

# Above every AWS request limit we emulate (the Data API's 4 MiB, plus its JSON and base64 overhead), and low
# enough that a few concurrent bodies cannot exhaust memory (each is held whole, then parsed).
MAX_BODY = 8 * 1024 * 1024
_FORM = "application/x-www-form-urlencoded"


class Gateway:
    """An ASGI 3 application speaking query, json and rest-json for the services it is given."""

    def __init__(
        self,
        services: Mapping[str, Mapping[str, Handler]],
        credentials: Callable[[str], str | None],
        *,
        fallback: ASGIApp | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        tokens: Callable[[str], str | None] | None = None,
        region: str | None = None,
    ) -> None:
        """Compile every service (botocore model name -> operation -> handler).

        `credentials` maps an access key id to its secret key (None when unknown). `fallback` serves
        requests that are not AWS API calls. `clock` replaces the current time (tests of signature expiry).
        `tokens` gives the session token a temporary key's requests must carry (see `SigV4Verifier`).
        `region` is the one region credential scopes may name (None: any, for tests of the protocol layer).
        """
        self._fallback = fallback
        self._verifier = SigV4Verifier(credentials, clock=clock, tokens=tokens, region=region)
        self._by_signing: dict[str, ServiceEndpoint] = {}
        self._by_target: dict[str, ServiceEndpoint] = {}
        self._rest: list[ServiceEndpoint] = []
        self._query: list[ServiceEndpoint] = []
        self._direct: dict[bytes, _DirectRoute] = {}
        for name, handlers in services.items():
            endpoint = ServiceEndpoint(name, handlers)
            self._by_signing[endpoint.signing_name] = endpoint
            if endpoint.target_prefix and "json" in endpoint.protocols:
                self._by_target[endpoint.target_prefix] = endpoint
            if endpoint.router is not None:
                self._rest.append(endpoint)
            if "query" in endpoint.protocols:
                self._query.append(endpoint)
            if endpoint.router is not None and "query" not in endpoint.protocols:
                for (method, path), operation in endpoint.router.static_routes().items():
                    if method == "POST" and isinstance(endpoint.handlers.get(operation), Direct):
                        self._direct[path.encode("latin-1")] = _DirectRoute(endpoint, operation, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        kind = scope["type"]
        if kind != "http":
            if self._fallback is not None:
                await self._fallback(scope, receive, send)
            elif kind == "lifespan":
                await _lifespan(receive, send)
            return
        headers = _header_map(scope)
        raw_query: bytes = scope.get("query_string", b"")
        method: str = scope["method"]
        path: str = scope["path"]
        raw_path: bytes = scope.get("raw_path") or path.encode()
        request = self.classify(method, path, raw_query, headers)
        if request is None:
            await self._to_fallback(scope, receive, send)
            return
        if isinstance(request, Reply):
            await _send(send, request)
            return
        body = await _read_body(receive)
        if body is None:
            await _send(send, self.too_large(request))
            return
        await _send(send, await self.serve(request, method, path, raw_path, raw_query, headers, body))

    def classify(self, method: str, path: str, raw_query: bytes, headers: Mapping[str, str]) -> _Request | Reply | None:
        """What a request is before its body is read: an AWS call, a reply already, or None (the fallback).

        ``headers`` maps lowercase names to values (repeats joined with ",").
        """
        query_text = raw_query.decode("latin-1")
        authorization = headers.get("authorization")
        target = headers.get("x-amz-target")
        presigned = "X-Amz-Credential=" in query_text
        signed_service: str | None = None
        if authorization is not None and authorization.startswith("AWS4-HMAC-SHA256"):
            signed_service = _scope_service(authorization.partition("Credential=")[2].partition(",")[0])
        elif presigned:
            signed_service = _scope_service(query_params(query_text).get("X-Amz-Credential", ""))
        request_id = _request_id()
        route = self._identify(signed_service, target, method, path, headers, query_text)
        if route is None:
            # A request that names no AWS service in any way (an Authorization of another scheme, such as a
            # Prometheus scrape's bearer token, included) is the fallback's.
            aws_auth = authorization is not None and authorization.startswith("AWS")
            if not aws_auth and target is None and not presigned:
                return None
            return self._unknown_service(signed_service, target, headers, request_id)
        endpoint, protocol = route
        return _Request(endpoint, protocol, request_id, query_text, authorization, target, presigned)

    def serve_direct(
        self,
        method: str,
        url: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        route: Callable[[str, Any, bytes], str | None] | None,
        answer: Callable[[Reply], None],
    ) -> bool:
        """Serve a header-signed POST to a :class:`Direct` handler's path without a task; False: not one.

        Everything :meth:`classify` and :meth:`serve` would do happens here, in the same order and with
        the same answers, only flat: the signature is checked, the body read by the model, the handler
        started, and ``answer`` called with the reply, at once or when the handler settles the call.
        Anything else (a query string, a presigned URL, another process's request per ``route``) is left
        to the general path, which returns False before any work is done.
        """
        target = self._direct.get(url)
        if target is None or method != "POST":
            return False
        if route is not None and route(url.decode("latin-1"), target, body) is not None:
            return False
        headers = header_dict(raw_headers)
        authorization = headers.get("authorization")
        if authorization is None or not authorization.startswith("AWS4-HMAC-SHA256") or "x-amz-target" in headers:
            return False
        endpoint = target.endpoint
        try:
            signed = read_signature(authorization, _NO_QUERY, headers)
        except AuthFailure:
            return False  # the general path gives the same refusal
        if signed.credential.service != endpoint.signing_name:
            return False
        request_id = _request_id()
        try:
            self._verifier.verify(
                signed, method=method, raw_path=target.path, query_string="", headers=headers, body=body
            )
        except AuthFailure as failure:
            answer(endpoint.auth_error("rest-json", failure, request_id))
            return True
        operation = target.operation
        try:
            args = endpoint.rest_read(operation, headers, body)
        except InputError as exc:
            answer(endpoint.input_error("rest-json", exc, request_id))
            return True
        handler = target.handler
        observe = handler.observe
        started = _perf() if observe is not None else 0.0

        def settle(outcome: dict[str, Any] | BaseException) -> None:
            if isinstance(outcome, BaseException):
                if observe is not None:
                    observe(outcome, started)
                answer(endpoint.direct_error(operation, outcome, request_id))
            else:
                if observe is not None:
                    observe(None, started)
                answer(endpoint.rest_reply(operation, outcome, request_id))

        try:
            out = handler.start(args, settle)
        except Exception as exc:
            if observe is not None:
                observe(exc, started)
            answer(endpoint.direct_error(operation, exc, request_id))
            return True
        if out is not None:
            if observe is not None:
                observe(None, started)
            answer(endpoint.rest_reply(operation, out, request_id))
        return True

    def knows_signer(self, url: bytes, raw_headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether a request names a known access key (header or presigned): worth keeping its body for.

        Only the key is checked, not the signature (that needs the body); unsigned requests and unknown keys
        are answered with an authentication error whatever their body.
        """
        credential = ""
        for name, value in raw_headers:
            if len(name) == 13 and name.lower() == b"authorization":
                credential = value.decode("latin-1").partition("Credential=")[2].partition(",")[0]
                break
        else:
            query = url.partition(b"?")[2].decode("latin-1")
            if "X-Amz-Credential=" in query:
                credential = query_params(query).get("X-Amz-Credential", "")
        access_key = credential.partition("/")[0].strip()
        return bool(access_key) and self._verifier.knows(access_key)

    def too_large(self, request: _Request) -> Reply:
        """The answer to a body over :data:`MAX_BODY`."""
        return protocol_error(request.protocol, "RequestEntityTooLarge", "Request too large", 413, request.request_id)

    async def serve(
        self,
        request: _Request,
        method: str,
        path: str,
        raw_path: bytes,
        raw_query: bytes,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        """Verify the signature of a classified AWS request, then run it; never raises."""
        endpoint, protocol, request_id = request.endpoint, request.protocol, request.request_id
        try:
            signed = read_signature(
                request.authorization, query_params(request.query_text) if request.presigned else {}, headers
            )
            if signed.credential.service != endpoint.signing_name:
                raise AuthFailure("incomplete", "Credential should be scoped to correct service.")
            self._verifier.verify(
                signed,
                method=method,
                raw_path=raw_path.decode("latin-1"),
                query_string=request.query_text,
                headers=headers,
                body=body,
            )
        except AuthFailure as failure:
            return endpoint.auth_error(protocol, failure, request_id)

        credential = signed.credential
        if "gzip" in headers.get("content-encoding", ""):
            # SDKs gzip large bodies of operations modeled with `requestcompression` (CloudWatch's
            # PutMetricData) and sign the compressed bytes, so this comes after the signature check.
            try:
                decoded = _gunzip(body)
            except InputError as exc:
                return endpoint.input_error(protocol, exc, request_id)
            if decoded is None:
                return self.too_large(request)
            body = decoded
        try:
            return await self._dispatch(
                endpoint,
                protocol,
                credential.region,
                credential.access_key,
                request_id,
                method,
                path,
                raw_query,
                headers,
                request.target,
                body,
            )
        except Exception:
            log.exception("request %s to %s failed", request_id, endpoint.name)
            return endpoint.internal_error(protocol, request_id)

    @property
    def fallback(self) -> ASGIApp | None:
        """The ASGI app serving requests that are not AWS API calls."""
        return self._fallback

    # -------------------------------------------------------------- routing

    def _identify(
        self,
        signed_service: str | None,
        target: str | None,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query_text: str,
    ) -> tuple[ServiceEndpoint, str] | None:
        """The service and protocol of a request, or None when no registered service claims it."""
        if signed_service is not None:
            endpoint = self._by_signing.get(signed_service)
            if endpoint is None:
                return None
            if target is not None and "json" in endpoint.protocols:
                return endpoint, "json"
            if endpoint.router is not None and "query" not in endpoint.protocols:
                return endpoint, "rest-json"
            if "query" in endpoint.protocols and _looks_like_query(method, headers, query_text):
                return endpoint, "query"
            if endpoint.router is not None:
                return endpoint, "rest-json"
            return None
        # Unsigned: recognise the protocol so the refusal is in its terms.
        if target is not None:
            endpoint = self._by_target.get(target.partition(".")[0])
            return (endpoint, "json") if endpoint is not None else None
        for endpoint in self._rest:
            assert endpoint.router is not None
            if endpoint.router.knows_path(path):
                return endpoint, "rest-json"
        if self._query and path == "/" and _looks_like_query(method, headers, query_text):
            return self._query[0], "query"
        return None

    async def _dispatch(
        self,
        endpoint: ServiceEndpoint,
        protocol: str,
        region: str,
        access_key: str,
        request_id: str,
        method: str,
        path: str,
        raw_query: bytes,
        headers: Mapping[str, str],
        target: str | None,
        body: bytes,
    ) -> Reply:
        if protocol == "query":
            try:
                params = parse_form(body, raw_query)
            except InputError as exc:
                return endpoint.input_error("query", exc, request_id)
            action = params.get("Action")
            if not action:
                return endpoint.error_reply(
                    "query", "MissingAction", "The request must contain the parameter Action", 400, request_id
                )
            if action not in endpoint.handlers:
                return endpoint.unknown_operation("query", action, request_id)
            ctx = RequestContext(endpoint.name, action, region, access_key, request_id)
            return await endpoint.call_query(ctx, params)
        if protocol == "json":
            prefix, _, operation = (target or "").partition(".")
            if prefix != endpoint.target_prefix or operation not in endpoint.handlers:
                return endpoint.unknown_operation("json", target or "", request_id)
            ctx = RequestContext(endpoint.name, operation, region, access_key, request_id)
            return await endpoint.call_json(ctx, body)
        assert endpoint.router is not None
        matched = endpoint.router.match(method, path)
        if matched is None or matched[0] not in endpoint.handlers:
            name = matched[0] if matched is not None else f"{method} {path}"
            return endpoint.unknown_operation("rest-json", name, request_id)
        operation, labels = matched
        ctx = RequestContext(endpoint.name, operation, region, access_key, request_id)
        return await endpoint.call_rest_json(ctx, labels, raw_query, headers, body)

    def _unknown_service(
        self, signed_service: str | None, target: str | None, headers: Mapping[str, str], request_id: str
    ) -> Reply:
        """A signed request for a service we do not serve: answer in the protocol it looks like."""
        name = signed_service or (target or "").partition(".")[0] or "unknown"
        message = f"The service {name} is not available on this endpoint."
        if target is not None:
            return protocol_error("json", "UnknownOperationException", message, 400, request_id)
        if headers.get("content-type", "").startswith(_FORM):
            return protocol_error("query", "InvalidAction", message, 400, request_id)
        return protocol_error("rest-json", "UnknownOperationException", message, 404, request_id)

    async def _to_fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._fallback is not None:
            await self._fallback(scope, receive, send)
            return
        await _read_body(receive)
        await _send(send, Reply(404, [(b"content-type", b"text/plain; charset=utf-8")], b"Not Found"))


class _DirectRoute:
    """A rest-json path served by a :class:`Direct` handler (``endpoint`` as in :class:`_Request`)."""

    __slots__ = ("endpoint", "handler", "operation", "path")

    def __init__(self, endpoint: ServiceEndpoint, operation: str, path: str) -> None:
        self.endpoint = endpoint
        self.operation = operation
        self.path = path
        self.handler: Direct = endpoint.handlers[operation]  # type: ignore[assignment]


_NO_QUERY: dict[str, str] = {}
_perf = time.perf_counter
# Header names as sent -> lowercase text: clients send the same few names on every request.
_header_names: dict[bytes, str] = {}


@dataclass(frozen=True, slots=True)
class _Request:
    """An AWS request recognised from its line and headers, before its body is read."""

    endpoint: ServiceEndpoint
    protocol: str
    request_id: str
    query_text: str
    authorization: str | None
    target: str | None
    presigned: bool


def _id_prefix() -> str:
    bits = random.getrandbits
    return f"{bits(32):08x}-{bits(16):04x}-4{bits(12):03x}-{'89ab'[bits(2)]}{bits(12):03x}-"


# Request ids: a random UUID (version 4) per process, whose last 48 bits count from a random start. Unique
# is what an id must be, not secret; this costs a fraction of making 128 random bits per request.
_ID_PREFIX = _id_prefix()
_id_counter = itertools.count(random.getrandbits(48))


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFF:012x}"


def _scope_service(credential: str) -> str | None:
    parts = credential.split("/")
    return parts[3] if len(parts) == 5 else None


def _looks_like_query(method: str, headers: Mapping[str, str], query_text: str) -> bool:
    if method == "POST":
        return headers.get("content-type", "").startswith(_FORM)
    return "Action=" in query_text


def _header_map(scope: Scope) -> dict[str, str]:
    return header_dict(scope.get("headers", ()))


def header_dict(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lowercase header names to values; repeats joined with "," as SigV4 canonicalises them."""
    out: dict[str, str] = {}
    names = _header_names
    for raw_name, raw_value in raw_headers:
        name = names.get(raw_name)
        if name is None:
            name = raw_name.decode("latin-1").lower()
            if len(names) < 1024:
                names[raw_name] = name
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when it exceeds MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _gunzip(body: bytes) -> bytes | None:
    """A gzip body decompressed, None when it would exceed MAX_BODY; `InputError` when it is not gzip."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_BODY + 1)
    except zlib.error as exc:
        raise InputError("the request body is not valid gzip", malformed=True) from exc
    if len(out) > MAX_BODY or inflater.unconsumed_tail:
        return None
    return out


async def _send(send: Send, reply: Reply) -> None:
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Answer lifespan events when no fallback app does: nothing to start or stop here."""
    while True:
        message: Any = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
