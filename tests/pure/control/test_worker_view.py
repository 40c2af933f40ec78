"""Pure test: an API worker's view of where postgres runs (read from the store, trusted for a second) is read
again before it says an instance does not serve, so it never contradicts a record the caller read just now."""

from __future__ import annotations

from pathlib import Path

from borealis.app import _StoreClusters
from borealis.control import Address
from borealis.store import Store


def test_a_server_that_started_since_the_last_read_is_seen_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.table("clusters").put("c1", {"id": "c1", "status": "available", "port": 5432})
    writer = {"id": "w1", "cluster": "c1", "role": "writer", "status": "available", "port": 6000, "resuming": True}
    store.table("instances").put("w1", writer)
    view = _StoreClusters(store, "127.0.0.1")
    assert view.server("w1") is None  # resuming: not started yet (and the view is now trusted for a second)
    # The resume ends: postgres listens and the mark goes, as the main process writes them.
    store.table("instances").put("w1", {**{k: v for k, v in writer.items() if k != "resuming"}, "pg_port": 6001})
    assert view.server("w1") == Address("127.0.0.1", 6001, None)
    store.close()
