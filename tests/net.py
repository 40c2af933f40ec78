"""Ports and processes on this machine, for the test fixtures and the benchmarks in bench/."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

__all__ = ["free_port", "free_port_base", "postgres_pids", "processes_for"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_base(span: int = 40) -> int:
    """A port with `span` free ports above it (Borealis allocates endpoint ports upwards from the base).

    Below the kernel's ephemeral range: there, any outgoing connection (a base backup's, a reader's) may take
    an endpoint's port while Borealis restarts, and the endpoint then cannot listen again.
    """
    low = _ephemeral_low()
    for _ in range(200):
        base = random.randrange(10000, low - span) if low - span > 10000 else free_port()
        if base + span > 65535:
            continue
        ok = True
        for port in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def _cmdline(pid: str) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def processes_for(data_dir: Path) -> list[int]:
    """PIDs of every live process (postgres, Borealis worker, ...) whose command line names `data_dir`."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = _cmdline(entry.name)
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except (OSError, IndexError):
            continue
        if str(data_dir) in cmd and state != "Z":
            pids.append(int(entry.name))
    return pids


def postgres_pids(data_dir: Path) -> list[int]:
    """The postgres processes among :func:`processes_for`."""
    pids = []
    for pid in processes_for(data_dir):
        try:
            if "postgres" in _cmdline(str(pid)):
                pids.append(pid)
        except OSError:
            continue
    return pids
