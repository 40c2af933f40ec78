"""The types handlers and the gateway share: the request context, handlers and ASGI callables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ASGIApp", "Handler", "Receive", "RequestContext", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who called what: passed to every handler with the parsed input."""

    service: str  # botocore model name: "rds", "secretsmanager", "rds-data", "cloudwatch"
    operation: str  # e.g. "CreateDBCluster"
    region: str  # from the SigV4 credential scope
    access_key: str
    request_id: str


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]
