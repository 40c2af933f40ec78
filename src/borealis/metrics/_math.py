"""CloudWatch metric math: the expressions of GetMetricData and of alarms on ``Metrics``, parsed and evaluated.

Pure: text in, a tree out (:func:`parse`); a tree and the other queries' results in, a value out
(:func:`evaluate`). No store, no clock. The rules are the CloudWatch user guide's ("Using metric math",
"Metric math syntax and functions"):

- a value is a scalar, a time series, or an array of time series (``[m1, m2]``, ``METRICS()``);
- ``+ - * / ^`` work on any two of them: a scalar applies to every point, two series pair the points with the
  same timestamp (a timestamp missing from either is missing from the result), an array applies the operation
  to each of its series; a point whose result is not a finite number (``x / 0``) is left out;
- ``SUM``, ``AVG``, ``MIN``, ``MAX``, ``STDDEV`` of one series give a scalar (over its points); of an array,
  a series (over the series, at each timestamp where any has a point);
- ``RATE(m)`` is the change per second between consecutive points, ``DIFF(m)`` the change;
- ``FILL(m, value | REPEAT | LINEAR)`` gives a point to every period of the time range: the value, the most
  recent point before (the first one for a leading gap), or the straight line between the points around the
  gap (leading and trailing gaps take the nearest point);
- ``METRICS()`` is every metric (MetricStat) query of the request, ``METRICS('s')`` those whose Id contains
  ``s``; ``TIME_SERIES(x)`` a series holding ``x`` in every period; ``ABS``, ``CEIL``, ``FLOOR``,
  ``PERIOD(m)`` and ``DATAPOINT_COUNT(m)`` as the guide has them;
- an expression names other queries (metrics or expressions) by Id.

Bounds: an expression is at most 2,048 characters (MetricExpression in the service model) and nests at most
:data:`MAX_DEPTH` levels; a generated series (FILL, TIME_SERIES) has at most :data:`MAX_POINTS` points; and
the values the parts of a request's expressions make hold at most :data:`MAX_WORK` points in all (a
:class:`Budget`), so that neither ``m1+m1+...+m1`` over long series nor many such queries keep the process
busy for minutes (the work is linear in that count).
Errors are :class:`MathError` with a message saying what is wrong where; the caller adds the query's Id.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION",
    "MAX_POINTS",
    "MAX_WORK",
    "Array",
    "Budget",
    "Grid",
    "MathError",
    "Node",
    "TimeSeries",
    "Value",
    "evaluate",
    "parse",
    "references",
    "uses_metrics",
]

MAX_EXPRESSION = 2048
"""Characters in an expression (the service model's MetricExpression)."""
MAX_DEPTH = 64
"""Nesting levels (parentheses, calls, operators) a parsed expression may have."""
MAX_POINTS = 100_800
"""Points one generated series may have (GetMetricData's limit on datapoints per call)."""
MAX_WORK = 1_000_000
"""Points the values of a request's expressions (every part of every expression) may hold in all: ten times
what one GetMetricData call may return."""


class MathError(Exception):
    """An expression CloudWatch would refuse (syntax, unknown Id or function, wrong argument)."""


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """A series: its label, its period in seconds, and its points (epoch seconds, value), oldest first."""

    label: str
    period: int
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Array:
    """An array of time series (``[m1, m2]``, ``METRICS()``)."""

    items: tuple[TimeSeries, ...]


Value = Union[float, TimeSeries, Array]  # noqa: UP007 (a runtime alias: isinstance checks read it)


class Budget:
    """What is left of :data:`MAX_WORK` for one request's expressions; share one between its evaluations."""

    __slots__ = ("left",)

    def __init__(self, points: int = MAX_WORK) -> None:
        self.left = points

    def charge(self, value: Value) -> Value:
        """Count ``value``'s points; MathError once the budget is spent. Returns ``value``."""
        if isinstance(value, TimeSeries):
            self.left -= len(value.points)
        elif isinstance(value, Array):
            self.left -= len(value.items) + sum(len(s.points) for s in value.items)
        else:
            self.left -= 1
        if self.left < 0:
            raise MathError(
                f"the expressions work through more than {MAX_WORK} datapoints in all: use fewer or shorter series"
            )
        return value


@dataclass(frozen=True, slots=True)
class Grid:
    """The request's time range: periods start at ``start`` and before ``end`` (epoch seconds)."""

    start: float
    end: float

    def times(self, period: int) -> list[float]:
        """The start of every period of ``period`` seconds in the range."""
        count = max(0, math.ceil((self.end - self.start) / period))
        if count > MAX_POINTS:
            raise MathError(f"the time range holds {count} periods of {period} s, more than {MAX_POINTS}")
        return [self.start + k * period for k in range(count)]


# --------------------------------------------------------------------------------------------- syntax
#
# expr    := term (('+' | '-') term)*
# term    := unary (('*' | '/') unary)*
# unary   := '-' unary | power
# power   := primary ('^' unary)?
# primary := NUMBER | STRING | NAME | NAME '(' [expr (',' expr)*] ')' | '(' expr ')' | '[' expr (',' expr)* ']'


@dataclass(frozen=True, slots=True)
class Num:
    """A number."""

    value: float


@dataclass(frozen=True, slots=True)
class Str:
    """A quoted string (METRICS's argument)."""

    value: str


@dataclass(frozen=True, slots=True)
class Ref:
    """A name: another query's Id, or a keyword argument (REPEAT, LINEAR)."""

    name: str


@dataclass(frozen=True, slots=True)
class Call:
    """A function call."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class List:
    """``[a, b, ...]``."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class BinOp:
    """``left op right``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Neg:
    """``-operand``."""

    operand: Node


Node = Union[Num, Str, Ref, Call, List, BinOp, Neg]  # noqa: UP007 (a runtime alias)

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>\"[^\"]*\"|'[^']*')|(?P<op>[-+*/^(),\[\]]))"
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        m = _TOKEN.match(text, at)
        if m is None or m.end() == at:
            where = len(text) - len(text[at:].lstrip())
            raise MathError(f"unexpected character {text[where]!r} at position {where + 1}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        at = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise MathError("the expression ends too early" if op is None else f"expected {op!r} at the end")
        if op is not None and (token[0] != "op" or token[1] != op):
            raise MathError(f"expected {op!r} at position {token[2] + 1}, found {token[1]!r}")
        self.at += 1
        return token

    def is_op(self, *ops: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "op" and token[1] in ops

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise MathError(f"the expression nests more than {MAX_DEPTH} levels")

    def expr(self) -> Node:
        self.nested()
        node = self.term()
        while self.is_op("+", "-"):
            op = self.take()[1]
            node = BinOp(op, node, self.term())
        self.depth -= 1
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.is_op("*", "/"):
            op = self.take()[1]
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.is_op("-"):
            self.take()
            self.nested()
            node: Node = Neg(self.unary())
            self.depth -= 1
            return node
        if self.is_op("+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        node = self.primary()
        if self.is_op("^"):
            self.take()
            self.nested()
            node = BinOp("^", node, self.unary())
            self.depth -= 1
        return node

    def arguments(self, close: str) -> tuple[Node, ...]:
        args: list[Node] = []
        if self.is_op(close):
            self.take()
            return ()
        while True:
            args.append(self.expr())
            if self.is_op(","):
                self.take()
                continue
            self.take(close)
            return tuple(args)

    def primary(self) -> Node:
        kind, text, where = self.take()
        if kind == "num":
            return Num(float(text))
        if kind == "str":
            return Str(text[1:-1])
        if kind == "name":
            if self.is_op("("):
                self.take()
                return Call(text.upper(), self.arguments(")"))
            return Ref(text)
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        if text == "[":
            items = self.arguments("]")
            if not items:
                raise MathError(f"an empty array at position {where + 1}")
            return List(items)
        raise MathError(f"unexpected {text!r} at position {where + 1}")


def parse(text: str) -> Node:
    """The tree of ``text``; MathError if it is not a metric math expression."""
    if not text.strip():
        raise MathError("the expression is empty")
    if len(text) > MAX_EXPRESSION:
        raise MathError(f"the expression is longer than {MAX_EXPRESSION} characters")
    parser = _Parser(text)
    node = parser.expr()
    extra = parser.peek()
    if extra is not None:
        raise MathError(f"unexpected {extra[1]!r} at position {extra[2] + 1}")
    return node


_KEYWORDS = frozenset({"REPEAT", "LINEAR"})


def references(node: Node) -> set[str]:
    """The Ids ``node`` names (keyword arguments such as REPEAT left out); METRICS() is not expanded."""
    if isinstance(node, Ref):
        return set() if node.name in _KEYWORDS else {node.name}
    if isinstance(node, Call):
        return set().union(*(references(a) for a in node.args))
    if isinstance(node, List):
        return set().union(*(references(a) for a in node.items))
    if isinstance(node, BinOp):
        return references(node.left) | references(node.right)
    if isinstance(node, Neg):
        return references(node.operand)
    return set()


def uses_metrics(node: Node) -> bool:
    """Whether ``node`` calls METRICS() (so it depends on every metric query)."""
    if isinstance(node, Call):
        return node.name == "METRICS" or any(uses_metrics(a) for a in node.args)
    if isinstance(node, List):
        return any(uses_metrics(a) for a in node.items)
    if isinstance(node, BinOp):
        return uses_metrics(node.left) or uses_metrics(node.right)
    if isinstance(node, Neg):
        return uses_metrics(node.operand)
    return False


# ------------------------------------------------------------------------------------------ evaluation


def _finite(v: float) -> bool:
    return not (math.isnan(v) or math.isinf(v))


def _arith(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b if b else math.nan
        result = a**b
        return result if isinstance(result, float) else math.nan  # a complex root of a negative number
    except (OverflowError, ZeroDivisionError):
        return math.nan


def _map(series: TimeSeries, f: Callable[[float], float], label: str | None = None) -> TimeSeries:
    points = tuple((t, r) for t, v in series.points if _finite(r := f(v)))
    return TimeSeries(series.label if label is None else label, series.period, points)


def _binary(op: str, left: Value, right: Value) -> Value:
    if isinstance(left, Array) and isinstance(right, Array):
        raise MathError(f"the operator {op} cannot combine two arrays of time series")
    if isinstance(left, Array):
        assert not isinstance(right, Array)
        return Array(tuple(_series_op(op, s, right) for s in left.items))
    if isinstance(right, Array):
        assert not isinstance(left, Array)
        return Array(tuple(_series_op(op, left, s) for s in right.items))
    if isinstance(left, float) and isinstance(right, float):
        return _arith(op, left, right)
    return _series_op(op, left, right)


def _series_op(op: str, left: float | TimeSeries, right: float | TimeSeries) -> TimeSeries:
    if isinstance(left, float):
        assert isinstance(right, TimeSeries)
        return _map(right, lambda v: _arith(op, left, v))
    if isinstance(right, float):
        return _map(left, lambda v: _arith(op, v, right))
    other = dict(right.points)
    points = tuple(
        (t, r) for t, v in left.points if t in other and _finite(r := _arith(op, v, other[t]))
    )  # pairs by timestamp: a point missing from either side is missing from the result
    return TimeSeries(left.label, min(left.period, right.period), points)


_REDUCE: dict[str, Callable[[list[float]], float]] = {
    "SUM": math.fsum,
    "AVG": statistics.fmean,
    "MIN": min,
    "MAX": max,
    "STDDEV": lambda vs: statistics.pstdev(vs) if len(vs) > 1 else 0.0,
}


def _total(f: Callable[[list[float]], float], values: list[float]) -> float:
    try:
        return f(values)
    except (OverflowError, ValueError):  # fsum and pstdev past the largest float: not a finite number
        return math.nan


def _reduce(name: str, value: Value) -> Value:
    f = _REDUCE[name]
    if isinstance(value, float):
        return value
    if isinstance(value, TimeSeries):
        values = [v for _, v in value.points]
        return _total(f, values) if values else math.nan
    if not value.items:
        raise MathError(f"{name} of an empty array")
    by_time: dict[float, list[float]] = {}
    for s in value.items:
        for t, v in s.points:
            by_time.setdefault(t, []).append(v)
    points = tuple((t, r) for t, vs in sorted(by_time.items()) if _finite(r := _total(f, vs)))
    return TimeSeries(name, min(s.period for s in value.items), points)


def _per_series(value: Value, name: str, f: Callable[[TimeSeries], TimeSeries]) -> Value:
    if isinstance(value, TimeSeries):
        return f(value)
    if isinstance(value, Array):
        return Array(tuple(f(s) for s in value.items))
    raise MathError(f"{name} needs a time series or an array of time series")


def _rate(series: TimeSeries, per_second: bool) -> TimeSeries:
    out = []
    for (t0, v0), (t1, v1) in zip(series.points, series.points[1:], strict=False):
        change = v1 - v0
        out.append((t1, change / (t1 - t0) if per_second else change))
    return TimeSeries(series.label, series.period, tuple(out))


def _fill(series: TimeSeries, how: float | str, grid: Grid) -> TimeSeries:
    have = dict(series.points)
    times = grid.times(series.period)
    if isinstance(how, float):
        return TimeSeries(series.label, series.period, tuple((t, have.get(t, how)) for t in times))
    if not have:
        return series
    known = sorted(have.items())
    out: list[tuple[float, float]] = []
    k = 0  # index of the first known point at or after t
    for t in times:
        while k < len(known) and known[k][0] < t:
            k += 1
        if t in have:
            out.append((t, have[t]))
            continue
        before = known[k - 1] if k > 0 else None
        after = known[k] if k < len(known) else None
        if how == "REPEAT":
            out.append((t, (before or known[0])[1]))
        elif before is None or after is None:
            out.append((t, (before or after or known[0])[1]))
        else:
            (t0, v0), (t1, v1) = before, after
            out.append((t, v0 + (v1 - v0) * (t - t0) / (t1 - t0)))
    return TimeSeries(series.label, series.period, tuple(out))


_ROUNDING: dict[str, Callable[[float], float]] = {
    "ABS": abs,
    # An infinite or NaN number (a scalar such as 1e308*10) has no integer: it stays what it is.
    "CEIL": lambda v: float(math.ceil(v)) if _finite(v) else v,
    "FLOOR": lambda v: float(math.floor(v)) if _finite(v) else v,
}


@dataclass(slots=True)
class _Context:
    lookup: Callable[[str], Value]
    metrics: Callable[[str | None], Sequence[TimeSeries]]
    grid: Grid
    period: int
    budget: Budget


def _arity(call: Call, *counts: int) -> None:
    if len(call.args) not in counts:
        wanted = " or ".join(str(c) for c in counts)
        raise MathError(f"{call.name} takes {wanted} argument(s), not {len(call.args)}")


def _scalar(value: Value, what: str) -> float:
    if not isinstance(value, float):
        raise MathError(f"{what} must be a number")
    return value


def _series(value: Value, what: str) -> TimeSeries:
    if not isinstance(value, TimeSeries):
        raise MathError(f"{what} must be a single time series")
    return value


def _call(call: Call, ctx: _Context) -> Value:
    name = call.name
    if name == "METRICS":
        _arity(call, 0, 1)
        if call.args and not isinstance(call.args[0], Str):
            raise MathError("METRICS takes a quoted string")
        needle = call.args[0].value if call.args and isinstance(call.args[0], Str) else None
        return Array(tuple(ctx.metrics(needle)))
    if name in _REDUCE:
        _arity(call, 1)
        return _reduce(name, _eval(call.args[0], ctx))
    if name in ("RATE", "DIFF"):
        _arity(call, 1)
        return _per_series(_eval(call.args[0], ctx), name, lambda s: _rate(s, name == "RATE"))
    if name == "FILL":
        _arity(call, 2)
        target = _eval(call.args[0], ctx)
        arg = call.args[1]
        how: float | str
        if isinstance(arg, Ref) and arg.name.upper() in _KEYWORDS:
            how = arg.name.upper()
        else:
            how = _scalar(_eval(arg, ctx), "FILL's second argument")
        # Charged series by series: FILL makes points (up to MAX_POINTS for each series of an array).
        return _per_series(target, name, lambda s: _series(ctx.budget.charge(_fill(s, how, ctx.grid)), name))
    if name in ("ABS", "CEIL", "FLOOR"):
        _arity(call, 1)
        f: Callable[[float], float] = _ROUNDING[name]
        value = _eval(call.args[0], ctx)
        if isinstance(value, float):
            return float(f(value))
        return _per_series(value, name, lambda s: _map(s, lambda v: float(f(v))))
    if name == "TIME_SERIES":
        _arity(call, 1)
        x = _scalar(_eval(call.args[0], ctx), "TIME_SERIES's argument")
        times = ctx.grid.times(ctx.period)
        return TimeSeries("TIME_SERIES", ctx.period, tuple((t, x) for t in times) if _finite(x) else ())
    if name == "PERIOD":
        _arity(call, 1)
        return float(_series(_eval(call.args[0], ctx), "PERIOD's argument").period)
    if name == "DATAPOINT_COUNT":
        _arity(call, 1)
        return float(len(_series(_eval(call.args[0], ctx), "DATAPOINT_COUNT's argument").points))
    raise MathError(f"unknown function {call.name}")


def _eval(node: Node, ctx: _Context) -> Value:
    # Every part's value counts: an operation's work is linear in its operands' and its result's points.
    return ctx.budget.charge(_value(node, ctx))


def _value(node: Node, ctx: _Context) -> Value:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Ref):
        if node.name in _KEYWORDS:
            raise MathError(f"{node.name} is only an argument of FILL")
        return ctx.lookup(node.name)
    if isinstance(node, Neg):
        return _binary("*", -1.0, _eval(node.operand, ctx))
    if isinstance(node, BinOp):
        return _binary(node.op, _eval(node.left, ctx), _eval(node.right, ctx))
    if isinstance(node, List):
        items: list[TimeSeries] = []
        for item in node.items:
            value = _eval(item, ctx)
            if isinstance(value, float):
                raise MathError("an array holds time series, not numbers")
            items.extend(value.items if isinstance(value, Array) else (value,))
        return Array(tuple(items))
    if isinstance(node, Call):
        return _call(node, ctx)
    raise MathError(f"a string ({node.value!r}) is only an argument of METRICS")


def evaluate(
    node: Node,
    *,
    lookup: Callable[[str], Value],
    metrics: Callable[[str | None], Sequence[TimeSeries]],
    grid: Grid,
    period: int,
    budget: Budget | None = None,
) -> Value:
    """The value of ``node``: ``lookup`` gives another query's value by Id (MathError if unknown), ``metrics``
    the metric queries' series (whose Id contains the string, if given), ``grid`` the time range, ``period``
    the expression's period (for TIME_SERIES); ``budget`` what the request's expressions may still work through
    (a fresh :data:`MAX_WORK` if None)."""
    return _eval(node, _Context(lookup, metrics, grid, period, Budget() if budget is None else budget))
