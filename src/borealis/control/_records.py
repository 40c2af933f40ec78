"""Typed records of clusters and instances, their statuses, and the transitions between statuses.

The store keeps JSON documents (``borealis.store``); these frozen records are what the control plane works
with. ``from_doc`` / ``to_doc`` convert, keeping every field this module does not name in ``extra``, so a
field another part adds (tags, a setting) survives a round trip untouched. A record carries the store
revision it was read at, so a write back can be a compare-and-set.

Status rules (AWS's status strings, as DescribeDBClusters / DescribeDBInstances show them):

- A transitional status (``creating``, ``starting``, ``stopping``, ``rebooting``, ``failing-over``...) is
  written by an API call or the reconciler *before* the work; the reconciler moves it to a resting status
  (``available``, ``stopped``, ``failed``) when the work is done, or removes the record after ``deleting``.
- Every move is checked against the tables below (``CLUSTER_TRANSITIONS``, ``INSTANCE_TRANSITIONS``): a move
  not listed raises :class:`InvalidTransition`. Writing the same status again is always allowed, and
  ``deleting`` is reachable from every status (a record can always be deleted; the API decides when).
- One set says where postgres serves clients (:data:`SERVING`), one where it should be running
  (:data:`SHOULD_RUN`): every caller asks these instead of keeping its own list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CLUSTER_TRANSITIONS",
    "DELETING",
    "INSTANCE_TRANSITIONS",
    "READER",
    "SERVING",
    "SHOULD_RUN",
    "TRANSITIONAL",
    "WRITER",
    "ClusterRecord",
    "InstanceRecord",
    "InvalidTransition",
    "check_transition",
]

WRITER: Final = "writer"
READER: Final = "reader"
DELETING: Final = "deleting"

# status -> the statuses it may move to (besides itself and "deleting").
CLUSTER_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    "creating": frozenset({"available", "failed"}),
    "available": frozenset(
        {"modifying", "resetting-master-credentials", "stopping", "failing-over", "backing-up", "failed"}
    ),
    "modifying": frozenset({"available", "failed"}),
    "resetting-master-credentials": frozenset({"available", "failed"}),
    "backing-up": frozenset({"available", "failed"}),
    "failing-over": frozenset({"available", "failed"}),
    "stopping": frozenset({"stopped", "failed"}),
    "stopped": frozenset({"starting"}),
    "starting": frozenset({"available", "failed"}),
    "failed": frozenset({"available", "starting"}),
    "incompatible-parameters": frozenset({"available"}),
    DELETING: frozenset(),
}

INSTANCE_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    "creating": frozenset({"available", "failed", "stopping", "stopped"}),
    "available": frozenset({"rebooting", "modifying", "stopping", "stopped", "starting", "failed"}),
    "modifying": frozenset({"available", "failed"}),
    "rebooting": frozenset({"available", "failed", "stopping", "stopped"}),
    "stopping": frozenset({"stopped", "failed"}),
    "stopped": frozenset({"starting", "available"}),
    "starting": frozenset({"available", "failed", "stopping", "stopped"}),
    "failed": frozenset({"rebooting", "starting", "available", "stopping", "stopped"}),
    DELETING: frozenset(),
}

SERVING: Final = frozenset({"available", "modifying", "backing-up", "configuring-log-exports", "upgrading"})
"""Instance statuses in which its postgres serves clients (the endpoints route to it)."""

SHOULD_RUN: Final = SERVING | frozenset({"creating", "rebooting", "starting"})
"""Instance statuses in which its postgres should be running (the reconciler starts it if it is not)."""

TRANSITIONAL: Final = frozenset(
    {"creating", "starting", "stopping", "rebooting", "modifying", "resetting-master-credentials", "failing-over"}
)
"""Statuses that say work is under way; the reconciler moves each to a resting status."""


class InvalidTransition(Exception):
    """A status change the transition table does not allow (a bug in the caller: it should have checked)."""


def check_transition(table: Mapping[str, frozenset[str]], kind: str, old: str, new: str) -> None:
    """Raise :class:`InvalidTransition` unless ``table`` lets a ``kind`` move from ``old`` to ``new``."""
    if new in (old, DELETING):
        return
    if new not in table:
        raise InvalidTransition(f"{kind}: unknown status {new!r}")
    if new not in table.get(old, frozenset()):
        raise InvalidTransition(f"{kind}: cannot move from {old!r} to {new!r}")


def _split(doc: Mapping[str, Any], names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    known = {k: doc[k] for k in names if k in doc}
    extra = {k: v for k, v in doc.items() if k not in names}
    return known, extra


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """A DB cluster as the control plane sees it."""

    id: str
    status: str
    port: int
    reader_host: str = "127.0.0.2"
    reader_port: int = 0
    bootstrapped: bool = False
    password_version: int = 0
    password_applied: int = -1
    extra: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 0

    _FIELDS = ("id", "status", "port", "reader_host", "reader_port", "bootstrapped", "password_version",
               "password_applied")  # fmt: skip

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], revision: int = 0) -> ClusterRecord:
        """The record of a stored document."""
        known, extra = _split(doc, cls._FIELDS)
        known.setdefault("reader_port", known.get("port", 0))
        return cls(**known, extra=extra, revision=revision)

    def to_doc(self) -> dict[str, Any]:
        """The JSON document to store."""
        doc = dict(self.extra)
        for name in self._FIELDS:
            doc[name] = getattr(self, name)
        return doc

    def get(self, name: str, default: Any = None) -> Any:
        """A stored field this record does not type (``database_name``, ``scaling``...)."""
        return self.extra.get(name, default)

    def moved_to(self, status: str) -> ClusterRecord:
        """This record with ``status``, if the transition table allows the move."""
        check_transition(CLUSTER_TRANSITIONS, f"cluster {self.id}", self.status, status)
        return dataclasses.replace(self, status=status)

    @property
    def running(self) -> bool:
        """Whether the cluster's instances should run (it is neither stopped nor on its way there)."""
        return self.status not in ("stopping", "stopped", DELETING)


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A DB instance as the control plane sees it; ``role`` is the one it should have (writer or reader)."""

    id: str
    cluster: str
    status: str
    role: str
    port: int
    promotion_tier: int = 1
    instance_class: str = "db.serverless"
    pg_port: int | None = None
    """Where its postgres listened when last started (the API workers read it)."""
    pg_socket: str | None = None
    """Its postgres's unix socket directory when last started."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 0

    _FIELDS = ("id", "cluster", "status", "role", "port", "promotion_tier", "instance_class", "pg_port", "pg_socket")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], revision: int = 0) -> InstanceRecord:
        """The record of a stored document."""
        known, extra = _split(doc, cls._FIELDS)
        return cls(**known, extra=extra, revision=revision)

    def to_doc(self) -> dict[str, Any]:
        """The JSON document to store."""
        doc = dict(self.extra)
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:  # runtime fields are absent until known
                doc[name] = value
        return doc

    def get(self, name: str, default: Any = None) -> Any:
        """A stored field this record does not type."""
        return self.extra.get(name, default)

    def moved_to(self, status: str) -> InstanceRecord:
        """This record with ``status``, if the transition table allows the move."""
        check_transition(INSTANCE_TRANSITIONS, f"instance {self.id}", self.status, status)
        return dataclasses.replace(self, status=status)

    @property
    def is_writer(self) -> bool:
        """Whether this instance is (meant to be) its cluster's writer."""
        return self.role == WRITER

    @property
    def should_run(self) -> bool:
        """Whether its postgres should be running, by its status alone."""
        return self.status in SHOULD_RUN

    @property
    def serving(self) -> bool:
        """Whether its status lets clients be routed to it."""
        return self.status in SERVING
