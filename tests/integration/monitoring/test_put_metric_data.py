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
