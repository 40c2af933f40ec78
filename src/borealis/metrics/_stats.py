"""CloudWatch's extended statistics over a period's values: percentiles, trimmed and winsorized means, trimmed
counts and sums, the interquartile mean and percentile rank (the user guide's "Statistics definitions").

Pure functions over the values of a period, given as (value, count) pairs in ascending order. Names follow
CloudWatch: ``p99``/``p99.9``; ``tm90``, ``wm98``, ``tc90``, ``ts90`` (short for ``TM(:90%)`` ...); ``TM(a:b)``,
``WM(a:b)``, ``TC(a:b)``, ``TS(a:b)`` with each bound a percentage (``10%``) or an absolute value (``150``),
either left out; ``IQM`` (``TM(25%:75%)``); ``PR(a:b)`` with absolute bounds. The rules:

- percentiles take the nearest rank;
- a range keeps the values ranked in (a%, b%] of the period's values, or the values in (a, b] for absolute
  bounds (lower bound exclusive, upper inclusive, as the user guide says for PR); a bound that cuts a value's
  repeats keeps that part of them, so TC may be fractional as on CloudWatch;
- WM counts the values outside the range as the range's edge values;
- PR is the percentage of values in (a, b].
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Extended", "compute", "parse"]

_NUMBER = r"\d{1,15}(?:\.\d{1,10})?"
_PERCENTILE = re.compile(rf"^p({_NUMBER})$")
_SHORT = re.compile(rf"^(tm|wm|tc|ts)({_NUMBER})$")
_LONG = re.compile(rf"^(TM|WM|TC|TS|PR)\(\s*(?:({_NUMBER})(%)?)?\s*:\s*(?:({_NUMBER})(%)?)?\s*\)$")

Values = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range: a percentage of the values, or a value."""

    amount: float
    percent: bool


@dataclass(frozen=True, slots=True)
class Extended:
    """A parsed extended statistic: its kind (``p``, ``TM``, ``WM``, ``TC``, ``TS``, ``PR``) and bounds."""

    kind: str
    low: Bound | None = None
    high: Bound | None = None


def parse(name: str) -> Extended | None:
    """The extended statistic ``name`` stands for, or None if it is not one CloudWatch knows."""
    found = _PERCENTILE.match(name)
    if found:
        p = float(found[1])
        return Extended("p", high=Bound(p, True)) if p <= 100 else None
    if name == "IQM":
        return Extended("TM", Bound(25.0, True), Bound(75.0, True))
    found = _SHORT.match(name)
    if found:
        p = float(found[2])
        return Extended(found[1].upper(), None, Bound(p, True)) if p <= 100 else None
    found = _LONG.match(name)
    if not found:
        return None
    kind = found[1]
    low = None if found[2] is None else Bound(float(found[2]), found[3] == "%")
    high = None if found[4] is None else Bound(float(found[4]), found[5] == "%")
    if low is None and high is None:
        return None
    if any(b is not None and b.percent and b.amount > 100 for b in (low, high)):
        return None
    if kind == "PR" and any(b is not None and b.percent for b in (low, high)):
        return None  # a percentile rank is of values
    return Extended(kind, low, high)


def _rank(bound: Bound | None, values: Values, total: float, default: float) -> float:
    """A bound as a rank among the values (0..total)."""
    if bound is None:
        return default
    if bound.percent:
        return bound.amount / 100 * total
    return sum(c for v, c in values if v <= bound.amount)


def compute(stat: Extended, values: Values) -> float | None:
    """The statistic over ascending (value, count) pairs; None where it has no value (no values in range)."""
    total = sum(c for _, c in values)
    if total <= 0:
        return None
    if stat.kind == "p":
        assert stat.high is not None
        rank = max(stat.high.amount / 100 * total, min(1.0, total))
        seen = 0.0
        for value, c in values:
            seen += c
            if seen >= rank - 1e-9 * total:
                return value
        return values[-1][0]
    low = _rank(stat.low, values, total, 0.0)
    high = _rank(stat.high, values, total, total)
    inside = weighted = below = above = 0.0
    edge_low = edge_high = math.nan
    before = 0.0
    for value, c in values:
        after = before + c
        part = max(0.0, min(high, after) - max(low, before))
        if part > 0:
            if math.isnan(edge_low):
                edge_low = value
            edge_high = value
        inside += part
        weighted += part * value
        below += max(0.0, min(after, low) - before)
        above += max(0.0, after - max(before, high))
        before = after
    if stat.kind == "PR":
        return 100 * inside / total
    if stat.kind == "TC":
        return inside
    if stat.kind == "TS":
        return weighted
    if inside <= 0:
        return None
    if stat.kind == "TM":
        return weighted / inside
    return (weighted + below * edge_low + above * edge_high) / total  # WM
