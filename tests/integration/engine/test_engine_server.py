"""PostgresServer against real PostgreSQL: initdb, start, connect with SCRAM, stop, reload, status."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from engine_support import PASSWORD, SUPERUSER, MakeServer, free_port

from borealis.engine import Binaries, EngineError, PostgresServer, ServerStatus
from borealis.engine._osuser import service_user

pytestmark = pytest.mark.pg


def connect(server: PostgresServer, password: str = PASSWORD) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.dsn(user=SUPERUSER, password=password), autocommit=True)


def query(server: PostgresServer, sql: str) -> object:
    with connect(server) as conn:
        row = conn.execute(sql.encode()).fetchone()
        assert row is not None
        return row[0]


def test_connects_with_scram(pg_server: PostgresServer) -> None:
    assert query(pg_server, "SELECT current_setting('server_version_num')::int / 10000") == pg_server.binaries.version
    assert str(query(pg_server, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{SUPERUSER}'")).startswith(
        "SCRAM-SHA-256$"
    )
    assert query(pg_server, "SELECT current_setting('server_encoding')") == "UTF8"
    assert query(pg_server, "SELECT datcollate FROM pg_database WHERE datname = current_database()") == "C"


def test_wrong_password_is_refused(pg_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(pg_server, password="wrong")


def test_no_trust_over_tcp(pg_server: PostgresServer) -> None:
    rules = query(
        pg_server,
        "SELECT string_agg(type || ' ' || auth_method, ',' ORDER BY line_number) FROM pg_hba_file_rules",
    )
    assert rules == (
        "local peer,local peer,host scram-sha-256,host scram-sha-256,host scram-sha-256,host scram-sha-256"
    )
    mapping = query(
        pg_server,
        "SELECT string_agg(map_name || ' ' || sys_name || ' ' || pg_username, ',') FROM pg_ident_file_mappings",
    )
    assert mapping == f"borealis {pwd.getpwuid(os.geteuid()).pw_name} all"


def test_internal_conninfo_logs_borealis_in_as_any_role_without_a_password(pg_server: PostgresServer) -> None:
    with connect(pg_server) as conn:
        conn.execute("DROP ROLE IF EXISTS someone")
        conn.execute("CREATE ROLE someone LOGIN")
    for user in (SUPERUSER, "someone"):
        with psycopg.connect(pg_server.internal_conninfo(user=user)) as conn:
            row = conn.execute("SELECT current_user, inet_server_addr() IS NULL").fetchone()
            assert row == (user, True)  # no server address: the unix socket


def test_internal_conninfo_refuses_every_other_os_user(pg_server: PostgresServer) -> None:
    # The OS user postgres itself runs as (a tenant's COPY ... PROGRAM or a backend would be that user) can
    # reach the socket directory, and still may not log in: peer sees its uid, which the map does not name.
    user = service_user()
    if user is None:
        pytest.fail("this test needs root, to connect as another OS user")
    psql = pg_server.binaries.tool("psql")
    result = subprocess.run(
        [str(psql), "-X", "-w", "-d", pg_server.internal_conninfo(user=SUPERUSER), "-c", "select 1"],
        capture_output=True,
        text=True,
        timeout=60,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": "/"},
        cwd="/",
    )
    assert result.returncode != 0
    assert f'Peer authentication failed for user "{SUPERUSER}"' in result.stderr


def test_unix_socket_is_private(pg_server: PostgresServer) -> None:
    sockdir = Path(str(query(pg_server, "SELECT current_setting('unix_socket_directories')")))
    assert stat.S_IMODE(sockdir.stat().st_mode) == 0o700
    sock = sockdir / f".s.PGSQL.{pg_server.port}"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    assert sock.stat().st_uid == pg_server.datadir.stat().st_uid


def test_runs_as_unprivileged_user(pg_server: PostgresServer) -> None:
    pid = pg_server.status().pid
    uids = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:"))
    owner = pg_server.datadir.stat().st_uid
    assert uids.split()[1:] == [str(owner)] * 4
    if os.geteuid() == 0:
        assert owner != 0
    assert stat.S_IMODE(pg_server.datadir.stat().st_mode) == 0o700


def test_status(pg_server: PostgresServer) -> None:
    status = pg_server.status()
    assert status.running
    assert status.port == pg_server.port
    # The postmaster is our direct child.
    ppid = next(ln for ln in Path(f"/proc/{status.pid}/status").read_text().splitlines() if ln.startswith("PPid:"))
    assert int(ppid.split()[1]) == os.getpid()


def test_reload_applies_settings(pg_server: PostgresServer) -> None:
    pg_server.configure({"work_mem": "7MB"})
    asyncio.run(pg_server.reload())
    deadline = time.monotonic() + 60
    while query(pg_server, "SHOW work_mem") != "7MB":
        assert time.monotonic() < deadline, "reload did not take effect"
        time.sleep(0.05)
    pg_server.configure({})
    asyncio.run(pg_server.reload())


def test_password_is_not_logged_nor_left_on_disk(make_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    def mkstemp(**kwargs: str) -> tuple[int, str]:
        fd, name = real_mkstemp(**kwargs)
        made.append(name)
        return fd, name

    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    server = make_server()
    monkeypatch.undo()
    assert len(made) == 1
    assert not os.path.exists(made[0])
    asyncio.run(server.start())
    assert PASSWORD not in server.log_file.read_text()


@pytest.mark.parametrize(
    "setting",
    [
        "embedded:16",
        "embedded:17",
        "embedded:18",
    ],
)
def test_lifecycle_and_durability(make_server: MakeServer, setting: str) -> None:
    binaries = Binaries.find(setting)
    server = make_server(binaries)
    assert server.is_initialized()
    assert server.status() == ServerStatus(running=False, pid=None, port=None)
    asyncio.run(server.start())
    assert query(server, "SELECT current_setting('server_version_num')::int / 10000") == binaries.version
    with connect(server) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    asyncio.run(server.stop())
    assert not server.status().running
    asyncio.run(server.stop())  # idempotent
    asyncio.run(server.start())
    assert query(server, "SELECT v FROM t") == "kept"
    asyncio.run(server.start())  # idempotent while running


def test_wait_exit_reports_stop_and_crash(make_server: MakeServer) -> None:
    server = make_server()

    async def stopped() -> int:
        await server.start()
        waiter = asyncio.create_task(server.wait_exit())
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await server.stop()
        return await waiter

    assert asyncio.run(stopped()) == 0

    async def crashed() -> int:
        await server.start()
        pid = server.status().pid
        assert pid is not None
        os.kill(pid, 9)
        return await asyncio.wait_for(server.wait_exit(), 10)

    assert asyncio.run(crashed()) == -9
    assert not server.status().running


def test_initdb_refuses_an_initialized_or_foreign_directory(make_server: MakeServer, server_root: Path) -> None:
    server = make_server()
    with pytest.raises(EngineError, match="already initialized"):
        asyncio.run(server.initdb(superuser="x", password="y"))
    (server_root / "other").mkdir()
    (server_root / "other" / "file").write_text("mine")
    other = make_server(name="other", initdb=False)
    with pytest.raises(EngineError, match="not empty"):
        asyncio.run(other.initdb(superuser="x", password="y"))


def test_start_refuses_uninitialized_and_wrong_version(make_server: MakeServer, server_root: Path) -> None:
    with pytest.raises(EngineError, match="not initialized"):
        asyncio.run(make_server(name="empty", initdb=False).start())
    server = make_server()
    other = Binaries.find("embedded:16" if server.binaries.version != 16 else "embedded:18")
    wrong = PostgresServer(server.datadir, other, port=server.port)
    with pytest.raises(EngineError, match=f"is PostgreSQL {server.binaries.version}, binaries are {other.version}"):
        asyncio.run(wrong.start())


def test_start_failure_carries_the_log_tail(make_server: MakeServer) -> None:
    server = make_server()
    with socket.socket() as taken:
        taken.bind((server.host, server.port))
        taken.listen()
        with pytest.raises(EngineError, match="exited during startup") as info:
            asyncio.run(server.start(timeout=20))
    assert "could not bind" in str(info.value) or "Address already in use" in str(info.value)
    assert not server.status().running
    asyncio.run(server.start())  # the port is free again
    assert server.status().running


def test_initdb_settings_are_applied(server_root: Path) -> None:
    server = PostgresServer(server_root / "configured", Binaries.find(), port=free_port())
    asyncio.run(server.initdb(superuser=SUPERUSER, password=PASSWORD, settings={"max_connections": "42"}))
    try:
        asyncio.run(server.start())
        assert query(server, "SHOW max_connections") == "42"
    finally:
        asyncio.run(server.stop())


def test_reaches_files_under_pytest_tmp_path(tmp_path: Path) -> None:
    # pytest's tmp root is mode 0700 and owned by root: the service user can only get there after the
    # engine adds o+x to it. (Can flake if another pytest session starts meanwhile and chmods it back.)
    server = PostgresServer(tmp_path / "deep" / "data", Binaries.find(), port=free_port())
    asyncio.run(server.initdb(superuser=SUPERUSER, password=PASSWORD))
    try:
        asyncio.run(server.start())
        assert query(server, "SELECT 1") == 1
    finally:
        asyncio.run(server.stop())
