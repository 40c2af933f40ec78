"""PostgreSQL protocol 3.0 messages as frozen, slotted dataclasses, both directions.

Each typed message class carries its type byte as the class attribute ``TYPE`` (an ``int``, e.g. ``0x51``
for Query); the four startup-phase packets, which have no type byte, carry ``TYPE = 0``. The classes hold
data only: :mod:`._encode` turns them into bytes and :mod:`._decode` back.

Text fields are ``str`` decoded as UTF-8 with ``surrogateescape``, so bytes in any client encoding survive
a decode/encode round trip unchanged. Binary payloads (parameter values, row values, COPY data, SASL data,
cancel keys) are ``bytes``; SQL NULL is ``None``.

Messages whose fields hold a ``dict`` (StartupMessage, ErrorResponse, NoticeResponse) compare by value but
cannot be hashed; nothing in the protocol layer needs to hash a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "CANCEL_REQUEST_CODE",
    "GSSENC_REQUEST_CODE",
    "PROTOCOL_3_0",
    "SSL_REQUEST_CODE",
    "Authentication",
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "BackendKeyData",
    "BackendMessage",
    "Bind",
    "BindComplete",
    "CancelRequest",
    "Close",
    "CloseComplete",
    "CommandComplete",
    "CopyBothResponse",
    "CopyData",
    "CopyDone",
    "CopyFail",
    "CopyInResponse",
    "CopyOutResponse",
    "DataRow",
    "Describe",
    "EmptyQueryResponse",
    "ErrorResponse",
    "Execute",
    "FieldDescription",
    "Flush",
    "FrontendMessage",
    "FunctionCall",
    "FunctionCallResponse",
    "GSSENCRequest",
    "Message",
    "NegotiateProtocolVersion",
    "NoData",
    "NoticeResponse",
    "NotificationResponse",
    "ParameterDescription",
    "ParameterStatus",
    "Parse",
    "ParseComplete",
    "PasswordMessage",
    "PortalSuspended",
    "Query",
    "ReadyForQuery",
    "RowDescription",
    "SASLInitialResponse",
    "SASLResponse",
    "SSLRequest",
    "StartupMessage",
    "Sync",
    "Terminate",
]

#: The protocol version code of 3.0 (major << 16 | minor), the only version Borealis speaks.
PROTOCOL_3_0 = 3 << 16
# The special "protocol versions" of the startup-phase requests: 1234 in the major half, as PostgreSQL does.
#: CancelRequest's code.
CANCEL_REQUEST_CODE = (1234 << 16) | 5678
#: SSLRequest's code.
SSL_REQUEST_CODE = (1234 << 16) | 5679
#: GSSENCRequest's code.
GSSENC_REQUEST_CODE = (1234 << 16) | 5680


class Message:
    """Base of every message; ``TYPE`` is the type byte as an int (0 for the untyped startup packets)."""

    __slots__ = ()
    TYPE: ClassVar[int] = 0


class FrontendMessage(Message):
    """A message a client (frontend) sends to a server."""

    __slots__ = ()


class BackendMessage(Message):
    """A message a server (backend) sends to a client."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------------------
# Startup phase: no type byte, just Int32 length + Int32 code (+ body).


@dataclass(frozen=True, slots=True)
class StartupMessage(FrontendMessage):
    """The first packet of a session: protocol version and parameters (``user``, ``database``, ...)."""

    parameters: dict[str, str] = field(default_factory=dict)
    protocol_version: int = PROTOCOL_3_0

    @property
    def user(self) -> str | None:
        """The ``user`` parameter, which PostgreSQL requires."""
        return self.parameters.get("user")

    @property
    def database(self) -> str | None:
        """The ``database`` parameter, defaulting to the user name as PostgreSQL does."""
        return self.parameters.get("database", self.parameters.get("user"))


@dataclass(frozen=True, slots=True)
class SSLRequest(FrontendMessage):
    """Asks the server to start TLS; answered by the single byte ``S`` or ``N``."""


@dataclass(frozen=True, slots=True)
class GSSENCRequest(FrontendMessage):
    """Asks the server to start GSSAPI encryption; answered by the single byte ``G`` or ``N``."""


@dataclass(frozen=True, slots=True)
class CancelRequest(FrontendMessage):
    """Sent on a new connection to cancel the query of the session with this key.

    ``secret_key`` is bytes: 4 bytes in protocol 3.0, up to 256 in 3.2 (PostgreSQL 18).
    """

    process_id: int
    secret_key: bytes


# --------------------------------------------------------------------------------------------------------
# Frontend, typed.


@dataclass(frozen=True, slots=True)
class Query(FrontendMessage):
    """Simple query protocol: one string that may hold several statements."""

    TYPE: ClassVar[int] = ord("Q")
    sql: str


@dataclass(frozen=True, slots=True)
class Parse(FrontendMessage):
    """Extended protocol: prepare ``query`` as statement ``name`` ('' is the unnamed statement)."""

    TYPE: ClassVar[int] = ord("P")
    name: str
    query: str
    param_types: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Bind(FrontendMessage):
    """Extended protocol: bind parameter values to a statement, making a portal."""

    TYPE: ClassVar[int] = ord("B")
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Describe(FrontendMessage):
    """Extended protocol: describe a statement (``kind='S'``) or a portal (``kind='P'``)."""

    TYPE: ClassVar[int] = ord("D")
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Execute(FrontendMessage):
    """Extended protocol: run a portal, returning at most ``max_rows`` rows (0 = all)."""

    TYPE: ClassVar[int] = ord("E")
    portal: str = ""
    max_rows: int = 0


@dataclass(frozen=True, slots=True)
class Sync(FrontendMessage):
    """Extended protocol: end of a batch; the server answers it with ReadyForQuery."""

    TYPE: ClassVar[int] = ord("S")


@dataclass(frozen=True, slots=True)
class Flush(FrontendMessage):
    """Extended protocol: ask the server to send what it has buffered; no response of its own."""

    TYPE: ClassVar[int] = ord("H")


@dataclass(frozen=True, slots=True)
class Close(FrontendMessage):
    """Extended protocol: close a statement (``kind='S'``) or a portal (``kind='P'``)."""

    TYPE: ClassVar[int] = ord("C")
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Terminate(FrontendMessage):
    """The client is closing the connection."""

    TYPE: ClassVar[int] = ord("X")


@dataclass(frozen=True, slots=True)
class PasswordMessage(FrontendMessage):
    """A cleartext or MD5 password (type ``p``; the same byte carries the SASL messages)."""

    TYPE: ClassVar[int] = ord("p")
    password: str


@dataclass(frozen=True, slots=True)
class SASLInitialResponse(FrontendMessage):
    """The first SASL message: chosen mechanism and the client-first data (``None`` when absent)."""

    TYPE: ClassVar[int] = ord("p")
    mechanism: str
    data: bytes | None


@dataclass(frozen=True, slots=True)
class SASLResponse(FrontendMessage):
    """A later SASL message from the client."""

    TYPE: ClassVar[int] = ord("p")
    data: bytes


@dataclass(frozen=True, slots=True)
class CopyData(FrontendMessage, BackendMessage):
    """A chunk of COPY data; sent by both sides."""

    TYPE: ClassVar[int] = ord("d")
    data: bytes


@dataclass(frozen=True, slots=True)
class CopyDone(FrontendMessage, BackendMessage):
    """End of COPY data; sent by both sides."""

    TYPE: ClassVar[int] = ord("c")


@dataclass(frozen=True, slots=True)
class CopyFail(FrontendMessage):
    """The client aborts a COPY FROM STDIN with this message."""

    TYPE: ClassVar[int] = ord("f")
    message: str


@dataclass(frozen=True, slots=True)
class FunctionCall(FrontendMessage):
    """The legacy fast-path function call; answered by FunctionCallResponse and ReadyForQuery."""

    TYPE: ClassVar[int] = ord("F")
    function_oid: int
    arg_formats: tuple[int, ...] = ()
    args: tuple[bytes | None, ...] = ()
    result_format: int = 0


# --------------------------------------------------------------------------------------------------------
# Backend.


class Authentication(BackendMessage):
    """Base of the Authentication* messages (type ``R``); ``CODE`` is the Int32 that follows the length."""

    __slots__ = ()
    TYPE: ClassVar[int] = ord("R")
    CODE: ClassVar[int] = -1


@dataclass(frozen=True, slots=True)
class AuthenticationOk(Authentication):
    """Authentication succeeded."""

    CODE: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class AuthenticationCleartextPassword(Authentication):
    """The server wants the password in clear text."""

    CODE: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class AuthenticationMD5Password(Authentication):
    """The server wants an MD5-hashed password salted with these 4 bytes."""

    CODE: ClassVar[int] = 5
    salt: bytes


@dataclass(frozen=True, slots=True)
class AuthenticationSASL(Authentication):
    """The server starts SASL and lists the mechanisms it accepts (e.g. ``SCRAM-SHA-256``)."""

    CODE: ClassVar[int] = 10
    mechanisms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthenticationSASLContinue(Authentication):
    """A SASL challenge (server-first-message for SCRAM)."""

    CODE: ClassVar[int] = 11
    data: bytes


@dataclass(frozen=True, slots=True)
class AuthenticationSASLFinal(Authentication):
    """The SASL outcome data (server-final-message for SCRAM)."""

    CODE: ClassVar[int] = 12
    data: bytes


@dataclass(frozen=True, slots=True)
class ParameterStatus(BackendMessage):
    """The server reports the value of a GUC_REPORT parameter (TimeZone, client_encoding, ...)."""

    TYPE: ClassVar[int] = ord("S")
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class BackendKeyData(BackendMessage):
    """The key a client needs to cancel this session's queries (4-byte ``secret_key`` in 3.0)."""

    TYPE: ClassVar[int] = ord("K")
    process_id: int
    secret_key: bytes


@dataclass(frozen=True, slots=True)
class ReadyForQuery(BackendMessage):
    """The server is ready: ``status`` is 'I' idle, 'T' in a transaction, 'E' in a failed transaction."""

    TYPE: ClassVar[int] = ord("Z")
    status: str = "I"


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: str
    table_oid: int = 0
    column_attr: int = 0
    type_oid: int = 25
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0


@dataclass(frozen=True, slots=True)
class RowDescription(BackendMessage):
    """The columns of the rows that follow."""

    TYPE: ClassVar[int] = ord("T")
    fields: tuple[FieldDescription, ...]


@dataclass(frozen=True, slots=True)
class DataRow(BackendMessage):
    """One row: column values as bytes, ``None`` for NULL."""

    TYPE: ClassVar[int] = ord("D")
    values: tuple[bytes | None, ...]


@dataclass(frozen=True, slots=True)
class CommandComplete(BackendMessage):
    """A statement finished; ``tag`` is e.g. ``SELECT 1`` or ``INSERT 0 3``."""

    TYPE: ClassVar[int] = ord("C")
    tag: str


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(BackendMessage):
    """The query string was empty."""

    TYPE: ClassVar[int] = ord("I")


class _Fields(BackendMessage):
    """Accessors shared by ErrorResponse and NoticeResponse, whose ``fields`` map code letters to text."""

    __slots__ = ()
    fields: dict[str, str]

    @property
    def severity(self) -> str:
        """The non-localized severity (``V``) when present, else the localized one (``S``)."""
        return self.fields.get("V", self.fields.get("S", ""))

    @property
    def sqlstate(self) -> str:
        """The SQLSTATE code (``C``)."""
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        """The primary message (``M``)."""
        return self.fields.get("M", "")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    """An error; ``fields`` maps code letters (S, V, C, M, D, H, P, ...) to text."""

    TYPE: ClassVar[int] = ord("E")
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    """A notice or warning; same fields as ErrorResponse."""

    TYPE: ClassVar[int] = ord("N")
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class ParseComplete(BackendMessage):
    """Parse succeeded."""

    TYPE: ClassVar[int] = ord("1")


@dataclass(frozen=True, slots=True)
class BindComplete(BackendMessage):
    """Bind succeeded."""

    TYPE: ClassVar[int] = ord("2")


@dataclass(frozen=True, slots=True)
class CloseComplete(BackendMessage):
    """Close succeeded (also when the object did not exist)."""

    TYPE: ClassVar[int] = ord("3")


@dataclass(frozen=True, slots=True)
class NoData(BackendMessage):
    """Describe: the statement or portal returns no rows."""

    TYPE: ClassVar[int] = ord("n")


@dataclass(frozen=True, slots=True)
class ParameterDescription(BackendMessage):
    """Describe of a statement: the parameter type OIDs."""

    TYPE: ClassVar[int] = ord("t")
    type_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PortalSuspended(BackendMessage):
    """Execute stopped at its row limit; the portal can be executed again."""

    TYPE: ClassVar[int] = ord("s")


@dataclass(frozen=True, slots=True)
class CopyInResponse(BackendMessage):
    """The server enters COPY FROM STDIN; ``format`` 0 text / 1 binary, and per-column formats."""

    TYPE: ClassVar[int] = ord("G")
    format: int = 0
    column_formats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CopyOutResponse(BackendMessage):
    """The server enters COPY TO STDOUT."""

    TYPE: ClassVar[int] = ord("H")
    format: int = 0
    column_formats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CopyBothResponse(BackendMessage):
    """The server enters copy-both mode (streaming replication)."""

    TYPE: ClassVar[int] = ord("W")
    format: int = 0
    column_formats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class NotificationResponse(BackendMessage):
    """A NOTIFY on a channel this session LISTENs to."""

    TYPE: ClassVar[int] = ord("A")
    process_id: int
    channel: str
    payload: str


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(BackendMessage):
    """The result of a FunctionCall (``None`` for NULL)."""

    TYPE: ClassVar[int] = ord("V")
    value: bytes | None


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(BackendMessage):
    """The server supports an older minor version than asked, or not all ``_pq_.`` options asked for.

    ``newest_minor`` is the newest minor version of the requested major the server speaks; ``unrecognized``
    lists the protocol options (``_pq_.*`` startup parameters) it ignored.
    """

    TYPE: ClassVar[int] = ord("v")
    newest_minor: int
    unrecognized: tuple[str, ...] = ()
