"""AWS errors: the exception handlers raise, and how a code maps to the wire per service model.

A handler raises `AWSError("DBClusterNotFoundFault", "...")`. When the code names a modeled error
shape, the model decides what the client sees: the query wire code (`error.code`, e.g.
"DBInstanceNotFoundFault" -> "DBInstanceNotFound"), the HTTP status and Sender/Receiver. Any other
code is sent as given with the status the handler chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.model import ServiceModel

__all__ = ["AWSError", "ErrorCatalog", "InputError", "ResolvedError"]


class AWSError(Exception):
    """An error a handler raises to answer the client with an AWS error code.

    `code` may be a modeled error SHAPE name (e.g. "DBInstanceNotFoundFault", "ResourceNotFoundException"):
    the gateway then takes the wire code, HTTP status and Sender/Receiver type from the service model.
    Otherwise `code` and `status` are used as given. `fields` adds modeled members of the error shape
    (e.g. rds-data's `dbConnectionId`) to JSON error bodies.
    """

    def __init__(self, code: str, message: str, status: int = 400, *, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields: Mapping[str, Any] = fields or {}


class InputError(Exception):
    """The request could not be turned into the operation's input (raised by the protocol parsers).

    `missing` says a required member is absent; `malformed` says the body itself is not valid
    (bad JSON, wrong JSON type); otherwise a value has the wrong form for its shape. The gateway picks
    the AWS code for the protocol, so the parsers stay protocol-neutral about codes.
    """

    def __init__(self, message: str, *, missing: bool = False, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing
        self.malformed = malformed
        # Filled in from the inside out as the error unwinds through structures and lists.
        self.path: list[str] = []

    def where(self) -> str:
        """The member path of the offending value, e.g. "Tags.1.Key" ("" at the top level)."""
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class ResolvedError:
    """What the client sees for one error: codes for each protocol flavour, status and fault side."""

    shape_name: str  # the code JSON protocols send (`__type`); the modeled shape name when modeled
    query_code: str  # the code query/XML sends (`error.code` trait when modeled)
    status: int
    sender: bool
    modeled: bool


class ErrorCatalog:
    """The modeled errors of one service, indexed by shape name and by query wire code."""

    __slots__ = ("_by_code", "_by_shape")

    def __init__(self, model: ServiceModel) -> None:
        """Index every exception shape of `model` (done once at gateway start)."""
        self._by_shape: dict[str, ResolvedError] = {}
        self._by_code: dict[str, ResolvedError] = {}
        for shape in model.error_shapes:
            error = shape.metadata.get("error", {})
            status = int(error.get("httpStatusCode", 400))
            resolved = ResolvedError(
                shape_name=shape.name,
                query_code=str(error.get("code", shape.name)),
                status=status,
                sender=bool(error.get("senderFault", status < 500)),
                modeled=True,
            )
            self._by_shape[shape.name] = resolved
            # Handlers may also raise the wire code itself ("DBInstanceNotFound"); map it back.
            self._by_code.setdefault(resolved.query_code, resolved)

    def resolve(self, code: str, status: int) -> ResolvedError:
        """Resolve a handler's code: the model wins when it knows the code, else the code as given."""
        found = self._by_shape.get(code) or self._by_code.get(code)
        if found is not None:
            return found
        return ResolvedError(code, code, status, status < 500, modeled=False)
