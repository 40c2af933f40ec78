"""The RDS Data API: named parameters, value codecs, column metadata, and the executor with its pools."""

from ._api import DataApi, transaction_owner
from ._errors import (
    BadRequestException,
    DataApiError,
    DatabaseErrorException,
    StatementTimeoutException,
    TransactionNotFoundException,
    UnsupportedResultException,
    ValidationException,
)
from ._metadata import ColumnDescription, ColumnSource, column_metadata
from ._params import BoundParameters, bind_parameters, encode_parameter
from ._results import (
    DEFAULT_RESULT_OPTIONS,
    RESPONSE_TOO_LARGE,
    Field,
    FieldDecoder,
    JsonDecoder,
    ResultOptions,
    check_result_size,
    compact_json,
    decode_field,
    decode_records,
    field_decoder,
    format_records_json,
    json_decoder,
    parse_array,
)
from ._settings import DataApiSettings
from ._sql import ParsedSql, parse_sql
from ._types import BUILTIN_TYPES, Oid, TypeInfo, type_info

__all__ = [
    "BUILTIN_TYPES",
    "DEFAULT_RESULT_OPTIONS",
    "RESPONSE_TOO_LARGE",
    "BadRequestException",
    "BoundParameters",
    "ColumnDescription",
    "ColumnSource",
    "DataApi",
    "DataApiError",
    "DataApiSettings",
    "DatabaseErrorException",
    "Field",
    "FieldDecoder",
    "JsonDecoder",
    "Oid",
    "ParsedSql",
    "ResultOptions",
    "StatementTimeoutException",
    "TransactionNotFoundException",
    "TypeInfo",
    "UnsupportedResultException",
    "ValidationException",
    "bind_parameters",
    "check_result_size",
    "column_metadata",
    "compact_json",
    "decode_field",
    "decode_records",
    "encode_parameter",
    "field_decoder",
    "format_records_json",
    "json_decoder",
    "parse_array",
    "parse_sql",
    "transaction_owner",
    "type_info",
]
