"""The named-parameter lexer: tricky SQL tables and a property test over generated SQL."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borealis.dataapi import parse_sql

# (sql, rewritten sql, names)
REWRITES = [
    ("select 1", "select 1", ()),
    ("select :a", "select $1", ("a",)),
    ("select :a, :b, :a", "select $1, $2, $1", ("a", "b")),
    ("select :userId, :user_id2", "select $1, $2", ("userId", "user_id2")),
    ("insert into t values(:a,:b)", "insert into t values($1,$2)", ("a", "b")),
    ("where id=:id", "where id=$1", ("id",)),
    # strings
    ("select ':a', :b", "select ':a', $1", ("b",)),
    ("select 'it''s :a', :b", "select 'it''s :a', $1", ("b",)),
    ("select 'a\\', :b", "select 'a\\', $1", ("b",)),  # standard_conforming_strings: \ is not an escape
    ("select E'a\\':b', :c", "select E'a\\':b', $1", ("c",)),
    ("select e'\\\\', :c", "select e'\\\\', $1", ("c",)),
    ("select E'x'':y', :c", "select E'x'':y', $1", ("c",)),
    ("select U&':a', :b", "select U&':a', $1", ("b",)),
    ("select B'101', X'1F', N':a', :b", "select B'101', X'1F', N':a', $1", ("b",)),
    ("select 'a'\n':b', :c", "select 'a'\n':b', $1", ("c",)),
    # dollar quotes
    ("select $$ :a $$, :b", "select $$ :a $$, $1", ("b",)),
    ("select $tag$ :a $x$ :b $tag$, :c", "select $tag$ :a $x$ :b $tag$, $1", ("c",)),
    ("select $_t1$ ':a $_t1$, :c", "select $_t1$ ':a $_t1$, $1", ("c",)),
    ("select $1, $2", "select $1, $2", ()),
    ("select a$$b, :c", "select a$$b, $1", ("c",)),  # $ inside an identifier is no dollar quote
    ("select $ä$ :a $ä$, :b", "select $ä$ :a $ä$, $1", ("b",)),
    # identifiers
    ('select ":a", :b', 'select ":a", $1', ("b",)),
    ('select "a"":b", :c', 'select "a"":b", $1', ("c",)),
    ("select äb:a", "select äb $1", ("a",)),
    # comments
    ("select :a -- :b\n, :c", "select $1 -- :b\n, $2", ("a", "c")),
    ("select :a -- :b", "select $1 -- :b", ("a",)),
    ("select /* :a */ :b", "select /* :a */ $1", ("b",)),
    ("select /* /* :a */ :b */ :c", "select /* /* :a */ :b */ $1", ("c",)),
    ("select 1 - -:a", "select 1 - -$1", ("a",)),
    ("select 2/:a", "select 2/$1", ("a",)),
    # casts, slices, :=
    ("select a::int", "select a::int", ()),
    ("select :a::text", "select $1::text", ("a",)),
    ("select :a::text[], :b ::int", "select $1::text[], $2 ::int", ("a", "b")),
    ("select x::timestamp::date", "select x::timestamp::date", ()),
    ("select arr[1:2]", "select arr[1:2]", ()),
    (
        "select arr[1:n], arr[lo:hi], arr[f(x):n], arr[a[1]:n]",
        "select arr[1:n], arr[lo:hi], arr[f(x):n], arr[a[1]:n]",
        (),
    ),
    ("select arr[:i], arr[:lo : :hi]", "select arr[$1], arr[$2 : $3]", ("i", "lo", "hi")),
    ("select f(a := :v)", "select f(a := $1)", ("v",)),
    ("select : a, :", "select : a, :", ()),
    # names that start with a digit, as Drizzle sends them (AWS accepts them)
    ("insert into t values (:1, :2) returning id", "insert into t values ($1, $2) returning id", ("1", "2")),
    ("select :1a, :_1, :10, :1", "select $1, $2, $3, $4", ("1a", "_1", "10", "1")),
    ("select :1::int, x::int", "select $1::int, x::int", ("1",)),
    ("select 1:2", "select 1 $1", ("2",)),
    ("select ':1', $$:2$$, \":3\" -- :4\n, /* :5 */ :6", "select ':1', $$:2$$, \":3\" -- :4\n, /* :5 */ $1", ("6",)),
    # array slices against digit names: a colon right after a value is the slice's colon
    ("select arr[1:2], arr[i:2], arr[f(x):2], arr[a[1]:2]", "select arr[1:2], arr[i:2], arr[f(x):2], arr[a[1]:2]", ()),
    ("select arr[1:2][3:4]", "select arr[1:2][3:4]", ()),
    ("select arr[1:]", "select arr[1:]", ()),
    ("select arr[: 2], arr[1 : 2]", "select arr[: 2], arr[1 : 2]", ()),
    ("select arr[:1]", "select arr[$1]", ("1",)),  # Drizzle's arr[${i}]
    ("select arr[:1:2]", "select arr[$1:2]", ("1",)),  # Drizzle's arr[${lo}:2]
    ("select arr[:1 : :2]", "select arr[$1 : $2]", ("1", "2")),  # Drizzle's arr[${lo} : ${hi}]
    ("select arr[1:2], :2", "select arr[1:2], $1", ("2",)),  # outside the brackets again
    # unterminated literals run to the end and do not crash
    ("select 'abc :a", "select 'abc :a", ()),
    ("select E'abc\\' :a", "select E'abc\\' :a", ()),
    ('select "abc :a', 'select "abc :a', ()),
    ("select $q$ :a", "select $q$ :a", ()),
    ("select /* /* */ :a", "select /* /* */ :a", ()),
    ("", "", ()),
]


@pytest.mark.parametrize(("sql", "rewritten", "names"), REWRITES)
def test_rewrite(sql: str, rewritten: str, names: tuple[str, ...]) -> None:
    parsed = parse_sql(sql)
    assert parsed.sql == rewritten
    assert parsed.names == names
    assert parsed.parameter_count == len(names)
    assert not parsed.multi_statement


MULTI = [
    ("select 1", False),
    ("select 1;", False),
    ("select 1;;  ", False),
    ("select 1; -- done\n/* really */ ;", False),
    (";select 1", False),
    ("select 1; select 2", True),
    ("select 1;select 2;", True),
    ("select ';'; ", False),
    ("select $$;$$", False),
    ('select ";"', False),
    ("select 1 -- ;\n", False),
    ("select 1; x", True),
    ("select 1; (", True),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", False),
    ("create or replace procedure p() language sql begin atomic insert into t values(1); end;", False),
    (
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 END; END;"
        " SELECT 1",
        True,
    ),
    ("begin; select 1", True),
    ("create table t(a int); create table u(b int)", True),
]


@pytest.mark.parametrize(("sql", "multi"), MULTI)
def test_multi_statement(sql: str, multi: bool) -> None:
    assert parse_sql(sql).multi_statement is multi


def test_positional_parameters_are_recorded_and_not_reused() -> None:
    parsed = parse_sql("select $2, :a, $1")
    assert parsed.sql == "select $2, $3, $1"
    assert (parsed.positional, parsed.positional_first, parsed.positional_at) == (2, 2, 8)


def test_spans_point_at_the_placeholders() -> None:
    sql = "select :a, ':x', :bb"
    parsed = parse_sql(sql)
    assert [sql[s:e] for s, e in parsed.spans] == [":a", ":bb"]


def test_results_are_cached() -> None:
    sql = "select :cached_name"
    assert parse_sql(sql) is parse_sql(sql)


def test_long_sql_is_lexed_in_one_pass() -> None:
    sql = "select " + ", ".join(f":p{i}, 'x:{i}', $$:{i}$$" for i in range(3000))
    parsed = parse_sql(sql)
    assert len(parsed.names) == 3000
    assert parsed.sql.endswith("$3000, 'x:2999', $$:2999$$")


# ----------------------------------------------------------------------------------------------------------
# Property: SQL built from random tokens; the lexer finds exactly the generated parameters and the rewrite
# changes nothing else.

_NAMES = st.from_regex(r"[A-Za-z0-9_]{1,9}", fullmatch=True)
_TEXT = st.text(alphabet=":'\"$-/*\\;\n\r ab1_éZ", max_size=12)
_WORDS = st.from_regex(r"[a-df-z_][a-z0-9_$]{0,6}", fullmatch=True)


def _block_comment(body: str, inner: str) -> str:
    return f"/* {body.replace('*', '')} /* {inner.replace('*', '')} */ */"


_NON_PARAM = st.one_of(
    _WORDS,
    st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    st.sampled_from(["=", "(", ")", ",", "+", "::int", "::text[]", "[1:2]", "a[1:n]", ":=", "$1", "*"]),
    _TEXT.map(lambda t: "'" + t.replace("'", "''") + "'"),
    _TEXT.map(lambda t: "E'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'"),
    _TEXT.map(lambda t: '"' + t.replace('"', '""') + '"'),
    st.tuples(st.from_regex(r"(?:[a-z_][a-z0-9_]{0,3})?", fullmatch=True), _TEXT).map(
        lambda p: f"${p[0]}${p[1].replace('$', '')}${p[0]}$"
    ),
    _TEXT.map(lambda t: "--" + t.replace("\n", "").replace("\r", "") + "\n"),
    st.tuples(_TEXT, _TEXT).map(lambda p: _block_comment(*p)),
)
_TOKENS = st.lists(st.one_of(_NAMES.map(lambda n: ("param", n)), _NON_PARAM.map(lambda t: ("text", t))), max_size=25)


@settings(max_examples=300, deadline=None)
@given(_TOKENS)
def test_lexer_finds_exactly_the_generated_parameters(tokens: list[tuple[str, str]]) -> None:
    sql = " ".join(":" + t if kind == "param" else t for kind, t in tokens)
    parsed = parse_sql(sql)
    expected = [t for kind, t in tokens if kind == "param"]
    assert [sql[s + 1 : e] for s, e in parsed.spans] == expected
    assert parsed.names == tuple(dict.fromkeys(expected))
    assert not parsed.multi_statement
    offset = parsed.positional
    numbers = {name: offset + i for i, name in enumerate(parsed.names, start=1)}
    rewritten = " ".join(f"${numbers[t]}" if kind == "param" else t for kind, t in tokens)
    assert parsed.sql == rewritten


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_NON_PARAM, max_size=4).map(" ".join), min_size=1, max_size=4))
def test_multi_statement_iff_two_statements_have_content(statements: list[str]) -> None:
    sql = ";".join(statements)
    with_content = [s for s in statements if _has_content(s)]
    assert parse_sql(sql).multi_statement is (len(with_content) > 1)


def _has_content(statement: str) -> bool:
    # A statement has content unless it is only blanks and comments: strip comments the simple way the
    # generator allows (line comments end at a newline, block comments hold no '*'), in one left-to-right pass,
    # so a '--' inside a block comment (or a '/*' inside a line comment) is not taken for a comment of its own.
    stripped = re.sub(r"--[^\n]*\n|/\*[^*]*(?:/\*[^*]*\*/)?[^*]*\*/", " ", statement)
    return bool(stripped.strip())
