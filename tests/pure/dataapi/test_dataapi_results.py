"""PostgreSQL text-format results to Data API Fields, formattedRecords JSON and columnMetadata."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borealis.dataapi import (
    BadRequestException,
    ColumnDescription,
    ColumnSource,
    Oid,
    ResultOptions,
    TypeInfo,
    UnsupportedResultException,
    check_result_size,
    column_metadata,
    compact_json,
    decode_field,
    decode_records,
    field_decoder,
    format_records_json,
    json_decoder,
    parse_array,
)

LONG_AS_STRING = ResultOptions(long_as_string=True)
DECIMAL_AS_NUMBER = ResultOptions(decimal_as_number=True)

# (type oid, text as PostgreSQL prints it, options, expected Field)
FIELDS: list[tuple[int, Any, ResultOptions, dict[str, Any]]] = [
    (Oid.INT4, b"42", ResultOptions(), {"longValue": 42}),
    (Oid.INT2, "-7", ResultOptions(), {"longValue": -7}),
    (Oid.INT8, b"9223372036854775807", ResultOptions(), {"longValue": 9223372036854775807}),
    (Oid.INT8, b"9223372036854775807", LONG_AS_STRING, {"stringValue": "9223372036854775807"}),
    (Oid.FLOAT8, b"2.718281828459045", ResultOptions(), {"doubleValue": 2.718281828459045}),
    (Oid.FLOAT4, b"3.14", ResultOptions(), {"doubleValue": 3.140000104904175}),  # widened as Java does
    (Oid.NUMERIC, b"123456.7890", ResultOptions(), {"stringValue": "123456.7890"}),
    (Oid.NUMERIC, b"19.99", DECIMAL_AS_NUMBER, {"doubleValue": 19.99}),
    (Oid.NUMERIC, b"-12", DECIMAL_AS_NUMBER, {"longValue": -12}),
    (Oid.NUMERIC, b"99999999999999999999", DECIMAL_AS_NUMBER, {"doubleValue": 1e20}),
    (Oid.BOOL, b"t", ResultOptions(), {"booleanValue": True}),
    (Oid.BOOL, "f", ResultOptions(), {"booleanValue": False}),
    (Oid.BYTEA, b"\\x68656c6c6f", ResultOptions(), {"blobValue": b"hello"}),
    (Oid.BYTEA, "\\x", ResultOptions(), {"blobValue": b""}),
    (Oid.BYTEA, "a\\\\b\\001", ResultOptions(), {"blobValue": b"a\\b\x01"}),  # bytea_output=escape
    (Oid.TEXT, None, ResultOptions(), {"isNull": True}),
    (Oid.INT4, None, LONG_AS_STRING, {"isNull": True}),
    (Oid.TEXT, "Hello 世界 🌍".encode(), ResultOptions(), {"stringValue": "Hello 世界 🌍"}),
    (Oid.DATE, b"2024-12-25", ResultOptions(), {"stringValue": "2024-12-25"}),
    (Oid.TIME, b"14:30:45.5", ResultOptions(), {"stringValue": "14:30:45.5"}),
    (Oid.TIMESTAMP, b"2022-04-06 22:58:48.99", ResultOptions(), {"stringValue": "2022-04-06 22:58:48.99"}),
    (Oid.TIMESTAMPTZ, b"2021-03-10 18:41:04.068123+00", ResultOptions(), {"stringValue": "2021-03-10 18:41:04.068123"}),
    (Oid.TIMESTAMPTZ, b"2021-03-10 20:41:04.068123+02", ResultOptions(), {"stringValue": "2021-03-10 18:41:04.068123"}),
    (Oid.TIMESTAMPTZ, b"2021-01-01 00:30:00-05:30", ResultOptions(), {"stringValue": "2021-01-01 06:00:00"}),
    (Oid.TIMESTAMPTZ, b"infinity", ResultOptions(), {"stringValue": "infinity"}),
    (Oid.TIMETZ, b"15:30:00-08", ResultOptions(), {"stringValue": "23:30:00"}),
    (Oid.TIMETZ, b"01:00:00.25+05", ResultOptions(), {"stringValue": "20:00:00.25"}),
    (
        Oid.UUID,
        b"550e8400-e29b-41d4-a716-446655440000",
        ResultOptions(),
        {"stringValue": "550e8400-e29b-41d4-a716-446655440000"},
    ),
    (Oid.JSONB, b'{"a": 1, "b": [1, "x, y: z"]}', ResultOptions(), {"stringValue": '{"a":1,"b":[1,"x, y: z"]}'}),
    (Oid.JSON, '{ "a" :\n\t1.50 }', ResultOptions(), {"stringValue": '{"a":1.50}'}),
    (869, b"192.168.1.0/24", ResultOptions(), {"stringValue": "192.168.1.0/24"}),
    (Oid.OID, b"16384", ResultOptions(), {"stringValue": "16384"}),
    (3904, b"[1,10)", ResultOptions(), {"stringValue": "[1,10)"}),
    (Oid.INTERVAL, b"1 day 02:03:04", ResultOptions(), {"stringValue": "1 day 02:03:04"}),
    (Oid.BIT, b"1", ResultOptions(), {"stringValue": "1"}),  # bit(n) of unknown length is a string
    (Oid.INT4_ARRAY, b"{1,2,3}", ResultOptions(), {"arrayValue": {"longValues": [1, 2, 3]}}),
    (Oid.INT4_ARRAY, b"{1,NULL,3}", ResultOptions(), {"arrayValue": {"longValues": [1, None, 3]}}),
    (Oid.INT4_ARRAY, b"{}", ResultOptions(), {"arrayValue": {"longValues": []}}),
    (Oid.INT4_ARRAY, b"[0:1]={5,6}", ResultOptions(), {"arrayValue": {"longValues": [5, 6]}}),
    (1021, b"{3.14,2.71}", ResultOptions(), {"arrayValue": {"doubleValues": [3.14, 2.71]}}),
    (1000, b"{t,f,NULL}", ResultOptions(), {"arrayValue": {"booleanValues": [True, False, None]}}),
    (1231, b"{123.45,678.90}", ResultOptions(), {"arrayValue": {"stringValues": ["123.45", "678.90"]}}),
    (
        Oid.TEXT_ARRAY,
        b'{"Hello \\"World\\"","It\'s working","Line 1\nLine 2",NULL,"NULL",""}',
        ResultOptions(),
        {"arrayValue": {"stringValues": ['Hello "World"', "It's working", "Line 1\nLine 2", None, "NULL", ""]}},
    ),
    (
        1185,
        b'{"2024-01-01 00:00:00+00","2024-01-01 02:00:00+02"}',
        ResultOptions(),
        {"arrayValue": {"stringValues": ["2024-01-01 00:00:00", "2024-01-01 00:00:00"]}},
    ),
    (
        2951,
        b"{550e8400-e29b-41d4-a716-446655440000}",
        ResultOptions(),
        {"arrayValue": {"stringValues": ["550e8400-e29b-41d4-a716-446655440000"]}},
    ),
]


@pytest.mark.parametrize(("oid", "text", "options", "expected"), FIELDS)
def test_field(oid: int, text: Any, options: ResultOptions, expected: dict[str, Any]) -> None:
    assert decode_field(oid, text, options) == expected


def test_bit_one_is_boolean() -> None:
    assert decode_field(Oid.BIT, b"1", typmod=1) == {"booleanValue": True}
    assert decode_field(Oid.BIT, "0", typmod=1) == {"booleanValue": False}


def test_enum_and_unknown_types_are_strings() -> None:
    mood = {90001: TypeInfo(90001, "mood", typtype="e")}
    assert decode_field(90001, b"happy", types=mood) == {"stringValue": "happy"}
    assert decode_field(90002, b"whatever") == {"stringValue": "whatever"}


UNSUPPORTED = [
    (790, b"$1.00", "money"),
    (600, b"(1,2)", "point"),
    (718, b"<(1,2),3>", "circle"),
    (829, b"08:00:2b:01:02:03", "macaddr"),
    (2206, b"integer", "regtype"),
    (791, b"{$1.00}", "_money"),
    (1001, b'{"\\\\x01"}', "_bytea"),
    (Oid.INT4_ARRAY, b"{{1,2},{3,4}}", "_int4"),
    (Oid.TEXT_ARRAY, b'{{"a","b"},{"c","d"}}', "_text"),
    (Oid.INT4_ARRAY, b"[1:2][1:1]={{1},{2}}", "_int4"),
    (790, None, "money"),
]


@pytest.mark.parametrize(("oid", "text", "name"), UNSUPPORTED)
def test_unsupported(oid: int, text: Any, name: str) -> None:
    with pytest.raises(UnsupportedResultException, match=f"The result contains the unsupported data type {name}"):
        decode_field(oid, text)
    with pytest.raises(UnsupportedResultException):
        json_decoder(oid)(text)


def test_unsupported_column_fails_on_its_first_value_only() -> None:
    decoder = field_decoder(790)  # money: building the decoder must not raise, an empty result is fine
    with pytest.raises(UnsupportedResultException):
        decode_records([[b"$1.00"]], [decoder])


def test_decode_records() -> None:
    decoders = [field_decoder(Oid.INT4), field_decoder(Oid.TEXT)]
    assert decode_records([[b"1", b"a"], [None, None]], decoders) == [
        [{"longValue": 1}, {"stringValue": "a"}],
        [{"isNull": True}, {"isNull": True}],
    ]


def test_result_options_from_request() -> None:
    assert ResultOptions.from_request(None) == ResultOptions()
    opts = ResultOptions.from_request({"decimalReturnType": "DOUBLE_OR_LONG", "longReturnType": "STRING"})
    assert opts == ResultOptions(decimal_as_number=True, long_as_string=True)
    with pytest.raises(BadRequestException):
        ResultOptions.from_request({"longReturnType": "INT"})


# ----------------------------------------------------------------------------------------------------------
# JSON mode


def test_json_records_as_aws_documents_them() -> None:
    labels = ["a", "count(*)", "blob_column", "price", "d", "ts", "arr", "f", "n", "j"]
    oids = [
        Oid.INT8,
        Oid.INT8,
        Oid.BYTEA,
        Oid.NUMERIC,
        Oid.DATE,
        Oid.TIMESTAMPTZ,
        Oid.INT4_ARRAY,
        Oid.FLOAT8,
        Oid.TEXT,
        Oid.JSONB,
    ]
    row = [
        b"-9223372036854775808", b"17", b"\\x68656c6c6f20776f726c64", b"19.99", b"2024-01-01",
        b"2024-01-01 10:00:00+02", b"{1,NULL}", b"10", None, b'{"k": [1]}',
    ]  # fmt: skip
    text = format_records_json(labels, [row], [json_decoder(o) for o in oids])
    assert text == (
        '[{"a":-9223372036854775808,"count(*)":17,"blob_column":"aGVsbG8gd29ybGQ=","price":"19.99",'
        '"d":"2024-01-01","ts":"2024-01-01 08:00:00","arr":[1,null],"f":10.0,"n":null,"j":"{\\"k\\":[1]}"}]'
    )


def test_json_options_and_non_finite_floats() -> None:
    decoders = [
        json_decoder(Oid.INT8, options=LONG_AS_STRING),
        json_decoder(Oid.NUMERIC, options=DECIMAL_AS_NUMBER),
        json_decoder(Oid.NUMERIC, options=DECIMAL_AS_NUMBER),
        json_decoder(Oid.FLOAT8),
        json_decoder(Oid.FLOAT8_ARRAY),
        json_decoder(Oid.BOOL),
    ]
    text = format_records_json(
        ["a", "b", "c", "d", "e", "f"], [[b"1", b"2.50", b"3", b"NaN", b"{Infinity,1}", b"t"]], decoders
    )
    assert json.loads(text) == [{"a": "1", "b": 2.5, "c": 3, "d": "NaN", "e": ["Infinity", 1.0], "f": True}]


def test_json_keeps_unicode_and_refuses_duplicate_labels() -> None:
    assert format_records_json(["é"], [[b"\xc3\xa9"]], [json_decoder(Oid.TEXT)]) == '[{"é":"é"}]'
    assert format_records_json(["a"], [], [json_decoder(Oid.TEXT)]) == "[]"
    with pytest.raises(BadRequestException, match="duplicate column name 'id'"):
        format_records_json(["id", "id"], [], [json_decoder(Oid.INT4)] * 2)


# ----------------------------------------------------------------------------------------------------------
# Array text: round trips through PostgreSQL's output rules


def _pg_array_text(items: list[str | None]) -> str:
    """Render items as PostgreSQL's array_out does (quote when needed, escape \\ and ")."""

    def element(item: str | None) -> str:
        if item is None:
            return "NULL"
        if item == "" or item.upper() == "NULL" or any(c in item for c in '{},"\\ \t\n\r\v\f'):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return item

    return "{" + ",".join(element(i) for i in items) + "}"


# PostgreSQL text is valid UTF-8 without NUL: no lone surrogates (category Cs), no "\x00".
@given(
    st.lists(
        st.one_of(st.none(), st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",))))
    )
)
def test_array_round_trip(items: list[str | None]) -> None:
    assert parse_array(_pg_array_text(items)) == items
    assert parse_array(_pg_array_text(items).encode()) == items


@given(st.lists(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))))
def test_int_array_round_trip(items: list[int | None]) -> None:
    text = _pg_array_text([None if i is None else str(i) for i in items])
    assert decode_field(Oid.INT8 + 996, text) == {"arrayValue": {"longValues": items}}  # 1016 = _int8


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31)), st.integers(-14 * 60, 14 * 60))
def test_timestamptz_is_converted_to_utc(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=UTC).astimezone(zone)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}".rstrip("0")
    text += f"{sign}{hours:02d}" + (f":{minutes:02d}" if minutes else "")
    expected = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        expected += f".{moment.microsecond:06d}".rstrip("0")
    assert decode_field(Oid.TIMESTAMPTZ, text) == {"stringValue": expected}


# ----------------------------------------------------------------------------------------------------------
# columnMetadata


def _numeric_typmod(precision: int, scale: int) -> int:
    return ((precision << 16) | scale) + 4


METADATA = [
    (
        ColumnDescription("id", 16400, 1, Oid.INT4),
        ColumnSource("users", not_null=True, auto_increment=True),
        {
            "type": 4,
            "typeName": "serial",
            "precision": 10,
            "scale": 0,
            "isSigned": True,
            "isCaseSensitive": False,
            "isAutoIncrement": True,
            "nullable": 0,
            "tableName": "users",
        },
    ),
    (
        ColumnDescription("price", 16400, 2, Oid.NUMERIC, _numeric_typmod(10, 4)),
        ColumnSource("products", not_null=False, auto_increment=False),
        {"type": 2, "typeName": "numeric", "precision": 10, "scale": 4, "isSigned": True, "nullable": 1},
    ),
    (
        ColumnDescription("name", 16400, 3, Oid.VARCHAR, 255 + 4),
        ColumnSource("users", not_null=False, auto_increment=False),
        {"type": 12, "typeName": "varchar", "precision": 255, "scale": 0, "isCaseSensitive": True, "isSigned": False},
    ),
    (
        ColumnDescription("?column?", 0, 0, Oid.TEXT),
        None,
        {"type": 12, "typeName": "text", "precision": 2147483647, "nullable": 2, "tableName": "", "schemaName": ""},
    ),
    (ColumnDescription("b", 0, 0, Oid.BOOL), None, {"type": -7, "typeName": "bool", "precision": 1}),
    (ColumnDescription("f", 0, 0, Oid.FLOAT8), None, {"type": 8, "typeName": "float8", "precision": 17, "scale": 17}),
    (ColumnDescription("r", 0, 0, Oid.FLOAT4), None, {"type": 7, "typeName": "float4", "precision": 8, "scale": 8}),
    (
        ColumnDescription("t", 0, 0, Oid.TIMESTAMPTZ),
        None,
        {"type": 93, "typeName": "timestamptz", "precision": 35, "scale": 6},
    ),
    (
        ColumnDescription("t", 0, 0, Oid.TIMESTAMP, 3),
        None,
        {"type": 93, "typeName": "timestamp", "precision": 26, "scale": 3},
    ),
    (ColumnDescription("d", 0, 0, Oid.DATE), None, {"type": 91, "typeName": "date", "precision": 13}),
    (ColumnDescription("u", 0, 0, Oid.UUID), None, {"type": 1111, "typeName": "uuid"}),
    (ColumnDescription("j", 0, 0, Oid.JSONB), None, {"type": 1111, "typeName": "jsonb"}),
    (ColumnDescription("by", 0, 0, Oid.BYTEA), None, {"type": -2, "typeName": "bytea"}),
    (ColumnDescription("m", 0, 0, 790), None, {"type": 8, "typeName": "money", "isCurrency": True}),
    (
        ColumnDescription("a", 0, 0, Oid.INT4_ARRAY),
        None,
        {"type": 2003, "typeName": "_int4", "arrayBaseColumnType": 4, "precision": 10, "isSigned": True},
    ),
    (ColumnDescription("n", 0, 0, Oid.INT8), None, {"type": -5, "typeName": "int8", "arrayBaseColumnType": 0}),
]


@pytest.mark.parametrize(("column", "source", "expected"), METADATA)
def test_column_metadata(column: ColumnDescription, source: ColumnSource | None, expected: dict[str, Any]) -> None:
    meta = column_metadata(column, source)
    assert set(meta) == {
        "arrayBaseColumnType", "isAutoIncrement", "isCaseSensitive", "isCurrency", "isSigned", "label", "name",
        "nullable", "precision", "scale", "schemaName", "tableName", "type", "typeName",
    }  # fmt: skip
    assert meta["label"] == meta["name"] == column.name
    assert {k: meta[k] for k in expected} == expected


def test_metadata_of_user_types() -> None:
    types = {90001: TypeInfo(90001, "mood", typtype="e"), 90002: TypeInfo(90002, "addr", typtype="c")}
    assert column_metadata(ColumnDescription("m", 0, 0, 90001), types=types)["type"] == 12
    assert column_metadata(ColumnDescription("m", 0, 0, 90001), types=types)["typeName"] == "mood"
    assert column_metadata(ColumnDescription("c", 0, 0, 90002), types=types)["type"] == 2002


def test_execute_output_encoded_directly_is_what_the_model_writes() -> None:
    """rds-data encodes ExecuteStatement's output itself (Direct.encode); it must equal the model's writer."""
    from borealis.aws._service import ServiceEndpoint
    from borealis.services.rds_data import _encode_execute

    async def unused(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError

    writer = ServiceEndpoint("rds-data", {"ExecuteStatement": unused})._rest_ops["ExecuteStatement"]
    columns = [ColumnDescription("c", 0, 0, oid, -1) for oid, _, _, _ in FIELDS]
    outputs = [
        {
            "records": [[decode_field(oid, text, options) for oid, text, options, _ in FIELDS]],
            "numberOfRecordsUpdated": 0,
        },
        {"records": [[{"blobValue": b"\x00\xffbytes"}, {"isNull": True}, {"doubleValue": float("nan")}]]},
        {"records": [], "columnMetadata": [column_metadata(c) for c in columns], "numberOfRecordsUpdated": 0},
        {"numberOfRecordsUpdated": 3, "generatedFields": []},
        {"formattedRecords": '[{"a":1}]', "numberOfRecordsUpdated": 0},
    ]
    outputs.append({"records": [[{"arrayValue": {"stringValues": ["a", None]}}, {"doubleValue": 1e16}]]})
    outputs.append({"records": [[{"doubleValue": float("-inf")}, {"stringValue": "nullable \u2713 \x00"}]]})
    for output in outputs:
        headers, modeled = writer.write(output)
        assert headers == []
        direct = _encode_execute(output)
        # The same JSON value (float spellings such as 1e16 and 1e+16 may differ), NaN written as NaN.
        assert json.dumps(json.loads(direct)) == json.dumps(json.loads(modeled))
        assert (b"NaN" in direct) == (b"NaN" in modeled) and (b"Infinity" in direct) == (b"Infinity" in modeled)


# ----------------------------------------------------------------------------------------------------------
# json compaction and result sizes


@pytest.mark.parametrize(
    ("text", "compact"),
    [
        ('{"a": 1}', '{"a":1}'),
        ('{"a":1}', '{"a":1}'),
        ('"a b"', '"a b"'),
        ('{"k \\" : ,": [1, 2.50e3, true, null]}', '{"k \\" : ,":[1,2.50e3,true,null]}'),  # an escaped quote
        ('[\n  {"\\\\": "x  y"},\r\n  []\n]', '[{"\\\\":"x  y"},[]]'),
        ("  3 ", "3"),
        ('{"é": "ü €"}', '{"é":"ü €"}'),
    ],
)
def test_compact_json_drops_only_the_blanks_between_tokens(text: str, compact: str) -> None:
    assert compact_json(text) == compact
    assert compact_json(text.encode()) == compact
    assert json.loads(compact) == json.loads(text)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
))  # fmt: skip
def test_compact_json_is_the_compact_dump(value: Any) -> None:
    spaced = json.dumps(value, ensure_ascii=False, indent=1)
    assert compact_json(spaced) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_result_size_counts_bytea_by_its_bytes() -> None:
    oids = [Oid.INT4, Oid.BYTEA]
    blob = b"\\x" + b"ab" * 1000  # 1,000 bytes as 2,002 characters of hex
    check_result_size([[b"1", blob]], oids, limit=1001)
    with pytest.raises(BadRequestException, match=r"^Database returned more than the allowed response size limit$"):
        check_result_size([[b"1", blob]], oids, limit=1000)
    check_result_size([[b"1", None]] * 3, oids, limit=3)
    with pytest.raises(BadRequestException):
        check_result_size([[b"1", None]] * 4, oids, limit=3)
    # No row limit unless one is set; then "Packet for query is too large", bytea by its bytes again.
    check_result_size([[b"1", blob]], oids, limit=10**6, row_limit=1001)
    with pytest.raises(UnsupportedResultException, match="Packet for query is too large"):
        check_result_size([[b"1", blob]], oids, limit=10**6, row_limit=1000)
    check_result_size([["é" * 10]], [Oid.TEXT], limit=10)  # a str row counts characters, bytes rows bytes
