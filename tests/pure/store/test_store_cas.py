"""Pure tests of the SQLite store's interface: revisions, compare-and-set, leases, and an old file's upgrade."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from borealis.store import Conflict, Store


def test_revisions_grow_and_cas_refuses_a_stale_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    t = store.table("things")
    r1 = store.write("things", "a", {"v": 1}, expect=0)  # create only if absent
    with pytest.raises(Conflict):
        t.put("a", {"v": 9}, expect=0)
    r2 = store.write("things", "b", {"v": 1})
    assert r2 > r1
    seen = t.read("a")
    assert seen is not None and seen.revision == r1 and seen.doc == {"v": 1}
    r3 = store.write("things", "a", {"v": 2}, expect=r1)
    with pytest.raises(Conflict) as exc:
        t.put("a", {"v": 3}, expect=r1)  # someone else wrote since r1
    assert exc.value.found == r3
    assert t.get("a") == {"v": 2}
    with pytest.raises(Conflict):
        t.delete("a", expect=r1)
    assert t.delete("a", expect=r3)
    # A key deleted and created again never gets back an old revision.
    assert store.write("things", "a", {"v": 4}) > r3
    assert [k for k, _ in t.items()] == ["b", "a"]


def test_leases(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.acquire_lease("leader", "one", ttl=30)
    assert store.acquire_lease("leader", "one", ttl=30)  # a renewal
    assert not store.acquire_lease("leader", "two", ttl=30)
    held = store.lease("leader")
    assert held is not None and held.holder == "one" and held.expires > time.time()
    store.release_lease("leader", "two")  # not the holder: nothing happens
    assert store.lease("leader") is not None
    store.release_lease("leader", "one")
    assert store.lease("leader") is None
    assert store.acquire_lease("leader", "two", ttl=0.0)  # expires at once...
    assert store.acquire_lease("leader", "three", ttl=30)  # ...so another holder may take it
    # Another process on the same file sees the same lease.
    assert not Store(tmp_path / "s.db").acquire_lease("leader", "four", ttl=30)


def test_a_store_from_before_revisions_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE documents (tbl TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (tbl, id))"
    )
    conn.executemany(
        "INSERT INTO documents VALUES ('clusters', ?, ?, ?)",
        [("x", json.dumps({"id": "x"}), 1), ("y", json.dumps({"id": "y"}), 2)],
    )
    conn.commit()
    conn.close()
    t = Store(path).table("clusters")
    x, y = t.read("x"), t.read("y")
    assert x is not None and y is not None and 0 < x.revision < y.revision
    t.put("z", {"id": "z"})
    z = t.read("z")
    assert z is not None and z.revision > y.revision
    assert [k for k, _ in t.items()] == ["x", "y", "z"]
    t.put("x", {"id": "x", "n": 1}, expect=x.revision)
    assert t.get("x") == {"id": "x", "n": 1}
