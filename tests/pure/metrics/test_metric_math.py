"""Metric math (metrics/_math.py): parsing and evaluation, table by table, with no store and no clock."""

from __future__ import annotations

import math
import re

import pytest

from borealis.metrics._math import (
    MAX_DEPTH,
    MAX_EXPRESSION,
    MAX_POINTS,
    Array,
    Budget,
    Grid,
    MathError,
    TimeSeries,
    Value,
    evaluate,
    parse,
    references,
)

# Five periods of 60 s from t=0; m1 misses t=120, m2 misses t=0.
M1 = TimeSeries("m1", 60, ((0.0, 1.0), (60.0, 2.0), (180.0, 4.0), (240.0, 5.0)))
M2 = TimeSeries("m2", 60, ((60.0, 10.0), (120.0, 20.0), (180.0, 30.0), (240.0, 40.0)))
ERRORS = TimeSeries("errors", 60, ((0.0, 0.0), (60.0, 6.0)))
GRID = Grid(0.0, 300.0)
QUERIES: dict[str, Value] = {"m1": M1, "m2": M2, "errors_total": ERRORS, "k": 3.0}


def run(text: str) -> Value:
    return evaluate(
        parse(text),
        lookup=QUERIES.__getitem__,
        metrics=lambda needle: [s for i, s in QUERIES.items() if isinstance(s, TimeSeries) and (needle or "") in i],
        grid=GRID,
        period=60,
    )


def points(value: Value) -> list[tuple[float, float]]:
    assert isinstance(value, TimeSeries), value
    return list(value.points)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("2 ^ 3 ^ 2", 512.0),  # right-associative
        ("-2 ^ 2", -4.0),
        ("10 / 4 - 1", 1.5),
        ("k * 2", 6.0),
        ("SUM(m1)", 12.0),
        ("AVG(m1)", 3.0),
        ("MAX(m2)", 40.0),
        ("MIN(m2) + 1", 11.0),
        ("STDDEV(m2)", math.sqrt(125.0)),
        ("DATAPOINT_COUNT(m1)", 4.0),
        ("PERIOD(m1)", 60.0),
        ("ABS(-2.5)", 2.5),
        ("CEIL(1.2) + FLOOR(1.8)", 3.0),
        ("1e3 / .5", 2000.0),
    ],
)
def test_scalars(text: str, expected: float) -> None:
    assert run(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m1 * 2", [(0, 2), (60, 4), (180, 8), (240, 10)]),
        ("100 - m1", [(0, 99), (60, 98), (180, 96), (240, 95)]),
        ("m1 + m2", [(60, 12), (180, 34), (240, 45)]),  # only the timestamps both have
        ("m2 / m1", [(60, 5), (180, 7.5), (240, 8)]),
        ("m2 / (m1 - 2)", [(180, 15), (240, 40 / 3)]),  # x / 0 is left out
        ("-m1", [(0, -1), (60, -2), (180, -4), (240, -5)]),
        ("m1 - AVG(m1)", [(0, -2), (60, -1), (180, 1), (240, 2)]),
        ("SUM([m1, m2])", [(0, 1), (60, 12), (120, 20), (180, 34), (240, 45)]),
        ("AVG([m1, m2])", [(0, 1), (60, 6), (120, 20), (180, 17), (240, 22.5)]),
        ("MAX([m1, m2])", [(0, 1), (60, 10), (120, 20), (180, 30), (240, 40)]),
        ("MIN(METRICS())", [(0, 0), (60, 2), (120, 20), (180, 4), (240, 5)]),
        ("SUM(METRICS('m'))", [(0, 1), (60, 12), (120, 20), (180, 34), (240, 45)]),
        ("RATE(m2)", [(120, 10 / 60), (180, 10 / 60), (240, 10 / 60)]),
        ("RATE(m1)", [(60, 1 / 60), (180, 2 / 120), (240, 1 / 60)]),
        ("DIFF(m1)", [(60, 1), (180, 2), (240, 1)]),
        ("FILL(m1, 0)", [(0, 1), (60, 2), (120, 0), (180, 4), (240, 5)]),
        ("FILL(m1, k * 10)", [(0, 1), (60, 2), (120, 30), (180, 4), (240, 5)]),
        ("FILL(m2, REPEAT)", [(0, 10), (60, 10), (120, 20), (180, 30), (240, 40)]),
        ("FILL(m1, repeat)", [(0, 1), (60, 2), (120, 2), (180, 4), (240, 5)]),
        ("FILL(m1, LINEAR)", [(0, 1), (60, 2), (120, 3), (180, 4), (240, 5)]),
        ("FILL(errors_total, LINEAR)", [(0, 0), (60, 6), (120, 6), (180, 6), (240, 6)]),
        ("TIME_SERIES(7)", [(0, 7), (60, 7), (120, 7), (180, 7), (240, 7)]),
        ("ABS(m1 - 3)", [(0, 2), (60, 1), (180, 1), (240, 2)]),
        ("fill(m1, 0) + 1", [(0, 2), (60, 3), (120, 1), (180, 5), (240, 6)]),  # function names in any case
    ],
)
def test_series(text: str, expected: list[tuple[float, float]]) -> None:
    assert points(run(text)) == [(float(t), pytest.approx(v)) for t, v in expected]


def test_arrays() -> None:
    both = run("[m1, m2] * 2")
    assert isinstance(both, Array) and [s.label for s in both.items] == ["m1", "m2"]
    assert both.items[1].points[0] == (60.0, 20.0)
    everything = run("METRICS()")
    assert isinstance(everything, Array) and len(everything.items) == 3
    only = run("METRICS('errors')")
    assert isinstance(only, Array) and [s.label for s in only.items] == ["errors"]
    filled = run("FILL(METRICS(), 0)")
    assert isinstance(filled, Array) and all(len(s.points) == 5 for s in filled.items)
    rates = run("RATE([m1, m2])")
    assert isinstance(rates, Array) and len(rates.items[0].points) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("m1 +", "ends too early"),
        ("(m1 + m2", "expected ')'"),
        ("m1 m2", "unexpected 'm2'"),
        ("m1 $ 2", "unexpected character '$'"),
        ("[]", "empty array"),
        ("FOO(m1)", "unknown function FOO"),
        ("FILL(m1)", "FILL takes 2 argument(s)"),
        ("FILL(m1, m2)", "must be a number"),
        ("SUM(m1, m2)", "SUM takes 1"),
        ("METRICS(m1)", "quoted string"),
        ("[m1, 2]", "not numbers"),
        ("[m1] + [m2]", "two arrays"),
        ("RATE(3)", "needs a time series"),
        ("PERIOD([m1, m2])", "single time series"),
        ("'text' + 1", "only an argument of METRICS"),
        ("REPEAT + 1", "only an argument of FILL"),
        ("SUM(METRICS('nothing'))", "empty array"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(MathError, match=re.escape(message)):
        run(text)


def test_bounds() -> None:
    with pytest.raises(MathError, match="longer than"):
        parse("1+" * (MAX_EXPRESSION // 2) + "1")
    with pytest.raises(MathError, match="nests more than"):
        parse("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(MathError, match="nests more than"):
        parse("-" * (MAX_DEPTH + 1) + "1")
    parse("(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1))  # deep but allowed
    with pytest.raises(MathError, match="periods"):
        evaluate(parse("TIME_SERIES(1)"), lookup=QUERIES.__getitem__, metrics=lambda n: [], grid=Grid(0, 1e9), period=1)


def test_references() -> None:
    assert references(parse("FILL(m1, REPEAT) + SUM([m2, e_1]) / METRICS('x')")) == {"m1", "m2", "e_1"}
    assert references(parse("1 + 2")) == set()


def test_overflow_is_not_a_number_not_a_failure() -> None:
    # fsum past the largest float raised OverflowError, and CEIL/FLOOR of inf too: a 500 before.
    big = TimeSeries("big", 60, ((0.0, 1e308), (60.0, 1e308)))
    value = evaluate(parse("SUM(big)"), lookup={"big": big}.__getitem__, metrics=lambda n: [], grid=GRID, period=60)
    assert isinstance(value, float) and math.isnan(value)
    assert run("CEIL(1e308*10)") == math.inf
    assert run("FLOOR(0-1e308*10)") == -math.inf
    nan = run("CEIL(10^400*0)")
    assert isinstance(nan, float) and math.isnan(nan)


def test_work_is_bounded_per_request() -> None:
    # m1+m1+...+m1 over a 100,800-point series took about 40 s of CPU for one 2,048-character expression.
    n = MAX_POINTS
    long = TimeSeries("m1", 1, tuple((float(t), 1.0) for t in range(n)))
    grid = Grid(0.0, float(n))
    text = "+".join(["m1"] * 20)

    def go(expr: str, budget: Budget | None = None) -> Value:
        return evaluate(
            parse(expr), lookup={"m1": long}.__getitem__, metrics=lambda x: [long], grid=grid, period=1, budget=budget
        )

    with pytest.raises(MathError, match="more than 1000000 datapoints"):
        go(text)
    with pytest.raises(MathError, match="datapoints"):
        go("FILL([" + ",".join(["m1"] * 20) + "], 0)")
    shared = Budget()
    for _ in range(3):  # three queries of one request share it
        go("m1+m1", shared)
    with pytest.raises(MathError, match="datapoints"):
        go("m1+m1", shared)
    assert len(points(go("m1*2+1"))) == n  # an ordinary expression over the longest series is fine
