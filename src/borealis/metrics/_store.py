"""Time series as CloudWatch keeps them: one-second points for three hours, one-minute aggregates for 15 days.

A series is (namespace, metric name, dimensions) with a unit, as CloudWatch names a metric. Points arrive
through :meth:`MetricStore.put` (from the sampler, once a second) and :meth:`MetricStore.put_statistics`
(PutMetricData), which only append to a list in memory; a
background flush (:meth:`MetricStore.flush`, from a thread) writes them to ``metrics.db`` in the data
directory (SQLite, WAL, its own file so the control plane's store never waits on it), and folds each minute
into a (count, sum, min, max) row as it goes. So a restart keeps the history, and nothing on a request path
writes to the disk. Reads (:meth:`MetricStore.query`) merge the stored rows with the points not yet flushed.

Retention follows CloudWatch: periods under 60 s are served from the one-second points of the last 3 hours;
periods of 60 s and more from the one-minute aggregates of the last 15 days (and from the seconds where the
minutes do not reach yet). Older rows are deleted by the flush.
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

__all__ = ["MINUTE_RETENTION", "SECOND_RETENTION", "Datapoint", "MetricStore", "Series", "aggregate"]

SECOND_RETENTION = 3 * 3600
"""Seconds one-second points are kept (CloudWatch: high-resolution data for 3 hours)."""
MINUTE_RETENTION = 15 * 86400
"""Seconds one-minute aggregates are kept (CloudWatch: 60-second data for 15 days)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, dims TEXT NOT NULL, unit TEXT NOT NULL,
    last REAL NOT NULL DEFAULT 0, UNIQUE (namespace, name, dims));
CREATE TABLE IF NOT EXISTS second (series INTEGER NOT NULL, t INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (series, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minute (series INTEGER NOT NULL, t INTEGER NOT NULL, n REAL NOT NULL, sum REAL NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (series, t)) WITHOUT ROWID;
"""

Dimensions = tuple[tuple[str, str], ...]
_K = TypeVar("_K", bound=tuple[int, ...])


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
    values: tuple[float, ...] = ()
    """The raw points, for percentiles (one-second data only)."""

    def statistic(self, name: str) -> float | None:
        """``Average``, ``Sum``, ``Minimum``, ``Maximum``, ``SampleCount`` or ``pNN`` (None if not computable)."""
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
        if name.startswith("p") and self.values:
            try:
                p = float(name[1:])
            except ValueError:
                return None
            if not 0 <= p <= 100:
                return None
            ordered = sorted(self.values)
            # Nearest rank, as CloudWatch's percentiles over raw values.
            rank = max(1, math.ceil(p / 100 * len(ordered)))
            return ordered[rank - 1]
        return None


def _dims(dimensions: Mapping[str, str]) -> Dimensions:
    return tuple(sorted((str(k), str(v)) for k, v in dimensions.items()))


def aggregate(points: Iterable[tuple[float, float]], start: float, end: float, period: int) -> list[Datapoint]:
    """Group (time, value) points in [start, end) into periods starting at ``start``; empty periods left out."""
    buckets: dict[int, list[float]] = {}
    for t, v in points:
        if start <= t < end:
            buckets.setdefault(int((t - start) // period), []).append(v)
    return [
        Datapoint(start + k * period, len(vs), sum(vs), min(vs), max(vs), tuple(vs))
        for k, vs in sorted(buckets.items())
    ]


class MetricStore:
    """The metrics of one Borealis, in ``<data_dir>/metrics.db``; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._ids: dict[tuple[str, str, Dimensions], int] = {}
        self._series: dict[int, Series] = {}
        for sid, namespace, name, dims, unit, last in self._db.execute(
            "SELECT id, namespace, name, dims, unit, last FROM series"
        ):
            dimensions: Dimensions = tuple((str(k), str(v)) for k, v in json.loads(dims))
            self._ids[(namespace, name, dimensions)] = sid
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

        Values within one second add up in the minute aggregates; the one-second point keeps their average.
        """
        if not all(math.isfinite(v) for v in (count, total, minimum, maximum)) or count <= 0:
            return
        key = (namespace, name, _dims(dimensions))
        with self._lock:
            sid = self._ids.get(key)
            if sid is None:
                cursor = self._db.execute(
                    "INSERT INTO series (namespace, name, dims, unit, last) VALUES (?, ?, ?, ?, ?)",
                    (namespace, name, json.dumps(key[2]), unit, at),
                )
                sid = int(cursor.lastrowid or 0)
                self._ids[key] = sid
            previous = self._series.get(sid)
            last = at if previous is None else max(previous.last, at)
            self._series[sid] = Series(namespace, name, key[2], unit, last)
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
        seconds = _merge(((sid, t), stats) for sid, t, *stats in pending)
        minutes = _merge(((sid, t - t % 60), stats) for (sid, t), stats in seconds.items())
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO second (series, t, value) VALUES (?, ?, ?)",
                    [(sid, t, v[1] / v[0]) for (sid, t), v in seconds.items()],
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
        """Every series (optionally of one namespace and metric name), in a stable order."""
        with self._lock:
            found = [
                s
                for s in self._series.values()
                if (namespace is None or s.namespace == namespace) and (name is None or s.name == name)
            ]
        return sorted(found, key=lambda s: (s.namespace, s.name, s.dimensions))

    def find(self, namespace: str, name: str, dimensions: Mapping[str, str]) -> Series | None:
        """The series with exactly these dimensions, if it exists."""
        with self._lock:
            sid = self._ids.get((namespace, name, _dims(dimensions)))
            return None if sid is None else self._series[sid]

    def query(
        self,
        namespace: str,
        name: str,
        dimensions: Mapping[str, str],
        start: float,
        end: float,
        period: int,
        *,
        now: float | None = None,
    ) -> list[Datapoint]:
        """The series' datapoints of ``period`` seconds in [start, end), oldest first.

        Periods under 60 s read the one-second points (the last 3 hours only); longer ones read the one-minute
        aggregates, completed by one-second points for the minutes not flushed yet.
        """
        now = time.time() if now is None else now
        with self._lock:
            sid = self._ids.get((namespace, name, _dims(dimensions)))
            if sid is None:
                return []
            pending = _merge(((t,), stats) for s, t, *stats in self._pending if s == sid and start <= t < end)
            if period < 60 or period % 60:
                floor = max(start, now - SECOND_RETENTION)
                rows = self._db.execute(
                    "SELECT t, value FROM second WHERE series = ? AND t >= ? AND t < ?", (sid, floor, end)
                ).fetchall()
                points = {int(t): float(v) for t, v in rows}
                points.update({t: v[1] / v[0] for (t,), v in pending.items() if t >= floor})
                return aggregate(sorted(points.items()), start, end, period)
            rows = self._db.execute(
                "SELECT t, n, sum, min, max FROM minute WHERE series = ? AND t >= ? AND t < ?",
                (sid, start - start % 60, end),
            ).fetchall()
        minutes: dict[int, list[float]] = {int(t): [n, s, lo, hi] for t, n, s, lo, hi in rows}
        for (t,), (n, total, lo, hi) in pending.items():
            m = minutes.setdefault(t - t % 60, [0.0, 0.0, math.inf, -math.inf])
            m[0] += n
            m[1] += total
            m[2] = min(m[2], lo)
            m[3] = max(m[3], hi)
        return _fold(minutes, start, end, period)


def _merge(items: Iterable[tuple[_K, Sequence[float]]]) -> dict[_K, list[float]]:
    """Add up (count, sum, min, max) statistic sets by key."""
    merged: dict[_K, list[float]] = {}
    for key, (n, total, lo, hi) in items:
        m = merged.get(key)
        if m is None:
            merged[key] = [n, total, lo, hi]
        else:
            m[0] += n
            m[1] += total
            m[2] = min(m[2], lo)
            m[3] = max(m[3], hi)
    return merged


def _fold(minutes: Mapping[int, Sequence[float]], start: float, end: float, period: int) -> list[Datapoint]:
    buckets: dict[int, list[float]] = {}
    for t, (n, s, lo, hi) in minutes.items():
        if not start <= t < end:
            continue
        b = buckets.setdefault(int((t - start) // period), [0.0, 0.0, math.inf, -math.inf])
        b[0] += n
        b[1] += s
        b[2] = min(b[2], lo)
        b[3] = max(b[3], hi)
    return [Datapoint(start + k * period, n, s, lo, hi) for k, (n, s, lo, hi) in sorted(buckets.items())]
