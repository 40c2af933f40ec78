"""Splitting a byte stream into frames, without decoding them: the proxy's hot path.

A frame is ``(type, view)``: the type byte as an ``int`` and a ``memoryview`` of the whole frame, header
included, so it can be forwarded as it is. Startup-phase packets, which have no type byte, come out with
type :data:`STARTUP` (0) and the view starts at their length word.

Why these choices:

* No dataclass per message. Reading a header costs one ``unpack_from`` and one memoryview slice; decode a
  body with :mod:`._decode` only when a decision needs it.
* Views point into an immutable ``bytes`` object (the chunk that was fed, or a join of chunks when a frame
  straddles feeds), so a view stays valid forever and never blocks a buffer resize. Holding one keeps its
  whole chunk alive: copy with ``bytes(view)`` to keep a frame for long (a cached Parse, say).
* A frame that straddles chunks is gathered in a ``bytearray`` until complete, so a 1 GiB CopyData fed in
  64 KiB chunks costs O(n), not O(n^2). The length is checked against the limits from the header, before any
  body is buffered, so an unauthenticated client cannot make us hold a gigabyte.
* The startup phase is a small separate state: after an SSLRequest or GSSENCRequest the reader stops
  producing frames until :meth:`FrameReader.negotiation_done` says what the server answered; bytes that
  arrived before an accepted TLS handshake are rejected (CVE-2021-23214, as PostgreSQL does).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from typing import Final

from ._errors import FEATURE_NOT_SUPPORTED, PROGRAM_LIMIT_EXCEEDED, ProtocolViolation, type_name
from ._messages import CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE

__all__ = [
    "BACKEND_TYPES",
    "FRONTEND_TYPES",
    "MAX_STARTUP_PACKET",
    "STARTUP",
    "Frame",
    "FrameReader",
    "ReaderState",
    "parse_negotiation_response",
]

Frame = tuple[int, memoryview]

#: The frame type given to startup-phase packets (no real message type is 0).
STARTUP: Final = 0
#: PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
MAX_STARTUP_PACKET: Final = 10000
#: PostgreSQL's PQ_SMALL_MESSAGE_LIMIT, for messages that carry at most a name.
_SMALL: Final = 10000
#: PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH, for password and SASL messages.
_AUTH: Final = 65535
#: Default for everything else: PostgreSQL's MaxAllocSize is 1 GiB.
DEFAULT_MAX_MESSAGE: Final = 1 << 30

#: Every frontend message type of protocol 3.0.
FRONTEND_TYPES: Final = frozenset(b"QPBDESHCXpdcfF")
#: Every backend message type of protocol 3.0 (and 3.2).
BACKEND_TYPES: Final = frozenset(b"RSKZTDCIEN123ntsGHWAVvdc")
_FRONTEND_SMALL: Final = frozenset(b"SHXECD")
#: Frontend messages that carry nothing: PostgreSQL answers a Flush with a body with an ErrorResponse and a
#: ReadyForQuery that no Flush otherwise gets, which would put a proxy's count of answers out of step.
_FRONTEND_EMPTY: Final = frozenset(b"SH")

_unpack_i = struct.Struct("!i").unpack_from
_unpack_ii = struct.Struct("!ii").unpack_from


class ReaderState:
    """The reader's states, as plain string constants (cheap to compare, readable in logs)."""

    STARTUP: Final = "startup"  # expecting an untyped startup-phase packet
    NEGOTIATING: Final = "negotiating"  # after SSLRequest/GSSENCRequest, waiting for negotiation_done()
    MESSAGES: Final = "messages"  # typed messages
    CANCELLED: Final = "cancelled"  # a CancelRequest was read; the connection carries nothing more
    FAILED: Final = "failed"  # a ProtocolViolation was raised; the stream is out of sync


_LIMITS: dict[tuple[frozenset[int], frozenset[int], int], tuple[int, ...]] = {}


def _limits(types: frozenset[int], small: frozenset[int], max_message_size: int) -> tuple[int, ...]:
    # One 256-entry table gives each type's largest accepted length word; -1 marks an unknown type, so a
    # single chained comparison checks both the type and the length on the hot path. The table is pure, so
    # readers with the same arguments share one: a proxy holds a reader per idle client, and a table of
    # its own would cost each of them about 2 KB.
    key = (types, small, max_message_size)
    found = _LIMITS.get(key)
    if found is None:
        found = _LIMITS[key] = _make_limits(types, small, max_message_size)
    return found


def _make_limits(types: frozenset[int], small: frozenset[int], max_message_size: int) -> tuple[int, ...]:
    table = [-1] * 256
    for t in types:
        if t in small:
            table[t] = 4 if t in _FRONTEND_EMPTY else _SMALL + 4
        elif t == ord("p"):
            table[t] = min(_AUTH + 4, max_message_size)
        else:
            table[t] = max_message_size
    return tuple(table)


class FrameReader:
    """Fed bytes, returns complete frames; sans-IO and allocation-lean.

    Use :meth:`for_client` for bytes a client sends (startup phase first, then frontend messages) and
    :meth:`for_server` for bytes a PostgreSQL server sends (backend messages). Typical loop::

        reader.feed(data)
        for msg_type, frame in reader.read_frames():
            ...

    Every error is a :class:`ProtocolViolation`; after one the reader is FAILED and raises it again.
    """

    __slots__ = ("_acc", "_buf", "_error", "_frontend", "_limits", "_need", "_pos", "_small", "state")

    def __init__(
        self, *, frontend: bool, startup: bool | None = None, max_message_size: int = DEFAULT_MAX_MESSAGE
    ) -> None:
        """Read frontend (``frontend=True``) or backend messages; ``startup`` defaults to ``frontend``.

        ``max_message_size`` caps the length word (which counts itself, not the type byte) of every message
        type without a smaller PostgreSQL limit; a longer one raises 54000. Terminate, Execute, Describe and
        Close are capped at 10000 and password/SASL messages at 65535, as in PostgreSQL; Sync and Flush must
        be empty (08P01 otherwise).
        """
        if max_message_size < 4:
            raise ValueError("max_message_size must be at least 4")
        types, small = (FRONTEND_TYPES, _FRONTEND_SMALL) if frontend else (BACKEND_TYPES, frozenset())
        self._limits = _limits(types, small, max_message_size)
        self._small = small
        self._frontend = frontend
        self._buf = b""
        self._pos = 0
        self._acc = bytearray()
        self._need = 0
        self._error: ProtocolViolation | None = None
        #: One of the :class:`ReaderState` constants.
        self.state: str = ReaderState.STARTUP if (frontend if startup is None else startup) else ReaderState.MESSAGES

    @classmethod
    def for_client(cls, *, max_message_size: int = DEFAULT_MAX_MESSAGE) -> FrameReader:
        """A reader for what a client sends: the startup phase, then frontend messages."""
        return cls(frontend=True, startup=True, max_message_size=max_message_size)

    @classmethod
    def for_server(cls, *, max_message_size: int = DEFAULT_MAX_MESSAGE) -> FrameReader:
        """A reader for what a PostgreSQL server sends: backend messages."""
        return cls(frontend=False, startup=False, max_message_size=max_message_size)

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as frames (a clean end of stream has none)."""
        return len(self._buf) - self._pos + len(self._acc)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the peer. Does no parsing; call :meth:`read_frames` or :meth:`next_frame`."""
        if self._error is not None:
            raise self._error
        if self._acc:
            # A frame straddles chunks: gather until it is complete, then make one immutable copy.
            self._acc += data
            if len(self._acc) >= self._need:
                self._buf = bytes(self._acc)
                self._pos = 0
                self._acc = bytearray()
        elif self._pos >= len(self._buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        else:
            # Fed twice without reading in between: join (rare, so the copy does not matter).
            self._buf = self._buf[self._pos :] + bytes(data)
            self._pos = 0

    def read_frames(self) -> list[Frame]:
        """Return every complete frame buffered now, in order (possibly none).

        Frames before a bad header are returned; the ProtocolViolation comes with :meth:`check` and with
        the next call.
        Stops early after an SSLRequest/GSSENCRequest (see :meth:`negotiation_done`) or a CancelRequest.
        """
        out: list[Frame] = []
        while self.state is not ReaderState.MESSAGES:
            frame = self.next_frame()
            if frame is None:
                return out
            out.append(frame)
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if n - pos >= 5:
            # The hot loop: locals only, one unpack and one slice per frame.
            limits = self._limits
            unpack = _unpack_i
            view = memoryview(buf)
            append = out.append
            while n - pos >= 5:
                t = buf[pos]
                length = unpack(buf, pos + 1)[0]
                if not 4 <= length <= limits[t]:
                    self._pos = pos
                    if not out:
                        self._bad_header(t, length)
                    # Hand over the good frames first (a Terminate, say); the violation is recorded now, for
                    # check() after them, and raised by every later call.
                    with contextlib.suppress(ProtocolViolation):
                        self._bad_header(t, length)
                    return out
                end = pos + 1 + length
                if end > n:
                    break
                append((t, view[pos:end]))
                pos = end
        self._pos = pos
        if pos < n:
            self._stash()
        return out

    def check(self) -> None:
        """Raise the ProtocolViolation found behind the frames :meth:`read_frames` just returned, if any.

        Call it once those frames are handled: a violation must be answered at once, not when (if ever)
        the peer sends more bytes.
        """
        if self._error is not None:
            raise self._error

    def __iter__(self) -> Iterator[Frame]:
        """Iterate over :meth:`read_frames`."""
        return iter(self.read_frames())

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, or None when more bytes are needed (or the reader is paused)."""
        if self._error is not None:
            raise self._error
        state = self.state
        if state is ReaderState.MESSAGES:
            return self._next_message()
        if state is ReaderState.STARTUP:
            return self._next_startup()
        return None

    def negotiation_done(self, *, encrypted: bool) -> None:
        """Resume after an SSLRequest/GSSENCRequest: ``encrypted`` if the server answered 'S'/'G'.

        When encryption starts, no byte may have arrived after the request: those would be plaintext that
        a man in the middle could inject ahead of the handshake (CVE-2021-23214), so they are a violation.
        The reader then expects a new startup packet, over TLS, fed through the same reader.
        """
        if self.state is not ReaderState.NEGOTIATING:
            raise RuntimeError(f"negotiation_done() in state {self.state}")
        if encrypted and self.buffered:
            self._fail(ProtocolViolation("received unencrypted data after SSL request"))
        self.state = ReaderState.STARTUP

    # ---------------------------------------------------------------------------------------------------

    def _next_message(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            if pos < len(buf):
                self._stash()
            return None
        t = buf[pos]
        length = _unpack_i(buf, pos + 1)[0]
        if not 4 <= length <= self._limits[t]:
            self._bad_header(t, length)
        end = pos + 1 + length
        if end > len(buf):
            self._stash()
            return None
        self._pos = end
        return t, memoryview(buf)[pos:end]

    def _next_startup(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail and buf[pos] == 0x16:
            # A TLS ClientHello: the client uses PostgreSQL 17's sslnegotiation=direct.
            self._fail(ProtocolViolation("direct TLS negotiation is not supported; use sslnegotiation=postgres"))
        if avail < 8:
            if avail:
                self._stash(8)
            return None
        length, code = _unpack_ii(buf, pos)
        if not 8 <= length <= MAX_STARTUP_PACKET:
            self._fail(ProtocolViolation("invalid length of startup packet"))
        if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
            if length != 8:
                self._fail(ProtocolViolation("invalid length of SSLRequest or GSSENCRequest packet"))
            next_state = ReaderState.NEGOTIATING
        elif code == CANCEL_REQUEST_CODE:
            next_state = ReaderState.CANCELLED
        elif code >> 16 == 3:
            next_state = ReaderState.MESSAGES
        else:
            self._fail(
                ProtocolViolation(
                    f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: server supports 3.0",
                    FEATURE_NOT_SUPPORTED,
                )
            )
        end = pos + length
        if end > len(buf):
            self._stash(length)
            return None
        self._pos = end
        self.state = next_state
        return STARTUP, memoryview(buf)[pos:end]

    def _stash(self, need: int = 0) -> None:
        # Move the incomplete tail into the gathering buffer, remembering how many bytes make it complete.
        tail = memoryview(self._buf)[self._pos :]
        if not need:
            need = 5
            if self.state is ReaderState.MESSAGES and len(tail) >= 5:
                need = 1 + _unpack_i(tail, 1)[0]
        self._acc = bytearray(tail)
        self._need = need
        self._buf = b""
        self._pos = 0

    def _bad_header(self, t: int, length: int) -> None:
        if self._limits[t] < 0:
            kind = "frontend" if self._frontend else "backend"
            self._fail(ProtocolViolation(f"invalid {kind} message type {type_name(t)}"))
        if length < 4 or t in self._small:
            self._fail(ProtocolViolation(f"invalid message length {length} for message type {chr(t)!r}"))
        self._fail(
            ProtocolViolation(
                f"message too large: type {chr(t)!r} of {length} bytes, over the limit of {self._limits[t]}",
                PROGRAM_LIMIT_EXCEEDED,
            )
        )

    def _fail(self, exc: ProtocolViolation) -> None:
        self._error = exc
        self.state = ReaderState.FAILED
        raise exc


def parse_negotiation_response(data: bytes | bytearray | memoryview) -> bool:
    """Interpret a server's answer to our SSLRequest/GSSENCRequest: True for 'S'/'G', False for 'N'.

    The answer is one byte. More bytes mean either an ErrorResponse from a server too old to know the
    request, or data injected ahead of the TLS handshake (CVE-2021-23222): both are violations.
    """
    if len(data) != 1 or data[0] not in b"SGN":
        raise ProtocolViolation("invalid response to SSL/GSS negotiation request")
    return data[0] != ord("N")
