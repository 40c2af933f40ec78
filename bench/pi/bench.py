"""What Performance Insights costs: the proxy and the Data API with PI off and on, side by side in one run.

    python bench/pi/bench.py [--duration 15] [--rounds 3] [--clients 16] [--rows 10000]

Starts its own ``borealis up`` (a temporary data directory, free ports, the default cluster), loads a table of
``--rows`` rows, creates an RDS proxy on the default cluster (as bench/proxy does), then for each round runs,
with Performance Insights off and on (ModifyDBCluster EnablePerformanceInsights; the order alternates every
round; "on" waits until the sampler has written samples):

1. pgbench ``-S``-like primary-key SELECTs (``-M simple``) through the proxy, ``--clients`` clients;
2. wrk on the Data API's ``POST /Execute`` with the same SELECT, SigV4-signed up front (as bench/dataapi).

Prints throughput per round, the medians, the ratio on/off for each, and the CPU of the ``borealis up``
main process per request; then what the sampler itself costs: its query's mean time in postgres (from
pg_stat_statements) and the main process's CPU while idle, ``--idle`` seconds with PI off, then on.
Needs wrk on PATH (Debian: ``apt-get install wrk``); pgbench from the embedded engine.
Everything it starts is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


proxy_bench = _load("proxy_bench", ROOT / "bench" / "proxy" / "bench.py")
dataapi_bench = _load("dataapi_bench", ROOT / "bench" / "dataapi" / "bench.py")


def set_pi(bench: Any, on: bool, resource_id: str) -> None:
    """Turn Performance Insights on or off for the default cluster; when on, wait for its first samples."""
    bench.client("rds").modify_db_cluster(
        DBClusterIdentifier="default", EnablePerformanceInsights=on, ApplyImmediately=True
    )
    if not on:
        return
    pi = bench.client("pi")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = dt.datetime.now(dt.UTC)
        points = pi.get_resource_metrics(
            ServiceType="RDS", Identifier=resource_id, StartTime=now - dt.timedelta(seconds=10), EndTime=now,
            PeriodInSeconds=1, MetricQueries=[{"Metric": "db.load.avg"}],
        )["MetricList"][0]["DataPoints"]  # fmt: skip
        if points:
            return
        time.sleep(0.5)
    raise SystemExit("Performance Insights took no samples within 60 s")


def wrk(url: str, lua: Path, clients: int, duration: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{duration}s", "-s", str(lua), url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise SystemExit(f"Data API errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--idle", type=int, default=30, help="seconds of idle CPU measured with PI off, then on")
    args = ap.parse_args()
    bench = proxy_bench.Bench(argparse.Namespace(keep=False, idle=0))
    try:
        bench.start_borealis()
        rds = bench.client("rds")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        bench.secret_arn = cluster["MasterUserSecret"]["SecretArn"]
        secret = json.loads(bench.client("secretsmanager").get_secret_value(SecretId=bench.secret_arn)["SecretString"])
        user, password = secret["username"], secret["password"]
        with psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user=user, password=password, dbname="postgres",
            autocommit=True, connect_timeout=10,
        ) as conn:  # fmt: skip
            conn.execute("CREATE TABLE bench_kv (id int PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO bench_kv SELECT i, md5(i::text) FROM generate_series(1, %s) i", (args.rows,))
            conn.execute("VACUUM ANALYZE bench_kv")
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        instance = rds.describe_db_instances(DBInstanceIdentifier="default-instance-1")["DBInstances"][0]
        resource_id = instance["DbiResourceId"]
        proxy_host, proxy_port = bench.create_proxy("pi-bench", 10)
        script = bench.work / "select.sql"
        script.write_text(dataapi_bench.PGBENCH_SQL.format(rows=args.rows))
        from borealis.engine import Binaries

        tool = Binaries.find().tool("pgbench")
        creds = dict(
            line.split(" = ", 1) for line in (bench.work / "data" / "credentials").read_text().splitlines()
            if " = " in line
        )  # fmt: skip
        results: dict[tuple[str, bool], list[float]] = {}
        cpu: dict[bool, list[float]] = {}
        for r in range(args.rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                set_pi(bench, on, resource_id)
                cpu0 = proxy_bench.cpu_seconds(bench.borealis.pid)
                res = proxy_bench.pgbench(
                    tool, proxy_host, proxy_port, user, password, ["-M", "simple", "-f", str(script)],
                    args.duration, args.clients, 2, "postgres", None,
                )  # fmt: skip
                if res.tps is None:
                    raise SystemExit(f"pgbench failed: {res.aborted}\n{res.raw[-1500:]}")
                requests = dataapi_bench.signed_requests(
                    bench.url, creds["aws_access_key_id"], creds["aws_secret_access_key"], cluster["DBClusterArn"],
                    bench.secret_arn, args.rows,
                )  # fmt: skip
                lua = bench.work / "execute.lua"
                lua.write_text(dataapi_bench._lua(requests))
                rps = wrk(bench.url, lua, args.clients, args.duration)
                cpu1 = proxy_bench.cpu_seconds(bench.borealis.pid)
                results.setdefault(("proxy", on), []).append(res.tps)
                results.setdefault(("dataapi", on), []).append(rps)
                done = res.tps * args.duration + rps * args.duration
                cpu.setdefault(on, []).append(1e6 * (sum(cpu1) - sum(cpu0)) / done)
                state = "on " if on else "off"
                print(f"round {r + 1} PI {state}: proxy {res.tps:8.0f} tps, Data API {rps:8.0f} req/s, "
                      f"borealis up (main) {cpu[on][-1]:6.1f} us CPU per request", flush=True)  # fmt: skip
        print(f"\nPostgreSQL {version}, {args.clients} clients, {args.duration} s per measurement, "
              f"{args.rounds} rounds (medians)")  # fmt: skip
        print(f"{'':22}{'PI off':>10}{'PI on':>10}{'on/off':>9}")
        for what, label in (("proxy", "proxy (tps)"), ("dataapi", "Data API (req/s)")):
            off, on_ = statistics.median(results[(what, False)]), statistics.median(results[(what, True)])
            print(f"{label:22}{off:10.0f}{on_:10.0f}{on_ / off:9.3f}")
        off, on_ = statistics.median(cpu[False]), statistics.median(cpu[True])
        print(f"{'main process us/req':22}{off:10.1f}{on_:10.1f}{on_ / off:9.3f}")
        # The two measurements of a round are next to each other in time, so their ratio is the least
        # disturbed by other load on the machine: the median of the per-round ratios.
        for what, label in (("proxy", "proxy"), ("dataapi", "Data API")):
            pairs = [a / b for a, b in zip(results[(what, True)], results[(what, False)], strict=True)]
            print(f"{label}: per-round on/off {' '.join(f'{x:.3f}' for x in pairs)}, "
                  f"median {statistics.median(pairs):.3f}")  # fmt: skip
        # What the sampler itself costs, less noisy than throughput on a shared machine: its query's time in
        # postgres (pg_stat_statements, readable by the master through pg_read_all_stats) and the main
        # process's CPU while idle, PI off then on.
        with psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user=user, password=password, dbname="postgres",
            autocommit=True, connect_timeout=10,
        ) as conn:  # fmt: skip
            row = conn.execute(
                "SELECT sum(calls), sum(total_exec_time) / sum(calls) FROM pg_stat_statements "
                "WHERE query LIKE '%FROM pg_stat_activity WHERE backend_type%'"
            ).fetchone()
        if row and row[0]:
            print(f"sample query: {row[0]} calls, {row[1]:.3f} ms each in postgres "
                  f"({row[1] / 10:.3f} % of one CPU at one a second)")  # fmt: skip
        for on in (False, True):
            set_pi(bench, on, resource_id)
            cpu0, t0 = proxy_bench.cpu_seconds(bench.borealis.pid), time.monotonic()
            time.sleep(args.idle)
            cpu1, t1 = proxy_bench.cpu_seconds(bench.borealis.pid), time.monotonic()
            share = 100 * (sum(cpu1) - sum(cpu0)) / (t1 - t0)
            print(f"main process idle, PI {'on ' if on else 'off'}: {share:.2f} % of one CPU over {args.idle} s")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
