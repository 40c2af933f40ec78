"""The store: JSON documents by table, write-first, atomic transactions, durable across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.store import Sealer, Store


def test_put_get_delete_and_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    t = store.table("clusters")
    t.put("b", {"n": 1})
    t.put("a", {"n": 2})
    t.put("b", {"n": 3})  # a replaced document keeps its place
    assert t.get("b") == {"n": 3}
    assert [k for k, _ in t.items()] == ["b", "a"]
    assert "a" in t and "zz" not in t
    assert t.delete("a") is True
    assert t.delete("a") is False
    assert store.table("other").values() == []
    store.close()


def test_transaction_is_atomic(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    t = store.table("t")
    t.put("kept", {"v": 1})
    with pytest.raises(RuntimeError), store.transaction():
        t.put("lost", {"v": 2})
        with store.transaction():  # nesting joins the outer transaction
            t.put("lost-too", {"v": 3})
        raise RuntimeError("boom")
    assert t.get("lost") is None and t.get("lost-too") is None
    assert t.get("kept") == {"v": 1}
    store.close()


def test_durable_across_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.table("t").put("x", {"nested": {"list": [1, 2, None]}})
    store.close()
    again = Store(tmp_path / "s.db")
    assert again.table("t").get("x") == {"nested": {"list": [1, 2, None]}}
    again.table("t").put("y", {})
    assert [k for k, _ in again.table("t").items()] == ["x", "y"]
    again.close()


def test_sealer_round_trip_and_key_file(tmp_path: Path) -> None:
    key = tmp_path / "secrets.key"
    sealed = Sealer(key).seal("hunter2-password")
    assert "hunter2" not in sealed
    assert key.stat().st_mode & 0o777 == 0o600
    assert Sealer(key).open(sealed) == "hunter2-password"
