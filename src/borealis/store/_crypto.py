"""Encryption at rest: one Fernet key per data directory, in a file of mode 0600 created on first use.

The store seals the few values the control plane keeps (internal passwords, access keys); Secrets Manager
encrypts secret values with the same key (see ``borealis.secrets``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

__all__ = ["Sealer", "read_or_create_key"]


def read_or_create_key(path: Path) -> bytes:
    """Read the key, or create it atomically with mode 0600 if no process has yet."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key


class Sealer:
    """Seals and opens short strings with the data directory's key."""

    def __init__(self, key_file: Path) -> None:
        self._fernet = Fernet(read_or_create_key(key_file))

    def seal(self, plaintext: str) -> str:
        """The encrypted form of ``plaintext``, as text fit for a JSON document."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The plaintext of a value made by :meth:`seal`."""
        return self._fernet.decrypt(sealed.encode("ascii")).decode()
