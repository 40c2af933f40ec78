"""What monitoring costs: the proxy and the Data API with Borealis's monitoring on and off, side by side.

    python bench/monitoring/bench.py [--pairs 3] [--rounds 3] [--duration 4] [--idle 10] [--aa off]

Run by hand (needs wrk on PATH; pgbench from PATH or the embedded PostgreSQL). It measures, per mode:

1. the proxy: an RDS proxy on the default cluster (CreateDBProxy, RegisterDBProxyTargets), then pgbench's
   primary-key SELECT on a table of ``--rows`` rows through it, ``-M extended``, ``--connections`` clients;
2. the Data API: wrk replaying signed ``POST /Execute`` calls of the same SELECT (bench/dataapi's requests).

Two Borealis run at once, one per mode, each with its default cluster, table, proxy and signed requests, set
up first; then each round measures both, one after the other, in alternating order (on then off, then off
then on, ...), ``--duration`` seconds per measurement. Interleaving short measurements of two long-lived
servers keeps a drift in the machine's load (shared machines) from landing on one mode; the server not being
measured is idle meanwhile.

Two processes of the same program differ by a few percent by themselves (where their memory landed, their
hash seeds, which one started first): one pair of servers cannot tell a 3 % cost from that. So the bench
starts ``--pairs`` fresh pairs one after the other, the start order swapped from one pair to the next, and
the two servers of a pair share a hash seed (``PYTHONHASHSEED``, 1 + the pair's index), so they differ by
less; the result is the median over every round of every pair of the round's ratio on / off (the two measurements
of a round are next to each other in time, so their ratio is the least disturbed by other load). ``--aa off``
runs both servers of each pair with monitoring off (an A/A check: what the servers differ by alone, with the
same bench; its spread is the noise the A/B result has to be read against).

Modes: **on** is Borealis as it ships (``BOREALIS_MONITORING`` unset: the scaler's samples recorded in the
metric store every second, alarms evaluated every 10 s, every API call counted for GET /metrics), plus
Performance Insights enabled on the writer (ModifyDBInstance EnablePerformanceInsights: one pg_stat_activity
query a second, pg_stat_statements every 10 s). **off** is ``BOREALIS_MONITORING=off``: nothing recorded, no
alarm evaluation, no counters, no Performance Insights. PostgreSQL runs with the same settings either way
(pg_stat_statements is preloaded as Aurora's default parameter group does, whether or not anything reads it).
The scaler still measures each instance every second either way: it needs the load to decide the capacity,
which ``--capacity`` holds still (MinCapacity so high that each postgres runs without a tight CPU quota).

Prints each round, then per mode the medians, the median of per-round ratios on / off (with the spread
of those ratios and the per-pair medians), the CPU of Borealis's API process per call (the steadier figure:
throughput on a shared machine moves by far more than 3 % from one round to the next), and its CPU per
second while idle; then monitoring's own work timed in this process (CPU time): the counting wrapper per
Data API call, recording one instance's samples each second, evaluating ten alarms every 10 s.
Everything it starts is stopped by pid; every step has a timeout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
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
    except Exception as exc:  # a build without it refuses or ignores the parameter
        return f"refused ({type(exc).__name__})"
    inst = rds.describe_db_instances(DBInstanceIdentifier="default-instance-1")["DBInstances"][0]
    return "on" if inst.get("PerformanceInsightsEnabled") else "not in this build"


class Server:
    """One ``borealis up`` in one mode, with its table, its proxy and its signed Data API requests."""

    def __init__(self, mode: str, args: argparse.Namespace, pgbench_bin: str, hash_seed: int = 0) -> None:
        self.mode = mode
        self.work = Path(tempfile.mkdtemp(prefix=f"borealis-monbench-{mode}-"))
        # --aa runs both servers in one mode: what the two servers differ by alone (an A/A check).
        run_mode = args.aa or mode
        # The two servers of a pair share a hash seed (dicts and sets laid out alike; pairs differ).
        env = dict(os.environ, BOREALIS_MONITORING=run_mode, PYTHONHASHSEED=str(hash_seed))
        self.proc, self.url = dataapi.start_borealis(self.work / "data", env)
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
        # The cluster's first automated backup (a base backup, taken soon after the writer starts) would land
        # in one measurement of one server at random: wait for it (a minute at most).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snaps = rds.describe_db_cluster_snapshots(DBClusterIdentifier="default", SnapshotType="automated")
            if any(x.get("Status") == "available" for x in snaps["DBClusterSnapshots"]):
                break
            time.sleep(0.5)
        # Warm-ups: the proxy's pool and the Data API's pool fill.
        subprocess.run([*self.pgbench, "-T", "2", "postgres"], env=self.pg_env, capture_output=True, timeout=120)
        subprocess.run([*self.wrk, "-d2s", self.url], capture_output=True, timeout=120)

    def cpu(self) -> float:
        """CPU seconds Borealis's API processes used so far: the main one (which runs the proxy) and its workers;
        not postgres. From each thread's schedstat (nanoseconds; /proc/PID/stat counts 10 ms ticks, too coarse
        for a second of idle work); the thread pool's threads live as long as the process."""
        total = 0.0
        for pid in (self.proc.pid, *dataapi._api_workers(self.proc.pid)):
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    total += int((task / "schedstat").read_text().split()[0]) / 1e9
                except (OSError, ValueError, IndexError):
                    continue
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
        # 1. Counting a call of a Direct handler that settles later (the Data API's hot path), served as
        # Gateway.serve_direct serves it: the handler's ``observe`` told of the outcome before the reply.
        pending: list[Any] = []
        raw = Direct(lambda args, settle: pending.append(settle), lambda exc: None)
        counted = ApiMetrics().instrument("rds-data", {"ExecuteStatement": raw})["ExecuteStatement"]
        assert isinstance(counted, Direct)
        calls = 200_000
        perf = time.perf_counter
        for handler, key in ((raw, "raw"), (counted, "wrapped")):
            start, observe = handler.start, handler.observe
            t0 = time.process_time()
            for _ in range(calls):
                started = perf() if observe is not None else 0.0

                def settle(outcome: Any, started: float = started, observe: Any = observe) -> None:
                    if observe is not None:
                        observe(None, started)

                start({}, settle)
                pending.pop()({"records": []})
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


KEYS = ("proxy_tps", "proxy_us", "dataapi_rps", "dataapi_us")
HEADS = ("proxy tps", "proxy µs/tx", "Data API req/s", "Data API µs/req")


def _lag(url: str, seconds: float) -> list[float]:
    """Response times (ms) of GET /health every 5 ms for ``seconds``: a stall of the API's event loop (blocking
    disk I/O, a burst of work each second) shows as the tail."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    out = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            conn.request("GET", "/health")
            conn.getresponse().read()
            out.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.005)
    finally:
        conn.close()
    return sorted(out)


def _pair(p: int, args: argparse.Namespace, pgbench_bin: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Start a fresh pair of servers (on first in even pairs, off first in odd ones), measure them idle, then
    ``--rounds`` interleaved rounds; append each measurement to ``runs``. Returns the pair's idle figures."""
    servers: dict[str, Server] = {}
    idle: dict[str, Any] = {}
    try:
        for mode in ("on", "off") if p % 2 == 0 else ("off", "on"):
            servers[mode] = Server(mode, args, pgbench_bin, hash_seed=1 + p)
            print(f"pair {p + 1} {mode}: Performance Insights {servers[mode].insights}; CPU quota "
                  f"{servers[mode].quota}", flush=True)  # fmt: skip
        time.sleep(3)  # the last setup's requests settle
        # Both idle at once, over the same seconds: the CPU monitoring's background work takes.
        cpu0 = {m: s.cpu() for m, s in servers.items()}
        t0 = time.monotonic()
        time.sleep(args.idle)
        took = time.monotonic() - t0
        for mode, server in servers.items():
            idle[mode] = {"cpu_ms_per_s": (server.cpu() - cpu0[mode]) * 1e3 / took}
            if args.lag:
                lat = _lag(server.url, args.lag)
                idle[mode].update(p50=lat[len(lat) // 2], p99=lat[int(len(lat) * 0.99)], max=lat[-1])
        for r in range(args.rounds):
            for mode in ("on", "off") if (p + r) % 2 == 0 else ("off", "on"):
                server = servers[mode]
                cpu0_ = server.cpu()
                res: dict[str, Any] = {"pair": p, "round": r, "mode": mode}
                res["proxy_tps"] = server.proxy_tps(args.duration)
                cpu1 = server.cpu()
                res["dataapi_rps"] = server.dataapi_rps(args.duration)
                cpu2 = server.cpu()
                # CPU per call: less at the mercy of the machine's other load than throughput is.
                res["proxy_us"] = (cpu1 - cpu0_) * 1e6 / (res["proxy_tps"] * args.duration)
                res["dataapi_us"] = (cpu2 - cpu1) * 1e6 / (res["dataapi_rps"] * args.duration)
                runs.append(res)
                print(
                    f"pair {p + 1} round {r + 1} {mode:>3}: proxy {res['proxy_tps']:8.0f} tps "
                    f"{res['proxy_us']:6.1f} µs/tx   Data API {res['dataapi_rps']:7.0f} req/s "
                    f"{res['dataapi_us']:6.1f} µs/req",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.close()
    return idle


def _ratios(runs: list[dict[str, Any]], key: str, pair: int | None = None) -> list[float]:
    """Each round's on / off for ``key`` (of one pair, or of all)."""
    by_round: dict[tuple[int, int], dict[str, float]] = {}
    for x in runs:
        if pair is None or x["pair"] == pair:
            by_round.setdefault((x["pair"], x["round"]), {})[x["mode"]] = x[key]
    return [v["on"] / v["off"] for _, v in sorted(by_round.items()) if len(v) == 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3, help="fresh pairs of servers, one after the other")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per pair")
    ap.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    ap.add_argument("--idle", type=int, default=10, help="seconds both servers of a pair are measured idle")
    ap.add_argument("--lag", type=float, default=0, help="then seconds of GET /health every 5 ms on each (0: none)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--capacity", type=float, default=8.0, help="MinCapacity (ACUs) held during the runs")
    ap.add_argument(
        "--aa", choices=("on", "off"), help="run both servers in this mode (an A/A check of the two servers alone)"
    )
    ap.add_argument("--no-components", action="store_true", help="skip timing monitoring's parts in this process")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    from borealis.engine import Binaries

    pgbench_bin = shutil.which("pgbench") or str(Binaries.find().tool("pgbench"))
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    idles = [_pair(p, args, pgbench_bin, runs) for p in range(args.pairs)]
    load_after = os.getloadavg()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    print(f"\nmachine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}")
    print(f"date: {started:%Y-%m-%d %H:%M} UTC; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"command: python bench/monitoring/bench.py {' '.join(sys.argv[1:])}")
    if args.aa:
        print(f"A/A: both servers of every pair ran with monitoring {args.aa}; 'on' and 'off' name the two slots")
    print("".join(f"{h:>17}" for h in ("", *HEADS)))
    medians = {}
    for mode in ("on", "off"):
        mine = [x for x in runs if x["mode"] == mode]
        medians[mode] = [statistics.median(x[k] for x in mine) for k in KEYS]
        print(f"{mode + ' (median)':>17}" + "".join(f"{v:17.1f}" for v in medians[mode]))
    print(f"{'on / off':>17}" + "".join(f"{a / b:17.3f}" for a, b in zip(medians["on"], medians["off"], strict=True)))
    print(f"{'round ratios':>17}" + "".join(f"{statistics.median(_ratios(runs, k)):17.3f}" for k in KEYS))
    for k, head in zip(KEYS, HEADS, strict=True):
        every = _ratios(runs, k)
        slower = sum(x < 1 for x in every) if k.endswith(("tps", "rps")) else sum(x > 1 for x in every)
        per_pair = [statistics.median(_ratios(runs, k, p)) for p in range(args.pairs)]
        print(f"  {head} on/off: median of {len(every)} rounds {statistics.median(every):.3f} "
              f"(range {min(every):.3f}-{max(every):.3f}; on worse in {slower}); "
              f"per pair {' '.join(f'{x:.3f}' for x in per_pair)}")  # fmt: skip
    for mode in ("on", "off"):
        cpu_s = [i[mode]["cpu_ms_per_s"] for i in idles]
        line = f"idle {mode:>3}: API process {statistics.median(cpu_s):.2f} ms CPU a second (pairs: "
        line += " ".join(f"{x:.2f}" for x in cpu_s) + ")"
        if args.lag:
            line += "; GET /health ms p50/p99/max: " + ", ".join(
                f"{i[mode]['p50']:.2f}/{i[mode]['p99']:.2f}/{i[mode]['max']:.1f}" for i in idles
            )
        print(line)
    if args.no_components:
        return
    parts = components()
    per_call = medians["off"][3]
    print("\nmonitoring's own CPU, timed in this process:")
    print(
        f"  counting a Data API call: {parts['wrapper_us_per_call']:.2f} µs "
        f"({100 * parts['wrapper_us_per_call'] / per_call:.1f} % of a call's {per_call:.1f} µs with monitoring off)"
    )
    print(
        f"  recording one instance's and its cluster's samples: {parts['sampling_us_per_second']:.0f} µs a second "
        f"({parts['sampling_us_per_second'] / 1e4:.3f} % of a CPU)"
    )
    print(
        f"  evaluating ten alarms (two on metric math) every 10 s: {parts['alarms_us_per_second']:.0f} µs a second "
        f"({parts['alarms_us_per_second'] / 1e4:.3f} % of a CPU)"
    )


if __name__ == "__main__":
    main()
