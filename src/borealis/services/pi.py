"""The Performance Insights API (service ``pi``; boto3 speaks its JSON 1.1 protocol), over insights/.

GetResourceMetrics, DescribeDimensionKeys, GetDimensionKeyDetails, ListAvailableResourceMetrics and
ListAvailableResourceDimensions, for ServiceType ``RDS``, keyed by an instance's DbiResourceId. Refusals as
AWS answers them: InvalidArgumentException for a bad argument (a metric, group, dimension, period, time range
or token), ValidationException for a ServiceType or Identifier outside the model's constraints, and
NotAuthorizedException ("The resource db-... for service type RDS is not authorized for this account", as AWS
answers for an instance with Performance Insights off) for an identifier with no Performance Insights here: no
such instance, or one with it turned off, alike, so the answer does not tell which.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.insights import GROUPS, METRICS, Insights, InsightsError

__all__ = ["handlers"]

Params = dict[str, Any]

PERIODS = (1, 60, 300, 3600, 86400)
"""The PeriodInSeconds values AWS accepts."""
_STATISTICS = ("avg", "min", "max", "sum")
_TEXT_LIMIT = 500  # bytes of a dimension value in GetResourceMetrics and DescribeDimensionKeys, as on AWS
_STATEMENT_STATS = {
    "db.sql_tokenized.stats.calls_per_sec.avg": ("Calls per second", "Calls per second"),
    "db.sql_tokenized.stats.rows_per_sec.avg": ("Rows per second", "Rows per second"),
    "db.sql_tokenized.stats.total_time_per_sec.avg": ("Average active executions", "Milliseconds per second"),
    "db.sql_tokenized.stats.rows_per_call.avg": ("Rows per call", "Rows per call"),
    "db.sql_tokenized.stats.avg_latency_per_call.avg": ("Average latency of execution", "Milliseconds per call"),
}
_SERVICE_TYPES = ("RDS", "DOCDB")
_IDENTIFIER = re.compile(r"^[a-zA-Z0-9-]{1,256}$")
_DETAIL_GROUPS = {"db.sql": "db.sql.statement"}  # group -> the dimension its GroupIdentifier has details of
_ALL_DIMENSIONS = frozenset(d for dims in GROUPS.values() for d in dims)


def _invalid(message: str) -> AWSError:
    return AWSError("InvalidArgumentException", message)


def _epoch(value: dt.datetime) -> float:
    return value.timestamp()


def _when(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _truncate(value: str) -> str:
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= _TEXT_LIMIT:
        return value
    return raw[:_TEXT_LIMIT].decode("utf-8", "ignore")


def _dimensions(key: Sequence[tuple[str, str]]) -> dict[str, str]:
    return {name: _truncate(value) for name, value in key}


def _metric(name: Any, statistics: Sequence[str] = _STATISTICS) -> tuple[str, str]:
    """``db.load.avg`` -> (``db.load``, ``avg``): a metric served, with one of its ``statistics``."""
    text = str(name or "")
    base, _, statistic = text.rpartition(".")
    if base not in METRICS:
        known = ", ".join(f"{m}.avg" for m in METRICS)
        raise _invalid(f"The metric {text} is not valid: use one of {known}.")
    if statistic not in statistics:
        raise _invalid("The specified statistic is not a known statistic")  # AWS's words
    return base, statistic


def _group(spec: Mapping[str, Any] | None, what: str = "GroupBy") -> tuple[str, list[str] | None, int]:
    """(group, dimensions or None for all, limit) of a DimensionGroup."""
    if not spec:
        raise _invalid(f"{what} is required.")
    group = str(spec.get("Group", ""))
    if group not in GROUPS:
        raise _invalid(f"The dimension group {group} is not valid for db.load: use one of {', '.join(GROUPS)}.")
    dims = spec.get("Dimensions")
    if dims is not None:
        if not 1 <= len(dims) <= 10:
            raise _invalid(f"{what}.Dimensions must list between 1 and 10 dimensions.")
        for name in dims:
            if name not in GROUPS[group]:
                raise _invalid(f"The dimension {name} does not belong to the dimension group {group}.")
    limit = int(spec.get("Limit", 10))
    if not 1 <= limit <= 25:
        raise _invalid(f"{what}.Limit must be between 1 and 25.")
    return group, list(dims) if dims is not None else None, limit


def _filter(spec: Mapping[str, str] | None) -> dict[str, str]:
    where = dict(spec or {})
    for name in where:
        if name not in _ALL_DIMENSIONS:
            raise _invalid(f"The filter dimension {name} is not a dimension of db.load.")
    return where


def _window(p: Params) -> tuple[int, int, int]:
    """(aligned start, aligned end, period) of a request's StartTime, EndTime and PeriodInSeconds."""
    start, end = _epoch(p["StartTime"]), _epoch(p["EndTime"])
    if end <= start:
        raise _invalid("The parameter StartTime must be earlier than EndTime.")
    period = p.get("PeriodInSeconds")
    if period is None:
        # As AWS: a period that gives a modest number of data points (about 100 to 200 at most).
        period = next((s for s in PERIODS if (end - start) / s <= 200), PERIODS[-1])
    elif period not in PERIODS:
        raise _invalid(f"PeriodInSeconds must be one of {', '.join(str(s) for s in PERIODS)}.")
    aligned_start = int(start) - int(start) % period
    aligned_end = math.ceil(end / period) * period
    return aligned_start, aligned_end, int(period)


def _page(items: list[Any], p: Params, default: int) -> tuple[list[Any], str | None]:
    token = p.get("NextToken")
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise _invalid(f"The NextToken {token} is not valid.") from None
    if offset < 0 or offset > len(items):
        raise _invalid(f"The NextToken {token} is not valid.")
    size = int(p.get("MaxResults") or default)
    if not 0 <= size <= 25:
        raise _invalid("MaxResults must be between 0 and 25.")
    size = size or default
    page = items[offset : offset + size]
    return page, str(offset + size) if offset + size < len(items) else None


class _Pi:
    def __init__(self, insights: Insights) -> None:
        self.insights = insights

    def _instance(self, p: Params) -> str:
        """The instance id of the request's Identifier (a DbiResourceId), refused as AWS refuses it.

        AWS checks the members' constraints first (ValidationException), then answers NotAuthorizedException,
        with one message, for an identifier it has no Performance Insights data of: no such resource, an
        instance's name instead of its resource id, PI turned off, or a service type the resource is not of.
        """
        service = str(p.get("ServiceType", ""))
        if service not in _SERVICE_TYPES:
            raise AWSError(
                "ValidationException",
                f"1 validation error detected: Value '{service}' at 'serviceType' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(_SERVICE_TYPES)}]",
            )
        ident = str(p.get("Identifier", ""))
        if not _IDENTIFIER.match(ident):
            raise AWSError(
                "ValidationException",
                f"1 validation error detected: Value '{ident}' at 'identifier' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9-]+$",
            )
        try:
            if service == "RDS":
                return str(self.insights.instance_for(ident)["id"])
        except InsightsError:
            pass
        raise AWSError(
            "NotAuthorizedException",
            f"The resource {ident} for service type {service} is not authorized for this account",
        )

    async def get_resource_metrics(self, ctx: RequestContext, p: Params) -> dict[str, Any]:
        instance = self._instance(p)
        start, end, period = _window(p)
        queries = p.get("MetricQueries") or []
        if not 1 <= len(queries) <= 15:
            raise _invalid("MetricQueries must hold between 1 and 15 queries.")
        at_end = p.get("PeriodAlignment", "END_TIME") == "END_TIME"
        metrics: list[dict[str, Any]] = []
        for query in queries:
            name = str(query.get("Metric"))
            _, statistic = _metric(name)
            group = dims = None
            limit = 10
            if query.get("GroupBy"):
                group, dims, limit = _group(query["GroupBy"])
            series = self.insights.load(
                instance,
                start,
                end,
                period,
                group=group,
                dimensions=dims,
                where=_filter(query.get("Filter")),
                limit=limit,
                statistic=statistic,
            )
            for key, points in series:
                out_key: dict[str, Any] = {"Metric": name}
                if key is not None:
                    out_key["Dimensions"] = _dimensions(key)
                metrics.append(
                    {
                        "Key": out_key,
                        "DataPoints": [
                            {"Timestamp": _when(t + period if at_end else t), "Value": v} for t, v in points
                        ],
                    }
                )
        page, token = _page(metrics, p, 25)
        out: dict[str, Any] = {
            "AlignedStartTime": _when(start),
            "AlignedEndTime": _when(end),
            "Identifier": p["Identifier"],
            "MetricList": page,
        }
        if token:
            out["NextToken"] = token
        return out

    async def describe_dimension_keys(self, ctx: RequestContext, p: Params) -> dict[str, Any]:
        instance = self._instance(p)
        start, end, _ = _window(p)
        _metric(p.get("Metric"), ("avg",))  # DescribeDimensionKeys: db.load.avg or db.sampledload.avg
        group, dims, limit = _group(p.get("GroupBy"))
        partition = partition_dims = None
        if p.get("PartitionBy"):
            partition, partition_dims, _ = _group(p["PartitionBy"], "PartitionBy")
        extra = list(p.get("AdditionalMetrics") or [])
        for name in extra:
            if name not in _STATEMENT_STATS:
                raise _invalid(f"The additional metric {name} is not valid: use one of {', '.join(_STATEMENT_STATS)}.")
        if extra and group != "db.sql_tokenized":
            raise _invalid("AdditionalMetrics are available for the dimension group db.sql_tokenized only.")
        parts, rows = self.insights.top(
            instance,
            int(_epoch(p["StartTime"])),
            int(_epoch(p["EndTime"])),
            group,
            dimensions=dims,
            where=_filter(p.get("Filter")),
            partition=partition,
            partition_dimensions=partition_dims,
            limit=limit,
        )
        stats = self.insights.statement_stats(instance, start, end) if extra else {}
        seconds = max(1, end - start)
        keys: list[dict[str, Any]] = []
        for key, total, split in rows:
            item: dict[str, Any] = {"Dimensions": _dimensions(key), "Total": total}
            if partition is not None:
                item["Partitions"] = split
            if extra:
                found = stats.get(dict(key).get("db.sql_tokenized.db_id", ""))
                values = _statement_metrics(found, seconds)
                item["AdditionalMetrics"] = {name: values[name] for name in extra if name in values}
            keys.append(item)
        page, token = _page(keys, p, 25)
        out: dict[str, Any] = {
            "AlignedStartTime": _when(start),
            "AlignedEndTime": _when(end),
            "Keys": page,
        }
        if partition is not None:
            out["PartitionKeys"] = [{"Dimensions": _dimensions(k)} for k in parts]
        if token:
            out["NextToken"] = token
        return out

    async def get_dimension_key_details(self, ctx: RequestContext, p: Params) -> dict[str, Any]:
        instance = self._instance(p)
        group = str(p.get("Group", ""))
        if group not in _DETAIL_GROUPS:
            raise _invalid(f"The group {group} has no details here: use {', '.join(_DETAIL_GROUPS)}.")
        statement_dim = _DETAIL_GROUPS[group]
        requested = p.get("RequestedDimensions") or [statement_dim]
        for name in requested:
            if name not in (statement_dim, statement_dim.rsplit(".", 1)[1]):
                raise _invalid(f"The dimension {name} cannot be requested for {group}: use {statement_dim}.")
        text = self.insights.statement(instance, str(p.get("GroupIdentifier", "")))
        detail: dict[str, Any] = {"Dimension": statement_dim}
        if text is None:
            detail["Status"] = "UNAVAILABLE"
        else:
            detail.update({"Value": text, "Status": "AVAILABLE"})
        return {"Dimensions": [detail]}

    async def list_available_resource_metrics(self, ctx: RequestContext, p: Params) -> dict[str, Any]:
        self._instance(p)
        types = p.get("MetricTypes") or []
        if not types:
            raise _invalid("MetricTypes must name at least one metric type.")
        metrics: list[dict[str, Any]] = []
        for kind in types:
            if kind == "db":
                metrics += [
                    {"Metric": f"{m}.avg", "Description": d, "Unit": "Average active sessions"}
                    for m, d in METRICS.items()
                ]
            elif kind == "db.sql_tokenized.stats":
                metrics += [{"Metric": m, "Description": d, "Unit": u} for m, (d, u) in _STATEMENT_STATS.items()]
            elif kind not in ("os", "db.sql.stats"):
                raise _invalid(
                    f"The metric type {kind} is not valid: use os, db, db.sql.stats or db.sql_tokenized.stats."
                )
        page, token = _page(metrics, p, 25)
        out: dict[str, Any] = {"Metrics": page}
        if token:
            out["NextToken"] = token
        return out

    async def list_available_resource_dimensions(self, ctx: RequestContext, p: Params) -> dict[str, Any]:
        self._instance(p)
        names = p.get("Metrics") or []
        if not 1 <= len(names) <= 5:
            raise _invalid("Metrics must name between 1 and 5 metrics.")
        out = []
        for name in names:
            if name not in METRICS:
                raise _invalid(f"The metric {name} is not valid: use one of {', '.join(METRICS)}.")
            groups = [{"Group": g, "Dimensions": [{"Identifier": d} for d in dims]} for g, dims in GROUPS.items()]
            out.append({"Metric": name, "Groups": groups})
        page, token = _page(out, p, 25)
        answer: dict[str, Any] = {"MetricDimensions": page}
        if token:
            answer["NextToken"] = token
        return answer


def _statement_metrics(found: Any, seconds: int) -> dict[str, float]:
    if found is None:
        return {}
    out = {
        "db.sql_tokenized.stats.calls_per_sec.avg": found.calls / seconds,
        "db.sql_tokenized.stats.rows_per_sec.avg": found.rows / seconds,
        "db.sql_tokenized.stats.total_time_per_sec.avg": found.time_ms / seconds,
    }
    if found.calls:
        out["db.sql_tokenized.stats.rows_per_call.avg"] = found.rows / found.calls
        out["db.sql_tokenized.stats.avg_latency_per_call.avg"] = found.time_ms / found.calls
    return out


def handlers(insights: Insights) -> dict[str, Handler]:
    """The Performance Insights operations Borealis serves, by operation name."""
    pi = _Pi(insights)
    return {
        "GetResourceMetrics": pi.get_resource_metrics,
        "DescribeDimensionKeys": pi.describe_dimension_keys,
        "GetDimensionKeyDetails": pi.get_dimension_key_details,
        "ListAvailableResourceMetrics": pi.list_available_resource_metrics,
        "ListAvailableResourceDimensions": pi.list_available_resource_dimensions,
    }
