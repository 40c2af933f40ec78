"""What counting a Data API call for GET /metrics costs in the whole stack, before and after the observe hook.

    python bench/monitoring/counting.py [--rounds 20] [--requests 3000]

Starts a ``borealis up --workers 1`` (for postgres and the cluster), then builds in this process, as
bench/dataapi/inprocess.py does, four copies of the stack a Data API process runs (HTTP server, SigV4,
rest-json, the Data API with one shared pool) that differ only in how ExecuteStatement is counted:

- **plain**: not counted (monitoring off);
- **same**: an identity "wrapper", a second copy of plain: the A/A, how far two copies differ by themselves;
- **before**: the wrapper GET /metrics used up to 41e4402, closures around ``start`` and the ``settle`` it passes
  on (kept here, as it was, to compare against);
- **now**: ``ApiMetrics.instrument`` as it ships (the gateway tells the handler's ``observe`` of each outcome).

Rounds of ``--requests`` signed ``POST /Execute`` (8 in flight, over a fake transport) go to each copy in turn,
the order rotating each round; it prints each copy's median CPU (``time.process_time``) per request and the
median of its per-round difference from plain. Timed alone the counting costs a fraction of a microsecond;
in the stack, with the interpreter's caches shared with everything else a request does, it costs more, which
only this kind of measurement shows.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(ROOT / "bench" / "dataapi"))  # inprocess.py imports its sibling bench.py
inprocess = _load("bench_inprocess", ROOT / "bench" / "dataapi" / "inprocess.py")


def _before(stats: Any, handler: Any) -> Any:
    """The counting wrapper as it was before the observe hook (prometheus._wrap_direct up to 41e4402)."""
    from borealis.aws import AWSError, Direct

    start, error = handler.start, handler.error
    perf = time.perf_counter

    def failed(exc: BaseException, started: float) -> None:
        aws = exc if isinstance(exc, AWSError) else error(exc)
        stats.done(aws.code if aws is not None else "InternalFailure", started)

    def counted(args: dict[str, Any], settle: Callable[[dict[str, Any] | BaseException], None]) -> Any:
        started = perf()

        def settled(result: dict[str, Any] | BaseException) -> None:
            if isinstance(result, BaseException):
                failed(result, started)
            else:
                stats.done(None, started)
            settle(result)

        try:
            out = start(args, settled)
        except Exception as exc:
            failed(exc, started)
            raise
        if out is not None:
            stats.done(None, started)
        return out

    return Direct(counted, error, handler.encode)


async def measure(args: argparse.Namespace, data_dir: Path, url: str) -> None:
    from borealis import app as app_module
    from borealis import prometheus
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
    clusters = app_module._StoreClusters(store, "127.0.0.1")
    data_api = DataApi(clusters, secrets, region="us-east-1", account_id=settings.account_id, node=0)
    handlers = rds_data_service.handlers(data_api)
    shipped = prometheus._wrap_direct
    copies: dict[str, Any] = {"plain": handlers, "same": dict(handlers)}
    prometheus._wrap_direct = _before  # type: ignore[assignment]
    copies["before"] = prometheus.ApiMetrics().instrument("rds-data", handlers)
    prometheus._wrap_direct = shipped
    copies["now"] = prometheus.ApiMetrics().instrument("rds-data", handlers)
    servers = {name: HttpServer(Gateway({"rds-data": h}, keys.secret_for)) for name, h in copies.items()}

    creds = dict(line.split(" = ", 1) for line in (data_dir / "credentials").read_text().splitlines() if " = " in line)
    cluster = clusters.cluster("default")
    assert cluster is not None
    arn = f"arn:aws:rds:us-east-1:{settings.account_id}:cluster:default"
    requests = inprocess.raw_requests(
        url, creds["aws_access_key_id"], creds["aws_secret_access_key"], arn, cluster["master_secret_arn"], args.rows
    )
    for server in servers.values():  # warm: pools, prepared statements, each copy's caches
        await inprocess.run_round(server, requests, 500, 8)
    names = list(servers)
    per: dict[str, list[float]] = {name: [] for name in names}
    for i in range(args.rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order if i % 2 == 0 else order[::-1]:
            per[name].append(await inprocess.run_round(servers[name], requests, args.requests, 8) * 1e6)
    print(f"{args.rounds} rounds of {args.requests} requests per copy, 8 in flight; µs CPU per request:")
    for name in names:
        diffs = [a - b for a, b in zip(per[name], per["plain"], strict=True)]
        print(
            f"  {name:>6}: median {statistics.median(per[name]):6.2f}; minus plain, median of rounds "
            f"{statistics.median(diffs):+.2f} (more in {sum(d > 0 for d in diffs)} of {len(diffs)})"
        )
    await data_api.close()
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rows", type=int, default=10000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="borealis-counting-"))
    proc, url = inprocess.start_borealis(work / "data", dict(os.environ, BOREALIS_WORKERS="1"))
    try:
        inprocess._load(url, work / "data", args.rows)
        import uvloop

        uvloop.run(measure(args, work / "data", url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
