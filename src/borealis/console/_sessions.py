"""Console sign-in and sessions: access keys checked as SigV4 checks them, sessions kept in memory.

A console session is what a SigV4 signature is for the API: proof that the caller holds a key pair Borealis
knows. Signing in compares the secret access key (and, for a temporary key, its session token) with the
stored one in constant time; the browser then holds only a random session id, in a cookie that scripts cannot
read (HttpOnly) and that other sites' requests do not carry (SameSite=Strict). Each session has its own
random token that every state-changing request must send back (CSRF), and an absolute expiry; a session
ends early when its key stops being valid (a temporary key expiring, a key deleted), since every request
asks the key store again, as every signed request does.

Sessions live in the main process's memory (the console is served there): a restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["COOKIE", "KeySource", "Session", "Sessions"]

COOKIE = "borealis_console"
"""The session cookie's name."""

_DEFAULT_TTL = 8 * 3600.0  # seconds a session lasts from sign-in (AWS console sessions last hours, not days)
_MAX_SESSIONS = 1000  # the oldest go first past this: a bound against sign-in floods
_DUMMY = "x" * 40  # compared against when the key id is unknown, so a miss costs what a wrong secret does


class KeySource(Protocol):
    """Where access keys are looked up (:class:`borealis.iam.AccessKeys`)."""

    def secret_for(self, key_id: str) -> str | None: ...

    def token_for(self, key_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser: the access key it acts as, its CSRF token and when it ends (epoch seconds)."""

    key_id: str
    csrf: str
    expires: float


def _digest(session_id: str) -> bytes:
    # Sessions are found by a digest of their id, so how long a lookup takes says nothing about stored ids.
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


class Sessions:
    """Signed-in console sessions, by a digest of their random id."""

    def __init__(self, keys: KeySource, *, ttl: float = _DEFAULT_TTL, clock: Callable[[], float] = time.time) -> None:
        self._keys = keys
        self._ttl = ttl
        self._clock = clock
        self._by_digest: dict[bytes, Session] = {}

    def sign_in(self, key_id: str, secret: str, token: str = "") -> str | None:
        """A new session id if ``secret`` (and ``token`` for a temporary key) are right for ``key_id``."""
        stored = self._keys.secret_for(key_id) if key_id else None
        ok = hmac.compare_digest((stored or _DUMMY).encode(), secret.encode("utf-8", "surrogatepass"))
        ok = ok and stored is not None
        wanted = self._keys.token_for(key_id) if stored is not None else None
        if wanted is not None:
            ok = hmac.compare_digest(wanted.encode(), token.encode("utf-8", "surrogatepass")) and ok
        if not ok:
            return None
        self._prune()
        session_id = secrets.token_urlsafe(32)
        self._by_digest[_digest(session_id)] = Session(key_id, secrets.token_urlsafe(32), self._clock() + self._ttl)
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id``: None if unknown, expired, or its key is no longer valid."""
        if not session_id:
            return None
        digest = _digest(session_id)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        if session.expires <= self._clock() or self._keys.secret_for(session.key_id) is None:
            del self._by_digest[digest]
            return None
        return session

    def sign_out(self, session_id: str | None) -> None:
        """End a session (nothing happens for an unknown id)."""
        if session_id:
            self._by_digest.pop(_digest(session_id), None)

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        """Whether a request carried its session's CSRF token (compared in constant time)."""
        return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode("utf-8", "surrogatepass"))

    def __len__(self) -> int:
        return len(self._by_digest)

    def _prune(self) -> None:
        now = self._clock()
        for digest, session in list(self._by_digest.items()):
            if session.expires <= now:
                del self._by_digest[digest]
        while len(self._by_digest) >= _MAX_SESSIONS:
            del self._by_digest[next(iter(self._by_digest))]
