"""Continuous backup and point-in-time restore through boto3, checked with psycopg, on a Borealis of their own.

The tests run in file order on one `borealis up` whose default cluster is the source: its WAL archive, its
automated base backup, then restores to a time between two commits, after a failover, and across a restart.
Every wait is a waiter or a poll with a generous deadline, never a sleep.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from .conftest import BorealisProcess, postgres_pids

FAST = {"Delay": 1, "MaxAttempts": 300}


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    # A data directory whose path holds a space and the archive commands' own placeholder character ("%f"):
    # PostgreSQL reads %p, %f and %% in archive_command and restore_command, and refuses any other "%".
    data_dir = tmp_path_factory.mktemp("pitr 100% %f") / "data"
    proc = BorealisProcess(data_dir, extra_env={"BOREALIS_SNAPSHOT_QUOTA": "2"})
    proc.start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()
    for pid in postgres_pids(proc.data_dir):
        os.kill(pid, signal.SIGKILL)


def _poll(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while True:
        try:
            value = check()
        except (psycopg.OperationalError, ClientError) as exc:
            value, error = None, exc
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last error: {error})"
        time.sleep(0.5)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _cluster(own: BorealisProcess, ident: str = "default") -> dict[str, Any]:
    return dict(own.client("rds").describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0])


def _start_instance(own: BorealisProcess, cluster_id: str) -> None:
    rds = own.client("rds")
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cluster_id, WaiterConfig=FAST)
    rds.create_db_instance(
        DBInstanceIdentifier=f"{cluster_id}-1",
        DBClusterIdentifier=cluster_id,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{cluster_id}-1", WaiterConfig=FAST)


def _connect(own: BorealisProcess, cluster_id: str) -> psycopg.Connection[Any]:
    """The master user of ``cluster_id`` (a restored cluster keeps the source's user and password)."""
    source = own.master_connect()  # reads the source's managed secret
    user, password, dbname = source.info.user, source.info.password, source.info.dbname
    source.close()
    cluster = _cluster(own, cluster_id)
    return _poll(
        f"{cluster_id} to serve",
        lambda: psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user=user, password=password, dbname=dbname,
            connect_timeout=10, autocommit=True,
        ),
    )  # fmt: skip


def _ids(conn: psycopg.Connection[Any]) -> list[int]:
    return [int(r[0]) for r in conn.execute("SELECT id FROM marks ORDER BY id").fetchall()]


def test_the_writer_archives_and_an_automated_backup_opens_the_window(own: BorealisProcess) -> None:
    rds = own.client("rds")
    with own.master_connect() as conn:
        conn.execute("CREATE TABLE marks (id int PRIMARY KEY)")
        conn.commit()
    cluster = _poll("an automated backup", lambda: (c := _cluster(own)).get("EarliestRestorableTime") and c)
    earliest, latest = cluster["EarliestRestorableTime"], cluster["LatestRestorableTime"]
    assert earliest <= latest and abs((dt.datetime.now(dt.UTC) - latest).total_seconds()) < 30
    [backup] = rds.describe_db_cluster_snapshots(DBClusterIdentifier="default", SnapshotType="automated")[
        "DBClusterSnapshots"
    ]
    assert backup["DBClusterSnapshotIdentifier"].startswith("rds:default-") and backup["Status"] == "available"
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=backup["DBClusterSnapshotIdentifier"])
    assert _code(exc) == "InvalidDBClusterSnapshotStateFault"
    # A base backup ends with a segment switch: that segment is archived, compressed.
    archive = own.data_dir / "clusters" / "default" / "archive"
    _poll("a segment in the archive", lambda: list(archive.glob("0000000100000000000000??.gz")))
    assert (archive.stat().st_mode & 0o777) == 0o700


def test_restore_to_a_time_between_two_commits(own: BorealisProcess) -> None:
    rds = own.client("rds")
    with own.master_connect() as conn:
        conn.autocommit = True
        conn.execute("INSERT INTO marks VALUES (1)")
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        between: dt.datetime = row[0]
        conn.execute("INSERT INTO marks VALUES (2)")
    restored = rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="pitr-between", SourceDBClusterIdentifier="default", RestoreToTime=between
    )["DBCluster"]
    assert restored["Status"] == "creating" and restored["DBClusterMembers"] == []
    _start_instance(own, "pitr-between")
    assert _cluster(own, "pitr-between")["MasterUsername"] == _cluster(own)["MasterUsername"]
    with _connect(own, "pitr-between") as conn:
        assert _ids(conn) == [1]
        conn.execute("INSERT INTO marks VALUES (3)")  # the restored cluster takes writes
    assert "pitr-between: restoring the base backup as a full copy" in own.output.read_text()


def test_restore_faults(own: BorealisProcess) -> None:
    rds = own.client("rds")
    window = _cluster(own)
    now = dt.datetime.now(dt.UTC)
    cases = [
        ({"RestoreToTime": window["EarliestRestorableTime"] - dt.timedelta(hours=1)}, "InvalidRestoreFault"),
        ({"RestoreToTime": now + dt.timedelta(hours=1)}, "InvalidRestoreFault"),
        ({"RestoreToTime": now, "UseLatestRestorableTime": True}, "InvalidParameterCombination"),
        ({}, "InvalidParameterCombination"),
        ({"RestoreToTime": now, "RestoreType": "copy-on-write"}, "InvalidParameterCombination"),
        ({"UseLatestRestorableTime": True, "RestoreType": "shallow"}, "InvalidParameterValue"),
    ]
    for extra, code in cases:
        with pytest.raises(ClientError) as exc:
            rds.restore_db_cluster_to_point_in_time(
                DBClusterIdentifier="pitr-never", SourceDBClusterIdentifier="default", **extra
            )
        assert _code(exc) == code, extra
    with pytest.raises(ClientError) as exc:
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier="pitr-never", SourceDBClusterIdentifier="nope", UseLatestRestorableTime=True
        )
    assert _code(exc) == "DBClusterNotFoundFault"
    with pytest.raises(ClientError) as exc:
        rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier="pitr-between", SourceDBClusterIdentifier="default", UseLatestRestorableTime=True
        )
    assert _code(exc) == "DBClusterAlreadyExistsFault"


def test_a_clone_after_a_failover_across_a_restart(own: BorealisProcess) -> None:
    rds = own.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="default-reader",
        DBClusterIdentifier="default",
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="default-reader", WaiterConfig=FAST)
    rds.failover_db_cluster(DBClusterIdentifier="default", TargetDBInstanceIdentifier="default-reader")

    def promoted() -> bool:
        cluster = _cluster(own)
        writer = [m for m in cluster["DBClusterMembers"] if m["IsClusterWriter"]]
        return cluster["Status"] == "available" and [m["DBInstanceIdentifier"] for m in writer] == ["default-reader"]

    _poll("the reader to become the writer", promoted)
    with own.master_connect() as conn:  # the new writer continues the same archive
        conn.autocommit = True
        conn.execute("INSERT INTO marks VALUES (4)")
    archive = own.data_dir / "clusters" / "default" / "archive"
    _poll("the new timeline's history in the archive", lambda: list(archive.glob("*.history.gz")))

    rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="pitr-clone",
        SourceDBClusterIdentifier="default",
        RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
    )
    # Borealis stops with the restore under way (or just done): the next start finishes it from the store.
    assert own.stop(signal.SIGTERM) == 0
    own.start()
    _start_instance(own, "pitr-clone")
    with _connect(own, "pitr-clone") as conn:
        assert _ids(conn) == [1, 2, 4]
    # Which copy it made depends on the file system; the progress event says which.
    log = own.output.read_text()
    assert ("pitr-clone: restoring the base backup as a reflink (copy-on-write) copy" in log) or (
        "pitr-clone: restoring the base backup as a full copy (the file system has no reflinks)" in log
    )


def test_snapshot_attributes_progress_and_quota(own: BorealisProcess) -> None:
    rds = own.client("rds")
    seen: list[int] = []
    rds.create_db_cluster_snapshot(DBClusterIdentifier="default", DBClusterSnapshotIdentifier="manual-1")

    def available() -> bool:
        [snap] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier="manual-1")["DBClusterSnapshots"]
        seen.append(snap["PercentProgress"])
        return bool(snap["Status"] == "available")

    _poll("the snapshot", available)
    assert seen == sorted(seen) and seen[-1] == 100 and all(0 <= p <= 100 for p in seen)
    out = rds.modify_db_cluster_snapshot_attribute(
        DBClusterSnapshotIdentifier="manual-1", AttributeName="restore", ValuesToAdd=["123456789012", "all"]
    )["DBClusterSnapshotAttributesResult"]
    assert out["DBClusterSnapshotAttributes"] == [
        {"AttributeName": "restore", "AttributeValues": ["123456789012", "all"]}
    ]
    rds.modify_db_cluster_snapshot_attribute(
        DBClusterSnapshotIdentifier="manual-1", AttributeName="restore", ValuesToRemove=["all"]
    )
    described = rds.describe_db_cluster_snapshot_attributes(DBClusterSnapshotIdentifier="manual-1")
    assert described["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"][0]["AttributeValues"] == [
        "123456789012"
    ]
    [automated] = rds.describe_db_cluster_snapshots(DBClusterIdentifier="default", SnapshotType="automated")[
        "DBClusterSnapshots"
    ]
    refusals = [
        ({"DBClusterSnapshotIdentifier": "manual-1", "AttributeName": "copy"}, "InvalidParameterValue"),
        ({"DBClusterSnapshotIdentifier": "manual-1", "ValuesToAdd": ["12"]}, "InvalidParameterValue"),
        ({"DBClusterSnapshotIdentifier": "nope"}, "DBClusterSnapshotNotFoundFault"),
        (
            {"DBClusterSnapshotIdentifier": automated["DBClusterSnapshotIdentifier"], "ValuesToAdd": ["all"]},
            "InvalidDBClusterSnapshotStateFault",
        ),
    ]
    for params, code in refusals:
        with pytest.raises(ClientError) as exc:
            rds.modify_db_cluster_snapshot_attribute(**{"AttributeName": "restore", **params})
        assert _code(exc) == code, params
    # The quota (2 here) counts manual snapshots only: the automated backups are not in it.
    rds.copy_db_cluster_snapshot(
        SourceDBClusterSnapshotIdentifier="manual-1", TargetDBClusterSnapshotIdentifier="manual-2"
    )
    for call in (
        lambda: rds.create_db_cluster_snapshot(DBClusterIdentifier="default", DBClusterSnapshotIdentifier="manual-3"),
        lambda: rds.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier="manual-1", TargetDBClusterSnapshotIdentifier="manual-3"
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "SnapshotQuotaExceeded"  # the code of botocore's SnapshotQuotaExceededFault


def test_restore_from_a_deleted_clusters_retained_automated_backups(own: BorealisProcess) -> None:
    rds = own.client("rds")
    # pitr-between (restored above, ids [1, 3]) got an automated backup of its own once its writer was up.
    _poll("pitr-between's automated backup", lambda: _cluster(own, "pitr-between").get("EarliestRestorableTime"))
    with _connect(own, "pitr-between") as conn:
        conn.execute("INSERT INTO marks VALUES (5)")  # after the backup: only the archive has it
    resource_id = _cluster(own, "pitr-between")["DbClusterResourceId"]
    rds.delete_db_instance(DBInstanceIdentifier="pitr-between-1")
    rds.delete_db_cluster(DBClusterIdentifier="pitr-between", SkipFinalSnapshot=True, DeleteAutomatedBackups=False)

    def gone() -> bool:
        try:
            _cluster(own, "pitr-between")
        except ClientError as exc:
            return bool(exc.response["Error"]["Code"] == "DBClusterNotFoundFault")
        return False

    _poll("pitr-between deleted", gone)
    [kept] = rds.describe_db_cluster_automated_backups(DbClusterResourceId=resource_id)["DBClusterAutomatedBackups"]
    assert (kept["Status"], kept["DBClusterIdentifier"], kept["BackupRetentionPeriod"]) == (
        "retained",
        "pitr-between",
        1,
    )
    assert kept["RestoreWindow"]["EarliestTime"] <= kept["RestoreWindow"]["LatestTime"]
    listed = rds.describe_db_cluster_automated_backups(Filters=[{"Name": "status", "Values": ["retained"]}])
    assert [b["DbClusterResourceId"] for b in listed["DBClusterAutomatedBackups"]] == [resource_id]

    rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="pitr-revived", SourceDbClusterResourceId=resource_id, UseLatestRestorableTime=True
    )
    _start_instance(own, "pitr-revived")
    with _connect(own, "pitr-revived") as conn:
        assert _ids(conn) == [1, 3, 5]

    out = rds.delete_db_cluster_automated_backup(DbClusterResourceId=resource_id)["DBClusterAutomatedBackup"]
    assert out["DbClusterResourceId"] == resource_id
    for call in (
        lambda: rds.describe_db_cluster_automated_backups(DbClusterResourceId=resource_id),
        lambda: rds.delete_db_cluster_automated_backup(DbClusterResourceId=resource_id),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "DBClusterAutomatedBackupNotFoundFault"
    revived = _cluster(own, "pitr-revived")["DbClusterResourceId"]
    with pytest.raises(ClientError) as exc:  # a cluster that exists has no retained backups to delete
        rds.delete_db_cluster_automated_backup(DbClusterResourceId=revived)
    assert _code(exc) == "InvalidDBClusterAutomatedBackupStateFault"
    assert not (own.data_dir / "retained" / resource_id).exists()
