"""CPU and memory limits for one PostgreSQL server through Linux cgroups (v2, v1, or none), and its accounting.

Where the limits go, decided once at start-up by :meth:`Cgroups.detect`:

- **v2** (one unified hierarchy with the ``cpu`` and ``memory`` controllers): under our own cgroup, when we may
  write it: as root, or as a normal user in a delegated subtree (``systemd-run --user --scope -p Delegate=yes
  borealis up``). A non-root cgroup with processes in it cannot also have children with controllers (cgroup v2's
  no-internal-process rule), so Borealis first moves itself into a leaf ``supervisor`` child. Limits are
  ``cpu.max`` (quota per 100 ms period) and ``memory.high`` (above it the kernel reclaims and throttles instead
  of killing, which is what a capacity that rises under memory pressure wants).
- **v1** (one hierarchy per controller, as on this project's CI machine): a group in the ``cpu`` and in the
  ``memory`` hierarchies, each under our own cgroup there (so our own limits still apply above it). Limits are
  ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` and ``memory.limit_in_bytes``.
- **none**: nothing writable (a normal user without delegation, a container without cgroup access). The caller
  says so once and scales PostgreSQL's settings alone.

Each Borealis data directory gets its own parent group (``borealis-<hash of the data dir>``), so several
Borealis processes on one machine never share groups and a restart finds its groups again. A server's
processes are moved in by :meth:`Cgroup.adopt` after start; backends forked later inherit the postmaster's
group, and the caller adopts the tree again now and then for the children forked in between.

Accounting that needs no cgroup (:func:`process_tree`, :func:`cpu_seconds`, :func:`proportional_memory`) reads
/proc: a postmaster reaps its backends, so its ``cutime``/``cstime`` hold the CPU of the ones that exited.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Cgroup",
    "Cgroups",
    "Limits",
    "cpu_seconds",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "process_tree",
    "proportional_memory",
]

log = logging.getLogger(__name__)

PERIOD_US = 100_000
"""The CFS period (100 ms, the kernel's default); the quota is CPUs x this."""
_MIN_QUOTA_US = 1_000  # the kernel refuses quotas under 1 ms
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server may use: ``cpus`` (1.0 = one CPU's time) and ``memory`` in bytes."""

    cpus: float
    memory: int


@dataclass(frozen=True, slots=True)
class Mount:
    """One cgroup mount from /proc/self/mountinfo: where, its root, the v1 controllers it carries."""

    path: Path
    root: str
    version: int
    controllers: frozenset[str]


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup mounts in the text of /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        path = Path(fields[4].replace("\\040", " "))
        if tail[0] == "cgroup2":
            mounts.append(Mount(path, fields[3], 2, frozenset()))
        else:
            options = frozenset(tail[2].split(","))
            mounts.append(Mount(path, fields[3], 1, options & {"cpu", "cpuacct", "memory"}))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Our cgroup path per v1 controller (and ``""`` for the v2 hierarchy) from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


def _inside(mount: Mount, path: str) -> Path:
    """The directory of cgroup ``path`` (as /proc/self/cgroup names it) under ``mount``."""
    relative = path
    if mount.root != "/" and relative.startswith(mount.root):
        relative = relative[len(mount.root) :]
    return mount.path / relative.lstrip("/")


def _write(path: Path, value: str) -> None:
    with path.open("w") as f:
        f.write(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Cgroup:
    """One server's group: a directory per hierarchy (one in v2; cpu and memory in v1)."""

    def __init__(self, version: int, cpu_dir: Path, memory_dir: Path) -> None:
        self.version = version
        self.cpu_dir = cpu_dir
        self.memory_dir = memory_dir
        self._dirs = [cpu_dir] if cpu_dir == memory_dir else [cpu_dir, memory_dir]

    def __repr__(self) -> str:
        return f"Cgroup(v{self.version}, {self.cpu_dir})"

    def create(self) -> None:
        """Make the group's directories (idempotent)."""
        for d in self._dirs:
            d.mkdir(parents=False, exist_ok=True)

    def apply(self, limits: Limits) -> None:
        """Set the CPU quota and the memory limit."""
        quota = max(_MIN_QUOTA_US, round(limits.cpus * PERIOD_US))
        memory = max(limits.memory, 64 * 1024**2)
        if self.version == 2:
            _write(self.cpu_dir / "cpu.max", f"{quota} {PERIOD_US}")
            _write(self.memory_dir / "memory.high", str(memory))
            return
        _write(self.cpu_dir / "cpu.cfs_period_us", str(PERIOD_US))
        _write(self.cpu_dir / "cpu.cfs_quota_us", str(quota))
        try:
            _write(self.memory_dir / "memory.limit_in_bytes", str(memory))
        except OSError as exc:
            # v1 refuses a limit below what the group uses now (EBUSY) when it cannot reclaim enough: keep
            # the old limit; the next decision tries again.
            if exc.errno != errno.EBUSY:
                raise
            log.debug("%s: memory limit %d refused (in use above it)", self, memory)

    def adopt(self, pids: Iterable[int]) -> None:
        """Move these processes into the group (those already in it, or gone, are skipped)."""
        for d in self._dirs:
            present = set(self._pids(d))
            for pid in pids:
                if pid in present:
                    continue
                with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                    try:
                        _write(d / "cgroup.procs", str(pid))
                    except OSError as exc:
                        if exc.errno != errno.ESRCH:
                            raise

    @staticmethod
    def _pids(d: Path) -> list[int]:
        try:
            return [int(x) for x in (d / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def memory_used(self) -> int | None:
        """Bytes the group's processes use, page cache left out (anonymous + shared memory); None if unknown."""
        try:
            stat = (self.memory_dir / "memory.stat").read_text()
        except OSError:
            return None
        values = {}
        for line in stat.splitlines():
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[name] = int(value)
        if self.version == 2:
            return values.get("anon", 0) + values.get("shmem", 0) + values.get("kernel_stack", 0)
        return values.get("total_rss", values.get("rss", 0)) + values.get("total_shmem", values.get("shmem", 0))

    def remove(self) -> None:
        """Remove the group (it must be empty: call it once the server has stopped)."""
        for d in self._dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


class Cgroups:
    """Where this Borealis may put its servers' groups: v2, v1 or nowhere (``version`` 0, with ``reason``)."""

    def __init__(self, version: int, cpu_parent: Path | None, memory_parent: Path | None, reason: str = "") -> None:
        self.version = version
        self.cpu_parent = cpu_parent
        self.memory_parent = memory_parent
        self.reason = reason

    def __repr__(self) -> str:
        return f"Cgroups(v{self.version}, {self.cpu_parent}, {self.memory_parent})"

    @property
    def enabled(self) -> bool:
        """Whether limits can be enforced."""
        return self.version != 0

    def describe(self) -> str:
        """One line for the start-up log."""
        if not self.enabled:
            return f"capacity limits: no writable cgroup ({self.reason}); scaling PostgreSQL's settings only"
        return f"capacity limits: cgroup v{self.version} under {self.cpu_parent}"

    @classmethod
    def detect(
        cls,
        data_dir: Path,
        *,
        mountinfo: str | None = None,
        proc_cgroup: str | None = None,
        move_self: bool = True,
    ) -> Cgroups:
        """Find a writable hierarchy with cpu and memory and make our parent group there.

        ``mountinfo`` and ``proc_cgroup`` replace the text of /proc/self/mountinfo and /proc/self/cgroup (tests).
        """
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
            proc_cgroup = Path("/proc/self/cgroup").read_text() if proc_cgroup is None else proc_cgroup
        except OSError as exc:
            return cls(0, None, None, f"cannot read /proc: {exc.strerror}")
        mounts = parse_mountinfo(mountinfo)
        ours = parse_proc_cgroup(proc_cgroup)
        name = "borealis-" + hashlib.sha256(str(Path(data_dir).absolute()).encode()).hexdigest()[:12]
        reasons = []
        v2 = next((m for m in mounts if m.version == 2), None)
        if v2 is not None and "" in ours:
            found = cls._v2(v2, ours[""], name, move_self)
            if isinstance(found, Cgroups):
                return found
            reasons.append(found)
        cpu = next((m for m in mounts if m.version == 1 and "cpu" in m.controllers), None)
        memory = next((m for m in mounts if m.version == 1 and "memory" in m.controllers), None)
        if cpu is not None and memory is not None:
            found = cls._v1(cpu, memory, ours, name)
            if isinstance(found, Cgroups):
                return found
            reasons.append(found)
        return cls(0, None, None, "; ".join(reasons) or "no cgroup hierarchy with cpu and memory is mounted")

    @classmethod
    def _v1(cls, cpu: Mount, memory: Mount, ours: dict[str, str], name: str) -> Cgroups | str:
        cpu_parent = _inside(cpu, ours.get("cpu", "/")) / name
        memory_parent = _inside(memory, ours.get("memory", "/")) / name
        try:
            for d in (cpu_parent, memory_parent):
                d.mkdir(exist_ok=True)
        except OSError as exc:
            return f"cgroup v1: cannot create {exc.filename}: {exc.strerror}"
        with contextlib.suppress(OSError):  # hierarchical accounting, so a parent's limit counts its children
            _write(memory_parent / "memory.use_hierarchy", "1")
        return cls(1, cpu_parent, memory_parent)

    @classmethod
    def _v2(cls, mount: Mount, path: str, name: str, move_self: bool) -> Cgroups | str:
        own = _inside(mount, path)
        try:
            available = set((own / "cgroup.controllers").read_text().split())
        except OSError as exc:
            return f"cgroup v2: cannot read {own}: {exc.strerror}"
        if not {"cpu", "memory"} <= available:
            return f"cgroup v2: the cpu and memory controllers are not available in {own}"
        try:
            if own != mount.path and move_self:
                # No internal processes in a non-root v2 group with controlled children: we step into a leaf.
                leaf = own / "supervisor"
                leaf.mkdir(exist_ok=True)
                _write(leaf / "cgroup.procs", str(os.getpid()))
            _write(own / "cgroup.subtree_control", "+cpu +memory")
            parent = own / name
            parent.mkdir(exist_ok=True)
            _write(parent / "cgroup.subtree_control", "+cpu +memory")
        except OSError as exc:
            return f"cgroup v2: cannot delegate {own}: {exc.strerror}"
        return cls(2, parent, parent)

    def group(self, name: str) -> Cgroup | None:
        """The group of one server (created), or None when limits cannot be enforced."""
        if self.cpu_parent is None or self.memory_parent is None:
            return None
        group = Cgroup(self.version, self.cpu_parent / name, self.memory_parent / name)
        group.create()
        return group

    def close(self) -> None:
        """Remove our parent groups if no server is left in them."""
        for d in {self.cpu_parent, self.memory_parent}:
            if d is not None:
                with contextlib.suppress(OSError):
                    d.rmdir()


# ------------------------------------------------------------------------------------------- accounting


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


_HAS_CHILDREN_FILE = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the postmaster and its backends), from /proc."""
    if _HAS_CHILDREN_FILE:
        tree, todo = [], [pid]
        while todo:
            p = todo.pop()
            tree.append(p)
            todo.extend(_children(p))
        return tree
    by_parent = _ppid_map()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(by_parent.get(p, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds used by these processes and by the children they reaped (utime+stime+cutime+cstime)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        total += sum(int(x) for x in fields[11:15])
    return total / _CLK_TCK


def proportional_memory(pids: Iterable[int]) -> int:
    """Bytes these processes use, shared pages split between their users (Pss from smaps_rollup)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
                break
    return total
