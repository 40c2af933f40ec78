"""The Data API's limits, AWS's values by default, each overridable by a ``BOREALIS_DATAAPI_*`` variable.

The defaults are what AWS documents for Aurora Serverless v2 and provisioned clusters, so a test that passes
on Borealis holds on AWS; raising one is a deliberate choice to go beyond AWS (big exports, long DDL).  One
default follows the service rather than its documentation: AWS documents 64 KB per row, but returns rows
of 100,000 characters and 512,000 bytes of bytea, so no row limit applies unless MAX_ROW is set.

=========================================  ===========================  ==================================
variable                                   default                      meaning
=========================================  ===========================  ==================================
BOREALIS_DATAAPI_CALL_TIMEOUT              45 (seconds)                 per call, then StatementTimeout
BOREALIS_DATAAPI_TRANSACTION_IDLE_TIMEOUT  180 (seconds)                rolled back after this long unused
BOREALIS_DATAAPI_TRANSACTION_MAX_AGE       86400 (seconds)              rolled back after this long in all
BOREALIS_DATAAPI_MAX_RESPONSE              1048576 (bytes)              database data per response
BOREALIS_DATAAPI_MAX_JSON_RESPONSE         10485760 (bytes)             ``formattedRecords`` length
BOREALIS_DATAAPI_MAX_ROW                   0 (bytes; 0: none)           database data per result row; 65536
                                                                        is AWS's documented limit, which
                                                                        the service does not apply
BOREALIS_DATAAPI_MAX_REQUEST               4194304 (bytes)              request values (SQL + parameters)
BOREALIS_DATAAPI_MAX_SQL                   65536 (characters)           the model's SqlStatement limit
BOREALIS_DATAAPI_ALLOW_MULTI_STATEMENT     0                            1: run ``a; b`` (AWS refuses it)
BOREALIS_DATAAPI_ALLOW_SCHEMA              0                            1: accept ``schema`` (search_path)
BOREALIS_DATAAPI_POOL_SIZE                 40                           connections per (cluster, user, db)
BOREALIS_DATAAPI_POOL_IDLE                 300 (seconds)                idle pooled connections close
BOREALIS_DATAAPI_CONNECT_TIMEOUT           10 (seconds)                 opening a connection to postgres
BOREALIS_DATAAPI_UNIX_SOCKET               1                            0: pooled connections over TCP only
BOREALIS_DATAAPI_STATEMENT_CACHE           100                          prepared statements kept per
                                                                        pooled connection (0: none)
BOREALIS_DATAAPI_VERIFY_TTL                10 (seconds)                 a TCP-verified password opens unix
                                                                        socket connections this long
=========================================  ===========================  ==================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["DataApiSettings"]

_PREFIX = "BOREALIS_DATAAPI_"


@dataclass(frozen=True, slots=True)
class DataApiSettings:
    """The Data API's limits and pool sizes (see the module docstring for each variable)."""

    call_timeout: float = 45.0
    transaction_idle_timeout: float = 180.0
    transaction_max_age: float = 86400.0
    max_response: int = 1024 * 1024
    max_json_response: int = 10 * 1024 * 1024
    max_row: int = 0
    max_request: int = 4 * 1024 * 1024
    max_sql: int = 65536
    allow_multi_statement: bool = False
    allow_schema: bool = False
    pool_size: int = 40
    pool_idle: float = 300.0
    connect_timeout: float = 10.0
    unix_socket: bool = True
    verify_ttl: float = 10.0
    statement_cache: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DataApiSettings:
        """The defaults, overridden by any ``BOREALIS_DATAAPI_<FIELD>`` set in ``environ``.

        A malformed value raises ``ValueError`` naming the variable, at start-up rather than per request.
        """
        env = os.environ if environ is None else environ
        values: dict[str, float | int | bool] = {}
        for f in fields(cls):
            name = _PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            text = raw.strip()
            try:
                if f.type == "bool":
                    if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(text)
                    values[f.name] = text.lower() in ("1", "true", "yes", "on")
                elif f.type == "int":
                    values[f.name] = int(text)
                else:
                    values[f.name] = float(text)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {f.type}") from None
        return cls(**values)  # type: ignore[arg-type]
