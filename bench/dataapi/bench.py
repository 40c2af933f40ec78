"""Data API throughput and latency next to pgbench on the same PostgreSQL, in one run.

    python bench/dataapi/bench.py [--duration 10] [--connections 32] [--rows 10000]

Starts its own `borealis up` (a temporary data directory, free ports), loads a table of ``--rows`` rows,
then runs the same primary-key SELECT twice at ``--connections`` concurrent connections:

1. pgbench, directly against the writer's postgres (the limit: no HTTP, no JSON, no signing);
2. wrk against ``POST /Execute``, replaying 256 requests SigV4-signed up front (a signature is valid for
   15 minutes, so the run must be shorter) with random ids, through a Lua script.

Prints one table (requests/s, p50, p99, errors). ``--workers N`` runs Borealis with N HTTP API processes
(``borealis up --workers``; default one per CPU, 1 for the main process alone).
``--capacity ACUS`` (default 8) holds the default cluster at that MinCapacity during both runs: each postgres
runs under a CPU quota of a quarter CPU per ACU (where Borealis has a cgroup), and at the default 0.5 ACU
pgbench would measure the quota, not PostgreSQL; 8 ACUs are 2 CPUs, no limit on a 2-CPU machine.
``--capacity 0`` leaves the cluster's scaling as it is.
Needs wrk on PATH (Debian: ``apt-get install wrk``); pgbench is taken from PATH, else from the embedded
PostgreSQL that ``borealis up`` runs.
``--profile`` also records a py-spy profile of Borealis during the wrk run (py-spy on PATH);
``--strace FILE`` counts the system calls of the Borealis API processes during it (``strace -c``), and
prints them per Data API request.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Run as `python bench/dataapi/bench.py`: the repository root (for tests.net) is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.net import free_port

from borealis.engine import Binaries, Cgroups
from borealis.serverless import ACU_CPU

SQL = "SELECT id, v FROM bench_kv WHERE id = :id"
PGBENCH_SQL = "\\set id random(1, {rows})\nSELECT id, v FROM bench_kv WHERE id = :id;\n"


def start_borealis(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "borealis", "up", "--data-dir", str(data_dir), "--api-port", str(port),
           "--port-base", str(free_port())]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("borealis did not become ready")


def signed_requests(url: str, key: str, secret: str, arn: str, secret_arn: str, rows: int) -> list[dict[str, Any]]:
    """256 ExecuteStatement calls of SQL with random ids, SigV4-signed now: body and headers of each."""
    signer = SigV4Auth(Credentials(key, secret), "rds-data", "us-east-1")
    requests = []
    for _ in range(256):
        body = json.dumps(
            {
                "resourceArn": arn,
                "secretArn": secret_arn,
                "sql": SQL,
                "parameters": [{"name": "id", "value": {"longValue": random.randint(1, rows)}}],
            },
            separators=(",", ":"),
        )
        req = AWSRequest("POST", url + "/Execute", data=body, headers={"Content-Type": "application/json"})
        signer.add_auth(req)
        headers = dict(req.headers.items())
        # The table is built when the script loads, before wrk knows the Host header: send the signed one.
        headers["Host"] = url.removeprefix("http://")
        requests.append({"body": body, "headers": headers})
    return requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--profile", type=Path, help="write a py-spy profile (raw/flamegraph by extension)")
    ap.add_argument("--workers", type=int, help="borealis up --workers (default: its own, one per CPU)")
    ap.add_argument("--strace", type=Path, help="write strace -c of the API processes during the wrk run here")
    ap.add_argument("--capacity", type=float, default=8.0, help="MinCapacity (ACUs) during the runs; 0: as is")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    pgbench_bin = shutil.which("pgbench") or str(Binaries.find().tool("pgbench"))  # else the embedded one

    work = Path(tempfile.mkdtemp(prefix="borealis-bench-"))
    env = dict(os.environ)
    if args.workers is not None:
        env["BOREALIS_WORKERS"] = str(args.workers)
    proc, url = start_borealis(work / "data", env)
    try:
        creds = dict(
            line.split(" = ", 1) for line in (work / "data" / "credentials").read_text().splitlines() if " = " in line
        )
        key, secret = creds["aws_access_key_id"], creds["aws_secret_access_key"]
        kw: dict[str, Any] = dict(
            endpoint_url=url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret
        )
        rds = boto3.client("rds", **kw)
        quota = "as set by the scaler"
        if args.capacity:
            rds.modify_db_cluster(
                DBClusterIdentifier="default",
                ServerlessV2ScalingConfiguration={"MinCapacity": args.capacity, "MaxCapacity": max(args.capacity, 16)},
                ApplyImmediately=True,
            )
            quota = _wait_quota(work / "data", args.capacity)
        cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
        arn, secret_arn = cluster["DBClusterArn"], cluster["MasterUserSecret"]["SecretArn"]
        value = json.loads(boto3.client("secretsmanager", **kw).get_secret_value(SecretId=secret_arn)["SecretString"])
        with psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user=value["username"], password=value["password"],
            dbname="postgres", autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute("DROP TABLE IF EXISTS bench_kv")
            conn.execute("CREATE TABLE bench_kv (id int PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO bench_kv SELECT i, md5(i::text) FROM generate_series(1, %s) i", (args.rows,))
            conn.execute("VACUUM ANALYZE bench_kv")
            row = conn.execute("SELECT inet_server_addr()::text, inet_server_port()").fetchone()
            assert row is not None
            pg_host, pg_port = row[0].split("/")[0], int(row[1])
            pg_version = conn.execute("SHOW server_version").fetchone()

        # 1. pgbench, straight to the writer's postgres.
        script = work / "select.sql"
        script.write_text(PGBENCH_SQL.format(rows=args.rows))
        env = dict(os.environ, PGPASSWORD=value["password"])
        pg_cpu_before = _cpu_times()
        pg_children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        pgbench = subprocess.run(
            [pgbench_bin, "-n", "-M", "extended", "-h", pg_host, "-p", str(pg_port), "-U", value["username"],
             "-c", str(args.connections), "-j", str(args.threads), "-T", str(args.duration), "-f", str(script),
             "-l", "--log-prefix", str(work / "pgbench"), "postgres"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        pg_cpu_after = _cpu_times()
        pg_children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if pgbench.returncode != 0:
            raise SystemExit(f"pgbench failed:\n{pgbench.stdout}\n{pgbench.stderr}")
        pg_tps = float(re.search(r"tps = ([\d.]+)", pgbench.stdout).group(1))  # type: ignore[union-attr]
        latencies = sorted(
            int(line.split()[2]) for log in work.glob("pgbench.*") for line in log.read_text().splitlines()
        )
        pg_p50 = latencies[len(latencies) // 2] / 1000
        pg_p99 = latencies[int(len(latencies) * 0.99)] / 1000
        pg_max = latencies[-1] / 1000
        pg_failed = re.search(r"number of failed transactions: (\d+)", pgbench.stdout)

        # 2. wrk on POST /Execute with pre-signed requests.
        requests = signed_requests(url, key, secret, arn, secret_arn, args.rows)
        lua = work / "execute.lua"
        lua.write_text(_lua(requests))
        # One warm-up pass so the pool holds its connections before measuring.
        subprocess.run(["wrk", "-t1", f"-c{args.connections}", "-d2s", "-s", str(lua), url], capture_output=True)
        profiler = None
        if args.profile is not None and shutil.which("py-spy"):
            fmt = "flamegraph" if args.profile.suffix == ".svg" else "raw"
            profiler = subprocess.Popen(
                ["py-spy", "record", "-p", str(proc.pid), "-o", str(args.profile), "-f", fmt,
                 "-d", str(args.duration), "-r", "200", "--nonblocking", "--subprocesses"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        tracer = None
        if args.strace is not None:
            pids = [proc.pid, *_api_workers(proc.pid)]
            tracer = subprocess.Popen(
                ["strace", "-c", "-f", "-o", str(args.strace), *(a for pid in pids for a in ("-p", str(pid)))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
        cpu_before = _cpu_times()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk = subprocess.run(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
             "-s", str(lua), url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        cpu_after = _cpu_times()
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        tick = os.sysconf("SC_CLK_TCK")
        cpu_after[-1] = _children("wrk", children_before, children_after, tick)
        pg_cpu_after[-1] = _children("pgbench", pg_children_before, pg_children_after, tick)
        if profiler is not None:
            profiler.wait(timeout=60)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=60)
        out = wrk.stdout
        if wrk.stderr.strip():
            print("first error responses:", wrk.stderr.strip()[:600], file=sys.stderr)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p50 = _wrk_latency(out, "50%")
        p99 = _wrk_latency(out, "99%")
        wrk_max = _wrk_max(out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        errors = (int(non2xx.group(1)) if non2xx else 0, socket_errors.group(1) if socket_errors else "none")

        workers = args.workers if args.workers is not None else "default"
        print(f"machine: {os.cpu_count()} CPUs, PostgreSQL {pg_version[0] if pg_version else '?'}, workers {workers}")
        print(f"writer: MinCapacity {args.capacity or 'default'}, CPU quota {quota}")
        print(f"query: {SQL} (id random in 1..{args.rows}), {args.connections} connections, {args.duration} s")
        print(f"{'':24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  errors")
        pg_errors = pg_failed.group(1) if pg_failed else 0
        print(f"{'pgbench (direct)':24}{pg_tps:10.0f}{pg_p50:9.2f}{pg_p99:9.2f}{pg_max:9.2f}  {pg_errors}")
        print(
            f"{'Data API (wrk)':24}{rps:10.0f}{p50:9.2f}{p99:9.2f}{wrk_max:9.2f}  "
            f"non-2xx {errors[0]}, sockets {errors[1]}"
        )
        # wrk 4 corrects for coordinated omission: a reply that took L gets extra samples at L - i, L - 2i, ...
        # (i = duration / requests per connection, ~3 ms here), so one stall of ~0.4 s in one process puts its
        # p99 near 200 ms at unchanged req/s and p50. A p99 close to max/2 is one such stall, not a slow path.
        if p99 > 10 * p50:
            print(f"note: wrk's p99 is coordinated-omission corrected; max {wrk_max:.0f} ms suggests one stall")
        print(f"Data API / pgbench: {100 * rps / pg_tps:.1f}%")
        print("pgbench run:", end=" ")
        _print_cpu(pg_cpu_before, pg_cpu_after, proc.pid, pg_tps * args.duration)
        print("Data API run:", end=" ")
        _print_cpu(cpu_before, cpu_after, proc.pid, rps * args.duration)
        if args.strace is not None:
            _print_syscalls(args.strace, rps * args.duration)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def _wait_quota(data_dir: Path, capacity: float) -> str:
    """Wait until the writer's cgroup lets it use ``capacity`` ACUs of CPU; what its quota says then."""
    found = Cgroups.detect(data_dir.absolute(), move_self=False)
    if not found.enabled or found.cpu_parent is None:
        return f"none ({found.reason})"
    group = found.cpu_parent / "default-instance-1"
    path = group / ("cpu.max" if found.version == 2 else "cpu.cfs_quota_us")
    wanted = min(capacity * ACU_CPU, os.cpu_count() or 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            fields = path.read_text().split()
        except OSError:
            fields = []
        if fields and (fields[0] in ("max", "-1") or int(fields[0]) >= wanted * 100_000 * 0.99):
            return f"{fields[0]} µs per 100 ms" if fields[0] not in ("max", "-1") else "none"
        time.sleep(0.5)
    raise SystemExit(f"the writer's CPU quota ({path}) did not reach {wanted} CPUs in 120 s")


def _cpu_times() -> dict[int, tuple[str, int, int, int, int]]:
    """pid -> (comm, parent pid, user ticks, system ticks, sleeps) of every process but this one.

    Sleeps are voluntary context switches: on this VM a sleep and its wake-up cost far more CPU than a
    request's own work, so they explain CPU per request.
    """
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            rest = stat.rpartition(")")[2].split()
            if int(entry.name) == os.getpid():
                continue  # our own children (wrk, pgbench) are counted from RUSAGE_CHILDREN
            user, system = int(rest[11]), int(rest[12])
            if comm == "postgres":  # with its reaped children: pgbench's backends end before we look again
                user, system = user + int(rest[13]), system + int(rest[14])
            sleeps = 0
            try:
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches"):
                        sleeps = int(line.split()[1])
            except OSError:
                pass
            out[int(entry.name)] = (comm, int(rest[1]), user, system, sleeps)
    return out


def _print_cpu(before: dict[int, tuple[str, int, int, int, int]], after: dict[int, tuple[str, int, int, int, int]],
               borealis: int, requests: float) -> None:  # fmt: skip
    """CPU time during the wrk run by role (user+system), per Data API request."""
    api = {borealis, *(pid for pid, v in after.items() if v[1] == borealis and v[0].startswith("python"))}
    groups: dict[str, list[int]] = {}
    for pid, (comm, _ppid, utime, stime, sleeps) in after.items():
        old = before.get(pid, (comm, 0, 0, 0, 0))
        role = (
            ("Borealis main process" if pid == borealis else f"Borealis worker {pid}")
            if pid in api
            else "postgres"
            if comm == "postgres"
            else comm
        )
        if role.startswith("wrk"):
            role = "wrk"
        spent = groups.setdefault(role, [0, 0, 0])
        spent[0] += utime - old[2]
        spent[1] += stime - old[3]
        spent[2] += sleeps - old[4]
    tick = os.sysconf("SC_CLK_TCK")
    print("CPU, µs per request (user + system):")
    for role, (user, system, sleeps) in sorted(groups.items(), key=lambda kv: -sum(kv[1][:2])):
        total = (user + system) / tick * 1e6 / max(requests, 1)
        if total >= 1:
            slept = f", sleeps {sleeps / max(requests, 1):.2f}" if role != "wrk" and role != "pgbench" else ""
            print(f"  {role:28}{total:7.0f}  (user {user / tick * 1e6 / max(requests, 1):.0f}, "
                  f"system {system / tick * 1e6 / max(requests, 1):.0f}{slept})")  # fmt: skip


def _children(name: str, before: Any, after: Any, tick: int) -> tuple[str, int, int, int, int]:
    """A finished child's CPU (from RUSAGE_CHILDREN) in the shape of a _cpu_times entry."""
    return (name, 0, round((after.ru_utime - before.ru_utime) * tick),
            round((after.ru_stime - before.ru_stime) * tick), 0)  # fmt: skip


def _api_workers(pid: int) -> list[int]:
    """The worker processes (``borealis.app``) among the children of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and b"borealis.app" in cmdline:
            out.append(int(entry.name))
    return out


def _print_syscalls(path: Path, requests: float) -> None:
    """strace -c's table, as calls per Data API request (traced runs are slower: count, don't time)."""
    print(f"system calls of the API processes per request (strace -c, {path}):")
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            if calls / max(requests, 1) >= 0.01:
                print(f"  {parts[-1]:16}{calls / max(requests, 1):8.2f}")


def _wrk_latency(out: str, pct: str) -> float:
    m = re.search(rf"^\s*{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if m is None:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _wrk_max(out: str) -> float:
    """The largest latency wrk saw (its "Latency" line: avg, stdev, max), in ms."""
    m = re.search(r"^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", out, re.M)
    if m is None:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _lua(requests: list[dict[str, Any]]) -> str:
    def q(s: str) -> str:
        return json.dumps(s)  # a JSON string literal is a valid Lua string literal for this ASCII content

    items = []
    for r in requests:
        headers = ", ".join(f"[{q(k)}] = {q(v)}" for k, v in r["headers"].items())
        items.append(f'wrk.format("POST", "/Execute", {{{headers}}}, {q(r["body"])})')
    return (
        "local requests = {\n  " + ",\n  ".join(items) + "\n}\n"
        "local i = 0\n"
        "request = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n"
        "local bad = 0\n"
        "response = function(status, headers, body)\n"
        "  if status ~= 200 and bad < 3 then bad = bad + 1; io.stderr:write(body .. '\\n') end\nend\n"
    )


if __name__ == "__main__":
    main()
