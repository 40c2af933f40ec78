"""The Verifier: only a password PostgreSQL accepted over TCP, recently, opens unix-socket connections."""

from __future__ import annotations

import asyncio
import time
import types

import pytest

from borealis.dataapi._pool import PgError, Pool
from borealis.engine import Verifier

ADDR = ("127.0.0.1", 5432)


class FakeServer:
    """A login function that accepts one password per user and counts the logins."""

    def __init__(self, passwords: dict[str, str], delay: float = 0.0) -> None:
        self.passwords = passwords
        self.delay = delay
        self.logins: list[tuple[str, str]] = []

    async def login(self, host: str, port: int, user: str, password: str, dbname: str, timeout: float) -> None:
        self.logins.append((user, password))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.passwords.get(user) != password:
            raise PgError(f'password authentication failed for user "{user}"', "28P01")


def test_a_verified_password_is_trusted_and_no_other() -> None:
    server = FakeServer({"alice": "right"})
    v = Verifier(60, login=server.login)

    async def run() -> None:
        await v.verify(*ADDR, "alice", "right", "postgres", 5)
        assert v.is_verified(*ADDR, "alice", "right")
        await v.verify(*ADDR, "alice", "right", "postgres", 5)  # cached: no second login
        assert server.logins == [("alice", "right")]
        assert not v.is_verified(*ADDR, "alice", "wrong")
        assert not v.is_verified(*ADDR, "bob", "right")
        assert not v.is_verified("127.0.0.1", 5433, "alice", "right")  # another server
        with pytest.raises(PgError) as info:
            await v.verify(*ADDR, "alice", "wrong", "postgres", 5)
        assert info.value.sqlstate == "28P01"
        assert not v.is_verified(*ADDR, "alice", "wrong")
        # A failed login forgets the user's verified password: the next connection logs in over TCP again.
        assert not v.is_verified(*ADDR, "alice", "right")

    asyncio.run(run())


def test_the_password_is_not_kept_in_clear() -> None:
    server = FakeServer({"alice": "s3cret-value"})
    v = Verifier(60, login=server.login)
    asyncio.run(v.verify(*ADDR, "alice", "s3cret-value", "postgres", 5))
    assert "s3cret-value" not in repr(v.__dict__)


def test_verification_expires() -> None:
    server = FakeServer({"alice": "right"})
    v = Verifier(1.0, login=server.login)  # long enough that a loaded machine cannot outlast it before the check

    async def run() -> None:
        await v.verify(*ADDR, "alice", "right", "postgres", 5)
        assert v.is_verified(*ADDR, "alice", "right")
        deadline = time.monotonic() + 60
        while v.is_verified(*ADDR, "alice", "right"):
            assert time.monotonic() < deadline, "the verification never expired"
            await asyncio.sleep(0.05)
        server.passwords["alice"] = "rotated"  # changed in PostgreSQL behind the secret's back
        with pytest.raises(PgError):
            await v.verify(*ADDR, "alice", "right", "postgres", 5)

    asyncio.run(run())


def test_rotation_replaces_the_verified_password() -> None:
    server = FakeServer({"alice": "one"})
    v = Verifier(60, login=server.login)

    async def run() -> None:
        await v.verify(*ADDR, "alice", "one", "postgres", 5)
        server.passwords["alice"] = "two"
        await v.verify(*ADDR, "alice", "two", "postgres", 5)
        assert v.is_verified(*ADDR, "alice", "two")
        assert not v.is_verified(*ADDR, "alice", "one")  # a role has one password

    asyncio.run(run())


def test_concurrent_callers_share_one_login_and_its_failure() -> None:
    server = FakeServer({"alice": "right"}, delay=0.05)
    v = Verifier(60, login=server.login)

    async def run() -> None:
        await asyncio.gather(*(v.verify(*ADDR, "alice", "right", "postgres", 5) for _ in range(10)))
        assert server.logins == [("alice", "right")]
        outcomes = await asyncio.gather(
            *(v.verify(*ADDR, "alice", "bad", "postgres", 5) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(o, PgError) for o in outcomes)
        assert server.logins.count(("alice", "bad")) == 1
        # The failure is not remembered as an answer: the next attempt logs in again.
        with pytest.raises(PgError):
            await v.verify(*ADDR, "alice", "bad", "postgres", 5)
        assert server.logins.count(("alice", "bad")) == 2

    asyncio.run(run())


def test_a_pool_never_opens_a_unix_connection_for_an_unverified_password(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer({"alice": "right"})
    v = Verifier(60, login=server.login)
    opened: list[tuple[str, str | None]] = []

    async def fake_connect(*args: object, unix_dir: str | None = None, **_: object) -> object:
        opened.append((str(args[3]), unix_dir))
        return types.SimpleNamespace()

    monkeypatch.setattr("borealis.dataapi._pool.PgConnection.connect", fake_connect)

    async def run() -> None:
        good = Pool(
            ("c", "alice", "right", "postgres"), None, *ADDR, size=2, connect_timeout=5, unix_dir="/s", verifier=v
        )
        bad = Pool(
            ("c", "alice", "wrong", "postgres"), None, *ADDR, size=2, connect_timeout=5, unix_dir="/s", verifier=v
        )
        await good.acquire()
        assert opened == [("right", "/s")]
        with pytest.raises(PgError):
            await bad.acquire()
        assert opened == [("right", "/s")]  # nothing opened for the wrong password, on either transport
        assert bad.open == 0
        # Without a verifier there is no unix socket at all: the server checks every password over TCP.
        plain = Pool(("c", "alice", "x", "postgres"), None, *ADDR, size=2, connect_timeout=5, unix_dir="/s")
        await plain.acquire()
        assert opened[-1] == ("x", None)

    asyncio.run(run())


def test_monotonic_clock_is_used() -> None:
    # Expiry follows time.monotonic, not the wall clock (which may jump).
    server = FakeServer({"alice": "right"})
    v = Verifier(1000, login=server.login)
    asyncio.run(v.verify(*ADDR, "alice", "right", "postgres", 5))
    until = next(iter(v._verified.values()))[1]
    assert time.monotonic() < until <= time.monotonic() + 1000
