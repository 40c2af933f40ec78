"""Shared by this directory's tests and conftest: credentials, free ports, the server-factory type.

(A plain module rather than imports from conftest: the test directories are not packages.)
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from borealis.engine import PostgresServer

SUPERUSER = "borealis_admin"
PASSWORD = "pa'ss word\\42"  # quotes, a space and a backslash: conninfo and pwfile must cope

MakeServer = Callable[..., PostgresServer]


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
