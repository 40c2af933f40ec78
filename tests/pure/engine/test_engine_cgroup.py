"""Cgroup detection and limits over fake cgroup trees (v1, v2, none), and the capacity -> settings sizing."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.engine import Cgroups, Limits
from borealis.engine._cgroup import parse_mountinfo, parse_proc_cgroup
from borealis.serverless._sizing import limits_for, settings_for

HYBRID = """31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / {root}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = "4:memory:/jobs/42\n1:cpu:/\n2:cpuacct:/\n0::/\n"
UNIFIED = "30 23 0:27 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
UNIFIED_SELF = "0::/user.slice/app.scope\n"


def test_parse_mountinfo_and_proc_cgroup() -> None:
    mounts = parse_mountinfo(HYBRID.format(root="/sys/fs/cgroup"))
    assert [(str(m.path), m.version, sorted(m.controllers)) for m in mounts] == [
        ("/sys/fs/cgroup/cpu", 1, ["cpu"]),
        ("/sys/fs/cgroup/cpuacct", 1, ["cpuacct"]),
        ("/sys/fs/cgroup/memory", 1, ["memory"]),
        ("/sys/fs/cgroup/unified", 2, []),
    ]
    assert parse_proc_cgroup(HYBRID_SELF) == {"memory": "/jobs/42", "cpu": "/", "cpuacct": "/", "": "/"}


def _hybrid_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cg"
    for d in ("cpu", "cpuacct", "memory/jobs/42", "unified"):
        (root / d).mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("\n")  # v2 mounted, but every controller is on v1
    return root


def test_v1_groups_under_our_own_cgroup_per_controller(tmp_path: Path) -> None:
    root = _hybrid_tree(tmp_path)
    found = Cgroups.detect(tmp_path / "data", mountinfo=HYBRID.format(root=root), proc_cgroup=HYBRID_SELF)
    assert found.version == 1, found.reason
    assert found.cpu_parent is not None and found.cpu_parent.parent == root / "cpu"
    assert found.memory_parent is not None and found.memory_parent.parent == root / "memory/jobs/42"
    group = found.group("db-1")
    assert group is not None
    group.apply(Limits(cpus=0.5, memory=2 * 1024**3))
    assert (group.cpu_dir / "cpu.cfs_quota_us").read_text() == "50000"
    assert (group.cpu_dir / "cpu.cfs_period_us").read_text() == "100000"
    assert (group.memory_dir / "memory.limit_in_bytes").read_text() == str(2 * 1024**3)
    group.adopt([123, 456])
    assert (group.cpu_dir / "cgroup.procs").read_text() == "456"  # (a plain file here keeps the last write)
    (group.memory_dir / "memory.stat").write_text("cache 100\nrss 5\ntotal_rss 4096\ntotal_shmem 1024\n")
    assert group.memory_used() == 5120
    assert "cgroup v1" in found.describe()
    # The same data directory finds the same groups again (a restart); another one gets its own.
    again = Cgroups.detect(tmp_path / "data", mountinfo=HYBRID.format(root=root), proc_cgroup=HYBRID_SELF)
    other = Cgroups.detect(tmp_path / "other", mountinfo=HYBRID.format(root=root), proc_cgroup=HYBRID_SELF)
    assert again.cpu_parent == found.cpu_parent != other.cpu_parent


def test_v2_delegated_subtree(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    own = root / "user.slice/app.scope"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu io memory pids\n")
    found = Cgroups.detect(
        tmp_path / "data", mountinfo=UNIFIED.format(root=root), proc_cgroup=UNIFIED_SELF, move_self=True
    )
    assert found.version == 2, found.reason
    assert (own / "supervisor" / "cgroup.procs").is_file()  # we moved into a leaf first
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory"
    group = found.group("db-1")
    assert group is not None
    group.apply(Limits(cpus=1.25, memory=3 * 1024**3))
    assert (group.cpu_dir / "cpu.max").read_text() == "125000 100000"
    assert (group.memory_dir / "memory.high").read_text() == str(3 * 1024**3)
    (group.memory_dir / "memory.stat").write_text("anon 4096\nfile 99999\nshmem 1024\nkernel_stack 16\n")
    assert group.memory_used() == 5136


def test_nothing_writable_says_why(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    own = root / "user.slice/app.scope"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("pids\n")
    found = Cgroups.detect(tmp_path / "data", mountinfo=UNIFIED.format(root=root), proc_cgroup=UNIFIED_SELF)
    assert not found.enabled and found.group("db-1") is None
    assert "cpu and memory controllers are not available" in found.reason
    assert "settings only" in found.describe()
    none = Cgroups.detect(tmp_path / "data", mountinfo="", proc_cgroup="")
    assert not none.enabled and "no cgroup hierarchy" in none.reason


@pytest.mark.parametrize(
    ("capacity", "cpus", "gib"),
    [(0.5, 0.125, 1), (1, 0.25, 2), (4, 1.0, 8), (16, 4.0, 32)],
)
def test_limits_for(capacity: float, cpus: float, gib: int) -> None:
    assert limits_for(capacity) == Limits(cpus=cpus, memory=gib * 1024**3)


def test_settings_follow_capacity_and_buffers_the_max() -> None:
    host = 64 * 1024**3
    low = settings_for(1, 8, 1669, host)
    high = settings_for(8, 8, 1669, host)
    assert low["shared_buffers"] == high["shared_buffers"]  # sized for MaxCapacity, fixed at start
    assert low["max_connections"] == "1669"
    # Aurora's memory/10922 pages of 8 kB (about 75 %) at 2 and 16 GiB.
    assert (low["effective_cache_size"], high["effective_cache_size"]) == ("1572960kB", "12583680kB")
    assert low["maintenance_work_mem"] == "65536kB" and high["maintenance_work_mem"] == "274432kB"
    assert low["work_mem"] == "4096kB" and high["work_mem"] == "16384kB"
    # A huge MaxCapacity does not reserve more than a quarter of the machine.
    assert settings_for(1, 128, 5000, host)["shared_buffers"] == f"{host // 4 // 1024}kB"
