"""Replicas: a standby made by ``pg_basebackup``, its standby configuration, promotion, and ``pg_rewind``.

A reader is a copy of the writer's data directory that replays the writer's WAL as it streams in
(``standby.signal`` plus ``primary_conninfo``, with ``hot_standby`` so it serves read-only sessions). The
replication connection authenticates with SCRAM over TCP; its password is in a passfile of mode 0600 owned
by the server's OS user, outside the data directory (so it is never copied to a replica or a backup), and
never on a command line or in the environment.

After a failover, the old writer has WAL the new writer never saw; ``pg_rewind`` winds its data directory
back to the point where the two histories split and copies what changed since, so it can follow the new
writer as a standby instead of being copied whole again. That needs ``wal_log_hints = on`` (or data
checksums) from before the split.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ._binaries import Binaries
from ._osuser import RunAs, give_to
from ._process import run

__all__ = [
    "STANDBY_SIGNAL",
    "mark_standby",
    "replication_conninfo",
    "rewind",
    "take_basebackup",
    "unmark_standby",
    "write_passfile",
]

STANDBY_SIGNAL = "standby.signal"


def write_passfile(path: Path, user: RunAs | None, username: str, password: str) -> None:
    """Write a libpq passfile for ``username`` on 127.0.0.1 (any port, any database), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"127.0.0.1:*:*:{username}:{escaped}\n")
    give_to(path, user, 0o600)


def replication_conninfo(*, host: str, port: int, user: str, passfile: Path, application_name: str) -> str:
    """The ``primary_conninfo`` of a standby (and the source of a base backup or a rewind)."""

    def q(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return (
        f"host={q(host)} port={port} user={q(user)} passfile={q(str(passfile))} "
        f"application_name={q(application_name)} dbname='postgres'"
    )


async def take_basebackup(binaries: Binaries, datadir: Path, source: str, user: RunAs | None, timeout: float) -> None:
    """Fill the (empty) ``datadir`` with a copy of the server ``source`` names, and mark it a standby."""
    await run(
        [
            binaries.tool("pg_basebackup"),
            "--pgdata", datadir,
            "--dbname", source,
            "--wal-method", "stream",
            "--checkpoint", "fast",
            "--no-password",
        ],
        user,
        timeout=timeout,
        what="pg_basebackup",
    )  # fmt: skip
    mark_standby(datadir, user)


async def rewind(binaries: Binaries, datadir: Path, source: str, user: RunAs | None, timeout: float) -> None:
    """Wind ``datadir`` (a stopped former primary) back to follow the server ``source`` names."""
    await run(
        [binaries.tool("pg_rewind"), "--target-pgdata", datadir, "--source-server", source, "--no-sync"],
        user,
        timeout=timeout,
        what="pg_rewind",
    )
    mark_standby(datadir, user)


def mark_standby(datadir: Path, user: RunAs | None) -> None:
    """Make the server on ``datadir`` start as a standby."""
    signal = datadir / STANDBY_SIGNAL
    signal.touch()
    give_to(signal, user, 0o600)


def unmark_standby(datadir: Path) -> None:
    """Make the server on ``datadir`` start as a primary (after a promotion it is gone already)."""
    with contextlib.suppress(FileNotFoundError):
        (datadir / STANDBY_SIGNAL).unlink()
