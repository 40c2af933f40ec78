"""PostgreSQL's built-in types as the Data API sees them: OIDs, names, and the pgJDBC facts AWS exposes.

AWS's Data API runs on top of the PostgreSQL JDBC driver, so what it reports as column metadata is what
pgJDBC's ``PgResultSetMetaData`` and ``TypeInfoCache`` compute: ``java.sql.Types`` codes, precision and
scale from the type modifier, signedness and case sensitivity.  This module holds those tables for the
built-in types; types created by users (enums, domains, composites, extension types) are described by a
:class:`TypeInfo` that the executor reads from ``pg_type`` once and caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BUILTIN_TYPES",
    "JDBC_ARRAY",
    "JDBC_OTHER",
    "Oid",
    "TypeInfo",
    "jdbc_display_size",
    "jdbc_precision",
    "jdbc_scale",
    "jdbc_type",
    "type_info",
]


class Oid:
    """OIDs of the built-in types the Data API treats specially (fixed since PostgreSQL 8)."""

    BOOL = 16
    BYTEA = 17
    CHAR = 18
    NAME = 19
    INT8 = 20
    INT2 = 21
    INT4 = 23
    TEXT = 25
    OID = 26
    JSON = 114
    XML = 142
    FLOAT4 = 700
    FLOAT8 = 701
    UNKNOWN = 705
    MONEY = 790
    BPCHAR = 1042
    VARCHAR = 1043
    DATE = 1082
    TIME = 1083
    TIMESTAMP = 1114
    TIMESTAMPTZ = 1184
    INTERVAL = 1186
    TIMETZ = 1266
    BIT = 1560
    VARBIT = 1562
    NUMERIC = 1700
    REFCURSOR = 1790
    UUID = 2950
    JSONB = 3802
    # Arrays the decoders handle natively.
    INT2_ARRAY = 1005
    INT4_ARRAY = 1007
    INT8_ARRAY = 1016
    TEXT_ARRAY = 1009
    FLOAT8_ARRAY = 1022


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What the Data API needs to know about one PostgreSQL type.

    ``elem`` is the element type's OID for an array type (0 otherwise); ``typtype`` is ``pg_type.typtype``
    (``b`` base, ``e`` enum, ``d`` domain, ``c`` composite, ``r`` range, ``m`` multirange, ``p`` pseudo).
    """

    oid: int
    name: str
    elem: int = 0
    typtype: str = "b"
    delimiter: str = ","


# (oid, name, array oid) for every built-in type an ordinary query can return, from pg_type of
# PostgreSQL 15.  Array types are named ``_<name>`` as in pg_type.
_BASE: tuple[tuple[int, str, int], ...] = (
    (16, "bool", 1000), (17, "bytea", 1001), (18, "char", 1002), (19, "name", 1003), (20, "int8", 1016),
    (21, "int2", 1005), (22, "int2vector", 1006), (23, "int4", 1007), (24, "regproc", 1008),
    (25, "text", 1009), (26, "oid", 1028), (27, "tid", 1010), (28, "xid", 1011), (29, "cid", 1012),
    (30, "oidvector", 1013), (114, "json", 199), (142, "xml", 143), (600, "point", 1017),
    (601, "lseg", 1018), (602, "path", 1019), (603, "box", 1020), (604, "polygon", 1027),
    (628, "line", 629), (650, "cidr", 651), (700, "float4", 1021), (701, "float8", 1022),
    (705, "unknown", 0), (718, "circle", 719), (774, "macaddr8", 775), (790, "money", 791),
    (829, "macaddr", 1040), (869, "inet", 1041), (1033, "aclitem", 1034), (1042, "bpchar", 1014),
    (1043, "varchar", 1015), (1082, "date", 1182), (1083, "time", 1183), (1114, "timestamp", 1115),
    (1184, "timestamptz", 1185), (1186, "interval", 1187), (1266, "timetz", 1270), (1560, "bit", 1561),
    (1562, "varbit", 1563), (1700, "numeric", 1231), (1790, "refcursor", 2201),
    (2202, "regprocedure", 2207), (2203, "regoper", 2208), (2204, "regoperator", 2209),
    (2205, "regclass", 2210), (2206, "regtype", 2211), (2249, "record", 2287), (2278, "void", 0),
    (2950, "uuid", 2951), (3220, "pg_lsn", 3221), (3614, "tsvector", 3643), (3615, "tsquery", 3645),
    (3734, "regconfig", 3735), (3769, "regdictionary", 3770), (3802, "jsonb", 3807),
    (3904, "int4range", 3905), (3906, "numrange", 3907), (3908, "tsrange", 3909),
    (3910, "tstzrange", 3911), (3912, "daterange", 3913), (3926, "int8range", 3927),
    (4072, "jsonpath", 4073), (4089, "regnamespace", 4090), (4096, "regrole", 4097),
    (4191, "regcollation", 4192), (5069, "xid8", 271),
)  # fmt: skip


def _builtin_types() -> dict[int, TypeInfo]:
    types: dict[int, TypeInfo] = {}
    for oid, name, array in _BASE:
        types[oid] = TypeInfo(oid, name, typtype="p" if name in ("unknown", "record", "void") else "b")
        if array:
            # box is the one built-in type whose array delimiter is ';' (its text contains commas).
            types[array] = TypeInfo(array, "_" + name, elem=oid, delimiter=";" if name == "box" else ",")
    return types


BUILTIN_TYPES: dict[int, TypeInfo] = _builtin_types()
"""Every built-in type by OID."""


def type_info(oid: int, extra: Mapping[int, TypeInfo] | None = None) -> TypeInfo:
    """The :class:`TypeInfo` for ``oid``: built-in, else from ``extra`` (the executor's pg_type cache)."""
    info = BUILTIN_TYPES.get(oid)
    if info is None and extra is not None:
        info = extra.get(oid)
    return info if info is not None else TypeInfo(oid, "unknown", typtype="b")


# java.sql.Types codes, as pgJDBC's TypeInfoCache assigns them.
JDBC_BIT = -7
JDBC_BIGINT = -5
JDBC_BINARY = -2
JDBC_CHAR = 1
JDBC_NUMERIC = 2
JDBC_INTEGER = 4
JDBC_SMALLINT = 5
JDBC_REAL = 7
JDBC_DOUBLE = 8
JDBC_VARCHAR = 12
JDBC_DATE = 91
JDBC_TIME = 92
JDBC_TIMESTAMP = 93
JDBC_OTHER = 1111
JDBC_DISTINCT = 2001
JDBC_STRUCT = 2002
JDBC_ARRAY = 2003
JDBC_SQLXML = 2009
JDBC_REF_CURSOR = 2012

_JDBC_BY_OID: dict[int, int] = {
    Oid.INT2: JDBC_SMALLINT,
    Oid.INT4: JDBC_INTEGER,
    Oid.OID: JDBC_BIGINT,
    Oid.INT8: JDBC_BIGINT,
    Oid.MONEY: JDBC_DOUBLE,
    Oid.NUMERIC: JDBC_NUMERIC,
    Oid.FLOAT4: JDBC_REAL,
    Oid.FLOAT8: JDBC_DOUBLE,
    Oid.CHAR: JDBC_CHAR,
    Oid.BPCHAR: JDBC_CHAR,
    Oid.VARCHAR: JDBC_VARCHAR,
    Oid.TEXT: JDBC_VARCHAR,
    Oid.NAME: JDBC_VARCHAR,
    Oid.BYTEA: JDBC_BINARY,
    Oid.BOOL: JDBC_BIT,
    Oid.BIT: JDBC_BIT,
    Oid.DATE: JDBC_DATE,
    Oid.TIME: JDBC_TIME,
    Oid.TIMETZ: JDBC_TIME,
    Oid.TIMESTAMP: JDBC_TIMESTAMP,
    Oid.TIMESTAMPTZ: JDBC_TIMESTAMP,
    Oid.REFCURSOR: JDBC_REF_CURSOR,
    Oid.XML: JDBC_SQLXML,
}


def jdbc_type(info: TypeInfo) -> int:
    """The ``java.sql.Types`` code pgJDBC reports for a column of this type."""
    code = _JDBC_BY_OID.get(info.oid)
    if code is not None:
        return code
    if info.elem:
        return JDBC_ARRAY
    # pgJDBC's TypeInfoCache.getSQLType for types it does not know: by pg_type.typtype.
    return {"c": JDBC_STRUCT, "d": JDBC_DISTINCT, "e": JDBC_VARCHAR}.get(info.typtype, JDBC_OTHER)


# pgJDBC reports Integer.MAX_VALUE ("unknownLength") as the precision of unbounded types.
UNKNOWN_LENGTH = 2147483647


def jdbc_display_size(oid: int, typmod: int) -> int:
    """pgJDBC's ``getDisplaySize`` for the date/time types (the precision it reports for them)."""
    if oid == Oid.DATE:
        return 13
    if oid == Oid.INTERVAL:
        return 49
    # Digits after the decimal point plus the point itself; time(1) prints two digits.
    second = 7 if typmod == -1 else 0 if typmod == 0 else 3 if typmod == 1 else typmod + 1
    if oid == Oid.TIME:
        return 8 + second
    if oid == Oid.TIMETZ:
        return 8 + second + 6
    if oid == Oid.TIMESTAMP:
        return 13 + 1 + 8 + second
    return 13 + 1 + 8 + second + 6  # timestamptz


def jdbc_precision(info: TypeInfo, typmod: int) -> int:
    """pgJDBC's ``TypeInfoCache.getPrecision``: arrays report their element type's precision."""
    oid = info.elem or info.oid
    if oid == Oid.INT2:
        return 5
    if oid in (Oid.OID, Oid.INT4):
        return 10
    if oid == Oid.INT8:
        return 19
    if oid == Oid.FLOAT4:
        return 8  # pessimistic, as pgJDBC says: 6 significant digits come out reliably
    if oid == Oid.FLOAT8:
        return 17
    if oid == Oid.NUMERIC:
        return 0 if typmod == -1 else ((typmod - 4) >> 16) & 0xFFFF
    if oid in (Oid.CHAR, Oid.BOOL):
        return 1
    if oid in (Oid.BPCHAR, Oid.VARCHAR):
        return UNKNOWN_LENGTH if typmod == -1 else typmod - 4
    if oid in (Oid.DATE, Oid.TIME, Oid.TIMETZ, Oid.INTERVAL, Oid.TIMESTAMP, Oid.TIMESTAMPTZ):
        return jdbc_display_size(oid, typmod)
    if oid == Oid.BIT:
        return typmod
    if oid == Oid.VARBIT:
        return UNKNOWN_LENGTH if typmod == -1 else typmod
    return UNKNOWN_LENGTH


def jdbc_scale(info: TypeInfo, typmod: int) -> int:
    """pgJDBC's ``TypeInfoCache.getScale``."""
    oid = info.elem or info.oid
    if oid == Oid.FLOAT4:
        return 8
    if oid == Oid.FLOAT8:
        return 17
    if oid == Oid.NUMERIC:
        return 0 if typmod == -1 else (typmod - 4) & 0xFFFF
    if oid in (Oid.TIME, Oid.TIMETZ, Oid.TIMESTAMP, Oid.TIMESTAMPTZ):
        return 6 if typmod == -1 else typmod
    if oid == Oid.INTERVAL:
        return 6 if typmod == -1 else typmod & 0xFFFF
    return 0
