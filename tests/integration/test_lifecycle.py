"""`borealis up` as a process: restart, kill -9, Ctrl-C, and one Borealis per data directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from borealis.engine import Binaries
from borealis.engine._process import is_alive
from tests.fixtures.fix_pgctl import start_daemonized

from .conftest import BorealisProcess, free_port, postgres_pids, processes_for


def _wait_no_postgres(data_dir: Path, timeout: float = 30) -> list[int]:
    """Wait until no process of this data directory is left: postgres servers and API worker processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = processes_for(data_dir)
        if not pids:
            return []
        time.sleep(0.1)
    return processes_for(data_dir)


@pytest.fixture
def own(tmp_path: Path) -> Iterator[BorealisProcess]:
    proc = BorealisProcess(tmp_path / "data")
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()
    for pid in postgres_pids(proc.data_dir):
        os.kill(pid, signal.SIGKILL)


def test_restart_keeps_clusters_and_data(own: BorealisProcess) -> None:
    own.start()
    with own.master_connect() as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (1), (2)")
        conn.commit()
    port_before = own.client("rds").describe_db_clusters()["DBClusters"][0]["Port"]
    assert own.stop(signal.SIGTERM) == 0
    assert _wait_no_postgres(own.data_dir, timeout=1) == []

    own.start()
    clusters = own.client("rds").describe_db_clusters()["DBClusters"]
    assert [(c["DBClusterIdentifier"], c["Status"], c["Port"]) for c in clusters] == [
        ("default", "available", port_before)
    ]
    with own.master_connect() as conn:
        assert conn.execute("SELECT sum(v) FROM kept").fetchone() == (3,)
    assert own.stop(signal.SIGINT) == 0  # Ctrl-C
    assert _wait_no_postgres(own.data_dir, timeout=1) == []


def test_kill_9_loses_no_committed_data(own: BorealisProcess) -> None:
    own.start()
    with own.master_connect() as conn:
        conn.execute("CREATE TABLE durable (v int)")
        conn.execute("INSERT INTO durable SELECT generate_series(1, 1000)")
        conn.commit()
    assert postgres_pids(own.data_dir)
    own.stop(signal.SIGKILL)
    # Postgres gets a fast shutdown from the kernel when its parent dies: nothing is left running.
    assert _wait_no_postgres(own.data_dir) == []

    own.start()
    with own.master_connect() as conn:
        assert conn.execute("SELECT count(*) FROM durable").fetchone() == (1000,)
    assert own.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_a_login_right_after_a_restart_waits_for_postgres(own: BorealisProcess, sig: int) -> None:
    """The stored status says available before postgres runs again: the login is held, not refused (57P03)."""
    own.start()
    cluster = own.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = own.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
    login = json.loads(secret["SecretString"])
    own.stop(sig)
    assert _wait_no_postgres(own.data_dir) == []
    # A loaded machine can take over a minute to bring postgres back: the login is held up to the login
    # timeout, so this run gets a longer one (and the client waits as long).
    own.extra_env["BOREALIS_LOGIN_TIMEOUT"] = "240"

    own.start(wait=False)  # not waiting for /health: log in as soon as the writer endpoint accepts
    assert own.proc is not None
    deadline = time.monotonic() + 240
    while True:
        assert own.proc.poll() is None, own.output.read_text()
        try:
            socket.create_connection((cluster["Endpoint"], cluster["Port"]), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the writer endpoint never accepted"
            time.sleep(0.02)
    with psycopg.connect(
        host=cluster["Endpoint"],
        port=cluster["Port"],
        user=login["username"],
        password=login["password"],
        dbname=cluster.get("DatabaseName", "postgres"),
        connect_timeout=240,
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert own.stop() == 0


def test_adopts_a_postmaster_left_running(own: BorealisProcess) -> None:
    """A postmaster that outlived Borealis (say its parent-death signal was lost) is stopped and restarted."""
    own.start()
    with own.master_connect() as conn:
        conn.execute("CREATE TABLE adopted (v int)")
        conn.execute("INSERT INTO adopted VALUES (7)")
        conn.commit()
    own.stop(signal.SIGKILL)
    assert _wait_no_postgres(own.data_dir) == []
    # A daemonized postmaster on the writer's data, as pg_ctl (or a lost parent-death signal) leaves one behind.
    volume = own.data_dir / "clusters" / "default" / "instances" / "default-instance-1" / "data"
    # No TCP (nothing connects to it): no port to race other tests for.
    start_daemonized(Binaries.find().tool("pg_ctl"), volume, f"-c listen_addresses='' -p {free_port()} -k /tmp")
    leftover = int((volume / "postmaster.pid").read_text().split()[0])
    assert is_alive(leftover)

    own.start()
    assert not is_alive(leftover)
    assert f"stopping postmaster pid {leftover} left on" in (own.data_dir / "borealis.log").read_text()
    with own.master_connect() as conn:
        assert conn.execute("SELECT v FROM adopted").fetchone() == (7,)
    assert own.stop() == 0
    assert _wait_no_postgres(own.data_dir, timeout=5) == []


def test_one_borealis_per_data_directory(own: BorealisProcess) -> None:
    own.start()
    second = subprocess.run(
        [sys.executable, "-m", "borealis", "up", "--data-dir", str(own.data_dir), "--api-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "another Borealis is already running" in second.stderr
    assert "Traceback" not in second.stderr
    own.stop()


def test_credentials_file(own: BorealisProcess) -> None:
    own.start()
    creds = own.data_dir / "credentials"
    assert creds.stat().st_mode & 0o777 == 0o600
    text = creds.read_text()
    assert text.startswith("[default]\naws_access_key_id = AKIA")
    key, secret = own.credentials()
    # The same key pair survives a restart.
    own.stop()
    own.start()
    assert own.credentials() == (key, secret)
    assert secret not in (own.data_dir / "borealis.log").read_text()
    own.stop()


def test_api_port_in_use_is_refused(own: BorealisProcess, tmp_path: Path) -> None:
    """Worker processes share the API port with SO_REUSEPORT; a second Borealis must not join them."""
    own.start()
    other = subprocess.run(
        [
            sys.executable, "-m", "borealis", "up", "--data-dir", str(tmp_path / "other"),
            "--api-port", str(own.api_port), "--workers", "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert other.returncode == 1
    assert f"cannot serve the API on 127.0.0.1:{own.api_port}" in other.stderr
    assert "Traceback" not in other.stderr
    own.stop()
    assert processes_for(tmp_path / "other") == []


def test_settings_from_a_toml_file(own: BorealisProcess) -> None:
    """`borealis up` reads DATA_DIR/borealis.toml; flags (the fixture passes ports) still win over it."""
    own.data_dir.mkdir(parents=True)
    (own.data_dir / "borealis.toml").write_text('region = "eu-west-1"\napi_port = 1\n')
    own.start()
    # Signed for the region Borealis serves, as AWS requires (a us-east-1 scope is refused there).
    cluster = own.client("rds", region_name="eu-west-1").describe_db_clusters(DBClusterIdentifier="default")
    assert cluster["DBClusters"][0]["DBClusterArn"] == "arn:aws:rds:eu-west-1:000000000000:cluster:default"
    assert own.stop() == 0
