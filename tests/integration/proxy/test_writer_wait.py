"""Targets follow the cluster: while the writer is down (RebootDBInstance), new transactions wait for it
within ConnectionBorrowTimeout, and idle clients keep their connections to the proxy."""

from __future__ import annotations

import socket
import time
from typing import Any

import psycopg

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo


def _one(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_borrow_waits_for_rebooted_writer(borealis: BorealisProcess, proxy: ProxyInfo) -> None:
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    writer = next(m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"] if m["IsClusterWriter"])
    with psycopg.connect(**proxy.conninfo(), autocommit=True) as conn:
        started = _one(conn, "select pg_postmaster_start_time()")
        # The postgres port behind the proxy (not an endpoint): closed once the old server has stopped.
        pg_port = int(_one(conn, "select current_setting('port')"))
        rds.reboot_db_instance(DBInstanceIdentifier=writer)
        deadline = time.monotonic() + 120
        while not _refused(pg_port):
            assert time.monotonic() < deadline, "the writer did not stop"
            time.sleep(0.02)
        # No writer runs now (or the new one is just up): this transaction waits for the new one instead of
        # failing at once. The window is short here (postgres restarts in ~0.1 s), so the waiting itself is
        # shown deterministically by tests/pure/proxy/test_writer_wait.py.
        t0 = time.monotonic()
        assert _one(conn, "select pg_postmaster_start_time()") > started
        assert time.monotonic() - t0 < 30
        # The same client connection goes on working, with transactions and prepared statements.
        with conn.transaction():
            assert _one(conn, "select 41 + 1") == 42
        assert conn.execute("select %s::int", [7], prepare=True).fetchone() == (7,)
    deadline = time.monotonic() + 120
    while rds.describe_db_instances(DBInstanceIdentifier=writer)["DBInstances"][0]["DBInstanceStatus"] != "available":
        assert time.monotonic() < deadline
        time.sleep(0.1)
