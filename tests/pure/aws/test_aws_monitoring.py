"""CloudWatch's read operations through boto3's cloudwatch client, on a metric store with known points."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_harness import Harness
from botocore.exceptions import ClientError

from borealis.metrics import MetricStore
from borealis.services import monitoring

NS = "AWS/RDS"
NOW = int(time.time()) // 60 * 60
START = NOW - 600


@pytest.fixture
def cloudwatch(harness_factory: Callable[..., Harness], tmp_path: Path) -> Any:
    store = MetricStore(tmp_path / "metrics.db")
    for i in range(600):
        at = START + i
        for inst, cap in (("db-1", 1.0 if i < 300 else 4.0), ("db-2", 0.5)):
            dims = {"DBInstanceIdentifier": inst}
            store.put(NS, "ServerlessDatabaseCapacity", dims, cap, "Count", at)
            store.put(NS, "ACUUtilization", dims, cap / 8 * 100, "Percent", at)
        mean = 0.75 if i < 300 else 2.25
        store.put(NS, "ServerlessDatabaseCapacity", {"DBClusterIdentifier": "c1"}, mean, "Count", at)
    store.flush(NOW)
    yield harness_factory({"cloudwatch": monitoring.handlers(store)}).client("cloudwatch")
    store.close()


def _ts(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


def test_get_metric_statistics(cloudwatch: Any) -> None:
    out = cloudwatch.get_metric_statistics(
        Namespace=NS,
        MetricName="ServerlessDatabaseCapacity",
        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": "db-1"}],
        StartTime=_ts(START),
        EndTime=_ts(NOW),
        Period=60,
        Statistics=["Average", "Maximum", "SampleCount"],
        ExtendedStatistics=["p50"],
    )
    points = sorted(out["Datapoints"], key=lambda p: p["Timestamp"])
    assert out["Label"] == "ServerlessDatabaseCapacity" and len(points) == 10
    assert points[0]["Timestamp"] == _ts(START) and points[0]["Average"] == 1.0 and points[-1]["Maximum"] == 4.0
    assert points[0]["SampleCount"] == 60 and points[0]["Unit"] == "Count"
    assert "ExtendedStatistics" in points[0]
    # One-second periods from the last three hours.
    fine = cloudwatch.get_metric_statistics(
        Namespace=NS,
        MetricName="ServerlessDatabaseCapacity",
        Dimensions=[{"Name": "DBClusterIdentifier", "Value": "c1"}],
        StartTime=_ts(START + 298),
        EndTime=_ts(START + 302),
        Period=1,
        Statistics=["Minimum"],
    )
    assert sorted(p["Minimum"] for p in fine["Datapoints"]) == [0.75, 0.75, 2.25, 2.25]


def test_get_metric_data(cloudwatch: Any) -> None:
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "cap",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NS,
                        "MetricName": "ServerlessDatabaseCapacity",
                        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "db-1"}],
                    },
                    "Period": 300,
                    "Stat": "Maximum",
                },
            },
            {
                "Id": "util",
                "Label": "utilisation",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NS,
                        "MetricName": "ACUUtilization",
                        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "db-2"}],
                    },
                    "Period": 60,
                    "Stat": "Average",
                },
            },
        ],
        StartTime=_ts(START),
        EndTime=_ts(NOW),
    )
    cap, util = out["MetricDataResults"]
    assert cap["Id"] == "cap" and cap["StatusCode"] == "Complete"
    assert cap["Values"] == [4.0, 1.0] and cap["Timestamps"] == [_ts(START + 300), _ts(START)]  # newest first
    assert util["Label"] == "utilisation" and len(util["Values"]) == 10 and set(util["Values"]) == {6.25}


def test_list_metrics(cloudwatch: Any) -> None:
    every = cloudwatch.list_metrics(Namespace=NS)["Metrics"]
    assert len(every) == 5
    one = cloudwatch.list_metrics(
        Namespace=NS, MetricName="ServerlessDatabaseCapacity", Dimensions=[{"Name": "DBClusterIdentifier"}]
    )["Metrics"]
    assert one == [
        {
            "Namespace": NS,
            "MetricName": "ServerlessDatabaseCapacity",
            "Dimensions": [{"Name": "DBClusterIdentifier", "Value": "c1"}],
        }
    ]
    assert cloudwatch.list_metrics(Namespace="AWS/Lambda")["Metrics"] == []
    assert len(cloudwatch.list_metrics(RecentlyActive="PT3H")["Metrics"]) == 5


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"Period": 7, "Statistics": ["Average"]}, "InvalidParameterValue"),
        ({"Period": 60}, "MissingParameter"),
        ({"Period": 1, "Statistics": ["Average"], "StartTime": _ts(NOW - 86400)}, "InvalidParameterCombination"),
        ({"Period": 60, "Statistics": ["Mean"]}, "InvalidParameterValue"),
        ({"Period": 60, "Statistics": ["Average"], "EndTime": _ts(START - 60)}, "InvalidParameterValue"),
    ],
)
def test_get_metric_statistics_errors(cloudwatch: Any, kwargs: dict[str, Any], code: str) -> None:
    args = {"Namespace": NS, "MetricName": "ServerlessDatabaseCapacity", "StartTime": _ts(START), "EndTime": _ts(NOW)}
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_statistics(**{**args, **kwargs})
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_get_metric_data_errors(cloudwatch: Any) -> None:
    query = {"Metric": {"Namespace": NS, "MetricName": "ServerlessDatabaseCapacity"}, "Period": 60, "Stat": "Average"}
    for queries in (
        [{"Id": "Upper", "MetricStat": query}],
        [{"Id": "a", "MetricStat": query}, {"Id": "a", "MetricStat": query}],
        [{"Id": "m", "Expression": "SUM(METRICS())"}],
    ):
        with pytest.raises(ClientError) as err:
            cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=_ts(START), EndTime=_ts(NOW))
        assert err.value.response["Error"]["Code"] == "ValidationError"


def _stat(inst: str, metric: str = "ServerlessDatabaseCapacity", stat: str = "Average") -> dict[str, Any]:
    dims = [{"Name": "DBInstanceIdentifier", "Value": inst}]
    return {"Metric": {"Namespace": NS, "MetricName": metric, "Dimensions": dims}, "Period": 300, "Stat": stat}


def test_get_metric_data_math(cloudwatch: Any) -> None:
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": "db1", "MetricStat": _stat("db-1"), "ReturnData": False},
            {"Id": "db2", "MetricStat": _stat("db-2"), "ReturnData": False},
            {"Id": "total", "Expression": "db1 + db2", "Label": "both"},
            {"Id": "share", "Expression": "100 * db1 / total"},
            {"Id": "peak", "Expression": "MAX(METRICS())"},
            {"Id": "each", "Expression": "METRICS('db') * 2", "Label": "doubled"},
            {"Id": "level", "Expression": "AVG(db1)"},
        ],
        StartTime=_ts(START),
        EndTime=_ts(NOW),
        ScanBy="TimestampAscending",
    )
    results = out["MetricDataResults"]
    by_id = {r["Id"]: r for r in results if r["Id"] != "each"}
    assert set(by_id) == {"total", "share", "peak", "level"}  # ReturnData false left out
    assert by_id["total"]["Label"] == "both" and by_id["total"]["Values"] == [1.5, 4.5]
    assert by_id["total"]["Timestamps"] == [_ts(START), _ts(START + 300)]
    assert by_id["share"]["Label"] == "share"
    assert by_id["share"]["Values"] == pytest.approx([100 / 1.5, 400 / 4.5])
    assert by_id["peak"]["Values"] == [1.0, 4.0]
    assert by_id["level"]["Values"] == [2.5, 2.5]  # a number over the time range
    each = [r for r in results if r["Id"] == "each"]  # an array: one result per series, same Id
    assert [r["Values"] for r in each] == [[2.0, 8.0], [1.0, 1.0]]
    assert each[0]["Label"] == "doubled ServerlessDatabaseCapacity"


def test_get_metric_data_math_fill_and_rate(cloudwatch: Any) -> None:
    # Ten minutes of data, asked for twelve: FILL gives the two empty minutes a value.
    query = {"Id": "m", "MetricStat": {**_stat("db-1"), "Period": 60}, "ReturnData": False}
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[
            query,
            {"Id": "zero", "Expression": "FILL(m, 0)"},
            {"Id": "repeat", "Expression": "FILL(m, REPEAT)"},
            {"Id": "rate", "Expression": "RATE(m)"},
        ],
        StartTime=_ts(START),
        EndTime=_ts(NOW + 120),
        ScanBy="TimestampAscending",
    )
    zero, repeat, rate = out["MetricDataResults"]
    assert zero["Values"] == [1.0] * 5 + [4.0] * 5 + [0.0, 0.0]
    assert repeat["Values"] == [1.0] * 5 + [4.0] * 7
    assert repeat["Timestamps"][-1] == _ts(NOW + 60)
    assert rate["Values"] == [0.0] * 4 + [3 / 60] + [0.0] * 4  # capacity went from 1 to 4 at minute 5


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ([{"Id": "e1", "Expression": "m9 + 1"}], "Error in expression e1: Unrecognized metric id m9."),
        ([{"Id": "e1", "Expression": "(1 +"}], "Error in expression e1: the expression ends too early."),
        ([{"Id": "e1", "Expression": "e2"}, {"Id": "e2", "Expression": "e1 * 2"}], "in a cycle"),
        ([{"Id": "e1", "Expression": "e1 + 1"}], "refers to itself"),
        ([{"Id": "e1", "Expression": "NOPE(1)"}], "unknown function NOPE"),
        ([{"Id": "e1"}], "The parameter MetricDataQueries.member.1.MetricStat is required.\n"),
        (
            [{"Id": "e1", "Expression": "1", "MetricStat": _stat("db-1")}],
            "MetricStat and MetricDataQueries.member.1.Expression are mutually exclusive",
        ),
        ([{"Id": f"e{i}", "Expression": "1"} for i in range(501)], "between 1 and 500"),
    ],
)
def test_get_metric_data_math_errors(cloudwatch: Any, queries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=_ts(START), EndTime=_ts(NOW))
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert message in err.value.response["Error"]["Message"]
