"""Crash safety: a SIGKILLed parent leaves no postmaster; earlier and stale postmaster.pid files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from engine_support import PASSWORD, SUPERUSER, MakeServer
from tests.fixtures.fix_pgctl import start_daemonized

import borealis
from borealis.engine import PostgresServer
from borealis.engine._process import is_alive

pytestmark = pytest.mark.pg

CHILD = Path(__file__).with_name("child_server.py")


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.05)


def insert(server: PostgresServer, sql: str) -> None:
    with psycopg.connect(server.dsn(user=SUPERUSER, password=PASSWORD), autocommit=True) as conn:
        conn.execute(sql.encode())


def count(server: PostgresServer) -> object:
    with psycopg.connect(server.dsn(user=SUPERUSER, password=PASSWORD)) as conn:
        row = conn.execute("SELECT count(*) FROM t").fetchone()
        assert row is not None
        return row[0]


def test_sigkilled_parent_means_fast_shutdown(make_server: MakeServer) -> None:
    server = make_server()
    src = str(Path(borealis.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, str(CHILD), str(server.datadir), str(server.binaries.bindir)]
    parent = subprocess.Popen(
        [*argv, str(server.binaries.version), str(server.port)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        postmaster = int(parent.stdout.readline())
        insert(server, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        # An open transaction at the moment of the kill: fast shutdown must roll it back, not hang on it.
        open_tx = psycopg.connect(server.dsn(user=SUPERUSER, password=PASSWORD))
        open_tx.execute("INSERT INTO t VALUES (2)")
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_gone(postmaster)
        open_tx.close()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert not (server.datadir / "postmaster.pid").exists()
    assert "received fast shutdown request" in server.log_file.read_text()
    asyncio.run(server.start())
    assert count(server) == 1


def test_stale_pidfile_with_dead_pid(make_server: MakeServer) -> None:
    server = make_server()
    asyncio.run(server.start())
    pidfile = (server.datadir / "postmaster.pid").read_text()
    asyncio.run(server.stop())
    dead = subprocess.Popen(["true"])
    dead.wait()
    (server.datadir / "postmaster.pid").write_text(str(dead.pid) + pidfile[pidfile.index("\n") :])
    asyncio.run(server.start())
    assert server.status().running


def test_stale_pidfile_with_reused_pid(make_server: MakeServer) -> None:
    server = make_server()
    asyncio.run(server.start())
    pidfile = (server.datadir / "postmaster.pid").read_text()
    asyncio.run(server.stop())
    impostor = subprocess.Popen(["sleep", "60"])
    try:
        (server.datadir / "postmaster.pid").write_text(str(impostor.pid) + pidfile[pidfile.index("\n") :])
        assert not server.status().running  # a live pid that is not postgres is not a server
        asyncio.run(server.start())
        assert server.status().running
        assert impostor.poll() is None  # left alone
    finally:
        impostor.kill()
        impostor.wait()


def test_postmaster_from_an_earlier_run_is_stopped(make_server: MakeServer) -> None:
    server = make_server()
    # A daemonized postmaster, as pg_ctl (or an earlier Borealis on a system without PDEATHSIG) leaves it.
    start_daemonized(server.binaries.tool("pg_ctl"), server.datadir, f"-p {server.port} -k /tmp")
    earlier = server.status()
    assert earlier.running and earlier.pid is not None
    insert(server, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    fresh = PostgresServer(server.datadir, server.binaries, port=server.port)
    try:
        asyncio.run(fresh.start())
        wait_gone(earlier.pid)
        now = fresh.status()
        assert now.running and now.pid != earlier.pid
        assert count(fresh) == 1
    finally:
        asyncio.run(fresh.stop())
    assert not fresh.status().running


def test_stop_without_our_child_stops_an_earlier_postmaster(make_server: MakeServer) -> None:
    server = make_server()
    asyncio.run(server.start())
    pid = server.status().pid
    assert pid is not None
    other = PostgresServer(server.datadir, server.binaries, port=server.port)
    assert other.status().pid == pid
    asyncio.run(other.stop())
    asyncio.run(server.wait_exit())
    assert not server.status().running
