"""The WAL archive of a cluster, and the recovery settings that replay it (point-in-time restore).

Rules:
- The writer archives every finished WAL segment (and timeline history file) into one directory per cluster,
  gzip-compressed (a segment closed early by ``archive_timeout`` or a switch is mostly zeros, so it shrinks
  to a few kilobytes). Every instance runs with ``archive_mode = always``: a reader archives the segments it
  received too (the same names with the same bytes, which the command accepts), so a writer that dies before
  its archiver caught up leaves no hole, and a promoted reader goes on archiving its new timeline (whose
  number is in its files' names, so two writers never write the same name).
- A file is written under a temporary name, flushed, then renamed: a crash never leaves a torn file under
  the real name. A file already archived with the same content is success (PostgreSQL may ask again after a
  crash); one with different content is refused, so nothing in the archive is ever overwritten.
- At a clean shutdown PostgreSQL switches to a new segment and archives the old one, so a stopped or paused
  cluster's archive holds all its commits.
- Recovery reads the archive with ``restore_command`` and stops at ``recovery_target_time`` (the first commit
  after it is not applied), then promotes; without a target it replays everything archived.
- Readers have the same ``restore_command``: a reader that fell further behind than the writer keeps WAL
  (``wal_keep_size``; there are no replication slots) gets what the writer removed from the archive, then
  streams again, as PostgreSQL standbys do when streaming cannot serve them.
- pgBackRest or WAL-G would add parallel, incremental and remote-storage backups; a local archive per
  cluster needs none of that, and the PostgreSQL tools plus gzip keep Borealis free of another daemon,
  another configuration file and another package to install.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path

from ._osuser import RunAs, give_to

__all__ = [
    "RECOVERY_SIGNAL",
    "archive_path",
    "archive_settings",
    "archived_files",
    "backup_start_wal",
    "prepare_archive",
    "recovery_settings",
    "restore_command",
]

RECOVERY_SIGNAL = "recovery.signal"
_SUFFIX = ".gz"
_LABEL_RE = re.compile(r"^START WAL LOCATION: .* \(file ([0-9A-F]{24})\)$", re.MULTILINE)


def prepare_archive(archive_dir: Path, user: RunAs | None) -> None:
    """Create the archive directory, owned by (and only open to) the OS user postgres runs as."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    give_to(archive_dir, user, 0o700)


def _command_path(directory: Path) -> str:
    """``directory`` as a word of an archive or restore command: quoted for the shell, and every ``%`` doubled,
    since PostgreSQL reads ``%p``, ``%f`` and ``%%`` in these commands (and refuses any other ``%`` sequence)."""
    return shlex.quote(str(directory.absolute())).replace("%", "%%")


def archive_settings(archive_dir: Path, timeout: int, mode: str = "always") -> dict[str, str]:
    """The settings that archive a server's WAL into ``archive_dir`` (a segment at least every ``timeout`` s)."""
    d = _command_path(archive_dir)
    dest = f"{d}/%f{_SUFFIX}"
    # The temporary name carries the shell's pid: a reader and the writer may archive the same segment at once.
    command = (
        f"if [ -f {dest} ]; then gzip -dc {dest} | cmp -s - %p; "
        f"else gzip -1c %p > {dest}.$$ && sync {dest}.$$ && mv -f {dest}.$$ {dest}; fi"
    )
    return {"archive_mode": mode, "archive_command": command, "archive_timeout": str(timeout)}


def restore_command(archive_dir: Path) -> str:
    """The ``restore_command`` that reads a WAL file back from ``archive_dir`` (failing if it is not there)."""
    d = _command_path(archive_dir)
    return f"test -f {d}/%f{_SUFFIX} && gzip -dc {d}/%f{_SUFFIX} > %p"


def recovery_settings(archive_dir: Path, target: dt.datetime | None) -> dict[str, str]:
    """Settings that replay ``archive_dir`` up to ``target`` (every archived commit if None), then promote."""
    settings = {
        "restore_command": restore_command(archive_dir),
        "recovery_target_timeline": "latest",
        # Nobody reads the server before it is promoted; without hot standby, recovery does not require the
        # source's max_connections and the like (a restored cluster may have a smaller capacity).
        "hot_standby": "off",
    }
    if target is not None:
        settings["recovery_target_time"] = target.astimezone(dt.UTC).isoformat(sep=" ")
        settings["recovery_target_action"] = "promote"
        settings["recovery_target_inclusive"] = "on"
    return settings


def archived_files(archive_dir: Path) -> list[str]:
    """The WAL file names in the archive (without the compression suffix), in name order."""
    try:
        names = [p.name for p in archive_dir.iterdir()]
    except FileNotFoundError:
        return []
    return sorted(n[: -len(_SUFFIX)] for n in names if n.endswith(_SUFFIX))


def archive_path(archive_dir: Path, name: str) -> Path:
    """Where the archived WAL file ``name`` is stored."""
    return archive_dir / (name + _SUFFIX)


def backup_start_wal(datadir: Path) -> str | None:
    """The first WAL segment a base backup needs (from its ``backup_label``), or None if it has no label."""
    try:
        found = _LABEL_RE.search((datadir / "backup_label").read_text())
    except OSError:
        return None
    return found.group(1) if found else None
