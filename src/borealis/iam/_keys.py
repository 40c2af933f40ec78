"""Access key pairs for SigV4, kept sealed in the store and served from memory.

On first start Borealis makes one admin key pair and writes it to ``DATA_DIR/credentials`` in the AWS
shared-credentials format, so ``AWS_SHARED_CREDENTIALS_FILE`` or ``borealis env`` hands it to any SDK.

Temporary credentials (STS AssumeRole, GetSessionToken) are key pairs too, with a session token that every
request signed by them must carry (``X-Amz-Security-Token``) and an expiry after which the key is unknown.
Worker processes read keys made after they started from the store on first sight.
"""

from __future__ import annotations

import os
import secrets
import string
import time
from pathlib import Path
from typing import Any

from borealis.store import Sealer, Store

__all__ = ["AccessKeys", "write_credentials_file"]

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_MAX_KEYS_READ = 10_000  # keys looked up in the store after a miss, kept; a bound against unknown-key floods


def _random(alphabet: str, size: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(size))


class AccessKeys:
    """The known access keys; lookups are dictionary reads, so signature checks never touch the disk."""

    def __init__(self, store: Store, sealer: Sealer) -> None:
        self._table = store.table("access_keys")
        self._sealer = sealer
        self._docs: dict[str, dict[str, Any]] = {}
        self._secrets: dict[str, str] = {}
        self._missed: set[str] = set()
        now = time.time()
        for key, doc in self._table.items():
            # An expired temporary key is left out (the main process deletes it when it next makes one: a
            # worker process only reads the store).
            if doc.get("expires", now + 1) > now:
                self._remember(key, doc)

    def _remember(self, key_id: str, doc: dict[str, Any]) -> None:
        self._docs[key_id] = doc
        self._secrets[key_id] = self._sealer.open(doc["secret"])

    def create(self, user: str = "admin") -> tuple[str, str]:
        """Make a new key pair for ``user``; returns (access key id, secret access key)."""
        key_id = "AKIA" + _random(_KEY_ALPHABET, 16)
        secret = _random(_SECRET_ALPHABET, 40)
        doc = {"user": user, "secret": self._sealer.seal(secret)}
        self._table.put(key_id, doc)
        self._remember(key_id, doc)
        return key_id, secret

    def create_temporary(self, identity: dict[str, str], seconds: int) -> dict[str, Any]:
        """Temporary credentials acting as ``identity`` (``arn``, ``user_id``) for ``seconds``.

        Returns AccessKeyId, SecretAccessKey, SessionToken and Expiration (seconds since the epoch).
        """
        self._forget_expired()
        key_id = "ASIA" + _random(_KEY_ALPHABET, 16)
        secret = _random(_SECRET_ALPHABET, 40)
        token = "IQoJb3JpZ2luX2VjE" + _random(_TOKEN_ALPHABET, 300)
        expires = time.time() + seconds
        doc = {
            "user": identity["arn"],
            "user_id": identity["user_id"],
            "secret": self._sealer.seal(secret),
            "token": token,
            "expires": expires,
        }
        self._table.put(key_id, doc)
        self._remember(key_id, doc)
        return {"AccessKeyId": key_id, "SecretAccessKey": secret, "SessionToken": token, "Expiration": expires}

    def admin(self) -> tuple[str, str]:
        """The admin key pair, made on first use."""
        for key, doc in self._table.items():
            if doc["user"] == "admin":
                return key, self._secrets[key]
        return self.create("admin")

    def _forget_expired(self) -> None:
        now = time.time()
        for key, doc in list(self._docs.items()):
            if doc.get("expires", now + 1) <= now:
                del self._docs[key], self._secrets[key]
                self._table.delete(key)

    def _doc(self, key_id: str) -> dict[str, Any] | None:
        doc = self._docs.get(key_id)
        if doc is None and key_id not in self._missed and len(self._docs) < _MAX_KEYS_READ:
            # Made by another process (the main one, for a worker) since we started.
            found = self._table.get(key_id)
            if found is None:
                if len(self._missed) > _MAX_KEYS_READ:
                    self._missed.clear()
                self._missed.add(key_id)
                return None
            self._remember(key_id, found)
            doc = found
        if doc is not None and doc.get("expires", float("inf")) <= time.time():
            return None
        return doc

    def secret_for(self, key_id: str) -> str | None:
        """The secret of ``key_id``, or None if the key is unknown (or temporary and expired)."""
        if self._doc(key_id) is None:
            return None
        return self._secrets.get(key_id)

    def token_for(self, key_id: str) -> str | None:
        """The session token requests signed by ``key_id`` must carry; None for a long-term key."""
        doc = self._doc(key_id)
        return None if doc is None else doc.get("token")

    def identity(self, key_id: str, account_id: str) -> dict[str, str]:
        """Who calls with ``key_id``: ``arn`` and ``user_id`` as STS GetCallerIdentity names them."""
        doc = self._doc(key_id) or {"user": "admin"}
        user = str(doc["user"])
        if user.startswith("arn:"):
            return {"arn": user, "user_id": str(doc["user_id"])}
        # A long-term key belongs to an IAM user; the user id is stable per key, AIDA + 17 characters.
        return {"arn": f"arn:aws:iam::{account_id}:user/{user}", "user_id": "AIDA" + key_id[4:].ljust(17, "X")[:17]}


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
