"""Modes of what Borealis keeps in its data directory: readable by the OS user running it, and no one else.

The data directory holds the store (clusters, access keys, sealed secrets), the log, the credentials file and
the keys: other OS users of the machine are untrusted (docs/security.md), so the directory is 0700 and its
files 0600. The one exception is made elsewhere: when postgres runs as another OS user, the engine adds the
search bit (o+x, not read) to the directories it must traverse (``engine.ensure_traversable``); that bit is
kept here, so a restart does not take away what a running postgres needs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["private_dir", "private_file", "private_files"]


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed; its mode becomes 0700, plus any search bits it had."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    os.chmod(path, 0o700 | (mode & (stat.S_IXGRP | stat.S_IXOTH)))


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist, else set its mode to 0600 (never truncates)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def private_files(directory: Path) -> None:
    """Set every regular file directly in ``directory`` (not symlinks, not sockets) to mode 0600."""
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, 0o600, follow_symlinks=False)
