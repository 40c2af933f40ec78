"""RDS operations that describe what exists beyond clusters and instances: global clusters (none yet).

Terraform's aws_rds_cluster reads DescribeGlobalClusters on every refresh to learn whether the cluster is a
member of a global database; Borealis has no global databases, so the answer is an empty list (and a named
one is not found).
"""

from __future__ import annotations

from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.services._describe import filtered, paged

__all__ = ["handlers"]


class _Catalog:
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def describe_global_clusters(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("GlobalClusterIdentifier"):
            raise AWSError("GlobalClusterNotFoundFault", f"Global cluster {p['GlobalClusterIdentifier']} not found.")
        docs = filtered([], p, {"global-cluster-id": lambda d: d["id"], "engine": lambda d: d["engine"]})
        return paged("GlobalClusters", docs, p)


def handlers(control: ControlPlane) -> dict[str, Handler]:
    """The catalog operations, by operation name (merged into the rds service)."""
    api = _Catalog(control)
    return {
        "DescribeGlobalClusters": api.describe_global_clusters,
    }
