"""The OS user PostgreSQL runs as: the current one, or a dedicated unprivileged one when we are root.

PostgreSQL refuses to run as root, so a root Borealis runs initdb, postgres and pg_ctl as a system user
(``borealis``), created on first use. That user must be able to reach the data directory and the binaries:
every ancestor directory gets search permission (o+x, never read) where it lacks it, logged once.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ._errors import EngineError

__all__ = ["SERVICE_USER", "RunAs", "current_user", "ensure_traversable", "give_to", "service_user"]

log = logging.getLogger(__name__)

SERVICE_USER = "borealis"


@dataclass(frozen=True)
class RunAs:
    """An unprivileged OS user to run PostgreSQL programs as (only used when Borealis runs as root)."""

    name: str
    uid: int
    gid: int
    home: str

    def groups(self) -> set[int]:
        """Every group id the user belongs to, for deciding whether a directory is searchable by it."""
        return set(os.getgrouplist(self.name, self.gid))


def service_user(name: str = SERVICE_USER) -> RunAs | None:
    """None when not root (everything runs as the current user); else the service user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_user(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise EngineError(f"OS user {name!r} is root; PostgreSQL needs an unprivileged user")
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def current_user() -> str:
    """The name of the OS user running Borealis (root when run as root): the one trusted local user."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        # PostgreSQL's peer authentication looks the connecting uid up the same way, so it would fail too.
        raise EngineError(f"the OS user id {os.geteuid()} running Borealis has no name (no passwd entry)") from None


def _create_user(name: str) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    nologin = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    argv = [useradd, "--system", "--no-create-home", "--user-group", "--shell", nologin, name]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise EngineError(f"cannot create OS user {name!r} to run PostgreSQL as: {exc}") from exc
    # Exit code 9 is "already exists": another Borealis process created it between our check and now.
    if result.returncode not in (0, 9):
        detail = (result.stderr.strip().splitlines() or ["useradd failed"])[-1]
        raise EngineError(f"cannot create OS user {name!r} to run PostgreSQL as: {detail}")
    log.info("created OS user %s to run PostgreSQL as (PostgreSQL refuses to run as root)", name)


def _searchable_by(st: os.stat_result, user: RunAs, groups: set[int]) -> bool:
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def ensure_traversable(paths: Iterable[Path], user: RunAs) -> list[Path]:
    """Give o+x (search, not read) to every ancestor of `paths` that `user` cannot traverse; return them."""
    groups = user.groups()
    changed: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        for ancestor in reversed(path.absolute().parents):
            if ancestor in seen:
                continue
            seen.add(ancestor)
            st = ancestor.stat()
            if not _searchable_by(st, user, groups):
                os.chmod(ancestor, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
                changed.append(ancestor)
    if changed:
        log.info(
            "added o+x (search only) so that OS user %s can reach PostgreSQL's files: %s",
            user.name,
            ", ".join(str(p) for p in changed),
        )
    return changed


def give_to(path: Path, user: RunAs | None, mode: int) -> None:
    """chown `path` to `user` (when we are root) and set its mode."""
    if user is not None:
        os.chown(path, user.uid, user.gid)
    os.chmod(path, mode)
