"""FrameReader: the same frames however the stream is cut, the startup phase, every violation path, fuzz."""

from __future__ import annotations

import contextlib
import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borealis import pgwire as pw

CLIENT_MESSAGES: list[pw.Message] = [
    pw.StartupMessage({"user": "alice", "database": "app"}),
    pw.PasswordMessage("secret"),
    pw.Query("SELECT 1"),
    pw.Parse("s", "SELECT $1", (23,)),
    pw.Bind("", "s", (), (b"1",), ()),
    pw.Describe("P", ""),
    pw.Execute(),
    pw.Sync(),
    pw.CopyData(b"x" * 300),
    pw.Terminate(),
]
CLIENT_STREAM = b"".join(pw.encode(m) for m in CLIENT_MESSAGES)
SERVER_MESSAGES: list[pw.Message] = [
    pw.AuthenticationOk(),
    pw.ParameterStatus("TimeZone", "UTC"),
    pw.BackendKeyData(1, b"abcd"),
    pw.ReadyForQuery("I"),
    pw.RowDescription((pw.FieldDescription("a"),)),
    *[pw.DataRow((b"%d" % i, None)) for i in range(20)],
    pw.CommandComplete("SELECT 20"),
    pw.ReadyForQuery("I"),
]
SERVER_STREAM = b"".join(pw.encode(m) for m in SERVER_MESSAGES)


def frames_of(reader: pw.FrameReader, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        reader.feed(chunk)
        out.extend((t, bytes(f)) for t, f in reader.read_frames())
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def expected(messages: list[pw.Message]) -> list[tuple[int, bytes]]:
    return [(m.TYPE, pw.encode(m)) for m in messages]


def test_one_chunk() -> None:
    assert frames_of(pw.FrameReader.for_client(), [CLIENT_STREAM]) == expected(CLIENT_MESSAGES)
    assert frames_of(pw.FrameReader.for_server(), [SERVER_STREAM]) == expected(SERVER_MESSAGES)


def test_every_single_cut() -> None:
    for i in range(len(CLIENT_STREAM) + 1):
        got = frames_of(pw.FrameReader.for_client(), [CLIENT_STREAM[:i], CLIENT_STREAM[i:]])
        assert got == expected(CLIENT_MESSAGES), i


def test_byte_at_a_time() -> None:
    chunks = [SERVER_STREAM[i : i + 1] for i in range(len(SERVER_STREAM))]
    assert frames_of(pw.FrameReader.for_server(), chunks) == expected(SERVER_MESSAGES)
    chunks = [CLIENT_STREAM[i : i + 1] for i in range(len(CLIENT_STREAM))]
    assert frames_of(pw.FrameReader.for_client(), chunks) == expected(CLIENT_MESSAGES)


@settings(deadline=None)
@given(cuts=st.lists(st.integers(0, len(CLIENT_STREAM)), max_size=30))
def test_any_cuts_client(cuts: list[int]) -> None:
    got = frames_of(pw.FrameReader.for_client(), split(CLIENT_STREAM, cuts))
    assert got == expected(CLIENT_MESSAGES)


@settings(deadline=None)
@given(cuts=st.lists(st.integers(0, len(SERVER_STREAM)), max_size=30))
def test_any_cuts_server(cuts: list[int]) -> None:
    got = frames_of(pw.FrameReader.for_server(), split(SERVER_STREAM, cuts))
    assert got == expected(SERVER_MESSAGES)


def test_next_frame_and_iteration() -> None:
    reader = pw.FrameReader.for_server()
    reader.feed(SERVER_STREAM)
    first = reader.next_frame()
    assert first is not None and first[0] == ord("R")
    rest = [(t, bytes(f)) for t, f in reader]
    assert [(first[0], bytes(first[1])), *rest] == expected(SERVER_MESSAGES)
    assert reader.next_frame() is None
    assert reader.buffered == 0


def test_feed_twice_without_reading() -> None:
    reader = pw.FrameReader.for_server()
    half = len(SERVER_STREAM) // 2
    reader.feed(SERVER_STREAM[:half])
    assert reader.next_frame() is not None  # leaves unread frames and maybe a partial one
    reader.feed(SERVER_STREAM[half:])
    got = [(t, bytes(f)) for t, f in reader.read_frames()]
    assert got == expected(SERVER_MESSAGES)[1:]


def test_large_frame_across_many_chunks() -> None:
    big = pw.encode(pw.CopyData(b"z" * 1_000_000)) + pw.encode(pw.CopyDone())
    reader = pw.FrameReader.for_server()
    got = frames_of(reader, [big[i : i + 4096] for i in range(0, len(big), 4096)])
    assert [t for t, _ in got] == [ord("d"), ord("c")]
    assert got[0][1] == big[:-5]


def test_frames_are_views_that_stay_valid() -> None:
    reader = pw.FrameReader.for_server()
    reader.feed(pw.encode(pw.ReadyForQuery("I")) + b"Z\x00")
    [(_t, view)] = reader.read_frames()
    reader.feed(b"\x00\x00\x05T")
    [(_t2, view2)] = reader.read_frames()
    assert isinstance(view, memoryview)
    assert bytes(view) == b"Z\x00\x00\x00\x05I" and bytes(view2) == b"Z\x00\x00\x00\x05T"


# -- the startup phase ---------------------------------------------------------------------------------


def test_ssl_request_pauses_until_answered() -> None:
    reader = pw.FrameReader.for_client()
    startup = pw.encode(pw.StartupMessage({"user": "u"}))
    reader.feed(pw.encode(pw.SSLRequest()) + startup)
    [(t, frame)] = reader.read_frames()
    assert t == pw.STARTUP and pw.decode_startup(frame) == pw.SSLRequest()
    assert reader.state == pw.ReaderState.NEGOTIATING
    assert reader.read_frames() == []  # paused: the answer is not sent yet
    reader.negotiation_done(encrypted=False)  # we said 'N'; the client goes on in plaintext
    [(t, frame)] = reader.read_frames()
    assert pw.decode_startup(frame) == pw.StartupMessage({"user": "u"})
    assert reader.state == pw.ReaderState.MESSAGES


def test_ssl_accepted_then_startup_over_tls() -> None:
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.SSLRequest()))
    assert len(reader.read_frames()) == 1
    reader.negotiation_done(encrypted=True)
    reader.feed(pw.encode(pw.StartupMessage({"user": "u"})) + pw.encode(pw.Query("SELECT 1")))
    assert [t for t, _ in reader.read_frames()] == [pw.STARTUP, ord("Q")]


def test_plaintext_after_ssl_request_is_rejected() -> None:
    # CVE-2021-23214: bytes sent before the TLS handshake could be injected by a man in the middle.
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.SSLRequest()) + pw.encode(pw.Query("SELECT 1")))
    reader.read_frames()
    with pytest.raises(pw.ProtocolViolation) as info:
        reader.negotiation_done(encrypted=True)
    assert info.value.sqlstate == "08P01"
    with pytest.raises(RuntimeError):
        pw.FrameReader.for_client().negotiation_done(encrypted=False)


def test_gssenc_then_startup() -> None:
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.GSSENCRequest()))
    assert pw.decode_startup(reader.read_frames()[0][1]) == pw.GSSENCRequest()
    reader.negotiation_done(encrypted=False)
    reader.feed(pw.encode(pw.StartupMessage({"user": "u"})))
    assert len(reader.read_frames()) == 1


def test_cancel_request_ends_the_stream() -> None:
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.CancelRequest(7, b"kkkk")) + b"trailing")
    [(_t, frame)] = reader.read_frames()
    assert pw.decode_startup(frame) == pw.CancelRequest(7, b"kkkk")
    assert reader.state == pw.ReaderState.CANCELLED
    assert reader.read_frames() == []


@pytest.mark.parametrize(("data", "ok"), [(b"S", True), (b"G", True), (b"N", False)], ids=["ssl", "gss", "refused"])
def test_negotiation_response(data: bytes, ok: bool) -> None:
    assert pw.parse_negotiation_response(data) is ok


@pytest.mark.parametrize("data", [b"", b"SX", b"E\x00\x00", b"x"])
def test_bad_negotiation_response(data: bytes) -> None:
    # "SX": bytes after 'S' before the handshake could be injected (CVE-2021-23222).
    with pytest.raises(pw.ProtocolViolation):
        pw.parse_negotiation_response(data)


# -- violations ----------------------------------------------------------------------------------------


def _typed(t: bytes, length: int, body: bytes = b"") -> bytes:
    return t + struct.pack("!i", length) + body


STARTUP_BYTES = pw.encode(pw.StartupMessage({"user": "u"}))

CLIENT_VIOLATIONS = [
    ("length < 4", STARTUP_BYTES + _typed(b"Q", 3), "08P01"),
    ("negative length", STARTUP_BYTES + _typed(b"Q", -5), "08P01"),
    ("unknown type", STARTUP_BYTES + _typed(b"Z", 5, b"I"), "08P01"),
    ("NUL type", STARTUP_BYTES + _typed(b"\0", 4), "08P01"),
    ("oversize query", STARTUP_BYTES + _typed(b"Q", (1 << 30) + 100), "54000"),
    ("oversize password", STARTUP_BYTES + _typed(b"p", 70000), "54000"),
    ("oversize sync", STARTUP_BYTES + _typed(b"S", 20000), "08P01"),
    ("startup too long", struct.pack("!ii", 10001, 3 << 16), "08P01"),
    ("startup too short", struct.pack("!i", 7) + b"\0\0\0\0", "08P01"),
    ("protocol 2.0", struct.pack("!ii", 8, 2 << 16), "0A000"),
    ("protocol 4.0", struct.pack("!ii", 8, 4 << 16), "0A000"),
    ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "08P01"),
    ("direct tls", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "08P01"),
    ("typed message first", pw.encode(pw.Query("SELECT 1")), "08P01"),
    ("ssl request with body", struct.pack("!ii", 12, (1234 << 16) | 5679) + b"\0\0\0\0", "08P01"),
]


@pytest.mark.parametrize(
    ("data", "sqlstate"), [c[1:] for c in CLIENT_VIOLATIONS], ids=[c[0] for c in CLIENT_VIOLATIONS]
)
def test_client_violations(data: bytes, sqlstate: str) -> None:
    reader = pw.FrameReader.for_client()
    reader.feed(data)
    with pytest.raises(pw.ProtocolViolation) as info:
        for _ in range(3):  # the good startup packet comes out first, then the violation
            reader.read_frames()
    assert info.value.sqlstate == sqlstate
    # The stream is out of sync: the reader refuses to go on.
    assert reader.state == pw.ReaderState.FAILED
    with pytest.raises(pw.ProtocolViolation):
        reader.feed(b"more")
    with pytest.raises(pw.ProtocolViolation):
        reader.next_frame()


def test_good_frames_before_a_bad_one_are_returned_first() -> None:
    reader = pw.FrameReader.for_server()
    reader.feed(pw.encode(pw.ReadyForQuery("I")) + b"?\x00\x00\x00\x04")
    assert [t for t, _ in reader.read_frames()] == [ord("Z")]
    with pytest.raises(pw.ProtocolViolation):
        reader.read_frames()


def test_oversize_rejected_from_the_header_alone() -> None:
    # No body byte has arrived: the limit is enforced before buffering anything.
    reader = pw.FrameReader.for_client(max_message_size=1000)
    reader.feed(STARTUP_BYTES + _typed(b"Q", 1001)[:5])
    assert len(reader.read_frames()) == 1
    with pytest.raises(pw.ProtocolViolation) as info:
        reader.read_frames()
    assert info.value.sqlstate == "54000"


def test_configured_limit_allows_up_to_it() -> None:
    reader = pw.FrameReader.for_server(max_message_size=100)
    ok = pw.encode(pw.CopyData(b"x" * 96))  # length word 100: the limit counts the length word itself
    reader.feed(ok)
    assert len(reader.read_frames()) == 1
    reader.feed(pw.encode(pw.CopyData(b"x" * 97)))
    with pytest.raises(pw.ProtocolViolation):
        reader.read_frames()
    with pytest.raises(ValueError):
        pw.FrameReader.for_server(max_message_size=3)


def test_backend_unknown_type() -> None:
    reader = pw.FrameReader.for_server()
    reader.feed(_typed(b"Q", 4))
    with pytest.raises(pw.ProtocolViolation) as info:
        reader.next_frame()
    assert info.value.sqlstate == "08P01"
    assert "backend" in info.value.message


def test_buffered_tracks_partial_data() -> None:
    reader = pw.FrameReader.for_server()
    reader.feed(SERVER_STREAM[:7])
    reader.read_frames()
    assert reader.buffered > 0


# -- fuzz ----------------------------------------------------------------------------------------------


def _drain(reader: pw.FrameReader, chunks: list[bytes], frontend: bool) -> None:
    session = pw.Session() if frontend else pw.Session(pw.Phase.READY)
    for chunk in chunks:
        reader.feed(chunk)
        for t, frame in reader.read_frames():
            # Decoding and state tracking must be just as strict as framing.
            if t == pw.STARTUP:
                pw.decode_startup(frame)
            elif frontend:
                pw.decode_frontend_frame(frame)
            else:
                pw.decode_backend_frame(frame)
            if frontend:
                session.frontend(t, frame)
            else:
                session.backend(t, frame)
        if reader.state == pw.ReaderState.NEGOTIATING:
            reader.negotiation_done(encrypted=False)
            session.negotiation_done()


_FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(chunks=st.lists(st.binary(max_size=64), max_size=8), frontend=st.booleans())
def test_fuzz_arbitrary_bytes(chunks: list[bytes], frontend: bool) -> None:
    reader = pw.FrameReader.for_client() if frontend else pw.FrameReader.for_server()
    with contextlib.suppress(pw.ProtocolViolation):
        _drain(reader, chunks, frontend)


@_FUZZ
@given(
    data=st.data(),
    frontend=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_fuzz_mutated_streams(data: st.DataObject, frontend: bool, flips: list[tuple[int, int]]) -> None:
    stream = bytearray(CLIENT_STREAM if frontend else SERVER_STREAM)
    for index, value in flips:
        stream[index % len(stream)] = value
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    reader = pw.FrameReader.for_client() if frontend else pw.FrameReader.for_server()
    with contextlib.suppress(pw.ProtocolViolation):
        _drain(reader, split(bytes(stream), cuts), frontend)


@_FUZZ
@given(body=st.binary(max_size=80), t=st.integers(0, 255))
def test_fuzz_decoders(body: bytes, t: int) -> None:
    for decode in (pw.decode_frontend, pw.decode_backend):
        with contextlib.suppress(pw.ProtocolViolation):
            decode(t, body)
    with contextlib.suppress(pw.ProtocolViolation):
        pw.decode_startup(struct.pack("!i", len(body) + 4) + body)


def test_a_bad_header_behind_good_frames_is_reported_after_them() -> None:
    """The good frames come first; check() then raises the violation at once, and every later call does."""
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.StartupMessage({"user": "alice"})) + pw.encode(pw.Query("SELECT 1")) + b"Q\0\0\0\x02")
    frames = reader.read_frames()
    assert [t for t, _ in frames] == [pw.STARTUP, ord("Q")]
    with pytest.raises(pw.ProtocolViolation, match="invalid message length 2") as first:
        reader.check()
    assert reader.state is pw.ReaderState.FAILED
    with pytest.raises(pw.ProtocolViolation) as again:
        reader.read_frames()
    assert again.value is first.value
    clean = pw.FrameReader.for_client()
    clean.feed(pw.encode(pw.StartupMessage({"user": "alice"})))
    clean.read_frames()
    clean.check()  # nothing behind the frames: no error


@pytest.mark.parametrize("kind", [b"S", b"H"])
def test_sync_and_flush_must_be_empty(kind: bytes) -> None:
    # postgres answers a Flush with a body with an error and a ReadyForQuery: a proxy forwarding it would
    # count one ReadyForQuery too few, and hand the connection to the next client with one still to come.
    reader = pw.FrameReader.for_client()
    reader.feed(pw.encode(pw.StartupMessage({"user": "u"})) + kind + b"\0\0\0\x0bpayload")
    with pytest.raises(pw.ProtocolViolation, match="invalid message length 11") as exc:
        assert [t for t, _ in reader.read_frames()] == [0]  # the startup packet before it
        reader.check()
    assert exc.value.sqlstate == "08P01"
    ok = pw.FrameReader.for_client()
    ok.feed(pw.encode(pw.StartupMessage({"user": "u"})) + kind + b"\0\0\0\x04")
    assert [t for t, _ in ok.read_frames()] == [0, kind[0]]
    server = pw.FrameReader.for_server()  # the backend's 'S' (ParameterStatus) and 'H' (CopyOutResponse) have bodies
    server.feed(kind + b"\0\0\0\x0bpayload")
    assert [t for t, _ in server.read_frames()] == [kind[0]]
