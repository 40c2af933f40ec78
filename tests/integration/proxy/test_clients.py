"""Real clients through the proxy: psycopg (with and without prepare), asyncpg, psql, pgbench, many clients."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo


def test_psycopg_prepared_across_transactions(proxy: ProxyInfo) -> None:
    with psycopg.connect(**proxy.conninfo(), autocommit=True, prepare_threshold=0) as conn:
        for i in range(50):
            assert conn.execute("select %s::int + 1", [i]).fetchone() == (i + 1,)
        with conn.transaction():
            assert conn.execute("select %s::text", ["x"]).fetchone() == ("x",)
    # Several connections with the same statements, interleaved over a small pool.
    conns = [psycopg.connect(**proxy.conninfo(), autocommit=True, prepare_threshold=0) for _ in range(8)]
    try:
        for r in range(20):
            for i, c in enumerate(conns):
                assert c.execute("select %s::int * 2", [i + r]).fetchone() == (2 * (i + r),)
    finally:
        for c in conns:
            c.close()


def test_psycopg_without_prepare_and_transactions(proxy: ProxyInfo) -> None:
    with psycopg.connect(**proxy.conninfo(), prepare_threshold=None) as conn:
        conn.execute("create table if not exists proxy_t (id int primary key, v text)")
        conn.commit()
        conn.execute("delete from proxy_t")
        conn.execute("insert into proxy_t values (1, 'a')")
        conn.rollback()
        assert conn.execute("select count(*) from proxy_t").fetchone() == (0,)
        conn.execute("insert into proxy_t values (2, 'b')")
        conn.commit()
        assert conn.execute("select v from proxy_t where id = 2").fetchone() == ("b",)


def test_asyncpg_default_statement_cache(proxy: ProxyInfo) -> None:
    async def one(i: int) -> None:
        conn = await asyncpg.connect(proxy.dsn())
        try:
            for j in range(30):
                assert await conn.fetchval("select $1::int + $2::int", i, j) == i + j
                async with conn.transaction():
                    assert await conn.fetchval("select $1::text || 'x'", str(j)) == f"{j}x"
            stmt = await conn.prepare("select generate_series(1, $1::int)")
            assert len(await stmt.fetch(5)) == 5
        finally:
            await conn.close()

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 120)

    asyncio.run(main())


def test_psql(proxy: ProxyInfo) -> None:
    out = subprocess.run(
        ["psql", "-X", "-At", "-c", "select 40 + 2", "-c", "begin; select 1; commit;"],
        env=proxy.pg_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.splitlines()[0] == "42"


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench(proxy: ProxyInfo, borealis: BorealisProcess, mode: str) -> None:
    env = proxy.pg_env()
    subprocess.run(["pgbench", "-i", "-s", "1", "-q"], env=env, capture_output=True, timeout=120, check=True)
    out = subprocess.run(
        ["pgbench", "-n", "-S", "-M", mode, "-c", "16", "-j", "2", "-t", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "number of failed transactions: 0" in out.stdout
    assert "number of transactions actually processed: 3200/3200" in out.stdout


def test_200_clients_over_small_pool(proxy: ProxyInfo) -> None:
    async def one(i: int) -> int:
        conn = await asyncpg.connect(proxy.dsn(), timeout=60, server_settings={"application_name": "many"})
        try:
            total = 0
            for _ in range(5):
                total += await conn.fetchval("select $1::int", i)
                await asyncio.sleep(0.01)
            return total
        finally:
            await conn.close()

    async def main() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(220))), 180)

    assert asyncio.run(main()) == [5 * i for i in range(220)]
    with psycopg.connect(**proxy.conninfo(), autocommit=True) as conn:
        # The proxy's pool stayed within 5% of max_connections (plus this check's own borrowed one).
        count = conn.execute(
            "select count(*) from pg_stat_activity where application_name = 'many'",
        ).fetchone()
        mc = int(conn.execute("show max_connections").fetchone()[0])  # type: ignore[index]
        assert count is not None and count[0] <= max(1, mc * 5 // 100) + 2


def test_wrong_password_and_unknown_user(proxy: ProxyInfo) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**{**proxy.conninfo(), "password": "wrong"})
    with pytest.raises(psycopg.OperationalError, match="no credentials"):
        psycopg.connect(**{**proxy.conninfo(), "user": "nobody"})


def test_cancel(proxy: ProxyInfo) -> None:
    with psycopg.connect(**proxy.conninfo(), autocommit=True) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(20)")
        timer.join()
        assert conn.execute("select 1").fetchone() == (1,)


def _any(x: Any) -> Any:
    return x


def test_client_database_is_the_one_reached(proxy: ProxyInfo) -> None:
    # The server connection logs in to the database the client asked for, not the one named after the user;
    # pools per database keep clients of two databases apart while they interleave.
    with psycopg.connect(**proxy.conninfo(), autocommit=True) as admin:
        if admin.execute("select 1 from pg_database where datname = 'proxy_other_db'").fetchone() is None:
            admin.execute("create database proxy_other_db")
    with (
        psycopg.connect(**proxy.conninfo(dbname="proxy_other_db"), autocommit=True) as other,
        psycopg.connect(**proxy.conninfo(), autocommit=True) as default,
    ):
        other.execute("create table if not exists only_here (x int)")
        for _ in range(20):
            assert other.execute("select current_database()").fetchone() == ("proxy_other_db",)
            assert default.execute("select current_database()").fetchone() == ("postgres",)
        assert default.execute("select to_regclass('only_here')").fetchone() == (None,)
        assert other.execute("select to_regclass('only_here')::text").fetchone() == ("only_here",)
    with psycopg.connect(**proxy.conninfo(dbname="proxy_other_db"), prepare_threshold=0) as conn:
        for _ in range(5):
            assert conn.execute("select current_database()").fetchone() == ("proxy_other_db",)
        conn.commit()
