"""A composite alarm's ``AlarmRule``: parsed once into a small tree, evaluated on its children's states.

The grammar, as the CloudWatch API reference gives it for PutCompositeAlarm:

- ``ALARM(x)``, ``OK(x)``, ``INSUFFICIENT_DATA(x)``: true when alarm ``x`` (a name or an alarm ARN, in double
  quotes or bare) is in that state;
- ``AT_LEAST(M, STATE, (x, y, ...))``: true when at least M of the alarms (a count, or a percentage ``50%``)
  are in STATE, which may also be ``NOT ALARM``, ``NOT OK`` or ``NOT INSUFFICIENT_DATA``;
- ``TRUE`` and ``FALSE``; ``NOT``, ``AND``, ``OR`` (binding in that order) and parentheses.

Keywords are read in any case (the API reference itself suggests a rule of ``false`` to break a cycle).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Rule", "RuleError", "parse_rule"]

_STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")
_MAX_LENGTH = 10240  # AlarmRule's length limit in the API model
_MAX_CHILDREN = 100  # "The rule expression of a composite alarm can include as many as 100 underlying alarms."
#: Parentheses nested deeper than this are refused: parsing and evaluating recurse once per level, and a rule
#: is untrusted input (10,240 characters of "(" would otherwise exhaust the stack).
_MAX_DEPTH = 32
_END = re.compile(r"\s*\Z")
_TOKEN = re.compile(r'\s*(?:(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<punct>[(),])|(?P<word>[^\s(),"]+))')


class RuleError(ValueError):
    """The rule cannot be read; the message says where."""


@dataclass(frozen=True)
class Rule:
    """A parsed AlarmRule: :meth:`holds` evaluates it, :attr:`children` are the alarms it names, in order."""

    text: str
    children: tuple[str, ...]
    _eval: Callable[[Callable[[str], str]], bool]

    def holds(self, state_of: Callable[[str], str]) -> bool:
        """Whether the rule is true, with ``state_of(child)`` giving each child's current state."""
        return self._eval(state_of)


def parse_rule(text: str, resolve: Callable[[str], str] = lambda ref: ref) -> Rule:
    """Parse ``text``; ``resolve`` turns each reference (a name or an ARN) into the child's name."""
    if not text.strip():
        raise RuleError("The alarm rule is empty.")
    if len(text) > _MAX_LENGTH:
        raise RuleError(f"The alarm rule is longer than {_MAX_LENGTH} characters.")
    parser = _Parser(text, resolve)
    fn = parser.expression()
    if parser.peek() is not None:
        raise RuleError(f"Unexpected {parser.peek()!r} at position {parser.position()} of the alarm rule.")
    children = tuple(dict.fromkeys(parser.children))
    if len(children) > _MAX_CHILDREN:
        raise RuleError(f"The alarm rule names {len(children)} alarms; at most {_MAX_CHILDREN} are allowed.")
    return Rule(text, children, fn)


Eval = Callable[[Callable[[str], str]], bool]


class _Parser:
    def __init__(self, text: str, resolve: Callable[[str], str]) -> None:
        self.text = text
        self.resolve = resolve
        self.tokens: list[tuple[str, int]] = []
        self.children: list[str] = []
        pos = 0
        while not _END.match(text, pos):  # (a slice per token would make a long rule quadratic)
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise RuleError(f"Unexpected character at position {pos} of the alarm rule.")
            self.tokens.append((m.group(m.lastgroup or "word"), m.start(m.lastgroup or "word")))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def position(self) -> int:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else len(self.text)

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise RuleError(f"The alarm rule ends early{f': {expected!r} expected' if expected else ''}.")
        if expected is not None and token.upper() != expected:
            raise RuleError(f"{expected!r} expected at position {self.position()} of the alarm rule, not {token!r}.")
        self.i += 1
        return token

    def keyword(self) -> str:
        token = self.peek()
        return token.upper() if token is not None and not token.startswith('"') else ""

    # A chain of ORs (or ANDs, or NOTs) is one flat node, not one level per operator: evaluating it recurses
    # only per parenthesis level, which _MAX_DEPTH bounds.

    def expression(self) -> Eval:
        return self._chain("OR", self.conjunction, any)

    def conjunction(self) -> Eval:
        return self._chain("AND", self.negation, all)

    def _chain(self, word: str, term: Callable[[], Eval], combine: Callable[[Iterable[bool]], bool]) -> Eval:
        """``term`` (``word`` ``term``)*, as one node that ``combine`` (any, all) evaluates."""
        terms = [term()]
        while self.keyword() == word:
            self.take()
            terms.append(term())
        if len(terms) == 1:
            return terms[0]
        return lambda s: combine(t(s) for t in terms)

    def negation(self) -> Eval:
        negate = False
        while self.keyword() == "NOT":
            self.take()
            negate = not negate
        inner = self.atom()
        return (lambda s: not inner(s)) if negate else inner

    def atom(self) -> Eval:
        word = self.keyword()
        if self.peek() == "(":
            self.take()
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise RuleError(f"The alarm rule nests parentheses deeper than {_MAX_DEPTH} levels.")
            inner = self.expression()
            self.take(")")
            self.depth -= 1
            return inner
        if word in ("TRUE", "FALSE"):
            self.take()
            value = word == "TRUE"
            return lambda s: value
        if word in _STATES:
            self.take()
            self.take("(")
            child = self.reference()
            self.take(")")
            return lambda s: s(child) == word
        if word == "AT_LEAST":
            return self.at_least()
        found = self.peek()
        if found is None:
            raise RuleError("The alarm rule ends early: a condition expected.")
        raise RuleError(f"Unexpected {found!r} at position {self.position()} of the alarm rule.")

    def at_least(self) -> Eval:
        self.take()
        self.take("(")
        count = self.take()
        percent = count.endswith("%")
        try:
            number = float(count[:-1]) if percent else int(count)
        except ValueError:
            raise RuleError(f"AT_LEAST needs a count or a percentage, not {count!r}.") from None
        if number < 0 or (percent and number > 100):
            raise RuleError(f"AT_LEAST needs a count or a percentage, not {count!r}.")
        self.take(",")
        negate = self.keyword() == "NOT"
        if negate:
            self.take()
        state = self.keyword()
        if state not in _STATES:
            raise RuleError(f"AT_LEAST needs a state (ALARM, OK, INSUFFICIENT_DATA), not {self.peek()!r}.")
        self.take()
        self.take(",")
        self.take("(")
        children = [self.reference()]
        while self.peek() == ",":
            self.take()
            children.append(self.reference())
        self.take(")")
        self.take(")")
        needed = math.ceil(len(children) * number / 100) if percent else int(number)

        def holds(s: Callable[[str], str]) -> bool:
            return sum((s(c) == state) != negate for c in children) >= needed

        return holds

    def reference(self) -> str:
        token = self.peek()
        if token is None or token in ("(", ")", ","):
            raise RuleError(f"An alarm name expected at position {self.position()} of the alarm rule.")
        self.take()
        ref = re.sub(r"\\(.)", r"\1", token[1:-1]) if token.startswith('"') else token
        if not ref:
            raise RuleError(f"An alarm name expected at position {self.position()} of the alarm rule.")
        name = self.resolve(ref)
        self.children.append(name)
        return name
