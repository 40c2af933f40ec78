"""CloudWatch's read operations over the metric store: GetMetricStatistics, GetMetricData, ListMetrics.

Inputs and outputs are boto-style dictionaries (the service layer passes them through); rule violations raise
:class:`MetricsError` with the CloudWatch error code, which services/monitoring.py turns into the AWS error.
The rules are CloudWatch's (API reference of each operation):

- a period is 1, 5, 10, 20, 30 or a multiple of 60 seconds; periods under 60 s only reach 3 hours back;
- GetMetricStatistics returns at most 1,440 datapoints, needs Statistics or ExtendedStatistics (not more than 10
  in all), and its dimensions must match a metric's exactly; timestamps are the start of each period, the start
  time rounded down to the period's resolution;
- GetMetricData queries have ids that start with a lower-case letter and are unique, at most 500 of them; each
  has a MetricStat or a metric math Expression (metrics/_math.py), which may name other queries by Id (no
  cycles); results come newest first (``ScanBy`` ``TimestampDescending``) unless asked otherwise, those with
  ``ReturnData`` false left out, an expression giving an array returning one result per series (same Id);
- PutMetricData writes custom namespaces only (``AWS/`` is refused as CloudWatch does), at most 1,000 metrics a
  call, 30 dimensions a metric, 150 values a metric, timestamps from two weeks back to two hours ahead, and
  exactly one of Value, StatisticValues and Values per metric.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _math, _stats
from ._store import SECOND_RETENTION, Datapoint, MetricStore

__all__ = [
    "MetricsError",
    "check_queries",
    "get_metric_data",
    "get_metric_statistics",
    "list_metrics",
    "put_metric_data",
    "run_queries",
]

_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100(\.0{1,10})?)$")
_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_MAX_DATAPOINTS = 1440
_MAX_QUERIES = 500
_MAX_RESULT_POINTS = 100_800  # GetMetricData: "up to 100,800 data points" a call
_MAX_READ_POINTS = 500_000  # periods read from the store for one call, all metric queries together (memory)
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
    for n, name in enumerate(statistics, 1):
        if name not in _STATISTICS:
            # AWS's words (a percentile belongs in ExtendedStatistics).
            raise MetricsError(
                "InvalidParameterValue",
                f"The parameter Statistics.member.{n}.<list element> must be a value in the set "
                f"[{', '.join(_STATISTICS)}].",
            )
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
    wanted_unit = p.get("Unit")
    datapoints = []
    # CloudWatch aggregates by unit: without a Unit, one datapoint per unit a period has data in.
    for unit in store.units(namespace, name, dims):
        if wanted_unit is not None and unit != wanted_unit:
            continue
        points = store.query(namespace, name, dims, start, end, period, unit=unit, percentiles=bool(extended), now=now)
        for point in points:
            out: dict[str, Any] = {"Timestamp": _timestamp(point.at), "Unit": unit}
            for stat in statistics:
                out[stat] = point.statistic(stat)
            if extended:
                values = {e: point.statistic(e) for e in extended}
                out["ExtendedStatistics"] = {k: v for k, v in values.items() if v is not None}
            datapoints.append(out)
    return {"Label": name, "Datapoints": datapoints}


def _stat_value(point: Datapoint, stat: str) -> float | None:
    if stat in _STATISTICS or _stats.parse(stat) is not None:
        return point.statistic(stat)
    return None


@dataclass(frozen=True, slots=True)
class _Query:
    """One checked MetricDataQuery: its Id, label, whether it is returned, and a metric or an expression."""

    id: str
    label: str | None
    returned: bool
    period: int
    stat: Mapping[str, Any] | None = None
    node: _math.Node | None = None


def _check_query(q: Mapping[str, Any], n: int, field: str) -> _Query:
    ident = str(q.get("Id", ""))
    if not _QUERY_ID.match(ident):
        raise MetricsError(
            "ValidationError",
            f"The value {ident} for parameter {field}.member.{n}.Id is not valid: it must start with a "
            "lowercase letter and hold only letters, numbers and underscores.",
        )
    stat_query, expression = q.get("MetricStat"), q.get("Expression")
    if stat_query is None and expression is None:
        raise MetricsError("ValidationError", f"The parameter {field}.member.{n}.MetricStat is required.\n")
    if stat_query is not None and expression is not None:
        raise MetricsError(
            "ValidationError",
            f"The parameters {field}.member.{n}.MetricStat and {field}.member.{n}.Expression are mutually "
            "exclusive and you have specified both.",
        )
    label, returned = q.get("Label"), q.get("ReturnData", True) is not False
    if stat_query is None:
        try:
            node = _math.parse(str(expression))
        except _math.MathError as exc:
            raise MetricsError("ValidationError", f"Error in expression {ident}: {exc}.") from None
        period = q.get("Period")
        return _Query(ident, label, returned, 0 if period is None else _check_period(period), node=node)
    period = _check_period(stat_query.get("Period"))
    stat = str(stat_query.get("Stat", ""))
    if stat not in _STATISTICS and _stats.parse(stat) is None:
        raise MetricsError(
            "ValidationError",
            f"The value {stat} for parameter {field}.member.{n}.MetricStat.Stat is not a valid statistic.",
        )
    _dimensions(stat_query.get("Metric", {}).get("Dimensions"))
    return _Query(ident, label, returned, period, stat=stat_query)


def check_queries(queries: Sequence[Mapping[str, Any]], field: str = "MetricDataQueries") -> list[_Query]:
    """The queries checked (Ids, one of MetricStat and Expression, statistics, periods, expression syntax, the
    Ids an expression names, no cycles), in the order to evaluate them; MetricsError (ValidationError) if not."""
    if not queries or len(queries) > _MAX_QUERIES:
        raise MetricsError("ValidationError", f"{field} must hold between 1 and {_MAX_QUERIES} queries.")
    checked = [_check_query(q, n, field) for n, q in enumerate(queries, 1)]
    by_id = {q.id: q for q in checked}
    if len(by_id) != len(checked):
        raise MetricsError("ValidationError", f"The Ids of {field} must be unique.")
    metric_ids = [q.id for q in checked if q.stat is not None]
    needs: dict[str, set[str]] = {}
    for q in checked:
        if q.node is None:
            continue
        names = _math.references(q.node)
        unknown = sorted(names - by_id.keys())
        if unknown:
            raise MetricsError("ValidationError", f"Error in expression {q.id}: Unrecognized metric id {unknown[0]}.")
        if q.id in names:
            raise MetricsError("ValidationError", f"Error in expression {q.id}: it refers to itself.")
        needs[q.id] = names | (set(metric_ids) if _math.uses_metrics(q.node) else set())
    # Kahn's order: an expression after every query it names; what is left over is a cycle.
    order = [q for q in checked if q.node is None]
    done = {q.id for q in order}
    waiting = [q for q in checked if q.node is not None]
    while waiting:
        ready = [q for q in waiting if needs[q.id] <= done]
        if not ready:
            cycle = ", ".join(q.id for q in waiting)
            raise MetricsError("ValidationError", f"The expressions {cycle} refer to each other in a cycle.")
        order.extend(ready)
        done.update(q.id for q in ready)
        waiting = [q for q in waiting if q.id not in done]
    return order


def run_queries(
    store: MetricStore, order: Sequence[_Query], start: float, end: float, *, now: float
) -> dict[str, _math.Value]:
    """Every query's value (metrics read from the store, expressions evaluated), by Id; series oldest first."""
    # Extended statistics over minutes read the one-second rows of the last 3 hours: count those too.
    seconds = max(0.0, min(end, now) - max(start, now - SECOND_RETENTION))
    wanted = sum(
        math.ceil((end - start) / q.period)
        + (math.ceil(seconds) if q.period >= 60 and str(q.stat.get("Stat")) not in _STATISTICS else 0)
        for q in order
        if q.stat is not None
    )
    if wanted > _MAX_READ_POINTS:
        raise MetricsError(
            "ValidationError",
            f"The queries ask for up to {wanted} datapoints in all, more than {_MAX_READ_POINTS}: use longer "
            "periods, a shorter time range or fewer queries.",
        )
    values: dict[str, _math.Value] = {}
    metrics: list[tuple[str, _math.TimeSeries]] = []
    default_period = min((q.period for q in order if q.stat is not None), default=60)
    grid_start = _aligned_start(start, min((q.period for q in order if q.period), default=60))
    grid = _math.Grid(grid_start, end)
    budget = _math.Budget()  # one for all the request's expressions
    for q in order:
        if q.stat is not None:
            series = _read_metric(store, q, start, end, now)
            values[q.id] = series
            metrics.append((q.id, series))
            continue
        assert q.node is not None
        period = q.period or default_period
        try:
            value = _math.evaluate(
                q.node,
                lookup=values.__getitem__,
                metrics=lambda needle: [s for i, s in metrics if needle is None or needle in i],
                grid=grid,
                period=period,
                budget=budget,
            )
            if isinstance(value, float):  # a number drawn over the time range, as the console draws it
                value = _math.evaluate(
                    _math.Call("TIME_SERIES", (_math.Num(value),)),
                    lookup=values.__getitem__,
                    metrics=lambda needle: [],
                    grid=grid,
                    period=period,
                )
        except _math.MathError as exc:
            raise MetricsError("ValidationError", f"Error in expression {q.id}: {exc}.") from None
        values[q.id] = value
    return values


def _read_metric(store: MetricStore, q: _Query, start: float, end: float, now: float) -> _math.TimeSeries:
    assert q.stat is not None
    metric = q.stat.get("Metric", {})
    namespace, name = str(metric.get("Namespace", "")), str(metric.get("MetricName", ""))
    dims = _dimensions(metric.get("Dimensions"))
    stat = str(q.stat.get("Stat"))
    unit = q.stat.get("Unit")
    points: list[tuple[float, float]] = []
    for point in store.query(
        namespace,
        name,
        dims,
        _aligned_start(start, q.period),
        end,
        q.period,
        unit=None if unit is None else str(unit),
        percentiles=stat not in _STATISTICS,
        now=now,
    ):
        value = _stat_value(point, stat)
        if value is not None:
            points.append((point.at, value))
    return _math.TimeSeries(q.label or name, q.period, tuple(points))


def get_metric_data(store: MetricStore, p: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """GetMetricData: MetricStat queries and metric math expressions (metrics/_math.py), paged by MaxDatapoints.

    A page holds at most MaxDatapoints points; the result it cuts is PartialData and the NextToken goes on from
    there (results whole on an earlier page are not repeated). Labels may hold dynamic values (``${MAX}``,
    ``${PROP('Dim.X')}``, ...), computed over each result's whole time range, times in LabelOptions' Timezone.
    """
    start, end = _epoch(p["StartTime"]), _epoch(p["EndTime"])
    if start >= end:
        raise MetricsError("ValidationError", "The parameter StartTime must be less than the parameter EndTime.")
    resume = _resume_at(p.get("NextToken"))
    zone = _timezone(p.get("LabelOptions"))
    queries = list(p.get("MetricDataQueries") or [])
    order = check_queries(queries)
    values = run_queries(store, order, start, end, now=now)
    descending = p.get("ScanBy", "TimestampDescending") != "TimestampAscending"
    budget = int(p.get("MaxDatapoints") or _MAX_RESULT_POINTS)
    if budget < 1:
        raise MetricsError("ValidationError", "The parameter MaxDatapoints must be at least 1.")
    every: list[tuple[str, str, list[tuple[float, float]]]] = []
    position = {str(x.get("Id")): n for n, x in enumerate(queries)}
    for q in sorted(order, key=lambda q: position[q.id]):
        if not q.returned:
            continue
        value = values[q.id]
        if isinstance(value, _math.TimeSeries):
            default = str(q.stat.get("Metric", {}).get("MetricName", "")) if q.stat is not None else q.id
            labelled = [(_label(q.label or default, default, value, q, zone, now), value)]
        else:
            assert isinstance(value, _math.Array)
            labelled = [
                (_label(f"{q.label} {s.label}" if q.label else s.label, s.label, s, q, zone, now), s)
                for s in value.items
            ]
        for label, series in labelled:
            points = list(series.points)
            if descending:
                points.reverse()
            every.append((q.id, label, points))
    if resume[0] > len(every) or (resume[0] < len(every) and resume[1] > len(every[resume[0]][2])):
        raise MetricsError("InvalidNextToken", "The NextToken is not valid.")
    results, token = [], None
    for index in range(resume[0], len(every)):
        ident, label, points = every[index]
        first = resume[1] if index == resume[0] else 0
        rest = points[first:]
        if budget <= 0 and rest:
            token = f"{index}:{first}"
            break
        page = rest[:budget]
        budget -= len(page)
        partial = len(page) < len(rest)
        results.append(
            {
                "Id": ident,
                "Label": label,
                "Timestamps": [_timestamp(t) for t, _ in page],
                "Values": [v for _, v in page],
                "StatusCode": "PartialData" if partial else "Complete",
            }
        )
        if partial:
            token = f"{index}:{first + len(page)}"
            break
    messages = []
    if start < now - SECOND_RETENTION and any(q.stat is not None and q.period < 60 for q in order):
        messages.append({"Code": "PartialData", "Value": "Data with periods under 60 s is kept for 3 hours."})
    out: dict[str, Any] = {"MetricDataResults": results, "Messages": messages}
    if token is not None:
        out["NextToken"] = token
    return out


def _resume_at(token: Any) -> tuple[int, int]:
    """(result, point) a NextToken of :func:`get_metric_data` goes on from; (0, 0) without one."""
    if not token:
        return 0, 0
    result, _, point = str(token).partition(":")
    if not (result.isdigit() and point.isdigit()):
        raise MetricsError("InvalidNextToken", "The NextToken is not valid.")
    return int(result), int(point)


_ZONE = re.compile(r"^([+-])(\d{2})(\d{2})$")
_DYNAMIC = re.compile(r"\$\{([A-Z_]+|PROP\('([^']*)'\))\}")


def _timezone(options: Mapping[str, Any] | None) -> dt.tzinfo:
    """LabelOptions' Timezone (``+0130``; UTC when absent)."""
    text = (options or {}).get("Timezone")
    if text is None:
        return _UTC
    found = _ZONE.match(str(text))
    if found is None or int(found[2]) > 23 or int(found[3]) > 59:
        raise MetricsError("ValidationError", f"The value {text} for parameter LabelOptions.Timezone is not valid.")
    minutes = int(found[2]) * 60 + int(found[3])
    return dt.timezone(dt.timedelta(minutes=-minutes if found[1] == "-" else minutes))


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)


def _duration(seconds: float) -> str:
    seconds = abs(int(seconds))
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    return " ".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _label(text: str, default: str, series: _math.TimeSeries, q: _Query, zone: dt.tzinfo, now: float) -> str:
    """A label with its dynamic values (CloudWatch's "dynamic labels") filled in; unknown ones kept as written."""
    if "${" not in text:
        return text
    points = series.points
    metric = (q.stat or {}).get("Metric", {})
    props = {
        "MetricName": metric.get("MetricName"),
        "Namespace": metric.get("Namespace"),
        "Period": str(q.period or series.period),
        "Stat": (q.stat or {}).get("Stat"),
        **{f"Dim.{d.get('Name')}": d.get("Value") for d in metric.get("Dimensions") or ()},
    }

    def when(at: float) -> str:
        return dt.datetime.fromtimestamp(at, zone).isoformat()

    def value(match: re.Match[str]) -> str:
        name, prop = match[1], match[2]
        if prop is not None:
            found = props.get(prop)
            return match[0] if found is None else str(found)
        if name == "LABEL":
            return default
        if name == "DATAPOINT_COUNT":
            return str(len(points))
        if not points:
            return ""
        first, last = points[0], points[-1]
        low, high = min(points, key=lambda x: x[1]), max(points, key=lambda x: x[1])
        computed = {
            "AVG": _number(sum(v for _, v in points) / len(points)),
            "SUM": _number(sum(v for _, v in points)),
            "FIRST": _number(first[1]),
            "LAST": _number(last[1]),
            "MIN": _number(low[1]),
            "MAX": _number(high[1]),
            "FIRST_LAST_RANGE": _number(last[1] - first[1]),
            "MIN_MAX_RANGE": _number(high[1] - low[1]),
            "FIRST_LAST_TIME_RANGE": _duration(last[0] - first[0]),
            "MIN_MAX_TIME_RANGE": _duration(high[0] - low[0]),
        }
        for key, (at, _) in (("FIRST", first), ("LAST", last), ("MIN", low), ("MAX", high)):
            computed[f"{key}_TIME"] = when(at)
            computed[f"{key}_TIME_RELATIVE"] = _duration(now - at)
        return computed.get(name, match[0])

    return _DYNAMIC.sub(value, text)


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
_MAX_ENTITIES = 2
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
    if resolution == 60:
        # Standard resolution: CloudWatch keeps the metric by the minute, so every value of a minute is one
        # datapoint at the minute's start, even for a query with a period under a minute.
        at -= at % 60
    return str(name), dims, unit, at, sets


def put_metric_data(store: MetricStore, p: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """PutMetricData: custom metrics, checked as a whole before any is written (a refusal writes nothing)."""
    namespace = p.get("Namespace")
    if not namespace:
        raise MetricsError("MissingParameter", "The parameter Namespace is required.")
    if str(namespace).startswith("AWS/") or str(namespace).startswith(":") or not str(namespace).strip():
        raise MetricsError("InvalidParameterValue", f"The value {namespace} for parameter Namespace is invalid.")
    fields = [(f"MetricData.member.{i}", d) for i, d in enumerate(p.get("MetricData") or (), 1)]
    # Metrics with an entity (EntityMetricData, at most 2 entities) count towards the same 1,000; the entity
    # itself has no use here (no Explore related view) and is not kept.
    entities = list(p.get("EntityMetricData") or ())
    if entities and p.get("StrictEntityValidation") is None:
        raise MetricsError(
            "MissingParameter", "The parameter StrictEntityValidation is required with EntityMetricData."
        )
    if len(entities) > _MAX_ENTITIES:
        raise MetricsError(
            "InvalidParameterValue",
            f"The collection EntityMetricData must not have a size greater than {_MAX_ENTITIES}.",
        )
    for e, entity in enumerate(entities, 1):
        fields += [
            (f"EntityMetricData.member.{e}.MetricData.member.{i}", d)
            for i, d in enumerate(entity.get("MetricData") or (), 1)
        ]
    if not fields:
        raise MetricsError("MissingParameter", "The parameter MetricData is required.")
    if len(fields) > _MAX_METRICS:
        raise MetricsError(
            "InvalidParameterValue", f"The collection MetricData must not have a size greater than {_MAX_METRICS}."
        )
    checked = [_datum(field, d, now) for field, d in fields]
    for name, dims, unit, at, sets in checked:
        for count, total, lo, hi in sets:
            store.put_statistics(str(namespace), name, dims, unit, at, count, total, lo, hi)
    return {}
