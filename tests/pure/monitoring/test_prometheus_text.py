"""The /metrics exposition without a server: prometheus_client parses it; counters, histograms, proxy series."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from borealis.aws import AWSError, Direct, RequestContext
from borealis.metrics import MetricStore
from borealis.prometheus import ApiMetrics, read_snapshots, remove_snapshots, render, write_snapshot
from borealis.proxy import MetricsRegistry


def _families(text: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def test_wrapped_handlers_count_outcomes_and_time_the_data_api() -> None:
    api = ApiMetrics()

    async def ok(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def refused(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        raise AWSError("BadRequestException", "no")

    def start(args: dict[str, Any], settle: Any) -> dict[str, Any] | None:
        if args.get("later"):
            settle(AWSError("DatabaseErrorException", "later"))
            return None
        return {"records": []}

    wrapped = api.instrument("rds-data", {"A": ok, "B": refused, "ExecuteStatement": Direct(start, lambda e: None)})
    assert isinstance(wrapped["ExecuteStatement"], Direct)  # the gateway's task-free path still applies
    ctx = RequestContext("rds-data", "A", "us-east-1", "AKID", "req")
    asyncio.run(wrapped["A"](ctx, {}))
    with pytest.raises(AWSError):
        asyncio.run(wrapped["B"](ctx, {}))
    direct = wrapped["ExecuteStatement"]
    assert isinstance(direct, Direct)
    assert direct.start is start  # not wrapped: whoever serves it tells ``observe`` (the gateway, or as here)
    assert asyncio.run(direct(ctx, {})) == {"records": []}
    with pytest.raises(AWSError):
        asyncio.run(direct(ctx, {"later": True}))

    fams = _families(render(api, None, None, MetricsRegistry()))
    counts = {(s.labels["operation"], s.labels["code"]): s.value for s in fams["borealis_api_requests"].samples}
    assert counts == {
        ("A", "OK"): 1,
        ("B", "BadRequestException"): 1,
        ("ExecuteStatement", "OK"): 1,
        ("ExecuteStatement", "DatabaseErrorException"): 1,
    }
    hist = fams["borealis_dataapi_request_duration_seconds"]
    total = {s.labels["operation"]: s.value for s in hist.samples if s.name.endswith("_count")}
    assert total == {"A": 1, "B": 1, "ExecuteStatement": 2}
    buckets = [s.value for s in hist.samples if s.name.endswith("_bucket") and s.labels["operation"] == "A"]
    assert buckets == sorted(buckets) and buckets[-1] == 1  # cumulative, +Inf holds them all


def test_proxy_series_and_label_escaping() -> None:
    registry = MetricsRegistry()
    stats = registry.stats('odd"name\\x')
    stats.client_connections = 2
    stats.client_connections_received = 7
    fams = _families(render(ApiMetrics(), None, None, registry))
    assert fams["borealis_proxy_client_connections"].type == "gauge"
    assert fams["borealis_proxy_client_connections"].samples[0].value == 2
    assert fams["borealis_proxy_client_connections"].samples[0].labels == {"proxy": 'odd"name\\x'}
    received = fams["borealis_proxy_client_connections_received"]
    assert received.type == "counter" and received.samples[0].value == 7


def test_the_latest_value_of_each_recent_series(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    try:
        now = 1_800_000_000.0
        dims = {"DBInstanceIdentifier": "i-1"}
        store.put("AWS/RDS", "ServerlessDatabaseCapacity", dims, 1.0, "Count", now - 2.4)
        store.put("AWS/RDS", "ServerlessDatabaseCapacity", dims, 2.5, "Count", now - 0.6)
        store.put("AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "old"}, 9.0, "Percent", now - 4 * 3600)
        store.put("AWS/RDS", "CPUUtilization", {"DBClusterIdentifier": "c", "Role": "WRITER"}, 7.0, "Percent", now - 1)
        store.put("Custom/App", "Orders", {"Shop": "north"}, 3.0, "Count", now - 1)
        store.flush(now)
        fams = _families(render(ApiMetrics(), None, store, MetricsRegistry(), now=now))
        capacity = fams["borealis_rds_serverless_database_capacity"].samples
        assert [(s.labels, s.value) for s in capacity] == [({"instance": "i-1"}, 2.5)]
        cpu = fams["borealis_rds_cpu_utilization"].samples  # the 4-hour-old instance series is left out
        assert [(s.labels, s.value) for s in cpu] == [({"cluster": "c", "role": "WRITER"}, 7.0)]
        custom = fams["borealis_cloudwatch_latest"].samples
        assert [(s.labels, s.value) for s in custom] == [
            ({"namespace": "Custom/App", "metric": "Orders", "Shop": "north"}, 3.0)
        ]
    finally:
        store.close()


def test_worker_counts_are_added_from_their_files(tmp_path: Path) -> None:
    async def ok(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def refused(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        raise AWSError("BadRequestException", "no")

    main, worker = ApiMetrics(), ApiMetrics()
    ctx = RequestContext("rds-data", "ExecuteStatement", "us-east-1", "AKID", "req")
    on_main = main.instrument("rds-data", {"ExecuteStatement": ok})
    on_worker = worker.instrument("rds-data", {"ExecuteStatement": ok, "BeginTransaction": refused})
    asyncio.run(on_main["ExecuteStatement"](ctx, {}))
    for _ in range(3):
        asyncio.run(on_worker["ExecuteStatement"](ctx, {}))
    with pytest.raises(AWSError):
        asyncio.run(on_worker["BeginTransaction"](ctx, {}))
    assert worker.calls() == 4
    write_snapshot(worker, tmp_path, 1)
    assert (tmp_path / "api-metrics-1.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "api-metrics-2.json").write_text("{half a fi")  # being replaced: skipped
    merged = main.merged(read_snapshots(tmp_path, [1, 2, 3]))
    families = _families(render(merged, None, None, MetricsRegistry()))
    requests = {(s.labels["operation"], s.labels["code"]): s.value for s in families["borealis_api_requests"].samples}
    assert requests == {("ExecuteStatement", "OK"): 4, ("BeginTransaction", "BadRequestException"): 1}
    counts = [s for s in families["borealis_dataapi_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert {s.labels["operation"]: s.value for s in counts} == {"ExecuteStatement": 4, "BeginTransaction": 1}
    assert main.calls() == 1  # merging leaves the main process's own counters alone
    remove_snapshots(tmp_path)
    assert read_snapshots(tmp_path, [1, 2]) == []
