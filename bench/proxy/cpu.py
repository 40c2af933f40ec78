"""A measuring stick that the noisy machine moves little: the pooler's CPU per round trip, for a fixed amount of work.

    python bench/proxy/cpu.py [--transactions 1000] [--clients 32] [--pool-size 8] [--rounds 2]
                              [--targets pgbouncer relay proxy [pgbouncer-unix]] [--modes "select-only simple" ...]
                              [--strace 200] [--profile FILE] [--database bench]

Throughput on 2 shared cores follows whatever else runs; the CPU a pooler spends per transaction does not, much.
This sets up what ``bench.py`` does (its own ``borealis up``, one RDS proxy and one PgBouncer per pool size, the
same database and pool caps), adds the floor (``relay.py``: a uvloop relay with no logic, one upstream connection
per client), then runs ``pgbench -t --transactions`` per client through each pooler and reads the pooler's user
and system CPU from ``/proc/<pid>/stat`` before and after. It prints microseconds per transaction, user + system,
and the same per round trip (a select-only transaction is one round trip; a tpcb-like one is seven: BEGIN, three
UPDATEs, SELECT, INSERT, END).

The proxy runs inside ``borealis up``, whose API, reconciler and samplers tick meanwhile: their rate is measured
with no load for a few seconds first, and subtracted ("net"). ``perf stat -e instructions`` would be steadier,
but this machine's virtual CPUs expose no hardware counters.

``--strace N`` adds one more run per target of N transactions per client under ``strace -c -f`` and prints system
calls per transaction, by call (strace slows the run; counts, not times, are what it is for). ``--profile FILE``
records the proxy with ``py-spy record --native --format raw`` during one more select-only run.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MODES, Bench, cpu_seconds, pgbench, stop

HERE = Path(__file__).resolve().parent
#: Round trips per pgbench transaction (simple protocol: one Query each).
ROUND_TRIPS = {"select-only simple": 1, "select-only prepared": 1, "tpcb-like (sync_commit off)": 7}
TICK = os.sysconf("SC_CLK_TCK")


def start_relay(upstream: tuple[str, int]) -> tuple[subprocess.Popen[str], int]:
    """Start ``relay.py`` in front of ``upstream``; return it and its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "relay.py"), "--listen-port", str(port), "--upstream-host", upstream[0],
         "--upstream-port", str(upstream[1])], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("relay.py did not start")
    return proc, port


def idle_rate(pid: int, seconds: float = 4.0) -> tuple[float, float]:
    """CPU seconds per second (user, system) that ``pid`` spends with no load."""
    a = cpu_seconds(pid)
    time.sleep(seconds)
    b = cpu_seconds(pid)
    assert a is not None and b is not None
    return (b[0] - a[0]) / seconds, (b[1] - a[1]) / seconds


def strace_counts(pid: int, run: Any) -> dict[str, int]:
    """System calls of every thread of ``pid`` while ``run()`` runs (``strace -c -f -p``)."""
    out = Path(f"/tmp/cpu-strace-{pid}.txt")
    st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        run()
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(30)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    out.unlink(missing_ok=True)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=1000, help="pgbench -t: transactions per client")
    ap.add_argument("--clients", type=int, nargs="+", default=[32])
    ap.add_argument("--pool-size", type=int, nargs="+", default=[8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--database", default="bench")
    ap.add_argument("--rounds", type=int, default=2, help="runs per (target, mode); the order alternates")
    ap.add_argument("--targets", nargs="+", default=["pgbouncer", "relay", "proxy"],
                    choices=["pgbouncer", "pgbouncer-unix", "relay", "proxy", "direct"],
                    help="pgbouncer-unix: a PgBouncer that reaches postgres over its unix socket, as the proxy "
                         "does (bench.py --pgbouncer-unix)")  # fmt: skip
    ap.add_argument("--modes", nargs="+", choices=list(MODES),
                    default=["select-only simple", "tpcb-like (sync_commit off)"])  # fmt: skip
    ap.add_argument("--strace", type=int, default=0, help="transactions per client of one strace -c run per target")
    ap.add_argument("--profile", type=Path, help="py-spy --native raw output of one more proxy select-only run")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--src", help="run borealis from this tree (PYTHONPATH): a `git archive` of a commit, or "
                    "build/compiled (scripts/build-compiled) for the compiled build")  # fmt: skip
    args = ap.parse_args()
    args.idle = 0
    args.pgbouncer_unix = "pgbouncer-unix" in args.targets
    bench = Bench(args)
    budget = 1800 + 60 * args.rounds * len(args.modes) * len(args.targets) * len(args.clients) * len(args.pool_size)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"run over {budget}s")))
    signal.alarm(budget)
    relay: subprocess.Popen[str] | None = None
    try:
        bench.setup()
        assert bench.borealis is not None
        bpid = bench.borealis.pid
        first_pool = next(iter(bench.pools))
        relay, relay_port = start_relay(bench.targets[("direct", first_pool)])
        bench.pids["relay"] = relay.pid
        for pool in bench.pools:
            bench.targets[("relay", pool)] = ("127.0.0.1", relay_port)

        def run(target: str, pool: int, clients: int, mode: str, tx: int) -> Any:
            host, port = bench.targets[(target, pool)]
            pid = bench.pids.get(f"{target}-{pool}" if target.startswith("pgbouncer") else target)
            return pgbench(bench.tool, host, port, bench.user, bench.password, [*MODES[mode], "-t", str(tx)],
                           0, clients, args.threads, args.database, pid, limit=600)  # fmt: skip

        # Warm-up: pools open their server connections, caches fill, the relay's first connections are made.
        for pool in bench.pools:
            for target in args.targets:
                run(target, pool, max(args.clients), "select-only simple", 200)
        time.sleep(2)
        rate = idle_rate(bpid)
        print(f"borealis up (pid {bpid}) with no load: {1e3 * rate[0]:.1f} ms user + {1e3 * rate[1]:.1f} ms system "
              "per second (subtracted from the proxy's figures: 'net')", flush=True)  # fmt: skip

        rows: dict[tuple[int, int, str, str], list[tuple[float, float, float]]] = collections.defaultdict(list)
        loads = []
        for rnd in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for pool in bench.pools:
                for clients in args.clients:
                    for mode in args.modes:
                        order = args.targets if rnd % 2 == 0 else args.targets[::-1]
                        for target in order:
                            if target in ("relay", "direct") and pool != first_pool:
                                continue
                            res = run(target, pool, clients, mode, args.transactions)
                            if res.aborted or not res.processed or res.cpu_s is None:
                                print(f"  {target} {mode}: {res.aborted or 'no result'}", flush=True)
                                continue
                            user, system = res.user_s, res.cpu_s - res.user_s
                            if target == "proxy":
                                user -= rate[0] * res.wall_s
                                system -= rate[1] * res.wall_s
                            rows[(pool, clients, mode, target)].append(
                                (1e6 * user / res.processed, 1e6 * system / res.processed, res.tps or 0)
                            )
                            u, s = rows[(pool, clients, mode, target)][-1][:2]
                            print(f"  round {rnd + 1} pool {pool} clients {clients} {mode:28} {target:9} "
                                  f"{res.processed} tx, {res.tps or 0:,.0f} tps, CPU/tx {u:.1f} user + {s:.1f} sys µs",
                                  flush=True)  # fmt: skip
        print(f"\nload average at the start of each round: {', '.join(f'{x:.2f}' for x in loads)}, "
              f"after: {os.getloadavg()[0]:.2f}; pgbench -t {args.transactions} -j {args.threads}; "
              f"CPU per transaction from /proc/<pid>/stat ({TICK} Hz ticks), medians of rounds\n")  # fmt: skip
        print("| pool | clients | mode | target | tps (median) | user µs/tx | sys µs/tx | user+sys µs per round trip |")
        print("|---:|---:|---|---|---:|---:|---:|---:|")
        for (pool, clients, mode, target), vals in rows.items():
            u = _median([v[0] for v in vals])
            s = _median([v[1] for v in vals])
            t = _median([v[2] for v in vals])
            label = "proxy (net)" if target == "proxy" else target
            print(f"| {pool} | {clients} | {mode} | {label} | {t:,.0f} | {u:.1f} | {s:.1f} | "
                  f"{(u + s) / ROUND_TRIPS[mode]:.1f} |")  # fmt: skip

        if args.strace:
            if not shutil.which("strace"):
                raise SystemExit("strace is not installed (apt-get install strace)")
            print(f"\nsystem calls per transaction (strace -c -f, pgbench -t {args.strace}, first pool and "
                  "client count):\n")  # fmt: skip
            for mode in args.modes:
                table: dict[str, dict[str, float]] = {}
                for target in args.targets:
                    if target == "direct":
                        continue
                    pid = bench.pids[f"{target}-{first_pool}" if target.startswith("pgbouncer") else target]
                    assert pid is not None
                    done: list[Any] = []
                    counts = strace_counts(
                        pid,
                        lambda t=target, m=mode, d=done: d.append(run(t, first_pool, args.clients[0], m, args.strace)),
                    )
                    n = done[0].processed or 1
                    table[target] = {k: v / n for k, v in counts.items()}
                names = sorted({k for c in table.values() for k in c if c[k] >= 0.01},
                               key=lambda k: -max(c.get(k, 0) for c in table.values()))  # fmt: skip
                print(f"{mode}:\n")
                print("| syscall | " + " | ".join(table) + " |")
                print("|---|" + "---:|" * len(table))
                for k in names:
                    print(f"| {k} | " + " | ".join(f"{c.get(k, 0):.2f}" for c in table.values()) + " |")
                print("| **total** | " + " | ".join(f"{sum(c.values()):.2f}" for c in table.values()) + " |\n")

        if args.profile:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            prof = subprocess.Popen([spy, "record", "-p", str(bpid), "-o", str(args.profile), "--format", "raw",
                                     "-r", "500", "--native", "-d", "8"], stdout=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1)
            run("proxy", first_pool, max(args.clients), "select-only simple", args.transactions * 3)
            prof.wait(60)
            print(f"\npy-spy --native profile of the proxy (select-only simple): {args.profile}")
    finally:
        signal.alarm(0)
        stop(relay)
        bench.close()


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


if __name__ == "__main__":
    main()
