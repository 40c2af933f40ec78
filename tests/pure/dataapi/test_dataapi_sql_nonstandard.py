"""The placeholder lexer with standard_conforming_strings off: backslashes escape in plain strings too."""

from __future__ import annotations

import pytest

from borealis.dataapi import parse_sql


@pytest.mark.parametrize(
    ("sql", "standard", "nonstandard"),
    [
        (r"select 'it\'s :x', :y", ("x",), ("y",)),  # on: the last quote opens a string to the end
        (r"select 'a\\', :y", ("y",), ("y",)),
        (r"select 'a\', :y", ("y",), ()),  # off: the string runs on to the end
        ("select 'plain :x' || :y", ("y",), ("y",)),
        (r"select E'\':x', :y", ("y",), ("y",)),
    ],
)
def test_names_found(sql: str, standard: tuple[str, ...], nonstandard: tuple[str, ...]) -> None:
    assert parse_sql(sql).names == standard
    assert parse_sql(sql, standard_strings=False).names == nonstandard
    assert parse_sql(sql, True).names == standard  # the cache keeps both readings apart
