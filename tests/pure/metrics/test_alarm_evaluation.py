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
        # Fewer datapoints than DatapointsToAlarm, all breaching, one in the evaluation periods: not enough.
        ([B, M, M], 3, "missing", "OK", "INSUFFICIENT_DATA"),
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


def _row(text: str) -> list[float | None]:
    """A row of the user guide's tables: 0 not breaching, X breaching, - missing (oldest first)."""
    return [{"0": G, "X": B, "-": M}[c] for c in text.split()]


# CloudWatch user guide, "How alarm state is evaluated when data is missing": the two example tables, every
# cell (5 datapoints retrieved for 3 evaluation periods; "retain" keeps the current state).
TREATS = ("missing", "ignore", "breaching", "notBreaching")


@pytest.mark.parametrize(
    ("to_alarm", "row", "expected"),
    [
        (3, "0 - X - X", ("OK", "OK", "OK", "OK")),
        (3, "0 - - - -", ("OK", "OK", "OK", "OK")),
        (3, "- - - - -", ("INSUFFICIENT_DATA", "retain", "ALARM", "OK")),
        (3, "0 X X - X", ("ALARM", "ALARM", "ALARM", "ALARM")),
        (3, "- - - - X", ("INSUFFICIENT_DATA", "retain", "ALARM", "OK")),
        (3, "X - - - -", ("ALARM", "retain", "ALARM", "OK")),
        (2, "0 - X - X", ("ALARM", "ALARM", "ALARM", "ALARM")),
        (2, "0 0 X 0 X", ("ALARM", "ALARM", "ALARM", "ALARM")),
        (2, "0 - X - -", ("OK", "OK", "ALARM", "OK")),
        (2, "- - - - 0", ("OK", "OK", "ALARM", "OK")),
        (2, "- - - - X", ("INSUFFICIENT_DATA", "retain", "ALARM", "OK")),
    ],
)
def test_the_user_guides_tables(to_alarm: int, row: str, expected: tuple[str, ...]) -> None:
    for treat, want in zip(TREATS, expected, strict=True):
        for current in ("OK", "ALARM", "INSUFFICIENT_DATA"):
            state = evaluate(
                _row(row),
                periods=3,
                threshold=5,
                operator="GreaterThanThreshold",
                datapoints_to_alarm=to_alarm,
                treat_missing=treat,
                current=current,
            )
            assert state == (current if want == "retain" else want), (row, treat, current)


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
