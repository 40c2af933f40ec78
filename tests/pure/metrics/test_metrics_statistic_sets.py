"""The metric store keeps statistic sets per second and minute (CloudWatch aggregates, it never averages two
values put in the same second), values for percentiles where CloudWatch has them, units apart, and migrates a
``metrics.db`` of the first schema (one mean a second)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from borealis.metrics import MetricStore

NS = "App"
DIMS = {"Queue": "jobs"}
T0 = 1_800_000_000.0  # a whole minute
NOW = T0 + 120


def stats(store: MetricStore, period: int, *, unit: str | None = None, at: float = T0) -> list[tuple[float, ...]]:
    points = store.query(NS, "Depth", DIMS, at, at + period, period, unit=unit, percentiles=True, now=NOW)
    out = []
    for p in points:
        row = [p.statistic(s) for s in ("SampleCount", "Sum", "Minimum", "Maximum", "Average", "p50", "p99")]
        out.append(tuple(-1.0 if v is None else v for v in row))
    return out


def test_values_in_one_second_all_count(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    for v in (1.0, 2.0, 3.0, 10.0):
        store.put_statistics(NS, "Depth", DIMS, "Count", T0 + 0.5, 1, v, v, v)
    expected = [(4.0, 16.0, 1.0, 10.0, 4.0, 2.0, 10.0)]
    assert stats(store, 1) == expected  # pending
    store.flush(NOW)
    assert stats(store, 1) == expected
    assert stats(store, 60) == expected  # the minute, its values from the seconds
    # The same second again in a later flush adds up in SQL, values joined.
    store.put_statistics(NS, "Depth", DIMS, "Count", T0, 3, 60.0, 20.0, 20.0)
    store.flush(NOW)
    assert stats(store, 1) == [(7.0, 76.0, 1.0, 20.0, 76.0 / 7, 10.0, 20.0)]
    assert stats(store, 60) == [(7.0, 76.0, 1.0, 20.0, 76.0 / 7, 10.0, 20.0)]
    store.close()
    again = MetricStore(tmp_path / "metrics.db")
    assert stats(again, 5) == [(7.0, 76.0, 1.0, 20.0, 76.0 / 7, 10.0, 20.0)]
    again.close()


def test_percentiles_only_where_values_are_known(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    # A statistic set of different values: no percentiles (CloudWatch needs raw values) for its period.
    store.put_statistics(NS, "Depth", DIMS, "Count", T0, 2, 20.0, 8.0, 12.0)
    store.put_statistics(NS, "Depth", DIMS, "Count", T0, 1, 5.0, 5.0, 5.0)
    store.flush(NOW)
    assert stats(store, 1) == [(3.0, 25.0, 5.0, 12.0, 25.0 / 3, -1.0, -1.0)]
    # The next second: a set of one value (Minimum = Maximum) has percentiles.
    store.put_statistics(NS, "Depth", DIMS, "Count", T0 + 1, 4, 28.0, 7.0, 7.0)
    store.flush(NOW)
    assert stats(store, 1, at=T0 + 1) == [(4.0, 28.0, 7.0, 7.0, 7.0, 7.0, 7.0)]
    # Negative values: no percentiles, as on CloudWatch.
    store.put_statistics(NS, "Depth", DIMS, "Count", T0 + 2, 1, -1.0, -1.0, -1.0)
    assert stats(store, 1, at=T0 + 2) == [(1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0)]
    store.close()


def test_units_are_kept_apart(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    store.put(NS, "Depth", DIMS, 4.0, "Count", T0)
    store.put(NS, "Depth", DIMS, 2.0, "Seconds", T0 + 1)
    store.flush(NOW)
    assert store.units(NS, "Depth", DIMS) == ["Count", "Seconds"]
    assert [s.unit for s in store.series(NS)] == ["Seconds"]  # one metric, its newest unit
    assert stats(store, 60, unit="Count") == [(1.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0)]
    assert stats(store, 60, unit="Seconds") == [(1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)]
    assert stats(store, 60, unit="Bytes") == []
    assert stats(store, 60) == [(2.0, 6.0, 2.0, 4.0, 3.0, 2.0, 4.0)]
    store.close()


def test_a_first_schema_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE series (id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, dims TEXT NOT NULL,
            unit TEXT NOT NULL, last REAL NOT NULL DEFAULT 0, UNIQUE (namespace, name, dims));
        CREATE TABLE second (series INTEGER NOT NULL, t INTEGER NOT NULL, value REAL NOT NULL,
            PRIMARY KEY (series, t)) WITHOUT ROWID;
        CREATE TABLE minute (series INTEGER NOT NULL, t INTEGER NOT NULL, n REAL NOT NULL, sum REAL NOT NULL,
            min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, t)) WITHOUT ROWID;
        """
    )
    old.execute("INSERT INTO series VALUES (7, ?, 'Depth', ?, 'Count', ?)", (NS, '[["Queue", "jobs"]]', T0 + 1))
    old.executemany("INSERT INTO second VALUES (7, ?, ?)", [(int(T0), 3.0), (int(T0) + 1, 5.0)])
    old.execute("INSERT INTO minute VALUES (7, ?, 2, 8, 3, 5)", (int(T0),))
    old.commit()
    old.close()
    store = MetricStore(path)
    assert stats(store, 1) == [(1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0)]
    assert stats(store, 60) == [(2.0, 8.0, 3.0, 5.0, 4.0, 3.0, 5.0)]
    # New points add to the migrated second as statistic sets.
    store.put(NS, "Depth", DIMS, 9.0, "Count", T0)
    store.put(NS, "Depth", DIMS, 1.0, "Percent", T0)
    store.flush(NOW)
    assert stats(store, 1, unit="Count") == [(2.0, 12.0, 3.0, 9.0, 6.0, 3.0, 9.0)]
    assert store.units(NS, "Depth", DIMS) == ["Count", "Percent"]
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (1,)
    MetricStore(path).close()  # opening a migrated file again changes nothing
