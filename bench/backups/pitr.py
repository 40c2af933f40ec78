"""Point-in-time restore time after some minutes of WAL at a steady write load, on a `borealis up` of its own.

    python bench/backups/pitr.py [--minutes 5] [--rate 200]

Waits for the default cluster's first automated backup, then writes ``--rate`` single-row transactions a
second (each about 1 kB) for ``--minutes``, and times RestoreDBClusterToPointInTime to a moment 10 s before
the load ended (so nearly all the WAL is replayed) until the restored cluster is available, then the first
instance; then a copy-on-write clone at the latest time. Prints the WAL archived (files and bytes on disk,
gzip-compressed) and checks the restored row count. Everything it started is stopped and removed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# bench.py beside this file: the script's directory comes first on sys.path.
from bench import _connect, _until
from tests.integration.conftest import BorealisProcess


def _restore(rds: Any, ident: str, **kwargs: Any) -> tuple[float, float]:
    started = time.monotonic()
    rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=ident, SourceDBClusterIdentifier="default", **kwargs)
    _until(rds, "cluster", ident)
    restore_s = time.monotonic() - started
    rds.create_db_instance(DBInstanceIdentifier=f"{ident}-1", DBClusterIdentifier=ident,
                           DBInstanceClass="db.serverless", Engine="aurora-postgresql")  # fmt: skip
    _until(rds, "instance", f"{ident}-1")
    return restore_s, time.monotonic() - started - restore_s


def main() -> None:
    """Run the benchmark and print what it measured."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=200, help="transactions a second")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pitr-"))
    proc = BorealisProcess(root / "data")
    proc.start()
    try:
        rds = proc.client("rds")
        with proc.master_connect() as conn:
            conn.execute("CREATE TABLE load (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), pad text)")
            conn.commit()
            info = conn.info
            user, password = info.user, info.password
        deadline = time.monotonic() + 300
        while not rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0].get(
            "EarliestRestorableTime"
        ):
            assert time.monotonic() < deadline, "no automated backup"
            time.sleep(0.5)
        total = int(args.minutes * 60 * args.rate)
        with _connect(proc, rds, "default", user, password) as conn:
            conn.autocommit = True
            started = time.monotonic()
            for n in range(total):
                conn.execute("INSERT INTO load (pad) VALUES (repeat(md5(%s::text), 32))", [n])
                pause = started + (n + 1) / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            load_s = time.monotonic() - started
            row = conn.execute("SELECT count(*), clock_timestamp() - interval '10 seconds' FROM load").fetchone()
            assert row is not None
            target: dt.datetime = row[1]
            expected = conn.execute("SELECT count(*) FROM load WHERE at <= %s", [target]).fetchone()
        archive = proc.data_dir / "clusters" / "default" / "archive"
        files = list(archive.iterdir())
        wal_bytes = sum(f.stat().st_size for f in files)
        print(f"load: {total} transactions in {load_s:.0f} s ({total / load_s:.0f}/s); archive {len(files)} files, "
              f"{wal_bytes / 2**20:.1f} MB on disk (gzip)", flush=True)  # fmt: skip
        restore_s, instance_s = _restore(rds, "bench-pitr", RestoreToTime=target)
        with _connect(proc, rds, "bench-pitr", user, password) as conn:
            got = conn.execute("SELECT count(*) FROM load").fetchone()
        print(f"PITR to 10 s before the end: restore to available {restore_s:.1f} s, then first instance "
              f"{instance_s:.1f} s; rows {got[0] if got else None} (expected {expected[0] if expected else None})",
              flush=True)  # fmt: skip
        clone_s, clone_instance_s = _restore(
            rds, "bench-clone", RestoreType="copy-on-write", UseLatestRestorableTime=True
        )
        print(f"clone at the latest time: restore to available {clone_s:.1f} s, then first instance "
              f"{clone_instance_s:.1f} s", flush=True)  # fmt: skip
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
