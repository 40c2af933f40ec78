"""The cluster endpoints under network faults, through the fault-injecting proxy (tests/fixtures/fix_faults.py).

A client whose connection is cut gets an error at once and its session ends on the server (the listener
closes the postgres side too); a slow link still gets correct answers; a partitioned client is noticed by
its own timeout while other clients carry on, and the link works again once healed.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from tests.fixtures.fix_faults import FaultProxy, fault_proxy
from tests.integration.conftest import BorealisProcess

__all__ = ["fault_proxy"]  # the fixture, imported so the tests here can use it


def _target(borealis: BorealisProcess) -> tuple[str, int]:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    return cluster["Endpoint"], int(cluster["Port"])


def _sessions(borealis: BorealisProcess, name: str) -> int:
    with borealis.master_connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]).fetchone()
        assert row is not None
        return int(row[0])


def test_a_cut_connection_ends_its_session(borealis: BorealisProcess, fault_proxy: Any) -> None:
    proxy: FaultProxy = fault_proxy(_target(borealis))
    host, port = proxy.address
    conn = borealis.master_connect(host=host, port=port)
    conn.execute("SET application_name = 'cut-me'")
    conn.commit()
    assert _sessions(borealis, "cut-me") == 1
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 10  # an error, not a hang
    conn.close()
    deadline = time.monotonic() + 60
    while _sessions(borealis, "cut-me") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sessions(borealis, "cut-me") == 0  # the listener closed the server side too


def test_a_slow_link_gets_correct_answers(borealis: BorealisProcess, fault_proxy: Any) -> None:
    proxy: FaultProxy = fault_proxy(_target(borealis))
    proxy.delay(0.05)
    host, port = proxy.address
    with borealis.master_connect(host=host, port=port) as conn:
        rows = conn.execute("SELECT g, repeat('x', 1000) FROM generate_series(1, 500) g").fetchall()
    assert [r[0] for r in rows] == list(range(1, 501))


def test_a_partitioned_link_times_out_and_others_carry_on(borealis: BorealisProcess, fault_proxy: Any) -> None:
    proxy: FaultProxy = fault_proxy(_target(borealis))
    proxy.drop()  # the link accepts and then never answers
    host, port = proxy.address
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=host, port=port, user="postgres", password="x", dbname="postgres", connect_timeout=2)
    assert time.monotonic() - started < 10
    proxy.drop(False)
    with borealis.master_connect() as other:  # the endpoint itself was never held up
        assert other.execute("SELECT 1").fetchone() == (1,)
    with borealis.master_connect(host=host, port=port) as healed:
        assert healed.execute("SELECT 2").fetchone() == (2,)
