"""The bytes the Data API's pooled connections send for one statement (no server needed)."""

from __future__ import annotations

from borealis.dataapi._pool import extended_query


def test_unnamed_messages_are_unchanged() -> None:
    # What PQsendQueryParams sends, byte for byte, as before the statement cache.
    msg = extended_query(b"SELECT $1", [b"7", None], [20, 25], [0, 0])
    assert msg == (
        b"P\x00\x00\x00\x19\x00SELECT $1\x00\x00\x02\x00\x00\x00\x14\x00\x00\x00\x19"
        b"B\x00\x00\x00\x19\x00\x00\x00\x02\x00\x00\x00\x00\x00\x02\x00\x00\x00\x017\xff\xff\xff\xff\x00\x00"
        b"D\x00\x00\x00\x06P\x00E\x00\x00\x00\t\x00\x00\x00\x00\x00S\x00\x00\x00\x04"
    )


def test_named_statement_is_parsed_and_bound_by_name() -> None:
    named = extended_query(b"SELECT $1", [b"7", None], [20, 25], [0, 0], b"_borealis_1")
    assert named[:1] == b"P" and named[5:17] == b"_borealis_1\x00"
    bind = named[1 + int.from_bytes(named[1:5], "big") :]
    # Bind: unnamed portal, then the statement's name, then the same parameters as the unnamed form.
    assert bind[:1] == b"B" and bind[5:18] == b"\x00_borealis_1\x00"
    assert bind.endswith(b"S\x00\x00\x00\x04")
