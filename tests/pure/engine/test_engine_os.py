"""OS helpers: making ancestors traversable for the service user, liveness of pids."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from borealis.engine._osuser import RunAs, ensure_traversable
from borealis.engine._process import child_env, is_alive, looks_like_postmaster

# A user that owns nothing here and has no groups of ours (no such name, so getgrouplist gives only gid).
STRANGER = RunAs(name="borealis-test-stranger", uid=65534, gid=65534, home="/nonexistent")


def test_adds_search_permission_only_where_missing(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    inner = closed / "open" / "data"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    (closed / "open").chmod(0o755)
    changed = ensure_traversable([inner], STRANGER)
    assert closed in changed
    assert closed / "open" not in changed
    mode = stat.S_IMODE(closed.stat().st_mode)
    assert mode == 0o701  # search only: no read, so the directory still cannot be listed
    assert ensure_traversable([inner], STRANGER) == []


def test_is_alive() -> None:
    assert is_alive(os.getpid())
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not is_alive(proc.pid)


def test_zombie_counts_as_dead() -> None:
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    try:
        assert not is_alive(proc.pid)
    finally:
        proc.wait()


def test_python_is_not_a_postmaster() -> None:
    assert not looks_like_postmaster(os.getpid(), Path.cwd())


def test_child_env_drops_pg_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPORT", "1")
    env = child_env(STRANGER)
    assert "PGPORT" not in env
    assert env["LC_ALL"] == "C"
    assert env["HOME"] == "/nonexistent"
