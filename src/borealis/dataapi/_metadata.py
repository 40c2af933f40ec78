"""``columnMetadata`` for ``includeResultMetadata``: the 14 ``ColumnMetadata`` fields AWS fills.

AWS computes them with pgJDBC's ``PgResultSetMetaData``; Borealis computes the same from the RowDescription
(name, table OID, column number, type OID, type modifier) plus, for columns that come from a table, one
catalog row the executor reads and caches (see :class:`ColumnSource`):

* ``name`` and ``label``: the RowDescription name (pgJDBC's ``getColumnName`` returns the label).
* ``type``: the ``java.sql.Types`` code (bool is BIT -7, text VARCHAR 12, timestamptz TIMESTAMP 93, arrays
  ARRAY 2003, json/uuid/inet OTHER 1111, enums VARCHAR); ``typeName``: ``pg_type.typname`` (``int4``,
  ``_int4``, ``timestamptz``), except that auto-increment int2/int4/int8 columns read ``smallserial``,
  ``serial``, ``bigserial`` as pgJDBC reports them.
* ``precision``/``scale``: from the type modifier (numeric(10,4) -> 10/4, varchar(255) -> 255/0, text ->
  2147483647/0, float8 -> 17/17, timestamp -> 29/6).
* ``nullable``: 0 for NOT NULL columns, 1 for nullable ones, 2 (unknown) for expressions.
* ``schemaName``: always ``""`` (pgJDBC's ``getSchemaName``); ``tableName``: the table for table columns,
  ``""`` for expressions.
* ``isSigned``: the numeric types; ``isCaseSensitive``: all but numbers, booleans, bits and date/times;
  ``isCurrency``: money; ``isAutoIncrement``: identity columns and columns defaulting to ``nextval(...)``.
* ``arrayBaseColumnType``: the element's ``java.sql.Types`` code for an array column, otherwise 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._types import Oid, TypeInfo, jdbc_precision, jdbc_scale, jdbc_type, type_info

__all__ = ["ColumnDescription", "ColumnSource", "column_metadata"]

# pgJDBC's TypeInfoCache.isCaseSensitive / isSigned, by (element) type OID.
_CASE_INSENSITIVE = frozenset(
    (
        Oid.OID, Oid.INT2, Oid.INT4, Oid.INT8, Oid.FLOAT4, Oid.FLOAT8, Oid.NUMERIC, Oid.BOOL, Oid.BIT,
        Oid.DATE, Oid.TIME, Oid.TIMETZ, Oid.TIMESTAMP, Oid.TIMESTAMPTZ, Oid.INTERVAL,
    )
)  # fmt: skip
_SIGNED = frozenset((Oid.INT2, Oid.INT4, Oid.INT8, Oid.FLOAT4, Oid.FLOAT8, Oid.NUMERIC))
_SERIAL_NAMES = {"int2": "smallserial", "int4": "serial", "int8": "bigserial"}

# java.sql.ResultSetMetaData nullability constants.
COLUMN_NO_NULLS = 0
COLUMN_NULLABLE = 1
COLUMN_NULLABLE_UNKNOWN = 2


@dataclass(frozen=True, slots=True)
class ColumnDescription:
    """One field of a PostgreSQL RowDescription message."""

    name: str
    table_oid: int
    column: int
    type_oid: int
    typmod: int = -1


@dataclass(frozen=True, slots=True)
class ColumnSource:
    """Catalog facts about a table column (``table_oid``, ``column``), read by the executor and cached.

    ``not_null`` is ``pg_attribute.attnotnull``; ``auto_increment`` is ``attidentity <> ''`` or a default
    expression containing ``nextval(``, pgJDBC's test.
    """

    table_name: str
    not_null: bool
    auto_increment: bool


def column_metadata(
    column: ColumnDescription,
    source: ColumnSource | None = None,
    types: Mapping[int, TypeInfo] | None = None,
) -> dict[str, Any]:
    """The ``ColumnMetadata`` object for one result column; ``source`` is ``None`` for an expression."""
    info = type_info(column.type_oid, types)
    base = info.elem or info.oid
    auto_increment = source is not None and source.auto_increment
    type_name = info.name
    if auto_increment:
        type_name = _SERIAL_NAMES.get(type_name, type_name)
    nullable = COLUMN_NULLABLE_UNKNOWN
    if source is not None:
        nullable = COLUMN_NO_NULLS if source.not_null else COLUMN_NULLABLE
    array_base = jdbc_type(type_info(info.elem, types)) if info.elem else 0
    return {
        "arrayBaseColumnType": array_base,
        "isAutoIncrement": auto_increment,
        "isCaseSensitive": base not in _CASE_INSENSITIVE,
        "isCurrency": info.name in ("money", "cash"),
        "isSigned": base in _SIGNED,
        "label": column.name,
        "name": column.name,
        "nullable": nullable,
        "precision": jdbc_precision(info, column.typmod),
        "scale": jdbc_scale(info, column.typmod),
        "schemaName": "",
        "tableName": source.table_name if source is not None else "",
        "type": jdbc_type(info),
        "typeName": type_name,
    }
