"""The Performance Insights store: seconds in memory, minutes kept across a reopen, memory bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.insights import Session, load_series
from borealis.insights import _store as store_module
from borealis.insights._store import InsightsStore


def _s(query: str, wait: tuple[str, str] | None = ("Timeout", "PgSleep")) -> Session:
    return Session("app", 10, "postgres", 5, "psql", "[local]", *(wait or (None, None)), query=query, query_id=7)


def test_minutes_survive_a_reopen_and_seconds_serve_the_last_hour(tmp_path: Path) -> None:
    path = tmp_path / "insights.db"
    store = InsightsStore(path)
    t0 = 1_800_000_000 - 1_800_000_000 % 60  # a minute boundary
    for t in range(t0, t0 + 90):
        store.record("i1", t, [_s("select pg_sleep(1)")] * 2 if t < t0 + 30 else [])
    store.record_statements("i1", t0 + 10, {"7": (5.0, 50.0, 5.0)})
    buckets, keys = store.buckets("i1", t0, t0 + 90, fine=True)
    assert len(buckets) == 90
    total = load_series(buckets, keys, start=t0, end=t0 + 120, period=60)[0][1]
    assert total == [(t0, 1.0), (t0 + 60, 0.0)]
    store.flush(now=t0 + 90)  # the first minute is done; the second still runs
    store.close()  # writes the rest

    again = InsightsStore(path)
    minutes, keys = again.buckets("i1", t0, t0 + 120, fine=False)
    assert [(b.start, b.samples) for b in minutes] == [(t0, 60), (t0 + 60, 30)]
    series = load_series(minutes, keys, start=t0, end=t0 + 120, period=60, group="db.sql")
    assert series[0][1] == [(t0, 1.0), (t0 + 60, 0.0)]
    assert dict(series[1][0] or ())["db.sql.statement"] == "select pg_sleep(1)"
    assert again.buckets("i1", t0, t0 + 120, fine=True)[0] == []  # seconds are not kept across restarts
    stats = again.statement_stats("i1", t0, t0 + 60)
    assert (stats["7"].calls, stats["7"].time_ms) == (5.0, 50.0)
    assert again.key("i1", {"db.sql_tokenized.db_id": "7"}) is not None
    again.close()


def test_retention_drops_old_minutes(tmp_path: Path) -> None:
    store = InsightsStore(tmp_path / "insights.db")
    t0 = 1_800_000_000 - 1_800_000_000 % 60
    store.record("i1", t0, [_s("select 1")])
    store.set_retention("i1", 7)
    store.flush(now=t0 + 61)
    assert store.buckets("i1", t0, t0 + 60, fine=False)[0]
    store.flush(now=t0 + 8 * 86400)
    assert store.buckets("i1", t0, t0 + 60, fine=False)[0] == []
    store.close()


def test_a_deleted_instance_loses_its_samples(tmp_path: Path) -> None:
    store = InsightsStore(tmp_path / "insights.db")
    t0 = 1_800_000_000 - 1_800_000_000 % 60
    for name in ("gone", "kept"):
        store.record(name, t0, [_s("select 1")])
    store.flush(now=t0 + 61)
    store.keep_only({"kept"})
    assert store.buckets("gone", t0, t0 + 60, fine=False)[0] == []
    assert store.buckets("gone", t0, t0 + 60, fine=True)[0] == []
    assert [b.samples for b in store.buckets("kept", t0, t0 + 60, fine=False)[0]] == [1]
    store.close()


def test_memory_holds_a_bounded_number_of_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_KEYS", 50)
    store = InsightsStore(None)
    t0 = 1_800_000_000 - 1_800_000_000 % 60
    for t in range(t0, t0 + 200):  # every second a new statement: a key each
        store.record("i1", t, [_s(f"select * from t{t}")])
    store.flush(now=t0 + 200)
    seconds, keys = store.buckets("i1", t0, t0 + 200, fine=True)
    assert len(keys) <= 50 and len(seconds) <= 50
    assert seconds[-1].start == t0 + 199  # the newest seconds stay
    minutes, keys = store.buckets("i1", t0, t0 + 240, fine=False)
    assert sum(b.samples for b in minutes) == 200  # nothing lost: the minutes have every sample
    assert sum(sum(b.counts.values()) for b in minutes) == 200
    assert len(keys) == 200
