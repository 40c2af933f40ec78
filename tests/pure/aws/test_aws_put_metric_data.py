"""PutMetricData through boto3's cloudwatch client: custom metrics written, read back, and refused as AWS does."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_harness import Harness
from botocore.exceptions import ClientError

from borealis.metrics import MetricStore
from borealis.services import monitoring

NS = "Borealis/Test"
NOW = int(time.time()) // 60 * 60


def _ts(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricStore]:
    s = MetricStore(tmp_path / "metrics.db")
    yield s
    s.close()


@pytest.fixture
def cloudwatch(harness_factory: Callable[..., Harness], store: MetricStore) -> Any:
    return harness_factory({"cloudwatch": monitoring.handlers(store)}).client("cloudwatch")


DIMS = [{"Name": "Service", "Value": "orders"}, {"Name": "Stage", "Value": "prod"}]


def _stats(cloudwatch: Any, name: str, period: int = 60, **kwargs: Any) -> list[dict[str, Any]]:
    out = cloudwatch.get_metric_statistics(
        Namespace=NS,
        MetricName=name,
        Dimensions=kwargs.pop("Dimensions", DIMS),
        StartTime=_ts(NOW - 600),
        EndTime=_ts(NOW + 60),
        Period=period,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average"],
        **kwargs,
    )
    return sorted(out["Datapoints"], key=lambda d: d["Timestamp"])


@pytest.mark.parametrize("flush", [False, True], ids=["pending", "flushed"])
def test_values_statistic_sets_and_arrays_read_back(cloudwatch: Any, store: MetricStore, flush: bool) -> None:
    cloudwatch.put_metric_data(
        Namespace=NS,
        MetricData=[
            {
                "MetricName": "Latency",
                "Dimensions": DIMS,
                "Timestamp": _ts(NOW - 120),
                "Value": 10,
                "Unit": "Milliseconds",
            },
            {
                "MetricName": "Latency",
                "Dimensions": DIMS,
                "Timestamp": _ts(NOW - 119),
                "Value": 30,
                "Unit": "Milliseconds",
            },
            {
                "MetricName": "Latency",
                "Dimensions": DIMS,
                "Timestamp": _ts(NOW - 60),
                "StatisticValues": {"SampleCount": 4, "Sum": 100, "Minimum": 5, "Maximum": 50},
                "Unit": "Milliseconds",
            },
            {
                "MetricName": "Latency",
                "Dimensions": DIMS,
                "Timestamp": _ts(NOW - 59),
                "Values": [1, 2],
                "Counts": [3, 1],
                "Unit": "Milliseconds",
            },
        ],
    )
    if flush:
        store.flush(NOW)
    first, second = _stats(cloudwatch, "Latency")
    assert first["Timestamp"] == _ts(NOW - 120)
    assert (first["SampleCount"], first["Sum"], first["Minimum"], first["Maximum"], first["Average"]) == (
        2,
        40,
        10,
        30,
        20,
    )
    assert second["Timestamp"] == _ts(NOW - 60)
    assert (second["SampleCount"], second["Sum"], second["Minimum"], second["Maximum"]) == (8, 105, 1, 50)
    assert second["Unit"] == "Milliseconds"
    # The dimensions must match exactly, as on AWS.
    assert _stats(cloudwatch, "Latency", Dimensions=DIMS[:1]) == []

    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "lat",
                "MetricStat": {
                    "Metric": {"Namespace": NS, "MetricName": "Latency", "Dimensions": DIMS},
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=_ts(NOW - 600),
        EndTime=_ts(NOW + 60),
        ScanBy="TimestampAscending",
    )["MetricDataResults"][0]
    assert data["Values"] == [30, 50]
    assert data["Timestamps"] == [_ts(NOW - 120), _ts(NOW - 60)]

    listed = cloudwatch.list_metrics(Namespace=NS)["Metrics"]
    assert listed == [{"Namespace": NS, "MetricName": "Latency", "Dimensions": sorted(DIMS, key=lambda d: d["Name"])}]
    assert cloudwatch.list_metrics(Namespace=NS, Dimensions=[{"Name": "Service", "Value": "billing"}])["Metrics"] == []


def test_high_resolution_and_default_timestamp(cloudwatch: Any) -> None:
    before = time.time()
    cloudwatch.put_metric_data(
        Namespace=NS, MetricData=[{"MetricName": "Queue", "Value": 7, "StorageResolution": 1, "Unit": "Count"}]
    )
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": "q", "MetricStat": {"Metric": {"Namespace": NS, "MetricName": "Queue"}, "Period": 1, "Stat": "Sum"}}
        ],
        StartTime=_ts(before - 5),
        EndTime=_ts(time.time() + 5),
    )["MetricDataResults"][0]
    assert out["Values"] == [7]
    assert before - 1 <= out["Timestamps"][0].timestamp() <= time.time()


def _datum(**kwargs: Any) -> dict[str, Any]:
    return {"MetricName": "M", "Value": 1, **kwargs}


@pytest.mark.parametrize(
    ("namespace", "data", "code", "message"),
    [
        ("AWS/RDS", [_datum()], "InvalidParameterValue", "The value AWS/RDS for parameter Namespace is invalid."),
        (NS, [_datum() for _ in range(1001)], "InvalidParameterValue", "must not have a size greater than 1000"),
        (
            NS,
            [_datum(Dimensions=[{"Name": f"d{i}", "Value": "v"} for i in range(31)])],
            "InvalidParameterValue",
            "MetricData.member.1.Dimensions must not have a size greater than 30",
        ),
        (
            NS,
            [_datum(Dimensions=[{"Name": "d", "Value": "a"}, {"Name": "d", "Value": "b"}])],
            "InvalidParameterValue",
            "more than once",
        ),
        (
            NS,
            [_datum(), {"MetricName": "M"}],
            "InvalidParameterCombination",
            "At least one of the parameters MetricData.member.2.Value and MetricData.member.2.StatisticValues",
        ),
        (
            NS,
            [_datum(StatisticValues={"SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1})],
            "InvalidParameterCombination",
            "mutually exclusive",
        ),
        (
            NS,
            [{"MetricName": "M", "StatisticValues": {"SampleCount": 2, "Sum": 1, "Minimum": 3, "Maximum": 1}}],
            "InvalidParameterValue",
            "Minimum <= Maximum",
        ),
        (NS, [{"MetricName": "M", "Values": [1, 2], "Counts": [1]}], "InvalidParameterValue", "same length"),
        (NS, [{"MetricName": "M", "Values": list(range(151))}], "InvalidParameterValue", "greater than 150"),
        (NS, [_datum(Timestamp=_ts(time.time() - 15 * 86400))], "InvalidParameterValue", "past two weeks"),
        (NS, [_datum(Timestamp=_ts(time.time() + 3 * 3600))], "InvalidParameterValue", "two hours in the future"),
        (NS, [_datum(StorageResolution=30)], "InvalidParameterValue", "StorageResolution"),
        (NS, [_datum(Value=2.0**361)], "InvalidParameterValue", "MetricData.member.1.Value"),
        (NS, [], "MissingParameter", "MetricData is required"),
    ],
)
def test_refusals_write_nothing(
    cloudwatch: Any, store: MetricStore, namespace: str, data: list[dict[str, Any]], code: str, message: str
) -> None:
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    assert err.value.response["Error"]["Code"] == code
    assert message in err.value.response["Error"]["Message"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert store.series() == []


def test_a_thousand_metrics_in_one_gzipped_call(cloudwatch: Any, store: MetricStore) -> None:
    # botocore gzips PutMetricData bodies over 10 KB (the operation's `requestcompression` trait).
    data = [_datum(MetricName=f"m{i}", Value=i, Timestamp=_ts(NOW - 60)) for i in range(1000)]
    cloudwatch.put_metric_data(Namespace=NS, MetricData=data)
    assert len(store.series(NS)) == 1000
    assert _stats(cloudwatch, "m999", Dimensions=[])[0]["Maximum"] == 999


def test_standard_resolution_is_kept_by_the_minute(cloudwatch: Any) -> None:
    """Without StorageResolution 1, every value of a minute is one datapoint at the minute's start, even for
    a one-second period (CloudWatch keeps standard-resolution metrics at one minute)."""
    at = NOW - 120
    cloudwatch.put_metric_data(
        Namespace=NS,
        MetricData=[
            {"MetricName": "Std", "Dimensions": DIMS, "Timestamp": _ts(at + s), "Value": float(s)} for s in (5, 17, 42)
        ],
    )
    points = _stats(cloudwatch, "Std", period=1)
    assert [(p["Timestamp"], p["SampleCount"], p["Sum"]) for p in points] == [(_ts(at), 3.0, 64.0)]


def test_entity_metric_data_is_written_with_the_metric_data(cloudwatch: Any) -> None:
    entity = {"KeyAttributes": {"Type": "Service", "Name": "orders", "Environment": "prod"}}
    at = _ts(NOW - 60)
    cloudwatch.put_metric_data(
        Namespace=NS,
        MetricData=[{"MetricName": "Ent", "Dimensions": DIMS, "Timestamp": at, "Value": 1.0}],
        EntityMetricData=[
            {"Entity": entity, "MetricData": [{"MetricName": "Ent", "Dimensions": DIMS, "Timestamp": at, "Value": 2.0}]}
        ],
        StrictEntityValidation=True,
    )
    assert [(p["SampleCount"], p["Sum"]) for p in _stats(cloudwatch, "Ent")] == [(2.0, 3.0)]
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_data(
            Namespace=NS,
            EntityMetricData=[{"Entity": entity, "MetricData": [{"MetricName": "Ent", "Value": 1.0}]}] * 3,
            StrictEntityValidation=False,
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert [(p["SampleCount"], p["Sum"]) for p in _stats(cloudwatch, "Ent")] == [(2.0, 3.0)]
