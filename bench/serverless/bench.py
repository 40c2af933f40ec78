"""Serverless v2 on this machine: resume latency, scaling reaction, and what a capacity limit does to throughput.

    python bench/serverless/bench.py [--resumes 20] [--step 40] [--limit 20] [--only resume,scaling,limit]

Run by hand (as root, so cgroups are writable here). It starts its own ``borealis up`` (a temporary data
directory, free ports, ``--min-auto-pause 1 --resume-wait 10000 --workers 1``), stops it at the end, and prints
Markdown tables for docs/benchmarks.md.

1. **resume**: MinCapacity 0, SecondsUntilAutoPause 1. ``--resumes`` times: wait for the pause (RDS-EVENT-0371 in
   the output) and one more second, then time connect + ``SELECT 1`` through the writer endpoint (psycopg), and the
   same for the Data API (ExecuteStatement ``SELECT 1``; with --resume-wait the call waits for the resume it
   starts); a call served without a resume (RDS-EVENT-0373) stops the run. Median, p95.
   Not through an RDS Proxy: a proxy keeps its cluster awake, as on AWS, so there is nothing to resume.
2. **scaling**: range 0.5-8, idle at 0.5; ``pgbench -S -c 8 -j 2 -T --step -P 1`` through the writer endpoint;
   the one-second ServerlessDatabaseCapacity series from CloudWatch (boto3): seconds from the start of the load
   to the first rise and to the top, seconds until pgbench's per-second tps first reaches 90 % of its plateau
   (the median of the last 10 s), and the capacity trace for 60 s after the load stops.
3. **limit**: pgbench select-only (``-c 4 -j 2 -T --limit``) at MinCapacity = MaxCapacity = 1, then at 4 (the
   scaler applies a changed range at once); the tps ratio shows the cgroup's CPU quota at work (1 ACU = a quarter
   of a CPU, 4 ACUs = one CPU).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.net import free_port, free_port_base

INSTANCE = "default-instance-1"


class Borealis:
    """One ``borealis up`` for the benchmark."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.api_port = free_port()
        self.output = root / "borealis.log"
        args = [
            sys.executable, "-m", "borealis", "up", "--data-dir", str(self.data_dir),
            "--api-port", str(self.api_port), "--port-base", str(free_port_base()),
            "--min-auto-pause", "1", "--resume-wait", "10000", "--workers", "1",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=self.output.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while "Borealis is ready" not in self.output.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"borealis up failed:\n{self.output.read_text()}")
            time.sleep(0.2)
        text = (self.data_dir / "credentials").read_text()
        values = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
        self.key, self.secret = values["aws_access_key_id"], values["aws_secret_access_key"]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.api_port}",
            region_name="us-east-1",
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 1}),
        )

    def events(self, code: str) -> int:
        return len(re.findall(rf"{INSTANCE}: RDS-EVENT-{code}", self.output.read_text()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def scale(b: Borealis, lo: float, hi: float, pause: int | None = None) -> None:
    conf: dict[str, Any] = {"MinCapacity": lo, "MaxCapacity": hi}
    if pause is not None:
        conf["SecondsUntilAutoPause"] = pause
    b.client("rds").modify_db_cluster(
        DBClusterIdentifier="default", ServerlessV2ScalingConfiguration=conf, ApplyImmediately=True
    )


def capacity_trace(b: Borealis, start: float, end: float) -> list[tuple[float, float]]:
    out = b.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "cap",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/RDS",
                        "MetricName": "ServerlessDatabaseCapacity",
                        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": INSTANCE}],
                    },
                    "Period": 1,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=dt.datetime.fromtimestamp(start, dt.UTC),
        EndTime=dt.datetime.fromtimestamp(end, dt.UTC),
        ScanBy="TimestampAscending",
    )["MetricDataResults"][0]
    return [(t.timestamp(), v) for t, v in zip(out["Timestamps"], out["Values"], strict=True)]


def wait_capacity(b: Borealis, value: float, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trace = capacity_trace(b, time.time() - 5, time.time() + 1)
        if trace and trace[-1][1] == value:
            return
        time.sleep(1)
    raise SystemExit(f"capacity never reached {value}")


def master(b: Borealis) -> tuple[dict[str, Any], dict[str, str]]:
    cluster = b.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = b.client("secretsmanager").get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])
    return cluster, json.loads(secret["SecretString"])


def pgbench(b: Borealis, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    from borealis.engine import Binaries

    cluster, secret = master(b)
    binary = shutil.which("pgbench") or str(Binaries.find().tool("pgbench"))
    env = {"PGPASSWORD": secret["password"], "PATH": "/usr/bin:/bin"}
    cmd = [binary, "-h", cluster["Endpoint"], "-p", str(cluster["Port"]), "-U", secret["username"], *args, "postgres"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def tps_of(out: subprocess.CompletedProcess[str]) -> float:
    match = re.search(r"tps = ([\d.]+)", out.stdout)
    if match is None:
        raise SystemExit(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    return float(match.group(1))


def bench_resume(b: Borealis, rounds: int) -> None:
    scale(b, 0, 4, pause=1)
    cluster, secret = master(b)
    data = b.client("rds-data")
    results: dict[str, list[float]] = {"writer endpoint (psycopg)": [], "Data API (ExecuteStatement)": []}
    for i in range(rounds * 2):
        target = "writer endpoint (psycopg)" if i % 2 == 0 else "Data API (ExecuteStatement)"
        deadline = time.monotonic() + 60
        while b.events("0371") <= b.events("0373"):  # until paused (and not resumed since)
            if time.monotonic() > deadline:
                raise SystemExit("the instance never paused")
            time.sleep(0.05)
        # RDS-EVENT-0371 is written as the postgres is taken out of routing, before its shutdown ends: give the
        # shutdown a second, so the figure is a resume from a paused instance, not one cut into a pause.
        time.sleep(1.0)
        resumes = b.events("0373")
        started = time.perf_counter()
        if target.startswith("writer"):
            with psycopg.connect(
                host=cluster["Endpoint"],
                port=cluster["Port"],
                user=secret["username"],
                password=secret["password"],
                dbname="postgres",
                connect_timeout=60,
            ) as conn:
                conn.execute("SELECT 1").fetchone()
        else:
            data.execute_statement(
                resourceArn=cluster["DBClusterArn"], secretArn=cluster["MasterUserSecret"]["SecretArn"], sql="SELECT 1"
            )
        took = (time.perf_counter() - started) * 1000
        deadline = time.monotonic() + 30
        while b.events("0373") == resumes:  # count only what a resume served
            if time.monotonic() > deadline:
                raise SystemExit(f"{target}: served in {took:.0f} ms without a resume")
            time.sleep(0.05)
        results[target].append(took)
    print("\n| path | resumes | median ms | p95 ms | min ms | max ms |\n|---|---:|---:|---:|---:|---:|")
    for name, values in results.items():
        print(
            f"| {name} | {len(values)} | {statistics.median(values):.0f} | {percentile(values, 95):.0f} "
            f"| {min(values):.0f} | {max(values):.0f} |"
        )


def bench_scaling(b: Borealis, seconds: int) -> None:
    scale(b, 0.5, 8)
    pgbench(b, ["-i", "-s", "5", "-q"], 300)
    wait_capacity(b, 0.5)
    start = time.time()
    out = pgbench(b, ["-n", "-S", "-c", "8", "-j", "2", "-T", str(seconds), "-P", "1"], seconds + 120)
    stopped = time.time()
    per_second = [float(m) for m in re.findall(r"progress: [\d.]+ s, ([\d.]+) tps", out.stderr)]
    time.sleep(60)
    trace = capacity_trace(b, start - 2, time.time())
    load = [(t - start, v) for t, v in trace if start <= t <= stopped]
    first_rise = next((t for t, v in load if v > 0.5), None)
    top = max(v for _, v in load)
    at_top = next(t for t, v in load if v == top)
    plateau = statistics.median(per_second[-10:]) if per_second else 0.0
    reach = next((i + 1 for i, x in enumerate(per_second) if x >= 0.9 * plateau), None)
    after = [(round(t - stopped), v) for t, v in trace if t > stopped]
    print(f"\nload step: pgbench -S -c 8 -j 2 -T {seconds} through the writer endpoint, range 0.5-8 ACUs")
    rise = "never" if first_rise is None else f"{first_rise:.0f} s after the load started"
    print(f"- first capacity rise: {rise}")
    print(f"- top capacity {top} ACUs, reached at {at_top:.0f} s")
    print(f"- plateau {plateau:.0f} tps (median of the last 10 s); 90 % of it first reached at {reach} s")
    print("- tps per second: " + " ".join(f"{x:.0f}" for x in per_second))
    print("- capacity during the load (s: ACUs): " + ", ".join(f"{t:.0f}: {v}" for t, v in load))
    print("- capacity after the load (s: ACUs): " + ", ".join(f"{t}: {v}" for t, v in after[::5]))


def bench_limit(b: Borealis, seconds: int) -> None:
    pgbench(b, ["-i", "-s", "5", "-q"], 300)
    results = {}
    for acu in (1.0, 4.0, 1.0, 4.0):
        scale(b, acu, acu)
        wait_capacity(b, acu)
        tps = tps_of(pgbench(b, ["-n", "-S", "-c", "4", "-j", "2", "-T", str(seconds)], seconds + 120))
        results.setdefault(acu, []).append(tps)
    one, four = statistics.mean(results[1.0]), statistics.mean(results[4.0])
    print("\n| capacity | CPU quota | pgbench -S tps (two runs) | mean |\n|---|---|---|---:|")
    for acu, runs in results.items():
        shown = " / ".join(f"{x:.0f}" for x in runs)
        print(f"| {acu:g} ACU | {acu * 0.25:g} CPU | {shown} | {statistics.mean(runs):.0f} |")
    print(f"\nratio capacity 4 / capacity 1: {four / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resumes", type=int, default=20)
    parser.add_argument("--step", type=int, default=40)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--only", default="resume,scaling,limit")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="borealis-bench-serverless-"))
    b = Borealis(root)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load average {load}")
    try:
        parts = args.only.split(",")
        if "limit" in parts:
            bench_limit(b, args.limit)
        if "scaling" in parts:
            bench_scaling(b, args.step)
        if "resume" in parts:
            bench_resume(b, args.resumes)
    finally:
        b.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
