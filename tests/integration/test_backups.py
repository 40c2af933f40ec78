"""DB cluster snapshots and restores through boto3, checked with psycopg, on a Borealis of their own.

The tests share one `borealis up` (its default cluster is the source) and run in file order: later tests use
the snapshots earlier ones made. Every wait is a waiter or a poll with a generous deadline, never a sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from .conftest import BorealisProcess, postgres_pids

FAST = {"Delay": 1, "MaxAttempts": 300}
ROWS = 5000


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    proc = BorealisProcess(tmp_path_factory.mktemp("backups") / "data")
    proc.start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()
    for pid in postgres_pids(proc.data_dir):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def master(own: BorealisProcess) -> dict[str, str]:
    """The default cluster's master user and password (from its managed secret)."""
    rds = own.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = own.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
    value = json.loads(secret["SecretString"])
    return {"user": value["username"], "password": value["password"], "dbname": cluster.get("DatabaseName", "postgres")}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _connect(rds: Any, cluster_id: str, master: dict[str, str]) -> psycopg.Connection[Any]:
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
    return psycopg.connect(
        host=cluster["Endpoint"],
        port=cluster["Port"],
        user=master["user"],
        password=master["password"],
        dbname=master["dbname"],
        connect_timeout=10,
    )


def _snapshot(rds: Any, cluster_id: str, ident: str) -> dict[str, Any]:
    created = rds.create_db_cluster_snapshot(DBClusterIdentifier=cluster_id, DBClusterSnapshotIdentifier=ident)
    assert created["DBClusterSnapshot"]["Status"] == "creating"
    rds.get_waiter("db_cluster_snapshot_available").wait(DBClusterSnapshotIdentifier=ident, WaiterConfig=FAST)
    [snap] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=ident)["DBClusterSnapshots"]
    return dict(snap)


def _restore(rds: Any, snapshot: str, cluster_id: str) -> None:
    restored = rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier=cluster_id, SnapshotIdentifier=snapshot, Engine="aurora-postgresql"
    )["DBCluster"]
    assert restored["Status"] == "creating" and restored["DBClusterMembers"] == []
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cluster_id, WaiterConfig=FAST)
    rds.create_db_instance(
        DBInstanceIdentifier=f"{cluster_id}-1",
        DBClusterIdentifier=cluster_id,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{cluster_id}-1", WaiterConfig=FAST)


def test_snapshot_and_restore_keep_every_committed_row(own: BorealisProcess, master: dict[str, str]) -> None:
    rds = own.client("rds")
    with _connect(rds, "default", master) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, %s) g", [ROWS])
        conn.commit()
        # Writes go on while the snapshot is taken (a base backup does not block them).
        started = time.monotonic()
        rds.create_db_cluster_snapshot(DBClusterIdentifier="default", DBClusterSnapshotIdentifier="snap-one")
        conn.execute("INSERT INTO t VALUES (-1, 'during')")
        conn.commit()
        rds.get_waiter("db_cluster_snapshot_available").wait(DBClusterSnapshotIdentifier="snap-one", WaiterConfig=FAST)
        print(f"snapshot of {ROWS} rows: {time.monotonic() - started:.1f}s")
        conn.execute("INSERT INTO t VALUES (-2, 'after')")
        conn.commit()
    [snap] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="snap-one")["DBClusterSnapshots"]
    assert snap["Status"] == "available" and snap["PercentProgress"] == 100
    assert snap["SnapshotType"] == "manual" and snap["DBClusterIdentifier"] == "default"
    assert snap["MasterUsername"] == master["user"]
    source = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    assert snap["EngineVersion"] == source["EngineVersion"] and snap["Port"] == source["Port"]

    started = time.monotonic()
    _restore(rds, "snap-one", "restored")
    print(f"restore of {ROWS} rows: {time.monotonic() - started:.1f}s")
    restored = rds.describe_db_clusters(DBClusterIdentifier="restored")["DBClusters"][0]
    assert restored["MasterUsername"] == master["user"] and restored["Port"] != source["Port"]
    assert "MasterUserSecret" not in restored  # the source's password at snapshot time, no managed secret
    with _connect(rds, "restored", master) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE id > 0").fetchone() == (ROWS,)
        assert conn.execute("SELECT v FROM t WHERE id = 4242").fetchone() == (hashlib.md5(b"4242").hexdigest(),)
        assert conn.execute("SELECT count(*) FROM t WHERE id = -2").fetchone() == (0,)
        conn.execute("INSERT INTO t VALUES (-3, 'restored only')")  # the restored cluster takes writes
        conn.commit()
    with _connect(rds, "default", master) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE id = -3").fetchone() == (0,)


def test_describe_filters_types_and_paging(own: BorealisProcess) -> None:
    rds = own.client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier="empty",
        Engine="aurora-postgresql",
        MasterUsername="boss",
        MasterUserPassword="password-123",
    )
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier="empty", WaiterConfig=FAST)
    for n in range(21):  # a cluster with no data yet: each snapshot is quick
        _snapshot(rds, "empty", f"page-{n:02d}")
    first = rds.describe_db_cluster_snapshots(DBClusterIdentifier="empty", MaxRecords=20)
    assert len(first["DBClusterSnapshots"]) == 20 and first["Marker"]
    rest = rds.describe_db_cluster_snapshots(DBClusterIdentifier="empty", MaxRecords=20, Marker=first["Marker"])
    assert "Marker" not in rest
    names = [s["DBClusterSnapshotIdentifier"] for s in first["DBClusterSnapshots"] + rest["DBClusterSnapshots"]]
    assert sorted(names) == [f"page-{n:02d}" for n in range(21)]
    by_filter = rds.describe_db_cluster_snapshots(
        Filters=[{"Name": "db-cluster-snapshot-id", "Values": ["page-03", "snap-one"]}]
    )["DBClusterSnapshots"]
    assert sorted(s["DBClusterSnapshotIdentifier"] for s in by_filter) == ["page-03", "snap-one"]
    by_cluster = rds.describe_db_cluster_snapshots(
        Filters=[{"Name": "db-cluster-id", "Values": ["default"]}, {"Name": "snapshot-type", "Values": ["manual"]}]
    )
    assert [s["DBClusterSnapshotIdentifier"] for s in by_cluster["DBClusterSnapshots"]] == ["snap-one"]
    automated = rds.describe_db_cluster_snapshots(SnapshotType="automated")["DBClusterSnapshots"]
    assert all(s["DBClusterSnapshotIdentifier"].startswith("rds:") for s in automated)
    assert "empty" not in {s["DBClusterIdentifier"] for s in automated}  # no instance, no automated backup
    manual = rds.describe_db_cluster_snapshots(Filters=[{"Name": "snapshot-type", "Values": ["manual"]}])
    assert len(manual["DBClusterSnapshots"]) >= 22
    for n in range(21):
        rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=f"page-{n:02d}")
    assert rds.describe_db_cluster_snapshots(DBClusterIdentifier="empty")["DBClusterSnapshots"] == []


def test_snapshot_faults(own: BorealisProcess) -> None:
    rds = own.client("rds")
    with pytest.raises(ClientError) as exc:
        rds.create_db_cluster_snapshot(DBClusterIdentifier="default", DBClusterSnapshotIdentifier="snap-one")
    assert _code(exc) == "DBClusterSnapshotAlreadyExistsFault"
    with pytest.raises(ClientError) as exc:
        rds.create_db_cluster_snapshot(DBClusterIdentifier="nope", DBClusterSnapshotIdentifier="snap-x")
    assert _code(exc) == "DBClusterNotFoundFault"
    for call in (
        lambda: rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="nope"),
        lambda: rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="nope"),
        lambda: rds.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier="nope", TargetDBClusterSnapshotIdentifier="nope-2"
        ),
        lambda: rds.restore_db_cluster_from_snapshot(
            DBClusterIdentifier="r2", SnapshotIdentifier="nope", Engine="aurora-postgresql"
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "DBClusterSnapshotNotFoundFault"
    with pytest.raises(ClientError) as exc:
        rds.restore_db_cluster_from_snapshot(
            DBClusterIdentifier="restored", SnapshotIdentifier="snap-one", Engine="aurora-postgresql"
        )
    assert _code(exc) == "DBClusterAlreadyExistsFault"
    with pytest.raises(ClientError) as exc:
        rds.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier="snap-one", TargetDBClusterSnapshotIdentifier="snap-one"
        )
    assert _code(exc) == "DBClusterSnapshotAlreadyExistsFault"
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier="default", SkipFinalSnapshot=True)
    assert _code(exc) == "InvalidDBClusterStateFault"  # it still has its instance


def test_copy_then_final_snapshot_on_delete(own: BorealisProcess, master: dict[str, str]) -> None:
    rds = own.client("rds")
    copied = rds.copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier="snap-one", TargetDBClusterSnapshotIdentifier="snap-copy"
    )["DBClusterSnapshot"]
    assert copied["SourceDBClusterSnapshotArn"].endswith(":cluster-snapshot:snap-one")
    rds.get_waiter("db_cluster_snapshot_available").wait(DBClusterSnapshotIdentifier="snap-copy", WaiterConfig=FAST)

    # Terraform's destroy: the instances first, then the cluster with its final snapshot.
    rds.delete_db_instance(DBInstanceIdentifier="restored-1")
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier="restored-1", WaiterConfig=FAST)
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier="restored")
    assert _code(exc) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier="restored", FinalDBSnapshotIdentifier="snap-one")
    assert _code(exc) == "DBClusterSnapshotAlreadyExistsFault"
    deleting = rds.delete_db_cluster(DBClusterIdentifier="restored", FinalDBSnapshotIdentifier="restored-final")
    assert deleting["DBCluster"]["Status"] == "deleting"
    rds.get_waiter("db_cluster_deleted").wait(DBClusterIdentifier="restored", WaiterConfig=FAST)
    [final] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="restored-final")["DBClusterSnapshots"]
    assert final["Status"] == "available" and final["DBClusterIdentifier"] == "restored"

    # The final snapshot holds what the deleted cluster had, its own write included.
    _restore(rds, "restored-final", "again")
    with _connect(rds, "again", master) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE id > 0").fetchone() == (ROWS,)
        assert conn.execute("SELECT v FROM t WHERE id = -3").fetchone() == ("restored only",)
    # A snapshot in use by a restore cannot go; once restored it can.
    rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="snap-copy")


def test_restored_cluster_survives_a_restart(own: BorealisProcess, master: dict[str, str]) -> None:
    rds = own.client("rds")
    assert own.stop(signal.SIGTERM) == 0
    own.start()
    rds = own.client("rds")
    # The stored status says available at once; its postgres is started again meanwhile: poll until it serves.
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = _connect(rds, "again", master)
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with conn:
        assert conn.execute("SELECT count(*) FROM t WHERE id > 0").fetchone() == (ROWS,)
    names = {s["DBClusterSnapshotIdentifier"] for s in rds.describe_db_cluster_snapshots()["DBClusterSnapshots"]}
    assert {"snap-one", "restored-final"} <= names


def test_work_cut_short_by_kill_9_is_done_at_the_next_start(own: BorealisProcess, master: dict[str, str]) -> None:
    rds = own.client("rds")
    rds.create_db_cluster_snapshot(DBClusterIdentifier="default", DBClusterSnapshotIdentifier="snap-killed")
    rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier="killed", SnapshotIdentifier="snap-one", Engine="aurora-postgresql"
    )
    # Whether the snapshot and the restore were done or half-way when Borealis died, the next start ends them.
    own.stop(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while postgres_pids(own.data_dir):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    own.start()
    rds = own.client("rds")
    rds.get_waiter("db_cluster_snapshot_available").wait(DBClusterSnapshotIdentifier="snap-killed", WaiterConfig=FAST)
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier="killed", WaiterConfig=FAST)
    rds.create_db_instance(
        DBInstanceIdentifier="killed-1",
        DBClusterIdentifier="killed",
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="killed-1", WaiterConfig=FAST)
    with _connect(rds, "killed", master) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE id > 0").fetchone() == (ROWS,)


def test_snapshot_of_a_stopped_cluster(own: BorealisProcess, master: dict[str, str]) -> None:
    rds = own.client("rds")
    rds.stop_db_cluster(DBClusterIdentifier="again")
    deadline = time.monotonic() + 120
    while rds.describe_db_clusters(DBClusterIdentifier="again")["DBClusters"][0]["Status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    _snapshot(rds, "again", "again-stopped")
    _restore(rds, "again-stopped", "third")
    with _connect(rds, "third", master) as conn:
        assert conn.execute("SELECT v FROM t WHERE id = -3").fetchone() == ("restored only",)
