"""PutMetricData on a real Borealis through boto3 and the aws CLI: custom metrics read back, AWS/ refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

AWS = os.path.join(os.path.dirname(sys.executable), "aws")


def test_custom_metric_round_trip(borealis: BorealisProcess) -> None:
    cloudwatch: Any = borealis.client("cloudwatch")
    namespace = f"Borealis/It-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    dims = [{"Name": "Queue", "Value": "jobs"}]
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Depth", "Dimensions": dims, "Timestamp": now - dt.timedelta(minutes=2), "Value": 3.0},
            {
                "MetricName": "Depth",
                "Dimensions": dims,
                "Timestamp": now - dt.timedelta(minutes=2),
                "StatisticValues": {"SampleCount": 2, "Sum": 20, "Minimum": 8, "Maximum": 12},
            },
        ],
    )
    # The aws CLI (the query or json protocol, its own serializer) writes to the same series.
    subprocess.run(
        [
            AWS,
            "cloudwatch",
            "put-metric-data",
            "--namespace",
            namespace,
            "--metric-name",
            "Depth",
            "--dimensions",
            "Queue=jobs",
            "--value",
            "100",
            "--unit",
            "Count",
            "--timestamp",
            (now - dt.timedelta(minutes=1)).isoformat(),
            "--endpoint-url",
            borealis.url,
        ],
        env=borealis.env(),
        check=True,
        capture_output=True,
    )
    out = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="Depth",
        Dimensions=dims,
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["SampleCount", "Sum", "Maximum"],
    )
    points = sorted(out["Datapoints"], key=lambda d: d["Timestamp"])
    assert [(p["SampleCount"], p["Sum"], p["Maximum"]) for p in points] == [(3, 23, 12), (1, 100, 100)]
    listed = json.loads(
        subprocess.run(
            [
                AWS,
                "cloudwatch",
                "list-metrics",
                "--namespace",
                namespace,
                "--endpoint-url",
                borealis.url,
                "--output",
                "json",
            ],
            env=borealis.env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert listed["Metrics"] == [{"Namespace": namespace, "MetricName": "Depth", "Dimensions": dims}]


def test_aws_namespaces_are_refused(borealis: BorealisProcess) -> None:
    cloudwatch: Any = borealis.client("cloudwatch")
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_data(Namespace="AWS/RDS", MetricData=[{"MetricName": "CPUUtilization", "Value": 1.0}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert err.value.response["Error"]["Message"] == "The value AWS/RDS for parameter Namespace is invalid."


def test_values_put_in_one_second_are_aggregated(borealis: BorealisProcess) -> None:
    """Several values in the same second (one call, several calls, Values with Counts, a statistic set) all count,
    in the one-second and the one-minute data; percentiles come from the values; units are kept apart."""
    cloudwatch: Any = borealis.client("cloudwatch")
    namespace = f"Borealis/Agg-{uuid.uuid4().hex[:8]}"
    at = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=2)
    datum = {"MetricName": "Latency", "Timestamp": at, "Unit": "Milliseconds", "StorageResolution": 1}
    cloudwatch.put_metric_data(
        Namespace=namespace, MetricData=[{**datum, "Value": 1.0}, {**datum, "Value": 2.0}, {**datum, "Value": 3.0}]
    )
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{**datum, "Values": [10.0, 20.0], "Counts": [4, 2]}])
    # A statistic set of different values counts in every statistic but leaves no percentile for its period.
    later = at + dt.timedelta(seconds=1)
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                **datum,
                "Timestamp": later,
                "StatisticValues": {"SampleCount": 2, "Sum": 30, "Minimum": 5, "Maximum": 25},
            },
            {**datum, "Timestamp": later, "Unit": "Seconds", "Value": 7.0},
        ],
    )
    window = {"StartTime": at, "EndTime": at + dt.timedelta(seconds=2)}
    stats = ["SampleCount", "Sum", "Minimum", "Maximum", "Average"]
    second = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="Latency", Period=1, Statistics=stats, ExtendedStatistics=["p50"], **window
    )["Datapoints"]
    rows = sorted(
        (p["Timestamp"], p["Unit"], p["SampleCount"], p["Sum"], p["Minimum"], p["Maximum"], p["Average"])
        for p in second
    )
    assert rows == [
        (at, "Milliseconds", 9.0, 86.0, 1.0, 20.0, 86.0 / 9),
        (later, "Milliseconds", 2.0, 30.0, 5.0, 25.0, 15.0),
        (later, "Seconds", 1.0, 7.0, 7.0, 7.0, 7.0),
    ]
    by_key = {(p["Timestamp"], p["Unit"]): p["ExtendedStatistics"] for p in second}
    assert by_key[(at, "Milliseconds")] == {"p50": 10.0}
    assert by_key[(later, "Milliseconds")] == {}
    minute = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="Latency",
        Unit="Milliseconds",
        Period=60,
        Statistics=stats,
        StartTime=at,
        EndTime=at + dt.timedelta(minutes=1),
    )["Datapoints"]
    assert [(p["SampleCount"], p["Sum"], p["Minimum"], p["Maximum"]) for p in minute] == [(11.0, 116.0, 1.0, 25.0)]
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": stat.lower(),
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": "Latency"},
                    "Period": 1,
                    "Stat": stat,
                    "Unit": "Milliseconds",
                },
            }
            for stat in ("Sum", "SampleCount", "p50", "p99")
        ],
        ScanBy="TimestampAscending",
        **window,
    )["MetricDataResults"]
    assert {r["Id"]: r["Values"] for r in data} == {
        "sum": [86.0, 30.0],
        "samplecount": [9.0, 2.0],
        "p50": [10.0],
        "p99": [20.0],
    }
