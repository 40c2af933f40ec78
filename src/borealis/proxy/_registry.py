"""RDS Proxy's resources: proxies, their default target group, targets and endpoints, kept in the store.

One stored document per proxy (with its one target group, "default", as on AWS) and one per extra endpoint.
Every change is written to the store first; the :class:`ProxyRegistry` then tells its listener
(``on_change``) so the data path starts, moves or stops the endpoint listeners.

Where a client connects: an endpoint's host string carries no port, as on AWS. RDS Proxy for PostgreSQL
listens on the database's port, so Borealis does the same: every proxy endpoint gets its own loopback
address (``127.0.1.x``, like the cluster's reader endpoint gets ``127.0.0.2``) and listens there on the
**port of the cluster it targets**, which is the ``Port`` of the ``TRACKED_CLUSTER`` entry that
DescribeDBProxyTargets returns (and the cluster's ``Port`` in DescribeDBClusters). When Borealis binds a
host other than 127.0.0.1, that trick is impossible: each endpoint then gets a port of its own from the
port base, reported as the TRACKED_CLUSTER target's port of that proxy.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import uuid
from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError
from borealis.control import ControlPlane

from ._config import ENGINE_FAMILY, auth_entries, idle_client_timeout, pool_config, valid_proxy_name

__all__ = ["ProxyRegistry"]

#: AWS quotas: proxies per account region and endpoints per proxy.
MAX_PROXIES = 20
MAX_ENDPOINTS = 20


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _resource_id() -> str:
    return uuid.uuid4().hex[:17]


def _not_found(name: str) -> AWSError:
    return AWSError("DBProxyNotFoundFault", f"DBProxy {name} not found.", 404)


def _addr_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class ProxyRegistry:
    """The RDS Proxy control plane: validation as AWS does it, records in the store."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self.settings = control.settings
        self.proxies = control.store.table("db_proxies")
        self.endpoints = control.store.table("db_proxy_endpoints")
        #: Called with a proxy name after any change to it, its targets or its endpoints.
        self.on_change: Callable[[str], None] = lambda name: None

    # ------------------------------------------------------------------------------------------ lookups

    def proxy(self, name: str) -> dict[str, Any]:
        """The stored proxy, or DBProxyNotFoundFault."""
        doc = self.proxies.get(name)
        if doc is None:
            raise _not_found(name)
        return doc

    def endpoint(self, name: str) -> dict[str, Any]:
        """A custom endpoint, or DBProxyEndpointNotFoundFault."""
        doc = self.endpoints.get(name)
        if doc is None:
            raise AWSError("DBProxyEndpointNotFoundFault", f"DBProxyEndpoint {name} not found.", 404)
        return doc

    def proxy_endpoints(self, proxy: str) -> list[dict[str, Any]]:
        """Every endpoint of a proxy, the default one first (as a document shaped like the custom ones)."""
        doc = self.proxy(proxy)
        default = {
            "name": proxy,
            "proxy": proxy,
            "role": "READ_WRITE",
            "host": doc["host"],
            "port": doc.get("port"),
            "subnets": doc["subnets"],
            "security_groups": doc["security_groups"],
            "created": doc["created"],
            "status": doc["status"],
            "is_default": True,
            "resource_id": doc["resource_id"],
        }
        custom = [e for e in self.endpoints.values() if e["proxy"] == proxy]
        return [default, *custom]

    def listen_port(self, endpoint: dict[str, Any]) -> int | None:
        """The port a proxy endpoint listens on: its target cluster's port (see the module docstring)."""
        if endpoint.get("port"):
            return int(endpoint["port"])
        doc = self.proxies.get(endpoint["proxy"])
        cluster = doc and doc["target_group"].get("cluster")
        record = cluster and self.control.cluster(cluster)
        return int(record["port"]) if record else None

    # ------------------------------------------------------------------------------------------ proxies

    def create_proxy(self, p: dict[str, Any]) -> dict[str, Any]:
        """CreateDBProxy: validate, store with status ``creating``."""
        name = p["DBProxyName"]
        if not valid_proxy_name(name):
            raise AWSError("InvalidParameterValue", f"The parameter DBProxyName is not valid: {name}.")
        if self.proxies.get(name) is not None or self.endpoints.get(name) is not None:
            raise AWSError("DBProxyAlreadyExistsFault", f"DBProxy {name} already exists.")
        if len(self.proxies.values()) >= MAX_PROXIES:
            raise AWSError("DBProxyQuotaExceededFault", "The maximum number of DB proxies has been reached.")
        if p["EngineFamily"] != ENGINE_FAMILY:
            raise AWSError(
                "InvalidParameterValue", f"EngineFamily {p['EngineFamily']} is not supported; use POSTGRESQL."
            )
        scheme = p.get("DefaultAuthScheme") or "NONE"
        if scheme not in ("NONE", "IAM_AUTH"):
            raise AWSError("InvalidParameterValue", f"Invalid DefaultAuthScheme: {scheme}.")
        now = _now()
        host, port = self._allocate_address()
        doc: dict[str, Any] = {
            "name": name,
            "resource_id": _resource_id(),
            "engine_family": ENGINE_FAMILY,
            "default_auth_scheme": scheme,
            "auth": auth_entries(p.get("Auth"), required=scheme == "NONE"),
            "role_arn": p["RoleArn"],
            "subnets": list(p["VpcSubnetIds"]),
            "security_groups": list(p.get("VpcSecurityGroupIds") or []),
            "require_tls": bool(p.get("RequireTLS", False)),
            "idle_client_timeout": idle_client_timeout(p.get("IdleClientTimeout")),
            "debug_logging": bool(p.get("DebugLogging", False)),
            "endpoint_network_type": p.get("EndpointNetworkType") or "IPV4",
            "target_network_type": p.get("TargetConnectionNetworkType") or "IPV4",
            "tags": [{"Key": t["Key"], "Value": t.get("Value", "")} for t in p.get("Tags") or []],
            "created": now,
            "updated": now,
            "status": "creating",
            "host": host,
            "port": port,
            "target_group": {
                "name": "default",
                "resource_id": _resource_id(),
                "pool": pool_config(None),
                "created": now,
                "updated": now,
                "cluster": None,
            },
        }
        self.proxies.put(name, doc)
        self.on_change(name)
        return doc

    def modify_proxy(self, p: dict[str, Any]) -> dict[str, Any]:
        """ModifyDBProxy: auth, TLS, idle timeout, logging, security groups; renaming included."""
        doc = self.proxy(p["DBProxyName"])
        self._require_available(doc)
        if "Auth" in p and p["Auth"] is not None:
            doc["auth"] = auth_entries(p["Auth"], required=doc["default_auth_scheme"] == "NONE")
        if p.get("DefaultAuthScheme"):
            if p["DefaultAuthScheme"] not in ("NONE", "IAM_AUTH"):
                raise AWSError("InvalidParameterValue", f"Invalid DefaultAuthScheme: {p['DefaultAuthScheme']}.")
            doc["default_auth_scheme"] = p["DefaultAuthScheme"]
        if "RequireTLS" in p:
            doc["require_tls"] = bool(p["RequireTLS"])
        if "IdleClientTimeout" in p:
            doc["idle_client_timeout"] = idle_client_timeout(p["IdleClientTimeout"])
        if "DebugLogging" in p:
            doc["debug_logging"] = bool(p["DebugLogging"])
        if p.get("RoleArn"):
            doc["role_arn"] = p["RoleArn"]
        if p.get("SecurityGroups") is not None:
            doc["security_groups"] = list(p["SecurityGroups"])
        doc["updated"] = _now()
        new = p.get("NewDBProxyName")
        old = doc["name"]
        if new and new != old:
            if not valid_proxy_name(new):
                raise AWSError("InvalidParameterValue", f"The parameter NewDBProxyName is not valid: {new}.")
            if self.proxies.get(new) is not None or self.endpoints.get(new) is not None:
                raise AWSError("DBProxyAlreadyExistsFault", f"DBProxy {new} already exists.")
            doc["name"] = new
            self.proxies.put(new, doc)
            self.proxies.delete(old)
            for ep in self.endpoints.values():
                if ep["proxy"] == old:
                    ep["proxy"] = new
                    self.endpoints.put(ep["name"], ep)
            self.on_change(old)
        else:
            self.proxies.put(old, doc)
        self.on_change(doc["name"])
        return doc

    def delete_proxy(self, name: str) -> dict[str, Any]:
        """DeleteDBProxy: the proxy and its custom endpoints go; the listeners close."""
        doc = self.proxy(name)
        for ep in self.endpoints.values():
            if ep["proxy"] == name:
                self.endpoints.delete(ep["name"])
        self.proxies.delete(name)
        doc["status"] = "deleting"
        self.on_change(name)
        return doc

    def set_status(self, name: str, status: str) -> None:
        """The data path reports a proxy ready (creating -> available)."""
        doc = self.proxies.get(name)
        if doc is not None and doc["status"] != status:
            doc["status"] = status
            self.proxies.put(name, doc)
        for ep in self.endpoints.values():
            if ep["proxy"] == name and ep["status"] != status:
                ep["status"] = status
                self.endpoints.put(ep["name"], ep)

    # ------------------------------------------------------------------------------------------ targets

    def target_group(self, doc: dict[str, Any], group: str | None) -> dict[str, Any]:
        """The proxy's target group by name (only ``default`` exists, as on AWS); part of ``doc``."""
        tg: dict[str, Any] = doc["target_group"]
        if group not in (None, tg["name"]):
            raise AWSError("DBProxyTargetGroupNotFoundFault", f"Target group {group} not found.", 404)
        return tg

    def modify_target_group(self, p: dict[str, Any]) -> dict[str, Any]:
        """ModifyDBProxyTargetGroup: the ConnectionPoolConfig (and a rename, which AWS refuses for default)."""
        doc = self.proxy(p["DBProxyName"])
        tg = self.target_group(doc, p["TargetGroupName"])
        if p.get("NewName") and p["NewName"] != tg["name"]:
            raise AWSError("InvalidParameterValue", "The default target group cannot be renamed.")
        tg["pool"] = pool_config(p.get("ConnectionPoolConfig"), tg["pool"])
        tg["updated"] = _now()
        self.proxies.put(doc["name"], doc)
        self.on_change(doc["name"])
        return doc

    def register_targets(self, p: dict[str, Any]) -> dict[str, Any]:
        """RegisterDBProxyTargets: an Aurora cluster (its instances follow it)."""
        doc = self.proxy(p["DBProxyName"])
        tg = self.target_group(doc, p.get("TargetGroupName"))
        self._require_available(doc)
        clusters = list(p.get("DBClusterIdentifiers") or [])
        if p.get("DBInstanceIdentifiers"):
            for iid in p["DBInstanceIdentifiers"]:
                if self.control.instance(iid) is None:
                    raise AWSError("DBInstanceNotFoundFault", f"DBInstance {iid} not found.", 404)
            raise AWSError(
                "InvalidParameterValue",
                "Aurora DB instances cannot be registered directly; register their DB cluster instead.",
            )
        if len(clusters) != 1:
            raise AWSError("InvalidParameterValue", "Specify exactly one DB cluster in DBClusterIdentifiers.")
        cid = clusters[0]
        cluster = self.control.cluster(cid)
        if cluster is None:
            raise AWSError("DBClusterNotFoundFault", f"DBCluster {cid} not found.", 404)
        if tg.get("cluster"):
            raise AWSError(
                "DBProxyTargetAlreadyRegisteredFault",
                f"The target group already has a registered target ({tg['cluster']}).",
            )
        if cluster["engine"] != "aurora-postgresql":
            raise AWSError("InvalidDBClusterStateFault", f"Engine {cluster['engine']} does not match the proxy.")
        if cluster["status"] not in ("available", "creating"):
            raise AWSError("InvalidDBClusterStateFault", f"DB cluster {cid} is {cluster['status']}.")
        tg["cluster"] = cid
        tg["updated"] = _now()
        self.proxies.put(doc["name"], doc)
        self.on_change(doc["name"])
        return doc

    def deregister_targets(self, p: dict[str, Any]) -> None:
        """DeregisterDBProxyTargets: the cluster leaves; its clients lose their connections."""
        doc = self.proxy(p["DBProxyName"])
        tg = self.target_group(doc, p.get("TargetGroupName"))
        wanted = set(p.get("DBClusterIdentifiers") or [])
        instances = set(p.get("DBInstanceIdentifiers") or [])
        if tg.get("cluster") is None or (wanted and tg["cluster"] not in wanted) or (not wanted and not instances):
            raise AWSError("DBProxyTargetNotFoundFault", "The specified target is not registered.", 404)
        if instances:
            members = {i["id"] for i in self.control.cluster_instances(tg["cluster"])}
            if not instances <= members:
                raise AWSError("DBProxyTargetNotFoundFault", "The specified target is not registered.", 404)
        tg["cluster"] = None
        tg["updated"] = _now()
        self.proxies.put(doc["name"], doc)
        self.on_change(doc["name"])

    # ------------------------------------------------------------------------------------------ endpoints

    def create_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        """CreateDBProxyEndpoint: READ_WRITE or READ_ONLY, its own host name."""
        proxy = self.proxy(p["DBProxyName"])
        self._require_available(proxy)
        name = p["DBProxyEndpointName"]
        if not valid_proxy_name(name):
            raise AWSError("InvalidParameterValue", f"The parameter DBProxyEndpointName is not valid: {name}.")
        if self.endpoints.get(name) is not None or self.proxies.get(name) is not None:
            raise AWSError("DBProxyEndpointAlreadyExistsFault", f"DBProxyEndpoint {name} already exists.")
        if len([e for e in self.endpoints.values() if e["proxy"] == proxy["name"]]) >= MAX_ENDPOINTS:
            raise AWSError("DBProxyEndpointQuotaExceededFault", "The maximum number of endpoints has been reached.")
        role = p.get("TargetRole") or "READ_WRITE"
        if role not in ("READ_WRITE", "READ_ONLY"):
            raise AWSError("InvalidParameterValue", f"Invalid TargetRole: {role}.")
        host, port = self._allocate_address()
        doc = {
            "name": name,
            "proxy": proxy["name"],
            "role": role,
            "host": host,
            "port": port,
            "subnets": list(p["VpcSubnetIds"]),
            "security_groups": list(p.get("VpcSecurityGroupIds") or proxy["security_groups"]),
            "created": _now(),
            "status": "available" if proxy["status"] == "available" else "creating",
            "is_default": False,
            "resource_id": _resource_id(),
            "network_type": p.get("EndpointNetworkType") or "IPV4",
            "tags": [{"Key": t["Key"], "Value": t.get("Value", "")} for t in p.get("Tags") or []],
        }
        self.endpoints.put(name, doc)
        self.on_change(proxy["name"])
        return doc

    def modify_endpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        """ModifyDBProxyEndpoint: a new name (the host name stays) and/or new security groups."""
        doc = self.endpoint(p["DBProxyEndpointName"])
        if doc["status"] != "available":
            raise AWSError("InvalidDBProxyEndpointStateFault", f"DBProxyEndpoint {doc['name']} is {doc['status']}.")
        new = p.get("NewDBProxyEndpointName")
        if new and new != doc["name"]:
            if not valid_proxy_name(new):
                raise AWSError("InvalidParameterValue", f"The parameter NewDBProxyEndpointName is not valid: {new}.")
            if self.endpoints.get(new) is not None or self.proxies.get(new) is not None:
                raise AWSError("DBProxyEndpointAlreadyExistsFault", f"DBProxyEndpoint {new} already exists.")
            self.endpoints.delete(doc["name"])
            doc["name"] = new
        if p.get("VpcSecurityGroupIds") is not None:
            doc["security_groups"] = list(p["VpcSecurityGroupIds"])
        self.endpoints.put(doc["name"], doc)
        self.on_change(doc["proxy"])
        return doc

    def delete_endpoint(self, name: str) -> dict[str, Any]:
        """DeleteDBProxyEndpoint (the default endpoint is not in this table, so it cannot be deleted)."""
        doc = self.endpoint(name)
        self.endpoints.delete(name)
        doc["status"] = "deleting"
        self.on_change(doc["proxy"])
        return doc

    # ------------------------------------------------------------------------------------------ helpers

    def _require_available(self, doc: dict[str, Any]) -> None:
        if doc["status"] not in ("available", "creating"):
            raise AWSError("InvalidDBProxyStateFault", f"DBProxy {doc['name']} is {doc['status']}.")

    def _used(self) -> tuple[set[str], set[int]]:
        hosts = {p["host"] for p in self.proxies.values()} | {e["host"] for e in self.endpoints.values()}
        ports = {p["port"] for p in self.proxies.values() if p.get("port")}
        ports |= {e["port"] for e in self.endpoints.values() if e.get("port")}
        return hosts, ports

    def used_ports(self) -> set[int]:
        """The ports proxy endpoints hold (only off loopback; on it they share the target's port)."""
        return self._used()[1]

    def _allocate_address(self) -> tuple[str, int | None]:
        """A loopback address of its own (port: the target's), or, off loopback, a port of its own."""
        hosts, ports = self._used()
        if self.settings.host == "127.0.0.1":
            # 127.0.1.0/24 upwards; 127.0.0.x is left to the control plane (127.0.0.2 is the reader endpoint).
            addr = ipaddress.IPv4Address("127.0.1.1")
            while str(addr) in hosts or addr.packed[3] in (0, 255):
                addr += 1
            return str(addr), None
        port = self.settings.port_base
        used = self.control.used_ports() | ports
        while port in used or not _addr_free(self.settings.host, port):
            port += 1
        return self.settings.host, port
