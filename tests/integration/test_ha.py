"""High availability with real clients: readers, the reader endpoint, planned and crash failover, rejoin.

These tests stop, kill and fail over postgres servers, so they run on a Borealis of their own (not the
session's), in order: a reader is added, the cluster fails over to it and back by a crash, and Borealis is
restarted. Nothing waits for a fixed time: every step polls the API or the database for the state it needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from borealis.store import Store
from tests.integration.conftest import BorealisProcess
from tests.integration.hatools import children as _children
from tests.integration.hatools import poll as _poll
from tests.integration.hatools import serving

CLUSTER = "default"
WRITER = "default-instance-1"


def _cluster(ha: BorealisProcess) -> dict[str, Any]:
    return dict(ha.client("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0])


def _writer(ha: BorealisProcess) -> str:
    members = _cluster(ha)["DBClusterMembers"]
    return str(next(m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]))


def _all_available(ha: BorealisProcess, count: int) -> bool:
    instances = ha.client("rds").describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [CLUSTER]}])
    statuses = [i["DBInstanceStatus"] for i in instances["DBInstances"]]
    return len(statuses) == count and all(s == "available" for s in statuses) and _cluster(ha)["Status"] == "available"


def _instance_port(ha: BorealisProcess, iid: str) -> int:
    inst = ha.client("rds").describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"][0]
    return int(inst["Endpoint"]["Port"])


def _in_recovery(ha: BorealisProcess, iid: str) -> bool:
    with ha.master_connect(port=_instance_port(ha, iid)) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        assert row is not None
        return bool(row[0])


def _postmaster_pid(ha: BorealisProcess, iid: str) -> int:
    pidfile = ha.data_dir / "clusters" / CLUSTER / "instances" / iid / "data" / "postmaster.pid"
    return int(pidfile.read_text().split()[0])


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    with serving(BorealisProcess(tmp_path_factory.mktemp("ha") / "data", workers=1)) as proc:
        yield proc


def test_a_reader_serves_the_writers_rows_read_only(ha: BorealisProcess) -> None:
    with ha.master_connect() as conn:
        conn.execute("CREATE TABLE acked (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO acked SELECT generate_series(1, 100)")
        conn.commit()
    rds = ha.client("rds")
    out = rds.create_db_instance(
        DBInstanceIdentifier="reader-1",
        DBClusterIdentifier=CLUSTER,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
        PromotionTier=1,
    )
    assert out["DBInstance"]["DBInstanceStatus"] == "creating"
    _poll("the reader is available", lambda: _all_available(ha, 2))
    members = {m["DBInstanceIdentifier"]: m for m in _cluster(ha)["DBClusterMembers"]}
    assert members[WRITER]["IsClusterWriter"] and not members["reader-1"]["IsClusterWriter"]
    assert members["reader-1"]["PromotionTier"] == 1

    cluster = _cluster(ha)
    with ha.master_connect(host=cluster["ReaderEndpoint"]) as conn:
        conn.autocommit = True
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        _poll("the reader has the rows", lambda: conn.execute("SELECT count(*) FROM acked").fetchone() == (100,))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO acked VALUES (0)")
    assert _in_recovery(ha, "reader-1") and not _in_recovery(ha, WRITER)
    with ha.master_connect() as conn:
        conn.autocommit = True
        assert conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone() == (1,)
        # Quorum commit to the reader once it streams (no acknowledged commit is lost in a failover).
        _poll(
            "the reader is a synchronous standby",
            lambda: conn.execute("SHOW synchronous_standby_names").fetchone() == ('ANY 1 ("reader-1")',),
        )
        assert conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone() == ("quorum",)


def _endpoint_in_recovery(ha: BorealisProcess, host: str) -> bool:
    with ha.master_connect(host=host) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        assert row is not None
        return bool(row[0])


def test_custom_endpoints_route_to_their_members(ha: BorealisProcess) -> None:
    rds = ha.client("rds")
    ro = rds.create_db_cluster_endpoint(
        DBClusterIdentifier=CLUSTER, DBClusterEndpointIdentifier="readers", EndpointType="READER"
    )
    assert (ro["EndpointType"], ro["CustomEndpointType"], ro["Status"]) == ("CUSTOM", "READER", "creating")
    pinned = rds.create_db_cluster_endpoint(
        DBClusterIdentifier=CLUSTER, DBClusterEndpointIdentifier="pinned", EndpointType="ANY", StaticMembers=[WRITER]
    )
    rest = rds.create_db_cluster_endpoint(
        DBClusterIdentifier=CLUSTER, DBClusterEndpointIdentifier="rest", EndpointType="ANY", ExcludedMembers=[WRITER]
    )
    with pytest.raises(rds.exceptions.DBClusterEndpointAlreadyExistsFault):
        rds.create_db_cluster_endpoint(
            DBClusterIdentifier=CLUSTER, DBClusterEndpointIdentifier="readers", EndpointType="READER"
        )
    with pytest.raises(rds.exceptions.DBInstanceNotFoundFault):
        rds.create_db_cluster_endpoint(
            DBClusterIdentifier=CLUSTER, DBClusterEndpointIdentifier="x", EndpointType="ANY", StaticMembers=["nope"]
        )

    def listed() -> dict[str, dict[str, Any]]:
        out = rds.describe_db_cluster_endpoints(DBClusterIdentifier=CLUSTER)["DBClusterEndpoints"]
        return {f"{e['EndpointType']}:{e['DBClusterEndpointIdentifier']}": e for e in out}

    _poll("the custom endpoints are available", lambda: all(e["Status"] == "available" for e in listed().values()))
    assert set(listed()) == {"WRITER:default", "READER:default", "CUSTOM:readers", "CUSTOM:pinned", "CUSTOM:rest"}
    assert sorted(_cluster(ha)["CustomEndpoints"]) == sorted([ro["Endpoint"], pinned["Endpoint"], rest["Endpoint"]])
    custom_only = rds.describe_db_cluster_endpoints(
        Filters=[{"Name": "db-cluster-endpoint-type", "Values": ["custom"]}]
    )
    assert len(custom_only["DBClusterEndpoints"]) == 3

    assert _endpoint_in_recovery(ha, ro["Endpoint"])
    assert not _endpoint_in_recovery(ha, pinned["Endpoint"])
    assert _endpoint_in_recovery(ha, rest["Endpoint"])
    # Modified: the same address now routes to the writer alone.
    out = rds.modify_db_cluster_endpoint(
        DBClusterEndpointIdentifier="readers", EndpointType="ANY", StaticMembers=[WRITER]
    )
    assert out["Status"] == "modifying"
    _poll("the change is applied", lambda: listed()["CUSTOM:readers"]["Status"] == "available")
    assert not _endpoint_in_recovery(ha, ro["Endpoint"])
    for name in ("readers", "pinned", "rest"):
        assert rds.delete_db_cluster_endpoint(DBClusterEndpointIdentifier=name)["Status"] == "deleting"
    _poll("the custom endpoints are gone", lambda: set(listed()) == {"WRITER:default", "READER:default"})
    with pytest.raises(rds.exceptions.DBClusterEndpointNotFoundFault):
        rds.delete_db_cluster_endpoint(DBClusterEndpointIdentifier="readers")


def test_status_shows_roles_and_replica_lag(ha: BorealisProcess) -> None:
    def status() -> list[list[str]]:
        out = subprocess.run(
            [sys.executable, "-m", "borealis", "status", "--data-dir", str(ha.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return [line.split() for line in out.stdout.splitlines()]

    header = next(r for r in status() if r[:1] == ["INSTANCE"])
    assert header[-2:] == ["ENDPOINT", "LAG"]
    # The writer measures each reader's lag every second (AuroraReplicaLag in CloudWatch).
    reader = _poll(
        "the reader's lag is shown",
        lambda: next((r for r in status() if r[:1] == ["reader-1"] and r[-1] == "ms"), None),
    )
    assert reader[4] == "reader" and float(reader[-2]) >= 0
    writer = next(r for r in status() if r[:1] == [WRITER])
    assert writer[4] == "writer" and writer[-1] == "-"


def test_failover_refusals(ha: BorealisProcess) -> None:
    rds = ha.client("rds")
    with pytest.raises(rds.exceptions.DBInstanceNotFoundFault):
        rds.failover_db_cluster(DBClusterIdentifier=CLUSTER, TargetDBInstanceIdentifier="no-such-instance")
    with pytest.raises(rds.exceptions.InvalidDBInstanceStateFault):
        rds.failover_db_cluster(DBClusterIdentifier=CLUSTER, TargetDBInstanceIdentifier=WRITER)
    with pytest.raises(rds.exceptions.DBClusterNotFoundFault):
        rds.failover_db_cluster(DBClusterIdentifier="no-such-cluster")


def test_planned_failover_keeps_the_address_and_every_commit(ha: BorealisProcess) -> None:
    rds = ha.client("rds")
    port = _cluster(ha)["Port"]
    out = rds.failover_db_cluster(DBClusterIdentifier=CLUSTER, TargetDBInstanceIdentifier="reader-1")
    assert out["DBCluster"]["Status"] == "failing-over"
    _poll("reader-1 is the writer", lambda: _writer(ha) == "reader-1" and _cluster(ha)["Status"] == "available")
    assert _cluster(ha)["Port"] == port
    with ha.master_connect() as conn:  # the same writer endpoint, now served by reader-1
        assert conn.execute("SELECT pg_is_in_recovery(), count(*) FROM acked").fetchone() == (False, 100)
        conn.execute("INSERT INTO acked VALUES (101)")
        conn.commit()
    # The old writer is rewound and follows the new one.
    _poll("the old writer rejoins", lambda: _all_available(ha, 2))
    events = rds.describe_events(SourceType="db-cluster", SourceIdentifier=CLUSTER)["Events"]
    messages = [e["Message"] for e in events]
    assert "Started cross AZ failover to DB instance: reader-1" in messages
    assert "Completed failover to DB instance: reader-1" in messages
    assert all(e["EventCategories"] == ["failover"] for e in events if "failover" in e["Message"])
    created = rds.describe_events(SourceType="db-instance", SourceIdentifier="reader-1", EventCategories=["creation"])
    assert [e["Message"] for e in created["Events"]] == ["DB instance created"]
    rejoined = rds.describe_events(SourceType="db-instance", SourceIdentifier=WRITER)["Events"]
    assert "A new writer was promoted. Restarting database as a reader." in [e["Message"] for e in rejoined]
    assert _in_recovery(ha, WRITER)
    with ha.master_connect(port=_instance_port(ha, WRITER)) as conn:
        conn.autocommit = True
        _poll("the old writer replays", lambda: conn.execute("SELECT count(*) FROM acked").fetchone() == (101,))


def test_crash_failover_loses_no_acknowledged_commit(ha: BorealisProcess) -> None:
    old = _writer(ha)
    port = _cluster(ha)["Port"]
    acknowledged: list[int] = []
    stop = threading.Event()

    def write() -> None:
        next_id = 1000
        conn: psycopg.Connection[Any] | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = ha.master_connect(port=port)
                    conn.autocommit = True
                conn.execute("INSERT INTO acked VALUES (%s)", [next_id])
                acknowledged.append(next_id)
                next_id += 1
            except psycopg.Error:
                next_id += 1  # maybe committed, maybe not: not acknowledged either way
                conn = None
                time.sleep(0.02)
        if conn is not None:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        _poll("writes flow", lambda: len(acknowledged) > 50)
        os.kill(_postmaster_pid(ha, old), signal.SIGKILL)
        _poll("another instance is the writer", lambda: _writer(ha) != old, timeout=60)
        count = len(acknowledged)
        _poll("writes flow again", lambda: len(acknowledged) > count + 50, timeout=60)
    finally:
        stop.set()
        writer.join(30)
    with ha.master_connect() as conn:
        rows = {r[0] for r in conn.execute("SELECT id FROM acked WHERE id >= 1000").fetchall()}
    lost = set(acknowledged) - rows
    assert not lost, f"{len(lost)} acknowledged commits lost"
    _poll("the crashed writer rejoins as a reader", lambda: _all_available(ha, 2))
    assert _in_recovery(ha, old)


def test_a_hung_writer_is_failed_over(ha: BorealisProcess) -> None:
    # Every process of the writer's postgres stopped (SIGSTOP): it neither answers nor exits, as a writer stuck
    # on its disk. The probes time out, a reader is promoted, the hung one is killed and rejoins as a reader.
    old = _writer(ha)
    postmaster = _postmaster_pid(ha, old)
    frozen = [postmaster, *_children(postmaster)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        _poll("a reader takes over from the hung writer", lambda: _writer(ha) != old, timeout=90)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    with ha.master_connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    _poll("the hung writer rejoins as a reader", lambda: _all_available(ha, 2), timeout=120)
    assert _in_recovery(ha, old)
    events = ha.client("rds").describe_events(SourceType="db-cluster", SourceIdentifier=CLUSTER)["Events"]
    assert f"Completed failover to DB instance: {_writer(ha)}" in [e["Message"] for e in events]


def test_a_writer_that_accepts_no_new_connection_is_failed_over(ha: BorealisProcess) -> None:
    # Only the postmaster stopped: sessions already open still answer, but no new connection gets in, so no
    # client can reach the writer. The probe connects afresh each time, so it notices and a reader takes over.
    _poll("both instances are available", lambda: _all_available(ha, 2))
    old = _writer(ha)
    postmaster = _postmaster_pid(ha, old)
    with ha.master_connect(port=_instance_port(ha, old)) as session:
        session.autocommit = True
        os.kill(postmaster, signal.SIGSTOP)
        try:
            assert session.execute("SELECT 1").fetchone() == (1,)  # an open session still answers
            _poll("a reader takes over from the writer that accepts no connection", lambda: _writer(ha) != old, 90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGCONT)
    with ha.master_connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    _poll("the old writer rejoins as a reader", lambda: _all_available(ha, 2), timeout=120)
    assert _in_recovery(ha, old)


def _postmaster_alive(ha: BorealisProcess, iid: str) -> bool:
    try:
        os.kill(_postmaster_pid(ha, iid), 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def test_a_plane_that_loses_its_lease_stands_down_until_it_has_it_back(ha: BorealisProcess) -> None:
    # Another control plane (as on another host sharing the store) takes the store's lease: this one stops
    # acting, so a reader killed meanwhile stays down; once the lease is free again it acts, and restarts it.
    _poll("both instances are available", lambda: _all_available(ha, 2))
    reader = next(i for i in (WRITER, "reader-1") if i != _writer(ha))
    store = Store(ha.data_dir / "borealis.db")
    other = "elsewhere:1:1"

    def take() -> bool:
        held = store.lease("control-plane")
        if held is not None and held.holder != other:
            store.release_lease("control-plane", held.holder)  # as if it had expired
        return store.acquire_lease("control-plane", other, 600)

    try:
        _poll("the other plane holds the lease", take)
        _poll("the plane stands down", lambda: "standing down" in ha.output.read_text())
        os.kill(_postmaster_pid(ha, reader), signal.SIGKILL)
        _poll("the reader's postgres is gone", lambda: not _postmaster_alive(ha, reader))
        # Ten reconciler ticks: a plane that acted would have started it again within one or two.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert not _postmaster_alive(ha, reader), "a plane without the lease restarted postgres"
            time.sleep(0.2)
    finally:
        store.release_lease("control-plane", other)
        store.close()
    _poll("the plane acts again", lambda: "acting again" in ha.output.read_text())
    _poll("the reader is restarted", lambda: _postmaster_alive(ha, reader) and _in_recovery(ha, reader))
    _poll("both instances are available", lambda: _all_available(ha, 2))


def test_proxy_clients_survive_a_failover(ha: BorealisProcess) -> None:
    rds = ha.client("rds")
    secret_arn = _cluster(ha)["MasterUserSecret"]["SecretArn"]
    rds.create_db_proxy(
        DBProxyName="ha-proxy",
        EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret_arn}],
        RoleArn="arn:aws:iam::000000000000:role/proxy",
        VpcSubnetIds=["subnet-1", "subnet-2"],
    )
    _poll("the proxy", lambda: rds.describe_db_proxies(DBProxyName="ha-proxy")["DBProxies"][0]["Status"] == "available")
    rds.register_db_proxy_targets(DBProxyName="ha-proxy", DBClusterIdentifiers=[CLUSTER])
    host = rds.describe_db_proxies(DBProxyName="ha-proxy")["DBProxies"][0]["Endpoint"]
    port = next(
        t["Port"]
        for t in rds.describe_db_proxy_targets(DBProxyName="ha-proxy")["Targets"]
        if t["Type"] == "TRACKED_CLUSTER"
    )
    idle = ha.master_connect(host=host, port=port)
    busy = ha.master_connect(host=host, port=port)
    try:
        idle.autocommit = True
        assert idle.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        busy.execute("INSERT INTO acked VALUES (-1)")  # a transaction left open across the failover
        old = _writer(ha)
        rds.failover_db_cluster(DBClusterIdentifier=CLUSTER)
        _poll("the other instance is the writer", lambda: _writer(ha) != old and _cluster(ha)["Status"] == "available")
        # The idle client's connection stays open and reaches the new writer (RDS Proxy's selling point).
        assert _poll(
            "the idle client writes again", lambda: idle.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)
        )
        # The transaction in flight gets an error, not a hang, and its row was never committed.
        with pytest.raises(psycopg.OperationalError):
            busy.execute("INSERT INTO acked VALUES (-2)")
            busy.commit()
        assert idle.execute("SELECT count(*) FROM acked WHERE id < 0").fetchone() == (0,)
    finally:
        idle.close()
        busy.close()
    _poll("both instances are available", lambda: _all_available(ha, 2))


def test_a_read_only_proxy_endpoint_serves_from_the_readers(ha: BorealisProcess) -> None:
    rds = ha.client("rds")
    out = rds.create_db_proxy_endpoint(
        DBProxyName="ha-proxy",
        DBProxyEndpointName="ha-ro",
        VpcSubnetIds=["subnet-1", "subnet-2"],
        TargetRole="READ_ONLY",
    )
    host = out["DBProxyEndpoint"]["Endpoint"]
    _poll(
        "the endpoint is available",
        lambda: (
            rds.describe_db_proxy_endpoints(DBProxyEndpointName="ha-ro")["DBProxyEndpoints"][0]["Status"] == "available"
        ),
    )
    port = _cluster(ha)["Port"]
    with ha.master_connect(host=host, port=port) as conn:
        conn.autocommit = True
        assert _poll("a reader answers", lambda: conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO acked VALUES (-3)")


def test_a_restart_brings_every_instance_back_in_its_role(ha: BorealisProcess) -> None:
    writer = _writer(ha)
    reader = next(i for i in (WRITER, "reader-1") if i != writer)
    ha.stop()
    ha.start()
    _poll("both instances are back", lambda: _all_available(ha, 2))
    assert _writer(ha) == writer
    assert not _in_recovery(ha, writer) and _in_recovery(ha, reader)
    with ha.master_connect(host=_cluster(ha)["ReaderEndpoint"]) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_deleting_the_writer_fails_over_and_the_last_instance_leaves_the_data(ha: BorealisProcess) -> None:
    rds = ha.client("rds")
    with ha.master_connect() as conn:
        row = conn.execute("SELECT count(*) FROM acked").fetchone()
    assert row is not None
    rows = row[0]
    old = _writer(ha)
    rds.delete_db_instance(DBInstanceIdentifier=old)
    _poll("the reader took over and the old writer is gone", lambda: _writer(ha) != old and _all_available(ha, 1))
    with ha.master_connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery(), count(*) FROM acked").fetchone() == (False, rows)
    # The last instance goes: its data stays as the cluster volume, and the next writer starts from it.
    last = _writer(ha)
    rds.delete_db_instance(DBInstanceIdentifier=last)
    _poll("no instance left", lambda: not _cluster(ha)["DBClusterMembers"])
    assert (ha.data_dir / "clusters" / CLUSTER / "volume" / "PG_VERSION").exists()
    rds.create_db_instance(
        DBInstanceIdentifier="phoenix",
        DBClusterIdentifier=CLUSTER,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    _poll("the new writer is available", lambda: _all_available(ha, 1))
    assert _writer(ha) == "phoenix"
    with ha.master_connect() as conn:
        assert conn.execute("SELECT count(*) FROM acked").fetchone() == (rows,)
