"""The endpoint listener on loopback sockets, with small fake postgres servers behind it (no PostgreSQL).

Nothing reaches a server before a client has sent a valid startup packet; silent clients are dropped after
the login timeout; SSLRequest and GSSENCRequest are answered 'N' without TLS, SSLRequest 'S' with it (and a
direct ClientHello with ALPN "postgresql" starts TLS too); rds.force_ssl refuses plaintext; a CancelRequest
goes to the server that issued its key, not to wherever the endpoint resolves now.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from borealis import pgwire
from borealis.control import EndpointUnavailable, Listener
from borealis.control._listener import IamLogin, _Tls
from borealis.proxy._tls import CertificateAuthority

SSL_REQUEST = struct.pack("!ii", 8, pgwire.SSL_REQUEST_CODE)
GSSENC_REQUEST = struct.pack("!ii", 8, pgwire.GSSENC_REQUEST_CODE)


def _startup(user: str = "alice") -> bytes:
    return pgwire.encode(pgwire.StartupMessage({"user": user, "database": "db"}))


def _cancel(pid: int, secret: bytes) -> bytes:
    return struct.pack("!iii", 16, pgwire.CANCEL_REQUEST_CODE, pid) + secret


class FakePostgres:
    """Accepts connections, records what each sends; answers a startup packet with a login and its key."""

    def __init__(self, pid: int, secret: bytes) -> None:
        self.pid = pid
        self.secret = secret
        self.received: list[bytes] = []
        self.accepted = 0
        self.cancels: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        header = await reader.readexactly(8)
        length, code = struct.unpack("!ii", header)
        body = await reader.readexactly(length - 8)
        if code == pgwire.CANCEL_REQUEST_CODE:
            self.cancels.append(header + body)
            writer.close()
            return
        self.received.append(header + body)
        writer.write(
            pgwire.encode(pgwire.AuthenticationOk())
            + pgwire.encode(pgwire.BackendKeyData(self.pid, self.secret))
            + pgwire.ready_for_query("I")
        )
        while data := await reader.read(65536):
            self.received.append(data)
            writer.write(data)  # echo: the relay carries bytes both ways
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def _read_login(reader: asyncio.StreamReader) -> None:
    frames = FrameCollector()
    while not frames.ready:
        frames.feed(await asyncio.wait_for(reader.read(65536), 30))


class FrameCollector:
    """The backend frames a test client has read."""

    def __init__(self) -> None:
        self.reader = pgwire.FrameReader.for_server()
        self.types: list[int] = []

    def feed(self, data: bytes) -> None:
        assert data, "connection closed"
        self.reader.feed(data)
        self.types += [t for t, _ in self.reader.read_frames()]

    @property
    def ready(self) -> bool:
        return ord("Z") in self.types


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 120))  # type: ignore[arg-type]


def test_no_server_connection_before_a_startup_packet() -> None:
    async def main() -> None:
        pg = FakePostgres(7, b"abcd")
        await pg.start()
        calls = 0

        async def resolve() -> tuple[str, int]:
            nonlocal calls
            calls += 1
            return "127.0.0.1", pg.port

        listener = Listener("w", "127.0.0.1", 0, resolve)
        await listener.start()
        assert listener._server is not None
        port = listener._server.sockets[0].getsockname()[1]
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        await _until(lambda: listener.client_connections == 50, "50 clients accepted")
        # A real login after them: the idle ones were accepted first, and still cost the server nothing.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_startup() + pgwire.encode(pgwire.Query("select 1")))
        await _read_login(reader)
        await _until(lambda: len(pg.received) == 2, "the query relayed")
        assert pg.received[1] == pgwire.encode(pgwire.Query("select 1"))
        assert (calls, pg.accepted) == (1, 1)
        for _, w in idle:
            w.close()
        writer.close()
        await listener.close()
        await pg.close()

    _run(main)


def test_silent_clients_are_disconnected_after_the_login_timeout() -> None:
    async def main() -> None:
        async def resolve() -> tuple[str, int]:
            raise AssertionError("a silent client must not be resolved")

        listener = Listener("w", "127.0.0.1", 0, resolve, login_timeout=0.2)
        await listener.start()
        assert listener._server is not None
        port = listener._server.sockets[0].getsockname()[1]
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        partial_r, partial_w = await asyncio.open_connection("127.0.0.1", port)
        partial_w.write(_startup()[:6])  # half a startup packet, then nothing
        assert await asyncio.wait_for(silent_r.read(), 60) == b""
        assert await asyncio.wait_for(partial_r.read(), 60) == b""
        await _until(lambda: listener.client_connections == 0, "clients gone")
        silent_w.close()
        partial_w.close()
        await listener.close()

    _run(main)


@pytest.mark.parametrize("request_packet", [SSL_REQUEST, GSSENC_REQUEST], ids=["ssl", "gssenc"])
def test_encryption_requests_are_declined_then_the_login_is_relayed(request_packet: bytes) -> None:
    async def main() -> None:
        pg = FakePostgres(7, b"abcd")
        await pg.start()

        async def resolve() -> tuple[str, int]:
            return "127.0.0.1", pg.port

        listener = Listener("w", "127.0.0.1", 0, resolve)
        await listener.start()
        assert listener._server is not None
        port = listener._server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_packet)
        assert await asyncio.wait_for(reader.readexactly(1), 30) == b"N"
        writer.write(_startup())
        await _read_login(reader)
        assert pg.received == [_startup()]
        # A second request of the same kind breaks the protocol: postgres refuses it too.
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(request_packet + request_packet)
        answer = await asyncio.wait_for(r2.read(), 30)
        assert answer[:1] == b"N" and answer[1:2] == b"E" and b"08P01" in answer
        writer.close()
        w2.close()
        await listener.close()
        await pg.close()

    _run(main)


def test_cancel_request_reaches_the_server_that_issued_the_key() -> None:
    async def main() -> None:
        a, b = FakePostgres(101, b"AAAA"), FakePostgres(202, b"BBBB")
        await a.start()
        await b.start()
        turn = 0

        async def resolve() -> tuple[str, int]:
            # Spreads connections like the reader endpoint: a, b, a, b, ...
            nonlocal turn
            turn += 1
            return "127.0.0.1", (a if turn % 2 else b).port

        listener = Listener("r", "127.0.0.1", 0, resolve)
        await listener.start()
        assert listener._server is not None
        port = listener._server.sockets[0].getsockname()[1]
        sessions = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_startup())
            await _read_login(reader)
            sessions.append(writer)
        # The third connection would resolve to a: the cancel for b's session must still go to b.
        _, cw = await asyncio.open_connection("127.0.0.1", port)
        cw.write(_cancel(202, b"BBBB"))
        await _until(lambda: len(b.cancels) == 1, "the cancel delivered to b")
        assert b.cancels == [_cancel(202, b"BBBB")] and a.cancels == []
        # A key no session has is dropped, as postgres drops it.
        _, uw = await asyncio.open_connection("127.0.0.1", port)
        uw.write(_cancel(303, b"CCCC"))
        await _until(lambda: listener.client_connections == 2, "the cancel connections closed")
        assert a.cancels == [] and len(b.cancels) == 1
        for w in sessions:
            w.close()
        await _until(lambda: not listener._keys, "keys forgotten with their sessions")
        cw.close()
        uw.close()
        await listener.close()
        await a.close()
        await b.close()

    _run(main)


def test_a_bad_startup_packet_or_no_target_is_a_fatal_error() -> None:
    async def main() -> None:
        async def resolve() -> tuple[str, int]:
            raise EndpointUnavailable("the writer endpoint of c1 has no DB instance to serve it", "57P03")

        listener = Listener("w", "127.0.0.1", 0, resolve)
        await listener.start()
        assert listener._server is not None
        port = listener._server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(_startup())
        answer = await asyncio.wait_for(r.read(), 30)
        assert answer[:1] == b"E" and b"57P03" in answer and b"no DB instance" in answer
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(struct.pack("!ii", 100000, 196608))
        answer = await asyncio.wait_for(r2.read(), 30)
        assert answer[:1] == b"E" and b"invalid length of startup packet" in answer
        w.close()
        w2.close()
        await listener.close()

    _run(main)


def _tls_listener(tmp: Path, pg: FakePostgres, force_ssl: bool = False) -> tuple[Listener, ssl.SSLContext]:
    ca = CertificateAuthority(tmp / "ca")

    async def resolve() -> tuple[str, int]:
        return "127.0.0.1", pg.port

    listener = Listener("w", "127.0.0.1", 0, resolve, tls=ca.server_context("127.0.0.1"), force_ssl=lambda: force_ssl)
    client = ssl.create_default_context(cafile=str(ca.cert_path))
    return listener, client


async def _port(listener: Listener) -> int:
    await listener.start()
    assert listener._server is not None
    return int(listener._server.sockets[0].getsockname()[1])


def test_ssl_request_starts_tls_and_the_login_is_relayed_in_8kb_records(tmp_path: Path) -> None:
    async def main() -> None:
        pg = FakePostgres(7, b"abcd")
        await pg.start()
        listener, client_ctx = _tls_listener(tmp_path, pg)
        port = await _port(listener)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(SSL_REQUEST)
        assert await asyncio.wait_for(reader.readexactly(1), 30) == b"S"
        await writer.start_tls(client_ctx, server_hostname="127.0.0.1")  # verified against Borealis's CA
        writer.write(_startup())
        await _read_login(reader)
        assert pg.received == [_startup()]
        # 40 KB echoed back by the fake server comes through whole.
        payload = pgwire.encode(pgwire.Query("x" * 40000))
        writer.write(payload)
        got = b""
        while len(got) < len(payload):
            got += await asyncio.wait_for(reader.read(65536), 30)
        assert got == payload
        writer.close()
        await listener.close()
        await pg.close()

    _run(main)


def test_tls_records_carry_at_most_8kb(tmp_path: Path) -> None:
    sent: list[bytes] = []
    transport = SimpleNamespace(write=sent.append)
    ca = CertificateAuthority(tmp_path / "ca")
    server = _Tls(ca.server_context("127.0.0.1"), transport)  # type: ignore[arg-type]
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context(cafile=str(ca.cert_path)).wrap_bio(
        client_in, client_out, server_hostname="127.0.0.1"
    )
    for _ in range(10):  # the handshake, in memory
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            server.feed(client_out.read())
            client_in.write(b"".join(sent))
            sent.clear()
    server.feed(client_out.read())
    client_in.write(b"".join(sent))
    sent.clear()
    server.write(b"y" * 40000)
    stream = b"".join(sent)
    lengths = []
    while stream:
        kind, length = stream[0], struct.unpack("!H", stream[3:5])[0]
        if kind == 23:  # application data
            lengths.append(length)
        stream = stream[5 + length :]
    assert len(lengths) >= 5 and max(lengths) <= 8192 + 256  # 8 KB of data plus the record's overhead


def test_direct_tls_needs_the_postgresql_alpn(tmp_path: Path) -> None:
    async def main() -> None:
        pg = FakePostgres(7, b"abcd")
        await pg.start()
        listener, client_ctx = _tls_listener(tmp_path, pg)
        port = await _port(listener)
        client_ctx.set_alpn_protocols(["postgresql"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1")
        writer.write(_startup())
        await _read_login(reader)
        writer.close()
        # Without ALPN (any other TLS client): no session.
        plain_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca" / "root.crt"))
        r2, w2 = await asyncio.open_connection("127.0.0.1", port, ssl=plain_ctx, server_hostname="127.0.0.1")
        w2.write(_startup())
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            assert await asyncio.wait_for(r2.read(), 30) == b""
        assert pg.received == [_startup()]
        w2.close()
        await listener.close()
        await pg.close()

    _run(main)


def test_force_ssl_refuses_plaintext_and_bytes_behind_an_ssl_request(tmp_path: Path) -> None:
    async def main() -> None:
        pg = FakePostgres(7, b"abcd")
        await pg.start()
        listener, client_ctx = _tls_listener(tmp_path, pg, force_ssl=True)
        port = await _port(listener)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(_startup())
        answer = await asyncio.wait_for(r.read(), 30)
        assert answer[:1] == b"E" and b"28000" in answer and b"no encryption" in answer
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(SSL_REQUEST + _startup())  # plaintext that would pass for encrypted (CVE-2021-23214)
        answer = await asyncio.wait_for(r2.read(), 30)
        assert answer[:1] == b"E" and b"08P01" in answer
        # Over TLS the same login goes through.
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        w3.write(SSL_REQUEST)
        assert await asyncio.wait_for(r3.readexactly(1), 30) == b"S"
        await w3.start_tls(client_ctx, server_hostname="127.0.0.1")
        w3.write(_startup())
        await _read_login(r3)
        assert pg.received == [_startup()]
        for wr in (w, w2, w3):
            wr.close()
        await listener.close()
        await pg.close()

    _run(main)


class FakeUnixPostgres:
    """The internal login path: a unix socket that logs anyone in and says whether they are in rds_iam."""

    def __init__(self, path: Path, members: set[str]) -> None:
        self.path = path
        self.members = members
        self.open = 0
        self.logins: list[str] = []
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            header = await reader.readexactly(8)
            body = await reader.readexactly(struct.unpack("!i", header[:4])[0] - 8)
            msg = pgwire.decode_startup(header + body)
            assert isinstance(msg, pgwire.StartupMessage)
            user = msg.parameters["user"]
            self.logins.append(user)
            writer.write(
                pgwire.encode(pgwire.AuthenticationOk())
                + pgwire.encode(pgwire.BackendKeyData(9, b"iiii"))
                + pgwire.ready_for_query("I")
            )
            while head := await reader.read(5):
                if head[:1] == b"X":
                    break
                rest = await reader.readexactly(struct.unpack("!i", head[1:5])[0] - 4)
                if head[:1] == b"Q" and b"rds_iam" in rest:
                    value = b"t" if user in self.members else b"f"
                    writer.write(
                        pgwire.encode(pgwire.DataRow((value,)))
                        + pgwire.command_complete("SELECT 1")
                        + pgwire.ready_for_query("I")
                    )
                else:
                    self.received.append(head + rest)
                    writer.write(pgwire.command_complete("SELECT 0") + pgwire.ready_for_query("I"))
        except asyncio.IncompleteReadError:
            pass
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def test_iam_members_log_in_by_token_with_no_session_held_meanwhile(tmp_path: Path) -> None:
    import botocore.session

    async def main() -> None:
        tcp = FakePostgres(7, b"abcd")
        await tcp.start()
        unix = FakeUnixPostgres(tmp_path / ".s.PGSQL.5432", {"iam_user"})
        await unix.start()

        async def resolve() -> tuple[str, int]:
            return "127.0.0.1", tcp.port

        iam = IamLogin(
            enabled=lambda: True,
            socket_for=lambda host, port: str(unix.path),
            region="us-east-1",
            secret_for=lambda key_id: "s" * 40 if key_id == "AKIDEXAMPLE" else None,
        )
        listener = Listener("w", "127.0.0.1", 0, resolve, iam=iam)
        port = await _port(listener)
        session = botocore.session.get_session()
        session.set_credentials("AKIDEXAMPLE", "s" * 40)
        rds = session.create_client("rds", region_name="us-east-1")
        token = rds.generate_db_auth_token("127.0.0.1", port, "iam_user")
        # A member: asked for a password with no postgres session open, then gets postgres's login answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_startup("iam_user"))
        assert await asyncio.wait_for(reader.readexactly(9), 30) == pgwire.encode(
            pgwire.AuthenticationCleartextPassword()
        )
        await _until(lambda: unix.open == 0, "the membership session closed")
        writer.write(pgwire.encode(pgwire.PasswordMessage(token)) + pgwire.encode(pgwire.Query("select 1")))
        await _read_login(reader)
        await _until(lambda: len(unix.received) == 1, "the query relayed on the internal session")
        assert tcp.received == [] and unix.logins == ["iam_user", "iam_user"]
        # A bad token: 28P01 in RDS's words.
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(_startup("iam_user"))
        await asyncio.wait_for(r2.readexactly(9), 30)
        w2.write(pgwire.encode(pgwire.PasswordMessage(token[:-2] + "00")))
        answer = await asyncio.wait_for(r2.read(), 30)
        assert b"28P01" in answer and b'PAM authentication failed for user "iam_user"' in answer
        # A token pipelined behind the startup packet (and a query behind it) works too.
        r5, w5 = await asyncio.open_connection("127.0.0.1", port)
        w5.write(_startup("iam_user") + pgwire.encode(pgwire.PasswordMessage(token)))
        assert await asyncio.wait_for(r5.readexactly(9), 30) == pgwire.encode(pgwire.AuthenticationCleartextPassword())
        await _read_login(r5)
        w5.close()
        # A member who sends no password: refused when the login timeout passes, as postgres does.
        listener.login_timeout = 0.2
        r4, w4 = await asyncio.open_connection("127.0.0.1", port)
        w4.write(_startup("iam_user"))
        await asyncio.wait_for(r4.readexactly(9), 30)
        answer = await asyncio.wait_for(r4.read(), 30)
        assert b"57014" in answer and b"canceling authentication due to timeout" in answer
        w4.close()
        listener.login_timeout = 60
        # Not a member: relayed over TCP, where postgres asks for the password.
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        w3.write(_startup("alice"))
        await _read_login(r3)
        assert tcp.received == [_startup("alice")]
        for w in (writer, w2, w3):
            w.close()
        await listener.close()
        await tcp.close()
        await unix.close()

    _run(main)
