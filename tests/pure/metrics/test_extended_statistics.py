"""CloudWatch's extended statistics (metrics/_stats.py) over known values: percentiles, trimmed and winsorized
means, trimmed counts and sums, IQM and percentile rank, and the names CloudWatch refuses."""

from __future__ import annotations

import pytest

from borealis.metrics import Datapoint
from borealis.metrics._stats import compute, parse

ONE_TO_TEN = tuple((float(v), 1.0) for v in range(1, 11))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("p50", 5.0),
        ("p100", 10.0),
        ("p0", 1.0),
        ("tm90", 5.0),  # the top 10 % left out
        ("TM(:90%)", 5.0),
        ("IQM", 5.5),  # ranks (2.5, 7.5]: half of 3, 4..7, half of 8
        ("TM(2:8)", 5.5),  # values in (2, 8]
        ("TC(10%:90%)", 8.0),
        ("tc90", 9.0),
        ("TS(10%:90%)", 44.0),
        ("ts90", 45.0),
        ("WM(:90%)", 5.4),  # 10 counted as 9
        ("wm98", 5.5),
        ("PR(:3)", 30.0),
        ("PR(2:5)", 30.0),
        ("TC(20:30)", 0.0),
    ],
)
def test_statistics_of_one_to_ten(name: str, expected: float) -> None:
    stat = parse(name)
    assert stat is not None
    assert compute(stat, ONE_TO_TEN) == pytest.approx(expected)


def test_counts_weigh_values() -> None:
    values = ((1.0, 98.0), (100.0, 2.0))
    assert compute(parse("p99") or pytest.fail(), values) == 100.0
    assert compute(parse("tm98") or pytest.fail(), values) == 1.0
    assert compute(parse("TM(1%:99%)") or pytest.fail(), values) == pytest.approx((97 + 100) / 98)


@pytest.mark.parametrize("name", ["p101", "tm100.5", "PR(10%:20%)", "TM(:)", "TM()", "q50", "tm", "Average", "iqm"])
def test_names_cloudwatch_refuses(name: str) -> None:
    assert parse(name) is None


def test_a_datapoint_answers_them_only_with_known_non_negative_values() -> None:
    point = Datapoint(0.0, 10.0, 55.0, 1.0, 10.0, ONE_TO_TEN)
    assert (point.statistic("IQM"), point.statistic("Average"), point.statistic("PR(:5)")) == (5.5, 5.5, 50.0)
    assert Datapoint(0.0, 2.0, 5.0, 1.0, 4.0, None).statistic("tm90") is None  # a statistic set's values
    assert Datapoint(0.0, 2.0, 1.0, -1.0, 2.0, ((-1.0, 1.0), (2.0, 1.0))).statistic("p50") is None
