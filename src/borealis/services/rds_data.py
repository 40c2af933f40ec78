"""The RDS Data API (``rds-data``, rest-json): thin handlers over :class:`borealis.dataapi.DataApi`.

The gateway routes ``POST /Execute``, ``/BatchExecute``, ``/BeginTransaction``, ``/CommitTransaction``,
``/RollbackTransaction`` and ``/ExecuteSql`` by botocore's model and hands over typed params; each handler
calls the domain and turns a :class:`~borealis.dataapi.DataApiError` into the ``AWSError`` the client sees
(code, HTTP status, and modeled members such as ``dbConnectionId``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from borealis.aws import AWSError, Direct, Handler, RequestContext, write_float
from borealis.dataapi import DataApi, DataApiError

__all__ = ["handlers"]

Params = dict[str, Any]

# AWS's answer to ExecuteSql on Serverless v2 and provisioned clusters (the API reference's wording).
_EXECUTE_SQL = (
    "ExecuteSql isn't supported for Aurora Serverless v2 and provisioned DB clusters. "
    "Use the ExecuteStatement or BatchExecuteStatement operation."
)


def _wrap(call: Callable[[Params], Awaitable[Params]]) -> Handler:
    async def handler(ctx: RequestContext, p: Params) -> Params:
        try:
            return await call(p)
        except DataApiError as exc:
            raise _to_aws(exc) from None

    return handler


def _blob(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON")


# ExecuteStatement's output (records of Fields, column metadata, counts) is made by the Data API in wire
# form already, with no None members and nothing outside the model, but for blobValue's bytes and
# non-finite doubles: encoding it directly gives what the model's writer would, without the walk (a test
# compares the two).
_encode_execute_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_blob).encode


def _encode_execute(output: dict[str, Any]) -> bytes:
    if _fast_dumps is not None:
        try:
            body: bytes = _fast_dumps(output, default=_blob)
        except TypeError:  # past what orjson writes (integers over 64 bits): the standard library does
            pass
        else:
            # orjson writes NaN and the infinities as null; the only other nulls are NULL array elements.
            if b"null" not in body:
                return body
    return _encode_execute_text(_non_finite_as_text(output)).encode()


def _non_finite_as_text(value: Any) -> Any:
    """``value`` with NaN and the infinities as the model's writer gives them (strings, see write_float)."""
    if isinstance(value, float):
        return write_float(value)
    if isinstance(value, dict):
        return {k: _non_finite_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_non_finite_as_text(v) for v in value]
    return value


_fast_dumps: Callable[..., bytes] | None
try:
    from orjson import dumps as _fast_dumps
except ImportError:  # a platform without its wheel: the standard library alone
    _fast_dumps = None


def _to_aws(exc: DataApiError) -> AWSError:
    return AWSError(exc.code, exc.message, exc.status, fields=exc.fields or None)


def _aws_error(exc: BaseException) -> AWSError | None:
    return _to_aws(exc) if isinstance(exc, DataApiError) else None


def handlers(api: DataApi) -> dict[str, Handler]:
    """The handler of every ``rds-data`` operation, by operation name."""

    async def execute_sql(ctx: RequestContext, p: Params) -> Params:
        raise AWSError("BadRequestException", _EXECUTE_SQL)

    return {
        # The hot one: served from the HTTP callback, without a task, where it can be (see Direct).
        "ExecuteStatement": Direct(api.start_statement, _aws_error, _encode_execute),
        "BatchExecuteStatement": _wrap(api.batch_execute_statement),
        "BeginTransaction": _wrap(api.begin_transaction),
        "CommitTransaction": _wrap(api.commit_transaction),
        "RollbackTransaction": _wrap(api.rollback_transaction),
        "ExecuteSql": execute_sql,
    }
