"""Where Performance Insights keeps its samples: seconds in memory, minutes on disk.

- Each sample (one second of one instance) goes to a ring of the last hour of seconds and is folded into its
  minute, in memory only: recording never touches the disk, so the sampler's loop never waits on it.
- :meth:`InsightsStore.flush` (from a thread, every few seconds) writes the finished minutes, the dimension
  keys they name and the statement statistics to ``insights.db`` (SQLite, WAL, a file of its own), and drops
  the rows older than each instance's retention period. So a restart keeps the minutes, as AWS keeps them for
  the retention period, and one-second data covers the last hour (:data:`SECONDS`).
- Memory is bounded: the ring per instance (:data:`SECONDS`), the sessions counted per sample
  (:data:`MAX_SESSIONS`) and the dimension keys held in memory (:data:`MAX_KEYS`: past it, the flush drops the
  oldest seconds, whose minutes are on disk by then).
"""

from __future__ import annotations

import collections
import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._model import Bucket, Session, session_key

__all__ = ["MAX_KEYS", "MAX_SESSIONS", "SECONDS", "InsightsStore", "StatementStats"]

SECONDS = 3600
"""One-second samples kept in memory per instance."""
MAX_SESSIONS = 1000
"""Active sessions counted in one sample (more than any instance here runs at once)."""
MAX_KEYS = 4000
"""Dimension keys (each with up to two statement texts) held in memory, over all instances."""
DEFAULT_RETENTION_DAYS = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (instance TEXT NOT NULL, kid TEXT NOT NULL, dims TEXT NOT NULL,
    last INTEGER NOT NULL, PRIMARY KEY (instance, kid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minute (instance TEXT NOT NULL, t INTEGER NOT NULL, kid TEXT NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (instance, t, kid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (instance TEXT NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (instance, t)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (instance TEXT NOT NULL, t INTEGER NOT NULL, queryid TEXT NOT NULL,
    calls REAL NOT NULL, time_ms REAL NOT NULL, rows REAL NOT NULL, PRIMARY KEY (instance, t, queryid)) WITHOUT ROWID;
"""


@dataclass(slots=True)
class StatementStats:
    """What pg_stat_statements counted for one query id over some time: calls, execution time, rows."""

    calls: float = 0.0
    time_ms: float = 0.0
    rows: float = 0.0

    def add(self, calls: float, time_ms: float, rows: float) -> None:
        """Add a delta."""
        self.calls += calls
        self.time_ms += time_ms
        self.rows += rows


@dataclass
class _Instance:
    seconds: collections.deque[Bucket]
    minutes: dict[int, Bucket]
    stats: dict[int, dict[str, StatementStats]]
    retention_days: int = DEFAULT_RETENTION_DAYS


class InsightsStore:
    """The Performance Insights samples of every instance; safe to call from several threads."""

    def __init__(self, path: Path | None) -> None:
        """Keep minutes in the SQLite file ``path`` (None: in memory only, for tests)."""
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:" if path is None else str(path), check_same_thread=False)
        self._db.isolation_level = None
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._instances: dict[str, _Instance] = {}
        self._keys: dict[str, dict[str, dict[str, str]]] = {}  # instance -> key id -> dimensions
        self._unsaved: set[tuple[str, str]] = set()

    def _instance(self, instance: str) -> _Instance:
        found = self._instances.get(instance)
        if found is None:
            found = self._instances[instance] = _Instance(collections.deque(maxlen=SECONDS), {}, {})
        return found

    # ------------------------------------------------------------------------------------------- writes

    def record(self, instance: str, at: int, sessions: Sequence[Session]) -> None:
        """One sample of ``instance`` at second ``at``: its active sessions (none: an idle second)."""
        second = Bucket(at, 1)
        dims_of: dict[str, tuple[tuple[str, str], ...]] = {}
        for session in sessions[:MAX_SESSIONS]:
            kid, dims = session_key(session)
            second.counts[kid] = second.counts.get(kid, 0) + 1
            dims_of[kid] = dims
        with self._lock:
            state = self._instance(instance)
            if state.seconds and state.seconds[-1].start >= at:
                return  # a second sampled twice (the clock stepped back): keep the first
            keys = self._keys.setdefault(instance, {})
            for kid, dims in dims_of.items():
                if kid not in keys:
                    keys[kid] = dict(dims)
                    self._unsaved.add((instance, kid))
            state.seconds.append(second)
            state.minutes.setdefault(at - at % 60, Bucket(at - at % 60)).add(second)

    def record_statements(self, instance: str, at: int, deltas: Mapping[str, tuple[float, float, float]]) -> None:
        """pg_stat_statements' counts since the previous reading, by query id: (calls, milliseconds, rows)."""
        with self._lock:
            minute = self._instance(instance).stats.setdefault(at - at % 60, {})
            for queryid, (calls, time_ms, rows) in deltas.items():
                minute.setdefault(queryid, StatementStats()).add(calls, time_ms, rows)

    def set_retention(self, instance: str, days: int) -> None:
        """How long the minutes of an instance are kept (its PerformanceInsightsRetentionPeriod)."""
        with self._lock:
            self._instance(instance).retention_days = days

    def flush(self, now: float | None = None, *, everything: bool = False) -> None:
        """Write the finished minutes (``everything``: the running ones too) and their keys; drop expired rows;
        bound the keys held in memory. Call it from a thread: it touches the disk."""
        now = time.time() if now is None else now
        current = (1 << 62) if everything else int(now) - int(now) % 60
        with self._lock:
            done: list[tuple[str, Bucket]] = []
            stats: list[tuple[str, int, dict[str, StatementStats]]] = []
            retention: dict[str, int] = {}
            for name, state in self._instances.items():
                retention[name] = state.retention_days
                for t in [t for t in state.minutes if t < current]:
                    done.append((name, state.minutes.pop(t)))
                for t in [t for t in state.stats if t < current]:
                    stats.append((name, t, state.stats.pop(t)))
            unsaved = [(i, k, self._keys[i][k]) for i, k in self._unsaved if k in self._keys.get(i, {})]
            self._unsaved.clear()
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT INTO keys (instance, kid, dims, last) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (instance, kid) DO UPDATE SET last = excluded.last",
                    [(i, k, json.dumps(d), int(now)) for i, k, d in unsaved],
                )
                for name, bucket in done:
                    db.execute(
                        "INSERT INTO samples (instance, t, n) VALUES (?, ?, ?) "
                        "ON CONFLICT (instance, t) DO UPDATE SET n = n + excluded.n",
                        (name, bucket.start, bucket.samples),
                    )
                    db.executemany(
                        "INSERT INTO minute (instance, t, kid, n) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (instance, t, kid) DO UPDATE SET n = n + excluded.n",
                        [(name, bucket.start, kid, n) for kid, n in bucket.counts.items()],
                    )
                for name, t, by_query in stats:
                    db.executemany(
                        "INSERT INTO stats (instance, t, queryid, calls, time_ms, rows) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (instance, t, queryid) DO UPDATE SET calls = calls + excluded.calls, "
                        "time_ms = time_ms + excluded.time_ms, rows = rows + excluded.rows",
                        [(name, t, q, s.calls, s.time_ms, s.rows) for q, s in by_query.items()],
                    )
                for name, days in retention.items():
                    cutoff = int(now) - days * 86400
                    for table in ("minute", "samples", "stats"):
                        db.execute(f"DELETE FROM {table} WHERE instance = ? AND t < ?", (name, cutoff))
                    db.execute("DELETE FROM keys WHERE instance = ? AND last < ?", (name, cutoff))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._trim()

    def _trim(self) -> None:
        """Keep in memory only the keys the seconds and unflushed minutes name; past MAX_KEYS, drop old seconds."""
        while True:
            used: dict[str, set[str]] = {}
            for name, state in self._instances.items():
                names = used.setdefault(name, set())
                for bucket in [*state.seconds, *state.minutes.values()]:
                    names.update(bucket.counts)
            if sum(len(v) for v in used.values()) <= MAX_KEYS:
                break
            longest = max(self._instances.values(), key=lambda s: len(s.seconds))
            if not longest.seconds:
                break
            for _ in range(max(1, len(longest.seconds) // 4)):
                longest.seconds.popleft()
        for name, keys in self._keys.items():
            keep = used.get(name, set())
            for kid in [k for k in keys if k not in keep]:
                del keys[kid]

    def keep_only(self, instances: set[str]) -> None:
        """Drop the data of every instance not in ``instances`` (deleted ones). Call it from a thread."""
        with self._lock:
            for name in [n for n in self._instances if n not in instances]:
                self._instances.pop(name, None)
                self._keys.pop(name, None)
            known = json.dumps(sorted(instances))
            for table in ("keys", "minute", "samples", "stats"):
                self._db.execute(
                    f"DELETE FROM {table} WHERE instance NOT IN (SELECT value FROM json_each(?))",
                    (known,),
                )

    def close(self) -> None:
        """Write what is pending (every minute, the current one included) and close the file."""
        self.flush(everything=True)
        with self._lock:
            self._db.close()

    # -------------------------------------------------------------------------------------------- reads

    def buckets(
        self, instance: str, start: int, end: int, *, fine: bool
    ) -> tuple[list[Bucket], dict[str, dict[str, str]]]:
        """The buckets of ``[start, end)`` (seconds when ``fine``, else minutes) and the dimensions of the keys
        they name."""
        with self._lock:
            state = self._instances.get(instance)
            keys = dict(self._keys.get(instance, {}))
            if fine:
                found = [b for b in state.seconds if start <= b.start < end] if state is not None else []
                return [Bucket(b.start, b.samples, dict(b.counts)) for b in found], keys
            minutes: dict[int, Bucket] = {}
            if state is not None:
                for t, bucket in state.minutes.items():
                    if start <= t < end:
                        minutes[t] = Bucket(t, bucket.samples, dict(bucket.counts))
            db = self._db
            for t, n in db.execute(
                "SELECT t, n FROM samples WHERE instance = ? AND t >= ? AND t < ?", (instance, start, end)
            ):
                minutes.setdefault(t, Bucket(t)).samples += n
            for t, kid, n in db.execute(
                "SELECT t, kid, n FROM minute WHERE instance = ? AND t >= ? AND t < ?", (instance, start, end)
            ):
                counts = minutes.setdefault(t, Bucket(t)).counts
                counts[kid] = counts.get(kid, 0) + n
            missing = {k for b in minutes.values() for k in b.counts if k not in keys}
            if missing:
                for kid, dims in db.execute(
                    "SELECT kid, dims FROM keys WHERE instance = ? AND kid IN (SELECT value FROM json_each(?))",
                    (instance, json.dumps(sorted(missing))),
                ):
                    keys[kid] = json.loads(dims)
        return sorted(minutes.values(), key=lambda b: b.start), keys

    def oldest_second(self, instance: str) -> int | None:
        """The first second held in memory for an instance (None: none)."""
        with self._lock:
            state = self._instances.get(instance)
            return state.seconds[0].start if state is not None and state.seconds else None

    def statement_stats(self, instance: str, start: int, end: int) -> dict[str, StatementStats]:
        """pg_stat_statements' counts over ``[start, end)`` (whole minutes), by query id."""
        out: dict[str, StatementStats] = {}
        with self._lock:
            state = self._instances.get(instance)
            if state is not None:
                for t, by_query in state.stats.items():
                    if t + 60 > start and t < end:
                        for q, s in by_query.items():
                            out.setdefault(q, StatementStats()).add(s.calls, s.time_ms, s.rows)
            for q, calls, time_ms, rows in self._db.execute(
                "SELECT queryid, SUM(calls), SUM(time_ms), SUM(rows) FROM stats "
                "WHERE instance = ? AND t + 60 > ? AND t < ? GROUP BY queryid",
                (instance, start, end),
            ):
                out.setdefault(q, StatementStats()).add(calls, time_ms, rows)
        return out

    def key(self, instance: str, match: Mapping[str, str]) -> dict[str, str] | None:
        """The dimensions of a key whose dimensions include ``match`` (the most recent one), or None."""
        with self._lock:
            for dims in reversed(list(self._keys.get(instance, {}).values())):
                if all(dims.get(k) == v for k, v in match.items()):
                    return dict(dims)
            name, value = next(iter(match.items()))
            for (dims_text,) in self._db.execute(
                "SELECT dims FROM keys WHERE instance = ? AND json_extract(dims, '$.\"' || ? || '\"') = ? "
                "ORDER BY last DESC LIMIT 1",
                (instance, name, value),
            ):
                found: dict[str, str] = json.loads(dims_text)
                return found
        return None
