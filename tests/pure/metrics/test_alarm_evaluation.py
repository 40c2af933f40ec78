"""The alarm rule as a table: periods, DatapointsToAlarm, comparison and TreatMissingData."""

from __future__ import annotations

import pytest

from borealis.metrics._alarms import evaluate

B, G, M = 10.0, 1.0, None  # breaching, good (not breaching), missing (threshold 5, GreaterThanThreshold)


@pytest.mark.parametrize(
    ("values", "to_alarm", "treat", "current", "expected"),
    [
        ([B, B, B], 3, "missing", "OK", "ALARM"),
        ([G, B, B], 3, "missing", "OK", "OK"),
        ([G, B, B], 2, "missing", "OK", "ALARM"),
        ([B, G, B], 2, "missing", "OK", "ALARM"),
        ([G, G, B], 2, "missing", "ALARM", "OK"),
        ([M, M, M], 3, "missing", "OK", "INSUFFICIENT_DATA"),
        ([M, M, M], 3, "ignore", "ALARM", "ALARM"),
        ([M, M, M], 3, "ignore", "OK", "OK"),
        ([M, M, M], 3, "breaching", "OK", "ALARM"),
        ([M, M, M], 3, "notBreaching", "ALARM", "OK"),
        ([G, M, M], 3, "missing", "ALARM", "OK"),
        ([G, M, M], 3, "breaching", "OK", "OK"),
        ([B, M, M], 3, "breaching", "OK", "ALARM"),
        ([B, M, M], 3, "notBreaching", "OK", "OK"),
        # Fewer datapoints than DatapointsToAlarm: ALARM only when every one present breaches.
        ([B, M, M], 3, "missing", "OK", "ALARM"),
        ([B, M, G], 2, "ignore", "OK", "OK"),
        ([B, M, B], 2, "ignore", "OK", "ALARM"),
    ],
)
def test_rule(values: list[float | None], to_alarm: int, treat: str, current: str, expected: str) -> None:
    state = evaluate(
        values,
        threshold=5,
        operator="GreaterThanThreshold",
        datapoints_to_alarm=to_alarm,
        treat_missing=treat,
        current=current,
    )
    assert state == expected


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("GreaterThanThreshold", 5.0, "OK"),
        ("GreaterThanOrEqualToThreshold", 5.0, "ALARM"),
        ("LessThanThreshold", 5.0, "OK"),
        ("LessThanOrEqualToThreshold", 5.0, "ALARM"),
        ("LessThanThreshold", 4.9, "ALARM"),
    ],
)
def test_operators_at_the_threshold(operator: str, value: float, expected: str) -> None:
    state = evaluate(
        [value], threshold=5, operator=operator, datapoints_to_alarm=1, treat_missing="missing", current="OK"
    )
    assert state == expected
