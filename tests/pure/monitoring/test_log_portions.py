"""DownloadDBLogFilePortion's paging rules over a plain file: markers, NumberOfLines, the 1 MB cap, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.aws import AWSError
from borealis.services.rds_logs import log_file_name, read_portion


def _log(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "postgresql.log"
    path.write_text("".join(f"2026-12-06 23:0{i % 10}:00.000 UTC [1] line {i}\n" for i in range(n)))
    return path


def test_pages_from_marker_zero_until_no_data_is_pending(tmp_path: Path) -> None:
    path = _log(tmp_path, 25)
    marker, seen, calls = "0", [], 0
    while True:
        out = read_portion(path, marker, 10)
        seen += out["LogFileData"].splitlines()
        marker, calls = out["Marker"], calls + 1
        if not out["AdditionalDataPending"]:
            break
    assert calls == 3
    assert seen == path.read_text().splitlines()


def test_without_marker_the_most_recent_lines_come_back(tmp_path: Path) -> None:
    path = _log(tmp_path, 30)
    out = read_portion(path, None, 3)
    assert out["LogFileData"].splitlines() == path.read_text().splitlines()[-3:]
    assert out["AdditionalDataPending"] is False
    # The marker of a tail is the end: reading on from it returns what is written later.
    with path.open("a") as f:
        f.write("later\n")
    assert read_portion(path, out["Marker"], None)["LogFileData"] == "later\n"


def test_a_portion_is_cut_at_one_megabyte_on_a_line_boundary(tmp_path: Path) -> None:
    path = tmp_path / "postgresql.log"
    line = "x" * 999 + "\n"
    path.write_text(line * 1500)  # 1.5 MB
    out = read_portion(path, "0", None)
    assert out["AdditionalDataPending"] is True
    assert len(out["LogFileData"]) <= 1024 * 1024 and out["LogFileData"].endswith("\n")
    rest = read_portion(path, out["Marker"], None)
    assert rest["AdditionalDataPending"] is False
    assert out["LogFileData"] + rest["LogFileData"] == path.read_text()


def test_a_bad_marker_is_an_aws_error(tmp_path: Path) -> None:
    path = _log(tmp_path, 2)
    for marker in ("abc", "-5"):
        with pytest.raises(AWSError) as err:
            read_portion(path, marker, None)
        assert err.value.code == "InvalidParameterValue"


def test_the_name_follows_auroras_pattern_from_the_first_line(tmp_path: Path) -> None:
    path = _log(tmp_path, 2)
    assert log_file_name(path) == "error/postgresql.log.2026-12-06-2300"
    with path.open("a") as f:
        f.write("2027-01-01 00:00:00.000 UTC [1] appended\n")
    assert log_file_name(path) == "error/postgresql.log.2026-12-06-2300"
