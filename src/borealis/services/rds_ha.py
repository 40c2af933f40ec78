"""RDS operations of high availability: FailoverDBCluster (more to come: the cluster endpoints).

The control plane owns the rules (``ControlPlane.request_failover``); this module maps its refusals to the
AWS error codes and renders the cluster as DescribeDBClusters does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane, FailoverRefused

__all__ = ["handlers"]


def handlers(control: ControlPlane, render_cluster: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Handler]:
    """FailoverDBCluster, rendering the cluster with ``render_cluster`` (the rds module's DBCluster)."""

    def _key(ident: str) -> str:
        return ident.rsplit(":", 1)[-1].lower() if ident.startswith("arn:") else ident.lower()

    async def failover_db_cluster(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        cid = _key(p["DBClusterIdentifier"])
        target = p.get("TargetDBInstanceIdentifier")
        try:
            control.request_failover(cid, _key(target) if target else None)
        except FailoverRefused as exc:
            raise AWSError(exc.code, exc.message) from None
        doc = control.cluster(cid)
        assert doc is not None
        return {"DBCluster": render_cluster(doc)}

    return {"FailoverDBCluster": failover_db_cluster}
