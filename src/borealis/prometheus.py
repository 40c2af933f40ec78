"""``GET /metrics``: Borealis's state in the Prometheus text format (version 0.0.4), for a scraper.

What is exposed, and where it comes from:

* ``borealis_api_requests_total{service, operation, code}``: AWS API calls the handlers answered, by AWS error
  code (``OK`` for a success). Calls refused before a handler runs (bad signature, unknown operation) are not
  counted. :func:`instrument` wraps the handlers the gateway serves.
* ``borealis_dataapi_request_duration_seconds{operation}``: a histogram of Data API calls' time in the handler.
* ``borealis_instance_up{cluster, instance, role}``: 1 while the instance's postgres runs and answered its last
  probe (the reconciler's observation); ``role`` is the topology's (writer / reader).
* ``borealis_replica_lag_milliseconds{cluster, instance}``: a reader's lag as its writer measures it.
* ``borealis_proxy_*{proxy}``: each RDS Proxy's counters and gauges (proxy/_stats.py), under snake-case names
  of RDS Proxy's CloudWatch metrics (latencies are averages since start, in microseconds).
* ``borealis_proxy_fastpath_queries_total{proxy}``: the part of QueryRequests that the proxy's C data path
  forwarded itself (the compiled build; always 0 in the pure-Python one).
* ``borealis_proxy_fastpath_borrows_total{proxy}``: connections that C data path lent to autocommit Queries
  parked in a saturated pool's queue.
* ``borealis_rds_<metric>{cluster | instance | proxy, role, ...}``: the newest value of each AWS/RDS series in
  the metrics store (CPUUtilization as ``borealis_rds_cpu_utilization``, ServerlessDatabaseCapacity,
  AuroraReplicaLag, ...), while at most three hours old (the store's one-second resolution); CloudWatch's
  dimensions become the labels cluster, instance, role, proxy.
* ``borealis_cloudwatch_latest{namespace, metric, <dimensions>}``: the same for the other namespaces.

With ``--workers`` above 1, the worker processes count the calls they serve in their own :class:`ApiMetrics`
and write them every second (when they changed) to ``DATA_DIR/api-metrics-<node>.json``
(:func:`write_snapshot`, atomically, mode 0600); the main process, which answers ``/metrics``, adds them to its
own (:func:`read_snapshots`). So the counters and the histogram cover every process, at most a second
late for the workers'. A file is a few KB (one entry per operation), rewritten whole; the main process
removes the files of a previous run before it starts its workers. Nothing here is secret: no SQL text,
no parameters, no user names or credentials; identifiers of clusters, instances and proxies are (see
docs/security.md).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from borealis.aws import AWSError, Direct, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.metrics import SECOND_RETENTION, MetricStore
from borealis.proxy import REGISTRY, MetricsRegistry

__all__ = [
    "CONTENT_TYPE",
    "ApiMetrics",
    "publish_snapshots",
    "read_snapshots",
    "remove_snapshots",
    "render",
    "write_snapshot",
]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds (seconds) of the Data API latency histogram's buckets, +Inf implied.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Op:
    """One operation's calls: successes, failures by AWS error code, and (timed) a latency histogram."""

    __slots__ = ("counts", "errors", "ok", "sum")

    def __init__(self, timed: bool) -> None:
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.counts = [0] * (len(BUCKETS) + 1) if timed else None
        self.sum = 0.0

    def add(self, ok: int, errors: Mapping[str, int], counts: list[int] | None, total: float) -> None:
        """Add another process's counts of the same operation."""
        self.ok += ok
        for code, n in errors.items():
            self.errors[str(code)] = self.errors.get(str(code), 0) + int(n)
        if self.counts is not None and counts is not None:
            self.counts = [a + int(b) for a, b in zip(self.counts, counts, strict=True)]
            self.sum += total

    def done(self, code: str | None, started: float) -> None:
        """Count a call (``code`` None: a success) that started at ``started`` (perf_counter)."""
        if code is None:
            self.ok += 1
        else:
            self.errors[code] = self.errors.get(code, 0) + 1
        counts = self.counts
        if counts is not None:
            took = _perf() - started
            counts[_bisect(BUCKETS, took)] += 1
            self.sum += took


_perf = time.perf_counter
_bisect = bisect.bisect_left


class ApiMetrics:
    """Counters of the AWS API calls and the Data API latency histogram, written by the wrapped handlers.

    Each operation has its own :class:`_Op`, so counting a call is an attribute increment, not a look-up.
    """

    def __init__(self) -> None:
        self.ops: dict[tuple[str, str], _Op] = {}

    def instrument(self, service: str, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        """``handlers`` wrapped to count each call by outcome (and time it, for the Data API ``rds-data``)."""
        out: dict[str, Handler] = {}
        for op, handler in handlers.items():
            stats = self.ops[(service, op)] = _Op(service == "rds-data")
            out[op] = _wrap_direct(stats, handler) if isinstance(handler, Direct) else _wrap(stats, handler)
        return out

    def calls(self) -> int:
        """Calls counted so far (to tell whether a snapshot changed)."""
        return sum(op.ok + sum(op.errors.values()) for op in self.ops.values())

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data (see :func:`write_snapshot`)."""
        return {
            f"{service}/{op}": {"ok": s.ok, "errors": dict(s.errors), "counts": s.counts, "sum": s.sum}
            for (service, op), s in self.ops.items()
        }

    def merged(self, snapshots: Iterable[Mapping[str, Any]]) -> ApiMetrics:
        """A new ApiMetrics holding this one's counts plus those of ``snapshots`` (other processes')."""
        out = ApiMetrics()
        for key, s in self.ops.items():
            out.ops[key] = _Op(s.counts is not None)
            out.ops[key].add(s.ok, s.errors, s.counts, s.sum)
        for snap in snapshots:
            for name, s in snap.items():
                service, _, op = str(name).partition("/")
                counts = s.get("counts")
                if counts is not None and len(counts) != len(BUCKETS) + 1:
                    continue  # another version's buckets: not comparable
                stats = out.ops.setdefault((service, op), _Op(counts is not None))
                stats.add(int(s.get("ok", 0)), s.get("errors") or {}, counts, float(s.get("sum", 0.0)))
        return out


_SNAPSHOT = "api-metrics-{node}.json"


def write_snapshot(api: ApiMetrics, data_dir: Path, node: int) -> None:
    """Write a worker's counters to ``DATA_DIR/api-metrics-<node>.json`` (atomically, owner-only)."""
    path = data_dir / _SNAPSHOT.format(node=node)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(api.snapshot(), f)
    os.replace(tmp, path)


def read_snapshots(data_dir: Path, nodes: Iterable[int]) -> list[dict[str, Any]]:
    """The counters the workers ``nodes`` last wrote (a missing or half-read file is skipped)."""
    out = []
    for node in nodes:
        try:
            data = json.loads((data_dir / _SNAPSHOT.format(node=node)).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def remove_snapshots(data_dir: Path) -> None:
    """Remove the workers' counter files (a previous run's, before new workers start)."""
    for path in data_dir.glob("api-metrics-*.json"):
        with contextlib.suppress(OSError):
            path.unlink()


async def publish_snapshots(api: ApiMetrics, data_dir: Path, node: int, interval: float = 1.0) -> None:
    """In a worker: write the counters every ``interval`` seconds when they changed, until cancelled (and once
    more then)."""
    written = -1
    try:
        while True:
            await asyncio.sleep(interval)
            calls = api.calls()
            if calls != written:
                await asyncio.to_thread(write_snapshot, api, data_dir, node)
                written = calls
    finally:
        if api.calls() != written:
            with contextlib.suppress(OSError):
                write_snapshot(api, data_dir, node)


def _wrap(stats: _Op, handler: Handler) -> Handler:
    async def counted(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        started = _perf()
        try:
            out = await handler(ctx, params)
        except AWSError as exc:
            stats.done(exc.code, started)
            raise
        except Exception:
            stats.done("InternalFailure", started)
            raise
        stats.done(None, started)
        return out

    return counted


def _wrap_direct(stats: _Op, handler: Direct) -> Direct:
    """A :class:`Direct` handler stays one (the gateway's task-free path), with the same ``start``: the gateway
    tells ``observe`` of each outcome, which costs less per request than wrapping ``start`` and its ``settle``
    in closures (one closure and two calls fewer; a success is counted inline)."""
    error, inner, counts = handler.error, handler.observe, stats.counts

    def failed(failure: BaseException, started: float) -> None:
        aws = failure if isinstance(failure, AWSError) else error(failure)
        stats.done(aws.code if aws is not None else "InternalFailure", started)

    def observe(failure: BaseException | None, started: float) -> None:
        if failure is not None:
            failed(failure, started)
            return
        stats.ok += 1  # as stats.done(None, started), inline
        if counts is not None:  # the list itself: merged() adds into new _Op objects, never into this one
            took = _perf() - started
            counts[_bisect(BUCKETS, took)] += 1
            stats.sum += took

    def chained(failure: BaseException | None, started: float) -> None:
        observe(failure, started)
        inner(failure, started)  # type: ignore[misc]

    return Direct(handler.start, error, handler.encode, observe=observe if inner is None else chained)


# ------------------------------------------------------------------------------------------- exposition


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, object]]) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


_Row = tuple[str, Mapping[str, object], float]
"""A sample: the suffix of the family's name (``_bucket``...), its labels, its value."""


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[_Row]) -> None:
        """One metric family: HELP, TYPE, then samples (suffix, labels, value); nothing if it has none."""
        rows = list(samples)
        if not rows:
            return
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in rows:
            self.lines.append(f"{name}{suffix}{_labels(labels.items())} {_number(value)}")


_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

#: CloudWatch dimensions of AWS/RDS and the labels they become (others keep their name, made label-safe).
_DIMENSION_LABELS = {
    "DBInstanceIdentifier": "instance",
    "DBClusterIdentifier": "cluster",
    "Role": "role",
    "ProxyName": "proxy",
    "Target": "target",
    "TargetGroup": "target_group",
    "TargetRole": "target_role",
}


def _snake(name: str) -> str:
    """CloudWatch's CamelCase in Prometheus's snake case: CPUUtilization -> cpu_utilization."""
    return _prom_name(_WORD.sub("_", name).lower())


def _prom_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def render(
    api: ApiMetrics,
    control: ControlPlane | None,
    store: MetricStore | None,
    proxies: MetricsRegistry = REGISTRY,
    *,
    now: float | None = None,
) -> bytes:
    """The text exposition of every family above."""
    now = time.time() if now is None else now
    w = _Writer()
    requests: list[_Row] = []
    hist: list[_Row] = []
    for (service, op), stats in sorted(api.ops.items()):
        for code, n in sorted([("OK", stats.ok), *stats.errors.items()]):
            if n:
                requests.append(("", {"service": service, "operation": op, "code": code}, n))
        if stats.counts is None:
            continue
        total = 0
        for bound, count in zip((*BUCKETS, math.inf), stats.counts, strict=True):
            total += count
            hist.append(("_bucket", {"operation": op, "le": _number(bound)}, total))
        hist.append(("_sum", {"operation": op}, stats.sum))
        hist.append(("_count", {"operation": op}, total))
    w.family(
        "borealis_api_requests_total",
        "counter",
        "AWS API calls answered by a handler, by service, operation and AWS error code (OK: success).",
        requests,
    )
    w.family(
        "borealis_dataapi_request_duration_seconds",
        "histogram",
        "Time the Data API spent on a call, from its handler's start to its answer.",
        hist,
    )
    if control is not None:
        up: list[_Row] = []
        lag: list[_Row] = []
        for view in control.topology.clusters():
            for m in view.members:
                obs = control.observation(m.id)
                running = obs is not None and obs.running and obs.healthy is not False
                up.append(("", {"cluster": view.id, "instance": m.id, "role": m.role}, 1 if running else 0))
                value = obs.lag_ms if obs is not None and obs.lag_ms is not None else m.lag_ms
                if not m.is_writer and value is not None:
                    lag.append(("", {"cluster": view.id, "instance": m.id}, value))
        w.family("borealis_instance_up", "gauge", "1 while the instance's postgres runs and answers probes.", up)
        w.family("borealis_replica_lag_milliseconds", "gauge", "A reader's replication lag behind its writer.", lag)
    by_metric: dict[str, list[_Row]] = {}
    for sample in proxies.snapshot():
        proxy = sample["Dimensions"][0]["Value"]
        by_metric.setdefault(sample["MetricName"], []).append(("", {"proxy": proxy}, float(sample["Value"])))
    for metric, rows in sorted(by_metric.items()):
        counter = metric.endswith(("Received", "Succeeded", "FailedAuth", "Closed", "Requests"))
        name = "borealis_proxy_" + _snake(metric) + ("_total" if counter else "")
        w.family(name, "counter" if counter else "gauge", f"RDS Proxy's {metric} (proxy/_stats.py).", rows)
    fast: list[_Row] = [("", {"proxy": name}, float(n)) for name, n in proxies.fastpath_queries().items()]
    w.family("borealis_proxy_fastpath_queries_total", "counter",
             "Queries the proxy's C data path forwarded itself (a part of QueryRequests; 0 in the pure build).",
             fast)  # fmt: skip
    lent: list[_Row] = [("", {"proxy": name}, float(n)) for name, n in proxies.fastpath_borrows().items()]
    w.family("borealis_proxy_fastpath_borrows_total", "counter",
             "Connections the proxy's C data path lent to the Queries parked in a saturated pool (0 in the pure "
             "build).", lent)  # fmt: skip
    if store is not None:
        rds: dict[str, list[_Row]] = {}
        latest: list[_Row] = []
        for s in store.series():
            if s.last < now - SECOND_RETENTION:
                continue
            at = math.floor(s.last)  # points are kept per whole second
            points = store.query(s.namespace, s.name, dict(s.dimensions), at, at + 1, 1, now=now)
            if not points or not points[-1].count:
                continue
            value = points[-1].sum / points[-1].count
            if s.namespace == "AWS/RDS":
                labels = {_DIMENSION_LABELS.get(k, _prom_name(k)): v for k, v in s.dimensions}
                rds.setdefault(s.name, []).append(("", labels, value))
                continue
            labels = {"namespace": s.namespace, "metric": s.name}
            labels.update({_prom_name(k): v for k, v in s.dimensions})
            latest.append(("", labels, value))
        for metric, rows in sorted(rds.items()):
            help_text = f"AWS/RDS {metric}: its newest value (one-second resolution, while under 3 hours old)."
            w.family("borealis_rds_" + _snake(metric), "gauge", help_text, rows)
        w.family(
            "borealis_cloudwatch_latest",
            "gauge",
            "The newest value of each other CloudWatch series (custom namespaces), while under 3 hours old.",
            latest,
        )
    return ("\n".join(w.lines) + "\n").encode()
