"""Shared by this directory's tests and conftest: credentials, free ports (tests.net's), the server-factory type.

(A plain module rather than imports from conftest: the test directories are not packages.)
"""

from __future__ import annotations

from collections.abc import Callable

from tests.net import free_port

from borealis.engine import PostgresServer

__all__ = ["PASSWORD", "SUPERUSER", "MakeServer", "free_port"]

SUPERUSER = "borealis_admin"
PASSWORD = "pa'ss word\\42"  # quotes, a space and a backslash: conninfo and pwfile must cope

MakeServer = Callable[..., PostgresServer]
