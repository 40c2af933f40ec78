"""Time series as CloudWatch keeps them: one-second statistic sets for three hours, one-minute sets for 15 days.

A series is (namespace, metric name, dimensions, unit): CloudWatch aggregates by unit too, so values put with
another unit are kept apart (a read without a unit adds them up, one with a unit reads only that unit's). Points
arrive through :meth:`MetricStore.put` (from the sampler, once a second) and :meth:`MetricStore.put_statistics`
(PutMetricData), which only append to a list in memory; a background flush (:meth:`MetricStore.flush`, from a
thread) writes them to ``metrics.db`` in the data directory (SQLite, WAL, its own file so the control plane's
store never waits on it). So a restart keeps the history, and nothing on a request path writes to the disk.
Reads (:meth:`MetricStore.query`) merge the stored rows with the points not yet flushed.

Each second and each minute is a statistic set (count, sum, min, max), as CloudWatch aggregates: every value
put in the same second counts (PutMetricData several times a second, Values with Counts, StatisticValues).
Percentiles need the values themselves (CloudWatch: raw values, or statistic sets with SampleCount 1 or Minimum
equal to Maximum): a set whose minimum equals its maximum is its own distribution; a second that holds several
different values keeps them as ``value:count`` pairs in ``dist``; a second or minute with neither (a statistic
set of different values, or more pairs than :data:`_MAX_DIST_TEXT` allows) has no percentiles. Periods of a
minute and more take their percentiles from the seconds while those are kept (3 hours), after that only from
minutes of one value. Negative values have no percentiles, as on CloudWatch.

Retention follows CloudWatch: periods under 60 s are served from the one-second sets of the last 3 hours;
periods of 60 s and more from the one-minute sets of the last 15 days (and from the seconds where the minutes
do not reach yet). Older rows are deleted by the flush. ``metrics.db`` files of schema 0 (one mean per second,
one unit per metric) are migrated when opened.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ._stats import compute, parse

__all__ = ["MINUTE_RETENTION", "SECOND_RETENTION", "Datapoint", "MetricStore", "Series", "aggregate"]

SECOND_RETENTION = 3 * 3600
"""Seconds one-second points are kept (CloudWatch: high-resolution data for 3 hours)."""
MINUTE_RETENTION = 15 * 86400
"""Seconds one-minute aggregates are kept (CloudWatch: 60-second data for 15 days)."""

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, dims TEXT NOT NULL, unit TEXT NOT NULL,
    last REAL NOT NULL DEFAULT 0, UNIQUE (namespace, name, dims, unit));
CREATE TABLE IF NOT EXISTS second (series INTEGER NOT NULL, t INTEGER NOT NULL, n REAL NOT NULL, sum REAL NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, dist TEXT, PRIMARY KEY (series, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minute (series INTEGER NOT NULL, t INTEGER NOT NULL, n REAL NOT NULL, sum REAL NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, t)) WITHOUT ROWID;
"""
# Schema 0 kept one mean per second and one unit per metric; its rows become statistic sets of one value.
_MIGRATE_0 = """
ALTER TABLE series RENAME TO series_0;
ALTER TABLE second RENAME TO second_0;
{schema}
INSERT INTO series SELECT id, namespace, name, dims, unit, last FROM series_0;
INSERT INTO second SELECT series, t, 1, value, value, value, NULL FROM second_0;
DROP TABLE series_0;
DROP TABLE second_0;
"""
_MAX_DIST_TEXT = 65536
"""Longest ``dist`` of one second (about 3,000 different values); a longer one is dropped (no percentiles)."""

Dimensions = tuple[tuple[str, str], ...]
_K = TypeVar("_K")
_Cell = list[float]
"""A statistic set being added up: [count, sum, min, max]."""
_Dist = dict[float, float]
"""Values and how many times each was seen."""


@dataclass(frozen=True, slots=True)
class Series:
    """One metric: namespace, name, dimensions (sorted by name), unit, and when it last had a point."""

    namespace: str
    name: str
    dimensions: Dimensions
    unit: str
    last: float


@dataclass(frozen=True, slots=True)
class Datapoint:
    """The statistics of one period that starts at ``at`` (epoch seconds)."""

    at: float
    count: float
    sum: float
    minimum: float
    maximum: float
    values: tuple[tuple[float, float], ...] | None = None
    """The values and their counts, ascending, for percentiles; None when they are not known."""

    def statistic(self, name: str) -> float | None:
        """``Average``, ``Sum``, ``Minimum``, ``Maximum``, ``SampleCount`` or an extended statistic (``p99``,
        ``tm90``, ``IQM``, ``PR(:300)``, ... metrics/_stats.py); None if it cannot be computed."""
        if name == "Average":
            return self.sum / self.count if self.count else None
        if name == "Sum":
            return self.sum
        if name == "Minimum":
            return self.minimum
        if name == "Maximum":
            return self.maximum
        if name == "SampleCount":
            return self.count
        extended = parse(name)
        if extended is None or not self.values or self.minimum < 0:
            return None  # CloudWatch: no percentiles where a value is negative or the values are not known
        return compute(extended, self.values)


def _dims(dimensions: Mapping[str, str]) -> Dimensions:
    return tuple(sorted((str(k), str(v)) for k, v in dimensions.items()))


def aggregate(points: Iterable[tuple[float, float]], start: float, end: float, period: int) -> list[Datapoint]:
    """Group (time, value) points in [start, end) into periods starting at ``start``; empty periods left out."""
    buckets: dict[int, list[tuple[float, float, float, float, str | None]]] = {}
    for t, v in points:
        if start <= t < end:
            buckets.setdefault(int((t - start) // period), []).append((1.0, v, v, v, None))
    return [_datapoint(start + k * period, rows) for k, rows in sorted(buckets.items())]


class MetricStore:
    """The metrics of one Borealis, in ``<data_dir>/metrics.db``; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        _migrate(self._db)
        self._ids: dict[tuple[str, str, Dimensions, str], int] = {}
        self._units: dict[tuple[str, str, Dimensions], list[int]] = {}
        self._series: dict[int, Series] = {}
        for sid, namespace, name, dims, unit, last in self._db.execute(
            "SELECT id, namespace, name, dims, unit, last FROM series ORDER BY id"
        ):
            dimensions: Dimensions = tuple((str(k), str(v)) for k, v in json.loads(dims))
            self._ids[(namespace, name, dimensions, unit)] = sid
            self._units.setdefault((namespace, name, dimensions), []).append(sid)
            self._series[sid] = Series(namespace, name, dimensions, unit, last)
        self._pending: list[tuple[int, int, float, float, float, float]] = []
        self._pruned = 0.0
        self.recording = True
        """False: :meth:`put` (Borealis's own sampling) records nothing (settings.monitoring off)."""

    # ------------------------------------------------------------------------------------------- writes

    def put(self, namespace: str, name: str, dimensions: Mapping[str, str], value: float, unit: str, at: float) -> None:
        """Record ``value`` for the series at time ``at`` (epoch seconds), unless :attr:`recording` is off."""
        if not self.recording:
            return
        self.put_statistics(namespace, name, dimensions, unit, at, 1.0, value, value, value)

    def put_statistics(
        self,
        namespace: str,
        name: str,
        dimensions: Mapping[str, str],
        unit: str,
        at: float,
        count: float,
        total: float,
        minimum: float,
        maximum: float,
    ) -> None:
        """Record a statistic set (PutMetricData's StatisticValues; ``count`` values summing to ``total``) at ``at``.

        Sets within one second add up (count, sum, min, max), in the one-second and the one-minute data alike.
        """
        if not all(math.isfinite(v) for v in (count, total, minimum, maximum)) or count <= 0:
            return
        dims = _dims(dimensions)
        key = (namespace, name, dims, unit)
        with self._lock:
            sid = self._ids.get(key)
            if sid is None:
                cursor = self._db.execute(
                    "INSERT INTO series (namespace, name, dims, unit, last) VALUES (?, ?, ?, ?, ?)",
                    (namespace, name, json.dumps(dims), unit, at),
                )
                sid = int(cursor.lastrowid or 0)
                self._ids[key] = sid
                self._units.setdefault((namespace, name, dims), []).append(sid)
            previous = self._series.get(sid)
            last = at if previous is None else max(previous.last, at)
            self._series[sid] = Series(namespace, name, dims, unit, last)
            self._pending.append((sid, int(at), float(count), float(total), float(minimum), float(maximum)))

    def flush(self, now: float | None = None) -> int:
        """Write the pending points (seconds, and their minutes folded in); prune old rows now and then.

        Returns how many points were written. Call it from a thread: it touches the disk.
        """
        now = time.time() if now is None else now
        with self._lock:
            pending, self._pending = self._pending, []
            last = {sid: s.last for sid, s in self._series.items()}
        if not pending:
            return 0
        seconds, dists = _merge(((sid, t), stats) for sid, t, *stats in pending)
        minutes, _ = _merge([((sid, t - t % 60), stats) for (sid, t), stats in seconds.items()], values=False)
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                # A second flushed twice adds up; its values join while both sides know theirs (a set of one
                # value knows it: min = max) and the text stays under _MAX_DIST_TEXT.
                db.executemany(
                    "INSERT INTO second (series, t, n, sum, min, max, dist) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (series, t) DO UPDATE SET n = n + excluded.n, sum = sum + excluded.sum, "
                    "min = MIN(min, excluded.min), max = MAX(max, excluded.max), dist = CASE "
                    "WHEN (dist IS NULL AND min < max) OR (excluded.dist IS NULL AND excluded.min < excluded.max) "
                    f"OR length(dist) + length(excluded.dist) > {_MAX_DIST_TEXT} THEN NULL "
                    "ELSE coalesce(dist, printf('%!.17g:%!.17g', min, n)) || ',' || "
                    "coalesce(excluded.dist, printf('%!.17g:%!.17g', excluded.min, excluded.n)) END",
                    [(sid, t, *v, _dist_text(dists.get((sid, t)))) for (sid, t), v in seconds.items()],
                )
                db.executemany(
                    "INSERT INTO minute (series, t, n, sum, min, max) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (series, t) DO UPDATE SET n = n + excluded.n, sum = sum + excluded.sum, "
                    "min = MIN(min, excluded.min), max = MAX(max, excluded.max)",
                    [(sid, t, *v) for (sid, t), v in minutes.items()],
                )
                db.executemany(
                    "UPDATE series SET last = ? WHERE id = ?", [(last[sid], sid) for sid in {k[0] for k in seconds}]
                )
                if now - self._pruned > 600:
                    db.execute("DELETE FROM second WHERE t < ?", (int(now - SECOND_RETENTION),))
                    db.execute("DELETE FROM minute WHERE t < ?", (int(now - MINUTE_RETENTION),))
                    self._pruned = now
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(seconds)

    def close(self) -> None:
        """Flush what is pending and close the file."""
        self.flush()
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------------- reads

    def series(self, namespace: str | None = None, name: str | None = None) -> list[Series]:
        """Every metric (optionally of one namespace and metric name), once whatever its units, in a stable order.

        A metric put with several units shows the unit of its newest point.
        """
        with self._lock:
            found = [
                self._metric(sids)
                for (ns, n, _), sids in self._units.items()
                if (namespace is None or ns == namespace) and (name is None or n == name)
            ]
        return sorted(found, key=lambda s: (s.namespace, s.name, s.dimensions))

    def _metric(self, sids: Sequence[int]) -> Series:
        return max((self._series[sid] for sid in sids), key=lambda s: s.last)

    def find(self, namespace: str, name: str, dimensions: Mapping[str, str]) -> Series | None:
        """The metric with exactly these dimensions, if it exists (its newest unit, as :meth:`series`)."""
        with self._lock:
            sids = self._units.get((namespace, name, _dims(dimensions)))
            return None if not sids else self._metric(sids)

    def units(self, namespace: str, name: str, dimensions: Mapping[str, str]) -> list[str]:
        """The units this metric has points in, in the order they first came."""
        with self._lock:
            return [self._series[sid].unit for sid in self._units.get((namespace, name, _dims(dimensions)), ())]

    def query(
        self,
        namespace: str,
        name: str,
        dimensions: Mapping[str, str],
        start: float,
        end: float,
        period: int,
        *,
        unit: str | None = None,
        percentiles: bool = False,
        now: float | None = None,
    ) -> list[Datapoint]:
        """The metric's datapoints of ``period`` seconds in [start, end), oldest first: of one ``unit``, or of
        all its units added up.

        Periods under 60 s read the one-second sets (the last 3 hours only); longer ones read the one-minute
        sets, completed by one-second sets for the minutes not flushed yet. With ``percentiles``, datapoints
        carry their values where known (see the module's docstring).
        """
        now = time.time() if now is None else now
        floor = max(start, now - SECOND_RETENTION)
        with self._lock:
            sids = [
                sid
                for sid in self._units.get((namespace, name, _dims(dimensions)), ())
                if unit is None or self._series[sid].unit == unit
            ]
            if not sids:
                return []
            wanted = set(sids)
            pending = [(t, (n, s, lo, hi, None)) for sid, t, n, s, lo, hi in self._pending if sid in wanted]
            marks = ",".join("?" * len(sids))
            fine = period < 60 or period % 60
            seconds: list[tuple[int, tuple[float, float, float, float, str | None]]] = []
            if fine or percentiles:
                rows = self._db.execute(
                    f"SELECT t, n, sum, min, max, dist FROM second WHERE series IN ({marks}) AND t >= ? AND t < ?",
                    (*sids, math.ceil(floor), end),
                ).fetchall()
                seconds = [(int(t), (n, s, lo, hi, d)) for t, n, s, lo, hi, d in rows]
                seconds += [(t, c) for t, c in pending if floor <= t < end]
            if fine:
                return _fold(seconds, start, end, period, values=percentiles)
            rows = self._db.execute(
                f"SELECT t, n, sum, min, max FROM minute WHERE series IN ({marks}) AND t >= ? AND t < ?",
                (*sids, start - start % 60, end),
            ).fetchall()
        minutes = [(int(t), (n, s, lo, hi, None)) for t, n, s, lo, hi in rows]
        minutes += [(t - t % 60, c) for t, c in pending if start <= t < end]
        points = _fold(minutes, start, end, period, values=percentiles)
        if not percentiles:
            return points
        # Periods the one-second data covers whole take their values from it.
        covered = {p.at: p for p in _fold(seconds, start, end, period) if p.at >= floor}
        return [
            p if p.at not in covered else Datapoint(p.at, p.count, p.sum, p.minimum, p.maximum, covered[p.at].values)
            for p in points
        ]


def _migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a ``metrics.db`` of an older schema to this one (in one transaction)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version >= _SCHEMA_VERSION:
        return
    columns = {row[1] for row in db.execute("PRAGMA table_info(second)")}
    db.execute("BEGIN")
    try:
        script = _MIGRATE_0.format(schema=_SCHEMA) if "value" in columns else _SCHEMA
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _merge(
    items: Iterable[tuple[_K, Sequence[float]]], *, values: bool = True
) -> tuple[dict[_K, _Cell], dict[_K, _Dist | None]]:
    """Add up (count, sum, min, max) statistic sets by key; and, with ``values``, for the keys that got sets of
    different values, those values (None where one set had different values of its own: they are not known)."""
    merged: dict[_K, _Cell] = {}
    dists: dict[_K, _Dist | None] = {}
    for key, (n, total, lo, hi) in items:
        m = merged.get(key)
        if m is None:
            merged[key] = [n, total, lo, hi]
            continue
        if values:
            if key not in dists:
                dists[key] = {m[2]: m[0]} if m[2] == m[3] else None
            dist = dists[key]
            if dist is not None and lo == hi:
                dist[lo] = dist.get(lo, 0.0) + n
            elif dist is not None:
                dists[key] = None
        m[0] += n
        m[1] += total
        m[2] = min(m[2], lo)
        m[3] = max(m[3], hi)
    return merged, {k: v for k, v in dists.items() if v is None or len(v) > 1}


def _dist_text(dist: _Dist | None) -> str | None:
    """``value:count`` pairs, or None (not known, or too long to keep)."""
    if not dist:
        return None
    text = ",".join(f"{v!r}:{c!r}" for v, c in dist.items())
    return text if len(text) <= _MAX_DIST_TEXT else None


def _add_dist(into: _Dist, text: str | None, n: float, lo: float, hi: float) -> bool:
    """Add a set's values to ``into``; False if they are not known."""
    if text is None:
        if lo != hi:
            return False
        into[lo] = into.get(lo, 0.0) + n
        return True
    for pair in text.split(","):
        value, _, count = pair.partition(":")
        v = float(value)
        into[v] = into.get(v, 0.0) + float(count)
    return True


def _datapoint(
    at: float, cells: Sequence[tuple[float, float, float, float, str | None]], values: bool = True
) -> Datapoint:
    if len(cells) == 1 and not values:  # one set in the period (a second of the sampler): as it is
        n, total, lo, hi, _ = cells[0]
        return Datapoint(at, n, total, lo, hi)
    n = total = 0.0
    lo, hi = math.inf, -math.inf
    dist: _Dist | None = {} if values else None
    for cn, cs, clo, chi, text in cells:
        n += cn
        total += cs
        lo, hi = min(lo, clo), max(hi, chi)
        if dist is not None and not _add_dist(dist, text, cn, clo, chi):
            dist = None
    return Datapoint(at, n, total, lo, hi, None if dist is None else tuple(sorted(dist.items())))


def _fold(
    cells: Iterable[tuple[int, tuple[float, float, float, float, str | None]]],
    start: float,
    end: float,
    period: int,
    *,
    values: bool = True,
) -> list[Datapoint]:
    """Statistic sets by time folded into periods starting at ``start``; empty periods left out; with
    ``values``, each datapoint carries its values (for percentiles) where they are known."""
    buckets: dict[int, list[tuple[float, float, float, float, str | None]]] = {}
    for t, cell in cells:
        if start <= t < end:
            buckets.setdefault(int((t - start) // period), []).append(cell)
    return [_datapoint(start + k * period, rows, values) for k, rows in sorted(buckets.items())]
