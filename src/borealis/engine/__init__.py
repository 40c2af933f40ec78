"""PostgreSQL processes: binaries, initdb, start/stop, reload, status, cgroup limits and accounting."""

from ._archive import (
    archive_path,
    archive_settings,
    archived_files,
    backup_start_wal,
    recovery_settings,
    restore_command,
)
from ._binaries import Binaries
from ._cgroup import Cgroup, Cgroups, Limits, cpu_seconds, process_tree, proportional_memory
from ._config import socket_dir_for
from ._errors import EngineError
from ._extensions import (
    ALLOWED_EXTENSIONS,
    EngineInfo,
    allowed_overlay,
    available_engines,
    full_version,
    installed_extensions,
)
from ._preload import aurora_defaults, has_library
from ._replica import replication_conninfo
from ._server import PostgresServer, ServerStatus
from ._verifier import Login, Verifier

__all__ = [
    "ALLOWED_EXTENSIONS",
    "Binaries",
    "Cgroup",
    "Cgroups",
    "EngineError",
    "EngineInfo",
    "Limits",
    "Login",
    "PostgresServer",
    "ServerStatus",
    "Verifier",
    "allowed_overlay",
    "archive_path",
    "archive_settings",
    "archived_files",
    "aurora_defaults",
    "available_engines",
    "backup_start_wal",
    "cpu_seconds",
    "full_version",
    "has_library",
    "installed_extensions",
    "process_tree",
    "proportional_memory",
    "recovery_settings",
    "replication_conninfo",
    "restore_command",
    "socket_dir_for",
]
