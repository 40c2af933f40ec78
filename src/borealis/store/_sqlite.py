"""The embedded store: SQLite in WAL mode, one JSON document per record, implementing ``StateStore``.

Each domain owns one or more named tables of documents keyed by a string id. Documents are plain JSON
objects, so the schema lives in the domain code (the control plane's typed records convert to and from
them) and the store stays a small key-value layer that a later backend (etcd) can replace: see ``_api`` for
the interface, revisions, compare-and-set and leases. Writes commit synchronously: the control plane writes
its intent here first and then acts, so a crash between the two is repaired by the reconciler on the next
start.

The store is used from the event loop thread only; SQLite calls are short (a few hundred microseconds) and
happen on control-plane paths, never on a query or Data API request path. Several processes may open the
same file (the API workers read it); every write runs in an IMMEDIATE transaction, so the revision counter
and compare-and-set hold across processes too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._api import Conflict, Document, Lease, Versioned
from ._files import private_file

__all__ = ["Store", "Table"]


class Store:
    """A SQLite database holding named tables of JSON documents (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
        private_file(path)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._lock = threading.RLock()
        self._depth = 0
        with self.transaction():
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS documents ("
                " tbl TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, seq INTEGER NOT NULL,"
                " PRIMARY KEY (tbl, id))"
            )
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(documents)")}
            if "rev" not in columns:  # a store from before revisions: each document gets one of its own
                self._conn.execute("ALTER TABLE documents ADD COLUMN rev INTEGER NOT NULL DEFAULT 0")
                self._conn.execute("UPDATE documents SET rev = seq")
            self._conn.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            for name, column in (("seq", "seq"), ("revision", "rev")):
                self._conn.execute(
                    f"INSERT OR IGNORE INTO counters (name, value) SELECT ?, coalesce(max({column}), 0) FROM documents",
                    (name,),
                )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)"
            )

    def table(self, name: str) -> Table:
        """The table called ``name`` (created on first write)."""
        return Table(self, name)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one atomic commit; nests."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database file."""
        self._conn.close()

    def _bump(self, name: str) -> int:
        """The next value of counter ``name`` (inside a transaction): revisions and insertion order."""
        row = self._conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1"
            " RETURNING value",
            (name,),
        ).fetchone()
        return int(row[0])

    def _revision_of(self, table: str, key: str) -> int:
        row = self._conn.execute("SELECT rev FROM documents WHERE tbl = ? AND id = ?", (table, key)).fetchone()
        return 0 if row is None else int(row[0])

    # -- StateStore ----------------------------------------------------------------------------------------

    def read(self, table: str, key: str) -> Versioned | None:
        """The document under ``key`` with its revision, or None."""
        row = self._conn.execute("SELECT doc, rev FROM documents WHERE tbl = ? AND id = ?", (table, key)).fetchone()
        return None if row is None else Versioned(dict(json.loads(row[0])), int(row[1]))

    def write(self, table: str, key: str, doc: Document, *, expect: int | None = None) -> int:
        """Insert or replace ``key`` (a replaced document keeps its place in the order); CAS with ``expect``."""
        text = json.dumps(doc, separators=(",", ":"))
        with self.transaction():
            if expect is not None:
                found = self._revision_of(table, key)
                if found != expect:
                    raise Conflict(table, key, expect, found)
            rev = self._bump("revision")
            self._conn.execute(
                "INSERT INTO documents (tbl, id, doc, seq, rev) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (tbl, id) DO UPDATE SET doc = excluded.doc, rev = excluded.rev",
                (table, key, text, self._bump("seq"), rev),
            )
            return rev

    def remove(self, table: str, key: str, *, expect: int | None = None) -> bool:
        """Delete ``key``; with ``expect``, only if its revision is still that. True if it was there."""
        with self.transaction():
            if expect is not None:
                found = self._revision_of(table, key)
                if found != expect:
                    raise Conflict(table, key, expect, found)
            cur = self._conn.execute("DELETE FROM documents WHERE tbl = ? AND id = ?", (table, key))
            return cur.rowcount > 0

    def scan(self, table: str) -> list[tuple[str, Versioned]]:
        """Every (key, versioned document) of ``table``, oldest first."""
        rows = self._conn.execute("SELECT id, doc, rev FROM documents WHERE tbl = ? ORDER BY seq", (table,)).fetchall()
        return [(k, Versioned(dict(json.loads(d)), int(r))) for k, d, r in rows]

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False while another holder has it."""
        now = time.time()
        with self.transaction():
            row = self._conn.execute("SELECT holder, expires FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            self._conn.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires",
                (name, holder, now + ttl),
            )
            return True

    def release_lease(self, name: str, holder: str) -> None:
        """Give up lease ``name`` if ``holder`` holds it."""
        with self.transaction():
            self._conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def lease(self, name: str) -> Lease | None:
        """The lease ``name`` if it is held and unexpired."""
        row = self._conn.execute("SELECT holder, expires FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None or row[1] <= time.time():
            return None
        return Lease(name, str(row[0]), float(row[1]))


class Table:
    """A named collection of JSON documents, in insertion order (a view on one table of the store)."""

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self.name = name

    def get(self, key: str) -> Document | None:
        """The document stored under ``key``, or None."""
        found = self._store.read(self.name, key)
        return None if found is None else found.doc

    def read(self, key: str) -> Versioned | None:
        """The document under ``key`` with its revision, or None."""
        return self._store.read(self.name, key)

    def put(self, key: str, doc: Document, *, expect: int | None = None) -> None:
        """Insert or replace ``key``; a replaced document keeps its position in the order. CAS with ``expect``."""
        self._store.write(self.name, key, doc, expect=expect)

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Remove ``key``; True if it was there."""
        return self._store.remove(self.name, key, expect=expect)

    def items(self) -> list[tuple[str, Document]]:
        """Every (key, document), oldest first."""
        return [(k, v.doc) for k, v in self._store.scan(self.name)]

    def values(self) -> list[Document]:
        """Every document, oldest first."""
        return [d for _, d in self.items()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._store.read(self.name, key) is not None
