"""The pure rules of continuous backup: retention, when a backup is due, the restorable window, the base chosen."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from borealis.control._backups import Backup, backup_due, choose_base, plan_retention, restorable_window
from borealis.engine._archive import archive_settings, backup_start_wal, recovery_settings, restore_command

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _backup(ident: str, days_ago: float, segment: int) -> Backup:
    return Backup(ident, NOW - dt.timedelta(days=days_ago), f"00000001000000000000{segment:04X}")


def _wal(timeline: int, segment: int) -> str:
    return f"{timeline:08X}00000000{segment:08X}"


def test_retention_keeps_the_window_and_the_newest_backup_before_it() -> None:
    backups = [_backup("b10", 10, 0x10), _backup("b8", 8, 0x20), _backup("b6", 6, 0x30), _backup("b1", 1, 0x40)]
    wal = [_wal(1, n) for n in (0x0F, 0x10, 0x1F, 0x20, 0x21, 0x30, 0x41)] + ["00000002.history", _wal(2, 0x1F)]
    plan = plan_retention(backups, wal, 5, NOW)
    # b6 is before the 5-day window but restores to its start: it stays, and the WAL it needs with it.
    assert plan.backups == ("b10", "b8")
    assert plan.wal == (_wal(1, 0x0F), _wal(1, 0x10), _wal(1, 0x1F), _wal(1, 0x20), _wal(1, 0x21), _wal(2, 0x1F))


def test_retention_with_everything_in_the_window_removes_nothing() -> None:
    backups = [_backup("b2", 2, 0x10), _backup("b1", 1, 0x20)]
    plan = plan_retention(backups, [_wal(1, 0x10), _wal(1, 0x11)], 35, NOW)
    assert plan.backups == () and plan.wal == ()


def test_retention_keeps_partial_and_backup_files_the_oldest_backup_needs() -> None:
    backups = [_backup("b40", 40, 0x10), _backup("b3", 3, 0x30)]
    wal = [_wal(1, 0x2F) + ".partial", _wal(1, 0x30) + ".00000028.backup", _wal(1, 0x30)]
    plan = plan_retention(backups, wal, 1, NOW)
    assert plan.backups == ("b40",)
    assert plan.wal == (_wal(1, 0x2F) + ".partial",)


def test_retention_without_a_known_first_segment_keeps_the_wal() -> None:
    plan = plan_retention([Backup("b", NOW - dt.timedelta(days=3), None)], [_wal(1, 1)], 1, NOW)
    assert plan == plan_retention([Backup("b", NOW - dt.timedelta(days=3), None)], [], 1, NOW)
    assert plan.wal == ()


def test_a_backup_is_due_after_the_interval() -> None:
    day = dt.timedelta(days=1)
    assert backup_due(None, NOW, day)
    assert not backup_due(NOW - dt.timedelta(hours=23), NOW, day)
    assert backup_due(NOW - day, NOW, day)
    # A failed attempt holds the next one back for a while, then it is due again.
    assert not backup_due(None, NOW, day, failed=NOW - dt.timedelta(seconds=30))
    assert backup_due(None, NOW, day, failed=NOW - dt.timedelta(minutes=10))


def test_window_and_base() -> None:
    backups = [_backup("old", 3, 1), _backup("new", 1, 2)]
    assert restorable_window([], NOW) is None
    assert restorable_window(backups, None) is None
    assert restorable_window(backups, NOW) == (NOW - dt.timedelta(days=3), NOW)
    assert choose_base(backups, NOW - dt.timedelta(days=2)) == backups[0]
    assert choose_base(backups, None) == backups[1]
    assert choose_base(backups, NOW - dt.timedelta(days=4)) is None


def test_archive_and_recovery_settings_quote_the_directory(tmp_path: object) -> None:
    from pathlib import Path

    archive = Path("/data/it's here/archive")
    settings = archive_settings(archive, 60)
    assert settings["archive_mode"] == "always" and settings["archive_timeout"] == "60"
    assert "'/data/it'\"'\"'s here/archive'/%f.gz" in settings["archive_command"]
    recovery = recovery_settings(archive, NOW)
    assert recovery["recovery_target_time"] == "2026-12-07 12:00:00+00:00"
    assert recovery["recovery_target_action"] == "promote"
    assert "recovery_target_time" not in recovery_settings(archive, None)


def _placeholders(command: str, values: dict[str, str]) -> str:
    """``command`` with its placeholders replaced as PostgreSQL 16+ does (common/percentrepl.c): ``%%`` is a
    ``%``, and a ``%`` before any character it does not know (or at the end) is an error."""

    def one(m: re.Match[str]) -> str:
        key = m.group(1)
        if key != "%" and key not in values:
            raise AssertionError(f"postgres refuses the command: unexpected placeholder %{key} in {command!r}")
        return values.get(key, "%")

    return re.sub(r"%(.?)", one, command, flags=re.DOTALL)


@pytest.mark.parametrize("dirname", ["it's archived", "100% archived, 5%f %p %%"])
def test_a_segment_archived_is_restored_byte_for_byte_and_a_missing_one_fails(tmp_path: object, dirname: str) -> None:
    # The commands as postgres runs them (sh -c, %f and %p replaced), in a directory whose name needs quoting
    # for the shell, or holds the placeholders' own character.
    import subprocess
    from pathlib import Path

    root = Path(str(tmp_path))
    archive = root / dirname
    archive.mkdir()
    segment = root / "pg_wal" / "000000010000000000000003"
    segment.parent.mkdir()
    segment.write_bytes(bytes(range(256)) * 64 + b"\0" * 8192)

    def run(command: str, name: str, path: Path) -> int:
        return subprocess.run(["sh", "-c", _placeholders(command, {"f": name, "p": str(path)})]).returncode

    assert run(archive_settings(archive, 60)["archive_command"], segment.name, segment) == 0
    restored = root / "RECOVERYXLOG"
    assert restore_command(archive) == recovery_settings(archive, None)["restore_command"]
    assert run(restore_command(archive), segment.name, restored) == 0
    assert restored.read_bytes() == segment.read_bytes()
    # Not archived (yet): the command fails, so a standby streams it from the writer instead.
    assert run(restore_command(archive), "000000010000000000000004", root / "other") != 0
    assert sorted(p.name for p in archive.iterdir()) == [f"{segment.name}.gz"]  # in the directory named, no other


def test_backup_start_wal_reads_the_label(tmp_path: object) -> None:
    from pathlib import Path

    datadir = Path(str(tmp_path))
    assert backup_start_wal(datadir) is None
    (datadir / "backup_label").write_text(
        "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000080\n"
    )
    assert backup_start_wal(datadir) == "000000010000000000000002"
