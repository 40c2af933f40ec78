"""Password authentication on both sides of the proxy: as a server to clients, as a client to PostgreSQL.

Client side: SCRAM-SHA-256 (RFC 5802/7677, what PostgreSQL speaks, without channel binding) or MD5, as the
proxy's ClientPasswordAuthType says, checked against the password in the user's Secrets Manager secret.
Server side: whatever PostgreSQL asks (SCRAM-SHA-256, MD5, cleartext or nothing), with the same secret.

SCRAM's salted keys cost 4096 PBKDF2 rounds; :class:`ScramKeys` caches them per password, so a login costs
two HMACs, not a key derivation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import scramp  # type: ignore[import-untyped]

__all__ = ["MD5Challenge", "ScramError", "ScramKeys", "ScramServer", "md5_response", "scram_client"]

MECHANISM = "SCRAM-SHA-256"


def md5_response(user: str, password: str, salt: bytes) -> str:
    """What a client answers to AuthenticationMD5Password: ``md5`` + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


class MD5Challenge:
    """One MD5 login: a random salt and the check of the client's answer."""

    __slots__ = ("salt",)

    def __init__(self) -> None:
        self.salt = os.urandom(4)

    def verify(self, user: str, password: str, answer: str) -> bool:
        """True when ``answer`` proves knowledge of ``password`` (constant-time comparison)."""
        return hmac.compare_digest(md5_response(user, password, self.salt).encode(), answer.encode())


class ScramError(Exception):
    """A SCRAM exchange failed: bad message, or a proof that does not match."""


class ScramKeys:
    """SCRAM auth info (salt, stored key, server key, iterations) per password, computed once."""

    ITERATIONS = 4096

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bytes, bytes, bytes, int]] = {}

    def get(self, password: str) -> tuple[bytes, bytes, bytes, int]:
        """The auth info for ``password``."""
        info = self._cache.get(password)
        if info is None:
            if len(self._cache) > 1000:
                self._cache.clear()
            salt = os.urandom(16)
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, self.ITERATIONS)
            client_key = hmac.digest(salted, b"Client Key", "sha256")
            server_key = hmac.digest(salted, b"Server Key", "sha256")
            info = self._cache[password] = (salt, hashlib.sha256(client_key).digest(), server_key, self.ITERATIONS)
        return info


def _attrs(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError(f"malformed SCRAM attribute {part[:10]!r}")
        out[part[0]] = part[2:]
    return out


class ScramServer:
    """One SCRAM-SHA-256 exchange played as the server, as PostgreSQL does it (RFC 5802, RFC 7677).

    Written here rather than taken from ``scramp``: libpq sends an empty user name (``n=``), since
    PostgreSQL takes the user from the startup packet, and scramp refuses that.
    """

    def __init__(self, info: tuple[bytes, bytes, bytes, int]) -> None:
        self._salt, self._stored_key, self._server_key, self._iterations = info
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""

    def first(self, client_first: bytes) -> bytes:
        """Take the client-first message, return server-first."""
        try:
            text = client_first.decode()
        except UnicodeDecodeError:
            raise ScramError("SCRAM message is not UTF-8") from None
        if text.startswith("p"):
            raise ScramError("channel binding is not supported")
        if not (text.startswith("n,") or text.startswith("y,")):
            raise ScramError("malformed SCRAM client-first message")
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise ScramError("malformed SCRAM client-first message")
        self._client_first_bare = parts[2]
        cnonce = _attrs(self._client_first_bare).get("r")
        if not cnonce:
            raise ScramError("SCRAM client-first message has no nonce")
        self._nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
        salt = base64.b64encode(self._salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self._iterations}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        """Take the client-final message, check the proof, return server-final."""
        try:
            text = client_final.decode()
        except UnicodeDecodeError:
            raise ScramError("SCRAM message is not UTF-8") from None
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise ScramError("SCRAM client-final message has no proof")
        if _attrs(without_proof).get("r") != self._nonce:
            raise ScramError("SCRAM nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise ScramError("malformed SCRAM proof") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(self._stored_key, auth_message, "sha256")
        if len(proof) != len(signature):
            raise ScramError("malformed SCRAM proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self._stored_key):
            raise ScramError("SCRAM proof does not match")
        verifier = hmac.digest(self._server_key, auth_message, "sha256")
        return b"v=" + base64.b64encode(verifier)


def scram_client(user: str, password: str) -> Any:
    """A SCRAM-SHA-256 client for logging in to PostgreSQL."""
    return scramp.ScramClient([MECHANISM], user, password)
