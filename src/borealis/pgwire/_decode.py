"""Decoders: one message body to one dataclass, only when a decision needs it.

The frame reader (:mod:`._framing`) only splits the stream; these functions parse a body. Everything that
can go wrong ends in :class:`ProtocolViolation` (08P01 unless noted): a body shorter than its fields, a
string without its NUL, bytes left over after the last field, an unknown type or authentication code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from . import _messages as m
from ._errors import FEATURE_NOT_SUPPORTED, ProtocolViolation, type_name

__all__ = [
    "decode_backend",
    "decode_backend_frame",
    "decode_frontend",
    "decode_frontend_frame",
    "decode_startup",
    "negotiate_protocol",
]

_unpack_i = struct.Struct("!i").unpack_from
_unpack_I = struct.Struct("!I").unpack_from
_unpack_h = struct.Struct("!h").unpack_from

AuthResponse = type[m.PasswordMessage] | type[m.SASLInitialResponse] | type[m.SASLResponse]


class _Cursor:
    """Reads fields from a body left to right; every shortfall is a ProtocolViolation naming the message."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, body: bytes | bytearray | memoryview, what: str) -> None:
        self.buf = bytes(body)
        self.pos = 0
        self.what = what

    def _need(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > len(self.buf):
            raise ProtocolViolation(f"truncated {self.what} message")
        self.pos = pos + n
        return pos

    def int32(self) -> int:
        return int(_unpack_i(self.buf, self._need(4))[0])

    def uint32(self) -> int:
        return int(_unpack_I(self.buf, self._need(4))[0])

    def int16(self) -> int:
        return int(_unpack_h(self.buf, self._need(2))[0])

    def byte(self) -> int:
        return self.buf[self._need(1)]

    def raw(self, n: int) -> bytes:
        pos = self._need(n)
        return self.buf[pos : pos + n]

    def rest(self) -> bytes:
        pos, self.pos = self.pos, len(self.buf)
        return self.buf[pos:]

    def cstr(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation(f"missing string terminator in {self.what} message")
        s = self.buf[self.pos : end].decode("utf-8", "surrogateescape")
        self.pos = end + 1
        return s

    def count(self) -> int:
        n = self.int16()
        if n < 0:
            raise ProtocolViolation(f"negative count in {self.what} message")
        return n

    def int16s(self) -> tuple[int, ...]:
        n = self.count()
        return struct.unpack_from(f"!{n}h", self.buf, self._need(2 * n))

    def uint32s(self) -> tuple[int, ...]:
        n = self.count()
        return struct.unpack_from(f"!{n}I", self.buf, self._need(4 * n))

    def value(self) -> bytes | None:
        n = self.int32()
        if n == -1:
            return None
        if n < 0:
            raise ProtocolViolation(f"invalid value length {n} in {self.what} message")
        return self.raw(n)

    def values(self) -> tuple[bytes | None, ...]:
        return tuple([self.value() for _ in range(self.count())])

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolViolation(f"invalid {self.what} message format: {len(self.buf) - self.pos} extra bytes")


def _kind(c: _Cursor) -> str:
    k = chr(c.byte())
    if k not in ("S", "P"):
        raise ProtocolViolation(f"invalid {c.what} target type {k!r}")
    return k


def _fields(c: _Cursor) -> dict[str, str]:
    out: dict[str, str] = {}
    while True:
        code = c.byte()
        if code == 0:
            return out
        out[chr(code)] = c.cstr()


def _copy_format(c: _Cursor) -> tuple[int, tuple[int, ...]]:
    return c.byte(), c.int16s()


def _strings(c: _Cursor) -> tuple[str, ...]:
    # A list of strings ended by an empty one, as in AuthenticationSASL.
    out = []
    while (s := c.cstr()) != "":
        out.append(s)
    return tuple(out)


# Each decoder reads its fields from the cursor; the caller checks the cursor ended exactly.
_Decoder = Callable[[_Cursor], m.Message]

_FRONTEND: dict[int, tuple[str, _Decoder]] = {
    ord("Q"): ("Query", lambda c: m.Query(c.cstr())),
    ord("P"): ("Parse", lambda c: m.Parse(c.cstr(), c.cstr(), c.uint32s())),
    ord("B"): ("Bind", lambda c: m.Bind(c.cstr(), c.cstr(), c.int16s(), c.values(), c.int16s())),
    ord("D"): ("Describe", lambda c: m.Describe(_kind(c), c.cstr())),
    ord("E"): ("Execute", lambda c: m.Execute(c.cstr(), c.int32())),
    ord("S"): ("Sync", lambda c: m.Sync()),
    ord("H"): ("Flush", lambda c: m.Flush()),
    ord("C"): ("Close", lambda c: m.Close(_kind(c), c.cstr())),
    ord("X"): ("Terminate", lambda c: m.Terminate()),
    ord("d"): ("CopyData", lambda c: m.CopyData(c.rest())),
    ord("c"): ("CopyDone", lambda c: m.CopyDone()),
    ord("f"): ("CopyFail", lambda c: m.CopyFail(c.cstr())),
    ord("F"): ("FunctionCall", lambda c: m.FunctionCall(c.uint32(), c.int16s(), c.values(), c.int16())),
}

_AUTH: dict[int, _Decoder] = {
    0: lambda c: m.AuthenticationOk(),
    3: lambda c: m.AuthenticationCleartextPassword(),
    5: lambda c: m.AuthenticationMD5Password(c.raw(4)),
    10: lambda c: m.AuthenticationSASL(_strings(c)),
    11: lambda c: m.AuthenticationSASLContinue(c.rest()),
    12: lambda c: m.AuthenticationSASLFinal(c.rest()),
}


def _authentication(c: _Cursor) -> m.Message:
    code = c.int32()
    try:
        decoder = _AUTH[code]
    except KeyError:
        raise ProtocolViolation(f"unsupported authentication request code {code}", FEATURE_NOT_SUPPORTED) from None
    return decoder(c)


def _backend_key_data(c: _Cursor) -> m.Message:
    pid = c.int32()
    key = c.rest()
    # 4 bytes in protocol 3.0; protocol 3.2 (PostgreSQL 18) allows up to 256.
    if not 4 <= len(key) <= 256:
        raise ProtocolViolation(f"invalid BackendKeyData secret key length {len(key)}")
    return m.BackendKeyData(pid, key)


def _ready_for_query(c: _Cursor) -> m.Message:
    status = chr(c.byte())
    if status not in ("I", "T", "E"):
        raise ProtocolViolation(f"invalid ReadyForQuery status {status!r}")
    return m.ReadyForQuery(status)


def _row_description(c: _Cursor) -> m.Message:
    fields = []
    for _ in range(c.count()):
        name = c.cstr()
        table_oid = c.uint32()
        attr = c.int16()
        type_oid = c.uint32()
        fields.append(m.FieldDescription(name, table_oid, attr, type_oid, c.int16(), c.int32(), c.int16()))
    return m.RowDescription(tuple(fields))


def _negotiate(c: _Cursor) -> m.Message:
    minor = c.int32()
    n = c.int32()
    if n < 0:
        raise ProtocolViolation("negative option count in NegotiateProtocolVersion message")
    return m.NegotiateProtocolVersion(minor, tuple(c.cstr() for _ in range(n)))


_BACKEND: dict[int, tuple[str, _Decoder]] = {
    ord("R"): ("Authentication", _authentication),
    ord("S"): ("ParameterStatus", lambda c: m.ParameterStatus(c.cstr(), c.cstr())),
    ord("K"): ("BackendKeyData", _backend_key_data),
    ord("Z"): ("ReadyForQuery", _ready_for_query),
    ord("T"): ("RowDescription", _row_description),
    ord("D"): ("DataRow", lambda c: m.DataRow(c.values())),
    ord("C"): ("CommandComplete", lambda c: m.CommandComplete(c.cstr())),
    ord("I"): ("EmptyQueryResponse", lambda c: m.EmptyQueryResponse()),
    ord("E"): ("ErrorResponse", lambda c: m.ErrorResponse(_fields(c))),
    ord("N"): ("NoticeResponse", lambda c: m.NoticeResponse(_fields(c))),
    ord("1"): ("ParseComplete", lambda c: m.ParseComplete()),
    ord("2"): ("BindComplete", lambda c: m.BindComplete()),
    ord("3"): ("CloseComplete", lambda c: m.CloseComplete()),
    ord("n"): ("NoData", lambda c: m.NoData()),
    ord("t"): ("ParameterDescription", lambda c: m.ParameterDescription(c.uint32s())),
    ord("s"): ("PortalSuspended", lambda c: m.PortalSuspended()),
    ord("G"): ("CopyInResponse", lambda c: m.CopyInResponse(*_copy_format(c))),
    ord("H"): ("CopyOutResponse", lambda c: m.CopyOutResponse(*_copy_format(c))),
    ord("W"): ("CopyBothResponse", lambda c: m.CopyBothResponse(*_copy_format(c))),
    ord("A"): ("NotificationResponse", lambda c: m.NotificationResponse(c.int32(), c.cstr(), c.cstr())),
    ord("V"): ("FunctionCallResponse", lambda c: m.FunctionCallResponse(c.value())),
    ord("v"): ("NegotiateProtocolVersion", _negotiate),
    ord("d"): ("CopyData", lambda c: m.CopyData(c.rest())),
    ord("c"): ("CopyDone", lambda c: m.CopyDone()),
}


def _auth_response(c: _Cursor, auth: AuthResponse) -> m.Message:
    # The 'p' byte carries four different messages; only the session knows which one it expects.
    if auth is m.SASLInitialResponse:
        mechanism = c.cstr()
        return m.SASLInitialResponse(mechanism, c.value())
    if auth is m.SASLResponse:
        return m.SASLResponse(c.rest())
    return m.PasswordMessage(c.cstr())


def decode_frontend(
    msg_type: int, body: bytes | bytearray | memoryview, *, auth: AuthResponse = m.PasswordMessage
) -> m.FrontendMessage:
    """Decode the body of a typed frontend message (everything after the 5-byte header).

    A ``p`` message is a PasswordMessage unless ``auth`` names SASLInitialResponse or SASLResponse: the
    bytes alone do not say which, the authentication exchange does.
    """
    if msg_type == ord("p"):
        c = _Cursor(body, auth.__name__)
        msg = _auth_response(c, auth)
    else:
        try:
            name, decoder = _FRONTEND[msg_type]
        except KeyError:
            raise ProtocolViolation(f"invalid frontend message type {type_name(msg_type)}") from None
        c = _Cursor(body, name)
        msg = decoder(c)
    c.end()
    assert isinstance(msg, m.FrontendMessage)
    return msg


def decode_backend(msg_type: int, body: bytes | bytearray | memoryview) -> m.BackendMessage:
    """Decode the body of a backend message (everything after the 5-byte header)."""
    try:
        name, decoder = _BACKEND[msg_type]
    except KeyError:
        raise ProtocolViolation(f"invalid backend message type {type_name(msg_type)}") from None
    c = _Cursor(body, name)
    msg = decoder(c)
    c.end()
    assert isinstance(msg, m.BackendMessage)
    return msg


def _check_frame(frame: bytes | bytearray | memoryview) -> None:
    if len(frame) < 5 or int(_unpack_i(frame, 1)[0]) != len(frame) - 1:
        raise ProtocolViolation("frame length does not match its header")


def decode_frontend_frame(
    frame: bytes | bytearray | memoryview, *, auth: AuthResponse = m.PasswordMessage
) -> m.FrontendMessage:
    """Decode a whole typed frame as the FrameReader yields it (header included)."""
    _check_frame(frame)
    return decode_frontend(frame[0], frame[5:], auth=auth)


def decode_backend_frame(frame: bytes | bytearray | memoryview) -> m.BackendMessage:
    """Decode a whole backend frame as the FrameReader yields it (header included)."""
    _check_frame(frame)
    return decode_backend(frame[0], frame[5:])


def decode_startup(
    packet: bytes | bytearray | memoryview,
) -> m.StartupMessage | m.SSLRequest | m.GSSENCRequest | m.CancelRequest:
    """Decode a whole startup-phase packet (Int32 length first), as PostgreSQL's ProcessStartupPacket does.

    Raises 0A000 for a protocol major version other than 3 and 28000 when a StartupMessage names no user.
    Any 3.x minor version is accepted here; see :func:`negotiate_protocol` for what to answer.
    """
    c = _Cursor(packet, "startup")
    length = c.int32()
    if length != len(packet) or length < 8:
        raise ProtocolViolation("invalid length of startup packet")
    code = c.int32()
    if code == m.SSL_REQUEST_CODE or code == m.GSSENC_REQUEST_CODE:
        c.end()
        return m.SSLRequest() if code == m.SSL_REQUEST_CODE else m.GSSENCRequest()
    if code == m.CANCEL_REQUEST_CODE:
        c.what = "CancelRequest"
        pid = c.int32()
        key = c.rest()
        if not 4 <= len(key) <= 256:
            raise ProtocolViolation(f"invalid CancelRequest secret key length {len(key)}")
        return m.CancelRequest(pid, key)
    if code >> 16 != 3:
        raise ProtocolViolation(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0",
            FEATURE_NOT_SUPPORTED,
        )
    c.what = "StartupMessage"
    params: dict[str, str] = {}
    while True:
        name = c.cstr()
        if name == "":
            break
        params[name] = c.cstr()
    # PostgreSQL: "invalid startup packet layout: expected terminator as last byte".
    c.end()
    if not params.get("user"):
        raise ProtocolViolation("no PostgreSQL user name specified in startup packet", "28000")
    return m.StartupMessage(params, code)


def negotiate_protocol(startup: m.StartupMessage) -> m.NegotiateProtocolVersion | None:
    """What a 3.0-only server answers to this StartupMessage before authentication, or None.

    PostgreSQL sends NegotiateProtocolVersion when the client asks for a newer minor version than the
    server speaks, or for ``_pq_.`` protocol options it does not know, and then carries on in the version
    it offered. PostgreSQL 18 speaks 3.2 (longer cancel keys) and libpq 18 asks for it only when
    ``max_protocol_version`` says so; Borealis offers 3.0, which libpq 18 accepts unless
    ``min_protocol_version`` forbids it (then the client closes the connection).
    """
    options = tuple(k for k in startup.parameters if k.startswith("_pq_."))
    if startup.protocol_version & 0xFFFF == 0 and not options:
        return None
    return m.NegotiateProtocolVersion(0, options)
