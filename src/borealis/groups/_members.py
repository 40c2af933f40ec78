"""Which groups a cluster or an instance uses, kept apart from the control plane's records.

One document per cluster (``cluster/ID``: subnet group, cluster parameter group) and per instance
(``instance/ID``: DB parameter group). A membership whose cluster or instance is gone does not count, so a
deletion needs no clean-up here, and a resource made again under the same name is recorded afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from borealis.store import Store

__all__ = ["Memberships"]


class Memberships:
    """Cluster and instance memberships of groups."""

    def __init__(
        self, store: Store, cluster_exists: Callable[[str], bool], instance_exists: Callable[[str], bool]
    ) -> None:
        self.table = store.table("rds_memberships")
        self._exists = {"cluster": cluster_exists, "instance": instance_exists}

    def get(self, kind: str, ident: str) -> dict[str, Any]:
        """The groups ``kind`` (cluster or instance) ``ident`` uses, as recorded ({} if none)."""
        return dict(self.table.get(f"{kind}/{ident}") or {})

    def set(self, kind: str, ident: str, **names: str) -> None:
        """Record groups for a cluster or instance (merged into what is there)."""
        doc = self.get(kind, ident)
        doc.update(names)
        self.table.put(f"{kind}/{ident}", doc)

    def reset(self, kind: str, ident: str) -> None:
        """Forget what a cluster or instance used (it is being created anew)."""
        self.table.delete(f"{kind}/{ident}")

    def users(self, kind: str, field: str, name: str) -> list[str]:
        """The existing clusters or instances whose ``field`` is ``name``."""
        prefix = f"{kind}/"
        return sorted(
            key[len(prefix) :]
            for key, doc in self.table.items()
            if key.startswith(prefix) and doc.get(field) == name and self._exists[kind](key[len(prefix) :])
        )
