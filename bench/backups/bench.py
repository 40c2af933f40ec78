"""Snapshot and restore time and disk used against database size, on a `borealis up` of its own.

    python bench/backups/bench.py [--mb 100 1000]

For each size: fills a table on the default cluster to about that many MB (``pg_database_size``), then
times CreateDBClusterSnapshot until the snapshot is available (a base backup of the running writer), and
RestoreDBClusterFromSnapshot until the restored cluster is available plus CreateDBInstance until its writer
is available; prints the sizes on disk. Waits are polls every 0.1 s, each round trip included in the times. Everything
it started is stopped and its data directory removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.conftest import BorealisProcess


def _status(rds: Any, kind: str, ident: str) -> str:
    if kind == "snapshot":
        return str(
            rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=ident)["DBClusterSnapshots"][0]["Status"]
        )
    if kind == "cluster":
        return str(rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]["Status"])
    return str(rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]["DBInstanceStatus"])


def _until(rds: Any, kind: str, ident: str, timeout: float = 3600) -> None:
    """Poll every 0.1 s until available (boto3's waiters poll every second at best, too coarse here)."""
    deadline = time.monotonic() + timeout
    while (status := _status(rds, kind, ident)) != "available":
        if status == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} {ident}: {status}")
        time.sleep(0.1)


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _connect(proc: BorealisProcess, rds: Any, cid: str, user: str, password: str) -> psycopg.Connection[Any]:
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]
    return psycopg.connect(host=cluster["Endpoint"], port=cluster["Port"], user=user, password=password,
                           dbname="postgres", connect_timeout=10)  # fmt: skip


def main() -> None:
    """Run the benchmark and print one line per size."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, nargs="+", default=[100])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-backups-"))
    proc = BorealisProcess(root / "data")
    proc.start()
    try:
        rds = proc.client("rds")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        secret = proc.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
        value = json.loads(secret["SecretString"])
        user, password = value["username"], value["password"]
        with _connect(proc, rds, "default", user, password) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS fill (id bigserial PRIMARY KEY, pad text)")
            conn.commit()
        for n, mb in enumerate(args.mb):
            with _connect(proc, rds, "default", user, password) as conn:
                while True:
                    size = conn.execute("SELECT pg_database_size('postgres')").fetchone()
                    assert size is not None
                    if size[0] >= mb * 2**20:
                        break
                    conn.execute(
                        "INSERT INTO fill (pad) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 100000) g"
                    )
                    conn.commit()
                db_size = int(size[0])
            snap, restored = f"bench-{n}", f"bench-restored-{n}"
            started = time.monotonic()
            rds.create_db_cluster_snapshot(DBClusterIdentifier="default", DBClusterSnapshotIdentifier=snap)
            _until(rds, "snapshot", snap)
            snap_s = time.monotonic() - started
            started = time.monotonic()
            rds.restore_db_cluster_from_snapshot(DBClusterIdentifier=restored, SnapshotIdentifier=snap,
                                                 Engine="aurora-postgresql")  # fmt: skip
            _until(rds, "cluster", restored)
            restore_s = time.monotonic() - started
            rds.create_db_instance(DBInstanceIdentifier=f"{restored}-1", DBClusterIdentifier=restored,
                                   DBInstanceClass="db.serverless", Engine="aurora-postgresql")  # fmt: skip
            _until(rds, "instance", f"{restored}-1")
            instance_s = time.monotonic() - started - restore_s
            snap_disk = _du(proc.data_dir / "snapshots" / snap)
            print(f"database {db_size / 2**20:.0f} MB: snapshot {snap_s:.1f} s ({snap_disk / 2**20:.0f} MB on disk), "
                  f"restore to available {restore_s:.1f} s, then first instance available {instance_s:.1f} s",
                  flush=True)  # fmt: skip
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
