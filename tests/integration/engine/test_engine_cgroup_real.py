"""A real PostgreSQL in a real cgroup: its processes move in, the CPU quota throttles a busy query, the
capacity settings reload, and /proc accounting sees its CPU and memory."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import psycopg
import pytest
from engine_support import PASSWORD, SUPERUSER, MakeServer

from borealis.engine import Cgroups, Limits, PostgresServer, cpu_seconds, process_tree, proportional_memory

pytestmark = pytest.mark.pg


def connect(server: PostgresServer) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.dsn(user=SUPERUSER, password=PASSWORD), autocommit=True)


def _throttled(cgroup_dir: Path) -> int:
    for line in (cgroup_dir / "cpu.stat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name in ("nr_throttled",):
            return int(value)
    return 0


def test_quota_throttles_a_busy_server_and_settings_follow(make_server: MakeServer, server_root: Path) -> None:
    server = make_server()
    asyncio.run(server.start())
    # Capacity's settings come before ours (a parameter group's value wins over what capacity gives).
    server.set_capacity_settings({"work_mem": "12MB", "maintenance_work_mem": "70MB"})
    server.configure({"maintenance_work_mem": "99MB"})
    asyncio.run(server.reload())
    with connect(server) as conn:
        deadline = time.monotonic() + 60
        while conn.execute(
            "SELECT current_setting('work_mem'), current_setting('maintenance_work_mem')"
        ).fetchone() != (
            "12MB",
            "99MB",
        ):
            assert time.monotonic() < deadline, "the capacity settings were not reloaded"
            time.sleep(0.05)
    found = Cgroups.detect(server_root)
    if not found.enabled:  # a machine without writable cgroups: the scaler must say so and carry on
        assert found.reason and "settings only" in found.describe()
        return
    status = server.status()
    assert status.pid is not None
    group = found.group("instance-1")
    assert group is not None
    try:
        group.adopt(process_tree(status.pid))
        group.apply(Limits(cpus=0.05, memory=1024**3))
        members = {int(p) for p in (group.cpu_dir / "cgroup.procs").read_text().split()}
        assert set(process_tree(status.pid)) <= members  # the postmaster and its background processes

        with connect(server) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert backend is not None and int(str(backend[0])) in process_tree(status.pid)
            # A backend forked after the move inherits the postmaster's group.
            members = {int(p) for p in (group.cpu_dir / "cgroup.procs").read_text().split()}
            assert int(str(backend[0])) in members

        before = cpu_seconds(process_tree(status.pid))
        throttled = _throttled(group.cpu_dir)
        stop = threading.Event()

        def burn() -> None:
            with connect(server) as conn, contextlib.suppress(psycopg.Error):
                conn.execute("SET statement_timeout = '60s'")
                while not stop.is_set():
                    conn.execute("SELECT count(*) FROM generate_series(1, 2000000)")

        worker = threading.Thread(target=burn)
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while _throttled(group.cpu_dir) == throttled:
                assert time.monotonic() < deadline, "the CPU quota never throttled the busy backend"
                time.sleep(0.1)
            # A few clock ticks of CPU, so the count below is above the accounting's resolution (10 ms).
            while (during := cpu_seconds(process_tree(status.pid))) < before + 0.03:
                assert time.monotonic() < deadline, "the busy backend's CPU was never counted"
                time.sleep(0.1)
        finally:
            stop.set()
            worker.join(120)
        # Once the backend has exited its CPU moves to the postmaster's reaped children; the reaping comes a
        # moment after the client goes, so poll for it.
        deadline = time.monotonic() + 60
        while cpu_seconds(process_tree(status.pid)) < during:
            assert time.monotonic() < deadline, "the reaped backend's CPU was not counted"
            time.sleep(0.1)
        assert proportional_memory(process_tree(status.pid)) > 0
        assert (group.memory_used() or 0) > 0
    finally:
        asyncio.run(server.stop())
        group.remove()
        found.close()
    assert not group.cpu_dir.exists() and not group.memory_dir.exists()
