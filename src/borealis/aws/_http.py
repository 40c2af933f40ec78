"""A lean HTTP/1.1 server for the :class:`Gateway`: httptools parsing on an asyncio Protocol.

uvicorn's ASGI cycle (scope dicts, receive/send messages, a task and several awaits per request) costs
more than the Data API's own work on a primary-key SELECT, so AWS calls skip it: the protocol parses the
request with httptools, hands method, path, headers and body to :meth:`Gateway.classify` and
:meth:`Gateway.serve`, and writes the reply in one ``transport.write``.  Requests that are not AWS calls
(``/health``, the console) still go to the gateway's ASGI fallback app through a minimal adapter.

Rules: keep-alive per HTTP/1.1 (``Connection: close`` and HTTP/1.0 honoured); pipelined requests are
served one after another in order; ``Expect: 100-continue`` is answered; a body over
:data:`~borealis.aws._gateway.MAX_BODY` gets 413 and the connection is closed; a malformed request gets 400
and the connection is closed.  The server never raises into the event loop.

Limits (:class:`HttpLimits`, docs/security.md item 4), so that no client can grow the server's memory or
hold its connections without bound: a request line over ``max_url`` bytes gets 414, a head over
``max_header_bytes`` bytes or ``max_headers`` fields gets 431 (both counted before the parser buffers them);
a connection with no request for ``idle_timeout`` seconds, or a request not received whole within
``request_timeout`` seconds of its start (slowloris), is closed; and a connection whose replies are not
being read stops being read (back-pressure: the transport's write buffer over its high-water mark pauses
reading and the serving of pipelined requests; a client that reads nothing for ``idle_timeout`` more is
dropped).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import logging
import os
import ssl
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import httptools

from ._gateway import MAX_BODY, Gateway, header_dict
from ._service import Reply

__all__ = ["HttpLimits", "HttpServer", "Route", "forward"]

log = logging.getLogger("borealis.aws")

_REASONS = {
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    303: b"See Other",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one connection may send and how long it may take (``borealis up`` reads the timeouts from
    its settings: ``http_idle_timeout``, ``http_request_timeout``)."""

    max_url: int = 16 * 1024
    """Bytes of the request target: AWS front ends refuse a request line past 16 KiB."""
    max_header_bytes: int = 64 * 1024
    """Bytes of the request line and header fields together (64 KiB, as AWS load balancers allow)."""
    max_headers: int = 100
    idle_timeout: float = 60.0
    """Seconds a kept-alive connection may wait for its next request (or a client not read its replies)."""
    request_timeout: float = 60.0
    """Seconds from a request's first byte of its target until its last byte (head and body)."""
    write_high_water: int = 256 * 1024
    """Bytes of replies not yet taken by the client beyond which the connection is not read."""
    max_connections: int = 4096
    """Open connections per process. The API shares its file descriptors with the endpoints and proxies
    (the main process): at this many, a new connection displaces the longest-idle one, or is refused."""
    max_pipeline: int = 64
    """Requests received and waiting behind the one being served beyond which the connection is not read."""


class _Refused(Exception):
    """A limit was passed inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, message: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.message = message


UNSIGNED_BODY = 64 * 1024
"""Bytes of body kept for a request that no known access key signs (beyond: read and dropped)."""

_Request = tuple[str, bytes, list[tuple[bytes, bytes]], bytes, bool, str]  # method, url, headers, body, keep, ver


class _Clock:
    """The ``Date`` header, formatted once per second."""

    __slots__ = ("header", "second")

    def __init__(self) -> None:
        self.second = 0
        self.header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.header


_clock = _Clock()


_STATUS_LINES = {status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in _REASONS.items()}


def _response(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool, *, head: bool = False
) -> bytes:
    """The bytes of a response; ``head``: to a HEAD request, with the body's length but not the body."""
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
    parts = [line, _clock.date()]
    for name, value in headers:
        size = len(name)  # the two names we set ourselves are 14 and 10 bytes long: lowercase only those
        if (size == 14 or size == 10) and name.lower() in (b"content-length", b"connection"):
            continue
        parts += (name, b": ", value, b"\r\n")
    parts.append(
        b"content-length: %d\r\n\r\n" % len(body)
        if keep_alive
        else b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    if not head:
        parts.append(body)
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, serve them in order, write the replies."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.gateway = server.gateway
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes | bytearray] = []
        self.size = 0
        self.too_large = False
        self.discard = False  # the body of a request no known key signs: counted, not kept
        self.pending: collections.deque[_Request] = collections.deque()
        self.busy = False
        self.draining = False  # _finish is serving the pipelined requests
        self.closing = False
        self.limits = server.limits
        self.in_head = True  # the parser is before the end of a request's head (or between requests)
        self.head_bytes = 0  # bytes received while in a head (bounds what httptools buffers)
        self.header_count = 0
        self.header_bytes = 0
        self.paused = False  # the client is not reading its replies: neither read nor serve
        self.held = False  # max_pipeline requests wait: not read until half of them are served
        # When the sweep (HttpServer._sweep) closes this connection: idle or slow request; 0.0 while serving.
        self.deadline = time.monotonic() + self.limits.idle_timeout

    # ------------------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        if len(self.server.connections) >= self.limits.max_connections and not self.server.make_room():
            self.closing = True
            transport.abort()  # type: ignore[attr-defined]
            return
        self.server.connections.add(self)
        high = self.limits.write_high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        # The client does not take its replies: stop reading (its requests wait in the kernel) and stop
        # serving queued ones, until the buffer drains; give up on it if it does not within idle_timeout.
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.deadline = time.monotonic() + self.limits.idle_timeout

    def resume_writing(self) -> None:
        self.paused = False
        if self.closing or self.transport is None:
            return
        if not self.held:
            self.transport.resume_reading()
        self.deadline = 0.0 if self.busy else time.monotonic() + self.limits.idle_timeout
        if not self.busy and self.pending:
            self._finish(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._fail(refused.status, refused.message)
            else:
                self._fail(400, b"malformed HTTP request")
            return
        if self.in_head and self.head_bytes > self.limits.max_header_bytes + self.limits.max_url:
            # One header still being received (httptools holds it until its end): refuse before it grows.
            self._fail(431, b"request header fields too large")

    # ------------------------------------------------------------------------------ parser callbacks

    def on_url(self, url: bytes) -> None:
        if not self.url and not self.busy:
            self.deadline = time.monotonic() + self.limits.request_timeout  # a request starts
        self.url += url
        if len(self.url) > self.limits.max_url:
            raise _Refused(414, b"request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_count += 1
        self.header_bytes += len(name) + len(value) + 4
        if self.header_count > self.limits.max_headers:
            raise _Refused(431, b"too many header fields")
        if self.header_bytes > self.limits.max_header_bytes:
            raise _Refused(431, b"request header fields too large")

    def on_headers_complete(self) -> None:
        self.in_head = False
        expect = False
        large = False
        for name, value in self.headers:
            size = len(name)  # compare lengths first: this runs for every header of every request
            if size == 14 and name.lower() == b"content-length":
                # Refuse on the declared length, before reading (or inviting, with 100 Continue) the body.
                if value.strip().isdigit():
                    declared = int(value)
                    if declared > MAX_BODY:
                        self._fail(413, b"request body too large")
                        return
                    large = declared > UNSIGNED_BODY
            elif size == 17 and name.lower() == b"transfer-encoding":
                large = True  # chunked: of any length
            elif size == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
                expect = True
        if large and not self.gateway.knows_signer(self.url, self.headers):
            # No known access key signs it: its answer is an authentication error whatever the body says, so the
            # body is read and dropped, not kept (unsigned 8 MiB bodies on many connections filled memory).
            self.discard = True
        if expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        self.size += len(body)
        if self.size > MAX_BODY:
            self.too_large = True
            self.body = []
        elif not self.too_large and not self.discard:
            parts = self.body
            first = parts[0] if parts else None
            if type(first) is bytearray:
                first += body
            elif len(parts) < 16:
                parts.append(body)
            else:
                # Many small pieces (a chunked body in 1-byte chunks costs ~40 bytes of objects per byte):
                # from the 16th on, one growing buffer.
                buffer = bytearray(b"".join(parts))
                buffer += body
                parts[:] = [buffer]

    def on_message_complete(self) -> None:
        if self.closing:
            return
        parser = self.parser
        method = parser.get_method().decode("latin-1")
        if self.too_large:
            request: _Request = (method, self.url, self.headers, b"", False, "too-large")
        else:
            parts = self.body
            body = b"".join(parts) if len(parts) != 1 or type(parts[0]) is not bytes else parts[0]
            keep = bool(parser.should_keep_alive())
            request = (method, self.url, self.headers, body, keep, parser.get_http_version())
        # Ready for the next message (no on_message_begin callback: one call fewer per request).
        self.url = b""
        self.headers = []
        self.body = []
        self.size = 0
        self.too_large = False
        self.discard = False
        self.in_head = True
        self.head_bytes = 0
        self.header_count = 0
        self.header_bytes = 0
        if self.busy or self.paused:
            self.pending.append(request)
            if len(self.pending) >= self.limits.max_pipeline and not self.held and self.transport is not None:
                # A client may send requests faster than they are served (found probing: a million pipelined
                # GETs on one connection queued 330 MiB): stop reading until the queue is half served.
                self.held = True
                self.transport.pause_reading()
            return
        self._start(request)

    def _start(self, request: _Request) -> None:
        self.busy = True
        self.deadline = 0.0  # ours to answer: no timeout while it is served
        if request[5] != "too-large" and self.gateway.serve_direct(
            request[0], request[1], request[2], request[3], self.server.route, partial(self._answer, request[4])
        ):
            return
        task = asyncio.ensure_future(self._serve(request))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    def _answer(self, keep: bool, reply: Reply) -> None:
        """The reply to a request the gateway served directly (see :meth:`Gateway.serve_direct`)."""
        self._write(_response(reply.status, reply.headers, reply.body, keep))
        self._finish(keep)

    def _finish(self, keep: bool) -> None:
        """A request is answered: close the connection, or serve the requests pipelined behind it, in order."""
        self.busy = False
        if not keep:
            self.closing = True
            if self.transport is not None:
                self.transport.close()
            return
        if self.draining:
            return  # an outer _finish is serving the queue: answers given at once come back here
        self.draining = True
        try:
            # A loop, not recursion: a long pipeline of requests answered at once must not deepen the stack.
            while self.pending and not self.closing and not self.busy and not self.paused:
                self._start(self.pending.popleft())
        finally:
            self.draining = False
        if self.held and len(self.pending) <= self.limits.max_pipeline // 2 and self.transport is not None:
            self.held = False
            if not self.paused:
                self.transport.resume_reading()
        if not self.busy and not self.paused:
            # Between requests, or a request already coming in behind the one just answered.
            receiving = self.url or not self.in_head
            limits = self.limits
            self.deadline = time.monotonic() + (limits.request_timeout if receiving else limits.idle_timeout)

    # ------------------------------------------------------------------------------ serving

    async def _serve(self, request: _Request) -> None:
        try:
            keep = await self._one(request)
        except Exception:
            log.exception("HTTP request failed")
            self._fail(500, b"internal error")
            self.busy = False
            return
        except BaseException:  # cancelled: the server is stopping
            self.busy = False
            raise
        self._finish(keep)

    async def _one(self, request: _Request) -> bool:
        method, url, raw_headers, body, keep, version = request
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            # Not an origin-form target (CONNECT's host:port, an absolute URL's junk): nothing of ours.
            self._write(_response(400, [(b"content-type", b"text/plain; charset=utf-8")], b"bad request target", False))
            return False
        raw_path: bytes = parsed.path or b"/"
        raw_query: bytes = parsed.query or b""
        path = _unquote_path(raw_path)
        headers = header_dict(raw_headers)
        gateway = self.gateway
        classified = gateway.classify(method, path, raw_query, headers)
        route = self.server.route
        # A HEAD reply has no body (a client reading one would take it for the next reply); no AWS operation
        # we serve is a HEAD, so another process is asked for the GET and the body dropped here.
        head = method == "HEAD"
        if route is not None:
            target = route(path, classified, body)
            if target is not None:
                try:
                    status, reply_headers, reply_body = await forward(
                        target, "GET" if head else method, url, raw_headers, body
                    )
                except OSError as exc:
                    log.warning("cannot forward %s %r to %s: %s", method, path, target, exc)
                    status, reply_headers, reply_body = 503, [(b"content-type", b"text/plain")], b"unavailable"
                self._write(_response(status, reply_headers, reply_body, keep, head=head))
                return keep
        if classified is None:
            status, reply_headers, reply_body = await self._fallback(
                method, path, raw_path, raw_query, raw_headers, body, version
            )
            self._write(_response(status, reply_headers, reply_body, keep, head=head))
            return keep
        if isinstance(classified, Reply):
            reply = classified
        elif version == "too-large":
            reply = gateway.too_large(classified)
        else:
            reply = await gateway.serve(classified, method, path, raw_path, raw_query, headers, body)
        self._write(_response(reply.status, reply.headers, reply.body, keep, head=head))
        return keep

    async def _fallback(
        self,
        method: str,
        path: str,
        raw_path: bytes,
        raw_query: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        version: str,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        app = self.gateway.fallback
        if app is None:
            return 404, [(b"content-type", b"text/plain; charset=utf-8")], b"Not Found"
        scope: MutableMapping[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version if version in ("1.0", "1.1") else "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": raw_query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in raw_headers],
            "client": None,
            "server": None,
        }
        sent = False
        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the body was given; a disconnect never comes here
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await app(scope, receive, send)
        return status, out_headers, b"".join(chunks)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, status: int, message: bytes) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_response(status, [(b"content-type", b"text/plain; charset=utf-8")], message, False))
            self.transport.close()

    def expire(self) -> None:
        """The deadline passed: a slow request gets 408, an idle or unread connection is just closed."""
        self.deadline = 0.0
        if self.url and not self.paused:
            self._fail(408, b"request not received in time")
        else:
            self.closing = True
            if self.transport is None:
                return
            if self.paused:
                self.transport.abort()  # its unread replies are dropped, not flushed
            else:
                self.transport.close()

    def close_if_idle(self) -> None:
        """Close the connection now unless a request is being served (that one closes after its reply)."""
        self.closing = True
        if not self.busy and self.transport is not None:
            self.transport.close()


def _unquote_path(raw: bytes) -> str:
    if b"%" not in raw:
        return raw.decode("latin-1")
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(raw).decode("utf-8", "replace")


_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"expect"))


async def forward(
    socket_path: str, method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Send a request as it came to another Borealis process's unix socket; its reply, read to the end."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        head = [method.encode("latin-1"), b" ", url, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                head += (name, b": ", value, b"\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        writer.write(b"".join(head) + body)
        raw = await reader.read()
    finally:
        writer.close()
    reply = _Reply()
    parser = httptools.HttpResponseParser(reply)
    parser.feed_data(raw)
    if not reply.complete:
        raise OSError("incomplete reply from the owning process")
    return parser.get_status_code(), reply.headers, b"".join(reply.body)


class _Reply:
    """httptools callbacks collecting a forwarded reply."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"date", *_HOP_BY_HOP):
            self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


Route = Callable[[str, Any, bytes], str | None]
"""(path, what Gateway.classify said, body) -> the unix socket of the process to forward to, or None."""


class HttpServer:
    """Serves a :class:`Gateway` on a TCP port (optionally with ``SO_REUSEPORT``, for worker processes).

    ``route`` decides, per request, whether another process serves it (see :data:`Route`); forwarded
    requests go as raw HTTP over that process's unix socket (:meth:`start_unix`).
    """

    def __init__(self, gateway: Gateway, *, route: Route | None = None, limits: HttpLimits | None = None) -> None:
        self.gateway = gateway
        self.route = route
        self.limits = limits or HttpLimits()
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Future[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._unix: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._refused_at = 0.0

    def make_room(self) -> bool:
        """At max_connections: close the connection idle the longest (none of its requests started); False if
        every connection has a request in progress."""
        idle = [c for c in self.connections if not c.busy and not c.url and c.in_head and not c.pending]
        if not idle:
            now = time.monotonic()
            if now - self._refused_at > 60:
                self._refused_at = now
                log.warning("HTTP API: %d connections all busy; refusing new ones", len(self.connections))
            return False
        oldest = min(idle, key=lambda c: c.deadline)
        oldest.closing = True
        self.connections.discard(oldest)
        if oldest.transport is not None:
            oldest.transport.abort()
        return True

    def _sweep(self) -> None:
        """Close the connections past their deadline; runs a few times per shortest timeout.

        One timer for all connections rather than one per request: serving a request only sets a float.
        """
        now = time.monotonic()
        for conn in [c for c in self.connections if 0.0 < c.deadline < now]:
            conn.expire()
        self._arm_sweep()

    def _arm_sweep(self) -> None:
        limits = self.limits
        every = max(0.05, min(1.0, limits.idle_timeout / 4, limits.request_timeout / 4))
        self._sweeper = asyncio.get_running_loop().call_later(every, self._sweep)

    async def start_unix(self, path: str) -> None:
        """Also listen on a unix socket (requests forwarded by the other processes)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._unix = await loop.create_unix_server(lambda: _Connection(self), path)
        os.chmod(path, 0o600)
        if self._sweeper is None:
            self._arm_sweep()

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        backlog: int = 2048,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Listen (over TLS when ``tls`` is given); raises OSError when the address is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=backlog,
            ssl=tls,
            ssl_handshake_timeout=self.limits.request_timeout if tls is not None else None,
        )
        if self._sweeper is None:
            self._arm_sweep()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, let requests in flight finish (up to ``timeout``), close every connection."""
        if self._server is not None:
            self._server.close()
        if self._unix is not None:
            self._unix.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close_if_idle()
        if self.tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self.tasks), timeout=timeout)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
