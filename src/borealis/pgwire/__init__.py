"""The PostgreSQL wire protocol (3.0), sans-IO: bytes in, frames and messages out, and back.

No sockets, no asyncio: the I/O layer feeds bytes to a :class:`FrameReader`, forwards or inspects the
frames it returns, decodes a body (:func:`decode_frontend`, :func:`decode_backend`, :func:`decode_startup`)
only when a decision needs it, tells a :class:`Session` what crossed the connection, and writes bytes made
by :func:`encode` or the builders. Every bad input is a :class:`ProtocolViolation` carrying a SQLSTATE.
"""

from ._decode import (
    decode_backend,
    decode_backend_frame,
    decode_frontend,
    decode_frontend_frame,
    decode_startup,
    negotiate_protocol,
)
from ._encode import FIELD_CODES, command_complete, encode, error_response, notice_response, ready_for_query
from ._errors import FEATURE_NOT_SUPPORTED, PROGRAM_LIMIT_EXCEEDED, PROTOCOL_VIOLATION, ProtocolViolation
from ._framing import (
    BACKEND_TYPES,
    DEFAULT_MAX_MESSAGE,
    FRONTEND_TYPES,
    MAX_STARTUP_PACKET,
    STARTUP,
    Frame,
    FrameReader,
    ReaderState,
    parse_negotiation_response,
)
from ._messages import *  # noqa: F403  (the message classes; their module's __all__ is the list)
from ._messages import __all__ as _message_names
from ._pinning import SHAPE_DIGITS, UNPINNED_SHAPES, PinReason, may_pin, pinning_reason
from ._state import Phase, Session

__all__ = [
    "BACKEND_TYPES",
    "DEFAULT_MAX_MESSAGE",
    "FEATURE_NOT_SUPPORTED",
    "FIELD_CODES",
    "FRONTEND_TYPES",
    "MAX_STARTUP_PACKET",
    "PROGRAM_LIMIT_EXCEEDED",
    "PROTOCOL_VIOLATION",
    "SHAPE_DIGITS",
    "STARTUP",
    "UNPINNED_SHAPES",
    "Frame",
    "FrameReader",
    "Phase",
    "PinReason",
    "ProtocolViolation",
    "ReaderState",
    "Session",
    "command_complete",
    "decode_backend",
    "decode_backend_frame",
    "decode_frontend",
    "decode_frontend_frame",
    "decode_startup",
    "encode",
    "error_response",
    "negotiate_protocol",
    "notice_response",
    "parse_negotiation_response",
    "may_pin",
    "pinning_reason",
    "ready_for_query",
    *_message_names,
]
