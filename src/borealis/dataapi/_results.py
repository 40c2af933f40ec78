"""PostgreSQL result values (text format) to Data API ``Field`` values and to ``formattedRecords`` JSON.

The executor fetches rows in PostgreSQL's text format (``bytes`` off the wire or ``str``) and picks one
decoder per column from its type OID and type modifier, once per result set; decoding a value is then one
call with no dispatch on its type.  The session must run with ``TimeZone=UTC``, ``DateStyle=ISO``,
``IntervalStyle=postgres``, ``bytea_output=hex`` and ``extra_float_digits=1`` (the defaults apart from the
time zone), which is what the formats below assume; a non-UTC offset is still converted.

Mapping, as AWS does it for Aurora PostgreSQL:

* int2, int4, int8 -> ``longValue`` (``stringValue`` with ``longReturnType: STRING``).
* float4, float8 -> ``doubleValue``.  A float4 widens to double as Java does, so ``3.14::real`` reads
  ``3.140000104904175`` (AWS's answers for ``real`` columns are only close to the decimal value); NaN and
  infinities stay floats here and become the strings ``"NaN"``, ``"Infinity"`` in JSON mode.
* numeric -> ``stringValue`` as PostgreSQL prints it (``123456.7890`` for numeric(10,4)); with
  ``decimalReturnType: DOUBLE_OR_LONG`` a value with no fractional digits is a ``longValue`` (when it fits
  64 bits) and any other a ``doubleValue``.
* bool and bit(1) -> ``booleanValue``; bytea -> ``blobValue`` (bytes; base64 on the wire).
* timestamptz -> ``stringValue`` in UTC without an offset (``2021-03-10 18:41:04.068123``; fractional zeros
  dropped as PostgreSQL prints them); timetz likewise in UTC.  date, time, timestamp, uuid, inet, cidr,
  enums, ranges, oid and the rest -> ``stringValue`` as PostgreSQL prints them.
* json and jsonb -> ``stringValue`` in compact form, ``{"x":0,"y":[1,2]}``: PostgreSQL prints jsonb with a
  blank after each ``:`` and ``,``, the Data API for Serverless v2 without (the aurora-data-api driver's
  suite, run against it, asserts ``'{"x":0,"y":"0","z":[0,0,1]}'`` for a jsonb column; its v1 answered
  with the blanks).  Only the blanks between tokens go: strings, numbers and key order stay as stored.
  json is compacted as jsonb is (AWS documents both as one type, JSON); arrays of either too.
* 1-D arrays -> ``arrayValue`` with ``longValues``, ``doubleValues``, ``booleanValues`` or ``stringValues``
  (NULL elements are ``None``).
* money, the geometric types, macaddr/macaddr8, the reg* OID-alias types (AWS refuses ``regtype``), arrays
  of those and of bytea, and any multi-dimensional array -> ``UnsupportedResultException`` "The result
  contains the unsupported data type <name>".  The error comes with the first value (NULL included), so an
  empty result of such a column still succeeds.

Sizes (:func:`check_result_size`): a result is measured as the database's data, text by its UTF-8 bytes and
bytea by its bytes (not its hex text, twice as long), against the 1 MiB response limit
(``BadRequestException`` "Database returned more than the allowed response size limit", the words the
aurora-data-api driver looks for before it pages the query with a cursor) and, when set, a per-row limit.
AWS documents 64 KB a row, yet the service returns larger rows (data-api-client v2's suites read a 100,000
character text and a 512,000 byte bytea from Aurora Serverless v2), so the row limit is off by default.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ._errors import BadRequestException, UnsupportedResultException
from ._types import Oid, TypeInfo, type_info

__all__ = [
    "DEFAULT_RESULT_OPTIONS",
    "RESPONSE_TOO_LARGE",
    "Field",
    "FieldDecoder",
    "JsonDecoder",
    "ResultOptions",
    "check_result_size",
    "compact_json",
    "decode_field",
    "decode_records",
    "field_decoder",
    "format_records_json",
    "json_decoder",
    "parse_array",
]

Field = dict[str, Any]
Text = bytes | str | None
FieldDecoder = Callable[[Text], Field]
JsonDecoder = Callable[[Text], Any]


@dataclass(frozen=True, slots=True)
class ResultOptions:
    """The request's ``resultSetOptions``, as two flags."""

    decimal_as_number: bool = False  # decimalReturnType DOUBLE_OR_LONG (default STRING)
    long_as_string: bool = False  # longReturnType STRING (default LONG)

    @classmethod
    def from_request(cls, options: Mapping[str, Any] | None) -> ResultOptions:
        """Read ``resultSetOptions``; a value outside the model's enum is a BadRequestException."""
        if not options:
            return DEFAULT_RESULT_OPTIONS
        decimal = options.get("decimalReturnType", "STRING")
        long_ = options.get("longReturnType", "LONG")
        if decimal not in ("STRING", "DOUBLE_OR_LONG"):
            raise BadRequestException(f"Invalid decimalReturnType {decimal!r}: expected STRING or DOUBLE_OR_LONG")
        if long_ not in ("LONG", "STRING"):
            raise BadRequestException(f"Invalid longReturnType {long_!r}: expected LONG or STRING")
        return cls(decimal == "DOUBLE_OR_LONG", long_ == "STRING")


DEFAULT_RESULT_OPTIONS = ResultOptions()

_NULL: Field = {"isNull": True}
_INT_OIDS = frozenset((Oid.INT2, Oid.INT4, Oid.INT8))
_JSON_OIDS = frozenset((Oid.JSON, Oid.JSONB))
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Type names AWS refuses (a blacklist: it returns everything else as a string).  See the module docstring.
UNSUPPORTED_TYPE_NAMES = frozenset(
    (
        "money", "point", "line", "lseg", "box", "path", "polygon", "circle", "macaddr", "macaddr8",
        "regproc", "regprocedure", "regoper", "regoperator", "regclass", "regtype", "regconfig",
        "regdictionary", "regnamespace", "regrole", "regcollation",
    )
)  # fmt: skip


def _str(text: bytes | str) -> str:
    return text.decode() if isinstance(text, bytes) else text


# JSON's tokens: a string (escapes included) or a run of anything but blanks and quotes.  Joining them drops
# exactly the blanks between tokens.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[^"\x20\t\n\r]++', re.DOTALL)
_JSON_BLANKS = re.compile(r"[\x20\t\n\r]")


def compact_json(text: bytes | str) -> str:
    """``text`` (json or jsonb as PostgreSQL prints it) without the blanks between its tokens."""
    s = _str(text)
    if _JSON_BLANKS.search(s) is None:
        return s
    return "".join(_JSON_TOKEN.findall(s))


# ---------------------------------------------------------------------------------------------------------
# Scalar text -> Python value, one function per family (shared by Field and JSON decoders).


def _float4(text: bytes | str) -> float:
    # Java widens a float to double bit for bit: round-trip through IEEE single precision.
    value: float = struct.unpack("f", struct.pack("f", float(text)))[0]
    return value


def _bytea(text: bytes | str) -> bytes:
    if text[:2] in (b"\\x", "\\x"):
        return binascii.unhexlify(text[2:])
    return _bytea_escape(_str(text))


def _bytea_escape(text: str) -> bytes:
    # bytea_output = escape: \\ is a backslash, \nnn an octal byte, anything else itself.
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if text[i + 1 : i + 2] == "\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(text[i + 1 : i + 4], 8))
                i += 4
        else:
            out += c.encode()
            i += 1
    return bytes(out)


_TZ_SUFFIX = re.compile(r"([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$")


def _offset_seconds(m: re.Match[str]) -> int:
    seconds = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60 + int(m.group(4) or 0)
    return -seconds if m.group(1) == "-" else seconds


def _timestamptz_utc(text: bytes | str) -> str:
    s = _str(text)
    if s.endswith("+00"):
        return s[:-3]
    m = _TZ_SUFFIX.search(s)
    if m is None:
        return s  # infinity, -infinity
    local = s[: m.start()]
    bc = local.endswith(" BC")
    if bc:
        return local  # before year 1 Python's datetime cannot shift it; the session runs in UTC anyway
    date_part, _, time_part = local.partition(" ")
    whole, _, fraction = time_part.partition(".")
    try:
        moment = datetime.fromisoformat(f"{date_part} {whole}") - timedelta(seconds=_offset_seconds(m))
    except (ValueError, OverflowError):
        return local
    out = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    return f"{out}.{fraction}" if fraction else out


def _timetz_utc(text: bytes | str) -> str:
    s = _str(text)
    m = _TZ_SUFFIX.search(s)
    if m is None:
        return s
    local = s[: m.start()]
    offset = _offset_seconds(m)
    if not offset:
        return local
    whole, _, fraction = local.partition(".")
    h, mi, sec = (int(x) for x in whole.split(":"))
    total = (h * 3600 + mi * 60 + sec - offset) % 86400
    out = f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return f"{out}.{fraction}" if fraction else out


def _numeric_number(text: bytes | str) -> int | float:
    s = _str(text)
    if "." not in s and s not in ("NaN", "Infinity", "-Infinity"):
        value = int(s)
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
    return float(s)


# ---------------------------------------------------------------------------------------------------------
# Arrays.


class _MultiDimensional(ValueError):
    pass


def parse_array(text: bytes | str, delimiter: str = ",") -> list[str | None]:
    """Parse PostgreSQL's text output of a one-dimensional array into element texts (``None`` for NULL).

    Handles quoted elements with backslash escapes, unquoted ``NULL``, and a ``[lower:upper]=`` prefix
    (arrays whose lower bound is not 1).  Raises ``ValueError`` for a multi-dimensional array.
    """
    s = _str(text)
    if s.startswith("["):
        eq = s.index("=")
        if s.count("[", 0, eq) > 1:
            raise _MultiDimensional(s)
        s = s[eq + 1 :]
    inner = s[1:-1]
    if not inner:
        return []
    if inner[0] == "{":
        raise _MultiDimensional(s)
    if '"' not in inner and "\\" not in inner and "{" not in inner:
        # PostgreSQL quotes any element holding a delimiter, quote, brace, backslash or blank.
        return [None if item == "NULL" else item for item in inner.split(delimiter)]
    return _parse_array_slow(inner, delimiter)


def _parse_array_slow(inner: str, delimiter: str) -> list[str | None]:
    items: list[str | None] = []
    i, n = 0, len(inner)
    while i <= n:
        if i < n and inner[i] == '"':
            buf: list[str] = []
            i += 1
            while i < n and inner[i] != '"':
                if inner[i] == "\\":
                    i += 1
                buf.append(inner[i])
                i += 1
            items.append("".join(buf))
            i += 1  # the closing quote
        elif i < n and inner[i] == "{":
            raise _MultiDimensional(inner)
        else:
            j = i
            buf = []
            while j < n and inner[j] != delimiter:
                if inner[j] == "\\":
                    j += 1
                buf.append(inner[j])
                j += 1
            raw = "".join(buf)
            items.append(None if raw == "NULL" and "\\" not in inner[i:j] else raw)
            i = j
        i += 1  # the delimiter
    return items


# ---------------------------------------------------------------------------------------------------------
# Decoders.


def _unsupported(name: str) -> Callable[[Text], Any]:
    def decode(text: Text) -> Any:
        raise UnsupportedResultException(f"The result contains the unsupported data type {name}")

    return decode


def _is_unsupported(info: TypeInfo, types: Mapping[int, TypeInfo] | None) -> bool:
    if info.name in UNSUPPORTED_TYPE_NAMES:
        return True
    if info.elem:
        elem = type_info(info.elem, types)
        return elem.name in UNSUPPORTED_TYPE_NAMES or elem.oid == Oid.BYTEA or bool(elem.elem)
    return False


def _scalar_converter(info: TypeInfo, typmod: int) -> tuple[str, Callable[[bytes | str], Any]]:
    """(Field key, text -> value) for a scalar type, before resultSetOptions apply."""
    oid = info.oid
    if oid in _INT_OIDS:
        return "longValue", int
    if oid == Oid.FLOAT8:
        return "doubleValue", float
    if oid == Oid.FLOAT4:
        return "doubleValue", _float4
    if oid == Oid.BOOL or (oid == Oid.BIT and typmod == 1):
        true = b"t" if oid == Oid.BOOL else b"1"
        true_s = true.decode()
        return "booleanValue", lambda t: t in (true, true_s)
    if oid == Oid.BYTEA:
        return "blobValue", _bytea
    if oid == Oid.TIMESTAMPTZ:
        return "stringValue", _timestamptz_utc
    if oid == Oid.TIMETZ:
        return "stringValue", _timetz_utc
    if oid in _JSON_OIDS:
        return "stringValue", compact_json
    return "stringValue", _str


def field_decoder(
    oid: int,
    typmod: int = -1,
    options: ResultOptions = DEFAULT_RESULT_OPTIONS,
    types: Mapping[int, TypeInfo] | None = None,
) -> FieldDecoder:
    """The decoder for one result column: PostgreSQL text (or ``None`` for NULL) -> Data API ``Field``.

    ``types`` describes the non-built-in OIDs (enums, domains, extension types) by their ``pg_type`` rows;
    a type found nowhere is returned as a string, as AWS returns types it does not know.
    """
    info = type_info(oid, types)
    if _is_unsupported(info, types):
        return _unsupported(info.name)
    if info.elem:
        return _array_field_decoder(info, types)
    key, convert = _scalar_converter(info, typmod)
    if oid in _INT_OIDS and options.long_as_string:
        key, convert = "stringValue", _str
    elif oid == Oid.NUMERIC and options.decimal_as_number:

        def decode_number(text: Text) -> Field:
            if text is None:
                return _NULL
            value = _numeric_number(text)
            return {"longValue": value} if type(value) is int else {"doubleValue": value}

        return decode_number

    def decode(text: Text) -> Field:
        if text is None:
            return _NULL
        return {key: convert(text)}

    return decode


def _array_element(info: TypeInfo, types: Mapping[int, TypeInfo] | None) -> tuple[str, Callable[[str], Any]]:
    elem = type_info(info.elem, types)
    if elem.oid in _INT_OIDS:
        return "longValues", int
    if elem.oid in (Oid.FLOAT4, Oid.FLOAT8):
        # Array elements come as decimal text; unlike scalars they read back exactly (3.14 stays 3.14).
        return "doubleValues", float
    if elem.oid == Oid.BOOL:
        return "booleanValues", lambda t: t == "t"
    if elem.oid == Oid.TIMESTAMPTZ:
        return "stringValues", _timestamptz_utc
    if elem.oid == Oid.TIMETZ:
        return "stringValues", _timetz_utc
    if elem.oid in _JSON_OIDS:
        return "stringValues", compact_json
    return "stringValues", str


def _array_values(info: TypeInfo, types: Mapping[int, TypeInfo] | None) -> Callable[[bytes | str], list[Any]]:
    key_convert = _array_element(info, types)
    convert = key_convert[1]
    delimiter = info.delimiter
    name = info.name

    def values(text: bytes | str) -> list[Any]:
        try:
            items = parse_array(text, delimiter)
        except _MultiDimensional:
            raise UnsupportedResultException(
                f"The result contains the unsupported data type {name} (multidimensional array)"
            ) from None
        return [None if item is None else convert(item) for item in items]

    return values


def _array_field_decoder(info: TypeInfo, types: Mapping[int, TypeInfo] | None) -> FieldDecoder:
    key = _array_element(info, types)[0]
    values = _array_values(info, types)

    def decode(text: Text) -> Field:
        if text is None:
            return _NULL
        return {"arrayValue": {key: values(text)}}

    return decode


def _json_float(value: float) -> float | str:
    # Jackson's default for non-finite doubles: quoted names (bare NaN is not JSON).
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def json_decoder(
    oid: int,
    typmod: int = -1,
    options: ResultOptions = DEFAULT_RESULT_OPTIONS,
    types: Mapping[int, TypeInfo] | None = None,
) -> JsonDecoder:
    """The decoder for one column in ``formatRecordsAs: JSON`` mode: PostgreSQL text -> JSON value.

    As AWS documents it: integers are numbers (strings with longReturnType STRING), floats numbers, decimals
    strings (numbers with DOUBLE_OR_LONG), booleans true/false, bytea base64 strings, arrays JSON arrays,
    NULL null, everything else (dates, json, uuid, ...) strings.
    """
    info = type_info(oid, types)
    if _is_unsupported(info, types):
        return _unsupported(info.name)
    convert: Callable[[bytes | str], Any]
    if info.elem:
        values = _array_values(info, types)
        is_float = info.elem in (Oid.FLOAT4, Oid.FLOAT8)
        if is_float:

            def convert(text: bytes | str) -> Any:
                return [None if v is None else _json_float(v) for v in values(text)]

        else:
            convert = values
    elif oid in _INT_OIDS:
        convert = _str if options.long_as_string else int
    elif oid == Oid.NUMERIC:
        if options.decimal_as_number:

            def convert(text: bytes | str) -> Any:
                value = _numeric_number(text)
                return value if type(value) is int else _json_float(value)

        else:
            convert = _str
    elif oid in (Oid.FLOAT4, Oid.FLOAT8):
        widen = _float4 if oid == Oid.FLOAT4 else float

        def convert(text: bytes | str) -> Any:
            return _json_float(widen(text))

    elif oid == Oid.BYTEA:

        def convert(text: bytes | str) -> Any:
            return base64.b64encode(_bytea(text)).decode("ascii")

    else:
        convert = _scalar_converter(info, typmod)[1]

    def decode(text: Text) -> Any:
        return None if text is None else convert(text)

    return decode


def decode_field(
    oid: int,
    text: Text,
    options: ResultOptions = DEFAULT_RESULT_OPTIONS,
    typmod: int = -1,
    types: Mapping[int, TypeInfo] | None = None,
) -> Field:
    """Decode one value; for a whole result set build the decoders once with :func:`field_decoder`."""
    return field_decoder(oid, typmod, options, types)(text)


def decode_records(rows: Sequence[Sequence[Text]], decoders: Sequence[FieldDecoder]) -> list[list[Field]]:
    """All rows of a result set as Data API ``records``."""
    return [[decode(value) for decode, value in zip(decoders, row, strict=True)] for row in rows]


def format_records_json(labels: Sequence[str], rows: Sequence[Sequence[Text]], decoders: Sequence[JsonDecoder]) -> str:
    """The ``formattedRecords`` string: a JSON array with one object per row, keyed by column label.

    Duplicate labels cannot be keys of one object, so they are refused (AWS documents them as an error in
    JSON mode; give the columns aliases).  The text is compact and keeps non-ASCII characters as they are.
    """
    if len(set(labels)) != len(labels):
        seen: set[str] = set()
        duplicate = next(label for label in labels if label in seen or seen.add(label))  # type: ignore[func-returns-value]
        raise BadRequestException(
            f"The result set contains the duplicate column name {duplicate!r}; "
            "use column aliases to give each column a unique name in JSON format"
        )
    keys = tuple(labels)
    records = [
        dict(zip(keys, [decode(value) for decode, value in zip(decoders, row, strict=True)], strict=True))
        for row in rows
    ]
    return _encode_records(records)


# json.dumps with options builds a new JSONEncoder per call: one, made once.
_encode_records = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


RESPONSE_TOO_LARGE = "Database returned more than the allowed response size limit"
_BYTEA = Oid.BYTEA


def check_result_size(rows: Sequence[Sequence[Text]], oids: Sequence[int], limit: int, row_limit: int = 0) -> None:
    """Raise the Data API's error if ``rows`` hold more than ``limit`` bytes of data (or a row more than
    ``row_limit``, when that is not 0); ``oids`` are the columns' type OIDs, so bytea counts by its bytes."""
    size = 0
    if not row_limit and _BYTEA not in oids:  # the common case, on every request: one pass, no per-row work
        for row in rows:
            for value in row:
                if value is not None:
                    size += len(value)
            if size > limit:
                raise BadRequestException(RESPONSE_TOO_LARGE)
        return
    blobs = [i for i, oid in enumerate(oids) if oid == _BYTEA]
    for row in rows:
        row_size = 0
        for value in row:
            if value is not None:
                row_size += len(value)
        for i in blobs:
            value = row[i]
            if value is not None and value[:2] in (b"\\x", "\\x"):
                row_size -= (len(value) + 2) // 2  # "\\x" and two hex digits a byte: count the bytes
        if row_limit and row_size > row_limit:
            # AWS's troubleshooting guide names this error "Packet for query is too large" (64 KB a row).
            raise UnsupportedResultException(
                f"Packet for query is too large: a row of the result has {row_size} bytes, more than the "
                f"{row_limit} bytes set by BOREALIS_DATAAPI_MAX_ROW"
            )
        size += row_size
        if size > limit:
            raise BadRequestException(RESPONSE_TOO_LARGE)
