"""Which password PostgreSQL accepted over TCP, recently: what lets Borealis open unix-socket connections.

pg_hba.conf lets the OS user running Borealis in over the unix socket as any role (``peer``), so the socket
alone would accept any password. The Data API's pools and the proxy's pools open connections over it only
for a password that PostgreSQL itself accepted, over TCP with SCRAM as any client logs in, less than
``ttl`` seconds ago. A failed login forgets the user's verified password; a newly verified one replaces it
(a role has one password). The login itself is the caller's (each side has its own client).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable

__all__ = ["Login", "Verifier"]

Login = Callable[[str, int, str, str, str, float], Awaitable[None]]
"""``async login(host, port, user, password, dbname, timeout)``: log in over TCP and out; raise if refused."""


class Verifier:
    """Which password PostgreSQL itself accepted, over TCP, for a user of a server: recently, and only that.

    :meth:`verify` answers at once for a password verified less than ``ttl`` seconds ago; otherwise it logs
    in over TCP (one login at a time per user and password; callers asking meanwhile share its outcome).
    Passwords are held as keyed digests (a random key per process), never in clear.  A failed login forgets
    what was verified for that user; a successful one replaces it, since a role has one password.
    """

    def __init__(self, ttl: float, *, login: Login) -> None:
        self.ttl = ttl
        self._login = login
        self._key = os.urandom(32)
        self._verified: dict[tuple[str, int, str], tuple[bytes, float]] = {}  # (host, port, user) -> digest, until
        self._inflight: dict[tuple[str, int, str, bytes], asyncio.Future[None]] = {}

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def is_verified(self, host: str, port: int, user: str, password: str) -> bool:
        """``password`` was accepted for ``user`` on the server at ``host:port`` less than ``ttl`` ago."""
        entry = self._verified.get((host, port, user))
        if entry is None:
            return False
        digest, until = entry
        if until <= time.monotonic():
            del self._verified[(host, port, user)]
            return False
        return hmac.compare_digest(digest, self._digest(password))

    def forget(self, host: str, port: int, user: str) -> None:
        """Drop what was verified for ``user`` (a login failed, or its password changed)."""
        self._verified.pop((host, port, user), None)

    async def verify(self, host: str, port: int, user: str, password: str, dbname: str, timeout: float) -> None:
        """Return once PostgreSQL accepted the password over TCP (recently); raise its PgError otherwise."""
        if self.is_verified(host, port, user, password):
            return
        digest = self._digest(password)
        flight_key = (host, port, user, digest)
        flight = self._inflight.get(flight_key)
        if flight is None:
            flight = asyncio.ensure_future(self._check(host, port, user, password, dbname, timeout, digest))
            self._inflight[flight_key] = flight
            flight.add_done_callback(lambda _: self._inflight.pop(flight_key, None))
        await asyncio.shield(flight)

    async def _check(
        self, host: str, port: int, user: str, password: str, dbname: str, timeout: float, digest: bytes
    ) -> None:
        try:
            await self._login(host, port, user, password, dbname, timeout)
        except BaseException:
            self.forget(host, port, user)
            raise
        if len(self._verified) > 10000:
            self._verified.clear()
        self._verified[(host, port, user)] = (digest, time.monotonic() + self.ttl)
