"""CloudWatch Logs' view of a postgres log (services/logs.py): events, paging both ways, filter patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.aws import AWSError
from borealis.services.logs import Pattern, _offset, read_backward, read_forward, scan_budget

LINES = [
    b"waiting for server to start....\n",  # before any timestamped line: an event of its own
    b"2026-12-07 00:00:01.250 UTC [10] LOG:  database system is ready to accept connections\n",
    b"2026-12-07 00:00:02.000 UTC [11] master@postgres ERROR:  division by zero\n",
    b"2026-12-07 00:00:02.000 UTC [11] master@postgres STATEMENT:  select 1/0\n",
    b"\t  from somewhere\n",  # a continuation of the statement above
    b"2026-12-07 00:00:03.5 UTC [12] LOG:  checkpoint starting: time\n",
]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "postgresql.log"
    path.write_bytes(b"".join(LINES) + b"2026-12-07 00:00:04.000 UTC [13] LOG:  half a li")  # still being written
    return path


def test_events_forward(log: Path) -> None:
    events, after = read_forward(log, 0, limit=100)
    assert [e.message for e in events][1:] == [
        "2026-12-07 00:00:01.250 UTC [10] LOG:  database system is ready to accept connections",
        "2026-12-07 00:00:02.000 UTC [11] master@postgres ERROR:  division by zero",
        "2026-12-07 00:00:02.000 UTC [11] master@postgres STATEMENT:  select 1/0\n\t  from somewhere",
        "2026-12-07 00:00:03.5 UTC [12] LOG:  checkpoint starting: time",
    ]
    assert events[0].message == "waiting for server to start...."
    stamp = 1796601600000  # 2026-12-07 00:00:00 UTC in ms
    assert [e.timestamp - stamp for e in events[1:]] == [1250, 2000, 2000, 3500]
    assert after == len(b"".join(LINES))  # the half-written line is not served
    assert read_forward(log, after, limit=100) == ([], after)
    # Paging two at a time visits the same events.
    offset, paged = 0, []
    while True:
        page, offset = read_forward(log, offset, limit=2)
        if not page:
            break
        paged.extend(page)
    assert paged == events


def test_events_backward(log: Path) -> None:
    every, _ = read_forward(log, 0, limit=100)
    last, before = read_backward(log, None, limit=2)
    assert last == every[-2:] and before == every[-2].start
    older, before = read_backward(log, before, limit=2)
    assert older == every[-4:-2]
    rest, before = read_backward(log, before, limit=10)
    assert rest == every[:1] and before == 0
    assert read_backward(log, 0, limit=10) == ([], 0)


def test_filtered_and_scanned(log: Path) -> None:
    errors, _ = read_forward(log, 0, limit=100, keep=lambda e: "ERROR" in e.message)
    assert len(errors) == 1 and errors[0].message.endswith("division by zero")
    # A scan budget stops early and says where to go on.
    _, after = read_forward(log, 0, limit=100, keep=lambda e: False, scan=10)
    assert 0 < after < len(b"".join(LINES))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", [True, True, True]),
        ("ERROR", [True, False, False]),
        ("error", [False, False, False]),  # case-sensitive
        ('"division by zero"', [True, False, False]),
        ("LOG checkpoint", [False, False, True]),
        ("LOG -checkpoint", [False, True, False]),
        ("?ERROR ?checkpoint", [True, False, True]),
    ],
)
def test_patterns(pattern: str, expected: list[bool]) -> None:
    messages = ["ERROR:  division by zero", "LOG:  ready", "LOG:  checkpoint starting"]
    match = Pattern(pattern)
    assert [match(m) for m in messages] == expected


@pytest.mark.parametrize("pattern", ['{ $.level = "ERROR" }', "[ip, user]", '"unclosed'])
def test_unsupported_patterns(pattern: str) -> None:
    with pytest.raises(AWSError) as err:
        Pattern(pattern)
    assert err.value.code == "InvalidParameterException"


def test_long_lines_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "postgresql.log"
    huge = b"x" * (600 * 1024)
    path.write_bytes(
        b"2026-12-07 00:00:01.000 UTC [1] LOG:  " + huge + b"\n2026-12-07 00:00:02.000 UTC [1] LOG:  next\n"
    )
    events, _ = read_forward(path, 0, limit=10)
    assert len(events) == 2 and len(events[0].message) == 256 * 1024 and events[1].message.endswith("next")


@pytest.mark.parametrize("token", ["f/²", "f/" + "9" * 5000, "f/-1", "f/", "b/1", "f/١٢"])
def test_bad_tokens_are_refused_not_failed(token: str) -> None:
    # "²" passes str.isdigit() but not int(), and int() refuses over 4300 digits: a 500 before.
    with pytest.raises(AWSError) as err:
        _offset(token, "f/")
    assert err.value.code == "InvalidParameterException"
    assert _offset("f/1234", "f/") == 1234


def test_a_pattern_of_many_terms_scans_less_per_call() -> None:
    # 250 "?term"s that never match, after one that always does: every event searched 251 times, over 8 MB.
    many = Pattern("LOG " + " ".join(f"?zq{i}" for i in range(250)))
    few = Pattern("LOG ERROR")
    assert many.terms == 251 and few.terms == 2
    assert scan_budget(few) == 8 * 1024 * 1024
    assert scan_budget(many) * many.terms <= 8 * 8 * 1024 * 1024
    assert scan_budget(many) > 0
