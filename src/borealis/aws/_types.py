"""The types handlers and the gateway share: the request context, handlers and ASGI callables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ._errors import AWSError

__all__ = ["ASGIApp", "Direct", "Handler", "Observe", "Receive", "RequestContext", "Scope", "Send", "Settle"]

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


Settle = Callable[[dict[str, Any] | BaseException], None]
"""Hands over a :class:`Direct` call's outcome later: its output, or the error it failed with."""

Observe = Callable[[BaseException | None, float], None]
"""Told of a :class:`Direct` call's outcome: the error it failed with (None: a success), and when it started."""


class Direct:
    """A handler that can answer without a coroutine, for the hottest operations (rest-json only).

    ``start(args, settle)`` returns the output at once, or returns None and calls ``settle`` once later
    with the output or an error.  It raises (or settles with) errors of the service's own kind, which
    ``error`` turns into an :class:`AWSError` (None: not one of them, which becomes a 500).  The gateway
    calls ``start`` from the HTTP protocol's callback and writes the reply from ``settle``, so a request
    costs no task, no future and no chain of awaits (:meth:`Gateway.serve_direct`); called as a plain
    handler it behaves like any other.  ``encode``, when given, writes the output's JSON body in place of
    the model's writer: for outputs that are in wire form already, where walking the model costs more
    than the rest of the reply (the service answers for the output fitting the model).  ``observe``, when
    given, is told of each call once it has its outcome, before the reply is written: ``observe(failure,
    started)`` with the exception it failed with (None: a success) and the ``time.perf_counter()`` at its
    start (GET /metrics counts and times calls so, without wrapping ``start`` in a closure per call).
    """

    __slots__ = ("encode", "error", "observe", "start")

    def __init__(
        self,
        start: Callable[[dict[str, Any], Settle], dict[str, Any] | None],
        error: Callable[[BaseException], AWSError | None],
        encode: Callable[[dict[str, Any]], bytes] | None = None,
        *,
        observe: Observe | None = None,
    ) -> None:
        self.start = start
        self.error = error
        self.encode = encode
        self.observe = observe

    async def __call__(self, ctx: RequestContext, args: dict[str, Any]) -> dict[str, Any]:
        later: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        observe = self.observe
        started = time.perf_counter() if observe is not None else 0.0

        def settle(outcome: dict[str, Any] | BaseException) -> None:
            if later.done():
                return
            if isinstance(outcome, BaseException):
                later.set_exception(outcome)
            else:
                later.set_result(outcome)

        try:
            out = self.start(args, settle)
            if out is None:
                out = await later
        except Exception as exc:
            if observe is not None:
                observe(exc, started)
            aws = self.error(exc)
            if aws is None:
                raise
            raise aws from None
        if observe is not None:
            observe(None, started)
        return out
