"""A wire fuzzer of startup and query messages against a cluster's writer endpoint and an RDS Proxy.

Each example opens a raw connection and sends what hypothesis makes: startup packets of any length, version
and parameters (SSL, GSSAPI and cancel requests among them), or, after a real SCRAM login, frontend
messages of any type, length and content. The target must stay up and other sessions unharmed: a witness
session opened before the fuzz answers after every example, and a new login works at the end. Bounded in
examples, on the shared Borealis (its proxy is made here and removed).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import scramp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borealis import pgwire
from tests.integration.conftest import BorealisProcess
from tests.integration.proxy.conftest import make_proxy

_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    user: str
    password: str

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres",
            connect_timeout=30, autocommit=True,
        )  # fmt: skip


class _Wire:
    """A blocking frontend: a raw socket, a SCRAM login, reading backend messages."""

    def __init__(self, target: Target) -> None:
        self.sock = socket.create_connection((target.host, target.port), timeout=30)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def read(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 5:
                kind, length = struct.unpack("!cI", self.buffer[:5])
                if len(self.buffer) >= 1 + length:
                    body = self.buffer[5 : 1 + length]
                    self.buffer = self.buffer[1 + length :]
                    return kind[0], body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk

    def login(self, target: Target) -> None:
        self.sock.sendall(pgwire.encode(pgwire.StartupMessage({"user": target.user, "database": "postgres"})))
        scram: Any = None
        while True:
            kind, body = self.read()
            message = pgwire.decode_backend(kind, body)
            if isinstance(message, pgwire.ErrorResponse):
                raise RuntimeError(message.message)
            if isinstance(message, pgwire.AuthenticationSASL):
                scram = scramp.ScramClient(["SCRAM-SHA-256"], target.user, target.password)
                first = scram.get_client_first().encode()
                self.sock.sendall(pgwire.encode(pgwire.SASLInitialResponse("SCRAM-SHA-256", first)))
            elif isinstance(message, pgwire.AuthenticationSASLContinue):
                scram.set_server_first(message.data.decode())
                self.sock.sendall(pgwire.encode(pgwire.SASLResponse(scram.get_client_final().encode())))
            elif isinstance(message, pgwire.AuthenticationCleartextPassword):
                self.sock.sendall(pgwire.encode(pgwire.PasswordMessage(target.password)))
            elif isinstance(message, pgwire.ReadyForQuery):
                return

    def drain(self, seconds: float = 0.2) -> None:
        """Read what the server says for a moment (it may answer, wait, or close)."""
        self.sock.settimeout(seconds)
        try:
            while self.sock.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass


# ---------------------------------------------------------------------------------------- strategies

_VERSIONS = [196608, 196609, 196610, 131072, 80877102, 80877103, 80877104, 0, 0x7FFFFFFF]
_cstring = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30).map(
    lambda t: t.encode() + b"\x00"
)
_params = st.lists(st.tuples(st.sampled_from([b"user\x00", b"database\x00", b"options\x00", b"replication\x00",
                                              b"application_name\x00", b"_pq_.x\x00"]) | _cstring, _cstring),
                   max_size=5).map(lambda pairs: b"".join(k + v for k, v in pairs) + b"\x00")  # fmt: skip


@st.composite
def _startup(draw: st.DrawFn) -> bytes:
    """A startup-phase packet: valid-looking, mis-sized, or noise."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    version = draw(st.sampled_from(_VERSIONS) | st.integers(0, 2**32 - 1))
    payload = struct.pack("!I", version) + draw(_params | st.binary(max_size=64))
    length = draw(st.sampled_from([len(payload) + 4]) | st.integers(0, 2**32 - 1))
    return struct.pack("!I", length) + payload


_TYPES = b"QPBEDSHCFfdcXpB"


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    """After login: frontend messages of any type and content, mostly with true lengths."""
    out = b""
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(list(_TYPES)) | st.integers(0, 255))
        body = draw(_cstring | st.binary(max_size=120) | st.sampled_from([b"SELECT 1\x00", b"\x00\x00\x00\x00"]))
        length = draw(st.sampled_from([len(body) + 4]) | st.integers(0, 2**31))
        out += bytes([kind]) + struct.pack("!I", length & 0xFFFFFFFF) + body
    return out


# ---------------------------------------------------------------------------------------- targets


@pytest.fixture(scope="module")
def endpoint(borealis: BorealisProcess) -> Target:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = json.loads(
        borealis.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])[
            "SecretString"
        ]
    )
    return Target("writer endpoint", cluster["Endpoint"], cluster["Port"], secret["username"], secret["password"])


@pytest.fixture(scope="module")
def proxied(borealis: BorealisProcess) -> Iterator[Target]:
    info = make_proxy(borealis, "fuzz-proxy")
    yield Target("proxy", info.host, info.port, info.user, info.password)
    borealis.client("rds").delete_db_proxy(DBProxyName="fuzz-proxy")


def _fuzz(target: Target) -> None:
    witness = target.connect()

    def unharmed() -> None:
        assert witness.execute("SELECT 41 + 1").fetchone() == (42,), f"the witness session on the {target.name}"

    @_SETTINGS
    @given(packet=_startup())
    def startup(packet: bytes) -> None:
        wire = _Wire(target)
        try:
            wire.sock.sendall(packet)
            wire.drain()
        except ConnectionError:
            pass
        finally:
            wire.close()
        unharmed()

    @_SETTINGS
    @given(frames=_frames())
    def query(frames: bytes) -> None:
        wire = _Wire(target)
        try:
            wire.login(target)
            wire.sock.sendall(frames)
            wire.drain()
        except ConnectionError:
            pass
        finally:
            wire.close()
        unharmed()

    try:
        startup()
        query()
        with target.connect() as fresh:
            assert fresh.execute("SELECT 1").fetchone() == (1,)
    finally:
        witness.close()


def test_the_writer_endpoint_survives_the_wire_fuzzer(endpoint: Target) -> None:
    _fuzz(endpoint)


def test_the_proxy_survives_the_wire_fuzzer(proxied: Target) -> None:
    _fuzz(proxied)
