"""CloudWatch's read operations over the metric store: GetMetricStatistics, GetMetricData (MetricStat), ListMetrics.

Inputs and outputs are boto-style dictionaries (the service layer passes them through); rule violations raise
:class:`MetricsError` with the CloudWatch error code, which services/monitoring.py turns into the AWS error.
The rules are CloudWatch's (API reference of each operation):

- a period is 1, 5, 10, 20, 30 or a multiple of 60 seconds; periods under 60 s only reach 3 hours back;
- GetMetricStatistics returns at most 1,440 datapoints, needs Statistics or ExtendedStatistics (not more than 10
  in all), and its dimensions must match a metric's exactly; timestamps are the start of each period, the start
  time rounded down to the period's resolution;
- GetMetricData queries have ids that start with a lower-case letter and are unique; results come newest first
  (``ScanBy`` ``TimestampDescending``) unless asked otherwise;
- PutMetricData writes custom namespaces only (``AWS/`` is refused as CloudWatch does), at most 1,000 metrics a
  call, 30 dimensions a metric, 150 values a metric, timestamps from two weeks back to two hours ahead, and
  exactly one of Value, StatisticValues and Values per metric.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._store import SECOND_RETENTION, Datapoint, MetricStore

__all__ = ["MetricsError", "get_metric_data", "get_metric_statistics", "list_metrics", "put_metric_data"]

_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100(\.0{1,10})?)$")
_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_MAX_DATAPOINTS = 1440
_LIST_PAGE = 500
_UTC = dt.UTC


class MetricsError(Exception):
    """A request CloudWatch would refuse; ``code`` is CloudWatch's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def _dimensions(items: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    dims: dict[str, str] = {}
    for item in items or ():
        name, value = item.get("Name"), item.get("Value")
        if name is None or value is None:
            raise MetricsError("InvalidParameterValue", "A dimension needs both a Name and a Value.")
        if name in dims:
            raise MetricsError("InvalidParameterValue", f"The dimension {name} appears more than once.")
        dims[str(name)] = str(value)
    return dims


def _check_period(period: Any) -> int:
    if not isinstance(period, int) or period <= 0:
        raise MetricsError("InvalidParameterValue", "The parameter Period must be a positive integer.")
    if period not in (1, 5, 10, 20, 30) and period % 60:
        raise MetricsError(
            "InvalidParameterValue", "The parameter Period must be 1, 5, 10, 20, 30, or a multiple of 60."
        )
    return period


def _aligned_start(start: float, period: int) -> float:
    """The start rounded down: to the second for high-resolution periods, to the minute otherwise."""
    resolution = 1 if period < 60 else 60
    return math.floor(start / resolution) * resolution


def _timestamp(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, _UTC)


def get_metric_statistics(store: MetricStore, p: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """GetMetricStatistics: the statistics of one metric per period."""
    start, end = _epoch(p["StartTime"]), _epoch(p["EndTime"])
    if start >= end:
        raise MetricsError("InvalidParameterValue", "The parameter StartTime must be less than the parameter EndTime.")
    period = _check_period(p.get("Period"))
    statistics = list(p.get("Statistics") or [])
    extended = list(p.get("ExtendedStatistics") or [])
    if not statistics and not extended:
        raise MetricsError("MissingParameter", "Must specify either the Statistics or ExtendedStatistics parameter.")
    if len(statistics) + len(extended) > 10:
        raise MetricsError("InvalidParameterCombination", "At most 10 statistics can be requested at once.")
    for name in statistics:
        if name not in _STATISTICS:
            raise MetricsError("InvalidParameterValue", f"The statistic {name} is not valid.")
    for name in extended:
        if not _PERCENTILE.match(str(name)):
            raise MetricsError("InvalidParameterValue", f"The extended statistic {name} is not valid.")
    start = _aligned_start(start, period)
    wanted = math.ceil((end - start) / period)
    if wanted > _MAX_DATAPOINTS:
        raise MetricsError(
            "InvalidParameterCombination",
            f"You have requested up to {wanted} datapoints, which exceeds the limit of {_MAX_DATAPOINTS}. "
            "You may reduce the datapoints requested by increasing Period, or decreasing the time range.",
        )
    namespace, name = p["Namespace"], p["MetricName"]
    dims = _dimensions(p.get("Dimensions"))
    series = store.find(namespace, name, dims)
    unit = p.get("Unit")
    if series is None or (unit is not None and unit != series.unit):
        return {"Label": name, "Datapoints": []}
    datapoints = []
    for point in store.query(namespace, name, dims, start, end, period, now=now):
        out: dict[str, Any] = {"Timestamp": _timestamp(point.at), "Unit": series.unit}
        for stat in statistics:
            out[stat] = point.statistic(stat)
        if extended:
            values = {e: point.statistic(e) for e in extended}
            out["ExtendedStatistics"] = {k: v for k, v in values.items() if v is not None}
        datapoints.append(out)
    return {"Label": name, "Datapoints": datapoints}


def _stat_value(point: Datapoint, stat: str) -> float | None:
    if stat == "SampleCount" or stat in _STATISTICS or _PERCENTILE.match(stat):
        return point.statistic(stat)
    return None


def get_metric_data(store: MetricStore, p: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """GetMetricData for MetricStat queries (metric math is refused with a clear message)."""
    if p.get("NextToken"):
        raise MetricsError("InvalidNextToken", "The NextToken is not valid.")
    start, end = _epoch(p["StartTime"]), _epoch(p["EndTime"])
    if start >= end:
        raise MetricsError("ValidationError", "The parameter StartTime must be less than the parameter EndTime.")
    queries = list(p.get("MetricDataQueries") or [])
    if not queries or len(queries) > 500:
        raise MetricsError("ValidationError", "MetricDataQueries must hold between 1 and 500 queries.")
    ids = [q.get("Id", "") for q in queries]
    for ident in ids:
        if not _QUERY_ID.match(ident):
            raise MetricsError(
                "ValidationError",
                f"The value {ident} for parameter MetricDataQueries.member.Id is not valid: it must start with a "
                "lowercase letter and hold only letters, numbers and underscores.",
            )
    if len(set(ids)) != len(ids):
        raise MetricsError("ValidationError", "The Ids of MetricDataQueries must be unique.")
    descending = p.get("ScanBy", "TimestampDescending") != "TimestampAscending"
    budget = int(p.get("MaxDatapoints") or 100_800)
    results = []
    for q in queries:
        stat_query = q.get("MetricStat")
        if q.get("Expression") is not None:
            raise MetricsError("ValidationError", f"Query {q['Id']}: metric math expressions are not supported yet.")
        if stat_query is None:
            raise MetricsError("ValidationError", f"Query {q['Id']}: exactly one of MetricStat and Expression.")
        metric = stat_query["Metric"]
        period = _check_period(stat_query.get("Period"))
        stat = str(stat_query.get("Stat", ""))
        if stat not in _STATISTICS and not _PERCENTILE.match(stat):
            raise MetricsError("ValidationError", f"Query {q['Id']}: the statistic {stat} is not supported.")
        namespace, name = metric.get("Namespace", ""), metric.get("MetricName", "")
        dims = _dimensions(metric.get("Dimensions"))
        series = store.find(namespace, name, dims)
        unit = stat_query.get("Unit")
        points: list[tuple[float, float]] = []
        if series is not None and (unit is None or unit == series.unit):
            for point in store.query(namespace, name, dims, _aligned_start(start, period), end, period, now=now):
                value = _stat_value(point, stat)
                if value is not None:
                    points.append((point.at, value))
        if descending:
            points.reverse()
        status = "Complete"
        if len(points) > budget:
            points, status = points[:budget], "PartialData"
        budget -= len(points)
        if q.get("ReturnData", True) is False:
            continue
        results.append(
            {
                "Id": q["Id"],
                "Label": q.get("Label") or name,
                "Timestamps": [_timestamp(t) for t, _ in points],
                "Values": [v for _, v in points],
                "StatusCode": status,
            }
        )
    messages = []
    if start < now - SECOND_RETENTION and any(q["MetricStat"].get("Period", 60) < 60 for q in queries):
        messages.append({"Code": "PartialData", "Value": "Data with periods under 60 s is kept for 3 hours."})
    return {"MetricDataResults": results, "Messages": messages}


def list_metrics(store: MetricStore, p: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """ListMetrics with Namespace / MetricName / Dimensions filters (a dimension filter may omit its value),
    RecentlyActive (PT3H) and NextToken paging (500 a page)."""
    filters = []
    for item in p.get("Dimensions") or ():
        if item.get("Name") is None:
            raise MetricsError("InvalidParameterValue", "A dimension filter needs a Name.")
        filters.append((str(item["Name"]), item.get("Value")))
    recently = p.get("RecentlyActive")
    if recently is not None and recently != "PT3H":
        raise MetricsError("InvalidParameterValue", "RecentlyActive must be PT3H.")
    token = p.get("NextToken")
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise MetricsError("InvalidParameterValue", "The NextToken is not valid.") from None
    found = []
    for s in store.series(p.get("Namespace"), p.get("MetricName")):
        dims = dict(s.dimensions)
        if any(name not in dims or (value is not None and dims[name] != value) for name, value in filters):
            continue
        if recently is not None and s.last < now - SECOND_RETENTION:
            continue
        found.append(
            {
                "Namespace": s.namespace,
                "MetricName": s.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in s.dimensions],
            }
        )
    page = found[offset : offset + _LIST_PAGE]
    out: dict[str, Any] = {"Metrics": page}
    if offset + _LIST_PAGE < len(found):
        out["NextToken"] = str(offset + _LIST_PAGE)
    return out


_UNITS = frozenset(  # StandardUnit in the service model
    [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ]
)
_MAX_METRICS = 1000
_MAX_DIMENSIONS = 30
_MAX_VALUES = 150
_VALUE_LIMIT = 2.0**360
_PAST = 14 * 86400
_FUTURE = 2 * 3600


def _value(field: str, value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or abs(number) > _VALUE_LIMIT:
        raise MetricsError("InvalidParameterValue", f"The value {value} for parameter {field} is invalid.")
    return number


def _datum(
    field: str, d: Mapping[str, Any], now: float
) -> tuple[str, dict[str, str], str, float, list[tuple[float, float, float, float]]]:
    """One MetricData entry checked: name, dimensions, unit, time and its (count, sum, min, max) sets."""
    name = d.get("MetricName")
    if not name:
        raise MetricsError("MissingParameter", f"The parameter {field}.MetricName is required.")
    items = list(d.get("Dimensions") or ())
    if len(items) > _MAX_DIMENSIONS:
        raise MetricsError(
            "InvalidParameterValue",
            f"The collection {field}.Dimensions must not have a size greater than {_MAX_DIMENSIONS}.",
        )
    dims = _dimensions(items)
    unit = str(d.get("Unit") or "None")
    if unit not in _UNITS:
        raise MetricsError("InvalidParameterValue", f"The value {unit} for parameter {field}.Unit is invalid.")
    resolution = d.get("StorageResolution", 60)
    if resolution not in (1, 60):
        raise MetricsError(
            "InvalidParameterValue", f"The value {resolution} for parameter {field}.StorageResolution is invalid."
        )
    at = _epoch(d["Timestamp"]) if d.get("Timestamp") is not None else now
    if at < now - _PAST:
        raise MetricsError(
            "InvalidParameterValue", f"The parameter {field}.Timestamp must specify a time within the past two weeks."
        )
    if at > now + _FUTURE:
        raise MetricsError(
            "InvalidParameterValue",
            f"The parameter {field}.Timestamp must specify a time no more than two hours in the future.",
        )
    given = [k for k in ("Value", "StatisticValues", "Values") if d.get(k) is not None]
    if not given:
        raise MetricsError(
            "InvalidParameterCombination",
            f"At least one of the parameters {field}.Value and {field}.StatisticValues must be specified.",
        )
    if len(given) > 1:
        raise MetricsError(
            "InvalidParameterCombination",
            f"The parameters {field}.{given[0]} and {field}.{given[1]} are mutually exclusive and you have "
            "specified both.",
        )
    if d.get("Counts") is not None and given != ["Values"]:
        raise MetricsError("InvalidParameterCombination", f"The parameter {field}.Counts needs {field}.Values.")
    sets: list[tuple[float, float, float, float]] = []
    if given == ["Value"]:
        v = _value(f"{field}.Value", d["Value"])
        sets.append((1.0, v, v, v))
    elif given == ["StatisticValues"]:
        st = d["StatisticValues"]
        count = _value(f"{field}.StatisticValues.SampleCount", st["SampleCount"])
        total = _value(f"{field}.StatisticValues.Sum", st["Sum"])
        lo = _value(f"{field}.StatisticValues.Minimum", st["Minimum"])
        hi = _value(f"{field}.StatisticValues.Maximum", st["Maximum"])
        if count <= 0 or lo > hi:
            raise MetricsError(
                "InvalidParameterValue",
                f"The parameter {field}.StatisticValues needs a positive SampleCount and Minimum <= Maximum.",
            )
        sets.append((count, total, lo, hi))
    else:
        values = [_value(f"{field}.Values", v) for v in d["Values"]]
        counts = [_value(f"{field}.Counts", c) for c in d.get("Counts") or [1.0] * len(values)]
        if len(values) > _MAX_VALUES:
            raise MetricsError(
                "InvalidParameterValue",
                f"The collection {field}.Values must not have a size greater than {_MAX_VALUES}.",
            )
        if len(counts) != len(values) or any(c < 0 for c in counts):
            raise MetricsError(
                "InvalidParameterValue",
                f"The parameters {field}.Values and {field}.Counts must be arrays of the same length "
                "(counts not negative).",
            )
        sets.extend((c, v * c, v, v) for v, c in zip(values, counts, strict=True) if c > 0)
    return str(name), dims, unit, at, sets


def put_metric_data(store: MetricStore, p: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """PutMetricData: custom metrics, checked as a whole before any is written (a refusal writes nothing)."""
    namespace = p.get("Namespace")
    if not namespace:
        raise MetricsError("MissingParameter", "The parameter Namespace is required.")
    if str(namespace).startswith("AWS/") or str(namespace).startswith(":") or not str(namespace).strip():
        raise MetricsError("InvalidParameterValue", f"The value {namespace} for parameter Namespace is invalid.")
    data = list(p.get("MetricData") or ())
    if not data:
        raise MetricsError("MissingParameter", "The parameter MetricData is required.")
    if len(data) > _MAX_METRICS:
        raise MetricsError(
            "InvalidParameterValue", f"The collection MetricData must not have a size greater than {_MAX_METRICS}."
        )
    checked = [_datum(f"MetricData.member.{i}", d, now) for i, d in enumerate(data, 1)]
    for name, dims, unit, at, sets in checked:
        for count, total, lo, hi in sets:
            store.put_statistics(str(namespace), name, dims, unit, at, count, total, lo, hi)
    return {}
