"""Performance Insights' data model, pure: sessions to dimensions, and seconds of samples to DB load.

Rules (Aurora PostgreSQL's, as the Performance Insights guide describes them):

- Every second each active session is counted once. A session is active when its backend is not idle: it runs
  (on CPU, ``wait_event`` NULL) or waits (``wait_event_type:wait_event``, e.g. ``Timeout:PgSleep``), an idle
  transaction included (it holds locks and a snapshot: ``Client:ClientRead``).
- DB load (``db.load.avg``, average active sessions) over a period is the session-samples counted in it divided
  by the samples taken in it; a period without samples (Performance Insights off, the instance stopped) has
  no data point.
- A session's dimensions come in groups (``db.wait_event``, ``db.sql``, ...); grouping by a group splits the
  load by the values of that group's dimensions (all of them, or those asked for), and the Limit keeps the
  largest keys by their load over the whole range.
- ``db.sql`` is the statement as the session sent it, ``db.sql_tokenized`` the statement with its literals
  replaced by ``?``, so that calls with different values add up; its ``db_id`` is PostgreSQL's query id (the
  ``queryid`` of pg_stat_statements) when the server computes one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "GROUPS",
    "METRICS",
    "Bucket",
    "DimensionKey",
    "Session",
    "dimensions_of",
    "key_id",
    "load_series",
    "session_key",
    "tokenize",
    "top_keys",
]

GROUPS: dict[str, tuple[str, ...]] = {
    "db": ("db.id", "db.name"),
    "db.application": ("db.application.name",),
    "db.host": ("db.host.id", "db.host.name"),
    "db.session_type": ("db.session_type.name",),
    "db.sql": ("db.sql.id", "db.sql.db_id", "db.sql.statement", "db.sql.tokenized_id"),
    "db.sql_tokenized": ("db.sql_tokenized.id", "db.sql_tokenized.db_id", "db.sql_tokenized.statement"),
    "db.user": ("db.user.id", "db.user.name"),
    "db.wait_event": ("db.wait_event.name", "db.wait_event.type"),
    "db.wait_event_type": ("db.wait_event_type.name",),
}
"""The dimension groups of the ``db.load`` metric and their dimensions, as Aurora PostgreSQL has them."""

METRICS: dict[str, str] = {
    "db.load": "The number of active sessions for the DB engine, sampled every second.",
    "db.sampledload": "The number of active sessions sampled for the DB engine, every second.",
}
"""The load metrics served (each with the ``.avg`` statistic) and their descriptions."""

DimensionKey = tuple[tuple[str, str], ...]
"""The values of some dimensions, sorted by dimension name (a hashable key)."""

_LITERAL = re.compile(
    r"""
    (?P<string>(?:[eEbBxXuU]&?)?'(?:[^']|'')*')      # '...' and e'...', b'...', x'...', U&'...'
    | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*)?\$.*?\$(?P=tag)?\$)   # $$...$$, $q$...$q$
    | (?P<ident>"(?:[^"]|"")*")                      # quoted identifiers stay
    | (?P<param>\$\d+)                               # $1: already a placeholder
    | (?P<number>(?<![\w.])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.]))
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    """,
    re.VERBOSE | re.DOTALL,
)
_SPACE = re.compile(r"\s+")


def tokenize(statement: str) -> str:
    """The statement with its literals (strings, numbers, dollar-quoted bodies) and ``$n`` parameters
    replaced by ``?``, comments removed and white space collapsed: calls that differ only in their
    values get the same text."""

    def replace(match: re.Match[str]) -> str:
        if match.group("ident") is not None:
            return match.group(0)
        if match.group("comment") is not None:
            return " "
        return "?"

    return _SPACE.sub(" ", _LITERAL.sub(replace, statement)).strip()


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest().upper()


@dataclass(frozen=True, slots=True)
class Session:
    """One active session in one sample, as pg_stat_activity shows it."""

    user: str
    user_id: int
    database: str
    database_id: int
    application: str
    host: str
    wait_event_type: str | None
    wait_event: str | None
    query: str
    query_id: int | None = None
    state: str = "active"


def dimensions_of(session: Session) -> DimensionKey:
    """Every dimension of a session (the ``db.load`` dimensions of :data:`GROUPS`), as a sorted key."""
    if session.wait_event_type is None or session.wait_event is None:
        wait_type, wait_name = "CPU", "CPU"
    else:
        wait_type, wait_name = session.wait_event_type, f"{session.wait_event_type}:{session.wait_event}"
    statement = session.query
    tokenized = tokenize(statement)
    sql_id, tokenized_id = _digest(statement), _digest(tokenized)
    db_id = str(session.query_id) if session.query_id else tokenized_id
    values = {
        "db.id": str(session.database_id),
        "db.name": session.database,
        "db.application.name": session.application,
        "db.host.id": session.host,
        "db.host.name": session.host,
        "db.session_type.name": "client backend",
        "db.sql.id": sql_id,
        "db.sql.db_id": db_id,
        "db.sql.statement": statement,
        "db.sql.tokenized_id": tokenized_id,
        "db.sql_tokenized.id": tokenized_id,
        "db.sql_tokenized.db_id": db_id,
        "db.sql_tokenized.statement": tokenized,
        "db.user.id": str(session.user_id),
        "db.user.name": session.user,
        "db.wait_event.name": wait_name,
        "db.wait_event.type": wait_type,
        "db.wait_event_type.name": wait_type,
    }
    return tuple(sorted(values.items()))


def key_id(key: DimensionKey) -> str:
    """A stable id of a dimension key (the same in every process, so stored rows can name it)."""
    return hashlib.sha1(repr(key).encode("utf-8", "surrogatepass")).hexdigest()[:20]


@functools.lru_cache(maxsize=256)  # a session holds up to 4 KB of statement (track_activity_query_size)
def session_key(session: Session) -> tuple[str, DimensionKey]:
    """:func:`key_id` and :func:`dimensions_of` of a session, remembered: a busy instance shows the same few
    sessions second after second, and tokenizing and hashing each one every second is the sampler's main
    cost (about 12 µs a session)."""
    dims = dimensions_of(session)
    return key_id(dims), dims


@dataclass(slots=True)
class Bucket:
    """The samples of one stretch of time (a second, or a minute folded): how many samples were taken, and
    how many session-samples each dimension key (by :func:`key_id`) had."""

    start: int
    samples: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, other: Bucket) -> None:
        """Fold another bucket's samples into this one."""
        self.samples += other.samples
        for k, n in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n


def _project(dims: Mapping[str, str], group: str | None, wanted: Sequence[str] | None) -> DimensionKey:
    if group is None:
        return ()
    names = wanted or GROUPS[group]
    return tuple(sorted((n, dims.get(n, "")) for n in names))


def _matches(dims: Mapping[str, str], where: Mapping[str, str]) -> bool:
    return all(dims.get(name) == value for name, value in where.items())


def _spread(
    buckets: Iterable[Bucket],
    keys: Mapping[str, Mapping[str, str]],
    group: str | None,
    wanted: Sequence[str] | None,
    where: Mapping[str, str],
) -> Iterable[tuple[Bucket, dict[DimensionKey, int]]]:
    """Each bucket with its counts folded onto the projected keys (filtered)."""
    for bucket in buckets:
        folded: dict[DimensionKey, int] = {}
        for kid, n in bucket.counts.items():
            dims = keys.get(kid)
            if dims is None or not _matches(dims, where):
                continue
            projected = _project(dims, group, wanted)
            folded[projected] = folded.get(projected, 0) + n
        yield bucket, folded


def load_series(
    buckets: Iterable[Bucket],
    keys: Mapping[str, Mapping[str, str]],
    *,
    start: int,
    end: int,
    period: int,
    group: str | None = None,
    dimensions: Sequence[str] | None = None,
    where: Mapping[str, str] | None = None,
    limit: int = 10,
    statistic: str = "avg",
) -> list[tuple[DimensionKey | None, list[tuple[int, float]]]]:
    """DB load per period over ``[start, end)`` (``start`` aligned to ``period``): the total first (key None),
    then, with a ``group``, the ``limit`` largest keys of that group. Each series is (period start, value), for
    every period that has samples; the value is the period's ``statistic`` of the load, as Performance Insights'
    ``db.load.avg`` / ``.max`` / ``.min`` / ``.sum``: the average active sessions; the most or fewest active
    sessions of a bucket of the period (a second, or a minute's average where only minutes are kept); the
    session-samples (one a second) of the period."""
    periods: dict[int, int] = {}
    per_key: dict[DimensionKey, dict[int, int]] = {}
    totals: dict[DimensionKey, int] = {}
    spread: dict[int, list[tuple[int, dict[DimensionKey, int]]]] = {}
    for bucket, folded in _spread(_within(buckets, start, end), keys, group, dimensions, where or {}):
        slot = start + (bucket.start - start) // period * period
        periods[slot] = periods.get(slot, 0) + bucket.samples
        if statistic in ("max", "min") and bucket.samples > 0:
            spread.setdefault(slot, []).append((bucket.samples, folded))
        for key, n in folded.items():
            counts = per_key.setdefault(key, {})
            counts[slot] = counts.get(slot, 0) + n
            totals[key] = totals.get(key, 0) + n
    slots = sorted(s for s, n in periods.items() if n > 0)
    whole: dict[int, int] = {}
    for counts in per_key.values():
        for slot, n in counts.items():
            whole[slot] = whole.get(slot, 0) + n

    def value(key: DimensionKey | None, counts: Mapping[int, int], slot: int) -> float:
        if statistic == "sum":
            return float(counts.get(slot, 0))
        if statistic in ("max", "min"):
            loads = [(sum(f.values()) if key is None else f.get(key, 0)) / n for n, f in spread[slot]]
            return max(loads) if statistic == "max" else min(loads)
        return counts.get(slot, 0) / periods[slot]

    out: list[tuple[DimensionKey | None, list[tuple[int, float]]]] = [
        (None, [(s, value(None, whole, s)) for s in slots])
    ]
    if group is not None:
        for key in sorted(totals, key=lambda k: (-totals[k], k))[:limit]:
            counts = per_key[key]
            out.append((key, [(s, value(key, counts, s)) for s in slots]))
    return out


def top_keys(
    buckets: Iterable[Bucket],
    keys: Mapping[str, Mapping[str, str]],
    *,
    start: int,
    end: int,
    group: str,
    dimensions: Sequence[str] | None = None,
    where: Mapping[str, str] | None = None,
    partition: str | None = None,
    partition_dimensions: Sequence[str] | None = None,
    limit: int = 10,
) -> tuple[list[DimensionKey], list[tuple[DimensionKey, float, list[float]]]]:
    """The ``limit`` keys of ``group`` with the most load over ``[start, end)``, largest first: (key, average
    active sessions over the range, its load split by the ``partition`` keys), and the partition keys (the
    largest first, up to 10, as DescribeDimensionKeys' PartitionBy)."""
    samples = 0
    totals: dict[DimensionKey, int] = {}
    split: dict[tuple[DimensionKey, DimensionKey], int] = {}
    part_totals: dict[DimensionKey, int] = {}
    for bucket in _within(buckets, start, end):
        samples += bucket.samples
        for kid, n in bucket.counts.items():
            dims = keys.get(kid)
            if dims is None or not _matches(dims, where or {}):
                continue
            key = _project(dims, group, dimensions)
            totals[key] = totals.get(key, 0) + n
            if partition is not None:
                part = _project(dims, partition, partition_dimensions)
                split[(key, part)] = split.get((key, part), 0) + n
                part_totals[part] = part_totals.get(part, 0) + n
    parts = sorted(part_totals, key=lambda k: (-part_totals[k], k))[:10]
    ranked = sorted(totals, key=lambda k: (-totals[k], k))[:limit]
    rows = [
        (key, totals[key] / samples, [split.get((key, p), 0) / samples for p in parts] if partition else [])
        for key in ranked
    ]
    return parts, rows


def _within(buckets: Iterable[Bucket], start: int, end: int) -> Iterable[Bucket]:
    return (b for b in buckets if start <= b.start < end)
