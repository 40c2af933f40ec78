"""The store's interface: tables of JSON documents with a revision each, compare-and-set, and leases.

This is what the control plane relies on, so that a store shared by several hosts (etcd, as Patroni uses)
can replace the embedded SQLite one without the plane changing:

- every write gives the document a new **revision**, taken from one counter that only grows (etcd's
  ``mod_revision``); ``put(..., expect=rev)`` and ``delete(..., expect=rev)`` apply only if the stored
  revision is still ``rev`` (``expect=0``: only if the key is absent) and raise :class:`Conflict` otherwise,
  so a writer that read a record, decided, and writes back never overwrites someone else's change;
- a **lease** is a named claim held by one holder until it expires unless renewed (etcd's leases, a
  Patroni leader key): ``acquire_lease`` takes or renews it, ``release_lease`` gives it up. Time is the
  wall clock, since holders may be different processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Conflict", "Document", "Lease", "StateStore", "Versioned"]

Document = dict[str, Any]


class Conflict(Exception):
    """A compare-and-set found another revision than the one expected."""

    def __init__(self, table: str, key: str, expected: int, found: int) -> None:
        super().__init__(f"{table}/{key}: expected revision {expected}, found {found}")
        self.table = table
        self.key = key
        self.expected = expected
        self.found = found


@dataclass(frozen=True, slots=True)
class Versioned:
    """A document with the revision of its last write."""

    doc: Document
    revision: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a lease and until when (seconds since the epoch)."""

    name: str
    holder: str
    expires: float


class StateStore(Protocol):
    """What the control plane needs from a store (see the module docstring)."""

    def read(self, table: str, key: str) -> Versioned | None:
        """The document under ``key`` with its revision, or None."""
        ...

    def write(self, table: str, key: str, doc: Document, *, expect: int | None = None) -> int:
        """Insert or replace; with ``expect``, only if the stored revision is that (0: absent). The new revision."""
        ...

    def remove(self, table: str, key: str, *, expect: int | None = None) -> bool:
        """Delete; with ``expect``, only if the stored revision is that. True if it was there."""
        ...

    def scan(self, table: str) -> list[tuple[str, Versioned]]:
        """Every (key, versioned document) of ``table``, oldest first."""
        ...

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False if another holder has it unexpired."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give up lease ``name`` if ``holder`` has it."""
        ...

    def lease(self, name: str) -> Lease | None:
        """The lease ``name`` if someone holds it unexpired."""
        ...
