"""pgbench through the writer endpoint, in plaintext and over TLS, next to direct connections to its postgres.

    python bench/endpoints.py [--duration 15] [--clients 32] [--threads 2] [--rounds 2] [--connect-clients 8]

Run by hand, with a pgbench built with TLS (Debian's ``postgresql-client``; the embedded one has none).
Starts its own ``borealis up`` (temporary data directory, free ports, the default cluster), initialises
pgbench (scale 10) straight on the writer's postgres and sets ``synchronous_commit = off``, then runs,
interleaved and with the order reversed every round:

* direct: pgbench to the writer's postgres itself (no TLS: Borealis's postgres listens on loopback only);
* endpoint: pgbench to the writer endpoint, ``sslmode=disable`` (the listener relays bytes);
* endpoint TLS: the same with ``sslmode=require`` (TLS ends at the listener);

for select-only (simple and prepared protocol) and tpcb-like, at ``--clients`` clients, plus a connection
benchmark (``-C``: a new connection per transaction, select-only, ``--connect-clients`` clients), where the
login cost shows. Prints tps and the ratios to direct (medians of rounds). Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from borealis.engine import Binaries

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("proxy_bench", HERE / "proxy" / "bench.py")
assert _spec is not None and _spec.loader is not None
proxy_bench: Any = importlib.util.module_from_spec(_spec)
sys.modules["proxy_bench"] = proxy_bench  # its dataclasses look their module up
_spec.loader.exec_module(proxy_bench)

MODES = {
    "select-only simple": ["-S", "-M", "simple"],
    "select-only prepared": ["-S", "-M", "prepared"],
    "tpcb-like (sync_commit off)": ["-M", "simple"],
    "select-only, new connection per tx (-C)": ["-S", "-M", "simple", "-C"],
}
TARGETS = ("direct", "endpoint", "endpoint TLS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--connect-clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    ns = argparse.Namespace(keep=False)
    bench = proxy_bench.Bench(ns)
    # The embedded pgbench has no TLS: the operating system's (Debian's postgresql-client) for every target.
    system = Path("/usr/lib/postgresql/15/bin/pgbench")
    tool = system if system.exists() else Binaries.find().tool("pgbench")
    try:
        bench.start_borealis()
        rds = bench.client("rds")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        arn = cluster["MasterUserSecret"]["SecretArn"]
        secret = json.loads(bench.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
        user, password = secret["username"], secret["password"]
        ep_host, ep_port = cluster["Endpoint"], cluster["Port"]
        with psycopg.connect(
            host=ep_host, port=ep_port, user=user, password=password, dbname="postgres", autocommit=True
        ) as conn:
            row = conn.execute("SELECT inet_server_addr()::text, inet_server_port()").fetchone()
            assert row is not None
            pg_host, pg_port = row[0].split("/")[0], int(row[1])
            conn.execute("ALTER DATABASE postgres SET synchronous_commit = off")
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        env = dict(os.environ, PGPASSWORD=password)
        subprocess.run(
            [str(tool), "-i", "-q", "-s", "10", "-h", pg_host, "-p", str(pg_port), "-U", user, "postgres"],
            env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        where = {"direct": (pg_host, pg_port, "disable"), "endpoint": (ep_host, ep_port, "disable"),
                 "endpoint TLS": (ep_host, ep_port, "require")}  # fmt: skip
        results: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for mode, margs in MODES.items():
                order = TARGETS if r % 2 == 0 else tuple(reversed(TARGETS))
                for target in order:
                    host, port, sslmode = where[target]
                    os.environ["PGSSLMODE"] = sslmode
                    clients = args.connect_clients if "-C" in margs else args.clients
                    res = proxy_bench.pgbench(
                        tool, host, port, user, password, margs, args.duration, clients, args.threads, "postgres",
                        pooler_pid=bench.borealis.pid if target != "direct" else None,
                    )  # fmt: skip
                    if res.tps is None:  # -C: pgbench reports tps including reconnection times
                        found = re.search(r"tps = ([\d.]+) \(including reconnection times\)", res.raw)
                        res.tps = float(found.group(1)) if found else None
                    tps = res.tps or 0.0
                    results.setdefault((mode, target), []).append(tps)
                    print(f"round {r + 1} {mode:42} {target:13} {tps:10.0f} tps {res.aborted or ''}", flush=True)
        print()
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.node()}; {os.cpu_count()} CPUs; "
              f"PostgreSQL {version}; {args.clients} clients (-C: {args.connect_clients}), -j {args.threads}, "
              f"{args.duration} s, {args.rounds} rounds; medians")  # fmt: skip
        print("| mode | direct tps | endpoint tps | endpoint TLS tps | endpoint / direct | TLS / direct |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode in MODES:
            d, e, t = (statistics.median(results[(mode, x)]) for x in TARGETS)
            print(f"| {mode} | {d:.0f} | {e:.0f} | {t:.0f} | {e / d:.2f} | {t / d:.2f} |")
    finally:
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
