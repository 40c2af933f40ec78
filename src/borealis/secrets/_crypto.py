"""Encryption at rest for secret values: one Fernet key in a file beside the store.

The key file plays the part of the AWS-managed KMS key ``aws/secretsmanager``: every SecretString and
SecretBinary is written to the store only as a Fernet token (AES-128-CBC + HMAC-SHA256, random IV), so the
SQLite file never holds a plaintext value. The key is created on first use with mode 0600, the way an SSH
client creates its private key, and is read once per process.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from borealis.store import read_or_create_key

__all__ = ["Cipher", "InvalidToken"]


class Cipher:
    """Encrypts and decrypts secret values with the Fernet key kept in ``key_file``."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        self._fernet: Fernet | None = None

    def encrypt(self, plaintext: bytes) -> str:
        """The Fernet token of ``plaintext``, as ASCII text fit for a JSON document."""
        return self._load().encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        """The plaintext of a token made by :meth:`encrypt`; raises InvalidToken for a wrong key."""
        return self._load().decrypt(token.encode("ascii"))

    def _load(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(read_or_create_key(self._key_file))
        return self._fernet
