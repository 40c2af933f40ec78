"""CloudWatch Logs (service ``logs``, JSON 1.1): the postgres logs a cluster exports, as Aurora exports them.

A cluster created or modified with ``EnableCloudwatchLogsExports`` / ``CloudwatchLogsExportConfiguration``
naming ``postgresql`` (services/rds_extend.py records it) has the log group ``/aws/rds/cluster/<id>/postgresql``
with one log stream per instance, named after the instance. The events are read straight from the instance's
postgres log, the file DescribeDBLogFiles and DownloadDBLogFilePortion serve (services/rds_logs.py): nothing
is copied, so they appear as soon as postgres writes them, and nothing is kept after the instance is deleted.

An event is a line that starts with the timestamp of Borealis's ``log_line_prefix`` (``%m``: milliseconds,
in the server's log time zone, UTC by default) plus the lines after it that do not (a multi-line statement),
at most 256 KB of it (CloudWatch Logs' event size); a line before any timestamped one is an event of its own,
dated by the file's change time. Only complete lines are served.

Reads are bounded: an event is read with a 64 KB buffer, a GetLogEvents page is at most ``limit`` events
(10,000) and 1 MB, and a FilterLogEvents call scans at most 8 MB of log before it returns what it found with
a ``nextToken`` to go on (less with a pattern of many terms: :func:`scan_budget`; CloudWatch Logs too may
return a page with fewer events, or none, and a token).
Tokens are opaque to clients: ``f/<offset>`` and ``b/<offset>`` (GetLogEvents), ``<stream>/<offset>``
(FilterLogEvents); at either end of a stream GetLogEvents returns the token it was given, as AWS does.

filterPattern takes CloudWatch's unstructured terms: every term must appear (case-sensitive), ``"a phrase"``
as is, ``-term`` must not appear, ``?term`` any of them; JSON (``{ ... }``) and space-delimited
(``[ ... ]``) patterns are refused with InvalidParameterException.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.groups import Memberships
from borealis.services.rds_logs import instance_log

__all__ = ["LogEvent", "Pattern", "handlers", "read_backward", "read_forward", "scan_budget"]

_CHUNK = 64 * 1024
_MAX_EVENT = 256 * 1024  # CloudWatch Logs: an event is at most 256 KB
_PAGE_BYTES = 1024 * 1024  # GetLogEvents / FilterLogEvents: "as many log events as can fit in 1 MB"
_MAX_EVENTS = 10_000
_SCAN_BYTES = 8 * 1024 * 1024  # FilterLogEvents: bytes of log one call reads before it hands back a token
_FULL_SCAN_TERMS = 8  # a pattern of more terms scans proportionally fewer bytes per call (see scan_budget)
_DESCRIBE_LIMIT = 50
_STAMP = re.compile(rb"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? ")


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One event: where it is in the file (``start``, ``end`` byte offsets), its time (epoch ms), its text."""

    start: int
    end: int
    timestamp: int
    message: str


def _stamp(line: bytes) -> int | None:
    m = _STAMP.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        when = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=dt.UTC)
    except ValueError:
        return None
    millis = int((frac or b"0").ljust(3, b"0")[:3])
    return int(when.timestamp()) * 1000 + millis


def _lines(path: Path, offset: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """Complete lines (offset, bytes with the newline) from ``offset`` up to ``stop``, read 64 KB at a time;
    a line longer than the buffer comes in pieces, the first of them alone deciding if it starts an event."""
    with path.open("rb") as f:
        f.seek(offset)
        at, rest = offset, b""
        while at + len(rest) < stop:
            block = f.read(min(_CHUNK, stop - at - len(rest)))
            if not block:
                return
            data = rest + block
            start = 0
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    break
                yield at + start, data[start : nl + 1]
                start = nl + 1
            at, rest = at + start, data[start:]
            if len(rest) >= _CHUNK:  # a very long line: hand it over in pieces (continuations of its event)
                yield at, rest
                at, rest = at + len(rest), b""


def _events(path: Path, offset: int, stop: int, undated: int) -> Iterator[LogEvent]:
    """The events that start at or after ``offset`` (an event start) and end by ``stop`` (an event boundary)."""
    start, stamp, size, end = -1, 0, 0, offset
    parts: list[bytes] = []
    for at, line in _lines(path, offset, stop):
        ts = _stamp(line)
        if ts is not None or start < 0:
            if start >= 0:
                yield LogEvent(start, at, stamp, _text(parts))
            start, stamp, parts, size = at, ts if ts is not None else undated, [], 0
        if size < _MAX_EVENT:
            parts.append(line[: _MAX_EVENT - size])
            size += len(parts[-1])
        end = at + len(line)
    if start >= 0:
        yield LogEvent(start, end, stamp, _text(parts))


def _text(parts: list[bytes]) -> str:
    return b"".join(parts).decode("utf-8", errors="replace").rstrip("\n")


def _complete_size(path: Path) -> int:
    """The file's size up to its last newline: a line still being written is not served yet."""
    size = path.stat().st_size
    with path.open("rb") as f:
        at = size
        while at > 0:
            step = min(_CHUNK, at)
            f.seek(at - step)
            nl = f.read(step).rfind(b"\n")
            if nl >= 0:
                return at - step + nl + 1
            at -= step
    return 0


def _undated(path: Path) -> int:
    return int(path.stat().st_ctime * 1000)


def read_forward(
    path: Path, offset: int, *, limit: int, keep: Callable[[LogEvent], bool] = lambda e: True, scan: int = 0
) -> tuple[list[LogEvent], int]:
    """Up to ``limit`` events ``keep`` accepts, from ``offset`` on (at most 1 MB of them; with ``scan``, after
    reading at most that many bytes); returns them and the offset to go on from."""
    size = _complete_size(path)
    found: list[LogEvent] = []
    total = 0
    next_offset = min(offset, size)
    for event in _events(path, next_offset, size, _undated(path)):
        if len(found) >= limit or (found and total + len(event.message) > _PAGE_BYTES):
            break
        next_offset = event.end
        if keep(event):
            found.append(event)
            total += len(event.message)
        if scan and next_offset - offset >= scan:
            break
    return found, next_offset


def read_backward(path: Path, end: int | None, *, limit: int) -> tuple[list[LogEvent], int]:
    """The last ``limit`` events that end by ``end`` (an event boundary; None: the end of the file), within
    1 MB; returns them and the offset where they start (where a backward read goes on)."""
    size = _complete_size(path)
    end = size if end is None else min(end, size)
    start = window = max(0, end - _PAGE_BYTES)
    if window > 0:
        # The first timestamped line after the window's (probably partial) first line starts an event.
        start = end
        for at, line in _lines(path, window, end):
            if at > window and _stamp(line) is not None:
                start = at
                break
    events = list(_events(path, start, end, _undated(path)))[-limit:] if start < end else []
    return events, (events[0].start if events else start)


class Pattern:
    """A filterPattern of unstructured terms (see the module's docstring)."""

    def __init__(self, text: str) -> None:
        text = text.strip()
        if text.startswith(("{", "[")):
            raise AWSError(
                "InvalidParameterException",
                "Only unstructured filter patterns (terms and quoted phrases) are supported by Borealis.",
            )
        try:
            words = shlex.split(text, posix=True)
        except ValueError:
            raise AWSError("InvalidParameterException", "Invalid character(s) in term '\"'") from None
        self.required = [w for w in words if not w.startswith(("-", "?")) or len(w) == 1]
        self.excluded = [w[1:] for w in words if w.startswith("-") and len(w) > 1]
        self.any = [w[1:] for w in words if w.startswith("?") and len(w) > 1]
        self.terms = len(self.required) + len(self.excluded) + len(self.any)

    def __call__(self, message: str) -> bool:
        """Whether ``message`` matches."""
        return (
            all(w in message for w in self.required)
            and not any(w in message for w in self.excluded)
            and (not self.any or any(w in message for w in self.any))
        )


def scan_budget(pattern: Pattern) -> int:
    """Bytes of log one FilterLogEvents call scans with ``pattern``: each term is a search through every
    event, so a pattern of 250 terms (1,024 characters allow that) over 8 MB held the event loop for seconds.
    The work (bytes times terms) is what is bounded; the caller goes on with the nextToken."""
    return _SCAN_BYTES * _FULL_SCAN_TERMS // max(_FULL_SCAN_TERMS, pattern.terms)


def _group_name(cluster_id: str) -> str:
    return f"/aws/rds/cluster/{cluster_id}/postgresql"


_GROUP = re.compile(r"^(?:arn:aws[\w-]*:logs:[\w-]+:\d+:log-group:)?/aws/rds/cluster/([^/]+)/postgresql(?::\*)?$")


def _limit(p: dict[str, Any], most: int) -> int:
    limit = p.get("limit")
    if limit is None:
        return most
    if not 1 <= int(limit) <= most:
        raise AWSError("InvalidParameterException", f"limit must be between 1 and {most}.")
    return int(limit)


def _offset(token: str, prefix: str) -> int:
    """The offset a token of ours carries after ``prefix``. ASCII digits only, and few of them: ``str.isdigit``
    also takes "²" (which ``int`` refuses) and ``int`` refuses over 4300 digits, each a 500 otherwise."""
    digits = token[len(prefix) :]
    if not token.startswith(prefix) or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise AWSError("InvalidParameterException", "The specified nextToken is invalid.")
    return int(digits)


class _Logs:
    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self.members = Memberships(
            control.store, lambda cid: control.cluster(cid) is not None, lambda iid: control.instance(iid) is not None
        )
        settings = control.settings
        self.arn = f"arn:aws:logs:{settings.region}:{settings.account_id}:log-group:"

    def _exported(self) -> list[dict[str, Any]]:
        """The clusters whose postgres log is exported, by id."""
        return sorted(
            (
                c
                for c in self.control.clusters.values()
                if "postgresql" in (self.members.get("cluster", c["id"]).get("log_exports") or [])
            ),
            key=lambda c: str(c["id"]),
        )

    def _cluster(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("logGroupName") or p.get("logGroupIdentifier")
        if p.get("logGroupName") and p.get("logGroupIdentifier"):
            raise AWSError(
                "InvalidParameterException", "LogGroup name and LogGroup ARN are mutually exclusive parameters."
            )
        if not name:
            raise AWSError("InvalidParameterException", "Either logGroupName or logGroupIdentifier is required.")
        m = _GROUP.match(str(name))
        cluster = self.control.cluster(m.group(1)) if m else None
        if cluster is None or "postgresql" not in (self.members.get("cluster", cluster["id"]).get("log_exports") or []):
            raise AWSError("ResourceNotFoundException", "The specified log group does not exist.")
        return cluster

    def _streams(self, cluster: dict[str, Any]) -> list[tuple[str, Path]]:
        """The cluster's instances and their log files (those that have one), by name."""
        out = []
        for inst in sorted(self.control.cluster_instances(str(cluster["id"])), key=lambda i: str(i["id"])):
            path = instance_log(self.control, inst)
            if path.is_file():
                out.append((str(inst["id"]), path))
        return out

    @staticmethod
    def _created(record: dict[str, Any]) -> int:
        return int(dt.datetime.fromisoformat(str(record["created"])).timestamp() * 1000)

    async def describe_log_groups(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        prefix, pattern = p.get("logGroupNamePrefix"), p.get("logGroupNamePattern")
        if prefix and pattern:
            raise AWSError(
                "InvalidParameterException", "LogGroup name prefix and LogGroup name pattern are mutually exclusive."
            )
        wanted = p.get("logGroupIdentifiers")
        groups = []
        for c in self._exported():
            name = _group_name(str(c["id"]))
            if prefix and not name.startswith(prefix):
                continue
            if pattern and str(pattern).lower() not in name.lower():
                continue
            if wanted and name not in wanted and self.arn + name not in wanted:
                continue
            if p.get("logGroupClass") not in (None, "STANDARD"):
                continue
            stored = 0
            for _, path in self._streams(c):
                with contextlib.suppress(OSError):  # deleted meanwhile
                    stored += path.stat().st_size
            groups.append(
                {
                    "logGroupName": name,
                    "creationTime": self._created(c),
                    "metricFilterCount": 0,
                    "arn": f"{self.arn}{name}:*",
                    "logGroupArn": f"{self.arn}{name}",
                    "storedBytes": stored,
                    "logGroupClass": "STANDARD",
                }
            )
        return _paged("logGroups", groups, p)

    async def describe_log_streams(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(p)
        order = p.get("orderBy", "LogStreamName")
        prefix = p.get("logStreamNamePrefix")
        if prefix and order == "LastEventTime":
            raise AWSError("InvalidParameterException", "Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = []
        group = _group_name(str(cluster["id"]))
        for name, path in self._streams(cluster):
            if prefix and not name.startswith(prefix):
                continue
            inst = self.control.instance(name) or cluster
            try:
                first, _ = read_forward(path, 0, limit=1)
                last, _ = read_backward(path, None, limit=1)
            except OSError:
                continue
            stream: dict[str, Any] = {
                "logStreamName": name,
                "creationTime": self._created(inst),
                "arn": f"{self.arn}{group}:log-stream:{name}",
                "storedBytes": 0,  # deprecated by AWS: always 0
            }
            if first and last:
                stream["firstEventTimestamp"] = first[0].timestamp
                stream["lastEventTimestamp"] = last[-1].timestamp
                stream["lastIngestionTime"] = int(os.stat(path).st_mtime * 1000)
            streams.append(stream)
        if order == "LastEventTime":
            streams.sort(key=lambda s: s.get("lastEventTimestamp", 0))
        elif order != "LogStreamName":
            raise AWSError("InvalidParameterException", f"Invalid orderBy: {order}.")
        if p.get("descending"):
            streams.reverse()
        return _paged("logStreams", streams, p)

    def _stream(self, cluster: dict[str, Any], name: str) -> Path:
        for stream, path in self._streams(cluster):
            if stream == name:
                return path
        raise AWSError("ResourceNotFoundException", "The specified log stream does not exist.")

    async def get_log_events(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        path = self._stream(self._cluster(p), str(p["logStreamName"]))
        limit = _limit(p, _MAX_EVENTS)
        start, end = p.get("startTime"), p.get("endTime")

        def in_range(e: LogEvent) -> bool:
            return (start is None or e.timestamp >= start) and (end is None or e.timestamp < end)

        token = str(p.get("nextToken") or "")
        try:
            if token.startswith("f/") or (not token and p.get("startFromHead")):
                offset = _offset(token, "f/") if token else 0
                events, after = read_forward(path, offset, limit=limit, keep=in_range, scan=_SCAN_BYTES)
                before = events[0].start if events else offset
                at_end = after == offset
            else:
                stop = _offset(token, "b/") if token else None
                events, before = read_backward(path, stop, limit=limit)
                events = [e for e in events if in_range(e)]
                after = events[-1].end if events else (before if stop is None else stop)
                at_end = before == stop
        except OSError:  # the instance was deleted meanwhile
            raise AWSError("ResourceNotFoundException", "The specified log stream does not exist.") from None
        forward, backward = f"f/{after}", f"b/{before}"
        if token and at_end:
            forward = backward = token  # at the end of the stream: the token given, as AWS does
        return {
            "events": [{"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp} for e in events],
            "nextForwardToken": forward,
            "nextBackwardToken": backward,
        }

    async def filter_log_events(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(p)
        names, prefix = p.get("logStreamNames"), p.get("logStreamNamePrefix")
        if names and prefix:
            raise AWSError(
                "InvalidParameterException", "logStreamNames and logStreamNamePrefix are mutually exclusive."
            )
        streams = [(n, path) for n, path in self._streams(cluster) if (not names or n in names)]
        if prefix:
            streams = [(n, path) for n, path in streams if n.startswith(prefix)]
        if names and not streams:
            raise AWSError("ResourceNotFoundException", "The specified log stream does not exist.")
        limit = _limit(p, _MAX_EVENTS)
        match = Pattern(str(p.get("filterPattern") or ""))
        start, end = p.get("startTime"), p.get("endTime")

        def keep(e: LogEvent) -> bool:
            return (start is None or e.timestamp >= start) and (end is None or e.timestamp <= end) and match(e.message)

        index, offset = 0, 0
        if p.get("nextToken"):
            head, _, tail = str(p["nextToken"]).partition("/")
            index, offset = _offset(head, ""), _offset(tail, "")
        out: list[dict[str, Any]] = []
        budget = scan_budget(match)
        next_token: str | None = None
        while index < len(streams):
            name, path = streams[index]
            try:
                found, after = read_forward(path, offset, limit=limit - len(out), keep=keep, scan=budget)
                size = _complete_size(path)
            except OSError:  # the instance was deleted meanwhile
                found, after, size = [], 0, 0
            out.extend(
                {
                    "logStreamName": name,
                    "timestamp": e.timestamp,
                    "message": e.message,
                    "ingestionTime": e.timestamp,
                    "eventId": f"{e.timestamp}{index:03d}{e.start:015d}",
                }
                for e in found
            )
            budget -= max(0, after - offset)
            if after < size:  # stopped early (limit, 1 MB, scan budget): go on from here
                next_token = f"{index}/{after}"
                break
            index, offset = index + 1, 0
            if len(out) >= limit or budget <= 0:
                next_token = f"{index}/0" if index < len(streams) else None
                break
        result: dict[str, Any] = {
            "events": out,
            "searchedLogStreams": [{"logStreamName": n, "searchedCompletely": True} for n, _ in streams],
        }
        if next_token is not None:
            result["nextToken"] = next_token
        return result


def _paged(key: str, items: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    size = _limit(p, _DESCRIBE_LIMIT)
    token = p.get("nextToken")
    offset = _offset(str(token), "") if token else 0
    out: dict[str, Any] = {key: items[offset : offset + size]}
    if offset + size < len(items):
        out["nextToken"] = str(offset + size)
    return out


def handlers(control: ControlPlane) -> dict[str, Handler]:
    """DescribeLogGroups, DescribeLogStreams, GetLogEvents and FilterLogEvents over ``control``'s clusters."""
    logs = _Logs(control)
    return {
        "DescribeLogGroups": logs.describe_log_groups,
        "DescribeLogStreams": logs.describe_log_streams,
        "GetLogEvents": logs.get_log_events,
        "FilterLogEvents": logs.filter_log_events,
    }
