"""What a capacity buys, pure: cgroup limits and the PostgreSQL settings that follow ACUs.

Aurora PostgreSQL's parameter defaults are formulas over ``DBInstanceClassMemory``; for a Serverless v2
instance that memory follows the capacity. We use the same formulas with ``capacity x 2 GiB``:

- ``effective_cache_size`` = memory / 10922 pages of 8 KiB (about 75 %), follows the current capacity;
- ``maintenance_work_mem`` = max(memory / 63963136 x 1024 KiB, 64 MiB), follows the current capacity;
- ``work_mem``: Aurora keeps PostgreSQL's 4 MiB; we let it grow with capacity (memory / 1024, at least
  4 MiB) so a larger instance sorts in memory as a larger provisioned class would with a tuned group;
- ``shared_buffers`` is fixed at start (PostgreSQL cannot resize it), so it is sized for MaxCapacity with
  Aurora's formula (memory / 12038 pages less 50003 pages), capped at a quarter of this machine's memory, so a
  cluster with MaxCapacity 128 does not reserve more than the host has;
- ``max_connections`` follows MaxCapacity with AWS's table (``max_connections_for``), on the next restart.

These reload without a restart except the last two, which a reload leaves pending (PostgreSQL logs that they
need a restart), as a ``pending-reboot`` change does on AWS.
"""

from __future__ import annotations

import os

from borealis.engine import Limits

from ._policy import ACU_CPU, ACU_MEMORY

__all__ = ["host_memory", "limits_for", "settings_for"]

_PAGE = 8192
_KIB = 1024
_MIB = 1024**2


def host_memory() -> int:
    """This machine's physical memory in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def limits_for(capacity: float) -> Limits:
    """The CPU quota and memory limit of ``capacity`` ACUs."""
    return Limits(cpus=capacity * ACU_CPU, memory=int(capacity * ACU_MEMORY))


def settings_for(capacity: float, max_capacity: float, max_connections: int, host: int) -> dict[str, str]:
    """PostgreSQL settings for an instance at ``capacity`` in a range up to ``max_capacity`` ACUs."""
    memory = capacity * ACU_MEMORY
    most = max(max_capacity, capacity) * ACU_MEMORY
    buffers = max(16 * _MIB, min(most / 12038 * _PAGE - 50003 * _PAGE, host / 4))
    return {
        "shared_buffers": f"{int(buffers // _KIB)}kB",
        "max_connections": str(max_connections),
        "effective_cache_size": f"{int(memory / 10922) * _PAGE // _KIB}kB",
        "maintenance_work_mem": f"{max(int(memory / 63963136) * 1024, 65536)}kB",
        "work_mem": f"{max(int(memory / 1024 / _KIB), 4096)}kB",
    }
