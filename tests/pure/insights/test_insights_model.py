"""Performance Insights' pure rules: tokenizing, dimensions, DB load by period and by key, the top keys."""

from __future__ import annotations

import pytest

from borealis.insights import Bucket, Session, dimensions_of, key_id, load_series, tokenize, top_keys


def _session(query: str, wait: tuple[str, str] | None = None, user: str = "app", **kw: object) -> Session:
    return Session(
        user=user,
        user_id=10,
        database="postgres",
        database_id=5,
        application=str(kw.get("application", "psql")),
        host="127.0.0.1",
        wait_event_type=wait[0] if wait else None,
        wait_event=wait[1] if wait else None,
        query=query,
        query_id=kw.get("query_id"),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select pg_sleep(2)", "select pg_sleep(?)"),
        ("SELECT * FROM t2 WHERE a = 'it''s' AND b = -3.5e3", "SELECT * FROM t2 WHERE a = ? AND b = -?"),
        ('select "col1" from t where x in (1, 2) -- note', 'select "col1" from t where x in (?, ?)'),
        ("select $1, $$body$$, e'\\n'  /* c */", "select ?, ?, ?"),
        ("select\n  1", "select ?"),
    ],
)
def test_tokenize_replaces_literals_and_keeps_identifiers(sql: str, expected: str) -> None:
    assert tokenize(sql) == expected


def test_dimensions_name_cpu_and_waits_as_aurora_postgresql_does() -> None:
    cpu = dict(dimensions_of(_session("select 1")))
    assert (cpu["db.wait_event.name"], cpu["db.wait_event.type"], cpu["db.wait_event_type.name"]) == ("CPU",) * 3
    waiting = dict(dimensions_of(_session("select pg_sleep(1)", ("Timeout", "PgSleep"), query_id=42)))
    assert waiting["db.wait_event.name"] == "Timeout:PgSleep"
    assert waiting["db.wait_event_type.name"] == "Timeout"
    assert waiting["db.sql.statement"] == "select pg_sleep(1)"
    assert waiting["db.sql_tokenized.statement"] == "select pg_sleep(?)"
    assert waiting["db.sql_tokenized.db_id"] == "42"
    assert waiting["db.sql.tokenized_id"] == waiting["db.sql_tokenized.id"]
    other = dict(dimensions_of(_session("select pg_sleep(5)", ("Timeout", "PgSleep"))))
    assert other["db.sql_tokenized.id"] == waiting["db.sql_tokenized.id"]  # same shape, other values
    assert other["db.sql.id"] != waiting["db.sql.id"]


def _keys(*sessions: Session) -> tuple[list[str], dict[str, dict[str, str]]]:
    dims = [dimensions_of(s) for s in sessions]
    return [key_id(d) for d in dims], {key_id(d): dict(d) for d in dims}


def test_load_is_session_samples_over_samples_per_period() -> None:
    (sleep, cpu), keys = _keys(_session("select pg_sleep(1)", ("Timeout", "PgSleep")), _session("select 1"))
    buckets = [
        Bucket(100, 1, {sleep: 3}),
        Bucket(101, 1, {sleep: 3, cpu: 1}),
        Bucket(102, 1, {}),  # an idle second: it counts, with no sessions
        Bucket(103, 1, {cpu: 2}),
        # 104-105: no samples (Performance Insights off): no data point
    ]
    series = load_series(buckets, keys, start=100, end=106, period=2, group="db.wait_event_type")
    total, *groups = series
    assert total == (None, [(100, 3.5), (102, 1.0)])
    assert groups[0] == ((("db.wait_event_type.name", "Timeout"),), [(100, 3.0), (102, 0.0)])
    assert groups[1] == ((("db.wait_event_type.name", "CPU"),), [(100, 0.5), (102, 1.0)])
    limited = load_series(buckets, keys, start=100, end=106, period=1, group="db.wait_event_type", limit=1)
    assert [k for k, _ in limited] == [None, (("db.wait_event_type.name", "Timeout"),)]
    filtered = load_series(buckets, keys, start=100, end=106, period=6, where={"db.wait_event.name": "CPU"})
    assert filtered == [(None, [(100, 3 / 4)])]


def test_load_statistics_max_min_sum_over_the_buckets_of_a_period() -> None:
    """db.load.max / .min / .sum: the most and fewest active sessions of a second of the period (an idle
    second counts as 0), and the session-samples of the period."""
    (sleep, cpu), keys = _keys(_session("select pg_sleep(1)", ("Timeout", "PgSleep")), _session("select 1"))
    buckets = [
        Bucket(100, 1, {sleep: 3}),
        Bucket(101, 1, {sleep: 3, cpu: 1}),
        Bucket(102, 1, {}),
        Bucket(103, 1, {cpu: 2}),
    ]

    def series(statistic: str) -> list[tuple[object, list[tuple[int, float]]]]:
        return list(
            load_series(buckets, keys, start=100, end=104, period=2, group="db.wait_event_type", statistic=statistic)
        )

    total, timeout, cpu_load = series("max")
    assert (total[1], timeout[1], cpu_load[1]) == (
        [(100, 4.0), (102, 2.0)],
        [(100, 3.0), (102, 0.0)],
        [(100, 1.0), (102, 2.0)],
    )
    total, timeout, cpu_load = series("min")
    assert (total[1], timeout[1], cpu_load[1]) == (
        [(100, 3.0), (102, 0.0)],
        [(100, 3.0), (102, 0.0)],
        [(100, 0.0), (102, 0.0)],
    )
    total, timeout, cpu_load = series("sum")
    assert (total[1], timeout[1], cpu_load[1]) == (
        [(100, 7.0), (102, 2.0)],
        [(100, 6.0), (102, 0.0)],
        [(100, 1.0), (102, 2.0)],
    )
    # A minute folded (60 samples) counts as its average.
    minute = [Bucket(0, 60, {cpu: 30}), Bucket(60, 60, {cpu: 120})]
    assert load_series(minute, keys, start=0, end=120, period=120, statistic="max") == [(None, [(0, 2.0)])]


def test_grouping_by_chosen_dimensions_folds_the_others() -> None:
    (a, b), keys = _keys(_session("select 1", user="alice"), _session("select 2", user="alice", application="web"))
    series = load_series(
        [Bucket(0, 2, {a: 2, b: 2})], keys, start=0, end=60, period=60, group="db.user", dimensions=["db.user.name"]
    )
    assert series[1] == ((("db.user.name", "alice"),), [(0, 2.0)])


def test_top_keys_rank_by_load_and_partition() -> None:
    s1 = _session("select pg_sleep(1)", ("Timeout", "PgSleep"))
    s2 = _session("update t set a = 1", ("Lock", "transactionid"))
    s3 = _session("update t set a = 1")
    (k1, k2, k3), keys = _keys(s1, s2, s3)
    buckets = [Bucket(t, 1, {k1: 1, k2: 2, k3: 1}) for t in range(10)]
    parts, rows = top_keys(
        buckets, keys, start=0, end=10, group="db.sql", dimensions=["db.sql.statement"], partition="db.wait_event_type"
    )
    assert [dict(k)["db.sql.statement"] for k, _, _ in rows] == ["update t set a = 1", "select pg_sleep(1)"]
    assert [load for _, load, _ in rows] == [3.0, 1.0]
    assert [dict(p)["db.wait_event_type.name"] for p in parts] == ["Lock", "CPU", "Timeout"]
    assert rows[0][2] == [2.0, 1.0, 0.0] and rows[1][2] == [0.0, 0.0, 1.0]
    _, none = top_keys([], keys, start=0, end=10, group="db.sql")
    assert none == []
