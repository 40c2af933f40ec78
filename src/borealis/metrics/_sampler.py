"""The load of one PostgreSQL server, measured once a second without connecting to it.

- CPU: the postmaster's process tree from /proc (utime+stime of the live processes, plus cutime+cstime, which
  hold the backends it reaped), as CPUs in use since the previous reading.
- Memory: the server's cgroup (anonymous + shared memory, page cache left out) where it has one, otherwise the
  proportional set size of its processes (shared buffers split between the processes that touched them).
- Connections: the client backends, counted from the process titles PostgreSQL sets (``postgres: user db
  host(port) state``); Borealis's own administrative role does not count, as Aurora's own health-check
  connections do not (AWS's auto-pause page), and neither do replication senders.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from borealis.engine import Cgroup, cpu_seconds, process_tree, proportional_memory

__all__ = ["Load", "LoadMeter", "count_client_backends"]

_BACKGROUND = frozenset(
    {
        "checkpointer",
        "background",
        "walwriter",
        "autovacuum",
        "logical",
        "walsender",
        "walreceiver",
        "startup",
        "archiver",
        "parallel",
        "io",
        "walsummarizer",
        "stats",
        "slotsync",
    }
)


@dataclass(frozen=True, slots=True)
class Load:
    """One reading: CPUs in use, bytes of memory, client connections, and how many of them are user activity
    (see :func:`count_client_backends`)."""

    cpu: float
    memory: int
    connections: int
    active: int = 0


def count_client_backends(titles: Iterable[str], internal_users: frozenset[str]) -> tuple[int, int]:
    """How many of these process titles are client backends of users other than ``internal_users``, and how
    many of those are user activity for auto-pause: every one over TCP (clients reach postgres through
    Borealis's listeners that way; an open idle connection counts, as on AWS), and one on the unix socket (the
    Data API's warm pool, Borealis's own work) only while it is not idle."""
    count = active = 0
    for title in titles:
        words = title.split()
        if len(words) < 4 or words[0] != "postgres:" or words[1] in _BACKGROUND:
            continue
        # postgres: <user> <database> <host(port)|[local]> <state...>
        if words[1] in internal_users:
            continue
        if words[3].endswith(")"):
            count += 1
            active += 1
        elif words[3] == "[local]":
            count += 1
            active += words[4:] != ["idle"]
    return count, active


def _titles(pids: Iterable[int]) -> list[str]:
    titles = []
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        titles.append(raw.replace(b"\0", b" ").decode("utf-8", "replace").strip())
    return titles


class LoadMeter:
    """Reads one server's load; keeps the previous CPU reading to turn CPU seconds into a rate."""

    def __init__(self, internal_users: frozenset[str]) -> None:
        self.internal_users = internal_users
        self._last: tuple[float, float] | None = None
        self.pids: list[int] = []

    def read(self, postmaster: int, cgroup: Cgroup | None, *, now: float | None = None) -> Load:
        """The load now; the first reading after a (re)start reports the CPU as 0."""
        now = time.monotonic() if now is None else now
        self.pids = pids = process_tree(postmaster)
        used = cpu_seconds(pids)
        cpu = 0.0
        if self._last is not None and now > self._last[0] and used >= self._last[1]:
            cpu = (used - self._last[1]) / (now - self._last[0])
        self._last = (now, used)
        memory = cgroup.memory_used() if cgroup is not None else None
        if memory is None:
            memory = proportional_memory(pids)
        connections, active = count_client_backends(_titles(pids[1:]), self.internal_users)
        return Load(cpu, memory, connections, active)

    def reset(self) -> None:
        """Forget the CPU reading (the server restarted: its counters start again)."""
        self._last = None
