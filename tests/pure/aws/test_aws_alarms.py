"""CloudWatch alarms through boto3: put, describe, state changes on the store's data, history, delete."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from borealis.metrics import MetricStore
from borealis.metrics._alarms import AlarmBook

NS = "MyApp"
DIMS = [{"Name": "Queue", "Value": "jobs"}]


def _alarm(**kwargs: Any) -> dict[str, Any]:
    return {
        "AlarmName": "deep-queue",
        "Namespace": NS,
        "MetricName": "Depth",
        "Dimensions": DIMS,
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 100.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:pager"],
        **kwargs,
    }


def _state(cloudwatch: Any, name: str = "deep-queue") -> str:
    return str(cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])


def test_alarm_follows_the_data(cloudwatch: Any, parts: tuple[MetricStore, AlarmBook], tmp_path: Path) -> None:
    store, book = parts
    cloudwatch.put_metric_alarm(**_alarm())
    alarm = cloudwatch.describe_alarms()["MetricAlarms"][0]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:deep-queue"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["Threshold"]) == (3, 2, 100.0)

    now = time.time() // 60 * 60 + 30  # half-way through a minute: the last three complete minutes count
    base = now - 30 - 180
    for minute, depth in enumerate((50.0, 150.0, 200.0)):
        cloudwatch.put_metric_data(
            Namespace=NS,
            MetricData=[
                {"MetricName": "Depth", "Dimensions": DIMS, "Value": depth,
                 "Timestamp": dt.datetime.fromtimestamp(base + 60 * minute + 5, dt.UTC)}
            ],
        )  # fmt: skip
    assert book.evaluate_all(store, now) == 1
    assert _state(cloudwatch) == "ALARM"
    assert book.evaluate_all(store, now) == 0  # no change, no new history

    # The evaluation range is 5 periods: the real datapoints in it count however old, so the alarm holds while
    # two breaching ones (or only breaching ones from before the last 3 periods) are in it; then no data at all.
    assert book.evaluate_all(store, now + 180) == 0  # 150, 200 and three missing: 2 breaching
    assert book.evaluate_all(store, now + 240) == 0  # 200 and four missing, as the guide's "X - - - -": ALARM
    assert book.evaluate_all(store, now + 300) == 1
    assert _state(cloudwatch) == "INSUFFICIENT_DATA"

    cloudwatch.set_alarm_state(AlarmName="deep-queue", StateValue="OK", StateReason="testing")
    assert _state(cloudwatch) == "OK"
    cloudwatch.disable_alarm_actions(AlarmNames=["deep-queue"])
    assert cloudwatch.describe_alarms()["MetricAlarms"][0]["ActionsEnabled"] is False
    cloudwatch.enable_alarm_actions(AlarmNames=["deep-queue"])
    assert cloudwatch.describe_alarms(StateValue="OK")["MetricAlarms"][0]["ActionsEnabled"] is True
    assert cloudwatch.describe_alarms(StateValue="ALARM")["MetricAlarms"] == []

    history = cloudwatch.describe_alarm_history(AlarmName="deep-queue", HistoryItemType="StateUpdate")
    summaries = [h["HistorySummary"] for h in history["AlarmHistoryItems"]]
    assert summaries == [
        "Alarm updated from INSUFFICIENT_DATA to OK",
        "Alarm updated from ALARM to INSUFFICIENT_DATA",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
    ]
    data = json.loads(history["AlarmHistoryItems"][-1]["HistoryData"])
    assert data["newState"]["stateValue"] == "ALARM"

    # Kept across restarts.
    again = AlarmBook(tmp_path / "alarms.json", region="us-east-1", account="123456789012")
    assert again.alarms["deep-queue"]["StateValue"] == "OK"

    cloudwatch.delete_alarms(AlarmNames=["deep-queue"])
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []


def test_refusals(cloudwatch: Any) -> None:
    cases: list[tuple[Callable[..., Any], dict[str, Any], str]] = [
        (cloudwatch.put_metric_alarm, _alarm(DatapointsToAlarm=4), "InvalidParameterValue"),
        (cloudwatch.put_metric_alarm, _alarm(Period=7), "InvalidParameterValue"),
        (cloudwatch.put_metric_alarm, _alarm(TreatMissingData="sometimes"), "InvalidParameterValue"),
        (cloudwatch.put_metric_alarm, _alarm(ExtendedStatistic="p99"), "InvalidParameterCombination"),
        (cloudwatch.delete_alarms, {"AlarmNames": ["nope"]}, "ResourceNotFound"),
        (cloudwatch.set_alarm_state, {"AlarmName": "nope", "StateValue": "OK", "StateReason": "x"}, "ResourceNotFound"),
    ]
    for call, kwargs, code in cases:
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert err.value.response["Error"]["Code"] == code, kwargs
    cloudwatch.put_metric_alarm(**_alarm())
    with pytest.raises(ClientError) as err:
        cloudwatch.set_alarm_state(AlarmName="deep-queue", StateValue="OK", StateReason="x", StateReasonData="{no")
    assert err.value.response["Error"]["Code"] == "InvalidFormat"


def test_describe_alarms_for_metric(cloudwatch: Any) -> None:
    cloudwatch.put_metric_alarm(**_alarm())
    cloudwatch.put_metric_alarm(**_alarm(AlarmName="avg-queue", Statistic="Average"))
    cloudwatch.put_metric_alarm(**_alarm(AlarmName="other-queue", Dimensions=[{"Name": "Queue", "Value": "mail"}]))
    found = cloudwatch.describe_alarms_for_metric(Namespace=NS, MetricName="Depth", Dimensions=DIMS)["MetricAlarms"]
    assert [a["AlarmName"] for a in found] == ["avg-queue", "deep-queue"]
    found = cloudwatch.describe_alarms_for_metric(
        Namespace=NS, MetricName="Depth", Dimensions=DIMS, Statistic="Maximum"
    )["MetricAlarms"]
    assert [a["AlarmName"] for a in found] == ["deep-queue"]
    assert cloudwatch.describe_alarms_for_metric(Namespace=NS, MetricName="Depth")["MetricAlarms"] == []


def _math_alarm(**kwargs: Any) -> dict[str, Any]:
    def metric(name: str) -> dict[str, Any]:
        return {"Metric": {"Namespace": NS, "MetricName": name, "Dimensions": DIMS}, "Period": 60, "Stat": "Sum"}

    return {
        "AlarmName": "error-rate",
        "Metrics": [
            {"Id": "errors", "MetricStat": metric("Errors"), "ReturnData": False},
            {"Id": "calls", "MetricStat": metric("Calls"), "ReturnData": False},
            {"Id": "rate", "Expression": "100 * FILL(errors, 0) / calls", "Label": "error %", "ReturnData": True},
        ],
        "EvaluationPeriods": 2,
        "Threshold": 10.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        **kwargs,
    }


def test_math_alarm(cloudwatch: Any, parts: tuple[MetricStore, AlarmBook]) -> None:
    store, book = parts
    cloudwatch.put_metric_alarm(**_math_alarm())
    alarm = cloudwatch.describe_alarms(AlarmNames=["error-rate"])["MetricAlarms"][0]
    assert alarm["Metrics"][2]["Expression"] == "100 * FILL(errors, 0) / calls" and "MetricName" not in alarm
    now = time.time() // 60 * 60 + 30
    base = now - 30 - 120

    def put(minute: int, name: str, value: float) -> None:
        at = dt.datetime.fromtimestamp(base + 60 * minute + 5, dt.UTC)
        cloudwatch.put_metric_data(
            Namespace=NS, MetricData=[{"MetricName": name, "Dimensions": DIMS, "Value": value, "Timestamp": at}]
        )

    put(0, "Calls", 100)  # no errors that minute: FILL counts 0 %
    put(1, "Calls", 100)
    put(1, "Errors", 30)
    assert book.evaluate_all(store, now) == 1
    assert _state(cloudwatch, "error-rate") == "OK"  # 0 % and 30 %: one of two periods breaches
    put(0, "Errors", 20)
    assert book.evaluate_all(store, now) == 1
    assert _state(cloudwatch, "error-rate") == "ALARM"
    # Later only the 30 % period is left in the evaluation range (4 periods), before the last 2: still ALARM;
    # then nothing is left.
    assert book.evaluate_all(store, now + 180) == 0
    assert book.evaluate_all(store, now + 240) == 1
    assert _state(cloudwatch, "error-rate") == "INSUFFICIENT_DATA"


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"MetricName": "Errors"}, "InvalidParameterCombination", "Metrics and MetricName are mutually exclusive"),
        ({"Statistic": "Sum"}, "InvalidParameterCombination", "Metrics and Statistic"),
        ({"ReturnData": False}, "ValidationError", "Exactly one element of the metrics list should return data."),
        ({"Expression": "errors +"}, "ValidationError", "Error in expression rate"),
        ({"Expression": "other / calls"}, "ValidationError", "Unrecognized metric id other"),
    ],
)
def test_math_alarm_refusals(cloudwatch: Any, change: dict[str, Any], code: str, message: str) -> None:
    args = _math_alarm()
    if "MetricName" in change or "Statistic" in change:
        args.update(change)
    else:
        args["Metrics"][2].update(change)
    with pytest.raises(ClientError) as err:
        cloudwatch.put_metric_alarm(**args)
    assert err.value.response["Error"]["Code"] == code
    assert message in err.value.response["Error"]["Message"]
