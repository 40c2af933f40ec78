"""The one exception of the wire protocol layer: a peer broke the protocol's rules.

Every malformed, truncated, oversize or out-of-order input ends in a :class:`ProtocolViolation`, never in a
``struct.error``, ``IndexError`` or ``UnicodeDecodeError``: the I/O layer catches exactly one type, answers
with an ErrorResponse carrying the SQLSTATE and closes that one connection.
"""

from __future__ import annotations

__all__ = [
    "FEATURE_NOT_SUPPORTED",
    "PROGRAM_LIMIT_EXCEEDED",
    "PROTOCOL_VIOLATION",
    "ProtocolViolation",
]

#: SQLSTATE 08P01, what PostgreSQL itself reports for malformed messages.
PROTOCOL_VIOLATION = "08P01"
#: SQLSTATE 0A000, what PostgreSQL reports for an unsupported protocol version (and we for unsupported auth).
FEATURE_NOT_SUPPORTED = "0A000"
#: SQLSTATE 54000, for messages over our configured size limit (PostgreSQL says 08P01 "invalid message
#: length" there; 54000 tells the client it hit a limit, not that its driver is broken).
PROGRAM_LIMIT_EXCEEDED = "54000"


class ProtocolViolation(Exception):
    """A peer sent bytes that break the PostgreSQL protocol 3.0 rules.

    ``sqlstate`` is the code to put in the ErrorResponse sent before closing the connection; ``message`` is
    the human text. After a violation the connection's byte stream is out of sync and must be closed: the
    objects that raised it refuse further input.
    """

    __slots__ = ("message", "sqlstate")

    def __init__(self, message: str, sqlstate: str = PROTOCOL_VIOLATION) -> None:
        """Create a violation with its human ``message`` and ``sqlstate`` (08P01 unless told)."""
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate

    def __repr__(self) -> str:
        """Show the SQLSTATE with the message, which is what a log line needs."""
        return f"ProtocolViolation({self.message!r}, sqlstate={self.sqlstate!r})"

    def error_response(self) -> bytes:
        """Encode the FATAL ErrorResponse to send to the peer before closing the connection."""
        # Imported here: the encoder imports the messages, which would make an import cycle at load time.
        from ._encode import error_response

        return error_response("FATAL", self.sqlstate, self.message)


def type_name(msg_type: int) -> str:
    """A message type byte as error messages show it: the letter quoted, else hex."""
    return repr(chr(msg_type)) if 32 < msg_type < 127 else f"0x{msg_type:02x}"
