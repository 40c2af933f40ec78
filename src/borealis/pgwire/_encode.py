"""Encoders: any message, frontend or backend, to the exact bytes PostgreSQL would send.

``encode(msg)`` dispatches on the message class through one table. The builders below it (``error_response``
and friends) exist because the proxy writes those few messages itself, often, and should not have to build
a dataclass first.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping

from . import _messages as m
from ._messages import CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE

__all__ = [
    "FIELD_CODES",
    "command_complete",
    "encode",
    "error_response",
    "notice_response",
    "ready_for_query",
]

_pack_i = struct.Struct("!i").pack
_pack_h = struct.Struct("!h").pack
_pack_ii = struct.Struct("!ii").pack
_pack_bi = struct.Struct("!ci").pack

#: SQLSTATE-style keyword names for ErrorResponse/NoticeResponse field code letters, for the builders.
FIELD_CODES: dict[str, str] = {
    "severity": "S",
    "severity_nonlocalized": "V",
    "sqlstate": "C",
    "message": "M",
    "detail": "D",
    "hint": "H",
    "position": "P",
    "internal_position": "p",
    "internal_query": "q",
    "where": "W",
    "schema_name": "s",
    "table_name": "t",
    "column_name": "c",
    "data_type_name": "d",
    "constraint_name": "n",
    "file": "F",
    "line": "L",
    "routine": "R",
}


def _cstr(s: str) -> bytes:
    """A NUL-terminated string; a NUL inside would cut the message short, so it is our bug (ValueError)."""
    b = s.encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise ValueError(f"string contains a NUL byte: {s!r}")
    return b + b"\0"


def _int16s(values: Iterable[int]) -> bytes:
    """An Int16 count followed by that many Int16 values (format codes)."""
    values = tuple(values)
    return struct.pack(f"!h{len(values)}h", len(values), *values)


def _int32s(values: Iterable[int]) -> bytes:
    """An Int16 count followed by that many Int32 values (OIDs); OIDs are unsigned, hence ``I``."""
    values = tuple(values)
    return struct.pack(f"!h{len(values)}I", len(values), *values)


def _values(values: Iterable[bytes | None]) -> bytes:
    """An Int16 count followed by (Int32 length, bytes) per value; length -1 is NULL."""
    values = tuple(values)
    parts = [_pack_h(len(values))]
    for v in values:
        if v is None:
            parts.append(_pack_i(-1))
        else:
            parts.append(_pack_i(len(v)))
            parts.append(v)
    return b"".join(parts)


def _fields(fields: Mapping[str, str]) -> bytes:
    """The code-letter fields of an ErrorResponse or NoticeResponse, with the final NUL."""
    parts = []
    for code, value in fields.items():
        if len(code) != 1 or code == "\0":
            raise ValueError(f"field code must be one non-NUL character: {code!r}")
        parts.append(code.encode("ascii") + _cstr(value))
    parts.append(b"\0")
    return b"".join(parts)


def _typed(type_code: int, body: bytes) -> bytes:
    """A typed frame: type byte, Int32 length counting itself, body."""
    return _pack_bi(bytes((type_code,)), len(body) + 4) + body


def _startup(msg: m.StartupMessage) -> bytes:
    body = b"".join(_cstr(k) + _cstr(v) for k, v in msg.parameters.items()) + b"\0"
    return _pack_ii(len(body) + 8, msg.protocol_version) + body


def _copy_response(msg: m.CopyInResponse | m.CopyOutResponse | m.CopyBothResponse) -> bytes:
    return bytes((msg.format,)) + _int16s(msg.column_formats)


def _row_description(msg: m.RowDescription) -> bytes:
    parts = [_pack_h(len(msg.fields))]
    for f in msg.fields:
        parts.append(_cstr(f.name))
        parts.append(
            struct.pack("!IhIhih", f.table_oid, f.column_attr, f.type_oid, f.type_size, f.type_modifier, f.format)
        )
    return b"".join(parts)


# Body encoders for typed messages, by class. Startup-phase packets are handled in ``encode`` itself.
_BODY: dict[type[m.Message], Callable[[m.Message], bytes]] = {}


def _body(cls: type[m.Message]) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """Register a body encoder for ``cls`` (decorator)."""

    def register(fn: Callable[..., bytes]) -> Callable[..., bytes]:
        _BODY[cls] = fn
        return fn

    return register


for _empty in (
    m.Sync,
    m.Flush,
    m.Terminate,
    m.CopyDone,
    m.EmptyQueryResponse,
    m.ParseComplete,
    m.BindComplete,
    m.CloseComplete,
    m.NoData,
    m.PortalSuspended,
):
    _BODY[_empty] = lambda msg: b""

_body(m.Query)(lambda msg: _cstr(msg.sql))
_body(m.Parse)(lambda msg: _cstr(msg.name) + _cstr(msg.query) + _int32s(msg.param_types))
_body(m.Bind)(
    lambda msg: (
        _cstr(msg.portal)
        + _cstr(msg.statement)
        + _int16s(msg.param_formats)
        + _values(msg.params)
        + _int16s(msg.result_formats)
    )
)
_body(m.Describe)(lambda msg: _kind(msg.kind) + _cstr(msg.name))
_body(m.Close)(lambda msg: _kind(msg.kind) + _cstr(msg.name))
_body(m.Execute)(lambda msg: _cstr(msg.portal) + _pack_i(msg.max_rows))
_body(m.PasswordMessage)(lambda msg: _cstr(msg.password))
_body(m.SASLInitialResponse)(
    lambda msg: _cstr(msg.mechanism) + (_pack_i(-1) if msg.data is None else _pack_i(len(msg.data)) + msg.data)
)
_body(m.SASLResponse)(lambda msg: bytes(msg.data))
_body(m.CopyData)(lambda msg: bytes(msg.data))
_body(m.CopyFail)(lambda msg: _cstr(msg.message))
_body(m.FunctionCall)(
    lambda msg: _pack_i(msg.function_oid) + _int16s(msg.arg_formats) + _values(msg.args) + _pack_h(msg.result_format)
)
_body(m.AuthenticationOk)(lambda msg: _pack_i(0))
_body(m.AuthenticationCleartextPassword)(lambda msg: _pack_i(3))
_body(m.AuthenticationMD5Password)(lambda msg: _pack_i(5) + _salt(msg.salt))
_body(m.AuthenticationSASL)(lambda msg: _pack_i(10) + b"".join(_cstr(x) for x in msg.mechanisms) + b"\0")
_body(m.AuthenticationSASLContinue)(lambda msg: _pack_i(11) + msg.data)
_body(m.AuthenticationSASLFinal)(lambda msg: _pack_i(12) + msg.data)
_body(m.ParameterStatus)(lambda msg: _cstr(msg.name) + _cstr(msg.value))
_body(m.BackendKeyData)(lambda msg: _pack_i(msg.process_id) + msg.secret_key)
_body(m.ReadyForQuery)(lambda msg: _status(msg.status))
_body(m.RowDescription)(_row_description)
_body(m.DataRow)(lambda msg: _values(msg.values))
_body(m.CommandComplete)(lambda msg: _cstr(msg.tag))
_body(m.ErrorResponse)(lambda msg: _fields(msg.fields))
_body(m.NoticeResponse)(lambda msg: _fields(msg.fields))
_body(m.ParameterDescription)(lambda msg: _int32s(msg.type_oids))
_body(m.CopyInResponse)(_copy_response)
_body(m.CopyOutResponse)(_copy_response)
_body(m.CopyBothResponse)(_copy_response)
_body(m.NotificationResponse)(lambda msg: _pack_i(msg.process_id) + _cstr(msg.channel) + _cstr(msg.payload))
_body(m.FunctionCallResponse)(lambda msg: _pack_i(-1) if msg.value is None else _pack_i(len(msg.value)) + msg.value)
_body(m.NegotiateProtocolVersion)(
    lambda msg: _pack_ii(msg.newest_minor, len(msg.unrecognized)) + b"".join(_cstr(x) for x in msg.unrecognized)
)


def _kind(kind: str) -> bytes:
    if kind not in ("S", "P"):
        raise ValueError(f"kind must be 'S' (statement) or 'P' (portal): {kind!r}")
    return kind.encode("ascii")


def _status(status: str) -> bytes:
    if status not in ("I", "T", "E"):
        raise ValueError(f"ReadyForQuery status must be 'I', 'T' or 'E': {status!r}")
    return status.encode("ascii")


def _salt(salt: bytes) -> bytes:
    if len(salt) != 4:
        raise ValueError("an MD5 salt is 4 bytes")
    return salt


def encode(msg: m.Message) -> bytes:
    """Encode any message, frontend or backend, into its wire bytes (header included).

    Raises ``ValueError`` for a message that cannot be put on the wire (a NUL inside a string, a bad
    status letter): that is a bug in the caller, not a peer's violation.
    """
    if isinstance(msg, m.StartupMessage):
        return _startup(msg)
    if isinstance(msg, m.SSLRequest):
        return _pack_ii(8, SSL_REQUEST_CODE)
    if isinstance(msg, m.GSSENCRequest):
        return _pack_ii(8, GSSENC_REQUEST_CODE)
    if isinstance(msg, m.CancelRequest):
        if not 4 <= len(msg.secret_key) <= 256:
            raise ValueError("a cancel key is 4 to 256 bytes")
        return _pack_ii(12 + len(msg.secret_key), CANCEL_REQUEST_CODE) + _pack_i(msg.process_id) + msg.secret_key
    try:
        body_of = _BODY[type(msg)]
    except KeyError:
        raise TypeError(f"not a protocol message: {msg!r}") from None
    return _typed(msg.TYPE, body_of(msg))


def _notice_fields(severity: str, sqlstate: str, message: str, fields: Mapping[str, object]) -> dict[str, str]:
    out = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    for name, value in fields.items():
        try:
            code = FIELD_CODES[name]
        except KeyError:
            raise TypeError(f"unknown ErrorResponse field {name!r}; known: {sorted(FIELD_CODES)}") from None
        out[code] = str(value)
    return out


def error_response(severity: str, sqlstate: str, message: str, **fields: object) -> bytes:
    """Encode an ErrorResponse, e.g. ``error_response("ERROR", "53300", "too many clients", hint="...")``.

    ``fields`` are keyword names from :data:`FIELD_CODES` (``detail``, ``hint``, ``position``, ...).
    ``severity`` goes into both S and V, as PostgreSQL sends them in an English locale.
    """
    return _typed(ord("E"), _fields(_notice_fields(severity, sqlstate, message, fields)))


def notice_response(severity: str, sqlstate: str, message: str, **fields: object) -> bytes:
    """Encode a NoticeResponse (``severity`` NOTICE, WARNING, ...); same arguments as ``error_response``."""
    return _typed(ord("N"), _fields(_notice_fields(severity, sqlstate, message, fields)))


_RFQ = {s: _typed(ord("Z"), s.encode("ascii")) for s in "ITE"}


def ready_for_query(status: str = "I") -> bytes:
    """The 6 bytes of ReadyForQuery with this status ('I', 'T' or 'E'), from a prebuilt table."""
    try:
        return _RFQ[status]
    except KeyError:
        raise ValueError(f"ReadyForQuery status must be 'I', 'T' or 'E': {status!r}") from None


def command_complete(tag: str) -> bytes:
    """Encode a CommandComplete with this tag (``SELECT 1``, ``SET``, ...)."""
    return _typed(ord("C"), _cstr(tag))
