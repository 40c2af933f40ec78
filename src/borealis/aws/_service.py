"""One served AWS service: its model, handlers, compiled codecs, and error rendering per protocol.

The gateway finds the service and protocol of a request and verifies its signature; this module turns
the body into the operation input, calls the handler and renders the result or the error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.model import OperationModel, ServiceModel, Shape

from ._errors import AWSError, ErrorCatalog, InputError
from ._json import JSONCodec, load_json
from ._model import load_service_model, protocols_of, signing_name_of
from ._query import QueryCodec, build_tree, xml_error
from ._restjson import RestJSONOperation, RestJSONRouter
from ._sigv4 import AuthFailure
from ._types import Direct, Handler, RequestContext

__all__ = ["Reply", "ServiceEndpoint", "protocol_error"]

log = logging.getLogger("borealis.aws")

Headers = list[tuple[bytes, bytes]]

# What each protocol answers when the signature check fails, by `AuthFailure.reason`.
AUTH_ERRORS: dict[str, dict[str, tuple[str, int]]] = {
    "query": {
        "missing": ("MissingAuthenticationToken", 403),
        "incomplete": ("IncompleteSignature", 400),
        "unknown_key": ("InvalidClientTokenId", 403),
        "signature": ("SignatureDoesNotMatch", 403),
        "expired": ("SignatureDoesNotMatch", 403),
    },
    "json": {
        "missing": ("MissingAuthenticationTokenException", 403),
        "incomplete": ("IncompleteSignatureException", 400),
        "unknown_key": ("UnrecognizedClientException", 400),
        "signature": ("InvalidSignatureException", 400),
        "expired": ("InvalidSignatureException", 400),
    },
    "rest-json": {
        "missing": ("MissingAuthenticationTokenException", 403),
        "incomplete": ("IncompleteSignatureException", 403),
        "unknown_key": ("UnrecognizedClientException", 403),
        "signature": ("InvalidSignatureException", 403),
        "expired": ("InvalidSignatureException", 403),
    },
}

INTERNAL_MESSAGE = "We encountered an internal error. Please try again."
_NO_LABELS: dict[str, str] = {}
_NO_HEADERS: Headers = []


@dataclass(slots=True)  # made per request: a frozen dataclass costs a setattr call per field
class Reply:
    """An HTTP response, ready to send."""

    status: int
    headers: Headers
    body: bytes


def protocol_error(
    protocol: str,
    code: str,
    message: str,
    status: int,
    request_id: str,
    *,
    sender: bool = True,
    xmlns: str = "",
    json_version: str = "1.1",
) -> Reply:
    """An unmodeled error in a protocol's envelope, usable before a service is identified."""
    if protocol == "query":
        return Reply(status, _headers(b"text/xml", request_id), xml_error(xmlns, code, message, sender, request_id))
    if protocol == "json":
        body = json.dumps({"__type": code, "Message": message}).encode()
        return Reply(status, _headers(f"application/x-amz-json-{json_version}".encode(), request_id), body)
    headers = _headers(b"application/json", request_id)
    headers.append((b"x-amzn-errortype", code.encode()))
    return Reply(status, headers, json.dumps({"message": message}).encode())


def _headers(content_type: bytes, request_id: str) -> Headers:
    return [(b"content-type", content_type), (b"x-amzn-requestid", request_id.encode())]


class ServiceEndpoint:
    """A registered service: compiled per-operation readers/writers and the handlers to call."""

    def __init__(self, name: str, handlers: Mapping[str, Handler]) -> None:
        """Load the model for `name` and compile every operation that has a handler.

        Raises ValueError for an operation the model does not have, so a typo fails at start-up.
        """
        self.name = name
        self.model: ServiceModel = load_service_model(name)
        self.protocols = protocols_of(self.model)
        self.signing_name = signing_name_of(self.model)
        metadata = self.model.metadata
        self.target_prefix: str | None = metadata.get("targetPrefix")
        self.json_version = str(metadata.get("jsonVersion", "1.0"))
        self.xmlns = str(metadata.get("xmlNamespace", ""))
        self.query_compatible = "awsQueryCompatible" in metadata
        self.errors = ErrorCatalog(self.model)
        known = set(self.model.operation_names)
        unknown = sorted(set(handlers) - known)
        if unknown:
            raise ValueError(f"{name} has no operations named {', '.join(unknown)}")
        self.handlers: dict[str, Handler] = dict(handlers)
        self.operations: dict[str, OperationModel] = {op: self.model.operation_model(op) for op in handlers}
        self._query = QueryCodec(self.xmlns) if "query" in self.protocols else None
        self._json = JSONCodec()
        self._json_ops: dict[str, tuple[Any, Any]] = {}
        for op, operation in self.operations.items():
            reader = self._json.reader(operation.input_shape) if operation.input_shape is not None else None
            writer = self._json.writer(operation.output_shape) if operation.output_shape is not None else None
            self._json_ops[op] = (reader, writer)
            if self._query is not None:
                # Compile now so the first request pays nothing.
                if operation.input_shape is not None:
                    self._query.reader(operation.input_shape)
                if operation.output_shape is not None:
                    self._query.writer(operation.output_shape)
        self.router: RestJSONRouter | None = None
        self._rest_ops: dict[str, RestJSONOperation] = {}
        if "rest-json" in self.protocols:
            # Route every modeled operation, so a known-but-unimplemented one is told apart from a
            # path that is no AWS route at all (which goes to the fallback app when unsigned).
            all_ops = {op: self.model.operation_model(op) for op in self.model.operation_names}
            self.router = RestJSONRouter(all_ops)
            self._rest_ops = {op: RestJSONOperation(model, self._json) for op, model in self.operations.items()}

    # ------------------------------------------------------------- protocols

    async def call_query(self, ctx: RequestContext, params: dict[str, str]) -> Reply:
        """Serve a query request whose form parameters are `params` (Action already checked)."""
        assert self._query is not None
        operation = self.operations[ctx.operation]
        try:
            args = (
                self._query.reader(operation.input_shape)(build_tree(_strip_query_meta(params)))
                if (operation.input_shape is not None)
                else {}
            )
        except InputError as exc:
            return self.input_error("query", exc, ctx.request_id)
        result = await self._invoke(ctx, args, "query")
        if isinstance(result, Reply):
            return result
        try:
            body = self._query.response(ctx.operation, operation.output_shape, result, ctx.request_id)
        except Exception:
            log.exception("%s.%s returned output that does not fit its shape", self.name, ctx.operation)
            return self.internal_error("query", ctx.request_id)
        return Reply(200, _headers(b"text/xml", ctx.request_id), body)

    async def call_json(self, ctx: RequestContext, body: bytes) -> Reply:
        """Serve a JSON 1.0/1.1 request (X-Amz-Target already resolved to `ctx.operation`)."""
        reader, writer = self._json_ops[ctx.operation]
        try:
            parsed = load_json(body)
        except InputError as exc:
            return self.error_reply("json", "SerializationException", exc.message, 400, ctx.request_id)
        try:
            if not isinstance(parsed, dict):
                raise InputError("expected a JSON object", malformed=True)
            args = reader(parsed) if reader is not None else {}
        except RecursionError:
            return self.error_reply(
                "json", "SerializationException", "the request body is nested too deeply", 400, ctx.request_id
            )
        except InputError as exc:
            return self.input_error("json", exc, ctx.request_id)
        result = await self._invoke(ctx, args, "json")
        if isinstance(result, Reply):
            return result
        try:
            out = json.dumps(writer(result) if writer is not None else {}, separators=(",", ":"))
        except Exception:
            log.exception("%s.%s returned output that does not fit its shape", self.name, ctx.operation)
            return self.internal_error("json", ctx.request_id)
        content_type = f"application/x-amz-json-{self.json_version}".encode()
        return Reply(200, _headers(content_type, ctx.request_id), out.encode())

    async def call_rest_json(
        self,
        ctx: RequestContext,
        labels: Mapping[str, str],
        query_string: bytes,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        """Serve a rest-json request routed to `ctx.operation`."""
        operation = self._rest_ops[ctx.operation]
        try:
            args = operation.read(labels, query_string, headers, body)
        except InputError as exc:
            return self.input_error("rest-json", exc, ctx.request_id)
        result = await self._invoke(ctx, args, "rest-json")
        if isinstance(result, Reply):
            return result
        return self.rest_reply(ctx.operation, result, ctx.request_id)

    def rest_read(self, operation: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The input of a rest-json operation with no URI labels or query string; raises InputError."""
        return self._rest_ops[operation].read(_NO_LABELS, b"", headers, body)

    def rest_reply(self, operation: str, result: dict[str, Any], request_id: str) -> Reply:
        """The reply carrying a rest-json operation's output (a 500 if it does not fit its shape)."""
        op = self._rest_ops[operation]
        handler = self.handlers[operation]
        try:
            if isinstance(handler, Direct) and handler.encode is not None:
                extra, out = _NO_HEADERS, handler.encode(result)
            else:
                extra, out = op.write(result)
        except Exception:
            log.exception("%s.%s returned output that does not fit its shape", self.name, operation)
            return self.internal_error("rest-json", request_id)
        reply_headers = _headers(b"application/json", request_id)
        reply_headers.extend(extra)
        return Reply(op.status, reply_headers, out)

    def direct_error(self, operation: str, exc: BaseException, request_id: str) -> Reply:
        """The reply for what a :class:`Direct` handler raised."""
        handler = self.handlers[operation]
        aws = handler.error(exc) if isinstance(handler, Direct) else None
        if aws is not None:
            return self.aws_error("rest-json", aws, request_id)
        if isinstance(exc, AWSError):
            return self.aws_error("rest-json", exc, request_id)
        log.error("handler %s.%s failed (request %s)", self.name, operation, request_id, exc_info=exc)
        return self.internal_error("rest-json", request_id)

    async def _invoke(self, ctx: RequestContext, args: dict[str, Any], protocol: str) -> dict[str, Any] | Reply:
        try:
            result = await self.handlers[ctx.operation](ctx, args)
        except AWSError as exc:
            return self.aws_error(protocol, exc, ctx.request_id)
        except Exception:
            # Never a traceback to the client: log it here, answer InternalFailure.
            log.exception("handler %s.%s failed (request %s)", self.name, ctx.operation, ctx.request_id)
            return self.internal_error(protocol, ctx.request_id)
        if result is None:
            return {}
        if not isinstance(result, dict):
            log.error("handler %s.%s returned %s, not a dict", self.name, ctx.operation, type(result).__name__)
            return self.internal_error(protocol, ctx.request_id)
        return result

    # ---------------------------------------------------------------- errors

    def aws_error(self, protocol: str, exc: AWSError, request_id: str) -> Reply:
        """Render an `AWSError`, taking code, status and fault side from the model when it is modeled."""
        resolved = self.errors.resolve(exc.code, exc.status)
        if protocol == "query":
            body = xml_error(self.xmlns, resolved.query_code, exc.message, resolved.sender, request_id)
            return Reply(resolved.status, _headers(b"text/xml", request_id), body)
        fields: dict[str, Any] = {}
        if exc.fields:
            shape = self.model.shape_for(resolved.shape_name) if resolved.modeled else None
            fields = _error_fields(self._json, shape, exc.fields)
        if protocol == "json":
            payload: dict[str, Any] = {"__type": resolved.shape_name, "Message": exc.message, **fields}
            headers = _headers(f"application/x-amz-json-{self.json_version}".encode(), request_id)
            if self.query_compatible:
                side = "Sender" if resolved.sender else "Receiver"
                headers.append((b"x-amzn-query-error", f"{resolved.query_code};{side}".encode()))
            return Reply(resolved.status, headers, json.dumps(payload, default=str).encode())
        headers = _headers(b"application/json", request_id)
        headers.append((b"x-amzn-errortype", resolved.shape_name.encode()))
        payload = {"message": exc.message, **fields}
        return Reply(resolved.status, headers, json.dumps(payload, default=str).encode())

    def auth_error(self, protocol: str, failure: AuthFailure, request_id: str) -> Reply:
        """The answer to a request whose signature check failed, as this protocol's AWS services give it."""
        code, status = AUTH_ERRORS[protocol][failure.reason]
        return self.error_reply(protocol, code, failure.message, status, request_id)

    def error_reply(self, protocol: str, code: str, message: str, status: int, request_id: str) -> Reply:
        """An error with a code given here (validation, unknown operation, auth)."""
        return self.aws_error(protocol, AWSError(code, message, status), request_id)

    def internal_error(self, protocol: str, request_id: str) -> Reply:
        """The 500 answer for anything unexpected on our side."""
        return self.error_reply(protocol, "InternalFailure", INTERNAL_MESSAGE, 500, request_id)

    def input_error(self, protocol: str, exc: InputError, request_id: str) -> Reply:
        """Map a parser's `InputError` to the code this protocol's AWS services answer with."""
        where = exc.where()
        if protocol == "query":
            if exc.missing:
                return self.error_reply(
                    protocol,
                    "MissingParameter",
                    f"The request must contain the parameter {where}",
                    400,
                    request_id,
                )
            if exc.malformed and not where:
                return self.error_reply(protocol, "MalformedQueryString", exc.message, 400, request_id)
            message = f"Invalid value for parameter {where}: {exc.message}" if where else exc.message
            return self.error_reply(protocol, "InvalidParameterValue", message, 400, request_id)
        if exc.missing:
            message = (
                f"1 validation error detected: Value null at '{_lower_first(where)}' failed to satisfy "
                "constraint: Member must not be null"
            )
        else:
            message = f"{where}: {exc.message}" if where else exc.message
        if protocol == "rest-json" and self.errors.resolve("BadRequestException", 400).modeled:
            # rds-data models its validation failures as BadRequestException; clients catch that.
            return self.error_reply(protocol, "BadRequestException", message, 400, request_id)
        code = "SerializationException" if exc.malformed else "ValidationException"
        return self.error_reply(protocol, code, message, 400, request_id)

    def unknown_operation(self, protocol: str, operation: str, request_id: str) -> Reply:
        """What AWS answers for an operation it does not have (we treat unimplemented ones the same)."""
        if protocol == "query":
            message = f"The action {operation} is not valid for this web service."
            return self.error_reply(protocol, "InvalidAction", message, 400, request_id)
        status = 404 if protocol == "rest-json" else 400
        return self.error_reply(
            protocol, "UnknownOperationException", f"Unknown operation {operation}", status, request_id
        )


def _strip_query_meta(params: dict[str, str]) -> dict[str, str]:
    """Drop the envelope keys (Action, Version, presigned X-Amz-*) that are not operation members."""
    return {k: v for k, v in params.items() if k not in ("Action", "Version") and not k.startswith("X-Amz-")}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _error_fields(codec: JSONCodec, shape: Shape | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    if shape is None:
        return {k: v for k, v in fields.items() if v is not None}
    out: dict[str, Any] = codec.writer(shape)(dict(fields))
    return out
