"""Failover: the write outage per path and the acknowledged commits lost, planned and after kill -9.

    python bench/failover/bench.py [--settle 5] [--json out.json]

Run by hand. It stops by itself: every wait has a deadline and everything it started is stopped at the end.

1. Starts its own ``borealis up`` (a temporary data directory, free ports, the default cluster, one API
   process), adds a reader (CreateDBInstance) and an RDS proxy on the cluster, and makes a table.
2. Runs four loops side by side, each in its own thread: writes through the writer endpoint (psycopg,
   autocommit INSERTs), through the proxy (psycopg) and through the Data API (boto3 ExecuteStatement), each
   with ids of its own, recording every acknowledged id and the time of every success and failure; and a
   read loop (SELECT 1) through the writer endpoint. A failed call is retried after 10 ms on a new
   connection, as an application would.
3. A planned failover (FailoverDBCluster), waits until the cluster is available with the other writer and
   every loop has succeeded again, then ``--settle`` seconds; then kill -9 of the writer's postmaster and the
   same wait.
4. Reports, per event and path, the write outage: the longest time between two successes that spans the
   event (from the last success before it to the first after), and the count of acknowledged ids missing
   from the final writer (must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.conftest import BorealisProcess


class Loop:
    """One path's loop: calls ``step(n)`` until stopped; ``step`` raising means that call failed."""

    def __init__(self, name: str, step: Callable[[int], None], first_id: int, writes: bool) -> None:
        self.name = name
        self.step = step
        self.next_id = first_id
        self.writes = writes
        self.acked: list[int] = []
        self.ok: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            n = self.next_id
            self.next_id += 1
            try:
                self.step(n)
            except Exception as exc:
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {str(exc).strip()[:120]}"))
                time.sleep(0.01)
                continue
            self.ok.append(time.monotonic())
            if self.writes:
                self.acked.append(n)

    def outage(self, at: float, until: float) -> float:
        """The longest time without a success from the last success before ``at`` to ``until``."""
        times = [t for t in self.ok if t <= until]
        start = max((i for i, t in enumerate(times) if t <= at), default=None)
        if start is None or start + 1 >= len(times):
            return float("nan")
        return max(b - a for a, b in zip(times[start:], times[start + 1 :], strict=False))

    def succeeded_after(self, at: float) -> bool:
        return any(t > at for t in self.ok)


def _connector(dsn: dict[str, Any]) -> Callable[[str, list[Any]], None]:
    state: dict[str, psycopg.Connection[Any] | None] = {"conn": None}

    def run(sql: str, params: list[Any]) -> None:
        conn = state["conn"]
        if conn is None or conn.closed:
            conn = state["conn"] = psycopg.connect(**dsn, autocommit=True, connect_timeout=5)
        try:
            conn.execute(sql, params)
        except Exception:
            state["conn"] = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    return run


def _wait(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds of steady load after each recovery")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="borealis-failover-"))
    b = BorealisProcess(work / "data", workers=1)
    b.start()
    loops: list[Loop] = []
    try:
        rds = b.client("rds")
        data = b.client("rds-data")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        secret_arn = cluster["MasterUserSecret"]["SecretArn"]
        secret = json.loads(b.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
        with b.master_connect() as conn:
            conn.execute("CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
            conn.commit()
        rds.create_db_instance(
            DBInstanceIdentifier="reader-1",
            DBClusterIdentifier="default",
            DBInstanceClass="db.serverless",
            Engine="aurora-postgresql",
        )

        def writer() -> str:
            members = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]["DBClusterMembers"]
            return str(next(m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]))

        def all_available() -> bool:
            insts = rds.describe_db_instances()["DBInstances"]
            c = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
            return (
                c["Status"] == "available"
                and len(insts) == 2
                and all(i["DBInstanceStatus"] == "available" for i in insts)
            )

        _wait("the reader", all_available)
        rds.create_db_proxy(
            DBProxyName="bench",
            EngineFamily="POSTGRESQL",
            Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret_arn}],
            RoleArn="arn:aws:iam::000000000000:role/proxy",
            VpcSubnetIds=["subnet-1", "subnet-2"],
        )
        _wait(
            "the proxy", lambda: rds.describe_db_proxies(DBProxyName="bench")["DBProxies"][0]["Status"] == "available"
        )
        rds.register_db_proxy_targets(DBProxyName="bench", DBClusterIdentifiers=["default"])
        proxy_host = rds.describe_db_proxies(DBProxyName="bench")["DBProxies"][0]["Endpoint"]
        proxy_port = next(
            t["Port"] for t in rds.describe_db_proxy_targets(DBProxyName="bench")["Targets"]
            if t["Type"] == "TRACKED_CLUSTER"
        )  # fmt: skip

        base = {"user": secret["username"], "password": secret["password"], "dbname": "postgres"}
        endpoint = _connector({**base, "host": cluster["Endpoint"], "port": cluster["Port"]})
        proxy = _connector({**base, "host": proxy_host, "port": proxy_port})
        reads = _connector({**base, "host": cluster["Endpoint"], "port": cluster["Port"]})
        arn = cluster["DBClusterArn"]
        insert = "INSERT INTO acked (id) VALUES (%s)"

        def data_api(n: int) -> None:
            data.execute_statement(
                resourceArn=arn, secretArn=secret_arn, sql="INSERT INTO acked (id) VALUES (:id)",
                parameters=[{"name": "id", "value": {"longValue": n}}],
            )  # fmt: skip

        loops = [
            Loop("writer endpoint", lambda n: endpoint(insert, [n]), 1_000_000, True),
            Loop("RDS proxy", lambda n: proxy(insert, [n]), 2_000_000, True),
            Loop("Data API", data_api, 3_000_000, True),
            Loop("reads (writer endpoint)", lambda n: reads("SELECT 1", []), 0, False),
        ]
        for loop in loops:
            loop.thread.start()
        _wait("every loop succeeds", lambda: all(len(loop.ok) > 20 for loop in loops), 60)
        time.sleep(args.settle)

        events: list[tuple[str, float, float, float]] = []
        for name in ("planned failover", "kill -9 of the writer"):
            old = writer()
            at = time.monotonic()
            if name.startswith("planned"):
                rds.failover_db_cluster(DBClusterIdentifier="default")
            else:
                pidfile = b.data_dir / "clusters" / "default" / "instances" / old / "data" / "postmaster.pid"
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            _wait("the new writer", lambda old=old: writer() != old and all_available(), 120)
            done = time.monotonic()
            _wait("every loop recovers", lambda at=at: all(loop.succeeded_after(at) for loop in loops), 60)
            time.sleep(args.settle)
            events.append((name, at, done - at, time.monotonic()))
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.thread.join(30)

        with b.master_connect() as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM acked").fetchall()}
        results: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}",
            "events": [],
        }
        print(f"\n{results['machine']}  {results['date']}\n")
        print(f"{'event':<24} {'path':<26} {'outage s':>9} {'acked (run)':>11} {'lost':>5} {'errors':>7}")
        for name, at, took, until in events:
            rows = []
            for loop in loops:
                lost = len([n for n in loop.acked if n not in stored]) if loop.writes else 0
                errs = [e for t, e in loop.errors if at <= t <= until]
                row = {
                    "path": loop.name,
                    "outage_s": round(loop.outage(at, until), 3),
                    "acknowledged": len(loop.acked) if loop.writes else len(loop.ok),
                    "lost": lost,
                    "errors": len(errs),
                    "first_error": errs[0] if errs else None,
                }
                rows.append(row)
                print(
                    f"{name:<24} {loop.name:<26} {row['outage_s']:>9.3f} {row['acknowledged']:>11} {lost:>5} "
                    f"{len(errs):>7}"
                )
            results["events"].append({"event": name, "control_plane_s": round(took, 3), "paths": rows})
            print(f"{'':<24} (the control plane reported the new writer after {took:.2f} s)")
        for event in results["events"]:
            for row in event["paths"]:
                if row["first_error"]:
                    print(f"  {event['event']} / {row['path']}: first error: {row['first_error']}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for loop in loops:
            loop.stop.set()
        b.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
