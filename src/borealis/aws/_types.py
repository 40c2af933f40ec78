"""The types handlers and the gateway share: the request context, handlers and ASGI callables."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._errors import AWSError

__all__ = ["ASGIApp", "Direct", "Handler", "Receive", "RequestContext", "Scope", "Send"]

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


class Direct:
    """A handler that can answer without a coroutine, for the hottest operations (rest-json only).

    ``start(args)`` returns the output at once or a future of it, and raises (or fails the future) with
    errors of the service's own kind, which ``error`` turns into an :class:`AWSError` (None: not one of
    them, which becomes a 500).  The gateway calls ``start`` from the HTTP protocol's callback, so a request
    costs no task and no chain of awaits (:meth:`Gateway.serve_direct`); called as a plain handler it
    behaves like any other.
    """

    __slots__ = ("error", "start")

    def __init__(
        self,
        start: Callable[[dict[str, Any]], dict[str, Any] | asyncio.Future[dict[str, Any]]],
        error: Callable[[BaseException], AWSError | None],
    ) -> None:
        self.start = start
        self.error = error

    async def __call__(self, ctx: RequestContext, args: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self.start(args)
            return await out if isinstance(out, asyncio.Future) else out
        except Exception as exc:
            aws = self.error(exc)
            if aws is None:
                raise
            raise aws from None
