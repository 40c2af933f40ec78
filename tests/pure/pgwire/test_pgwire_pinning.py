"""The pinning classifier on tricky SQL: strings, comments, dollar quotes, multi-statement strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borealis.pgwire import PinReason, pinning_reason

R = PinReason

CASES: list[tuple[str, PinReason | None]] = [
    # SET and friends
    ("SET search_path = app", R.SET),
    ("set TimeZone to 'UTC'", R.SET),
    ("SET SESSION statement_timeout = 0", R.SET),
    ("SET SESSION AUTHORIZATION bob", R.SET),
    ("SET ROLE bob", R.SET),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", R.SET),
    ("SET LOCAL statement_timeout = 0", None),
    ("set local search_path = x", None),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
    ("SET CONSTRAINTS ALL DEFERRED", None),
    ("BEGIN; SET LOCAL x.y = 1; COMMIT", None),
    ("SELECT set_config('x.y', '1', false)", R.SET),
    ("SELECT set_config('x.y', '1', true)", None),
    ("SELECT pg_catalog.set_config('x.y', lower('A'), false)", R.SET),
    ("RESET ALL", R.RESET),
    ("reset search_path", R.RESET),
    ("DISCARD ALL", R.DISCARD),
    ("discard temp", R.DISCARD),
    # temporary objects
    ("CREATE TEMP TABLE t (a int)", R.TEMP_OBJECT),
    ("CREATE TEMPORARY TABLE t AS SELECT 1", R.TEMP_OBJECT),
    ("create global temporary table t (a int)", R.TEMP_OBJECT),
    ("CREATE TEMP SEQUENCE s", R.TEMP_OBJECT),
    ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", R.TEMP_OBJECT),
    ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", None),
    ("CREATE TABLE temp (a int)", None),
    ("CREATE TABLE t (temp int)", None),
    ("SELECT 1 AS a INTO TEMP t", R.TEMP_OBJECT),
    ("SELECT 1 AS a INTO TEMPORARY TABLE t", R.TEMP_OBJECT),
    ("SELECT * INTO temp FROM src", None),  # a table named temp
    ("INSERT INTO temp VALUES (1)", None),
    # prepared statements at the SQL level, cursors, LISTEN, LOAD
    ("PREPARE q(int) AS SELECT $1", R.PREPARE),
    ("PREPARE TRANSACTION 'gid'", None),
    ("DEALLOCATE q", R.DEALLOCATE),
    ("DEALLOCATE ALL", R.DEALLOCATE),
    ("EXECUTE q(1)", None),
    ("LISTEN jobs", R.LISTEN),
    ("UNLISTEN *", None),
    ("NOTIFY jobs, 'x'", None),
    ("DECLARE c CURSOR FOR SELECT 1", R.CURSOR),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", R.HOLD_CURSOR),
    ("declare c no scroll cursor without hold for select 1", R.CURSOR),
    ("LOAD 'auto_explain'", R.LOAD),
    # advisory locks: session-level pin, transaction-level do not
    ("SELECT pg_advisory_lock(1)", R.ADVISORY_LOCK),
    ("select pg_try_advisory_lock(1, 2)", R.ADVISORY_LOCK),
    ("SELECT pg_advisory_lock_shared(42)", R.ADVISORY_LOCK),
    ("SELECT PG_TRY_ADVISORY_LOCK_SHARED (7)", R.ADVISORY_LOCK),
    ("SELECT pg_catalog.pg_advisory_lock(1)", R.ADVISORY_LOCK),
    ('SELECT "pg_advisory_lock"(1)', R.ADVISORY_LOCK),
    ("select pg_advisory_xact_lock(1)", None),
    # sequence functions that set currval/lastval pin (RDS Proxy: "nextval and setval"); reading them does not
    ("select nextval('s')", R.SEQUENCE),
    ("SELECT pg_catalog.setval('s', 10, false)", R.SEQUENCE),
    ("insert into t (id) values (NEXTVAL('t_id_seq'))", R.SEQUENCE),
    ("select currval('s'), lastval()", None),
    ("select 'nextval(1)'", None),
    ("select pg_try_advisory_xact_lock(1)", None),
    ("WITH x AS (SELECT pg_advisory_lock(id) FROM t) SELECT 1", R.ADVISORY_LOCK),
    # things that only look like it
    ("SELECT 'SET x'", None),
    ("/* SET */ SELECT 1", None),
    ("/* outer /* nested SET */ still comment; SET x = 1 */ SELECT 1", None),
    ("-- SET x = 1\nSELECT 1", None),
    ("SELECT $$SET x = 1$$", None),
    ("SELECT $tag$ '; SET x = 1; $$ $tag$", None),
    ("DO $$BEGIN PERFORM 1; END$$", None),
    ("SELECT E'\\'; SET x = 1; '", None),
    ("SELECT 'it''s; SET x = 1'", None),
    ('SELECT 1 AS "SET; LISTEN x"', None),
    ("SELECT offset_value FROM settings", None),
    ("SELECT 'pg_advisory_lock(1)'", None),
    ("UPDATE t SET a = 1", None),
    ("INSERT INTO t VALUES ('x') ON CONFLICT (id) DO UPDATE SET a = 1", None),
    ("SELECT $1::int", None),
    ("SELECT a$b FROM t", None),
    ("", None),
    (";;", None),
    # statements inside multi-statement strings
    ("SELECT 1; SET x = 1", R.SET),
    ("SELECT ';'; LISTEN ch", R.LISTEN),
    ("BEGIN; SELECT 1; COMMIT; DISCARD ALL", R.DISCARD),
    ("/* a */ SELECT 1 /* b */; /* c */ set x = 1", R.SET),
    ("SELECT 'unterminated; SET x = 1", None),
    ("SELECT $$unterminated; SET x = 1", None),
    ("SELECT 1 /* unterminated; SET x = 1", None),
]


@pytest.mark.parametrize(("sql", "reason"), CASES)
def test_pinning(sql: str, reason: PinReason | None) -> None:
    assert pinning_reason(sql) is reason


def test_exclude_variable_sets() -> None:
    assert pinning_reason("SET x = 1", exclude_variable_sets=True) is None
    assert pinning_reason("RESET x", exclude_variable_sets=True) is None
    assert pinning_reason("SET x = 1; LISTEN ch", exclude_variable_sets=True) is R.LISTEN
    assert pinning_reason("SET x = 1; LISTEN ch") is R.SET


def test_reasons_have_texts() -> None:
    assert all(r.value.endswith(("detected", "created", "called")) for r in PinReason)
    assert R.SET.is_variable_set and not R.LISTEN.is_variable_set


@settings(deadline=None, max_examples=300)
@given(sql=st.text(max_size=200))
def test_never_crashes(sql: str) -> None:
    assert pinning_reason(sql) is None or isinstance(pinning_reason(sql), PinReason)


@settings(deadline=None)
@given(
    prefix=st.sampled_from(["", "SELECT 1; ", "/* c */ ", "-- c\n", "BEGIN;\n"]),
    stmt=st.sampled_from(["SET a = 1", "LISTEN c", "SELECT pg_advisory_lock(1)", "DISCARD ALL"]),
    suffix=st.sampled_from(["", ";", "; SELECT 2", " -- trailing"]),
)
def test_pinning_statement_found_anywhere(prefix: str, stmt: str, suffix: str) -> None:
    assert pinning_reason(prefix + stmt + suffix) is not None
