"""Access key pairs for SigV4, kept sealed in the store and served from memory.

On first start Borealis makes one admin key pair and writes it to ``DATA_DIR/credentials`` in the AWS
shared-credentials format, so ``AWS_SHARED_CREDENTIALS_FILE`` or ``borealis env`` hands it to any SDK.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from borealis.store import Sealer, Store

__all__ = ["AccessKeys", "write_credentials_file"]

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class AccessKeys:
    """The known access keys; lookups are dictionary reads, so signature checks never touch the disk."""

    def __init__(self, store: Store, sealer: Sealer) -> None:
        self._table = store.table("access_keys")
        self._sealer = sealer
        self._secrets = {key: sealer.open(doc["secret"]) for key, doc in self._table.items()}

    def create(self, user: str = "admin") -> tuple[str, str]:
        """Make a new key pair for ``user``; returns (access key id, secret access key)."""
        key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
        self._table.put(key_id, {"user": user, "secret": self._sealer.seal(secret)})
        self._secrets[key_id] = secret
        return key_id, secret

    def admin(self) -> tuple[str, str]:
        """The admin key pair, made on first use."""
        for key, doc in self._table.items():
            if doc["user"] == "admin":
                return key, self._secrets[key]
        return self.create("admin")

    def secret_for(self, key_id: str) -> str | None:
        """The secret of ``key_id``, or None if the key is unknown."""
        return self._secrets.get(key_id)


def write_credentials_file(path: Path, key_id: str, secret: str) -> None:
    """Write a ``[default]`` profile in the shared-credentials format, readable by its owner only."""
    text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_credentials_file(path: Path) -> tuple[str, str] | None:
    """The ``[default]`` key pair from a credentials file, if it is there."""
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(path)
        section = parser["default"]
        return section["aws_access_key_id"], section["aws_secret_access_key"]
    except (KeyError, configparser.Error):
        return None
