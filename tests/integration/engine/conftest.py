"""Fixtures for real PostgreSQL servers: a shared session server and a factory of fresh ones.

Each server gets a free port and a private root-owned 0700 directory from mkdtemp (as unreachable for the
service user as pytest's own tmp dir, so the engine's ancestor fix is exercised). Not pytest's tmp_path:
every new pytest session on the machine chmods /tmp/pytest-of-<user> back to 0700, which would cut a
concurrently running test server off its files. Every server started here is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import PASSWORD, SUPERUSER, MakeServer, free_port

from borealis.engine import Binaries, PostgresServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One running PostgreSQL 16 for tests that only read or reconfigure; stopped at the end."""
    root = Path(tempfile.mkdtemp(prefix="borealis-tests-"))
    server = PostgresServer(root / "data", Binaries.find(), port=free_port())
    asyncio.run(server.initdb(superuser=SUPERUSER, password=PASSWORD))
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())
        shutil.rmtree(root)


@pytest.fixture
def server_root() -> Iterator[Path]:
    """A private directory for this test's servers, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="borealis-tests-"))
    yield root
    shutil.rmtree(root)


@pytest.fixture
def make_server(server_root: Path) -> Iterator[MakeServer]:
    """A factory of initialized (not started) servers in this test's tmp dir; all stopped at teardown."""
    made: list[PostgresServer] = []

    def make(binaries: Binaries | None = None, *, name: str = "data", initdb: bool = True) -> PostgresServer:
        server = PostgresServer(server_root / name, binaries or Binaries.find(), port=free_port())
        if initdb:
            asyncio.run(server.initdb(superuser=SUPERUSER, password=PASSWORD))
        made.append(server)
        return server

    yield make
    for server in made:
        asyncio.run(server.stop())
