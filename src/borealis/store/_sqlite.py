"""The embedded store: SQLite in WAL mode, one JSON document per record.

Each domain owns one or more named tables of documents keyed by a string id. Documents are plain JSON
objects, so the schema lives in the domain code and the store stays a small key-value layer that a later
backend (etcd) can replace. Writes commit synchronously: the control plane writes its intent here first and
then acts, so a crash between the two is repaired by the reconciler on the next start.

The store is used from the event loop thread only; SQLite calls are short (a few hundred microseconds) and
happen on control-plane paths, never on a query or Data API request path.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._files import private_file

__all__ = ["Store", "Table"]

Document = dict[str, Any]


class Store:
    """A SQLite database holding named tables of JSON documents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
        private_file(path)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS documents ("
            " tbl TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, seq INTEGER NOT NULL,"
            " PRIMARY KEY (tbl, id))"
        )
        self._lock = threading.RLock()
        self._depth = 0
        self._seq = self._conn.execute("SELECT coalesce(max(seq), 0) FROM documents").fetchone()[0]

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

    def _next_seq(self) -> int:
        self._seq += 1
        return int(self._seq)


class Table:
    """A named collection of JSON documents, in insertion order."""

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self.name = name

    def get(self, key: str) -> Document | None:
        """The document stored under ``key``, or None."""
        row = self._store._conn.execute(
            "SELECT doc FROM documents WHERE tbl = ? AND id = ?", (self.name, key)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, key: str, doc: Document) -> None:
        """Insert or replace ``key``; a replaced document keeps its position in the order."""
        with self._store.transaction():
            self._store._conn.execute(
                "INSERT INTO documents (tbl, id, doc, seq) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tbl, id) DO UPDATE SET doc = excluded.doc",
                (self.name, key, json.dumps(doc, separators=(",", ":")), self._store._next_seq()),
            )

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        with self._store.transaction():
            cur = self._store._conn.execute("DELETE FROM documents WHERE tbl = ? AND id = ?", (self.name, key))
            return cur.rowcount > 0

    def items(self) -> list[tuple[str, Document]]:
        """Every (key, document), oldest first."""
        rows = self._store._conn.execute(
            "SELECT id, doc FROM documents WHERE tbl = ? ORDER BY seq", (self.name,)
        ).fetchall()
        return [(k, dict(json.loads(d))) for k, d in rows]

    def values(self) -> list[Document]:
        """Every document, oldest first."""
        return [d for _, d in self.items()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None
