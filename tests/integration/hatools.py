"""Helpers of the HA tests: a Borealis of their own, waiting on a condition (never a fixed sleep), and an
instance's postgres processes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.integration.conftest import BorealisProcess, processes_for

__all__ = ["children", "poll", "serving"]


@contextlib.contextmanager
def serving(proc: BorealisProcess) -> Iterator[BorealisProcess]:
    """``proc`` started; at the end stopped, and none of its processes left (they are killed if any are)."""
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        leftover = processes_for(proc.data_dir)
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert not leftover, f"processes left behind: {leftover}"


def poll(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """``check()``'s first true value, tried every 0.1 s (a database or socket error counts as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (psycopg.Error, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a postmaster's backends and auxiliary processes)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out
