"""Data API parameters to server-side PostgreSQL parameters."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borealis.dataapi import (
    BadRequestException,
    DatabaseErrorException,
    Oid,
    bind_parameters,
    decode_field,
    encode_parameter,
    parse_sql,
)


def p(name: str, value: dict[str, Any], hint: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "value": value}
    if hint is not None:
        param["typeHint"] = hint
    return param


ENCODINGS = [
    ({"isNull": True}, None, (None, 0)),
    ({"booleanValue": True}, None, ("t", Oid.BOOL)),
    ({"booleanValue": False}, None, ("f", Oid.BOOL)),
    ({"longValue": -(2**63)}, None, (str(-(2**63)), Oid.INT8)),
    ({"doubleValue": 1.5}, None, ("1.5", Oid.FLOAT8)),
    ({"doubleValue": 2}, None, ("2.0", Oid.FLOAT8)),
    ({"doubleValue": float("nan")}, None, ("NaN", Oid.FLOAT8)),
    ({"doubleValue": float("-inf")}, None, ("-Infinity", Oid.FLOAT8)),
    ({"stringValue": "héllo ' :x"}, None, ("héllo ' :x", Oid.TEXT)),
    ({"stringValue": "2024-01-02"}, "DATE", ("2024-01-02", Oid.DATE)),
    ({"stringValue": "03:04:05.123"}, "TIME", ("03:04:05.123", Oid.TIME)),
    ({"stringValue": "2024-01-02 03:04:05"}, "TIMESTAMP", ("2024-01-02 03:04:05", Oid.TIMESTAMP)),
    (
        {"stringValue": "2024-01-02 03:04:05.123456"},
        "TIMESTAMP",
        ("2024-01-02 03:04:05.123456", Oid.TIMESTAMP),
    ),
    ({"stringValue": "12.50"}, "DECIMAL", ("12.50", Oid.NUMERIC)),
    ({"stringValue": '{"a": 1}'}, "JSON", ('{"a": 1}', Oid.JSON)),
    (
        {"stringValue": "550e8400-e29b-41d4-a716-446655440000"},
        "UUID",
        ("550e8400-e29b-41d4-a716-446655440000", Oid.UUID),
    ),
    ({"blobValue": b"\x00\x01"}, None, (b"\x00\x01", Oid.BYTEA)),
    ({"blobValue": "AAE="}, None, (b"\x00\x01", Oid.BYTEA)),
    ({"longValue": 7}, "DATE", ("7", Oid.INT8)),  # a hint only types strings
]


@pytest.mark.parametrize(("value", "hint", "expected"), ENCODINGS)
def test_encode(value: dict[str, Any], hint: str | None, expected: tuple[object, int]) -> None:
    assert encode_parameter(p("x", value, hint)) == expected


REFUSED = [
    ({"arrayValue": {"longValues": [1]}}, None, BadRequestException, "Array parameters are not supported."),
    ({}, None, BadRequestException, 'Parameter "x" has value with no field set'),
    ({"stringValue": None}, None, BadRequestException, 'Parameter "x" has value with no field set'),
    ({"longValue": 1, "stringValue": "1"}, None, BadRequestException, "more than one field"),
    ({"longValue": 2**63}, None, BadRequestException, "64-bit"),
    ({"longValue": True}, None, BadRequestException, "64-bit"),
    ({"longValue": "1"}, None, BadRequestException, "64-bit"),
    ({"booleanValue": 1}, None, BadRequestException, "boolean"),
    ({"doubleValue": "1.5"}, None, BadRequestException, "number"),
    ({"stringValue": 5}, None, BadRequestException, "string"),
    ({"blobValue": "not base64!"}, None, BadRequestException, "base64"),
    ({"stringValue": "x"}, "INTEGER", BadRequestException, "typeHint"),
    (
        {"stringValue": "2026-07-22T02:17:21.804Z"},
        "TIMESTAMP",
        DatabaseErrorException,
        "Parse Error for TimeStamp: input contains invalid characters",
    ),
    ({"stringValue": "2026-07-22"}, "TIMESTAMP", DatabaseErrorException, "Parse Error for TimeStamp"),
    (
        {"stringValue": "22/07/2026"},
        "DATE",
        DatabaseErrorException,
        "Parse Error for Date: input contains invalid",
    ),
    ({"stringValue": "1:2:3"}, "TIME", DatabaseErrorException, "Parse Error for Time"),
    ({"stringValue": "a\x00b"}, None, DatabaseErrorException, "0x00; SQLState: 22021"),
    ({"stringValue": "\ud800"}, None, DatabaseErrorException, "SQLState: 22021"),
]


@pytest.mark.parametrize(("value", "hint", "error", "message"), REFUSED)
def test_refused(value: dict[str, Any], hint: str | None, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        encode_parameter(p("x", value, hint))


def test_bind_orders_values_by_placeholder_and_ignores_extras() -> None:
    parsed = parse_sql("select :b, :a, :b")
    bound = bind_parameters(
        parsed,
        [p("a", {"longValue": 1}), p("unused", {"stringValue": "x"}), p("b", {"blobValue": b"\x01"})],
    )
    assert bound.values == (b"\x01", "1")
    assert bound.oids == (Oid.BYTEA, Oid.INT8)
    assert bound.formats == (1, 0)


def test_bind_without_placeholders_needs_nothing() -> None:
    assert bind_parameters(parse_sql("select 1"), None).values == ()
    assert bind_parameters(parse_sql("select 1"), [p("a", {"arrayValue": {}})]).values == ()


def test_last_duplicate_name_wins() -> None:
    bound = bind_parameters(parse_sql("select :a"), [p("a", {"longValue": 1}), p("a", {"longValue": 2})])
    assert bound.values == ("2",)


def test_missing_parameter() -> None:
    with pytest.raises(DatabaseErrorException, match=r"No value specified for parameter 2 \(:b\)"):
        bind_parameters(parse_sql("select :a, :b"), [p("a", {"longValue": 1})])


def test_user_positional_parameter_with_named_ones() -> None:
    with pytest.raises(DatabaseErrorException, match=r"there is no parameter \$1\n  Position: 8; SQLState: 42P02"):
        bind_parameters(parse_sql("select $1, :a"), [p("a", {"longValue": 1})])


def test_injection_attempts_stay_values() -> None:
    evil = "'; drop table users; --"
    parsed = parse_sql("select * from users where name = :name")
    bound = bind_parameters(parsed, [p("name", {"stringValue": evil})])
    assert parsed.sql == "select * from users where name = $1"
    assert bound.values == (evil,)


# Round trips: a parameter in, the text PostgreSQL prints for it, the Field out.


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_long_round_trip(value: int) -> None:
    text, oid = encode_parameter(p("x", {"longValue": value}))
    assert isinstance(text, str)
    assert decode_field(oid, text.encode()) == {"longValue": value}


@given(st.floats(allow_nan=False))
def test_double_round_trip(value: float) -> None:
    text, oid = encode_parameter(p("x", {"doubleValue": value}))
    assert isinstance(text, str)
    # PostgreSQL (extra_float_digits=1) prints the shortest exact text, as repr does.
    assert decode_field(oid, text) == {"doubleValue": value}


def test_nan_round_trip() -> None:
    text, oid = encode_parameter(p("x", {"doubleValue": math.nan}))
    assert isinstance(text, str)
    assert math.isnan(decode_field(oid, text)["doubleValue"])


@given(st.binary())
def test_blob_round_trip(value: bytes) -> None:
    raw, oid = encode_parameter(p("x", {"blobValue": base64.b64encode(value).decode()}))
    assert raw == value
    assert decode_field(oid, b"\\x" + value.hex().encode()) == {"blobValue": value}


@given(st.text().filter(lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)))
def test_string_round_trip(value: str) -> None:
    text, oid = encode_parameter(p("x", {"stringValue": value}))
    assert decode_field(oid, value.encode()) == {"stringValue": value}
    assert text == value


@given(st.booleans())
def test_bool_round_trip(value: bool) -> None:
    text, oid = encode_parameter(p("x", {"booleanValue": value}))
    assert isinstance(text, str)
    assert decode_field(oid, text) == {"booleanValue": value}
