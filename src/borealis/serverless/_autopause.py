"""Auto-pause and resume at run time: stop an idle instance's postgres, start it again on the next connection.

The scaler tells :meth:`AutoPause.observe` each second whether an instance has user activity; :meth:`step`
applies :func:`~borealis.serverless._pause.to_pause` to every cluster with MinCapacity 0 and pauses what it
returns. A pause is the instance record's ``paused`` flag (``ControlPlane.set_paused``): the reconciler stops
its postgres with a clean shutdown and leaves it stopped, the status stays ``available`` (as on AWS), the
Data API answers DatabaseResumingException, and the flag survives a restart of Borealis. The topology calls
:meth:`wake` (its ``waker``) before it routes a connection to a member that is not ready, and the Data API
before it answers; waking clears the flag for the instance and those that resume with it and waits until they
serve. Concurrent callers share one resume.

What counts as activity (AWS: "user-initiated connections"; an open idle connection counts): any client
backend reached over TCP (every endpoint, instance and proxy listener connects that way), and a backend on the
unix socket (the Data API's warm connections, Borealis's own work) only while it runs a statement. So a
connection a client holds open keeps the instance up, and the Data API's idle pool does not.

Events (in the event log DescribeEvents reads, the log and the progress display): RDS-EVENT-0370 pause
initiated, 0371 paused, 0372 resume initiated, 0373 resumed, 0374 resume failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from borealis.control._events import EventKind

from ._pause import Member, to_pause, to_wake

__all__ = ["AutoPause"]

log = logging.getLogger(__name__)

_RESUME_TIMEOUT = 60.0

# AWS numbers these events RDS-EVENT-0370..0374 (the auto-pause page); the messages are ours.
_NOTE = ("notification",)
PAUSING = EventKind("RDS-EVENT-0370", "db-instance", _NOTE, "Initiated pause of the DB instance (no user activity)")
PAUSED = EventKind("RDS-EVENT-0371", "db-instance", _NOTE, "The DB instance is paused ({})")
RESUMING = EventKind("RDS-EVENT-0372", "db-instance", _NOTE, "Initiated resume of the DB instance (user activity)")
RESUMED = EventKind("RDS-EVENT-0373", "db-instance", _NOTE, "The DB instance resumed ({})")
RESUME_FAILED = EventKind("RDS-EVENT-0374", "db-instance", _NOTE, "The DB instance failed to resume")


class AutoPause:
    """Pause state of every instance of a control plane."""

    def __init__(self, control: Any, *, has_proxy: Callable[[str], bool] = lambda cid: False) -> None:
        """``control`` is the ControlPlane: clusters, cluster_instances, instance, server, set_paused, wait_for,
        emit."""
        self.control = control
        self.has_proxy = has_proxy
        self._active_at: dict[str, float] = {}
        self._resuming: dict[str, asyncio.Future[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def held(self, instance_id: str) -> bool:
        """Whether the instance is paused (its record says so)."""
        inst = self.control.instance(instance_id)
        return inst is not None and bool(inst.get("paused"))

    def observe(self, instance_id: str, active: bool, now: float) -> None:
        """Note one reading of a running instance: ``active`` when a user connection was open."""
        if active or instance_id not in self._active_at:
            self._active_at[instance_id] = now

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _members(self, cid: str, now: float) -> list[Member]:
        members = []
        for inst in self.control.cluster_instances(cid):
            if inst.get("instance_class") != "db.serverless" or inst.get("status") == "deleting":
                continue
            iid = inst["id"]
            paused = bool(inst.get("paused"))
            running = self.control.server(iid) is not None
            # Down for another reason (starting, rebooting): it blocks a pause of its group, as activity does.
            idle = 0.0 if not running and not paused else now - self._active_at.get(iid, now)
            members.append(
                Member(
                    iid,
                    writer=inst.get("role") == "writer",
                    tier=int(inst.get("promotion_tier", 1)),
                    idle_for=idle,
                    paused=paused,
                )
            )
        return members

    async def step(self, now: float | None = None) -> None:
        """Pause what has been idle long enough; wake what a proxy now keeps awake."""
        now = time.monotonic() if now is None else now
        for cluster in list(self.control.clusters.values()):
            cid = cluster["id"]
            scaling = cluster.get("scaling") or {}
            if cluster.get("status") != "available":
                continue
            members = self._members(cid, now)
            if self.has_proxy(cid):
                for m in members:
                    if m.paused:
                        await self.wake(m.id)
                continue
            seconds = scaling.get("pause") if scaling.get("min") == 0 else None
            for iid in sorted(to_pause(members, seconds)):
                await self._pause(cid, iid)

    async def _pause(self, cid: str, iid: str) -> None:
        async with self._lock(cid):
            if self.held(iid) or self.control.server(iid) is None:
                return
            self._event(cid, iid, PAUSING)
            started = time.monotonic()
            self.control.set_paused(iid, True)
            if await self.control.wait_for(lambda: self.control.server(iid) is None, _RESUME_TIMEOUT):
                self._event(cid, iid, PAUSED, f"{time.monotonic() - started:.2f}s")

    async def wake(self, instance_id: str) -> None:
        """Resume a paused instance (with the instances that resume with it) and return once it serves.

        Concurrent callers share one resume. Raises TimeoutError when it does not serve in time.
        """
        if not self.held(instance_id):
            return
        running = self._resuming.get(instance_id)
        if running is None:
            running = asyncio.ensure_future(self._resume(instance_id))
            self._resuming[instance_id] = running
            running.add_done_callback(lambda _: self._resuming.pop(instance_id, None))
        await asyncio.shield(running)

    async def _resume(self, instance_id: str) -> None:
        inst = self.control.instance(instance_id)
        if inst is None:
            return
        cid = inst["cluster"]
        async with self._lock(cid):
            members = self._members(cid, time.monotonic())
            order = [i for i in to_wake(members, instance_id) if self.held(i)] or [instance_id]
            started = time.monotonic()
            for iid in order:
                self._event(cid, iid, RESUMING)
                self._active_at[iid] = time.monotonic()
                self.control.set_paused(iid, False)

            def serving() -> bool:
                return all(self.control.server(i) is not None and self._available(i) for i in order)

            ok = await self.control.wait_for(serving, _RESUME_TIMEOUT)
            for iid in order:
                self._active_at[iid] = time.monotonic()
                self.control.resumed(iid)
                if ok:
                    self._event(cid, iid, RESUMED, f"{time.monotonic() - started:.2f}s")
                else:
                    self._event(cid, iid, RESUME_FAILED)
            if not ok:
                raise TimeoutError(f"DB instance {instance_id} did not resume in {_RESUME_TIMEOUT:g}s")

    def _event(self, cid: str, iid: str, kind: EventKind, *args: str) -> None:
        """Record an event (DescribeEvents) and show it in the log and the progress display."""
        events = getattr(self.control, "events", None)
        if events is not None:
            events.record(kind, iid, *args)
        self.control.emit(cid, iid, f"{kind.event_id}: {kind.message.format(*args)}")

    def _available(self, iid: str) -> bool:
        # The record keeps its status through a pause; its address (pg_port), which API workers route by, is
        # written only once the restarted postgres is set up. Before that a worker would answer "unavailable".
        inst = self.control.instance(iid)
        return inst is not None and inst.get("status") == "available" and bool(inst.get("pg_port"))

    def forget(self, instance_id: str) -> None:
        """An instance was deleted."""
        self._active_at.pop(instance_id, None)
