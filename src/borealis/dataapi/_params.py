"""Data API parameters (``SqlParameter``) to server-side PostgreSQL parameters: values, type OIDs, formats.

Each ``:name`` of the SQL became ``$n`` (see :mod:`borealis.dataapi._sql`); this module turns the request's
``parameters`` into the three lists an extended-protocol Parse/Bind needs: one value per ``$n`` (text for
PostgreSQL's text input, raw bytes for ``bytea`` in binary format, or ``None`` for NULL), its type OID for
Parse (0 lets PostgreSQL infer it), and its format code for Bind.

The types follow what AWS sends, so the same SQL behaves the same on AWS and on Borealis:

=====================  ==========================  ========================================================
Field                  PostgreSQL type             why
=====================  ==========================  ========================================================
isNull                 unspecified (0)             NULL fits any column; PostgreSQL infers the type
booleanValue           bool
longValue              int8
doubleValue            float8
stringValue            text                        AWS types strings, so ``uuid_col = :s`` fails with
                                                   "operator does not exist: uuid = text" unless the SQL
                                                   casts or the parameter has a typeHint (users hit this)
stringValue + hint     date, time, timestamp,      ``typeHint`` DATE, TIME, TIMESTAMP, DECIMAL, JSON, UUID;
                       numeric, json, uuid         json assigns to jsonb columns by PostgreSQL's cast
blobValue              bytea (binary format)       no hex/base64 round trip on the server
arrayValue             refused                     BadRequestException "Array parameters are not
                                                   supported." as AWS answers
=====================  ==========================  ========================================================

DATE, TIME and TIMESTAMP values are checked against the formats AWS documents (``YYYY-MM-DD``,
``HH:MM:SS[.FFF]``, ``YYYY-MM-DD HH:MM:SS[.FFF]``) before anything is sent: AWS fails an ISO-8601 value such
as ``2026-07-22T02:17:21.804Z`` with ``DatabaseErrorException: Parse Error for TimeStamp: input contains
invalid characters``.  Out-of-range values (month 13) are left to PostgreSQL, whose error says so.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import BadRequestException, DatabaseErrorException
from ._sql import ParsedSql
from ._types import Oid

__all__ = ["BoundParameters", "bind_parameters", "encode_parameter"]

ParamValue = str | bytes | None

_VALUE_KEYS = ("isNull", "booleanValue", "longValue", "doubleValue", "stringValue", "blobValue", "arrayValue")
_VALUE_KEY_SET = frozenset(_VALUE_KEYS)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_HINT_OIDS: dict[str, int] = {
    "DATE": Oid.DATE,
    "TIME": Oid.TIME,
    "TIMESTAMP": Oid.TIMESTAMP,
    "DECIMAL": Oid.NUMERIC,
    "JSON": Oid.JSON,
    "UUID": Oid.UUID,
}

# AWS's documented formats; more than three fractional digits are accepted (PostgreSQL keeps microseconds).
_FORMATS: dict[str, tuple[re.Pattern[str], re.Pattern[str], str, str]] = {
    "DATE": (re.compile(r"\d{4}-\d{2}-\d{2}"), re.compile(r"[0-9-]*"), "Date", "YYYY-MM-DD"),
    "TIME": (
        re.compile(r"\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"),
        re.compile(r"[0-9:.]*"),
        "Time",
        "HH:MM:SS[.FFF]",
    ),
    "TIMESTAMP": (
        re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"),
        re.compile(r"[0-9: .-]*"),
        "TimeStamp",
        "YYYY-MM-DD HH:MM:SS[.FFF]",
    ),
}


@dataclass(slots=True)  # made per request: a frozen dataclass costs a setattr call per field
class BoundParameters:
    """The values, type OIDs and format codes (0 text, 1 binary) for ``$1 .. $n``, in order."""

    values: tuple[ParamValue, ...]
    oids: tuple[int, ...]
    formats: tuple[int, ...]


_NO_PARAMETERS = BoundParameters((), (), ())


def bind_parameters(parsed: ParsedSql, parameters: Sequence[Mapping[str, Any]] | None) -> BoundParameters:
    """Match the request's ``parameters`` to the placeholders of ``parsed`` and encode each value.

    Parameters the SQL does not use are ignored, as AWS ignores them (clients such as data-api-client send
    every value they were given); when a name is given twice the last one wins.  A placeholder with no
    parameter is an error, raised before anything reaches PostgreSQL.
    """
    if not parsed.names:
        return _NO_PARAMETERS
    if parsed.positional:
        # The user wrote $n themselves and also used :name; no value can be bound to their $n.
        raise DatabaseErrorException(
            f"ERROR: there is no parameter ${parsed.positional_first}\n"
            f"  Position: {parsed.positional_at}; SQLState: 42P02"
        )
    by_name: dict[str, Mapping[str, Any]] = {}
    for param in parameters or ():
        if not isinstance(param, (dict, Mapping)):  # dict first: an ABC check costs more
            raise BadRequestException("Each parameter must be an object with a name and a value")
        name = param.get("name")
        if isinstance(name, str):
            by_name[name] = param
    values: list[ParamValue] = []
    oids: list[int] = []
    formats: list[int] = []
    for number, name in enumerate(parsed.names, start=1):
        found = by_name.get(name)
        if found is None:
            # pgJDBC's wording for an unbound parameter, naming the placeholder as well.
            raise DatabaseErrorException(f"No value specified for parameter {number} (:{name}).")
        value, oid = encode_parameter(found)
        values.append(value)
        oids.append(oid)
        formats.append(1 if type(value) is bytes else 0)
    return BoundParameters(tuple(values), tuple(oids), tuple(formats))


def encode_parameter(param: Mapping[str, Any]) -> tuple[ParamValue, int]:
    """One ``SqlParameter`` as (value, type OID); raises the Data API error AWS gives for a bad one."""
    name = param.get("name")
    field = param.get("value")
    if not isinstance(field, (dict, Mapping)):  # dict first: an ABC check costs more
        raise BadRequestException(f'Parameter "{name}" has value with no field set')
    kind = None
    for key, item in field.items():  # a union: one member, where the model has seven
        if item is not None and key in _VALUE_KEY_SET:
            if kind is not None:
                raise BadRequestException(f'Parameter "{name}" has more than one field set in its value')
            kind = key
    if kind is None:
        raise BadRequestException(f'Parameter "{name}" has value with no field set')
    raw = field[kind]

    if kind == "stringValue":
        if not isinstance(raw, str):
            raise BadRequestException(f'Parameter "{name}" has a stringValue that is not a string')
        _check_text(raw)
        hint = param.get("typeHint")
        if hint is None:
            return raw, Oid.TEXT
        oid = _HINT_OIDS.get(hint) if isinstance(hint, str) else None
        if oid is None:
            raise BadRequestException(
                f'Parameter "{name}" has an invalid typeHint {hint!r}: '
                "expected one of DATE, TIME, TIMESTAMP, DECIMAL, JSON, UUID"
            )
        checked = _FORMATS.get(hint)
        if checked is not None:
            _check_format(raw, *checked)
        return raw, oid
    if kind == "longValue":
        if type(raw) is not int or not _INT64_MIN <= raw <= _INT64_MAX:
            raise BadRequestException(f'Parameter "{name}" has a longValue that is not a 64-bit integer')
        return str(raw), Oid.INT8
    if kind == "isNull":
        return None, 0
    if kind == "booleanValue":
        if type(raw) is not bool:
            raise BadRequestException(f'Parameter "{name}" has a booleanValue that is not a boolean')
        return ("t" if raw else "f"), Oid.BOOL
    if kind == "doubleValue":
        if type(raw) is bool or not isinstance(raw, int | float):
            raise BadRequestException(f'Parameter "{name}" has a doubleValue that is not a number')
        return _float_text(float(raw)), Oid.FLOAT8
    if kind == "blobValue":
        return _blob(name, raw), Oid.BYTEA
    # arrayValue: in the model, refused by the service.
    raise BadRequestException("Array parameters are not supported.")


def _float_text(value: float) -> str:
    if math.isfinite(value):
        return repr(value)  # shortest text that reads back as the same double
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _blob(name: object, raw: object) -> bytes:
    # The rest-json layer may hand over the base64 text of the wire or bytes already decoded.
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise BadRequestException(f'Parameter "{name}" has a blobValue that is not valid base64')


def _check_text(value: str) -> None:
    # PostgreSQL text cannot hold NUL and the wire needs valid UTF-8 (JSON may carry lone surrogates):
    # answer as PostgreSQL would, without a round trip.
    if "\x00" in value:
        raise DatabaseErrorException('ERROR: invalid byte sequence for encoding "UTF8": 0x00; SQLState: 22021')
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DatabaseErrorException('ERROR: invalid byte sequence for encoding "UTF8"; SQLState: 22021') from exc


def _check_format(value: str, shape: re.Pattern[str], charset: re.Pattern[str], label: str, expected: str) -> None:
    if shape.fullmatch(value):
        return
    if not charset.fullmatch(value):
        raise DatabaseErrorException(f"Parse Error for {label}: input contains invalid characters")
    raise DatabaseErrorException(f"Parse Error for {label}: input does not match the format {expected}")
