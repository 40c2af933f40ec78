"""Pure tests: the client side's cheap pre-check never lets through a query that pins.

``may_pin`` may say True for a query that does not pin (the full classifier then decides); it must never
say False for one that does.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.pure.pgwire.test_pgwire_pinning import CASES

from borealis.pgwire import SHAPE_DIGITS, UNPINNED_SHAPES, may_pin, pinning_reason


@pytest.mark.parametrize("sql", [sql for sql, reason in CASES if reason is not None])
def test_every_pinning_case_goes_to_the_classifier(sql: str) -> None:
    assert may_pin(sql.encode())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4831;",
        "UPDATE pgbench_accounts SET abalance = abalance + -4032 WHERE aid = 620512;",
        "INSERT INTO t VALUES ('x') ON CONFLICT (id) DO UPDATE SET a = 1",
        "BEGIN;",
        "END;",
    ],
)
def test_common_queries_skip_the_classifier(sql: str) -> None:
    assert not may_pin(sql.encode()) and pinning_reason(sql) is None


_PARTS = st.sampled_from(
    [
        "SET a = 1",
        "set local a = 1",
        "UPDATE t SET a = 1",
        "\tSeT x TO 2",
        "RESET ALL",
        "SELECT set_config('a', '1', false)",
        "LISTEN c",
        "select pg_advisory_lock(1)",
        "CREATE TEMP TABLE t (a int)",
        "SELECT 1",
        "/* c */",
        "-- c\n",
        "'it''s; SET'",
        ";",
        " ",
        "\n",
        "\u017fet a = 1",  # a long s: Unicode case folding would make it "set"
        "DECLARE c CURSOR FOR SELECT 1",
        # Digits: may_pin remembers shapes with digits taken out, which must not make a pinning text pass.
        "se1t a = 1",
        "SELECT 4711",
        "x -1-2",
        "nextv4al('s')",
        "SELECT nextval('s1')",
        "1",
    ]
)


@settings(deadline=None, max_examples=400)
@given(parts=st.lists(_PARTS, max_size=6))
def test_never_false_for_a_pinning_query(parts: list[str]) -> None:
    sql = "".join(parts)
    if pinning_reason(sql) is not None:
        assert may_pin(sql.encode())


@settings(deadline=None, max_examples=300)
@given(
    before=st.text(max_size=40),
    pinning=st.sampled_from([sql for sql, reason in CASES if reason is not None]),
    after=st.text(max_size=40),
)
def test_never_false_on_any_text_around_a_pinning_query(before: str, pinning: str, after: str) -> None:
    # Random text alone almost never pins: put a pinning statement in it, so the assertion runs.
    sql = f"{before}\n;{pinning};\n{after}"
    if pinning_reason(sql) is not None:
        assert may_pin(sql.encode(errors="replace"))
    assert may_pin(pinning.encode())


def test_a_remembered_shape_never_hides_a_pinning_text() -> None:
    # "se1t a = 1" does not pin; with its digits out it reads "set a = ", which would: nothing is remembered
    # for it, and the real SET that follows still goes to the classifier.
    assert not may_pin(b"se1t a = 1")
    assert may_pin(b"set a = 1")
    # The same statement with other numbers: the second time, the remembered shape answers.
    assert not may_pin(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
    assert not may_pin(b"SELECT abalance FROM pgbench_accounts WHERE aid = 2;")
    assert may_pin(b"SELECT nextval('s2')") and may_pin(b"SELECT nextval('s3')")


def test_the_remembered_shapes_a_hot_path_may_test_itself() -> None:
    # The proxy tests `sql.translate(None, SHAPE_DIGITS) in UNPINNED_SHAPES` before calling may_pin: only
    # shapes may_pin found not to pin are there, never one of a text that may pin.
    for sql in (b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;", b"se1t a = 1", b"set a = 1", b"LISTEN c2"):
        may_pin(sql)
        remembered = sql.translate(None, SHAPE_DIGITS) in UNPINNED_SHAPES
        assert remembered == (sql == b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;"), sql
