"""Encryption at rest for the few values the control plane must keep (internal passwords, secret keys).

One Fernet key per data directory, in a file of mode 0600 created on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

__all__ = ["Sealer"]


class Sealer:
    """Seals and opens short strings with the data directory's key."""

    def __init__(self, key_file: Path) -> None:
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        self._fernet = Fernet(key_file.read_bytes().strip())

    def seal(self, plaintext: str) -> str:
        """The encrypted form of ``plaintext``, as text fit for a JSON document."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The plaintext of a value made by :meth:`seal`."""
        return self._fernet.decrypt(sealed.encode("ascii")).decode()
