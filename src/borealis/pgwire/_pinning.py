"""Which simple-query SQL pins a client to its server connection, as RDS Proxy decides for PostgreSQL.

``pinning_reason(sql)`` answers with a :class:`PinReason` or None. It does not parse SQL: a small lexer
skips what cannot hold a statement (string constants, quoted identifiers, dollar-quoted bodies, comments,
nested block comments included) and cuts the text at top-level semicolons, then each statement's leading
keywords and any function call names are matched against RDS Proxy's list:

* SET and SET SESSION (not SET LOCAL, SET TRANSACTION, SET CONSTRAINTS: those end with the transaction),
  and ``set_config(..., false)``;
* RESET, DISCARD; CREATE TEMP/TEMPORARY TABLE, SEQUENCE or VIEW (not ``ON COMMIT DROP``), SELECT ... INTO
  TEMP; SQL-level PREPARE and DEALLOCATE; LISTEN; DECLARE cursors (WITH HOLD ones reported apart, since
  only those outlive the transaction); LOAD;
* the session-level advisory lock functions (``pg_advisory_lock`` and friends, not the ``_xact_`` ones);
* the sequence functions that set the session's ``currval``/``lastval`` (``nextval``, ``setval``): a later
  ``currval('s')`` must answer with this client's value, not another client's on the same connection.

RDS Proxy's list also pins on the extended query protocol and on prepared statements (the proxy re-prepares
them on any connection instead) and on statement text over 16 KB (which RDS Proxy does not parse; this
lexer reads any length): those are not followed, since they lose pooling without keeping any state right.
A sequence's value taken through a column default (``serial``, identity) is invisible in the text, as it is
to RDS Proxy: a ``currval`` in a later transaction then sees whichever session the connection served last.

Protocol-level prepared statements (Parse) never pin: the proxy re-prepares them. Most queries contain none
of the trigger words, so one regular-expression search returns None before any lexing.
"""

from __future__ import annotations

import enum
import re

__all__ = ["SHAPE_DIGITS", "UNPINNED_SHAPES", "PinReason", "may_pin", "pinning_reason"]


class PinReason(enum.Enum):
    """Why a statement pins the session; the value is the text RDS Proxy-style logs would show."""

    SET = "a SET statement was detected"
    RESET = "a RESET statement was detected"
    DISCARD = "a DISCARD statement was detected"
    TEMP_OBJECT = "a temporary table, sequence or view was created"
    PREPARE = "an SQL PREPARE statement was detected"
    DEALLOCATE = "an SQL DEALLOCATE statement was detected"
    LISTEN = "a LISTEN statement was detected"
    CURSOR = "a DECLARE CURSOR statement was detected"
    HOLD_CURSOR = "a DECLARE CURSOR WITH HOLD statement was detected"
    LOAD = "a LOAD statement was detected"
    ADVISORY_LOCK = "a session-level advisory lock function was called"
    SEQUENCE = "a nextval or setval sequence function was called"

    @property
    def is_variable_set(self) -> bool:
        """True for what SessionPinningFilters EXCLUDE_VARIABLE_SETS lets through unpinned."""
        return self in (PinReason.SET, PinReason.RESET)


_ADVISORY = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    }
)

# Every statement that pins holds one of these words (even a session-level advisory lock function's name);
# most queries hold none. Both cheap filters below are built from this one list.
_TRIGGER_WORDS = (
    "set",
    "discard",
    "temp",
    "prepare",
    "deallocate",
    "listen",
    "declare",
    "load",
    "advisory",
    "nextval",
    "setval",
)
_SEQUENCE = frozenset({"nextval", "setval"})

# A cheap filter: no trigger word anywhere (even inside strings) means no lexing at all.
_TRIGGER = re.compile("|".join(_TRIGGER_WORDS), re.IGNORECASE)
_TRIGGER_BYTES = re.compile("|".join(_TRIGGER_WORDS).encode())
# The words other than a bare "set" (which pins only as a statement's first word).
_TRIGGER_BYTES_BUT_SET = re.compile(
    "|".join(("reset", "set_config", *(w for w in _TRIGGER_WORDS if w != "set"))).encode()
)


#: What may_pin takes out of a text to get its shape: ``sql.translate(None, SHAPE_DIGITS)``.
SHAPE_DIGITS = b"0123456789"
#: Shapes of texts that cannot pin (see may_pin); cleared when full (never replaced), so clients cannot make
#: it grow without bound. A hot path may test ``shape in UNPINNED_SHAPES`` itself before calling may_pin.
UNPINNED_SHAPES: dict[bytes, None] = {}
_NO_PIN_ENTRIES = 4096
_NO_PIN_LENGTH = 1024


def may_pin(sql: bytes) -> bool:
    """False when the query text ``sql`` cannot pin; True when :func:`pinning_reason` must decide.

    A proxy's pre-check on the raw bytes of a Query, well under a microsecond (the regex in
    :func:`pinning_reason` costs 5-10 µs). SQL keywords are ASCII and case-insensitive, so lower-cased ASCII
    bytes are searched as they are (other text goes to the full check). A bare "set" pins only as a
    statement's first word: ``UPDATE t SET a = 1`` does not need the lexer. Comments could hide where a
    statement starts, so with one the full check decides.

    Applications repeat a few statements with different numbers in them (pgbench's ``WHERE aid = 4711``), so
    the test runs on the text with its digits taken out, and a shape found not to pin is remembered. That is
    sound: no trigger word, comment marker, semicolon or leading "set" holds a digit, so taking digits out
    never hides one (it may make one, as "se1t" becomes "set": then the text itself is tested).
    """
    shape = sql.translate(None, SHAPE_DIGITS)
    if shape in UNPINNED_SHAPES:
        return False
    if _may_pin(shape):
        return shape == sql or _may_pin(sql)
    if len(shape) <= _NO_PIN_LENGTH:
        if len(UNPINNED_SHAPES) >= _NO_PIN_ENTRIES:
            UNPINNED_SHAPES.clear()
        UNPINNED_SHAPES[shape] = None
    return False


def _may_pin(sql: bytes) -> bool:
    if not sql.isascii():
        return True
    low = sql.lower()
    if _TRIGGER_BYTES.search(low) is None:
        return False
    if _TRIGGER_BYTES_BUT_SET.search(low) is not None or b"/*" in low or b"--" in low:
        return True
    return any(part.lstrip().startswith(b"set") for part in low.split(b";"))


# One token per match. Order matters: comments and quotes before words and symbols.
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line>--[^\n]*)
    | (?P<block>/\*)
    | (?P<estr>[eE]'(?:[^'\\]|\\.|'')*'?)
    | (?P<str>'(?:[^']|'')*'?)
    | (?P<qid>"(?:[^"]|"")*"?)
    | (?P<dollar>\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$)
    | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
    | (?P<semi>;)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _statements(sql: str) -> list[list[str]]:
    """Cut ``sql`` into statements of tokens: lower-cased words, quoted names (with ``"``) and symbols."""
    statements: list[list[str]] = []
    current: list[str] = []
    pos, n = 0, len(sql)
    match = _TOKEN.match
    while pos < n:
        tok = match(sql, pos)
        assert tok is not None  # the pattern ends with ".", which matches anything
        kind = tok.lastgroup
        end = tok.end()
        if kind == "word":
            current.append(tok.group().lower())
        elif kind == "semi":
            if current:
                statements.append(current)
            current = []
        elif kind == "block":
            end = _skip_block_comment(sql, end)
        elif kind == "dollar":
            close = sql.find(tok.group(), end)
            end = n if close < 0 else close + len(tok.group())
            current.append("'")  # a constant, as far as statement shape goes
        elif kind in ("str", "estr"):
            current.append("'")
        elif kind == "qid" or kind == "other":
            current.append(tok.group())
        pos = end
    if current:
        statements.append(current)
    return statements


def _skip_block_comment(sql: str, pos: int) -> int:
    """Return the end of a block comment opened before ``pos``; PostgreSQL's block comments nest."""
    depth = 1
    n = len(sql)
    while depth and pos < n:
        opening = sql.find("/*", pos)
        closing = sql.find("*/", pos)
        if closing < 0:
            return n
        if 0 <= opening < closing:
            depth += 1
            pos = opening + 2
        else:
            depth -= 1
            pos = closing + 2
    return pos


def _unquote(tok: str) -> str:
    # A quoted identifier names the function exactly; an unquoted word was lower-cased already.
    return tok[1:-1].replace('""', '"') if tok.startswith('"') else tok


def _set_config_is_local(words: list[str], start: int) -> bool:
    """Whether the set_config call whose "(" is at ``start`` passes true as its third argument."""
    depth = 0
    args: list[list[str]] = [[]]
    for tok in words[start:]:
        if tok == "(":
            depth += 1
            if depth == 1:
                continue
        elif tok == ")":
            depth -= 1
            if depth == 0:
                break
        elif tok == "," and depth == 1:
            args.append([])
            continue
        args[-1].append(tok)
    return len(args) == 3 and args[2] == ["true"]


def _classify(words: list[str]) -> PinReason | None:
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if first == "set":
        if second in ("local", "transaction", "constraints"):
            return None
        return PinReason.SET
    if first == "reset":
        return PinReason.RESET
    if first == "discard":
        return PinReason.DISCARD
    if first == "prepare" and second != "transaction":  # PREPARE TRANSACTION is two-phase commit
        return PinReason.PREPARE
    if first == "deallocate":
        return PinReason.DEALLOCATE
    if first == "listen":
        return PinReason.LISTEN
    if first == "load":
        return PinReason.LOAD
    if first == "declare":
        for i in range(1, len(words) - 1):
            if words[i] == "with" and words[i + 1] == "hold":
                return PinReason.HOLD_CURSOR
        return PinReason.CURSOR
    if first == "create":
        # Only modifiers may come between CREATE and TEMP: "CREATE TABLE temp (...)" names a table "temp".
        for word in words[1:]:
            if word in ("temp", "temporary"):
                return None if _on_commit_drop(words) else PinReason.TEMP_OBJECT
            if word not in ("or", "replace", "global", "local"):
                break
    select_into = first in ("select", "with")
    for i, tok in enumerate(words):
        if i + 1 < len(words) and words[i + 1] == "(":
            name = _unquote(tok)
            if name in _ADVISORY:
                return PinReason.ADVISORY_LOCK
            if name in _SEQUENCE:
                return PinReason.SEQUENCE
            if name == "set_config" and not _set_config_is_local(words, i + 1):
                return PinReason.SET
        elif select_into and tok == "into" and words[i + 1 : i + 2] in (["temp"], ["temporary"]):
            # SELECT ... INTO TEMP [TABLE] name; in "SELECT ... INTO temp FROM", temp is the table's name.
            after = words[i + 2] if i + 2 < len(words) else ""
            if after not in _CLAUSE_WORDS:
                return PinReason.TEMP_OBJECT
    return None


# Words that can follow a table named "temp" in SELECT ... INTO temp; with these, "temp" is not the keyword.
_CLAUSE_WORDS = frozenset(
    {"from", "where", "group", "having", "window", "order", "limit", "offset", "union", "intersect"}
    | {"except", "for", "fetch", "", ")", ",", "'", ";"}
)


def _on_commit_drop(words: list[str]) -> bool:
    return any(words[i : i + 3] == ["on", "commit", "drop"] for i in range(len(words) - 2))


def pinning_reason(sql: str, *, exclude_variable_sets: bool = False) -> PinReason | None:
    """Why running ``sql`` (one simple Query, maybe several statements) pins the session, or None.

    ``exclude_variable_sets`` applies SessionPinningFilters EXCLUDE_VARIABLE_SETS: SET and RESET do not pin
    (the proxy must then replay them itself). The first pinning statement's reason is returned.
    """
    if _TRIGGER.search(sql) is None:
        return None
    for words in _statements(sql):
        reason = _classify(words)
        if reason is not None and not (exclude_variable_sets and reason.is_variable_set):
            return reason
    return None
