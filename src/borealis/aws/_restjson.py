"""The rest-json protocol: operations routed by HTTP method and path, members bound to the URI, query
string, headers or a JSON body, as the model's `http` and `location` traits say.

Routing is precomputed: static paths (all of rds-data) are one dict lookup on (method, path); paths with
`{Label}` segments fall back to compiled regular expressions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from botocore.model import OperationModel, Shape

from ._errors import InputError
from ._json import JSONCodec, load_json
from ._values import format_timestamp, parse_bool_text, parse_float_text, parse_int_text, parse_timestamp

__all__ = ["RestJSONOperation", "RestJSONRouter"]

_TEXT_READERS: dict[str, Callable[[str], Any]] = {
    "integer": parse_int_text,
    "long": parse_int_text,
    "float": parse_float_text,
    "double": parse_float_text,
    "boolean": parse_bool_text,
    "timestamp": parse_timestamp,
}


@dataclass(frozen=True, slots=True)
class _Bound:
    """A member bound outside the body: where it lives and how to read its text."""

    name: str
    location: str  # "uri", "querystring", "header", "headers"
    wire: str
    read: Callable[[str], Any]
    is_list: bool


class RestJSONOperation:
    """One operation's compiled request reader and response writer."""

    __slots__ = (
        "_body_reader",
        "_body_writer",
        "_bound",
        "_output_headers",
        "_payload",
        "_required_bound",
        "name",
        "status",
    )

    def __init__(self, operation: OperationModel, codec: JSONCodec) -> None:
        """Compile the readers and writers of `operation` with `codec`."""
        self.name: str = operation.name
        self.status = int(operation.http.get("responseCode", 200))
        self._bound: list[_Bound] = []
        self._payload: tuple[str, Callable[[Any], Any]] | None = None
        body_members: dict[str, Shape] = {}
        required: list[str] = []
        input_shape = operation.input_shape
        if input_shape is not None:
            required = list(input_shape.required_members)
            payload = input_shape.serialization.get("payload")
            for name, member in input_shape.members.items():
                location = member.serialization.get("location")
                if location:
                    wire = str(member.serialization.get("name", name))
                    target = member.member if member.type_name == "list" else member
                    read = _TEXT_READERS.get(target.type_name, str)
                    self._bound.append(_Bound(name, location, wire, read, member.type_name == "list"))
                elif name == payload:
                    self._payload = (name, codec.reader(member))
                else:
                    body_members[name] = member
        self._required_bound = [b.name for b in self._bound if b.name in required]
        self._body_reader = codec.struct_reader(body_members, required)
        self._output_headers: list[tuple[str, str, Shape]] = []
        out_body: dict[str, Shape] = {}
        output = operation.output_shape
        if output is not None:
            for name, member in output.members.items():
                location = member.serialization.get("location")
                if location == "header":
                    self._output_headers.append((name, str(member.serialization.get("name", name)), member))
                elif not location:
                    out_body[name] = member
        self._body_writer = codec.struct_writer(out_body)

    def read(
        self, labels: Mapping[str, str], query_string: bytes, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        """Build the operation's input from the URI labels, query string, headers and body."""
        try:
            if self._payload is None:
                args: dict[str, Any] = self._body_reader(load_json(body))
            else:
                name, read_payload = self._payload
                args = self._body_reader({})
                if body:
                    args[name] = read_payload(load_json(body))
        except RecursionError as exc:  # nested deeper than the readers' recursion (rds-data's ArrayValue)
            raise InputError("the request body is nested too deeply", malformed=True) from exc
        if self._bound:
            query = parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True)
            for bound in self._bound:
                try:
                    self._read_bound(bound, labels, query, headers, args)
                except InputError as exc:
                    exc.path.insert(0, bound.wire)
                    raise
            for name in self._required_bound:
                if name not in args:
                    error = InputError(f"missing required member {name}", missing=True)
                    error.path.append(name)
                    raise error
        return args

    @staticmethod
    def _read_bound(
        bound: _Bound,
        labels: Mapping[str, str],
        query: list[tuple[str, str]],
        headers: Mapping[str, str],
        args: dict[str, Any],
    ) -> None:
        if bound.location == "uri":
            if bound.wire in labels:
                args[bound.name] = bound.read(labels[bound.wire])
        elif bound.location == "querystring":
            values = [v for k, v in query if k == bound.wire]
            if values:
                args[bound.name] = [bound.read(v) for v in values] if bound.is_list else bound.read(values[-1])
        elif bound.location == "header":
            text = headers.get(bound.wire.lower())
            if text is not None:
                args[bound.name] = (
                    [bound.read(v.strip()) for v in text.split(",")] if bound.is_list else bound.read(text)
                )
        elif bound.location == "headers":
            prefix = bound.wire.lower()
            found = {k[len(prefix) :]: v for k, v in headers.items() if k.startswith(prefix)}
            if found:
                args[bound.name] = found

    def write(self, value: Mapping[str, Any]) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The response headers (from header-bound members) and JSON body for a handler's output."""
        headers: list[tuple[bytes, bytes]] = []
        for name, wire, shape in self._output_headers:
            item = value.get(name)
            if item is not None:
                if shape.type_name == "timestamp":
                    item = format_timestamp(item, str(shape.serialization.get("timestampFormat", "rfc822")))
                elif shape.type_name == "boolean":
                    item = "true" if item else "false"
                headers.append((wire.lower().encode("latin-1"), str(item).encode("latin-1")))
        body = _encode(self._body_writer(value))
        return headers, body.encode()


# One encoder for every reply: json.dumps with options builds a new JSONEncoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class RestJSONRouter:
    """Maps (method, path) to an operation name; static paths by dict, labelled ones by regex."""

    def __init__(self, operations: Mapping[str, OperationModel]) -> None:
        """Index the `http.method`/`http.requestUri` of every operation given."""
        self._static: dict[tuple[str, str], str] = {}
        self._patterns: list[tuple[str, re.Pattern[str], str]] = []
        for name, operation in operations.items():
            method = str(operation.http.get("method", "POST")).upper()
            path = str(operation.http.get("requestUri", "/")).split("?", 1)[0]
            if "{" not in path:
                self._static[(method, path)] = name
            else:
                self._patterns.append((method, _compile_path(path), name))

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """The operation and URI labels for a request, or None when no route matches."""
        name = self._static.get((method, path))
        if name is not None:
            return name, {}
        for route_method, pattern, name in self._patterns:
            if route_method == method:
                found = pattern.fullmatch(path)
                if found is not None:
                    return name, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def static_routes(self) -> dict[tuple[str, str], str]:
        """(method, path) -> operation, for the routes without URI labels."""
        return dict(self._static)

    def knows_path(self, path: str) -> bool:
        """Whether any route (any method) has this path: tells AWS requests from other traffic."""
        if any(p == path for _, p in self._static):
            return True
        return any(pattern.fullmatch(path) for _, pattern, _ in self._patterns)


def _compile_path(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{") and piece.endswith("}"):
            label = piece[1:-1]
            greedy = label.endswith("+")
            label = label.rstrip("+")
            group = re.sub(r"\W", "_", label)
            parts.append(f"(?P<{group}>.+)" if greedy else f"(?P<{group}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))
