"""RDS operations of high availability: FailoverDBCluster, the cluster endpoints, DescribeEvents,
DescribeEventCategories.

The control plane owns the rules (``ControlPlane.request_failover``, ``control.endpoints``); this module maps
their refusals to the AWS error codes and renders the shapes of botocore's model. DescribeDBClusterEndpoints
lists every cluster's WRITER and READER endpoints before its CUSTOM ones, as AWS does.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane, FailoverRefused
from borealis.control._endpoints import EndpointError
from borealis.services._describe import filtered, paged
from borealis.services._params import key as _key

__all__ = ["EVENT_CATEGORIES", "handlers"]

EVENT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "db-instance": (
        "availability",
        "backup",
        "configuration change",
        "creation",
        "deletion",
        "failover",
        "failure",
        "low storage",
        "maintenance",
        "notification",
        "read replica",
        "recovery",
        "restoration",
        "security",
        "security patching",
    ),
    "db-cluster": (
        "configuration change",
        "creation",
        "deletion",
        "failover",
        "failure",
        "global-failover",
        "maintenance",
        "migration",
        "notification",
        "serverless",
    ),
    "db-parameter-group": ("configuration change",),
    "db-security-group": ("configuration change", "failure"),
    "db-snapshot": ("creation", "deletion", "notification", "restoration"),
    "db-cluster-snapshot": ("backup", "creation", "deletion", "notification"),
    "db-proxy": ("configuration change", "creation", "deletion"),
}
"""DescribeEventCategories: the categories of each source type, as the Aurora User Guide's "Amazon RDS event
categories and event messages for Aurora" lists them (the categories of every event Borealis records are among
them, which tests/pure check)."""


class _Ha:
    def __init__(self, control: ControlPlane, render_cluster: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.control = control
        self.render_cluster = render_cluster
        self.region = control.settings.region
        self.account = control.settings.account_id

    def _cluster(self, ident: str) -> dict[str, Any]:
        doc = self.control.cluster(_key(ident))
        if doc is None:
            raise AWSError("DBClusterNotFoundFault", f"DBCluster {ident} not found.")
        return doc

    def _instances(self, cluster_id: str) -> list[str]:
        return [i["id"] for i in self.control.cluster_instances(cluster_id) if i["status"] != "deleting"]

    async def failover_db_cluster(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        cid = _key(p["DBClusterIdentifier"])
        target = p.get("TargetDBInstanceIdentifier")
        try:
            self.control.request_failover(cid, _key(target) if target else None)
        except FailoverRefused as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBCluster": self.render_cluster(self._cluster(cid))}

    # -- endpoints -------------------------------------------------------------------------------------

    def render(self, doc: dict[str, Any]) -> dict[str, Any]:
        if doc.get("builtin"):
            return {k: v for k, v in doc.items() if k != "builtin"}
        return {
            "DBClusterEndpointIdentifier": doc["id"],
            "DBClusterIdentifier": doc["cluster"],
            "DBClusterEndpointResourceIdentifier": doc["resource_id"],
            "Endpoint": doc["host"],
            "Status": doc["status"],
            "EndpointType": "CUSTOM",
            "CustomEndpointType": doc["type"],
            "StaticMembers": doc["static"],
            "ExcludedMembers": doc["excluded"],
            "DBClusterEndpointArn": f"arn:aws:rds:{self.region}:{self.account}:cluster-endpoint:{doc['id']}",
        }

    def _builtin(self, cluster: dict[str, Any]) -> list[dict[str, Any]]:
        status = "available" if cluster["status"] not in ("creating", "deleting") else cluster["status"]
        rid = str(cluster.get("resource_id", cluster["id"])).replace("cluster-", "cluster-endpoint-", 1)
        return [
            {
                "builtin": True,
                "DBClusterEndpointIdentifier": cluster["id"],
                "DBClusterIdentifier": cluster["id"],
                "DBClusterEndpointResourceIdentifier": rid,
                "Endpoint": host,
                "Status": status,
                "EndpointType": kind,
            }
            for kind, host in (("WRITER", self.control.settings.host), ("READER", cluster["reader_host"]))
        ]

    async def create(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(p["DBClusterIdentifier"])
        try:
            doc = self.control.endpoints.create(
                cluster,
                self._instances(cluster["id"]),
                p["DBClusterEndpointIdentifier"],
                p["EndpointType"],
                p.get("StaticMembers"),
                p.get("ExcludedMembers"),
                [{"Key": t["Key"], "Value": t.get("Value", "")} for t in p.get("Tags") or []],
            )
        except EndpointError as exc:
            raise AWSError(exc.code, exc.message) from None
        self.control.kick(cluster["id"])
        return self.render(doc)

    async def modify(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        try:
            doc = self.control.endpoints.get(p["DBClusterEndpointIdentifier"])
            doc = self.control.endpoints.modify(
                doc["id"],
                self._instances(doc["cluster"]),
                p.get("EndpointType"),
                p.get("StaticMembers"),
                p.get("ExcludedMembers"),
            )
        except EndpointError as exc:
            raise AWSError(exc.code, exc.message) from None
        self.control.kick(doc["cluster"])
        return self.render(doc)

    async def delete(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        try:
            doc = self.control.endpoints.delete(p["DBClusterEndpointIdentifier"])
        except EndpointError as exc:
            raise AWSError(exc.code, exc.message) from None
        self.control.kick(doc["cluster"])
        return self.render(doc)

    async def describe(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("DBClusterIdentifier"):
            clusters = [self._cluster(p["DBClusterIdentifier"])]
        else:
            clusters = self.control.clusters.values()
        docs: list[dict[str, Any]] = []
        for cluster in clusters:
            docs += self._builtin(cluster) + self.control.endpoints.of(cluster["id"])
        wanted = p.get("DBClusterEndpointIdentifier")
        if wanted:
            docs = [d for d in docs if not d.get("builtin") and d["id"] == wanted.lower()]
            if not docs:
                raise AWSError("DBClusterEndpointNotFoundFault", f"DBClusterEndpoint {wanted} not found.")
        rendered = [self.render(d) for d in docs]
        # Filter values match in any letter case (AWS's endpoint types are upper case, its statuses lower).
        filters = [{**f, "Values": [v.lower() for v in f.get("Values") or []]} for f in p.get("Filters") or []]
        rendered = filtered(
            rendered,
            {**p, "Filters": filters},
            {
                "db-cluster-endpoint-type": lambda d: str(d["EndpointType"]).lower(),
                "db-cluster-endpoint-custom-type": lambda d: str(d.get("CustomEndpointType", "")).lower(),
                "db-cluster-endpoint-id": lambda d: str(d["DBClusterEndpointIdentifier"]).lower(),
                "db-cluster-endpoint-status": lambda d: str(d["Status"]).lower(),
            },
        )
        return paged("DBClusterEndpoints", rendered, p)

    # -- events --------------------------------------------------------------------------------------------

    async def describe_events(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        """DescribeEvents: the past hour by default (Duration minutes, or StartTime/EndTime)."""
        source_id, source_type = p.get("SourceIdentifier"), p.get("SourceType")
        if source_id and not source_type:
            raise AWSError(
                "InvalidParameterCombination", "When SourceIdentifier is supplied, SourceType must also be provided."
            )
        now = time.time()
        end = p["EndTime"].timestamp() if p.get("EndTime") else now
        start = p["StartTime"].timestamp() if p.get("StartTime") else end - 60.0 * int(p.get("Duration") or 60)
        events = self.control.events.query(
            source_type=source_type,
            source_id=source_id.lower() if source_id else None,
            start=start,
            end=end,
            categories=p.get("EventCategories") or (),
        )
        return paged(
            "Events",
            events,
            p,
            lambda d: {
                "SourceIdentifier": d["source_id"],
                "SourceType": d["source_type"],
                "Message": d["message"],
                "EventCategories": d["categories"],
                "Date": dt.datetime.fromisoformat(d["date"]),
                "SourceArn": d["arn"],
            },
        )


async def describe_event_categories(ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
    """DescribeEventCategories: every source type's categories, or one source type's (Filters: not supported,
    as on AWS)."""
    source_type = p.get("SourceType")
    if source_type is not None and source_type not in EVENT_CATEGORIES:
        raise AWSError(
            "InvalidParameterValue",
            f"Invalid SourceType: {source_type}. Valid values: {', '.join(EVENT_CATEGORIES)}.",
        )
    return {
        "EventCategoriesMapList": [
            {"SourceType": kind, "EventCategories": list(categories)}
            for kind, categories in EVENT_CATEGORIES.items()
            if source_type is None or kind == source_type
        ]
    }


def handlers(control: ControlPlane, render_cluster: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Handler]:
    """FailoverDBCluster and the cluster-endpoint operations (``render_cluster``: the rds module's DBCluster)."""
    ha = _Ha(control, render_cluster)
    return {
        "FailoverDBCluster": ha.failover_db_cluster,
        "CreateDBClusterEndpoint": ha.create,
        "DescribeDBClusterEndpoints": ha.describe,
        "ModifyDBClusterEndpoint": ha.modify,
        "DeleteDBClusterEndpoint": ha.delete,
        "DescribeEvents": ha.describe_events,
        "DescribeEventCategories": describe_event_categories,
    }
