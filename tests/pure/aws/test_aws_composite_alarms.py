"""CloudWatch composite alarms through boto3: rules on other alarms' states, nesting, cycles, refusals, listing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from borealis.metrics import MetricStore
from borealis.metrics._alarms import AlarmBook
from borealis.metrics._rule import RuleError, parse_rule

ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"


def _metric_alarm(cloudwatch: Any, name: str) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace="MyApp", MetricName=name, Statistic="Maximum", Period=60, EvaluationPeriods=1,
        Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip


def _set(cloudwatch: Any, name: str, state: str) -> None:
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


def _composite(cloudwatch: Any, name: str) -> dict[str, Any]:
    found = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["CompositeAlarm"])["CompositeAlarms"]
    assert len(found) == 1, found
    return dict(found[0])


def _error(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def test_a_composite_alarm_follows_its_rule(
    cloudwatch: Any, parts: tuple[MetricStore, AlarmBook], tmp_path: Path
) -> None:
    for name in ("cpu high", "disk-full"):
        _metric_alarm(cloudwatch, name)
    cloudwatch.put_composite_alarm(
        AlarmName="page-me",
        AlarmRule=f'ALARM("cpu high") AND NOT OK({ARN}disk-full)',
        AlarmActions=["arn:aws:sns:us-east-1:123456789012:pager"],
        AlarmDescription="both",
        Tags=[{"Key": "team", "Value": "db"}],
    )
    # Evaluated at once: "cpu high" is not in ALARM, so the rule is false.
    alarm = _composite(cloudwatch, "page-me")
    assert alarm["StateValue"] == "OK"
    assert alarm["AlarmArn"] == ARN + "page-me"
    assert alarm["AlarmRule"] == f'ALARM("cpu high") AND NOT OK({ARN}disk-full)'
    assert alarm["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:pager"]
    assert alarm["ActionsEnabled"] is True and alarm["AlarmDescription"] == "both"

    _set(cloudwatch, "cpu high", "ALARM")  # disk-full is INSUFFICIENT_DATA: not OK
    alarm = _composite(cloudwatch, "page-me")
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateReason"].startswith(f"{ARN}cpu high transitioned to ALARM at ")
    triggering = json.loads(alarm["StateReasonData"])["triggeringAlarms"]
    assert [(t["arn"], t["state"]["value"]) for t in triggering] == [(ARN + "cpu high", "ALARM")]

    _set(cloudwatch, "disk-full", "OK")
    assert _composite(cloudwatch, "page-me")["StateValue"] == "OK"
    _set(cloudwatch, "disk-full", "ALARM")
    assert _composite(cloudwatch, "page-me")["StateValue"] == "ALARM"

    # Metric alarms only unless asked; both kinds when asked.
    assert cloudwatch.describe_alarms()["CompositeAlarms"] == []
    both = cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert [a["AlarmName"] for a in both["MetricAlarms"]] == ["cpu high", "disk-full"]
    assert [a["AlarmName"] for a in both["CompositeAlarms"]] == ["page-me"]
    assert cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"], StateValue="OK")["CompositeAlarms"] == []

    history = cloudwatch.describe_alarm_history(AlarmName="page-me", AlarmTypes=["CompositeAlarm"])
    summaries = [h["HistorySummary"] for h in history["AlarmHistoryItems"]]
    assert summaries == [
        "Alarm updated from OK to ALARM",
        "Alarm updated from ALARM to OK",
        "Alarm updated from OK to ALARM",
        "Alarm updated from INSUFFICIENT_DATA to OK",
        'Alarm "page-me" created',
    ]
    assert {h["AlarmType"] for h in history["AlarmHistoryItems"]} == {"CompositeAlarm"}
    assert cloudwatch.describe_alarm_history(AlarmName="page-me")["AlarmHistoryItems"] == []  # metric alarms only

    tags = cloudwatch.list_tags_for_resource(ResourceARN=ARN + "page-me")["Tags"]
    assert tags == [{"Key": "team", "Value": "db"}]
    cloudwatch.disable_alarm_actions(AlarmNames=["page-me"])
    assert _composite(cloudwatch, "page-me")["ActionsEnabled"] is False

    # An update keeps the state and is evaluated at once.
    cloudwatch.put_composite_alarm(AlarmName="page-me", AlarmRule="ALARM(disk-full) AND FALSE")
    assert _composite(cloudwatch, "page-me")["StateValue"] == "OK"

    # Kept across restarts, rule and all: a child's change still moves it.
    cloudwatch.put_composite_alarm(AlarmName="page-me", AlarmRule='ALARM(disk-full) OR ALARM("cpu high")')
    _set(cloudwatch, "disk-full", "OK")
    _set(cloudwatch, "cpu high", "OK")
    again = AlarmBook(tmp_path / "alarms.json", region="us-east-1", account="123456789012")
    assert again.composites["page-me"]["StateValue"] == "OK"
    again.set_alarm_state({"AlarmName": "disk-full", "StateValue": "ALARM", "StateReason": "x"}, time.time())
    assert again.composites["page-me"]["StateValue"] == "ALARM"


def test_a_metric_alarm_evaluated_on_data_moves_its_parent(
    cloudwatch: Any, parts: tuple[MetricStore, AlarmBook]
) -> None:
    store, book = parts
    _metric_alarm(cloudwatch, "depth")
    cloudwatch.put_composite_alarm(AlarmName="parent", AlarmRule="ALARM(depth)")
    now = time.time() // 60 * 60 + 30
    cloudwatch.put_metric_data(
        Namespace="MyApp", MetricData=[{"MetricName": "depth", "Value": 5.0, "Timestamp": now - 60}]
    )
    assert book.evaluate_all(store, now) == 1  # the metric alarm; its parent follows in the same change
    assert _composite(cloudwatch, "parent")["StateValue"] == "ALARM"


def test_nested_composites_a_cycle_and_deleting(cloudwatch: Any) -> None:
    for name in ("a", "b", "c"):
        _metric_alarm(cloudwatch, name)
    cloudwatch.put_composite_alarm(AlarmName="two-of-three", AlarmRule="AT_LEAST(2, ALARM, (a, b, c))")
    cloudwatch.put_composite_alarm(AlarmName="top", AlarmRule="ALARM(two-of-three) OR ALARM(c)")
    _set(cloudwatch, "a", "ALARM")
    assert _composite(cloudwatch, "two-of-three")["StateValue"] == "OK"
    assert _composite(cloudwatch, "top")["StateValue"] == "OK"
    _set(cloudwatch, "b", "ALARM")  # two of three: both levels follow in the same call
    assert _composite(cloudwatch, "two-of-three")["StateValue"] == "ALARM"
    assert _composite(cloudwatch, "top")["StateValue"] == "ALARM"

    children = cloudwatch.describe_alarms(ChildrenOfAlarmName="top")
    assert [a["AlarmName"] for a in children["MetricAlarms"]] == ["c"]
    assert [a["AlarmName"] for a in children["CompositeAlarms"]] == ["two-of-three"]
    parents = cloudwatch.describe_alarms(ParentsOfAlarmName="c")
    assert parents["MetricAlarms"] == []
    assert [a["AlarmName"] for a in parents["CompositeAlarms"]] == ["top", "two-of-three"]

    # A child cannot go while a composite alarm names it.
    code, message = _error(cloudwatch.delete_alarms, AlarmNames=["a", "c"])
    assert code == "ValidationError"
    assert message == "Cannot delete a,c as there are composite alarm(s) depending on them."
    assert len(cloudwatch.describe_alarms()["MetricAlarms"]) == 3  # nothing deleted

    # A cycle: evaluation stops where it meets an alarm again, and neither can be deleted until it is broken.
    cloudwatch.put_composite_alarm(AlarmName="two-of-three", AlarmRule="AT_LEAST(2, ALARM, (a, b, c)) OR ALARM(top)")
    _set(cloudwatch, "a", "OK")  # two-of-three stays in ALARM through top, which stays through two-of-three
    assert _composite(cloudwatch, "two-of-three")["StateValue"] == "ALARM"
    code, message = _error(cloudwatch.delete_alarms, AlarmNames=["top"])
    assert (code, message) == ("ValidationError", "Cannot delete top as there are composite alarm(s) depending on it.")
    cloudwatch.put_composite_alarm(AlarmName="two-of-three", AlarmRule="false")
    assert _composite(cloudwatch, "two-of-three")["StateValue"] == "OK"
    assert _composite(cloudwatch, "top")["StateValue"] == "OK"
    cloudwatch.delete_alarms(AlarmNames=["top"])
    cloudwatch.delete_alarms(AlarmNames=["two-of-three", "a", "b", "c"])
    left = cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert left["MetricAlarms"] == [] and left["CompositeAlarms"] == []


def test_a_cycle_that_would_flip_forever_stops_where_it_started(cloudwatch: Any) -> None:
    _metric_alarm(cloudwatch, "a")
    cloudwatch.put_composite_alarm(AlarmName="c1", AlarmRule="ALARM(a)")
    cloudwatch.put_composite_alarm(AlarmName="c2", AlarmRule="ALARM(c1)")
    cloudwatch.put_composite_alarm(AlarmName="c1", AlarmRule="ALARM(a) AND NOT ALARM(c2)")
    _set(cloudwatch, "a", "ALARM")  # c1 -> ALARM, so c2 -> ALARM, which would turn c1 back: not evaluated again
    assert (_composite(cloudwatch, "c1")["StateValue"], _composite(cloudwatch, "c2")["StateValue"]) == (
        "ALARM",
        "ALARM",
    )


def test_refusals(cloudwatch: Any) -> None:
    _metric_alarm(cloudwatch, "a")
    code, message = _error(cloudwatch.put_composite_alarm, AlarmName="x", AlarmRule="ALARM(a) OR OK(nope)")
    assert code == "ValidationError"
    assert message == "Could not save the composite alarm as alarms [nope] in the alarm rule do not exist"
    for rule in (
        "ALARM(a) AND",
        "ALARM(a",
        "SOMETIMES(a)",
        "ALARM()",
        "AT_LEAST(two, ALARM, (a))",
        "ALARM(a) ALARM(a)",
    ):
        assert _error(cloudwatch.put_composite_alarm, AlarmName="x", AlarmRule=rule)[0] == "ValidationError", rule
    assert _error(cloudwatch.put_composite_alarm, AlarmName="a", AlarmRule="TRUE")[0] == "ValidationError"
    cloudwatch.put_composite_alarm(AlarmName="x", AlarmRule="TRUE")
    assert _composite(cloudwatch, "x")["StateValue"] == "ALARM"
    assert _error(cloudwatch.put_metric_alarm, AlarmName="x", Namespace="N", MetricName="m", Statistic="Sum",
                  Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")[0] == (
        "ValidationError"
    )  # fmt: skip
    code, message = _error(cloudwatch.put_composite_alarm, AlarmName="y", AlarmRule="TRUE", OKActions=["pager"])
    assert (code, message) == ("ValidationError", "Invalid arn syntax: pager")
    code, _ = _error(cloudwatch.put_composite_alarm, AlarmName="y", AlarmRule="TRUE", ActionsSuppressor="a")
    assert code == "ValidationError"
    cloudwatch.put_composite_alarm(
        AlarmName="y", AlarmRule="TRUE", ActionsSuppressor="a", ActionsSuppressorWaitPeriod=60,
        ActionsSuppressorExtensionPeriod=120,
    )  # fmt: skip
    y = _composite(cloudwatch, "y")
    assert (y["ActionsSuppressor"], y["ActionsSuppressorWaitPeriod"], y["ActionsSuppressorExtensionPeriod"]) == (
        "a", 60, 120
    )  # fmt: skip


def test_listing_pages_over_both_kinds(cloudwatch: Any) -> None:
    for i in range(3):
        _metric_alarm(cloudwatch, f"m{i}")
        cloudwatch.put_composite_alarm(AlarmName=f"c{i}", AlarmRule=f"ALARM(m{i})")
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmTypes=["MetricAlarm", "CompositeAlarm"], PaginationConfig={"PageSize": 2}
    )
    seen = [
        (a["AlarmName"], kind) for page in pages for kind in ("MetricAlarms", "CompositeAlarms") for a in page[kind]
    ]
    assert sorted(seen) == [(f"c{i}", "CompositeAlarms") for i in range(3)] + [
        (f"m{i}", "MetricAlarms") for i in range(3)
    ]


@pytest.mark.parametrize(
    ("rule", "states", "expected"),
    [
        # NOT binds tighter than AND, AND than OR.
        ("ALARM(a) OR ALARM(b) AND ALARM(c)", {"a": "ALARM", "b": "OK", "c": "OK"}, True),
        ("(ALARM(a) OR ALARM(b)) AND ALARM(c)", {"a": "ALARM", "b": "OK", "c": "OK"}, False),
        ("NOT ALARM(a) AND OK(b)", {"a": "OK", "b": "OK"}, True),
        ("NOT (ALARM(a) AND OK(b))", {"a": "ALARM", "b": "OK"}, False),
        ("INSUFFICIENT_DATA(a)", {"a": "INSUFFICIENT_DATA"}, True),
        ('ALARM("name with (parens), and spaces")', {"name with (parens), and spaces": "ALARM"}, True),
        (f"ALARM({ARN}a)", {"a": "ALARM"}, True),
        ("AT_LEAST(2, ALARM, (a, b, c))", {"a": "ALARM", "b": "OK", "c": "ALARM"}, True),
        ("AT_LEAST(2, ALARM, (a, b, c))", {"a": "ALARM", "b": "OK", "c": "OK"}, False),
        ("AT_LEAST(50%, NOT OK, (a, b, c, d))", {"a": "ALARM", "b": "INSUFFICIENT_DATA", "c": "OK", "d": "OK"}, True),
        ("AT_LEAST(51%, NOT OK, (a, b, c, d))", {"a": "ALARM", "b": "INSUFFICIENT_DATA", "c": "OK", "d": "OK"}, False),
        ("true and not false", {}, True),
    ],
)
def test_rule_semantics(rule: str, states: dict[str, str], expected: bool) -> None:
    parsed = parse_rule(rule, lambda ref: ref.removeprefix(ARN))
    assert set(parsed.children) == set(states)
    assert parsed.holds(states.__getitem__) is expected


def test_rule_limits() -> None:
    many = " OR ".join(f"ALARM(a{i})" for i in range(101))
    with pytest.raises(RuleError, match="at most 100"):
        parse_rule(many)
    assert len(parse_rule(many.rsplit(" OR ", 1)[0]).children) == 100
    with pytest.raises(RuleError):
        parse_rule("")
    # Untrusted input within the length limit: long chains evaluate without deep recursion, deep nesting is refused.
    for op in ("OR", "AND"):
        chain = parse_rule(f" {op} ".join(["TRUE"] * 1100))
        assert chain.holds(lambda name: "OK") is True
    assert parse_rule("NOT " * 2001 + "TRUE").holds(lambda name: "OK") is False
    assert parse_rule("(" * 32 + "TRUE" + ")" * 32).holds(lambda name: "OK") is True
    with pytest.raises(RuleError, match="deeper than 32"):
        parse_rule("(" * 2000 + "TRUE" + ")" * 2000)


def test_a_long_chain_of_composite_alarms_follows_in_one_change(parts: tuple[MetricStore, AlarmBook]) -> None:
    _, book = parts
    now = time.time()
    book.put_metric_alarm(
        {"AlarmName": "base", "Namespace": "N", "MetricName": "m", "Statistic": "Sum", "Period": 60,
         "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"}, now,
    )  # fmt: skip
    previous = "base"
    for i in range(1500):  # deeper than Python's recursion limit
        book.put_composite_alarm({"AlarmName": f"c{i}", "AlarmRule": f"ALARM({previous})"}, now)
        previous = f"c{i}"
    book.set_alarm_state({"AlarmName": "base", "StateValue": "ALARM", "StateReason": "x"}, now)
    assert book.composites["c1499"]["StateValue"] == "ALARM"
