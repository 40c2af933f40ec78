"""Auto-pause, pure: which instances of a cluster pause now, and which wake together.

The rules are AWS's (the auto-pause page of the Aurora user guide; /work/shared/reference §1.4):

- a cluster pauses only with MinCapacity 0; an instance pauses after ``SecondsUntilAutoPause`` without user
  connections (an open idle connection counts as one; Aurora's own connections do not);
- an associated RDS Proxy keeps its cluster awake (it "maintains an open connection to each DB instance");
- the writer and the readers in promotion tiers 0-1 form one group that pauses and resumes together: it pauses
  when every one of them has been idle long enough, and never while a reader of tiers 2-15 is up;
- readers in tiers 2-15 pause on their own;
- waking a reader wakes the writer (and so its group); waking any member of the group wakes all of it.

Capacity reads 0 while paused and the instance's status stays ``available`` (the callers keep the record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Member", "to_pause", "to_wake"]


@dataclass(frozen=True, slots=True)
class Member:
    """One instance as the pause rules see it."""

    id: str
    writer: bool
    tier: int
    idle_for: float
    """Seconds since its last user connection (or since it started or resumed)."""
    paused: bool = False

    @property
    def grouped(self) -> bool:
        """Whether it pauses and resumes with the writer (the writer itself, or a reader in tier 0-1)."""
        return self.writer or self.tier <= 1


def to_pause(members: Sequence[Member], seconds: float | None, *, proxy: bool = False) -> set[str]:
    """The instances to pause now: ``seconds`` is SecondsUntilAutoPause (None: the cluster cannot pause)."""
    if seconds is None or proxy:
        return set()
    idle = {m.id for m in members if not m.paused and m.idle_for >= seconds}
    pausing = {m.id for m in members if not m.grouped and m.id in idle}
    group = [m for m in members if m.grouped]
    loose_up = [m for m in members if not m.grouped and not m.paused and m.id not in pausing]
    running = [m for m in group if not m.paused]
    if running and all(m.id in idle for m in running) and not loose_up:
        pausing |= {m.id for m in running}
    return pausing


def to_wake(members: Sequence[Member], instance_id: str) -> list[str]:
    """The paused instances to resume for a connection to ``instance_id``, the writer's group first."""
    target = next((m for m in members if m.id == instance_id), None)
    if target is None:
        return []
    wake = [m for m in members if m.grouped and m.paused]
    if not target.grouped and target.paused:
        wake.append(target)
    wake.sort(key=lambda m: (not m.writer, m.tier))
    return [m.id for m in wake]
