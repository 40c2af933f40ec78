"""The scaler: once a second, measure every running instance, decide its capacity, apply it, publish it.

One tick (rules):

1. On the event loop, take a snapshot of what runs: each instance with a started postgres (its postmaster's pid),
   its cluster's scaling range, its role and promotion tier. Nothing else reads the control plane.
2. In a worker thread (it reads /proc and writes cgroup files, which must not stall the loop):
   - a postmaster not seen before (a start, a restart, a new instance) gets the lowest capacity of its range,
     as Aurora resumes at low capacity, and its CPU counter starts again;
   - its process tree is moved into its cgroup (backends forked since the last tick join it);
   - its load is read (:class:`borealis.metrics.LoadMeter`) and appended to its recent samples;
   - ``decide`` gives the capacity; readers in promotion tiers 0-1 take the writer's capacity as a floor;
   - a new capacity is applied: the cgroup's CPU quota and memory limit, then the settings that follow capacity
     (written to the server's capacity file, then a reload);
   - the metrics are published: ServerlessDatabaseCapacity, ACUUtilization (capacity / MaxCapacity),
     CPUUtilization and FreeableMemory as AWS defines them for Serverless v2 (relative to MaxCapacity: CPU used
     over the CPU of MaxCapacity; memory of MaxCapacity less memory used), DatabaseConnections; and for each
     cluster the mean of its instances.
3. Every ``flush_every`` seconds the metric store writes its points (in a thread too).

Only ``db.serverless`` instances scale and get limits; others are measured and published only.
:meth:`Scaler.before_start` writes the capacity settings before a postgres starts, so ``shared_buffers`` and
``max_connections`` (sized for MaxCapacity) take effect on that start.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from borealis.engine import Cgroup, Cgroups, PostgresServer, process_tree
from borealis.metrics import MetricStore
from borealis.metrics._sampler import Load, LoadMeter

from ._autopause import AutoPause
from ._policy import ACU_CPU, ACU_MEMORY, DEFAULT_POLICY, Policy, Sample, Scaling, decide
from ._sizing import host_memory, limits_for, settings_for

__all__ = ["Scaler"]

log = logging.getLogger(__name__)

NAMESPACE = "AWS/RDS"
_HISTORY = 120  # samples kept per instance (seconds): more than the policy's longest window


@dataclass(frozen=True, slots=True)
class _Target:
    """What one tick needs to know about an instance, copied from the control plane on the loop."""

    instance: str
    cluster: str
    pid: int
    server: PostgresServer
    serverless: bool
    min: float
    max: float
    writer: bool
    reader_follows: bool


@dataclass
class _State:
    """What the scaler remembers about one instance between ticks."""

    pid: int
    capacity: float
    meter: LoadMeter
    cgroup: Cgroup | None
    samples: collections.deque[Sample] = field(default_factory=lambda: collections.deque(maxlen=_HISTORY))


class Scaler:
    """Capacity for every serverless instance of a control plane, and the AWS/RDS metrics of all of them."""

    def __init__(
        self,
        control: Any,
        store: MetricStore,
        cgroups: Cgroups,
        *,
        internal_users: frozenset[str],
        max_connections_for: Callable[[float], int],
        policy: Policy = DEFAULT_POLICY,
        interval: float = 1.0,
        flush_every: float = 10.0,
        autopause: AutoPause | None = None,
    ) -> None:
        """``control`` is the ControlPlane (clusters, cluster_instances, server); ``autopause`` pauses idle
        instances of clusters with MinCapacity 0 (their capacity then reads 0)."""
        self.autopause = autopause
        self.control = control
        self.store = store
        self.cgroups = cgroups
        self.internal_users = internal_users
        self.max_connections_for = max_connections_for
        self.policy = policy
        self.interval = interval
        self.flush_every = flush_every
        self.host_memory = host_memory()
        self._states: dict[str, _State] = {}
        self._published: dict[tuple[tuple[str, str], ...], int] = {}  # series dimensions -> last second written
        self._task: asyncio.Task[None] | None = None
        self._flushed = time.monotonic()
        self.ticks = 0

    # --------------------------------------------------------------------------------------- queries

    def capacity(self, instance_id: str) -> float | None:
        """The current capacity of an instance, None if the scaler does not know it (not running)."""
        state = self._states.get(instance_id)
        return None if state is None else state.capacity

    # --------------------------------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Start the loop (say once whether limits are enforced)."""
        if self.cgroups.enabled:
            log.info("%s", self.cgroups.describe())
        else:
            log.warning("%s", self.cgroups.describe())
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop the loop, flush the metrics, remove the groups of servers that are gone."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.store.flush)
        for iid in list(self._states):
            self._forget(iid)
        self.cgroups.close()

    def before_start(self, cluster: dict[str, Any], inst: dict[str, Any], server: PostgresServer) -> None:
        """Write the capacity settings of a postgres about to start (its lowest capacity, its MaxCapacity)."""
        if inst.get("instance_class") != "db.serverless":
            return
        low, high = self._range(cluster)
        with contextlib.suppress(OSError):
            server.set_capacity_settings(self._settings(low, high))

    # --------------------------------------------------------------------------------------- the loop

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            try:
                targets = self._targets()
                paused = self._paused()
                activity = await asyncio.to_thread(self._tick, targets, paused, time.time())
                if self.autopause is not None:
                    now = time.monotonic()
                    for iid, active in activity.items():
                        self.autopause.observe(iid, active, now)
                    await self.autopause.step(now)
                self.ticks += 1
                if time.monotonic() - self._flushed >= self.flush_every:
                    self._flushed = time.monotonic()
                    await asyncio.to_thread(self.store.flush)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad tick (a server vanishing mid-read) must not stop scaling
                log.exception("scaler tick failed")
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a loaded machine): skip, do not burst
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    @staticmethod
    def _range(cluster: dict[str, Any]) -> tuple[float, float]:
        scaling = cluster.get("scaling") or {}
        return max(0.5, float(scaling.get("min", 0.5))), float(scaling.get("max", 16.0))

    def _targets(self) -> list[_Target]:
        targets = []
        for cluster in list(self.control.clusters.values()):
            low, high = self._range(cluster)
            for inst in self.control.cluster_instances(cluster["id"]):
                server = self.control.server(inst["id"])
                if server is None:
                    continue
                status = server.status()
                if not status.running or status.pid is None:
                    continue
                targets.append(
                    _Target(
                        instance=inst["id"],
                        cluster=cluster["id"],
                        pid=status.pid,
                        server=server,
                        serverless=inst.get("instance_class") == "db.serverless",
                        min=low,
                        max=high,
                        writer=inst.get("role") == "writer",
                        reader_follows=inst.get("role") == "reader" and int(inst.get("promotion_tier", 1)) <= 1,
                    )
                )
        return targets

    def _paused(self) -> list[tuple[str, str]]:
        """(instance, cluster) of every paused instance."""
        if self.autopause is None:
            return []
        return [
            (inst["id"], cluster["id"])
            for cluster in list(self.control.clusters.values())
            for inst in self.control.cluster_instances(cluster["id"])
            if self.autopause.held(inst["id"])
        ]

    def _tick(self, targets: list[_Target], paused: list[tuple[str, str]], now: float) -> dict[str, bool]:
        """Measure, scale and publish every target; returns which instances had user activity."""
        activity: dict[str, bool] = {}
        running = {t.instance for t in targets}
        for iid in [i for i in self._states if i not in running]:
            self._forget(iid)
        writers = {t.cluster: t.instance for t in targets if t.writer}
        by_cluster: dict[str, list[dict[str, float]]] = {}
        # Writers first, so a following reader sees this tick's writer capacity.
        for target in sorted(targets, key=lambda t: t.reader_follows):
            try:
                values, active = self._scale(target, now, writers)
            except (OSError, ValueError) as exc:
                log.debug("scaling %s: %s", target.instance, exc)
                continue
            activity[target.instance] = active
            by_cluster.setdefault(target.cluster, []).append(values)
            self._publish({"DBInstanceIdentifier": target.instance}, values, now)
        for iid, cid in paused:  # AWS: a paused instance reports capacity, ACU and CPU utilization 0
            zero = {"ServerlessDatabaseCapacity": 0.0, "ACUUtilization": 0.0, "CPUUtilization": 0.0}
            by_cluster.setdefault(cid, []).append(zero)
            self._publish({"DBInstanceIdentifier": iid}, zero, now)
        for cid, rows in by_cluster.items():
            mean = {name: sum(r[name] for r in rows) / len(rows) for name in rows[0] if all(name in r for r in rows)}
            self._publish({"DBClusterIdentifier": cid}, mean, now)
        return activity

    def _scale(self, target: _Target, now: float, writers: dict[str, str]) -> tuple[dict[str, float], bool]:
        state = self._states.get(target.instance)
        if state is None or state.pid != target.pid:
            if state is not None:
                self._forget(target.instance)
            cgroup = self.cgroups.group(target.instance) if target.serverless else None
            state = _State(target.pid, target.min, LoadMeter(self.internal_users), cgroup)
            self._states[target.instance] = state
            self._apply(target, state, target.min)
        if state.cgroup is not None:
            state.cgroup.adopt(process_tree(target.pid))
        load = state.meter.read(target.pid, state.cgroup)
        state.samples.append(Sample(now, load.cpu, load.memory, load.connections, state.capacity))
        if target.serverless:
            floor = 0.0
            writer = writers.get(target.cluster)
            if target.reader_follows and writer is not None and writer in self._states:
                floor = self._states[writer].capacity
            capacity = decide(state.samples, Scaling(target.min, target.max, floor), now, self.policy)
            if capacity != state.capacity:
                log.debug("%s: %.1f -> %.1f ACUs", target.instance, state.capacity, capacity)
                self._apply(target, state, capacity)
        return self._values(target, state, load), load.active > 0

    def _settings(self, capacity: float, max_capacity: float) -> dict[str, str]:
        return settings_for(capacity, max_capacity, self.max_connections_for(max_capacity), self.host_memory)

    def _apply(self, target: _Target, state: _State, capacity: float) -> None:
        state.capacity = capacity
        if not target.serverless:
            return
        if state.cgroup is not None:
            state.cgroup.apply(limits_for(capacity))
        target.server.set_capacity_settings(self._settings(capacity, target.max))
        os.kill(target.pid, signal.SIGHUP)  # reload; what needs a restart waits for the next one

    def _values(self, target: _Target, state: _State, load: Load) -> dict[str, float]:
        values = {"CPUUtilization": 0.0, "DatabaseConnections": float(load.connections)}
        if target.serverless:
            values["ServerlessDatabaseCapacity"] = state.capacity
            values["ACUUtilization"] = state.capacity / target.max * 100
            values["CPUUtilization"] = min(100.0, load.cpu / (target.max * ACU_CPU) * 100)
            values["FreeableMemory"] = max(0.0, target.max * ACU_MEMORY - load.memory)
        else:
            values["CPUUtilization"] = min(100.0, load.cpu / (os.cpu_count() or 1) * 100)
        return values

    _UNITS = {
        "ServerlessDatabaseCapacity": "Count",
        "ACUUtilization": "Percent",
        "CPUUtilization": "Percent",
        "FreeableMemory": "Bytes",
        "DatabaseConnections": "Count",
    }

    def _publish(self, dims: dict[str, str], values: dict[str, float], now: float) -> None:
        """Write one tick's values, at most one per series and second: the store keeps the mean of a second's
        values, and a tick that comes late after a stall would otherwise share its second with the previous
        one, turning, say, capacities 1 and 1.5 into a 1.25 ACU that was never set (the next tick writes it)."""
        key, second = tuple(sorted(dims.items())), int(now)
        if self._published.get(key) == second:
            return
        self._published[key] = second
        for name, value in values.items():
            self.store.put(NAMESPACE, name, dims, value, self._UNITS[name], now)

    def _forget(self, iid: str) -> None:
        self._published.pop((("DBInstanceIdentifier", iid),), None)
        state = self._states.pop(iid, None)
        if state is not None and state.cgroup is not None:
            state.cgroup.remove()  # fails quietly while processes remain; a later start reuses it
