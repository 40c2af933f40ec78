"""The reconciler: observe -> plan -> act, on every kick and on a periodic tick.

- **observe**: what each instance's postgres is doing now (:class:`Observation`): whether its process runs,
  whether it answers a probe in time (health), its role (``pg_is_in_recovery()``), timeline and WAL position,
  and a reader's replication lag. Probes run in their own tasks, so a postgres that hangs only makes its
  probe late (and the instance unhealthy), never the loop.
- **plan**: :func:`plan` is a pure function of the stored records, the observations and which steps are
  under way; it returns :class:`Action` s, each with the reason it is needed (tested without processes,
  the way Patroni tests its HA cycle).
- **act**: each action runs as a task in the :class:`Executor`, one at a time per instance (or cluster), so
  a long step (initdb, a start that hangs, a base backup) never blocks the loop or another instance's
  steps: the next tick still observes and plans, and a failover is not held up by a stuck start.

Plan rules, in order, per cluster:

1. ``deleting`` cluster: once no step runs on it, one ``delete-cluster`` (instances, listeners, files, record);
   while its final snapshot is pending, only its instances are deleted. A cluster being restored from a
   snapshot waits (stays ``creating``) until the snapshot's data is its volume.
2. A step on the cluster itself (a failover) runs: nothing else until it ends.
3. A failover: when the cluster is ``failing-over`` (FailoverDBCluster, RebootDBInstance ForceFailover), when
   the writer is being deleted while another instance can take over, or when the writer's postgres died
   (it exited on its own) or hangs (``HANG_PROBES`` probes unanswered) and a reader can take over. With no
   reader, a dead writer is simply started again (crash recovery), as Aurora recreates a lone writer.
4. Per instance with no step under way: ``deleting`` -> ``delete-instance``; cluster stopping or stopped ->
   ``stop`` a running postgres, or mark it ``stopped``; ``rebooting`` -> ``restart``; should run but does not
   (created, started, crashed) -> ``start`` (a reader waits for a running writer, which it copies or
   follows); runs -> ``bootstrap`` (once per cluster, on the writer), ``apply-password`` (after a master
   password change), then mark it ``available``. A running reader that follows another address than the
   writer's -> ``follow``; a writer whose synchronous standbys are not the readers that run and stream
   (:func:`sync_standbys`) -> ``sync`` (quorum ANY 1 over them, or none when no reader is left).
5. With no instance step planned or running: ``creating`` / ``starting`` / ``resetting-master-credentials``
   -> ``available``; ``stopping`` -> ``stopped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from ._records import DELETING, ClusterRecord, InstanceRecord

__all__ = ["Action", "Executor", "Observation", "plan", "sync_standbys"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one instance's postgres was seen doing."""

    running: bool
    healthy: bool | None = None
    """Answered the last probe in time (None: not probed yet)."""
    in_recovery: bool | None = None
    timeline: int | None = None
    lsn: int | None = None
    """The WAL position: written (a primary) or received (a standby), in bytes."""
    lag_ms: float | None = None
    """A standby's replication lag (AuroraReplicaLag), as its primary measures it."""
    exit_code: int | None = None
    """How the postmaster exited, if it did on its own."""
    failures: int = 0
    """Probes in a row that got no answer in time."""
    address: str | None = None
    """Where it listens (``host:port``)."""
    upstream: str | None = None
    """A standby: the address of the primary it was configured to follow."""
    streaming: frozenset[str] = frozenset()
    """A primary: the standbys (instance ids) streaming from it now."""
    sync_candidate: bool = False
    """A standby that runs and streams (or started, or last streamed, a moment ago): the writer's commits
    wait for it (or another such one), so it holds every acknowledged commit it is sent."""
    sync: frozenset[str] | None = None
    """A primary: the synchronous standbys it was configured with (None: not yet configured)."""


NOT_RUNNING = Observation(running=False)

HANG_PROBES = 3
"""Unanswered probes in a row after which a running writer counts as hung."""


@dataclass(frozen=True, slots=True)
class Action:
    """One step the plan asks for, and why."""

    kind: str
    target: str
    reason: str
    status: str | None = None
    """For ``instance-status`` / ``cluster-status``: the status to move to."""

    def key(self) -> str:
        """What the step occupies in the executor: the instance, or the cluster for cluster steps."""
        return self.target


_CLUSTER_SETTLES = {"creating": "available", "starting": "available", "resetting-master-credentials": "available",
                    "stopping": "stopped"}  # fmt: skip


def plan(
    cluster: ClusterRecord,
    instances: Sequence[InstanceRecord],
    observed: Mapping[str, Observation],
    busy: frozenset[str],
) -> list[Action]:
    """The steps that bring ``cluster`` towards its stored state (pure; see the module docstring)."""
    cid = cluster.id
    if cluster.status == DELETING:
        if busy & ({cid} | {i.id for i in instances}):
            return []
        if cluster.get("final_snapshot"):
            # The final snapshot copies the volume the last writer leaves: instances go first, the rest waits.
            # Readers go before the writer, so the writer's data is the last and becomes the volume.
            readers = [i for i in instances if not i.is_writer]
            return [Action("delete-instance", i.id, "its cluster is being deleted") for i in readers or instances]
        return [Action("delete-cluster", cid, "the cluster is being deleted")]
    if cluster.get("restore_from") or cluster.get("restore_pitr"):
        return []  # a restore lays the snapshot's data down as the volume: nothing starts before it is there
    if cid in busy:
        return []
    failover = _failover(cluster, instances, observed)
    if failover is not None:
        return [failover]

    writer = next((i for i in instances if i.is_writer and i.status != DELETING), None)
    wobs = observed.get(writer.id, NOT_RUNNING) if writer is not None else NOT_RUNNING
    writer_up = writer is not None and wobs.running and writer.serving
    actions: list[Action] = []
    settling = False  # an instance step is planned or under way: the cluster's status waits for it
    for inst in instances:
        if inst.id in busy:
            settling = True
            continue
        obs = observed.get(inst.id, NOT_RUNNING)
        step = _instance_step(cluster, inst, obs)
        if step is not None and step.kind in ("start", "restart") and not inst.is_writer and not writer_up:
            settling = True  # a reader is copied from (or follows) a running writer: wait for it
            continue
        if step is None and not inst.is_writer and writer_up and obs.running and obs.upstream != wobs.address:
            step = Action("follow", inst.id, f"the writer {writer.id if writer else '?'} listens at {wobs.address}")
        if step is not None:
            actions.append(step)
            settling = settling or step.kind not in ("delete-instance", "follow")
    if writer is not None and writer_up and writer.id not in busy and not any(a.target == writer.id for a in actions):
        wanted = sync_standbys(instances, observed)
        if wobs.sync != wanted:
            names = ", ".join(sorted(wanted)) or "none (no reader streams)"
            actions.append(Action("sync", writer.id, f"synchronous standbys: {names}"))
    if not settling and cluster.status in _CLUSTER_SETTLES:
        target = _CLUSTER_SETTLES[cluster.status]
        actions.append(Action("cluster-status", cid, f"every instance is {target}", target))
    return actions


def sync_standbys(instances: Sequence[InstanceRecord], observed: Mapping[str, Observation]) -> frozenset[str]:
    """The readers the writer's commits should wait for (any one of them): those that run and stream.

    A reader is in from the moment it starts (before it streams: commits then wait until it or another
    catches up, rather than be acknowledged by the writer alone) and out once it stops, or has not streamed
    for a while (a reader that cannot follow must not stop every commit).
    """
    return frozenset(
        i.id
        for i in instances
        if not i.is_writer and i.status != DELETING and observed.get(i.id, NOT_RUNNING).sync_candidate
    )


def _failover(
    cluster: ClusterRecord, instances: Sequence[InstanceRecord], observed: Mapping[str, Observation]
) -> Action | None:
    if cluster.status == "failing-over":
        return Action("failover", cluster.id, "a failover was asked for")
    if not cluster.running:
        return None
    writer = next((i for i in instances if i.is_writer), None)
    if writer is None:
        return None
    readers_up = any(not i.is_writer and i.serving and observed.get(i.id, NOT_RUNNING).running for i in instances)
    if not readers_up:
        return None
    obs = observed.get(writer.id, NOT_RUNNING)
    if writer.status == DELETING:
        return Action("failover", cluster.id, f"the writer {writer.id} is being deleted")
    if not writer.serving:
        return None
    if not obs.running and obs.exit_code is not None:
        return Action("failover", cluster.id, f"the writer's postgres exited (code {obs.exit_code})")
    if obs.running and obs.failures >= HANG_PROBES:
        return Action("failover", cluster.id, f"the writer's postgres did not answer {obs.failures} probes")
    return None


def _instance_step(cluster: ClusterRecord, inst: InstanceRecord, obs: Observation) -> Action | None:
    iid = inst.id
    if inst.status == DELETING:
        return Action("delete-instance", iid, "the instance is being deleted")
    if not cluster.running:
        if obs.running:
            return Action("stop", iid, f"the cluster is {cluster.status}")
        if inst.status != "stopped":
            return Action("instance-status", iid, "its postgres is stopped", "stopped")
        return None
    if not (inst.should_run or inst.status == "stopped"):
        return None  # failed: left alone until the user reboots or deletes it
    if inst.get("paused"):  # auto-pause (the serverless scaler): its postgres stays stopped until woken
        return Action("pause", iid, "the instance is paused (auto-pause)") if obs.running else None
    if inst.status == "rebooting":
        return Action("restart", iid, "a reboot was asked for" if obs.running else "it rejoins as a reader")
    if not obs.running:
        if obs.exit_code is not None:
            why = f"postgres exited unexpectedly (code {obs.exit_code}); restarting it"
        elif inst.status == "creating":
            why = "a new instance"
        else:
            why = f"postgres is not running (status {inst.status})"
        return Action("start", iid, why)
    if inst.is_writer and not cluster.bootstrapped:
        return Action("bootstrap", iid, "the master user and database do not exist yet")
    if inst.is_writer and cluster.password_applied != cluster.password_version:
        return Action("apply-password", iid, "the master user's password changed")
    if inst.status != "available":
        return Action("instance-status", iid, "its postgres runs", "available")
    return None


class Executor:
    """Runs each action as a task, one at a time per key (an instance or a cluster)."""

    def __init__(self, on_done: Callable[[Action, BaseException | None], None]) -> None:
        self._on_done = on_done
        self._running: dict[str, tuple[Action, asyncio.Task[None]]] = {}

    @property
    def busy(self) -> frozenset[str]:
        """The keys with a step under way."""
        return frozenset(self._running)

    def running(self, key: str) -> Action | None:
        """The step under way on ``key``, if any."""
        entry = self._running.get(key)
        return None if entry is None else entry[0]

    def submit(self, action: Action, step: Callable[[], Awaitable[None]]) -> bool:
        """Start ``step`` for ``action`` unless its key is busy; True if started."""
        key = action.key()
        if key in self._running:
            return False
        task = asyncio.ensure_future(self._run(action, step))
        self._running[key] = (action, task)
        return True

    async def _run(self, action: Action, step: Callable[[], Awaitable[None]]) -> None:
        error: BaseException | None = None
        try:
            await step()
        except asyncio.CancelledError:
            error = None
            raise
        except Exception as exc:
            error = exc
        finally:
            self._running.pop(action.key(), None)
            try:
                self._on_done(action, error)
            except Exception:
                log.exception("after %s of %s", action.kind, action.target)

    async def cancel(self, key: str) -> None:
        """Cancel the step under way on ``key`` (a start that hangs, say) and wait until it has ended."""
        entry = self._running.get(key)
        if entry is not None:
            entry[1].cancel()
            await asyncio.gather(entry[1], return_exceptions=True)

    async def close(self) -> None:
        """Cancel every step and wait for them."""
        tasks = [t for _, t in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
