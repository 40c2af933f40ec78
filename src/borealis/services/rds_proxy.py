"""The RDS Proxy operations of the RDS API (query protocol), over :class:`borealis.proxy.ProxyRegistry`.

Each handler validates and stores through the registry, then renders the stored documents as the model's
DBProxy, DBProxyTargetGroup, DBProxyTarget and DBProxyEndpoint shapes. How a client finds the port to connect
to is explained in :mod:`borealis.proxy._registry`: the endpoint's host, on the target cluster's port.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.proxy import ProxyRegistry
from borealis.services._describe import filtered, paged

__all__ = ["handlers"]

_VPC = "vpc-borealis"


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class _RdsProxy:
    def __init__(self, registry: ProxyRegistry) -> None:
        self.registry = registry
        self.control = registry.control
        self.region = registry.settings.region
        self.account = registry.settings.account_id

    def _arn(self, kind: str, rid: str) -> str:
        return f"arn:aws:rds:{self.region}:{self.account}:{kind}:{rid}"

    # --------------------------------------------------------------------------------------- rendering

    def render_proxy(self, doc: dict[str, Any]) -> dict[str, Any]:
        auth = []
        for a in doc["auth"]:
            item = {k: a[k] for k in ("AuthScheme", "SecretArn", "IAMAuth", "ClientPasswordAuthType")}
            item.update({k: a[k] for k in ("Description", "UserName") if k in a})
            auth.append(item)
        return {
            "DBProxyName": doc["name"],
            "DBProxyArn": self._arn("db-proxy", f"prx-{doc['resource_id']}"),
            "Status": doc["status"],
            "EngineFamily": doc["engine_family"],
            "VpcId": _VPC,
            "VpcSecurityGroupIds": doc["security_groups"],
            "VpcSubnetIds": doc["subnets"],
            "DefaultAuthScheme": doc["default_auth_scheme"],
            "Auth": auth,
            "RoleArn": doc["role_arn"],
            "Endpoint": doc["host"],
            "RequireTLS": doc["require_tls"],
            "IdleClientTimeout": doc["idle_client_timeout"],
            "DebugLogging": doc["debug_logging"],
            "CreatedDate": _ts(doc["created"]),
            "UpdatedDate": _ts(doc["updated"]),
            "EndpointNetworkType": doc["endpoint_network_type"],
            "TargetConnectionNetworkType": doc["target_network_type"],
        }

    def render_target_group(self, doc: dict[str, Any]) -> dict[str, Any]:
        tg = doc["target_group"]
        pool = tg["pool"]
        info: dict[str, Any] = {
            "MaxConnectionsPercent": pool["MaxConnectionsPercent"],
            "MaxIdleConnectionsPercent": pool["MaxIdleConnectionsPercent"],
            "ConnectionBorrowTimeout": pool["ConnectionBorrowTimeout"],
            "SessionPinningFilters": pool["SessionPinningFilters"],
        }
        if pool["InitQuery"]:
            info["InitQuery"] = pool["InitQuery"]
        return {
            "DBProxyName": doc["name"],
            "TargetGroupName": tg["name"],
            "TargetGroupArn": self._arn("target-group", f"prx-tg-{tg['resource_id']}"),
            "IsDefault": True,
            "Status": "available",
            "ConnectionPoolConfig": info,
            "CreatedDate": _ts(tg["created"]),
            "UpdatedDate": _ts(tg["updated"]),
        }

    def render_targets(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        cid = doc["target_group"].get("cluster")
        cluster = cid and self.control.cluster(cid)
        if not cluster:
            return []
        endpoints = self.registry.proxy_endpoints(doc["name"])
        port = self.registry.listen_port(endpoints[0]) or cluster["port"]
        out: list[dict[str, Any]] = [
            {
                "TargetArn": self._arn("cluster", cid),
                "Endpoint": self.registry.settings.host,
                "TrackedClusterId": cid,
                "RdsResourceId": cid,
                "Port": port,
                "Type": "TRACKED_CLUSTER",
                "Role": "UNKNOWN",
            }
        ]
        for inst in self.control.cluster_instances(cid):
            member = self.control.topology.member(inst["id"])
            running = member is not None and member.ready
            health: dict[str, Any] = {"State": "AVAILABLE" if running else "UNAVAILABLE"}
            if not running:
                health["Reason"] = "UNREACHABLE" if inst["status"] != "creating" else "PENDING_PROXY_CAPACITY"
                health["Description"] = f"DB instance {inst['id']} is {inst['status']}"
            out.append(
                {
                    "TargetArn": self._arn("db", inst["id"]),
                    "Endpoint": self.registry.settings.host,
                    "TrackedClusterId": cid,
                    "RdsResourceId": inst.get("resource_id", inst["id"]),
                    "Port": inst["port"],
                    "Type": "RDS_INSTANCE",
                    "Role": "READ_WRITE" if inst["role"] == "writer" else "READ_ONLY",
                    "TargetHealth": health,
                }
            )
        return out

    def render_endpoint(self, ep: dict[str, Any]) -> dict[str, Any]:
        return {
            "DBProxyEndpointName": ep["name"],
            "DBProxyEndpointArn": self._arn("db-proxy-endpoint", f"prx-endpoint-{ep['resource_id']}"),
            "DBProxyName": ep["proxy"],
            "Status": ep["status"],
            "VpcId": _VPC,
            "VpcSecurityGroupIds": ep["security_groups"],
            "VpcSubnetIds": ep["subnets"],
            "Endpoint": ep["host"],
            "CreatedDate": _ts(ep["created"]),
            "TargetRole": ep["role"],
            "IsDefault": ep["is_default"],
            "EndpointNetworkType": ep.get("network_type", "IPV4"),
        }

    # --------------------------------------------------------------------------------------- handlers

    async def create_db_proxy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxy": self.render_proxy(self.registry.create_proxy(p))}

    async def describe_db_proxies(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("DBProxyName"):
            docs = [self.registry.proxy(p["DBProxyName"])]
        else:
            docs = sorted(self.registry.proxies.values(), key=lambda d: d["created"])
        docs = filtered(docs, p, {"db-proxy-name": lambda d: d["name"]})
        return paged("DBProxies", docs, p, self.render_proxy)

    async def modify_db_proxy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxy": self.render_proxy(self.registry.modify_proxy(p))}

    async def delete_db_proxy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxy": self.render_proxy(self.registry.delete_proxy(p["DBProxyName"]))}

    async def register_db_proxy_targets(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.registry.register_targets(p)
        return {"DBProxyTargets": self.render_targets(doc)}

    async def deregister_db_proxy_targets(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        self.registry.deregister_targets(p)
        return {}

    async def describe_db_proxy_targets(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.registry.proxy(p["DBProxyName"])
        self.registry.target_group(doc, p.get("TargetGroupName"))
        return paged("Targets", self.render_targets(doc), p)

    async def describe_db_proxy_target_groups(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.registry.proxy(p["DBProxyName"])
        self.registry.target_group(doc, p.get("TargetGroupName"))
        return paged("TargetGroups", [self.render_target_group(doc)], p)

    async def modify_db_proxy_target_group(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxyTargetGroup": self.render_target_group(self.registry.modify_target_group(p))}

    async def create_db_proxy_endpoint(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxyEndpoint": self.render_endpoint(self.registry.create_endpoint(p))}

    async def describe_db_proxy_endpoints(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("DBProxyEndpointName"):
            ep = self.registry.endpoint(p["DBProxyEndpointName"])
            if p.get("DBProxyName") and ep["proxy"] != p["DBProxyName"]:
                raise AWSError(
                    "DBProxyEndpointNotFoundFault", f"DBProxyEndpoint {p['DBProxyEndpointName']} not found.", 404
                )
            eps = [ep]
        elif p.get("DBProxyName"):
            eps = self.registry.proxy_endpoints(p["DBProxyName"])
        else:
            eps = []
            for doc in sorted(self.registry.proxies.values(), key=lambda d: d["created"]):
                eps.extend(self.registry.proxy_endpoints(doc["name"]))
        eps = filtered(eps, p, {"db-proxy-endpoint-type": lambda e: e["role"]})
        return paged("DBProxyEndpoints", eps, p, self.render_endpoint)

    async def modify_db_proxy_endpoint(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxyEndpoint": self.render_endpoint(self.registry.modify_endpoint(p))}

    async def delete_db_proxy_endpoint(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return {"DBProxyEndpoint": self.render_endpoint(self.registry.delete_endpoint(p["DBProxyEndpointName"]))}


def handlers(registry: ProxyRegistry) -> dict[str, Handler]:
    """The RDS Proxy operations Borealis serves, by operation name (merged into the rds service)."""
    api = _RdsProxy(registry)
    return {
        "CreateDBProxy": api.create_db_proxy,
        "DescribeDBProxies": api.describe_db_proxies,
        "ModifyDBProxy": api.modify_db_proxy,
        "DeleteDBProxy": api.delete_db_proxy,
        "RegisterDBProxyTargets": api.register_db_proxy_targets,
        "DeregisterDBProxyTargets": api.deregister_db_proxy_targets,
        "DescribeDBProxyTargets": api.describe_db_proxy_targets,
        "DescribeDBProxyTargetGroups": api.describe_db_proxy_target_groups,
        "ModifyDBProxyTargetGroup": api.modify_db_proxy_target_group,
        "CreateDBProxyEndpoint": api.create_db_proxy_endpoint,
        "DescribeDBProxyEndpoints": api.describe_db_proxy_endpoints,
        "ModifyDBProxyEndpoint": api.modify_db_proxy_endpoint,
        "DeleteDBProxyEndpoint": api.delete_db_proxy_endpoint,
    }
