"""The RDS resources beyond clusters, instances and proxies, wired into the rds service in one place.

:func:`extend` takes the rds handlers (clusters, instances, proxies) and returns them with the operations of
subnet groups, tags and the catalog added, and with cluster and instance operations wrapped so that

- the groups a request names are checked before the operation runs (an unknown one is the group's
  not-found fault, and nothing is created), then remembered for the cluster;
- every DBCluster and DBInstance in an output carries the group members (``DBSubnetGroup``).

The wrapping keeps these resources out of services/rds.py and the control plane's records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.groups import SubnetGroups
from borealis.proxy import ProxyRegistry
from borealis.services import rds_catalog, rds_subnet_groups, rds_tags
from borealis.services.rds_tags import Found

__all__ = ["extend"]

Doc = dict[str, Any]


def _lookups(control: ControlPlane, registry: ProxyRegistry, subnets: SubnetGroups) -> dict[str, rds_tags.Lookup]:
    def cluster(name: str) -> Found:
        doc = control.cluster(name.lower())
        if doc is None:
            raise AWSError("DBClusterNotFoundFault", f"DBCluster {name} not found.")
        return doc, lambda d: control.clusters.put(d["id"], d)

    def instance(name: str) -> Found:
        doc = control.instance(name.lower())
        if doc is None:
            raise AWSError("DBInstanceNotFoundFault", f"DBInstance {name} not found.")
        return doc, lambda d: control.instances.put(d["id"], d)

    def proxy(name: str) -> Found:
        for doc in registry.proxies.values():
            if f"prx-{doc['resource_id']}" == name:
                return doc, lambda d: registry.proxies.put(d["name"], d)
        raise AWSError("DBProxyNotFoundFault", f"DBProxy {name} not found.", 404)

    def proxy_endpoint(name: str) -> Found:
        for doc in registry.endpoints.values():
            if f"prx-endpoint-{doc['resource_id']}" == name:
                return doc, lambda d: registry.endpoints.put(d["name"], d)
        raise AWSError("DBProxyEndpointNotFoundFault", f"DBProxyEndpoint {name} not found.", 404)

    def target_group(name: str) -> Found:
        for doc in registry.proxies.values():
            if f"prx-tg-{doc['target_group']['resource_id']}" == name:
                return doc["target_group"], lambda d, owner=doc: registry.proxies.put(owner["name"], owner)
        raise AWSError("DBProxyTargetGroupNotFoundFault", f"DBProxyTargetGroup {name} not found.", 404)

    def subnet_group(name: str) -> Found:
        return subnets.get(name), subnets.save

    return {
        "cluster": cluster,
        "db": instance,
        "db-proxy": proxy,
        "db-proxy-endpoint": proxy_endpoint,
        "target-group": target_group,
        "subgrp": subnet_group,
    }


class _Members:
    """What the wrapped cluster and instance operations add: group checks before, group members after."""

    def __init__(self, control: ControlPlane, subnets: SubnetGroups, account: str) -> None:
        self.control = control
        self.subnets = subnets
        self.account = account

    def before(self, operation: str, p: Doc) -> Callable[[Doc], None] | None:
        """Check the request's groups; returns what to record once the operation succeeded."""
        if operation == "CreateDBCluster":
            subnet = self.subnets.get(p["DBSubnetGroupName"])["name"] if p.get("DBSubnetGroupName") else "default"
            ident = str(p["DBClusterIdentifier"]).lower()
            return lambda out: self.subnets.set_membership(ident, subnet_group=subnet)
        if operation == "CreateDBInstance" and p.get("DBSubnetGroupName") and p.get("DBClusterIdentifier"):
            wanted = self.subnets.get(p["DBSubnetGroupName"])["name"]
            cluster_id = str(p["DBClusterIdentifier"]).lower()
            if self.control.cluster(cluster_id) is not None:
                used = self.subnets.membership(cluster_id)["subnet_group"]
                if wanted != used:
                    raise AWSError(
                        "InvalidParameterCombination",
                        f"The DB subnet group {wanted} of the instance must be the one of its DB cluster ({used}).",
                    )
        return None

    def cluster(self, out: Doc) -> None:
        out["DBSubnetGroup"] = self.subnets.membership(out["DBClusterIdentifier"])["subnet_group"]

    def instance(self, out: Doc) -> None:
        cluster_id = out.get("DBClusterIdentifier")
        name = self.subnets.membership(cluster_id)["subnet_group"] if cluster_id else "default"
        group = self.subnets.get(name)
        out["DBSubnetGroup"] = rds_subnet_groups.render_subnet_group(self.subnets, self.account, group)

    def after(self, result: Doc) -> None:
        """Fill the members of every DBCluster and DBInstance in an output."""
        for key, fill in (("DBCluster", self.cluster), ("DBInstance", self.instance)):
            if isinstance(result.get(key), dict):
                fill(result[key])
            for item in result.get(key + "s") or []:
                fill(item)


def _wrap(operation: str, handler: Handler, members: _Members) -> Handler:
    async def wrapped(ctx: RequestContext, p: Doc) -> Doc:
        record = members.before(operation, p)
        result = await handler(ctx, p)
        if record is not None:
            record(result)
        members.after(result)
        return result

    return wrapped


def extend(rds: Mapping[str, Handler], control: ControlPlane, registry: ProxyRegistry) -> dict[str, Handler]:
    """The rds handlers with subnet groups, tags and the catalog added, cluster and instance calls wrapped."""
    settings = control.settings
    region, account = settings.region, settings.account_id
    subnets = SubnetGroups(control.store, region, lambda cid: control.cluster(cid) is not None)
    members = _Members(control, subnets, account)
    out: dict[str, Handler] = {
        op: _wrap(op, h, members) if "DBCluster" in op or "DBInstance" in op else h for op, h in rds.items()
    }
    out.update(rds_subnet_groups.handlers(subnets, account))
    out.update(rds_tags.handlers(region, account, _lookups(control, registry, subnets)))
    out.update(rds_catalog.handlers(control))
    return out
