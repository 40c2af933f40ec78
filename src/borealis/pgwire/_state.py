"""The session state machine: one PostgreSQL connection as seen by someone in the middle.

A :class:`Session` is told about every frame that crosses one connection, in order: ``frontend(t, frame)``
for what the client side sends, ``backend(t, frame)`` for what the server side sends. The proxy keeps one
per client connection (it plays the server: it authenticates the client itself, then forwards the server's
responses) and one per server connection (it plays the client). Same rules, same class.

RULES
=====

Phases. ``F:x`` is a frontend message of type x, ``B:x`` a backend one; anything not listed while not
READY is a ProtocolViolation blaming the side that sent it.

    STARTUP         F:SSLRequest, F:GSSENCRequest -> NEGOTIATING
                    F:CancelRequest               -> CLOSED   (a cancel connection carries nothing else)
                    F:StartupMessage              -> AUTHENTICATING
    NEGOTIATING     negotiation_done()            -> STARTUP  (a new startup packet follows, maybe over TLS)
    AUTHENTICATING  B:R (a request), F:p, B:v, B:N -> AUTHENTICATING
                    B:R (AuthenticationOk)        -> AUTHENTICATED
                    B:E                           -> FAILED   (errors before READY are always FATAL)
    AUTHENTICATED   B:S, B:K, B:N                 -> AUTHENTICATED
                    B:Z                           -> READY
                    B:E                           -> FAILED
    READY           the query cycle below; B:E with severity FATAL or PANIC -> FAILED
    any             F:X                           -> CLOSED

The query cycle (READY). The frontend stream is cut into *segments*: the extended-protocol messages
(Parse, Bind, Describe, Execute, Close) since the last sync point, then the sync point that ends them: a
Query, a FunctionCall or a Sync. Each sync point is answered by exactly one ReadyForQuery; each extended
message by exactly one *completion*: ParseComplete, BindComplete, CloseComplete, NoData or RowDescription
(Describe), CommandComplete, EmptyQueryResponse or PortalSuspended (Execute). A segment whose sync point
has not been sent yet is *open*. Responses arrive in order, so they always belong to the first segment.

 1. An extended message adds one expected completion to the open segment (opening one if needed).
 2. Query, FunctionCall and Sync close the open segment (or add an empty one) with that sync point.
 3. A completion while the first segment still expects completions counts one down. RowDescription,
    CommandComplete and EmptyQueryResponse when it expects none belong to a Query's statements.
 4. ReadyForQuery ends the first segment, which must be closed and complete, and sets the transaction
    status ('I' idle, 'T' in a transaction block, 'E' in a failed one).
 5. ErrorResponse while the first segment expects completions is an error in an extended message: the
    server discards every message up to the next Sync. So: that segment expects nothing more; a Query or
    FunctionCall sync point before the next Sync is discarded with its segment; if no Sync was sent yet,
    the session is *skipping*, and messages other than Sync are discarded until one is sent.
    An ErrorResponse when the first segment expects nothing came from the sync point itself (a Query's
    statement, a Sync's implicit COMMIT): its ReadyForQuery still follows.
 6. CopyInResponse: the server now ignores Sync and Flush until the client's CopyDone or CopyFail, so a
    Sync the client pipelined right after the Execute that started the COPY (libpq, pgjdbc do) does not
    count: the segment is reopened and the client's next Sync (sent after CopyDone) closes it. An
    ErrorResponse or CopyDone/CopyFail ends copy-in.

A session is *at a boundary* when it is READY with no segment and not skipping: every sync point sent has
been answered, nothing unsynced is pending, and the server will send nothing more on its own except
asynchronous messages (NoticeResponse, NotificationResponse, ParameterStatus). Only at a boundary with
transaction status 'I' may a transaction-pooling proxy give the server connection to another client.

Known approximation: a client that sends Sync *during* copy-in while the server concurrently fails the
COPY can make rule 6 miscount; no driver does that.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Iterable

from . import _messages as m
from ._decode import decode_backend, decode_startup
from ._errors import ProtocolViolation, type_name
from ._framing import STARTUP, Frame

__all__ = ["Phase", "Session"]

_unpack_i = struct.Struct("!i").unpack_from


class Phase(enum.Enum):
    """Where a connection is in its life."""

    STARTUP = "startup"
    NEGOTIATING = "negotiating"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    READY = "ready"
    CLOSED = "closed"
    FAILED = "failed"


# Events of the phase table: message type bytes, plus the few distinctions the type alone does not make.
_SSL, _GSS, _CANCEL, _STARTUP, _AUTH_OK, _AUTH_REQUEST = -1, -2, -3, -4, -5, -6
_F, _B = "frontend", "backend"

_PHASES: dict[tuple[Phase, str, int], Phase] = {
    (Phase.STARTUP, _F, _SSL): Phase.NEGOTIATING,
    (Phase.STARTUP, _F, _GSS): Phase.NEGOTIATING,
    (Phase.STARTUP, _F, _CANCEL): Phase.CLOSED,
    (Phase.STARTUP, _F, _STARTUP): Phase.AUTHENTICATING,
    (Phase.AUTHENTICATING, _B, _AUTH_REQUEST): Phase.AUTHENTICATING,
    (Phase.AUTHENTICATING, _F, ord("p")): Phase.AUTHENTICATING,
    (Phase.AUTHENTICATING, _B, ord("v")): Phase.AUTHENTICATING,
    (Phase.AUTHENTICATING, _B, ord("N")): Phase.AUTHENTICATING,
    (Phase.AUTHENTICATING, _B, _AUTH_OK): Phase.AUTHENTICATED,
    (Phase.AUTHENTICATING, _B, ord("E")): Phase.FAILED,
    (Phase.AUTHENTICATED, _B, ord("S")): Phase.AUTHENTICATED,
    (Phase.AUTHENTICATED, _B, ord("K")): Phase.AUTHENTICATED,
    (Phase.AUTHENTICATED, _B, ord("N")): Phase.AUTHENTICATED,
    (Phase.AUTHENTICATED, _B, ord("E")): Phase.FAILED,
    (Phase.AUTHENTICATED, _B, ord("Z")): Phase.READY,
}

_READY = Phase.READY
_OPEN = 0  # segment kind: no sync point yet
_SYNC = ord("S")
_QUERY = ord("Q")
# Message types the frame handlers compare with: constants, since ord() is a call on every frame.
_COPY_DONE = ord("c")
_COPY_FAIL = ord("f")
_TERMINATE = ord("X")
_PARAMETER_STATUS = ord("S")
_READY_FOR_QUERY = ord("Z")
_ERROR_RESPONSE = ord("E")
_COPY_IN_RESPONSE = ord("G")
_COPY_OUT_RESPONSE = ord("H")
_COPY_BOTH_RESPONSE = ord("W")
_AUTHENTICATION = ord("R")
_BACKEND_KEY_DATA = ord("K")
_EXTENDED = frozenset(b"PBDEC")
_SYNC_POINTS = frozenset(b"QF")
_COMPLETIONS = frozenset(b"123ns")  # count only against extended messages
_MAYBE_COMPLETIONS = frozenset(b"TCI")  # extended completions, or part of a Query's response
# Backend types that never change the query cycle: the hot path returns at once for them.
_PASSIVE_BACKEND = frozenset(b"DdNAtVS")
_FRONTEND_READY = frozenset(b"QPBDESHCdcfFX")


class _Segment:
    """Extended messages awaiting completions, ended by a sync point (``kind``) or still open."""

    __slots__ = ("kind", "remaining")

    def __init__(self, kind: int, remaining: int) -> None:
        self.kind = kind
        self.remaining = remaining

    def __repr__(self) -> str:
        return f"_Segment({chr(self.kind) if self.kind else 'open'}, {self.remaining})"


class Session:
    """One connection's protocol state, fed every frame that crosses it (see the rules at the top)."""

    __slots__ = (
        "_segments",
        "backend_key",
        "copy_in",
        "copy_out",
        "parameters",
        "phase",
        "skipping",
        "startup",
        "transaction_status",
    )

    def __init__(self, phase: Phase = Phase.STARTUP) -> None:
        """Start in ``phase``: STARTUP normally; READY for a connection whose login happened elsewhere."""
        self.phase = phase
        #: 'I', 'T' or 'E' from the last ReadyForQuery; None before the first one.
        self.transaction_status: str | None = "I" if phase is Phase.READY else None
        #: The client's StartupMessage, once seen.
        self.startup: m.StartupMessage | None = None
        #: (process id, secret key) from BackendKeyData, once seen.
        self.backend_key: tuple[int, bytes] | None = None
        #: The latest value of every ParameterStatus seen (TimeZone, client_encoding, ...).
        self.parameters: dict[str, str] = {}
        #: The server is discarding messages until the next Sync after an error (rule 5).
        self.skipping = False
        #: The server is in COPY FROM STDIN, resp. COPY TO STDOUT (or copy-both) mode.
        self.copy_in = False
        self.copy_out = False
        self._segments: deque[_Segment] = deque()

    # -- what the proxy asks ------------------------------------------------------------------------------

    @property
    def pending_syncs(self) -> int:
        """ReadyForQuery messages still to come for sync points already sent."""
        return sum(1 for seg in self._segments if seg.kind)

    @property
    def at_boundary(self) -> bool:
        """READY, every sync point answered, nothing unsynced pending: the server will wait for the client."""
        return self.phase is _READY and not self._segments and not self.skipping

    @property
    def idle(self) -> bool:
        """At a boundary and outside any transaction block: the server connection can serve another client."""
        return self.transaction_status == "I" and self.at_boundary

    # -- what the proxy tells -----------------------------------------------------------------------------

    def frontend(self, t: int, frame: bytes | memoryview) -> None:
        """The client side sent this frame (``t`` is its type, :data:`STARTUP` for a startup packet)."""
        if self.phase is _READY:
            if t in _EXTENDED:
                self._extended()
            elif t == _SYNC:
                self._sync()
            elif t in _SYNC_POINTS:
                self._sync_point(t)
            elif t in (_COPY_DONE, _COPY_FAIL):
                self.copy_in = False
            elif t == _TERMINATE:
                self.phase = Phase.CLOSED
            elif t not in _FRONTEND_READY:
                raise ProtocolViolation(f"client sent message type {type_name(t)} after authentication")
            return
        if t == _TERMINATE and self.phase is not Phase.STARTUP:
            self.phase = Phase.CLOSED
            return
        event = t
        if t == STARTUP:
            msg = decode_startup(frame)
            if isinstance(msg, m.StartupMessage):
                self.startup = msg
                event = _STARTUP
            elif isinstance(msg, m.SSLRequest):
                event = _SSL
            else:
                event = _GSS if isinstance(msg, m.GSSENCRequest) else _CANCEL
        self._transition(_F, event, t)

    def query(self) -> None:
        """The client side sent a Query: what ``frontend(ord("Q"), frame)`` does, in fewer steps.

        A pooler's hot path calls this once per simple-protocol statement.
        """
        if self.phase is _READY:
            self._sync_point(_QUERY)
        else:
            self.frontend(_QUERY, b"")  # raises: a Query before the session is ready

    def backend(self, t: int, frame: bytes | memoryview) -> None:
        """The server side sent this frame (the proxy forwarded it, or wrote it itself)."""
        if self.phase is _READY:
            if t in _PASSIVE_BACKEND:
                if t == _PARAMETER_STATUS:
                    self._parameter_status(frame)
                return
            segs = self._segments
            if t in _COMPLETIONS or t in _MAYBE_COMPLETIONS:
                if segs and segs[0].remaining:
                    segs[0].remaining -= 1
                elif t in _COMPLETIONS:
                    raise ProtocolViolation(f"server sent {type_name(t)} with no extended message pending")
                elif not segs:
                    raise ProtocolViolation(f"server sent {type_name(t)} with no request pending")
            elif t == _READY_FOR_QUERY:
                self._ready_for_query(frame)
            elif t == _ERROR_RESPONSE:
                self._error(frame)
            elif t == _COPY_IN_RESPONSE:
                self._copy_in()
            elif t in (_COPY_OUT_RESPONSE, _COPY_BOTH_RESPONSE):
                self.copy_out = True
            elif t == _COPY_DONE:
                self.copy_out = False
            else:
                raise ProtocolViolation(f"server sent message type {type_name(t)} after authentication")
            return
        event = t
        if t == _AUTHENTICATION:
            if len(frame) < 9:
                raise ProtocolViolation("truncated Authentication message")
            event = _AUTH_OK if _unpack_i(frame, 5)[0] == 0 else _AUTH_REQUEST
        elif t == _PARAMETER_STATUS:
            self._parameter_status(frame)
        elif t == _BACKEND_KEY_DATA and self.phase is Phase.AUTHENTICATED:
            key = decode_backend(t, frame[5:])
            assert isinstance(key, m.BackendKeyData)
            self.backend_key = (key.process_id, key.secret_key)
        elif t == _READY_FOR_QUERY:
            self.transaction_status = self._status(frame)
        self._transition(_B, event, t)

    def backend_frames(self, frames: Iterable[Frame]) -> None:
        """Call :meth:`backend` for each frame, skipping DataRow and CopyData without a call."""
        backend = self.backend
        for t, frame in frames:
            if t != 0x44 and t != 0x64:  # 'D', 'd': the bulk of any response, never a state change
                backend(t, frame)

    def frontend_frames(self, frames: Iterable[Frame]) -> None:
        """Call :meth:`frontend` for each frame."""
        frontend = self.frontend
        for t, frame in frames:
            frontend(t, frame)

    def negotiation_done(self) -> None:
        """The SSLRequest/GSSENCRequest was answered (and TLS set up if accepted): expect a startup packet."""
        if self.phase is not Phase.NEGOTIATING:
            raise RuntimeError(f"negotiation_done() in phase {self.phase}")
        self.phase = Phase.STARTUP

    # -- rules --------------------------------------------------------------------------------------------

    def _transition(self, side: str, event: int, t: int) -> None:
        try:
            self.phase = _PHASES[self.phase, side, event]
        except KeyError:
            who = "client" if side == _F else "server"
            what = "startup packet" if t == STARTUP else f"message type {type_name(t)}"
            raise ProtocolViolation(f"{who} sent {what} in phase {self.phase.value}") from None

    def _extended(self) -> None:  # rule 1
        if self.skipping:
            return
        segs = self._segments
        if segs and segs[-1].kind == _OPEN:
            segs[-1].remaining += 1
        else:
            segs.append(_Segment(_OPEN, 1))

    def _sync_point(self, t: int) -> None:  # rule 2, Query and FunctionCall
        if self.skipping:
            return  # discarded by the server (rule 5)
        segs = self._segments
        if segs and segs[-1].kind == _OPEN:
            segs[-1].kind = t
        else:
            segs.append(_Segment(t, 0))

    def _sync(self) -> None:  # rule 2, Sync
        if self.copy_in:
            return  # ignored by the server in copy-in mode (rule 6)
        self.skipping = False
        segs = self._segments
        if segs and segs[-1].kind == _OPEN:
            segs[-1].kind = _SYNC
        else:
            segs.append(_Segment(_SYNC, 0))

    def _ready_for_query(self, frame: bytes | memoryview) -> None:  # rule 4
        segs = self._segments
        if not segs or segs[0].kind == _OPEN or segs[0].remaining:
            raise ProtocolViolation("server sent ReadyForQuery with no sync point pending")
        segs.popleft()
        self.transaction_status = self._status(frame)
        self.copy_in = self.copy_out = False

    def _error(self, frame: bytes | memoryview) -> None:  # rule 5
        self.copy_in = self.copy_out = False
        err = decode_backend(ord("E"), frame[5:])
        assert isinstance(err, m.ErrorResponse)
        if err.severity in ("FATAL", "PANIC"):
            self.phase = Phase.FAILED
            return
        segs = self._segments
        if not segs or not segs[0].remaining:
            return
        head = segs[0]
        head.remaining = 0
        if head.kind == _SYNC:
            return
        if head.kind == _OPEN:
            self.skipping = True
            return
        segs.popleft()  # a Query/FunctionCall after the failed message: discarded
        while segs:
            seg = segs[0]
            seg.remaining = 0
            if seg.kind == _SYNC:
                return
            if seg.kind == _OPEN:
                self.skipping = True
                return
            segs.popleft()
        self.skipping = True

    def _copy_in(self) -> None:  # rule 6
        self.copy_in = True
        segs = self._segments
        if not segs:
            raise ProtocolViolation("server sent CopyInResponse with no request pending")
        head = segs[0]
        if head.kind == _SYNC and head.remaining == 1:
            # The COPY's Execute was the last message before a Sync the server will now ignore.
            if len(segs) > 1:
                nxt = segs[1]
                head.kind = nxt.kind
                head.remaining += nxt.remaining
                del segs[1]
            else:
                head.kind = _OPEN

    def _parameter_status(self, frame: bytes | memoryview) -> None:
        msg = decode_backend(ord("S"), frame[5:])
        assert isinstance(msg, m.ParameterStatus)
        self.parameters[msg.name] = msg.value

    @staticmethod
    def _status(frame: bytes | memoryview) -> str:
        if len(frame) != 6 or frame[5] not in b"ITE":
            raise ProtocolViolation("invalid ReadyForQuery message")
        return chr(frame[5])
