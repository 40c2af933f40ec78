"""What monitoring costs: the proxy and the Data API with Borealis's monitoring on and off, side by side.

    python bench/monitoring/bench.py [--duration 10] [--rounds 3] [--connections 16] [--capacity 8]

Run by hand (needs wrk on PATH; pgbench from PATH or the embedded PostgreSQL). It measures, per mode:

1. the proxy: an RDS proxy on the default cluster (CreateDBProxy, RegisterDBProxyTargets), then pgbench's
   primary-key SELECT on a table of ``--rows`` rows through it, ``-M extended``, ``--connections`` clients;
2. the Data API: wrk replaying signed ``POST /Execute`` calls of the same SELECT (bench/dataapi's requests).

Two Borealis run at once, one per mode, each with its default cluster, table, proxy and signed requests, set
up first; then each round measures both, one after the other, in alternating order (on then off, then off
then on, ...), ``--duration`` seconds per measurement. Interleaving short measurements of two long-lived
servers keeps a drift in the machine's load (shared machines) from landing on one mode; the server not being
measured is idle meanwhile. Signed requests stay valid 15 minutes: rounds x 4 x duration must fit.

Modes: **on** is Borealis as it ships (``BOREALIS_MONITORING`` unset: the scaler's samples recorded in the
metric store every second, alarms evaluated every 10 s, every API call counted for GET /metrics), plus
Performance Insights enabled on the writer where this build has it (ModifyDBInstance
EnablePerformanceInsights; the output says whether it took). **off** is ``BOREALIS_MONITORING=off``: nothing
recorded, no alarm evaluation, no counters, no Performance Insights. The scaler still measures each instance
every second either way: it needs the load to decide the capacity, which ``--capacity`` holds still (MinCapacity
so high that each postgres runs without a tight CPU quota).

Prints each run, then the medians per mode and the ratio on / off, with the machine and the load average;
then monitoring's own work timed in this process (CPU time): the counting wrapper per Data API call, recording
one instance's samples each second, evaluating ten alarms every 10 s. On a shared machine the throughput of
two short runs moves by far more than 3 % from one round to the next; these CPU figures are the steadier
measure of what monitoring adds.
Everything it starts is stopped by pid; every step has a timeout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dataapi = _load("bench_dataapi", ROOT / "bench" / "dataapi" / "bench.py")  # start_borealis, signed requests, wrk

PGBENCH_SQL = dataapi.PGBENCH_SQL


def _clients(url: str, data_dir: Path) -> dict[str, Any]:
    creds = dict(line.split(" = ", 1) for line in (data_dir / "credentials").read_text().splitlines() if " = " in line)
    kw: dict[str, Any] = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
    )
    return {"rds": boto3.client("rds", **kw), "secretsmanager": boto3.client("secretsmanager", **kw), "creds": creds}


def _proxy(rds: Any, secret_arn: str) -> tuple[str, int]:
    rds.create_db_proxy(
        DBProxyName="bench", EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret_arn}],
        RoleArn="arn:aws:iam::000000000000:role/proxy", VpcSubnetIds=["subnet-1", "subnet-2"],
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while rds.describe_db_proxies(DBProxyName="bench")["DBProxies"][0]["Status"] != "available":
        if time.monotonic() > deadline:
            raise SystemExit("proxy did not become available")
        time.sleep(0.2)
    rds.register_db_proxy_targets(DBProxyName="bench", DBClusterIdentifiers=["default"])
    host = rds.describe_db_proxies(DBProxyName="bench")["DBProxies"][0]["Endpoint"]
    port = next(t["Port"] for t in rds.describe_db_proxy_targets(DBProxyName="bench")["Targets"] if t.get("Port"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return host, port
        time.sleep(0.1)
    raise SystemExit(f"proxy not listening on {host}:{port}")


def _insights(rds: Any, on: bool) -> str:
    """Turn Performance Insights on for the writer where this build has it; what the API says now."""
    if not on:
        return "off"
    try:
        rds.modify_db_instance(
            DBInstanceIdentifier="default-instance-1", EnablePerformanceInsights=True, ApplyImmediately=True
        )
    except Exception as exc:  # noqa: BLE001 (a build without it refuses or ignores the parameter)
        return f"refused ({type(exc).__name__})"
    inst = rds.describe_db_instances(DBInstanceIdentifier="default-instance-1")["DBInstances"][0]
    return "on" if inst.get("PerformanceInsightsEnabled") else "not in this build"


class Server:
    """One ``borealis up`` in one mode, with its table, its proxy and its signed Data API requests."""

    def __init__(self, mode: str, args: argparse.Namespace, pgbench_bin: str) -> None:
        self.mode = mode
        self.work = Path(tempfile.mkdtemp(prefix=f"borealis-monbench-{mode}-"))
        # --aa runs both servers in one mode: what the two servers differ by alone (an A/A check).
        run_mode = args.aa or mode
        self.proc, self.url = dataapi.start_borealis(self.work / "data", dict(os.environ, BOREALIS_MONITORING=run_mode))
        c = _clients(self.url, self.work / "data")
        rds = c["rds"]
        rds.modify_db_cluster(
            DBClusterIdentifier="default",
            ServerlessV2ScalingConfiguration={"MinCapacity": args.capacity, "MaxCapacity": max(args.capacity, 16)},
            ApplyImmediately=True,
        )
        self.quota = dataapi._wait_quota(self.work / "data", args.capacity)
        self.insights = _insights(rds, run_mode == "on")
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        arn, secret_arn = cluster["DBClusterArn"], cluster["MasterUserSecret"]["SecretArn"]
        value = json.loads(c["secretsmanager"].get_secret_value(SecretId=secret_arn)["SecretString"])
        with psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user=value["username"], password=value["password"],
            dbname="postgres", autocommit=True, connect_timeout=30,
        ) as conn:  # fmt: skip
            conn.execute("CREATE TABLE bench_kv (id int PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO bench_kv SELECT i, md5(i::text) FROM generate_series(1, %s) i", (args.rows,))
            conn.execute("VACUUM ANALYZE bench_kv")
        host, port = _proxy(rds, secret_arn)
        script = self.work / "select.sql"
        script.write_text(PGBENCH_SQL.format(rows=args.rows))
        self.pg_env = dict(os.environ, PGPASSWORD=value["password"], PGCONNECT_TIMEOUT="10")
        self.pgbench = [pgbench_bin, "-n", "-M", "extended", "-h", host, "-p", str(port), "-U", value["username"],
                        "-c", str(args.connections), "-j", "2", "-f", str(script)]  # fmt: skip
        creds = c["creds"]
        # Signed now: valid for 15 minutes, more than the whole run (the script checks the time it takes).
        requests = dataapi.signed_requests(
            self.url, creds["aws_access_key_id"], creds["aws_secret_access_key"], arn, secret_arn, args.rows
        )
        lua = self.work / "execute.lua"
        lua.write_text(dataapi._lua(requests))
        self.wrk = ["wrk", "-t2", f"-c{args.connections}", "-s", str(lua)]
        self.signed_at = time.monotonic()
        # Warm-ups: the proxy's pool and the Data API's pool fill.
        subprocess.run([*self.pgbench, "-T", "2", "postgres"], env=self.pg_env, capture_output=True, timeout=120)
        subprocess.run([*self.wrk, "-d2s", self.url], capture_output=True, timeout=120)

    def cpu(self) -> float:
        """CPU seconds (user + system) Borealis's API processes used so far: the main one (which runs the proxy)
        and its workers; not postgres."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in (self.proc.pid, *dataapi._api_workers(self.proc.pid)):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def proxy_tps(self, duration: int) -> float:
        run = subprocess.run(
            [*self.pgbench, "-T", str(duration), "postgres"], env=self.pg_env, capture_output=True, text=True,
            timeout=duration + 120,
        )  # fmt: skip
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", run.stdout)
        if run.returncode != 0 or m is None:
            raise SystemExit(f"pgbench through the proxy failed ({self.mode}):\n{run.stdout}\n{run.stderr}")
        return float(m.group(1))

    def dataapi_rps(self, duration: int) -> float:
        if time.monotonic() - self.signed_at > 14 * 60:
            raise SystemExit("the signed Data API requests expire after 15 minutes: use fewer or shorter rounds")
        out = subprocess.run(
            [*self.wrk, f"-d{duration}s", self.url], capture_output=True, text=True, check=True,
            timeout=duration + 120,
        ).stdout  # fmt: skip
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise SystemExit(f"the Data API answered {non2xx.group(1)} errors ({self.mode})")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def components(seconds: int = 3600) -> dict[str, float]:
    """Monitoring's own work, timed in this process (CPU time, which another load on the machine moves far less
    than throughput): what it adds per Data API call and per second of a running cluster."""
    from borealis.aws import Direct
    from borealis.metrics import MetricStore
    from borealis.metrics._alarms import AlarmBook
    from borealis.prometheus import ApiMetrics

    out: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="borealis-moncost-"))
    try:
        # 1. The counting wrapper around a Direct handler that answers at once (the Data API's hot path).
        raw = Direct(lambda args, settle: {"records": []}, lambda exc: None)
        wrapped = ApiMetrics().instrument("rds-data", {"ExecuteStatement": raw})["ExecuteStatement"]
        assert isinstance(wrapped, Direct)
        calls = 200_000
        for handler, key in ((raw.start, "raw"), (wrapped.start, "wrapped")):
            t0 = time.process_time()
            for _ in range(calls):
                handler({}, lambda result: None)
            out[key] = (time.process_time() - t0) / calls * 1e6
        out["wrapper_us_per_call"] = out.pop("wrapped") - out.pop("raw")

        # 2. The scaler's samples of a cluster with one instance (5 series each, as serverless/_scaler.py
        # publishes them) recorded every second, flushed every 10 s, for an hour of data.
        store = MetricStore(work / "metrics.db")
        names = ("ServerlessDatabaseCapacity", "ACUUtilization", "CPUUtilization", "FreeableMemory")
        base = float(int(time.time()) - seconds)
        t0 = time.process_time()
        for s in range(seconds):
            for dims in ({"DBInstanceIdentifier": "i-1"}, {"DBClusterIdentifier": "c-1"}):
                for name in (*names, "DatabaseConnections"):
                    store.put("AWS/RDS", name, dims, 1.0, "Count", base + s)
            if s % 10 == 9:
                store.flush(base + s)
        out["sampling_us_per_second"] = (time.process_time() - t0) / seconds * 1e6

        # 3. Ten alarms on those series (two on metric math), evaluated every 10 s.
        book = AlarmBook(work / "alarms.json", region="us-east-1", account="123456789012")
        now = base + seconds
        for i in range(8):
            book.put_metric_alarm(
                {"AlarmName": f"a{i}", "Namespace": "AWS/RDS", "MetricName": names[i % 4], "Statistic": "Average",
                 "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "i-1"}], "Period": 60,
                 "EvaluationPeriods": 5, "Threshold": 90.0, "ComparisonOperator": "GreaterThanThreshold"},
                now,
            )  # fmt: skip
        metric = {"Namespace": "AWS/RDS", "MetricName": "CPUUtilization",
                  "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "i-1"}]}  # fmt: skip
        for i in range(2):
            book.put_metric_alarm(
                {"AlarmName": f"m{i}", "EvaluationPeriods": 3, "Threshold": 50.0,
                 "ComparisonOperator": "GreaterThanThreshold",
                 "Metrics": [{"Id": "cpu", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"},
                              "ReturnData": False},
                             {"Id": "e", "Expression": "FILL(cpu, 0) * 2", "ReturnData": True}]},
                now,
            )  # fmt: skip
        rounds = 100
        t0 = time.process_time()
        for r in range(rounds):
            book.evaluate_all(store, now + 10 * r)
        out["alarms_us_per_second"] = (time.process_time() - t0) / rounds / 10 * 1e6
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--capacity", type=float, default=8.0, help="MinCapacity (ACUs) held during the runs")
    ap.add_argument(
        "--aa", choices=("on", "off"), help="run both servers in this mode (an A/A check of the two servers alone)"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    from borealis.engine import Binaries

    pgbench_bin = shutil.which("pgbench") or str(Binaries.find().tool("pgbench"))
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    servers: dict[str, Server] = {}
    runs = []
    try:
        for mode in ("on", "off"):
            servers[mode] = Server(mode, args, pgbench_bin)
            print(f"{mode}: Performance Insights {servers[mode].insights}; CPU quota {servers[mode].quota}", flush=True)
        for r in range(args.rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                server = servers[mode]
                cpu0 = server.cpu()
                res = {"mode": mode, "proxy_tps": server.proxy_tps(args.duration)}
                cpu1 = server.cpu()
                res["dataapi_rps"] = server.dataapi_rps(args.duration)
                cpu2 = server.cpu()
                # CPU per call: less at the mercy of the machine's other load than throughput is.
                res["proxy_us"] = (cpu1 - cpu0) * 1e6 / (res["proxy_tps"] * args.duration)
                res["dataapi_us"] = (cpu2 - cpu1) * 1e6 / (res["dataapi_rps"] * args.duration)
                runs.append(res)
                print(
                    f"round {r + 1} {mode:>3}: proxy {res['proxy_tps']:8.0f} tps {res['proxy_us']:6.1f} µs/tx   "
                    f"Data API {res['dataapi_rps']:7.0f} req/s {res['dataapi_us']:6.1f} µs/req",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.close()
    load_after = os.getloadavg()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    print(f"\nmachine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}")
    print(f"date: {started:%Y-%m-%d %H:%M} UTC; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"command: python bench/monitoring/bench.py {' '.join(sys.argv[1:])}")
    keys = ("proxy_tps", "proxy_us", "dataapi_rps", "dataapi_us")
    heads = ("proxy tps", "proxy µs/tx", "Data API req/s", "Data API µs/req")
    print("".join(f"{h:>17}" for h in ("", *heads)))
    medians = {}
    for mode in ("on", "off"):
        mine = [x for x in runs if x["mode"] == mode]
        medians[mode] = [statistics.median(x[k] for x in mine) for k in keys]
        print(f"{mode + ' (median)':>17}" + "".join(f"{v:17.1f}" for v in medians[mode]))
    print(f"{'on / off':>17}" + "".join(f"{a / b:17.3f}" for a, b in zip(medians["on"], medians["off"], strict=True)))
    parts = components()
    per_call = medians["off"][3]
    print("\nmonitoring's own CPU, timed in this process:")
    print(f"  counting a Data API call: {parts['wrapper_us_per_call']:.2f} µs "
          f"({100 * parts['wrapper_us_per_call'] / per_call:.1f} % of a call's {per_call:.1f} µs with monitoring off)")
    print(f"  recording one instance's and its cluster's samples: {parts['sampling_us_per_second']:.0f} µs a second "
          f"({parts['sampling_us_per_second'] / 1e4:.3f} % of a CPU)")
    print(f"  evaluating ten alarms (two on metric math) every 10 s: {parts['alarms_us_per_second']:.0f} µs a second "
          f"({parts['alarms_us_per_second'] / 1e4:.3f} % of a CPU)")


if __name__ == "__main__":
    main()
