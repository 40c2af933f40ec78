"""What real clients found different from AWS (issue 12), each checked through boto3 on the shared Borealis.

Parameter names that start with a digit (Drizzle's ``:1``), rows over 64 KB, the error that starts the
aurora-data-api driver's paging, compact json/jsonb, and CommitTransaction after a failed statement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Execute = Callable[..., dict[str, Any]]


def test_parameter_names_may_start_with_a_digit(execute: Execute) -> None:
    execute("CREATE TABLE IF NOT EXISTS fid_digits (id serial PRIMARY KEY, name text, tags int[])")
    out = execute(
        "insert into fid_digits (name, tags) values (:1, :2::int[]) returning id, name, tags[1:2], tags[:3]",
        [{"name": "1", "value": {"stringValue": "drizzle"}}, {"name": "2", "value": {"stringValue": "{7,8,9}"}},
         {"name": "3", "value": {"longValue": 3}}],
    )  # fmt: skip
    record = out["records"][0]
    assert record[1:] == [
        {"stringValue": "drizzle"},
        {"arrayValue": {"longValues": [7, 8]}},  # a[1:2] is a slice, whatever parameters the call has
        {"longValue": 9},  # a[:3] is the element at the parameter's index, as Drizzle's a[${i}] means
    ]
    # A slice with no lower bound keeps a blank after its colon; the same name twice binds one value.
    out = execute("select tags[: 2] as head, :10 + :10 as twenty from fid_digits where id = :1",
                  {"1": {"longValue": record[0]["longValue"]}, "10": {"longValue": 10}})  # fmt: skip
    assert out["records"] == [[{"arrayValue": {"longValues": [7, 8]}}, {"longValue": 20}]]
    # ':1' in a string, a comment or a dollar quote is text; '::' is a cast.
    out = execute("select ':1' as a, $$:2$$ as b, :3::int as c -- :4", {"3": {"stringValue": "5"}})
    assert out["records"] == [[{"stringValue": ":1"}, {"stringValue": ":2"}, {"longValue": 5}]]


def test_a_missing_digit_parameter_is_named(execute: Execute, data: Any) -> None:
    with pytest.raises(data.exceptions.DatabaseErrorException) as info:
        execute("select :1, :2", {"1": {"longValue": 1}})
    assert "(:2)" in info.value.response["Error"]["Message"]
