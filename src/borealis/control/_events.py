"""The event log (DescribeEvents): what happened to clusters and instances, with AWS's ids and categories.

Events are kept in the store (table ``events``) for 14 days, as RDS keeps them, keyed by time so they list
in order. Each kind below is one of AWS's documented events (Amazon RDS event categories and event messages
for Aurora) with the message RDS shows; ``{}`` fields are filled in when the event is recorded.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from borealis.store import Store

__all__ = ["EventKind", "EventLog", "Kinds"]

RETENTION = 14 * 24 * 3600.0
"""Seconds an event is kept (RDS keeps 14 days)."""


@dataclass(frozen=True, slots=True)
class EventKind:
    """One of AWS's documented events."""

    event_id: str
    source_type: str
    categories: tuple[str, ...]
    message: str


class Kinds:
    """The events Borealis records, by what happened."""

    CLUSTER_CREATED = EventKind("RDS-EVENT-0170", "db-cluster", ("creation",), "DB cluster created")
    CLUSTER_STOPPED = EventKind("RDS-EVENT-0150", "db-cluster", ("notification",), "DB cluster stopped")
    CLUSTER_STARTED = EventKind("RDS-EVENT-0151", "db-cluster", ("notification",), "DB cluster started")
    FAILOVER_STARTED = EventKind(
        "RDS-EVENT-0073", "db-cluster", ("failover",), "Started cross AZ failover to DB instance: {}"
    )
    FAILOVER_FINISHED = EventKind(
        "RDS-EVENT-0071", "db-cluster", ("failover",), "Completed failover to DB instance: {}"
    )
    FAILOVER_FAILED = EventKind("RDS-EVENT-0069", "db-cluster", ("failover",), "Failover failed: {}")
    INSTANCE_CREATED = EventKind("RDS-EVENT-0005", "db-instance", ("creation",), "DB instance created")
    INSTANCE_DELETED = EventKind("RDS-EVENT-0003", "db-instance", ("deletion",), "DB instance deleted")
    INSTANCE_RESTARTED = EventKind("RDS-EVENT-0006", "db-instance", ("availability",), "DB instance restarted")
    INSTANCE_SHUTDOWN = EventKind("RDS-EVENT-0004", "db-instance", ("availability",), "DB instance shutdown")
    INSTANCE_STOPPED = EventKind("RDS-EVENT-0087", "db-instance", ("notification",), "DB instance stopped")
    INSTANCE_STARTED = EventKind("RDS-EVENT-0088", "db-instance", ("notification",), "DB instance started")
    INSTANCE_REJOINED = EventKind(
        "RDS-EVENT-0006",
        "db-instance",
        ("availability",),
        "A new writer was promoted. Restarting database as a reader.",
    )


class EventLog:
    """Events in the store, oldest first."""

    def __init__(self, store: Store, region: str, account: str) -> None:
        self.table = store.table("events")
        self.region = region
        self.account = account
        self._seq = itertools.count()
        self._next_prune = 0.0

    def record(self, kind: EventKind, source_id: str, *args: Any) -> dict[str, Any]:
        """Write one event about ``source_id`` (a cluster or instance id) now."""
        now = time.time()
        resource = "cluster" if kind.source_type == "db-cluster" else "db"
        doc = {
            "date": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
            "at": now,
            "source_type": kind.source_type,
            "source_id": source_id,
            "categories": list(kind.categories),
            "message": kind.message.format(*args),
            "event_id": kind.event_id,
            "arn": f"arn:aws:rds:{self.region}:{self.account}:{resource}:{source_id}",
        }
        self.table.put(f"{time.time_ns():020d}-{next(self._seq):06d}", doc)
        if now >= self._next_prune:
            self._next_prune = now + 3600
            for key, old in self.table.items():
                if old.get("at", now) < now - RETENTION:
                    self.table.delete(key)
        return doc

    def query(
        self,
        *,
        source_type: str | None = None,
        source_id: str | None = None,
        start: float | None = None,
        end: float | None = None,
        categories: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """The events that match every condition given, oldest first."""
        wanted = set(categories)
        return [
            d
            for d in self.table.values()
            if (source_type is None or d["source_type"] == source_type)
            and (source_id is None or d["source_id"] == source_id)
            and (start is None or d["at"] >= start)
            and (end is None or d["at"] <= end)
            and (not wanted or wanted & set(d["categories"]))
        ]
