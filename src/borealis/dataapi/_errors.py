"""The Data API errors raised by the pure parts of ``borealis.dataapi``.

Each class carries the AWS error code (the ``x-amzn-ErrorType`` the client sees) and the HTTP status the
botocore ``rds-data`` model gives it.  ``ValidationException`` is not in the model but is what AWS returns
for Serverless v2 and provisioned clusters (multi-statement SQL, the ``schema`` parameter); boto3 surfaces it
as a plain ``ClientError``.  The service layer turns any :class:`DataApiError` into an HTTP error response.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequestException",
    "DataApiError",
    "DatabaseErrorException",
    "DatabaseNotFoundException",
    "DatabaseResumingException",
    "DatabaseUnavailableException",
    "HttpEndpointNotEnabledException",
    "InvalidResourceStateException",
    "InvalidSecretException",
    "SecretsErrorException",
    "StatementTimeoutException",
    "TransactionNotFoundException",
    "UnsupportedResultException",
    "ValidationException",
]


class DataApiError(Exception):
    """An error the Data API reports to the client: an AWS error code, an HTTP status and a message."""

    code = "InternalServerErrorException"
    status = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        # Modeled members of the error shape besides the message (StatementTimeoutException's dbConnectionId).
        self.fields: dict[str, Any] = fields

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class BadRequestException(DataApiError):
    """The call is malformed (deprecated by AWS for SQL errors, still used for array parameters)."""

    code = "BadRequestException"
    status = 400


class ValidationException(DataApiError):
    """The request breaks a Data API rule checked before any SQL runs (not in the botocore model)."""

    code = "ValidationException"
    status = 400


class DatabaseErrorException(DataApiError):
    """The database (or the Data API on its behalf) rejected the statement or one of its values."""

    code = "DatabaseErrorException"
    status = 400


class UnsupportedResultException(DataApiError):
    """The result holds a type the Data API cannot return (money, geometric, multi-dimensional arrays)."""

    code = "UnsupportedResultException"
    status = 400


class StatementTimeoutException(DataApiError):
    """The call ran past its time limit (45 s); ``dbConnectionId`` names the backend that ran it."""

    code = "StatementTimeoutException"
    status = 400


class TransactionNotFoundException(DataApiError):
    """The transaction id is unknown, ended, or expired."""

    code = "TransactionNotFoundException"
    status = 404


class HttpEndpointNotEnabledException(DataApiError):
    """The cluster does not exist or its HTTP endpoint (the Data API) is disabled."""

    code = "HttpEndpointNotEnabledException"
    status = 400


class SecretsErrorException(DataApiError):
    """The secret could not be fetched (not found, deleted)."""

    code = "SecretsErrorException"
    status = 400


class InvalidSecretException(DataApiError):
    """The secret exists but holds no usable username and password."""

    code = "InvalidSecretException"
    status = 400


class DatabaseNotFoundException(DataApiError):
    """The cluster has no writer DB instance."""

    code = "DatabaseNotFoundException"
    status = 404


class DatabaseResumingException(DataApiError):
    """The writer is starting (or resuming); the client should retry in a few seconds."""

    code = "DatabaseResumingException"
    status = 400


class DatabaseUnavailableException(DataApiError):
    """The writer instance is not available (crashed and restarting, starting, refusing connections)."""

    code = "DatabaseUnavailableException"
    status = 504


class InvalidResourceStateException(DataApiError):
    """The cluster is in a state that cannot serve SQL (stopped)."""

    code = "InvalidResourceStateException"
    status = 400
