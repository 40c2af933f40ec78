"""A CloudWatch alarm on a real Borealis goes to ALARM on its own (the periodic evaluation), with boto3."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from tests.integration.conftest import BorealisProcess


def test_alarm_is_evaluated_by_the_server(borealis: BorealisProcess) -> None:
    cloudwatch: Any = borealis.client("cloudwatch")
    namespace, name = f"It-{uuid.uuid4().hex[:8]}", f"alarm-{uuid.uuid4().hex[:8]}"
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=2,
        DatapointsToAlarm=1,
        Threshold=5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    # In the previous complete minute, which every evaluation in the next minute or so looks at.
    at = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(seconds=30)
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Errors", "Value": 9, "Timestamp": at}])
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]
        if state == "ALARM":
            break
        time.sleep(1)
    assert state == "ALARM"
    history = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert history[0]["HistorySummary"] == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    cloudwatch.delete_alarms(AlarmNames=[name])
