"""JSON bodies for the json and rest-json protocols, walked by compiled per-shape converters.

Input: JSON values -> boto-style Python values (timestamps from epoch seconds or ISO text to aware
UTC datetimes, blobs from base64 to bytes, everything type-checked against the model). Output: the
handler's dict -> JSON-ready values (datetimes to epoch seconds unless the model says otherwise, bytes
to base64, None members skipped, members the model does not know dropped).

Each shape is compiled once into a closure; a request is then a walk with no model lookups, which the
Data API's request rate needs. Converters do not build error paths on the happy path: an `InputError`
collects its path as it unwinds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from botocore.model import Shape

from ._errors import InputError
from ._values import b64decode, b64encode, format_timestamp, parse_timestamp

__all__ = ["JSONCodec", "json_member_name", "load_json", "write_float"]

Convert = Callable[[Any], Any]

_INT_KINDS = frozenset({"integer", "long", "short", "byte"})
_FLOAT_KINDS = frozenset({"float", "double"})


_fast_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as _fast_loads
except ImportError:  # a platform without its wheel: the standard library alone
    _fast_loads = None

# A \uD800-\uDFFF escape: half of a surrogate pair, or a lone one that no UTF-8 text can carry.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_json(body: bytes) -> Any:
    """A request body parsed as JSON; `InputError` (malformed) for anything else, never another exception.

    Refused: bytes that are not UTF-8, bad syntax, a lone surrogate escape (``"\\ud800"`` is valid JSON but
    no Unicode text: it would fail later, when the string is encoded for PostgreSQL or the store), and
    nesting too deep for the parser (a RecursionError otherwise). orjson reads what every SDK sends in a
    quarter of the time and refuses all of these; what it refuses (it also refuses integers past 64 bits)
    the standard library decides.
    """
    if _fast_loads is not None:
        try:
            return _fast_loads(body)
        except ValueError:
            pass
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
        if _SURROGATE_ESCAPE.search(body) is not None:
            json.dumps(parsed, ensure_ascii=False).encode()  # UnicodeEncodeError on a lone surrogate
    except UnicodeEncodeError as exc:
        raise InputError("the request body has a lone surrogate escape, not Unicode text", malformed=True) from exc
    except RecursionError as exc:
        raise InputError("the request body is nested too deeply", malformed=True) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError("the request body is not valid JSON", malformed=True) from exc
    return parsed


def json_member_name(name: str, shape: Shape) -> str:
    """The key a member has in a JSON body: its `jsonName`/`locationName` when the model gives one."""
    serialization = shape.serialization
    return str(serialization.get("name") or name)


class JSONCodec:
    """Compiled input readers and output writers for the shapes of one service."""

    def __init__(self, default_timestamp_format: str = "unixTimestamp") -> None:
        """`default_timestamp_format` applies where a shape has no `timestampFormat` trait."""
        self._timestamp_format = default_timestamp_format
        self._readers: dict[str, Convert] = {}
        self._writers: dict[str, Convert] = {}

    # ---------------------------------------------------------------- input

    def reader(self, shape: Shape) -> Convert:
        """A converter from a parsed JSON value to the typed value for `shape` (memoised)."""
        return self._memo(self._readers, shape, self._compile_reader)

    def struct_reader(self, members: Mapping[str, Shape], required: list[str]) -> Convert:
        """A reader for a structure made of some members only (rest-json body members)."""
        by_wire = {json_member_name(name, shape): (name, self.reader(shape)) for name, shape in members.items()}
        wire_required = [(name, json_member_name(name, members[name])) for name in required if name in members]

        renamed = any(name != wire for wire, (name, _) in by_wire.items())

        def read_struct(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise InputError("expected a JSON object", malformed=True)
            # Walk what the request has, not every member the model knows (requests are sparse), and give
            # the parsed object back as it is when nothing in it needs changing: no copy on the hot path.
            dropped = renamed
            converted: dict[str, Any] | None = None
            for wire, item in value.items():
                spec = by_wire.get(wire)
                if spec is None or item is None:
                    dropped = True  # not a member of the model, or null: left out
                    continue
                read = spec[1]
                if read is _read_string and type(item) is str:
                    continue  # the commonest member, checked without a call
                try:
                    new = read(item)
                except InputError as exc:
                    exc.path.insert(0, wire)
                    raise
                if new is not item:
                    if converted is None:
                        converted = {}
                    converted[wire] = new
            if dropped or converted is not None:
                out: dict[str, Any] = {}
                for wire, item in value.items():
                    spec = by_wire.get(wire)
                    if spec is not None and item is not None:
                        out[spec[0]] = converted.get(wire, item) if converted is not None else item
            else:
                out = value
            for name, wire in wire_required:
                if name not in out:
                    error = InputError(f"missing required member {wire}", missing=True)
                    error.path.append(wire)
                    raise error
            return out

        return read_struct

    def _compile_reader(self, shape: Shape) -> Convert:
        kind = shape.type_name
        if kind == "structure":
            return self.struct_reader(shape.members, list(shape.required_members))
        if kind == "list":
            read_item = self.reader(shape.member)

            def read_list(value: Any) -> list[Any]:
                if not isinstance(value, list):
                    raise InputError("expected a JSON array", malformed=True)
                out: list[Any] | None = None  # a copy only once an item changes
                for index, item in enumerate(value):
                    try:
                        new = read_item(item)
                    except InputError as exc:
                        exc.path.insert(0, str(index + 1))
                        raise
                    if out is not None:
                        out.append(new)
                    elif new is not item:
                        out = value[:index]
                        out.append(new)
                return value if out is None else out

            return read_list
        if kind == "map":
            read_value = self.reader(shape.value)

            def read_map(value: Any) -> dict[str, Any]:
                if not isinstance(value, dict):
                    raise InputError("expected a JSON object", malformed=True)
                out = {}
                for key, item in value.items():
                    try:
                        out[key] = read_value(item) if item is not None else None
                    except InputError as exc:
                        exc.path.insert(0, key)
                        raise
                return out

            return read_map
        return _scalar_reader(kind)

    # --------------------------------------------------------------- output

    def writer(self, shape: Shape) -> Convert:
        """A converter from a handler's value for `shape` to a JSON-ready value (memoised)."""
        return self._memo(self._writers, shape, self._compile_writer)

    def struct_writer(self, members: Mapping[str, Shape]) -> Convert:
        """A writer for a structure made of some members only (rest-json body members)."""
        fields = {name: (json_member_name(name, shape), self.writer(shape)) for name, shape in members.items()}

        def write_struct(value: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, item in value.items():
                if item is None:
                    continue
                spec = fields.get(key)
                if spec is not None:
                    out[spec[0]] = item if spec[1] is _identity else spec[1](item)
            return out

        return write_struct

    def _compile_writer(self, shape: Shape) -> Convert:
        kind = shape.type_name
        if kind == "structure":
            return self.struct_writer(shape.members)
        if kind == "list":
            write_item = self.writer(shape.member)
            # Sparse lists (rds-data's array values) carry nulls; a handler never puts None in other lists.
            return lambda value: [None if item is None else write_item(item) for item in value]
        if kind == "map":
            write_value = self.writer(shape.value)
            return lambda value: {str(k): write_value(v) for k, v in value.items() if v is not None}
        if kind == "timestamp":
            fmt = str(shape.serialization.get("timestampFormat", self._timestamp_format))
            return lambda value: format_timestamp(value, fmt)
        if kind == "blob":
            return b64encode
        if kind in _FLOAT_KINDS:
            return write_float
        if kind in _INT_KINDS:
            return int
        if kind == "boolean":
            return bool
        return _identity

    @staticmethod
    def _memo(cache: dict[str, Convert], shape: Shape, compile_: Callable[[Shape], Convert]) -> Convert:
        found = cache.get(shape.name)
        if found is not None:
            return found
        # A forward cell lets recursive shapes (rds-data ArrayValue) refer to themselves.
        cell: list[Convert] = []
        cache[shape.name] = lambda value: cell[0](value)
        compiled = compile_(shape)
        cell.append(compiled)
        cache[shape.name] = compiled
        return compiled


def write_float(value: Any) -> float | str:
    """A float or double member as Smithy's JSON protocols write it: NaN and the infinities as strings.

    JSON has no token for them; the SDKs (botocore, Smithy's JavaScript and Java deserialisers) read
    "NaN", "Infinity" and "-Infinity" back as numbers, where a bare NaN token breaks ``JSON.parse``.
    """
    number = float(value)
    if number - number == 0.0:  # finite (inf - inf and nan - nan are nan)
        return number
    return "NaN" if number != number else ("Infinity" if number > 0 else "-Infinity")


def _identity(value: Any) -> Any:
    return value


def _read_string(value: Any) -> str:
    if not isinstance(value, str):
        raise InputError("expected a string", malformed=True)
    return value


def _read_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InputError("expected an integer", malformed=True)
    return value


def _read_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError("expected a number", malformed=True)
    return float(value)


def _read_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError("expected a boolean", malformed=True)
    return value


def _read_any(value: Any) -> Any:
    return value


def _scalar_reader(kind: str) -> Convert:
    if kind in ("string", "character"):
        return _read_string
    if kind in _INT_KINDS:
        return _read_int
    if kind in _FLOAT_KINDS:
        return _read_float
    if kind == "boolean":
        return _read_bool
    if kind == "timestamp":
        return parse_timestamp
    if kind == "blob":
        return b64decode
    return _read_any  # "document" and anything newer: pass the JSON value through
