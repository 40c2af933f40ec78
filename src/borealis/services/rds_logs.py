"""RDS log-file operations: DescribeDBLogFiles and DownloadDBLogFilePortion over each instance's postgres log.

Borealis keeps one log per instance (the postmaster's stderr, appended across restarts; no rotation), so an
instance lists exactly one file. Aurora PostgreSQL names its files ``error/postgresql.log.%Y-%m-%d-%H%M``
(the default ``log_filename``); Borealis names its one file the same way after the time of the file's first
line, which never changes since the file only grows. The file is read straight from disk, so a stopped
instance's log can still be read.

Markers of DownloadDBLogFilePortion are byte offsets into the file (opaque to clients, as on AWS). Without
Marker the call returns the most recent lines (NumberOfLines, or up to 10000); with Marker "0" and
NumberOfLines it pages from the start, and AdditionalDataPending says whether more follows. A portion is
at most 1 MB, as on AWS; a cut portion ends on a line boundary.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.engine._server import LOG_FILE
from borealis.services._describe import paged

__all__ = ["handlers", "instance_log", "log_file_name", "read_portion"]

_MAX_BYTES = 1024 * 1024  # AWS: "up to 1 MB in size"
_DEFAULT_LINES = 10000  # AWS: without Marker or NumberOfLines, "up to a maximum of 10000 lines"
_STAMP = re.compile(rb"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})")


def log_file_name(path: Path) -> str:
    """The name Aurora would show for ``path``: ``error/postgresql.log.YYYY-MM-DD-HHMM`` of its first line.

    A file whose first line carries no timestamp (empty, or an early startup message) is named after its
    inode's change time in UTC, which stays put while postgres only appends.
    """
    with path.open("rb") as f:
        first = f.readline(200)
    m = _STAMP.match(first)
    if m:
        stamp = b"%s-%s-%s-%s%s" % m.groups()
        return "error/postgresql.log." + stamp.decode()
    when = dt.datetime.fromtimestamp(path.stat().st_ctime, dt.UTC)
    return "error/postgresql.log." + when.strftime("%Y-%m-%d-%H%M")


def read_portion(path: Path, marker: str | None, lines: int | None) -> dict[str, Any]:
    """DownloadDBLogFilePortion's output for the file at ``path`` (see the module's docstring)."""
    size = path.stat().st_size
    if marker is None:
        want = _DEFAULT_LINES if lines is None else lines
        return _tail(path, size, want)
    try:
        start = int(marker)
    except ValueError:
        raise AWSError("InvalidParameterValue", "The marker is not valid.") from None
    if start < 0:
        raise AWSError("InvalidParameterValue", "The marker is not valid.")
    start = min(start, size)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(min(size - start, _MAX_BYTES))
    end_of_data = start + len(data)
    if lines is not None:
        cut = _nth_newline(data, lines)
        if cut is not None:
            data = data[: cut + 1]
    elif end_of_data < size and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]  # a 1 MB cut ends on a line boundary
    end = start + len(data)
    return {
        "LogFileData": data.decode("utf-8", errors="replace"),
        "Marker": str(end),
        "AdditionalDataPending": end < size,
    }


def _nth_newline(data: bytes, n: int) -> int | None:
    """The index of the ``n``-th newline in ``data``, or None if it has fewer."""
    at = -1
    for _ in range(n):
        at = data.find(b"\n", at + 1)
        if at < 0:
            return None
    return at


def _tail(path: Path, size: int, lines: int) -> dict[str, Any]:
    start = max(0, size - _MAX_BYTES)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(size - start)
    if start > 0 and b"\n" in data:
        cut = data.index(b"\n") + 1  # drop the partial first line of a 1 MB window
        data, start = data[cut:], start + cut
    body = data[:-1] if data.endswith(b"\n") else data
    kept = body.split(b"\n")[-lines:] if lines > 0 and body else []
    text = b"\n".join(kept) + (b"\n" if kept and data.endswith(b"\n") else b"")
    return {"LogFileData": text.decode("utf-8", errors="replace"), "Marker": str(size), "AdditionalDataPending": False}


def instance_log(control: ControlPlane, instance: dict[str, Any]) -> Path:
    """Where the postgres log of ``instance`` (its stored record) is, whether or not it exists yet."""
    return control.root / str(instance["cluster"]) / "instances" / str(instance["id"]) / "log" / LOG_FILE


class _Logs:
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def _path(self, ident: str) -> Path | None:
        inst = self.control.instance(ident.lower())
        if inst is None:
            raise AWSError("DBInstanceNotFoundFault", f"DBInstance {ident} not found.")
        path = instance_log(self.control, inst)
        return path if path.is_file() else None

    async def describe(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        path = self._path(p["DBInstanceIdentifier"])
        files: list[dict[str, Any]] = []
        if path is not None:
            st = path.stat()
            files.append(
                {"LogFileName": log_file_name(path), "LastWritten": int(st.st_mtime * 1000), "Size": st.st_size}
            )
        if p.get("FilenameContains"):
            files = [f for f in files if p["FilenameContains"] in f["LogFileName"]]
        if p.get("FileLastWritten") is not None:
            files = [f for f in files if f["LastWritten"] >= p["FileLastWritten"]]
        if p.get("FileSize") is not None:
            files = [f for f in files if f["Size"] >= p["FileSize"]]
        return paged("DescribeDBLogFiles", files, p)

    async def download(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident, name = p["DBInstanceIdentifier"], p["LogFileName"]
        path = self._path(ident)
        if path is None or log_file_name(path) != name:
            raise AWSError("DBLogFileNotFoundFault", f"DBLog File: {name}, is not found on the DB instance")
        lines = p.get("NumberOfLines")
        if lines is not None and lines < 0:
            raise AWSError("InvalidParameterValue", "NumberOfLines must not be negative.")
        try:
            return read_portion(path, p.get("Marker"), lines)
        except OSError:  # removed under us (the instance was deleted meanwhile)
            raise AWSError("DBLogFileNotFoundFault", f"DBLog File: {name}, is not found on the DB instance") from None


def handlers(control: ControlPlane) -> dict[str, Handler]:
    """DescribeDBLogFiles and DownloadDBLogFilePortion over the instances of ``control``."""
    logs = _Logs(control)
    return {"DescribeDBLogFiles": logs.describe, "DownloadDBLogFilePortion": logs.download}
