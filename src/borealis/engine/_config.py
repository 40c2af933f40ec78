"""Pure rendering and parsing of PostgreSQL's files: pg_hba.conf, our settings file, postmaster.pid, conninfo.

Nothing here touches the disk or starts a process, so the pure tests cover it in milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._errors import EngineError

__all__ = [
    "CAPACITY_FILE",
    "IDENT_MAP",
    "SETTINGS_FILE",
    "PidFile",
    "conninfo",
    "include_line",
    "parse_pidfile",
    "quote_setting",
    "render_hba",
    "render_ident",
    "render_setting_lines",
    "render_settings",
    "socket_dir_for",
]

# Our settings live in their own file, included from postgresql.conf, so they can be rewritten wholesale
# without editing the file initdb wrote (and postgresql.auto.conf stays ALTER SYSTEM's alone).
SETTINGS_FILE = "borealis.conf"
# The settings that follow an instance's capacity (work_mem, ...) live in a file of their own, included after
# SETTINGS_FILE: the scaler rewrites it every time the capacity changes, without touching anything else.
CAPACITY_FILE = "borealis-capacity.conf"

# Unix socket paths are limited to 107 bytes (sun_path), and a datadir under pytest's or a user's tree easily
# exceeds that once `/.s.PGSQL.NNNNN.lock` is added: sockets live in a short directory keyed by the datadir.
_SOCKET_ROOT = Path("/tmp")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def socket_dir_for(datadir: Path) -> Path:
    """The unix-socket directory of the server on `datadir`: short, stable, one per data directory."""
    digest = hashlib.sha256(str(datadir.absolute()).encode()).hexdigest()[:16]
    return _SOCKET_ROOT / f"borealis-{digest}"


IDENT_MAP = "borealis"
"""The pg_ident.conf map the unix socket's ``peer`` lines use (see :func:`render_ident`)."""


def render_hba() -> str:
    """pg_hba.conf: SCRAM passwords over TCP, ``peer`` through the ident map on the unix socket; no trust.

    The socket says which OS user connects (peer), and the map lets only the OS user running Borealis in,
    as any role: every other local process (another cluster's postgres backends, when they share an OS
    user with Borealis, included) is refused there, and every TCP client must present a SCRAM password.
    """
    return (
        "# Written by Borealis. TYPE DATABASE USER ADDRESS METHOD\n"
        f"local   all          all                 peer map={IDENT_MAP}\n"
        f"local   replication  all                 peer map={IDENT_MAP}\n"
        "host    all          all   127.0.0.1/32  scram-sha-256\n"
        "host    all          all   ::1/128       scram-sha-256\n"
        "host    replication  all   127.0.0.1/32  scram-sha-256\n"
        "host    replication  all   ::1/128       scram-sha-256\n"
    )


def render_ident(system_user: str) -> str:
    """pg_ident.conf: OS user `system_user` (the one running Borealis) may log in as any role, nobody else.

    ``all`` in the PostgreSQL-user column means every role from PostgreSQL 16 on; the system user is quoted
    so that it is matched literally (a leading slash would otherwise make it a regular expression).
    """
    if not system_user or any(c in system_user for c in '"\n\r\0'):
        raise EngineError(f"cannot put OS user {system_user!r} into pg_ident.conf")
    return f'# Written by Borealis. MAPNAME SYSTEM-USERNAME PG-USERNAME\n{IDENT_MAP}  "{system_user}"  all\n'


def quote_setting(value: str) -> str:
    """A postgresql.conf value, single-quoted (PostgreSQL accepts quotes around values of every type)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise EngineError("a PostgreSQL setting value cannot contain a line break or NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def render_settings(*, host: str, port: int, socket_dir: Path, settings: Mapping[str, str] | None = None) -> str:
    """The content of borealis.conf: where to listen, how to log, then the caller's `settings` (which win)."""
    base: dict[str, str] = {
        "listen_addresses": host,
        "port": str(port),
        "unix_socket_directories": str(socket_dir),
        "unix_socket_permissions": "0700",
        "password_encryption": "scram-sha-256",
        # The postmaster's stderr is a file Borealis opens (log_dir/postgresql.log), which also catches the
        # messages written before a logging collector could start; so no collector.
        "log_destination": "stderr",
        "logging_collector": "off",
        "log_line_prefix": "%m [%p] %q%u@%d ",
    }
    merged = {**base, **(settings or {})}
    return render_setting_lines(merged, "Written by Borealis; rewritten on reconfiguration, do not edit by hand.")


def include_line(name: str = SETTINGS_FILE) -> str:
    """The line appended to postgresql.conf so that our settings file ``name`` is read last (and so wins)."""
    return f"\n# Added by Borealis\ninclude_if_exists = '{name}'\n"


def render_setting_lines(settings: Mapping[str, str], header: str) -> str:
    """``name = 'value'`` lines under a comment ``header``, each name checked."""
    lines = [f"# {header}"]
    for name, value in settings.items():
        if not _NAME_RE.match(name):
            raise EngineError(f"invalid PostgreSQL setting name {name!r}")
        lines.append(f"{name} = {quote_setting(str(value))}")
    return "\n".join(lines) + "\n"


def conninfo(*, host: str, port: int, user: str, dbname: str, password: str | None = None) -> str:
    """A libpq conninfo string with every value quoted, as psycopg.connect() accepts it.

    `host` may be a unix-socket directory; without `password` none is sent (peer authentication).
    """

    def q(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    text = f"host={q(host)} port={port} user={q(user)} dbname={q(dbname)}"
    return text if password is None else f"{text} password={q(password)}"


@dataclass(frozen=True)
class PidFile:
    """What postmaster.pid says (see PostgreSQL's LOCK_FILE_LINE_* in miscadmin.h)."""

    pid: int
    datadir: str
    port: int | None
    socket_dir: str | None
    status: str | None  # "starting", "ready", "standby", "stopping", or None while not yet written


def parse_pidfile(text: str) -> PidFile | None:
    """Parse postmaster.pid; None if it is empty or torn (the postmaster writes it in several steps)."""
    lines = text.split("\n")
    try:
        pid = int(lines[0].strip())
    except (ValueError, IndexError):
        return None

    def line(n: int) -> str | None:
        value = lines[n - 1].strip() if len(lines) >= n else ""
        return value or None

    port_text = line(4)
    return PidFile(
        pid=pid,
        datadir=line(2) or "",
        port=int(port_text) if port_text and port_text.isdigit() else None,
        socket_dir=line(5),
        status=line(8),
    )
