"""PostgreSQL processes: binaries, initdb, start/stop, reload, status (replication and backup to come)."""

from ._binaries import Binaries
from ._config import socket_dir_for
from ._errors import EngineError
from ._server import PostgresServer, ServerStatus

__all__ = ["Binaries", "EngineError", "PostgresServer", "ServerStatus", "socket_dir_for"]
