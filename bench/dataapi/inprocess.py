"""Borealis's own CPU per Data API request, measured in one process, away from the load generator.

    python bench/dataapi/inprocess.py [--requests 8000] [--concurrency 8] [--rounds 3] [--profile FILE]

Starts a ``borealis up --workers 1`` (for postgres, the cluster and its secret), loads the bench table, then
builds in this process the stack a worker process runs (Gateway, SigV4, rest-json, the Data API and its
pools) and drives its HTTP protocol object over a fake transport: ``--concurrency`` connections each send
the next signed ``POST /Execute`` as soon as the reply to the last one is written. It prints CPU time
(``time.process_time``) per request for each round: postgres runs in its own processes, so the figure is
Borealis alone, and it is stable on a noisy machine, unlike requests per second. ``--profile`` writes a
cProfile of one more round (``.prof``, for ``python -m pstats`` or snakeviz). ``--compare-prometheus``
alternates rounds of the plain handlers and of the same handlers counted for GET /metrics (as the main process
serves them with monitoring on), in this one process: the wrapper's cost without two processes' differences.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import signed_requests, start_borealis


class FakeTransport:
    """Enough of an asyncio transport for the HTTP protocol: replies are counted, then the next request is fed."""

    def __init__(self, on_reply: Any) -> None:
        self.on_reply = on_reply
        self.closed = False

    def write(self, data: bytes) -> None:
        if not data.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected reply: {data[:400]!r}")
        self.on_reply()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    # Flow control: nothing is ever buffered here, so these have nothing to do.
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        self.closed = True


async def run_round(server: Any, requests: list[bytes], total: int, concurrency: int) -> float:
    from borealis.aws._http import _Connection

    done = asyncio.get_running_loop().create_future()
    state = {"sent": 0, "answered": 0}
    conns: list[Any] = []

    def make(i: int) -> Any:
        conn = _Connection(server)

        def on_reply() -> None:
            state["answered"] += 1
            if state["answered"] == total:
                if not done.done():
                    done.set_result(None)
                return
            if state["sent"] < total:
                state["sent"] += 1
                # Feed after the current write returns, as a socket read would come later.
                asyncio.get_running_loop().call_soon(conn.data_received, requests[state["sent"] % len(requests)])

        conn.connection_made(FakeTransport(on_reply))
        return conn

    conns = [make(i) for i in range(concurrency)]
    start = time.process_time()
    for i, conn in enumerate(conns):
        state["sent"] += 1
        conn.data_received(requests[i % len(requests)])
    await done
    return (time.process_time() - start) / total


async def api_round(data_api: Any, params: list[Any], total: int, concurrency: int) -> float:
    """The Data API alone (no HTTP, no signing, no JSON): ``concurrency`` loops calling execute_statement."""
    count = 0

    async def loop(i: int) -> None:
        nonlocal count
        while count < total:
            count += 1
            await data_api.execute_statement(params[count % len(params)])

    start = time.process_time()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return (time.process_time() - start) / count


class _Canned:
    def __init__(self, answer: Any) -> None:
        self.execute_statement = answer
        self.batch_execute_statement = self.begin_transaction = answer
        self.commit_transaction = self.rollback_transaction = answer


def _switches() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


def raw_requests(url: str, key: str, secret: str, arn: str, secret_arn: str, rows: int) -> list[bytes]:
    """bench.py's signed requests, as the bytes a client sends."""
    out = []
    for request in signed_requests(url, key, secret, arn, secret_arn, rows):
        head = "".join(f"{k}: {v}\r\n" for k, v in request["headers"].items())
        body = request["body"]
        out.append(f"POST /Execute HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n{body}".encode())
    return out


async def measure(args: argparse.Namespace, data_dir: Path, url: str) -> None:
    from borealis import app as app_module
    from borealis.aws import Gateway, HttpServer
    from borealis.config import Settings
    from borealis.dataapi import DataApi
    from borealis.iam import AccessKeys
    from borealis.services import rds_data as rds_data_service
    from borealis.store import Sealer, Store

    store = Store(data_dir / "borealis.db")
    keys = AccessKeys(store, Sealer(data_dir / "secrets.key"))
    settings = Settings(data_dir=data_dir, region="us-east-1")
    secrets = app_module._StoreSecrets(
        store, data_dir / "secrets.key", account_id=settings.account_id, region="us-east-1"
    )
    try:
        clusters = app_module._StoreClusters(store)
    except TypeError:  # a checkout from before the topology service (for a before/after comparison)
        clusters = app_module._StoreClusters(store, data_dir)
    data_api = DataApi(clusters, secrets, region="us-east-1", account_id=settings.account_id, node=0)
    handlers = rds_data_service.handlers(data_api)
    if args.prometheus:  # as the main process serves it: counted and timed for GET /metrics
        from borealis.prometheus import ApiMetrics

        handlers = ApiMetrics().instrument("rds-data", handlers)
    gateway = Gateway({"rds-data": handlers}, keys.secret_for)
    server = HttpServer(gateway)
    counted = None
    if args.compare_prometheus:  # the same stack with its handlers counted, in alternate rounds
        from borealis.prometheus import ApiMetrics

        counted = HttpServer(Gateway({"rds-data": ApiMetrics().instrument("rds-data", handlers)}, keys.secret_for))

    creds = dict(line.split(" = ", 1) for line in (data_dir / "credentials").read_text().splitlines() if " = " in line)
    cluster = clusters.cluster("default")
    assert cluster is not None
    arn = f"arn:aws:rds:us-east-1:{settings.account_id}:cluster:default"
    secret_arn = cluster["master_secret_arn"]
    requests = raw_requests(url, creds["aws_access_key_id"], creds["aws_secret_access_key"], arn, secret_arn, args.rows)
    params = [json.loads(r.partition(b"\r\n\r\n")[2]) for r in requests]
    layers = {
        "http": lambda n: run_round(server, requests, n, args.concurrency),
        "api": lambda n: api_round(data_api, params, n, args.concurrency),
    }
    await layers["http"](500)  # warm: pools, caches, prepared statements
    if args.layer == "gateway":
        # The HTTP server, signing and rest-json with a Data API that answers at once (no database).
        canned = await data_api.execute_statement(params[0])

        async def answer(p: Any) -> Any:
            return canned

        gateway = Gateway({"rds-data": rds_data_service.handlers(_Canned(answer))}, keys.secret_for)  # type: ignore[arg-type]
        server = HttpServer(gateway)
        layers["gateway"] = lambda n: run_round(server, requests, n, args.concurrency)
    run = layers[args.layer]
    if args.gc == "off":
        gc.disable()
    elif args.gc == "freeze":
        gc.freeze()
    timing = None
    if os.environ.get("BOREALIS_TIMING"):  # a module with install() and report(requests): see docs/benchmarks.md
        import importlib

        timing = importlib.import_module(os.environ["BOREALIS_TIMING"])
        timing.install()
    compared: dict[str, list[float]] = {"plain": [], "counted": []}
    for i in range(args.rounds):
        kinds = [("", run)]
        if counted is not None:  # order alternates, so a drift does not land on one of them
            both = [("plain", run), ("counted", lambda n: run_round(counted, requests, n, args.concurrency))]
            kinds = both if i % 2 == 0 else both[::-1]
        for kind, go in kinds:
            switches = _switches()
            per = await go(args.requests)
            switched = (_switches() - switches) / args.requests
            if timing is not None:
                timing.report(args.requests)
            if kind:
                compared[kind].append(per * 1e6)
            print(
                f"round {i + 1}{' ' + kind if kind else ''}: {per * 1e6:6.1f} µs CPU per request ({args.requests} "
                f"requests, {args.concurrency} in flight), {switched:.2f} voluntary context switches per request"
            )
    if counted is not None:
        import statistics

        plain, count = statistics.median(compared["plain"]), statistics.median(compared["counted"])
        print(f"median µs per request: plain {plain:.2f}, counted for GET /metrics {count:.2f} (+{count - plain:.2f}, "
              f"{100 * (count / plain - 1):+.1f} %)")  # fmt: skip
    if args.profile is not None:
        profiler = cProfile.Profile()
        profiler.enable()
        await run(args.requests)
        profiler.disable()
        profiler.dump_stats(str(args.profile))
        print(f"profile: {args.profile}")
    await data_api.close()
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--gc", choices=("on", "off", "freeze"), default="on")
    ap.add_argument("--prometheus", action="store_true", help="wrap the handlers as GET /metrics needs")
    ap.add_argument(
        "--compare-prometheus",
        action="store_true",
        help="alternate rounds of plain and counted handlers (for GET /metrics) in this one process",
    )
    ap.add_argument(
        "--layer",
        choices=("http", "api", "gateway"),
        default="http",
        help="what to drive: the HTTP server or the Data API",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="borealis-inproc-"))
    proc, url = start_borealis(work / "data", dict(os.environ, BOREALIS_WORKERS="1"))
    try:
        data_dir = work / "data"
        _load(url, data_dir, args.rows)
        try:
            import uvloop

            uvloop.run(measure(args, data_dir, url))
        except ImportError:
            asyncio.run(measure(args, data_dir, url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def _load(url: str, data_dir: Path, rows: int) -> None:
    import boto3

    creds = dict(line.split(" = ", 1) for line in (data_dir / "credentials").read_text().splitlines() if " = " in line)
    kw: dict[str, Any] = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
    )
    cluster = boto3.client("rds", **kw).describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    value = json.loads(
        boto3.client("secretsmanager", **kw).get_secret_value(SecretId=cluster["MasterUserSecret"]["SecretArn"])[
            "SecretString"
        ]
    )
    with psycopg.connect(
        host=cluster["Endpoint"],
        port=cluster["Port"],
        user=value["username"],
        password=value["password"],
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_kv")
        conn.execute("CREATE TABLE bench_kv (id int PRIMARY KEY, v text NOT NULL)")
        conn.execute("INSERT INTO bench_kv SELECT i, md5(i::text) FROM generate_series(1, %s) i", (rows,))
        conn.execute("VACUUM ANALYZE bench_kv")


if __name__ == "__main__":
    main()
