"""Named parameters (``:name``) in Data API SQL, found by a lexer for PostgreSQL's lexical syntax.

The Data API takes SQL with ``:name`` placeholders.  Borealis never splices values into the SQL text: it
rewrites each placeholder to a server-side parameter (``$1``, ``$2``, ...) and sends the values separately
(extended query protocol).  To do that safely the lexer must know where PostgreSQL's strings, identifiers
and comments are, because a ``:name`` inside one of them is text, not a placeholder.

Rules, as PostgreSQL's own lexer (``scan.l``) has them, with standard_conforming_strings on (with it off, as
a session may set it, ``'...'`` strings take backslash escapes as ``E'...'`` ones do: ``standard_strings``):

* ``'...'`` strings, ``''`` is a quote.  ``E'...'`` (or ``e'...'``) strings also take backslash escapes.
  ``U&'...'``, ``B'...'``, ``X'...'``, ``N'...'`` lex as a word followed by a plain string.
* ``$tag$...$tag$`` dollar quotes; a tag is empty or ``[A-Za-z_\\x80-][A-Za-z0-9_\\x80-]*`` (no ``$``, no
  leading digit), so ``$1`` is a positional parameter, never a tag.  A ``$`` inside a word (``a$$b``)
  belongs to the word.
* ``"..."`` quoted identifiers, ``""`` is a quote.
* ``--`` comments to the end of the line; ``/* */`` comments nest.
* ``::`` is a cast: ``a::int`` has no parameter, ``:name::text`` is the parameter ``name`` then a cast.
  ``:=`` (named function arguments) is not a parameter either.

A placeholder is what AWS accepts as one: a ``:`` not part of ``::``, followed at once by letters, digits
and underscores (``[A-Za-z0-9_]+``).  Names may start with a digit: Drizzle's Data API driver numbers its
parameters ``:1``, ``:2``, ...  Inside square brackets, a ``:`` that directly follows the end of a value (a
letter, digit, ``_``, ``$``, ``)``, ``]`` or a closing quote) is an array-slice colon, so ``arr[1:2]``,
``arr[1:n]`` and ``arr[lo:hi]`` are slices with no parameter: turning ``:2`` there into ``$1`` would drop
the colon and break the SQL.  A ``:`` right after ``[`` or after a blank takes a parameter:
``arr[:i]``, ``arr[:1]`` (Drizzle's ``arr[${i}]``) and ``arr[:lo : :hi]``.  So a slice with no lower bound
is written with a blank after the colon (``arr[: 2]``), as ``: 2`` is no placeholder.

A ``;`` outside strings and comments that is followed by more than whitespace, comments and further ``;``
makes the SQL multi-statement, which the Data API on Serverless v2 refuses.  As in psql, a ``;`` inside
``BEGIN ... END`` of a ``CREATE [OR REPLACE] FUNCTION/PROCEDURE`` (SQL-standard bodies, ``BEGIN ATOMIC``)
does not end the statement.

Unterminated strings, identifiers and comments run to the end of the text: PostgreSQL reports them with its
own error, which is what the client should see.

The lexer makes one pass, jumping with compiled regular expressions from one interesting character to the
next; results are kept in a bounded LRU cache because serverless applications repeat the same statements.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

__all__ = ["ParsedSql", "parse_sql"]

# Identifier characters as PostgreSQL's lexer defines them: any byte >= 0x80 counts as a letter.
_IDENT_START = r"A-Za-z_\x80-\U0010ffff"
_IDENT_CONT = r"A-Za-z0-9_\x80-\U0010ffff"

# The tokens the scan stops at.  Anything between two of them (operators, punctuation, whitespace) needs no
# attention beyond "is it blank?".  Words swallow the ``$`` that PostgreSQL allows inside identifiers, so a
# ``$`` matched on its own really starts a dollar quote or a positional parameter.
_TOKEN = re.compile(
    rf"[{_IDENT_START}][{_IDENT_CONT}$]*"  # a word (keyword or identifier)
    r"|[0-9][0-9A-Za-z_]*"  # a number, with any trailing junk PostgreSQL will complain about
    r"|--|/\*|['\"$:;\[\]]"
)
_NAME = re.compile(r"[A-Za-z0-9_]+")
_POSITIONAL = re.compile(r"\$([0-9]+)")
_DOLLAR_TAG = re.compile(rf"\$(?:[{_IDENT_START}][{_IDENT_CONT}]*)?\$")
# Possessive quantifiers keep an unterminated literal linear (no backtracking into the body).
_STRING_REST = re.compile(r"(?:[^']++|'')*+'")
_ESTRING_REST = re.compile(r"(?:[^'\\]++|\\.|'')*+'", re.DOTALL)
_QIDENT_REST = re.compile(r'(?:[^"]++|"")*+"')
_LINE_END = re.compile(r"[\n\r]")
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_NONBLANK = re.compile(r"\S")
# Characters that end a value: a colon right after one of them inside [ ] is an array-slice colon.
_VALUE_END = "_$)]'\""

# Statements longer than this are parsed but not cached, so the cache stays small in memory.
_CACHE_MAX_SQL = 16 * 1024
_CACHE_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class ParsedSql:
    """The result of lexing one Data API SQL text.

    ``sql`` is the text to send to PostgreSQL, with each ``:name`` replaced by ``$n``; ``names[n - 1 -
    positional]`` is the name bound to ``$n`` (a name used twice maps to one ``$n``).  ``spans`` are the
    (start, end) offsets of every ``:name`` in the original text, in order.  ``positional`` is the highest
    ``$n`` already written in the SQL by the user (0 if none); ``positional_first`` is the first such
    ``$n`` and ``positional_at`` its 1-based character position.  Named parameters are numbered after
    ``positional`` so the two never collide, and the binder refuses such SQL as PostgreSQL would ("there
    is no parameter $n"), because no value can be bound to the user's ``$n``.  ``multi_statement`` is true
    for SQL holding more than one statement.
    """

    sql: str
    names: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    multi_statement: bool
    positional: int = 0
    positional_first: int = 0
    positional_at: int = 0
    # ``sql`` as sent, made once per cached parse: the same bytes object keys the connection's statements.
    wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire", self.sql.encode())

    @property
    def parameter_count(self) -> int:
        """How many server-side parameters the rewritten SQL takes."""
        return len(self.names)


def parse_sql(sql: str, standard_strings: bool = True) -> ParsedSql:
    """Lex ``sql``, find its ``:name`` placeholders and rewrite them to ``$n``; cached for repeated SQL.

    ``standard_strings=False`` lexes as a session with ``standard_conforming_strings = off`` does: a
    backslash escapes the next character in ``'...'`` strings too.
    """
    if len(sql) > _CACHE_MAX_SQL:
        return _parse(sql, standard_strings)
    return _parse_cached(sql, standard_strings)


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _parse_cached(sql: str, standard_strings: bool) -> ParsedSql:
    return _parse(sql, standard_strings)


def _creates_routine(first: list[str]) -> bool:
    # psql's rule (psqlscan.l): the first letters of the statement's first identifiers spell
    # CREATE FUNCTION/PROCEDURE or CREATE OR REPLACE FUNCTION/PROCEDURE.
    if not first or first[0] != "c" or len(first) < 2:
        return False
    if first[1] in ("f", "p"):
        return True
    return len(first) >= 4 and first[1] == "o" and first[2] == "r" and first[3] in ("f", "p")


def _parse(sql: str, standard_strings: bool = True) -> ParsedSql:
    # Fast path: with none of these characters there is nothing to find.
    if ":" not in sql and ";" not in sql and "$" not in sql:
        return ParsedSql(sql, (), (), False)

    n = len(sql)
    pos = 0
    spans: list[tuple[int, int]] = []
    span_names: list[str] = []
    positional = 0
    positional_first = 0
    positional_at = 0
    statements = 0  # statements with content that have ended
    content = False  # the current statement has something besides blanks and comments
    first: list[str] = []  # first letters of the current statement's first four words
    begin_depth = 0
    brackets = 0  # depth of [ ], where a colon after a value is an array-slice colon
    search = _TOKEN.search
    string_rest = _STRING_REST if standard_strings else _ESTRING_REST

    while True:
        m = search(sql, pos)
        if m is None:
            if not content and _NONBLANK.search(sql, pos) is not None:
                content = True
            break
        start = m.start()
        if not content and start > pos and _NONBLANK.search(sql, pos, start) is not None:
            content = True
        end = m.end()
        c = sql[start]

        if c == "'":
            r = string_rest.match(sql, end)
            pos = r.end() if r is not None else n
            content = True
        elif c == ":":
            if end < n and sql[end] == ":":
                pos = end + 1  # a cast; the type name after it lexes as a plain word
            elif brackets and start > 0 and (sql[start - 1].isalnum() or sql[start - 1] in _VALUE_END):
                pos = end
            else:
                r = _NAME.match(sql, end)
                if r is not None:
                    spans.append((start, r.end()))
                    span_names.append(r.group())
                    pos = r.end()
                else:
                    pos = end
            content = True
        elif c == ";":
            pos = end
            if begin_depth > 0:
                content = True  # inside a routine body: part of the statement
            else:
                if content:
                    statements += 1
                content = False
                first = []
        elif c == "[":
            brackets += 1
            pos = end
            content = True
        elif c == "]":
            brackets = brackets - 1 if brackets else 0
            pos = end
            content = True
        elif c == "-":
            r = _LINE_END.search(sql, end)
            pos = r.end() if r is not None else n
        elif c == "/":
            depth = 1
            pos = n
            scan = end
            while True:
                r = _COMMENT_EDGE.search(sql, scan)
                if r is None:
                    break
                depth += 1 if r.group() == "/*" else -1
                scan = r.end()
                if depth == 0:
                    pos = scan
                    break
        elif c == '"':
            r = _QIDENT_REST.match(sql, end)
            pos = r.end() if r is not None else n
            content = True
        elif c == "$":
            content = True
            r = _POSITIONAL.match(sql, start)
            if r is not None:
                number = int(r.group(1))
                if number > positional:
                    positional = number
                if not positional_at:
                    positional_first = number
                    positional_at = start + 1
                pos = r.end()
            else:
                r = _DOLLAR_TAG.match(sql, start)
                if r is not None:
                    close = sql.find(r.group(), r.end())
                    pos = close + len(r.group()) if close >= 0 else n
                else:
                    pos = end
        elif c.isdigit():
            content = True
            pos = end
        else:  # a word
            content = True
            word = m.group()
            if (word == "E" or word == "e") and end < n and sql[end] == "'":
                r = _ESTRING_REST.match(sql, end + 1)
                pos = r.end() if r is not None else n
                continue
            pos = end
            if len(first) < 4:
                first.append(word[0].lower())
            if 3 <= len(word) <= 5:
                lowered = word.lower()
                if lowered in ("begin", "case"):
                    if _creates_routine(first):
                        begin_depth += 1
                elif lowered == "end" and begin_depth > 0:
                    begin_depth -= 1

    if content:
        statements += 1
    if not spans:
        return ParsedSql(sql, (), (), statements > 1, positional, positional_first, positional_at)

    index: dict[str, int] = {}
    pieces: list[str] = []
    last = 0
    for (s, e), name in zip(spans, span_names, strict=True):
        number = index.get(name, 0)
        if not number:
            number = index[name] = positional + len(index) + 1
        pieces.append(sql[last:s])
        # ``x:a`` must not become the single identifier ``x$1``: keep the tokens apart.
        if s > 0 and (sql[s - 1].isalnum() or sql[s - 1] in "_$"):
            pieces.append(" ")
        pieces.append(f"${number}")
        last = e
    pieces.append(sql[last:])
    return ParsedSql(
        "".join(pieces),
        tuple(index),
        tuple(spans),
        statements > 1,
        positional,
        positional_first,
        positional_at,
    )
