"""CloudWatch answers as AWS does where a boto3 user would notice: GetMetricData paged by MaxDatapoints with a
NextToken (and boto3's paginator), dynamic labels with LabelOptions' Timezone, DescribeAlarms and
DescribeAlarmHistory by AlarmTypes, and alarm actions that must be ARNs."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_harness import Harness
from botocore.exceptions import ClientError

from borealis.metrics import MetricStore
from borealis.metrics._alarms import AlarmBook, _java
from borealis.services import monitoring

NS = "MyApp"
NOW = int(time.time()) // 60 * 60
START = NOW - 600
UTC = dt.UTC


@pytest.fixture
def cloudwatch(harness_factory: Callable[..., Harness], tmp_path: Path) -> Iterator[Any]:
    store = MetricStore(tmp_path / "metrics.db")
    for i in range(10):  # one value a minute, 0..9, on two queues
        for queue, scale in (("a", 1.0), ("b", 10.0)):
            store.put(NS, "Depth", {"Queue": queue}, i * scale, "Count", START + 60 * i)
    store.flush(NOW)
    book = AlarmBook(tmp_path / "alarms.json", region="us-east-1", account="123456789012")
    yield harness_factory({"cloudwatch": monitoring.handlers(store, book)}).client("cloudwatch")
    store.close()


def _query(ident: str, queue: str, **extra: Any) -> dict[str, Any]:
    metric = {"Namespace": NS, "MetricName": "Depth", "Dimensions": [{"Name": "Queue", "Value": queue}]}
    return {"Id": ident, "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}, **extra}


WINDOW = {
    "StartTime": dt.datetime.fromtimestamp(START, UTC),
    "EndTime": dt.datetime.fromtimestamp(NOW, UTC),
}


def test_get_metric_data_pages_by_max_datapoints(cloudwatch: Any) -> None:
    queries = [_query("qa", "a"), _query("qb", "b")]
    first = cloudwatch.get_metric_data(
        MetricDataQueries=queries, MaxDatapoints=4, ScanBy="TimestampAscending", **WINDOW
    )
    [qa] = first["MetricDataResults"]
    assert (qa["Id"], qa["Values"], qa["StatusCode"]) == ("qa", [0.0, 1.0, 2.0, 3.0], "PartialData")
    second = cloudwatch.get_metric_data(
        MetricDataQueries=queries, MaxDatapoints=8, NextToken=first["NextToken"], ScanBy="TimestampAscending", **WINDOW
    )
    rows = [(r["Id"], r["Values"], r["StatusCode"]) for r in second["MetricDataResults"]]
    assert rows == [("qa", [4.0, 5.0, 6.0, 7.0, 8.0, 9.0], "Complete"), ("qb", [0.0, 10.0], "PartialData")]
    # boto3's paginator follows NextToken to the end: every point once, in order.
    pages = cloudwatch.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries, ScanBy="TimestampDescending", PaginationConfig={"PageSize": 3}, **WINDOW
    )
    values: dict[str, list[float]] = {}
    for page in pages:
        for r in page["MetricDataResults"]:
            values.setdefault(r["Id"], []).extend(r["Values"])
    assert values == {"qa": [float(i) for i in range(9, -1, -1)], "qb": [i * 10.0 for i in range(9, -1, -1)]}
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_data(MetricDataQueries=queries, NextToken="garbage", **WINDOW)
    assert err.value.response["Error"]["Code"] == "InvalidNextToken"


def test_dynamic_labels_and_their_timezone(cloudwatch: Any) -> None:
    label = "${PROP('Dim.Queue')} max ${MAX} at ${MAX_TIME}, ${DATAPOINT_COUNT} points, ${LABEL} ${NOPE}"
    out = cloudwatch.get_metric_data(
        MetricDataQueries=[_query("qb", "b", Label=label)], LabelOptions={"Timezone": "+0130"}, **WINDOW
    )
    peak = dt.datetime.fromtimestamp(START + 540, dt.timezone(dt.timedelta(hours=1, minutes=30))).isoformat()
    assert out["MetricDataResults"][0]["Label"] == f"b max 90 at {peak}, 10 points, Depth ${{NOPE}}"
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_data(MetricDataQueries=[_query("qb", "b")], LabelOptions={"Timezone": "CET"}, **WINDOW)
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_alarm_types_and_action_arns(cloudwatch: Any) -> None:
    alarm = {
        "AlarmName": "deep",
        "Namespace": NS,
        "MetricName": "Depth",
        "Dimensions": [{"Name": "Queue", "Value": "a"}],
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 100.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    # SNS topics, EC2 actions and Auto Scaling policies are ARNs and accepted; a topic's bare name is not.
    actions = ["arn:aws:sns:us-east-1:123456789012:ops", "arn:aws:automate:us-east-1:ec2:stop"]
    cloudwatch.put_metric_alarm(**alarm, AlarmActions=actions, OKActions=actions[:1])
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_alarm(**{**alarm, "AlarmName": "bad"}, AlarmActions=["ops"])
    error = err.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("ValidationError", "Invalid arn syntax: ops")
    metric = cloudwatch.describe_alarms()
    assert [a["AlarmName"] for a in metric["MetricAlarms"]] == ["deep"] and metric["CompositeAlarms"] == []
    composite = cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])
    assert composite["CompositeAlarms"] == [] and composite["MetricAlarms"] == []
    assert cloudwatch.describe_alarm_history(AlarmTypes=["CompositeAlarm"])["AlarmHistoryItems"] == []
    history = cloudwatch.describe_alarm_history(AlarmTypes=["MetricAlarm", "CompositeAlarm"])["AlarmHistoryItems"]
    assert [h["AlarmName"] for h in history] == ["deep"]
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms(ActionPrefix="arn:aws:automate")["MetricAlarms"]] == [
        "deep"
    ]
    # Only composite alarms have children and parents: none here, and those filters take no others.
    parents = cloudwatch.describe_alarms(ParentsOfAlarmName="deep")
    assert (parents["MetricAlarms"], parents["CompositeAlarms"]) == ([], [])
    assert cloudwatch.describe_alarms(ChildrenOfAlarmName="deep")["MetricAlarms"] == []
    with pytest.raises(ClientError) as err:
        cloudwatch.describe_alarms(ChildrenOfAlarmName="deep", StateValue="OK")
    assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
    percentile = {k: v for k, v in alarm.items() if k != "Statistic"}
    cloudwatch.put_metric_alarm(
        **{**percentile, "AlarmName": "p"}, ExtendedStatistic="p99", EvaluateLowSampleCountPercentile="ignore"
    )
    described = cloudwatch.describe_alarms(AlarmNames=["p"])["MetricAlarms"][0]
    assert (described["ExtendedStatistic"], described["EvaluateLowSampleCountPercentile"]) == ("p99", "ignore")
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_alarm(**{**percentile, "AlarmName": "q"}, ExtendedStatistic="p999")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_extended_statistics_in_get_metric_data_and_aws_refusals(cloudwatch: Any) -> None:
    def query(ident: str, stat: str) -> dict[str, Any]:
        q = _query(ident, "a")
        q["MetricStat"] = {**q["MetricStat"], "Period": 600, "Stat": stat}
        return q

    out = cloudwatch.get_metric_data(
        MetricDataQueries=[query("tm", "tm90"), query("iqm", "IQM"), query("pr", "PR(:4)"), query("p", "p50")],
        **WINDOW,
    )
    # The ten values 0..9 of queue a in one period.
    assert {r["Id"]: r["Values"] for r in out["MetricDataResults"]} == {
        "tm": [4.0],
        "iqm": [4.5],
        "pr": [50.0],
        "p": [4.0],
    }
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_data(MetricDataQueries=[query("bad", "tm200")], **WINDOW)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_statistics(
            Namespace=NS, MetricName="Depth", Period=60, Statistics=["Average", "p99"], **WINDOW
        )
    assert err.value.response["Error"]["Message"] == (
        "The parameter Statistics.member.2.<list element> must be a value in the set "
        "[SampleCount, Average, Sum, Minimum, Maximum]."
    )


def test_alarm_tags(cloudwatch: Any) -> None:
    alarm = {
        "AlarmName": "tagged",
        "Namespace": NS,
        "MetricName": "Depth",
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    cloudwatch.put_metric_alarm(**alarm, Tags=[{"Key": "team", "Value": "db"}])
    arn = cloudwatch.describe_alarms(AlarmNames=["tagged"])["MetricAlarms"][0]["AlarmArn"]
    cloudwatch.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "ops"}])
    cloudwatch.untag_resource(ResourceARN=arn, TagKeys=["env", "absent"])
    assert cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "ops"}]
    cloudwatch.delete_alarms(AlarmNames=["tagged"])
    with pytest.raises(ClientError) as err:
        cloudwatch.list_tags_for_resource(ResourceARN=arn)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_alarm(**alarm, Tags=[{"Key": "aws:reserved", "Value": "x"}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_state_reasons_in_cloudwatch_words(harness_factory: Callable[..., Harness], tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "reasons.db")
    book = AlarmBook(tmp_path / "reasons.json", region="us-east-1", account="123456789012")
    cloudwatch = harness_factory({"cloudwatch": monitoring.handlers(store, book)}).client("cloudwatch")
    dims = [{"Name": "Queue", "Value": "r"}]
    cloudwatch.put_metric_alarm(
        AlarmName="r",
        Namespace=NS,
        MetricName="Depth",
        Dimensions=dims,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=100,
        ComparisonOperator="GreaterThanThreshold",
    )
    now = NOW + 30
    base = NOW - 180
    for minute, depth in enumerate((50.0, 150.0, 200.0)):
        at = dt.datetime.fromtimestamp(base + 60 * minute, UTC)
        cloudwatch.put_metric_data(
            Namespace=NS, MetricData=[{"MetricName": "Depth", "Dimensions": dims, "Value": depth, "Timestamp": at}]
        )
    assert book.evaluate_all(store, now) == 1

    def stamp(k: int) -> str:
        return f"{dt.datetime.fromtimestamp(base + 60 * k, UTC):%d/%m/%y %H:%M:%S}"

    alarm = cloudwatch.describe_alarms(AlarmNames=["r"])["MetricAlarms"][0]
    assert alarm["StateReason"] == (
        f"Threshold Crossed: 2 out of the last 3 datapoints [200.0 ({stamp(2)}), 150.0 ({stamp(1)})] were greater "
        "than the threshold (100.0) (minimum 2 datapoints for OK -> ALARM transition)."
    )
    data = json.loads(alarm["StateReasonData"])
    assert (data["statistic"], data["period"], data["recentDatapoints"], data["threshold"]) == (
        "Maximum",
        60,
        [50.0, 150.0, 200.0],
        100.0,
    )
    assert data["startDate"] == dt.datetime.fromtimestamp(base, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    assert book.evaluate_all(store, now + 300) == 1
    alarm = cloudwatch.describe_alarms(AlarmNames=["r"])["MetricAlarms"][0]
    assert alarm["StateReason"] == "Insufficient Data: 3 datapoints were unknown."
    history = cloudwatch.describe_alarm_history(AlarmName="r", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    old = json.loads(history[0]["HistoryData"])["oldState"]
    assert old["stateValue"] == "ALARM" and old["stateReason"].startswith("Threshold Crossed: 2 out of the last 3")
    store.close()


@pytest.mark.parametrize(
    ("value", "text"),
    [(12.0, "12.0"), (0.25, "0.25"), (0.0, "0.0"), (1.5e7, "1.5E7"), (0.0001, "1.0E-4"), (-2.5e-5, "-2.5E-5")],
)
def test_numbers_in_state_reasons_as_java_writes_them(value: float, text: str) -> None:
    assert _java(value) == text


def test_work_per_call_is_bounded_counting_the_seconds_extended_statistics_read(cloudwatch: Any) -> None:
    """Percentiles over minute periods read the one-second rows of the last 3 hours; a call may not ask for
    more than 500,000 rows and periods in all (it runs on the event loop), so 100 such queries are refused."""
    now = dt.datetime.fromtimestamp(NOW, UTC)
    window = {"StartTime": now - dt.timedelta(hours=3), "EndTime": now}
    few = [_query(f"q{i}", "a") for i in range(40)]
    for q in few:
        q["MetricStat"] = {**q["MetricStat"], "Stat": "p99"}
    assert len(cloudwatch.get_metric_data(MetricDataQueries=few, **window)["MetricDataResults"]) == 40
    many = [{**q, "Id": f"m{i}"} for i, q in enumerate(few * 3)]
    with pytest.raises(ClientError) as err:
        cloudwatch.get_metric_data(MetricDataQueries=many, **window)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    plain = [_query(f"s{i}", "a") for i in range(120)]  # the same queries without percentiles are light
    assert len(cloudwatch.get_metric_data(MetricDataQueries=plain, **window)["MetricDataResults"]) == 120
