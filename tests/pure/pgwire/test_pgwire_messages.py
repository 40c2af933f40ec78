"""Messages: exact bytes for known messages, encode/decode round trips for every class, decode errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borealis import pgwire as pw

FRONTEND: list[pw.FrontendMessage] = [
    pw.Query("SELECT 1"),
    pw.Query(""),
    pw.Parse("s1", "SELECT $1::int, $2", (23, 0)),
    pw.Parse("", "SELECT 1"),
    pw.Bind("p1", "s1", (1, 0), (b"\x00\x00\x00\x01", None), (1,)),
    pw.Bind("", "", (), (), ()),
    pw.Describe("S", "s1"),
    pw.Describe("P", ""),
    pw.Execute("p1", 100),
    pw.Execute(),
    pw.Sync(),
    pw.Flush(),
    pw.Close("S", "s1"),
    pw.Close("P", "p1"),
    pw.Terminate(),
    pw.CopyData(b"1\tone\n"),
    pw.CopyDone(),
    pw.CopyFail("client gave up"),
    pw.FunctionCall(1598, (0,), (b"x", None), 1),
]
AUTH_RESPONSES: list[pw.FrontendMessage] = [
    pw.PasswordMessage("md5abcdef"),
    pw.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"),
    pw.SASLInitialResponse("SCRAM-SHA-256", None),
    pw.SASLResponse(b"c=biws,r=abc,p=xyz"),
]
STARTUP: list[pw.FrontendMessage] = [
    pw.StartupMessage({"user": "alice", "database": "app", "application_name": "t"}),
    pw.StartupMessage({"user": "bob"}, protocol_version=(3 << 16) | 2),
    pw.SSLRequest(),
    pw.GSSENCRequest(),
    pw.CancelRequest(4242, b"\x01\x02\x03\x04"),
    pw.CancelRequest(4242, bytes(range(32))),  # protocol 3.2 keys are longer
]
BACKEND: list[pw.BackendMessage] = [
    pw.AuthenticationOk(),
    pw.AuthenticationCleartextPassword(),
    pw.AuthenticationMD5Password(b"salt"),
    pw.AuthenticationSASL(("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")),
    pw.AuthenticationSASLContinue(b"r=abc,s=c2FsdA==,i=4096"),
    pw.AuthenticationSASLFinal(b"v=abc"),
    pw.ParameterStatus("TimeZone", "UTC"),
    pw.BackendKeyData(77, b"\xde\xad\xbe\xef"),
    pw.ReadyForQuery("I"),
    pw.ReadyForQuery("T"),
    pw.ReadyForQuery("E"),
    pw.RowDescription(
        (pw.FieldDescription("a", 16384, 1, 23, 4, -1, 0), pw.FieldDescription("b", 0, 0, 25, -1, -1, 1))
    ),
    pw.RowDescription(()),
    pw.DataRow((b"1", None, b"")),
    pw.DataRow(()),
    pw.CommandComplete("SELECT 1"),
    pw.EmptyQueryResponse(),
    pw.ErrorResponse({"S": "ERROR", "V": "ERROR", "C": "42601", "M": "syntax error", "P": "8"}),
    pw.NoticeResponse({"S": "NOTICE", "C": "00000", "M": "hello"}),
    pw.ParseComplete(),
    pw.BindComplete(),
    pw.CloseComplete(),
    pw.NoData(),
    pw.ParameterDescription((23, 25, 4294967295)),
    pw.PortalSuspended(),
    pw.CopyInResponse(0, (0, 0)),
    pw.CopyOutResponse(1, (1,)),
    pw.CopyBothResponse(0, ()),
    pw.NotificationResponse(77, "chan", "payload"),
    pw.FunctionCallResponse(b"\x00"),
    pw.FunctionCallResponse(None),
    pw.NegotiateProtocolVersion(0, ("_pq_.foo",)),
    pw.CopyData(b"row\n"),
    pw.CopyDone(),
]

# Exact bytes, checked by hand against the protocol documentation.
KNOWN: list[tuple[pw.Message, bytes]] = [
    (pw.Query("SELECT 1"), b"Q\x00\x00\x00\x0dSELECT 1\x00"),
    (pw.Sync(), b"S\x00\x00\x00\x04"),
    (pw.Terminate(), b"X\x00\x00\x00\x04"),
    (pw.Execute("", 0), b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"),
    (pw.ReadyForQuery("I"), b"Z\x00\x00\x00\x05I"),
    (pw.AuthenticationOk(), b"R\x00\x00\x00\x08\x00\x00\x00\x00"),
    (pw.AuthenticationMD5Password(b"abcd"), b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd"),
    (pw.SSLRequest(), b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
    (pw.GSSENCRequest(), b"\x00\x00\x00\x08\x04\xd2\x16\x30"),
    (pw.CancelRequest(1, b"\x00\x00\x00\x02"), b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02"),
    (pw.StartupMessage({"user": "pg"}), b"\x00\x00\x00\x11\x00\x03\x00\x00user\x00pg\x00\x00"),
    (pw.DataRow((b"1", None)), b"D\x00\x00\x00\x0f\x00\x02\x00\x00\x00\x011\xff\xff\xff\xff"),
    (pw.CommandComplete("SELECT 1"), b"C\x00\x00\x00\x0dSELECT 1\x00"),
    (pw.ParameterStatus("a", "b"), b"S\x00\x00\x00\x08a\x00b\x00"),
    (pw.BackendKeyData(1, b"\x00\x00\x00\x02"), b"K\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x02"),
    (pw.ParseComplete(), b"1\x00\x00\x00\x04"),
    (pw.NoData(), b"n\x00\x00\x00\x04"),
]


def _decode(msg: pw.Message, data: bytes) -> pw.Message:
    if msg.TYPE == pw.STARTUP:
        return pw.decode_startup(data)
    if isinstance(msg, pw.BackendMessage) and not isinstance(msg, pw.FrontendMessage):
        return pw.decode_backend_frame(data)
    auth = type(msg) if ord("p") == msg.TYPE else pw.PasswordMessage
    return pw.decode_frontend_frame(data, auth=auth)  # type: ignore[arg-type]


@pytest.mark.parametrize(("msg", "data"), KNOWN, ids=lambda x: type(x).__name__ if isinstance(x, pw.Message) else "")
def test_known_bytes(msg: pw.Message, data: bytes) -> None:
    assert pw.encode(msg) == data
    assert _decode(msg, data) == msg


ALL: list[pw.Message] = [*FRONTEND, *AUTH_RESPONSES, *STARTUP, *BACKEND]


@pytest.mark.parametrize("msg", ALL, ids=repr)
def test_round_trip(msg: pw.Message) -> None:
    data = pw.encode(msg)
    assert _decode(msg, data) == msg
    if msg.TYPE != pw.STARTUP:
        assert data[0] == msg.TYPE
        assert int.from_bytes(data[1:5], "big") == len(data) - 1


def test_every_message_class_is_covered() -> None:
    covered = {type(m) for m in ALL}
    classes = {obj for name in pw.__all__ if isinstance(obj := getattr(pw, name), type) and issubclass(obj, pw.Message)}
    abstract = {pw.Message, pw.FrontendMessage, pw.BackendMessage, pw.Authentication}
    assert classes - abstract - covered == set()


def test_messages_are_frozen_and_slotted() -> None:
    q = pw.Query("x")
    with pytest.raises(AttributeError):
        q.sql = "y"  # type: ignore[misc]
    assert not hasattr(q, "__dict__")


_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))
_value = st.none() | st.binary(max_size=64)


@settings(deadline=None)
@given(sql=_text)
def test_query_text_round_trips(sql: str) -> None:
    assert pw.decode_frontend_frame(pw.encode(pw.Query(sql))) == pw.Query(sql)


@settings(deadline=None)
@given(values=st.lists(_value, max_size=20).map(tuple))
def test_data_row_round_trips(values: tuple[bytes | None, ...]) -> None:
    assert pw.decode_backend_frame(pw.encode(pw.DataRow(values))) == pw.DataRow(values)


@settings(deadline=None)
@given(
    portal=_text,
    stmt=_text,
    formats=st.lists(st.integers(0, 1), max_size=5).map(tuple),
    params=st.lists(_value, max_size=5).map(tuple),
)
def test_bind_round_trips(portal: str, stmt: str, formats: tuple[int, ...], params: tuple[bytes | None, ...]) -> None:
    msg = pw.Bind(portal, stmt, formats, params, formats)
    assert pw.decode_frontend_frame(pw.encode(msg)) == msg


def test_non_utf8_text_survives_byte_exact() -> None:
    # A LATIN1 client: the bytes are not UTF-8, and forwarding a decoded-then-encoded message must not
    # change them.
    data = b"Q\x00\x00\x00\x0fSELECT '\xe9'\x00"
    msg = pw.decode_frontend_frame(data)
    assert pw.encode(msg) == data


def test_error_response_builder() -> None:
    data = pw.error_response("FATAL", "53300", "too many clients", hint="wait", detail="pool full")
    msg = pw.decode_backend_frame(data)
    assert isinstance(msg, pw.ErrorResponse)
    assert (msg.severity, msg.sqlstate, msg.message) == ("FATAL", "53300", "too many clients")
    assert msg.fields["H"] == "wait" and msg.fields["D"] == "pool full"
    notice = pw.decode_backend_frame(pw.notice_response("WARNING", "01000", "careful"))
    assert isinstance(notice, pw.NoticeResponse) and notice.severity == "WARNING"
    with pytest.raises(TypeError):
        pw.error_response("ERROR", "XX000", "x", colour="red")


def test_small_builders() -> None:
    assert pw.ready_for_query("T") == pw.encode(pw.ReadyForQuery("T"))
    assert pw.command_complete("SET") == pw.encode(pw.CommandComplete("SET"))
    with pytest.raises(ValueError):
        pw.ready_for_query("X")


def test_violation_error_response() -> None:
    exc = pw.ProtocolViolation("bad", "08P01")
    msg = pw.decode_backend_frame(exc.error_response())
    assert isinstance(msg, pw.ErrorResponse)
    assert (msg.severity, msg.sqlstate, msg.message) == ("FATAL", "08P01", "bad")
    assert "08P01" in repr(exc)


@pytest.mark.parametrize(
    "msg",
    [pw.Query("a\0b"), pw.ReadyForQuery("X"), pw.Describe("Z", "x"), pw.AuthenticationMD5Password(b"123")],
    ids=repr,
)
def test_encode_rejects_unencodable(msg: pw.Message) -> None:
    with pytest.raises(ValueError):
        pw.encode(msg)


# Decode violations: (decoder, type, body, sqlstate).
BAD_BODIES = [
    ("F", ord("Q"), b"SELECT 1", "08P01"),  # missing NUL
    ("F", ord("Q"), b"SELECT 1\0extra", "08P01"),  # trailing bytes
    ("F", ord("P"), b"s\0q\0\x00\x02\x00\x00\x00\x17", "08P01"),  # 2 param types announced, 1 sent
    ("F", ord("B"), b"\0\0\x00\x00\x00\x01\x00\x00\x00\x09ab", "08P01"),  # value shorter than its length
    ("F", ord("B"), b"\0\0\x00\x00\x00\x01\xff\xff\xff\xfe", "08P01"),  # length -2
    ("F", ord("D"), b"Xname\0", "08P01"),  # neither S nor P
    ("F", ord("E"), b"\0\x00\x00", "08P01"),  # truncated Int32
    ("F", ord("S"), b"x", "08P01"),  # Sync has no body
    ("F", ord("Z"), b"", "08P01"),  # not a frontend type
    ("F", ord("p"), b"secret", "08P01"),
    ("B", ord("Z"), b"X", "08P01"),
    ("B", ord("Z"), b"", "08P01"),
    ("B", ord("R"), b"\x00\x00\x00\x07", "0A000"),  # GSS continue: not supported
    ("B", ord("R"), b"\x00\x00\x00\x05ab", "08P01"),  # short salt
    ("B", ord("K"), b"\x00\x00\x00\x01\x00", "08P01"),  # 1-byte key
    ("B", ord("T"), b"\x00\x01a\0", "08P01"),
    ("B", ord("D"), b"\xff\xff", "08P01"),  # negative count
    ("B", ord("E"), b"Sbad", "08P01"),
    ("B", ord("v"), b"\x00\x00\x00\x00\xff\xff\xff\xff", "08P01"),
    ("B", ord("q"), b"", "08P01"),
]


@pytest.mark.parametrize(("side", "t", "body", "sqlstate"), BAD_BODIES)
def test_decode_violations(side: str, t: int, body: bytes, sqlstate: str) -> None:
    with pytest.raises(pw.ProtocolViolation) as info:
        if side == "F":
            pw.decode_frontend(t, body)
        else:
            pw.decode_backend(t, body)
    assert info.value.sqlstate == sqlstate


def test_decode_frame_checks_length_word() -> None:
    with pytest.raises(pw.ProtocolViolation):
        pw.decode_frontend_frame(b"Q\x00\x00\x00\x09x\0")


BAD_STARTUP = [
    (b"\x00\x00\x00\x04", "08P01"),
    (b"\x00\x00\x00\x09\x00\x03\x00\x00", "08P01"),  # length says 9, 8 given
    (b"\x00\x00\x00\x10\x00\x02\x00\x00user\0pg\0", "0A000"),  # protocol 2.0
    (b"\x00\x00\x00\x10\x00\x04\x00\x00user\0pg\0", "0A000"),  # protocol 4.0
    (b"\x00\x00\x00\x10\x00\x03\x00\x00user\0pg\0", "08P01"),  # no final NUL
    (b"\x00\x00\x00\x0d\x00\x03\x00\x00user\0", "08P01"),  # name without value
    (b"\x00\x00\x00\x0d\x00\x03\x00\x00a\0b\0\0", "28000"),  # no user
    (b"\x00\x00\x00\x0c\x04\xd2\x16\x2e\x00\x00\x00\x01", "08P01"),  # cancel without key
    (b"\x00\x00\x00\x09\x04\xd2\x16\x2f\x00", "08P01"),  # SSLRequest with a body
]


@pytest.mark.parametrize(("packet", "sqlstate"), BAD_STARTUP)
def test_startup_violations(packet: bytes, sqlstate: str) -> None:
    with pytest.raises(pw.ProtocolViolation) as info:
        pw.decode_startup(packet)
    assert info.value.sqlstate == sqlstate


def test_negotiate_protocol() -> None:
    assert pw.negotiate_protocol(pw.StartupMessage({"user": "u"})) is None
    # libpq 18 with max_protocol_version=latest asks for 3.2: we offer 3.0.
    answer = pw.negotiate_protocol(pw.StartupMessage({"user": "u"}, protocol_version=(3 << 16) | 2))
    assert answer == pw.NegotiateProtocolVersion(0, ())
    answer = pw.negotiate_protocol(pw.StartupMessage({"user": "u", "_pq_.x": "1"}))
    assert answer == pw.NegotiateProtocolVersion(0, ("_pq_.x",))


def test_startup_message_helpers() -> None:
    assert pw.StartupMessage({"user": "u"}).database == "u"
    assert pw.StartupMessage({"user": "u", "database": "d"}).database == "d"
