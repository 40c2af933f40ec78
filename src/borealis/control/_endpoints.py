"""Custom cluster endpoints (CreateDBClusterEndpoint & co.): records, rules, and which instances each serves.

A custom endpoint is a name for a subset of a cluster's instances: type ``READER`` (readers only) or ``ANY``
(any instance), with either a static member list or a list of excluded members (every other instance of
the type, including ones added later). Each is its own listener, as the writer and reader endpoints are:
on the default loopback host at an address of its own in 127.0.2.0/24 with the cluster's port (so
``Endpoint`` + the cluster's ``Port`` connects, as on AWS), off loopback on a port of its own. New
connections go to the least busy available member; with none available the client gets a PostgreSQL error.

The rules follow RDS: at most five custom endpoints a cluster, static and excluded members are exclusive,
members must be instances of the cluster, and the cluster must be available to create one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from borealis.store import Store

from ._names import resource_id, valid_identifier
from ._ports import port_free

__all__ = ["MAX_CUSTOM_ENDPOINTS", "EndpointError", "Endpoints"]

MAX_CUSTOM_ENDPOINTS = 5
_TYPES = ("READER", "ANY")


class EndpointError(Exception):
    """A refused endpoint call; ``code`` is the AWS error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Endpoints:
    """The custom endpoints of every cluster, in the store table ``cluster_endpoints``."""

    def __init__(self, store: Store, host: str, allocate_port: Callable[[], int]) -> None:
        self.table = store.table("cluster_endpoints")
        self.host = host
        self.allocate_port = allocate_port

    def of(self, cluster_id: str) -> list[dict[str, Any]]:
        """A cluster's custom endpoints, oldest first."""
        return [d for d in self.table.values() if d["cluster"] == cluster_id]

    def get(self, ident: str) -> dict[str, Any]:
        """An endpoint by identifier, or DBClusterEndpointNotFoundFault."""
        doc = self.table.get(ident.lower())
        if doc is None:
            raise EndpointError("DBClusterEndpointNotFoundFault", f"DBClusterEndpoint {ident} not found.")
        return doc

    def used_ports(self) -> set[int]:
        """Ports custom endpoints hold off loopback."""
        return {int(d["listen_port"]) for d in self.table.values() if d.get("listen_port")}

    def _address(self, port: int) -> tuple[str, int | None]:
        if self.host == "127.0.0.1":
            taken = {d["host"] for d in self.table.values()}
            addr = ipaddress.IPv4Address("127.0.2.1")
            while str(addr) in taken or addr.packed[3] in (0, 255) or not port_free(str(addr), port):
                addr += 1
            return str(addr), None
        return self.host, self.allocate_port()

    def _members(
        self, cluster_id: str, instances: Iterable[str], static: list[str] | None, excluded: list[str] | None
    ) -> tuple[list[str], list[str]]:
        if static and excluded:
            raise EndpointError("InvalidParameterValue", "StaticMembers and ExcludedMembers cannot both be specified.")
        known = set(instances)
        for iid in [*(static or []), *(excluded or [])]:
            if iid.lower() not in known:
                raise EndpointError(
                    "DBInstanceNotFoundFault", f"DBInstance {iid} not found in DB cluster {cluster_id}."
                )
        return [i.lower() for i in static or []], [i.lower() for i in excluded or []]

    def create(
        self,
        cluster: dict[str, Any],
        instances: Iterable[str],
        ident: str,
        endpoint_type: str,
        static: list[str] | None,
        excluded: list[str] | None,
        tags: list[dict[str, str]],
    ) -> dict[str, Any]:
        """CreateDBClusterEndpoint: validated, stored with status ``creating`` (the reconciler listens)."""
        ident = ident.lower()
        if not valid_identifier(ident):
            raise EndpointError(
                "InvalidParameterValue", f"The parameter DBClusterEndpointIdentifier is not valid: {ident}."
            )
        if self.table.get(ident) is not None or ident == cluster["id"]:
            raise EndpointError("DBClusterEndpointAlreadyExistsFault", f"DBClusterEndpoint {ident} already exists.")
        kind = endpoint_type.upper()
        if kind not in _TYPES:
            raise EndpointError("InvalidParameterValue", f"Invalid endpoint type {endpoint_type}: use READER or ANY.")
        if cluster["status"] != "available":
            raise EndpointError("InvalidDBClusterStateFault", f"DB cluster {cluster['id']} is not in available state.")
        if len(self.of(cluster["id"])) >= MAX_CUSTOM_ENDPOINTS:
            raise EndpointError(
                "DBClusterEndpointQuotaExceededFault",
                f"DB cluster {cluster['id']} already has {MAX_CUSTOM_ENDPOINTS} custom endpoints.",
            )
        static_m, excluded_m = self._members(cluster["id"], instances, static, excluded)
        host, port = self._address(int(cluster["port"]))
        doc: dict[str, Any] = {
            "id": ident,
            "cluster": cluster["id"],
            "type": kind,
            "static": static_m,
            "excluded": excluded_m,
            "host": host,
            "listen_port": port,
            "status": "creating",
            "resource_id": resource_id("cluster-endpoint"),
            "tags": tags,
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.table.put(ident, doc, expect=0)
        return doc

    def modify(
        self,
        ident: str,
        instances: Iterable[str],
        endpoint_type: str | None,
        static: list[str] | None,
        excluded: list[str] | None,
    ) -> dict[str, Any]:
        """ModifyDBClusterEndpoint: new type or members, status ``modifying`` until the listener follows."""
        found = self.table.read(ident.lower())
        if found is None:
            raise EndpointError("DBClusterEndpointNotFoundFault", f"DBClusterEndpoint {ident} not found.")
        doc = found.doc
        if doc["status"] not in ("available", "modifying"):
            raise EndpointError(
                "InvalidDBClusterEndpointStateFault", f"DBClusterEndpoint {doc['id']} is {doc['status']}."
            )
        if endpoint_type is not None:
            if endpoint_type.upper() not in _TYPES:
                raise EndpointError(
                    "InvalidParameterValue", f"Invalid endpoint type {endpoint_type}: use READER or ANY."
                )
            doc["type"] = endpoint_type.upper()
        if static is not None or excluded is not None:
            doc["static"], doc["excluded"] = self._members(doc["cluster"], instances, static, excluded)
        doc["status"] = "modifying"
        self.table.put(doc["id"], doc, expect=found.revision)
        return doc

    def delete(self, ident: str) -> dict[str, Any]:
        """DeleteDBClusterEndpoint: status ``deleting``; the reconciler closes the listener and drops it."""
        doc = self.get(ident)
        if doc["status"] == "deleting":
            raise EndpointError(
                "InvalidDBClusterEndpointStateFault", f"DBClusterEndpoint {doc['id']} is already being deleted."
            )
        doc["status"] = "deleting"
        self.table.put(doc["id"], doc)
        return doc

    def settle(self, ident: str) -> None:
        """The listener matches the record: ``creating``/``modifying`` -> ``available``."""
        found = self.table.read(ident)
        if found is not None and found.doc["status"] in ("creating", "modifying"):
            self.table.put(ident, {**found.doc, "status": "available"}, expect=found.revision)

    def forget_instance(self, instance_id: str) -> None:
        """An instance was deleted: it leaves every static and excluded list, as on AWS."""
        for doc in self.table.values():
            if instance_id in doc["static"] or instance_id in doc["excluded"]:
                doc["static"] = [i for i in doc["static"] if i != instance_id]
                doc["excluded"] = [i for i in doc["excluded"] if i != instance_id]
                self.table.put(doc["id"], doc)
