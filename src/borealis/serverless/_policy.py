"""The capacity policy, pure: ``decide(samples, scaling, now) -> capacity`` in ACUs.

What it models from Aurora Serverless v2 (AWS's "How Aurora Serverless v2 works" and "Performance and
scaling" pages; see /work/shared/reference/aurora-serverless-and-rds-api.md §1):

- Capacity is a number of ACUs between the cluster's MinCapacity and MaxCapacity, in half-ACU steps, one value
  per instance, measured every second. One ACU is "approximately 2 GiB of memory, corresponding CPU"; AWS gives
  no CPU figure, so we take the ratio of the memory-optimized classes Aurora runs on (8 GiB per vCPU), a quarter
  of a CPU per ACU (:data:`ACU_CPU`).
- Aurora scales up when CPU, memory or connections constrain the instance, "in increments as small as 0.5 ACUs.
  The larger the current capacity, the larger the scaling increment and thus the faster scaling can happen."
  Here: as soon as the last few seconds show a resource above its high-water mark (CPU 70 % of the quota, memory
  75 % of the limit, or connections needing more than 75 % of the memory AWS budgets for them), capacity jumps
  to what the load needs, and at least by one step, where a step is half the current capacity (0.5 at 1 ACU,
  1 at 2, 2 at 4, 4 at 8...). Every second may add another step, so a saturated instance doubles every
  second or so.
- AWS publishes no rate for scaling down and says only that it follows the load down once the load is gone
  (v2 has no fixed cooldown). Here: nothing comes down until the load has stayed low for ``down_after`` seconds
  since the last change, and then by at most a quarter of the capacity (at least 0.5) every ``down_every``
  seconds, never below what the load of that window needed.
- Readers in promotion tiers 0-1 never go below the writer's capacity (``Scaling.floor``); tiers 2-15 scale on
  their own (floor 0).
- Capacity 0 is a pause, decided by the pause logic (SecondsUntilAutoPause), never here: with MinCapacity 0 a
  running instance stays at 0.5 ACU or more.

Connections weigh as AWS budgets them: Aurora PostgreSQL's default max_connections is
``LEAST(DBInstanceClassMemory/9531392, 5000)``, so each connection stands for 9,531,392 bytes of memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ACU_CPU",
    "ACU_MEMORY",
    "CONNECTION_MEMORY",
    "Policy",
    "Sample",
    "Scaling",
    "decide",
    "demand",
    "half_up",
]

ACU_MEMORY = 2 * 1024**3
"""Bytes of memory one ACU buys (AWS: "approximately 2 gibibytes")."""

ACU_CPU = 0.25
"""CPUs one ACU buys: Aurora's memory-optimized classes have 8 GiB per vCPU, so 4 ACUs per CPU."""

CONNECTION_MEMORY = 9_531_392
"""Bytes of memory a connection is budgeted in Aurora PostgreSQL's max_connections formula."""


@dataclass(frozen=True, slots=True)
class Sample:
    """What one instance looked like at one second.

    ``cpu`` is CPUs in use over the last interval (1.0 = one core busy), ``memory`` bytes in use by its
    processes (not the page cache), ``connections`` its client backends, ``capacity`` the ACUs applied when
    the sample was taken.
    """

    at: float
    cpu: float
    memory: int
    connections: int
    capacity: float


@dataclass(frozen=True, slots=True)
class Scaling:
    """The range an instance scales in: the cluster's MinCapacity / MaxCapacity, and a floor (the writer's
    capacity, for readers in promotion tiers 0-1)."""

    min: float
    max: float
    floor: float = 0.0


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy's knobs; the defaults are what Borealis runs with."""

    cpu_high: float = 0.70
    """CPU use, as a fraction of the quota, above which capacity rises."""
    memory_high: float = 0.75
    """Memory use, as a fraction of the limit, above which capacity rises."""
    up_window: float = 3.0
    """Seconds of samples (at the current capacity) a scale-up looks at: their mean CPU, peak memory and
    connections."""
    down_after: float = 20.0
    """Seconds of low load after the last change before capacity may come down."""
    down_every: float = 5.0
    """Seconds between two scale-down steps."""


DEFAULT_POLICY = Policy()


def half_up(value: float) -> float:
    """``value`` rounded up to the next half ACU (with a tolerance for float noise)."""
    return math.ceil(value * 2 - 1e-9) / 2


def _half_down(value: float) -> float:
    return math.floor(value * 2 + 1e-9) / 2


def up_step(capacity: float) -> float:
    """How much one scale-up step adds at ``capacity``: half of it, at least 0.5 ACU."""
    return max(0.5, _half_down(capacity / 2))


def down_step(capacity: float) -> float:
    """How much one scale-down step removes at ``capacity``: a quarter of it, at least 0.5 ACU."""
    return max(0.5, _half_down(capacity / 4))


def demand(cpu: float, memory: int, connections: int, policy: Policy = DEFAULT_POLICY) -> float:
    """The ACUs (unrounded) that keep this load under every high-water mark."""
    by_cpu = cpu / policy.cpu_high / ACU_CPU
    by_memory = memory / policy.memory_high / ACU_MEMORY
    by_connections = connections * CONNECTION_MEMORY / policy.memory_high / ACU_MEMORY
    return max(by_cpu, by_memory, by_connections)


def _last_changes(samples: Sequence[Sample]) -> tuple[float | None, float | None]:
    """When capacity last changed at all, and when it last rose (None: not within the samples)."""
    changed: float | None = None
    for earlier, later in reversed(list(itertools.pairwise(samples))):
        if later.capacity != earlier.capacity and changed is None:
            changed = later.at
        if later.capacity > earlier.capacity:
            return changed, later.at
    return changed, None


def _bounds(scaling: Scaling) -> tuple[float, float]:
    low = max(scaling.min, 0.5, scaling.floor)
    return low, max(low, scaling.max)


def decide(samples: Sequence[Sample], scaling: Scaling, now: float, policy: Policy = DEFAULT_POLICY) -> float:
    """The capacity an instance should have at ``now``, given its recent samples (oldest first).

    With no samples it keeps the lowest capacity of its range.
    """
    low, high = _bounds(scaling)
    if not samples:
        return low
    current = samples[-1].capacity
    clamp = min(high, max(low, current))
    # Samples taken at another capacity say little about this one (a throttled CPU reads low), so a scale-up
    # looks at the seconds since the last change only.
    recent = [s for s in samples if s.at > now - policy.up_window and s.capacity == current] or [samples[-1]]
    cpu = sum(s.cpu for s in recent) / len(recent)
    memory = max(s.memory for s in recent)
    connections = max(s.connections for s in recent)
    need = demand(cpu, memory, connections, policy)
    if need > current:
        return min(high, max(low, half_up(need), current + up_step(current)))
    if clamp != current:  # the range moved (ModifyDBCluster, or the writer a tier-0/1 reader follows)
        return clamp
    changed, rose = _last_changes(samples)
    if now - (rose if rose is not None else samples[0].at) < policy.down_after:
        return current  # too soon after the load (or after we started watching)
    if changed is not None and now - changed < policy.down_every:
        return current
    window = [s for s in samples if s.at > now - policy.down_after]
    peak = max((demand(s.cpu, s.memory, s.connections, policy) for s in window), default=0.0)
    target = max(half_up(peak), current - down_step(current))
    return min(high, max(low, target, 0.5))
