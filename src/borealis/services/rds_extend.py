"""The RDS resources beyond clusters, instances and proxies, wired into the rds service in one place.

:func:`extend` takes the rds handlers (clusters, instances, proxies) and returns them with the operations of
subnet groups, parameter groups, tags and the catalog added, and with cluster and instance operations wrapped
so that

- the groups a request names are checked before the operation runs (an unknown one is the group's
  not-found fault, a parameter group of another family is refused, and nothing is created), and recorded
  for the cluster or instance (:class:`borealis.groups.Memberships`) before the control plane acts on it;
- a parameter group newly named by ModifyDBCluster/ModifyDBInstance is applied to the running instances;
- every DBCluster and DBInstance in an output carries the group members (``DBSubnetGroup``,
  ``DBClusterParameterGroup`` and each member's status, ``DBParameterGroups`` with ``pending-reboot``), and
  the members AWS always returns for an Aurora Serverless v2 cluster and instance (a default security group,
  ``KmsKeyId`` when encrypted, ``CertificateDetails``, ``OptionGroupMemberships``, ``ActivityStreamStatus``,
  the CloudWatch log exports asked for), with no ``Endpoint`` on an instance still ``creating``, as AWS.

It also gives the control plane its ``extra_settings`` hook: the parameter groups' values per instance.
The wrapping keeps these resources out of services/rds.py and the control plane's records.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import uuid
from collections.abc import Mapping
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.groups import (
    DEFAULT_SECURITY_GROUP,
    Catalog,
    Memberships,
    ParameterGroups,
    Settings,
    SubnetGroups,
    families,
    family_of,
)
from borealis.proxy import ProxyRegistry
from borealis.services import rds_catalog, rds_parameter_groups, rds_subnet_groups, rds_tags
from borealis.services.rds_tags import Found

__all__ = ["extend"]

Doc = dict[str, Any]
LOG_TYPES = ("postgresql",)  # what DescribeDBEngineVersions lists as ExportableLogTypes
CA = "rds-ca-rsa2048-g1"
_PARAMETER_GROUP_FIELDS = frozenset({"cluster_parameter_group", "parameter_group"})


def _log_types(types: list[str] | None) -> list[str]:
    unknown = [t for t in types or [] if t not in LOG_TYPES]
    if unknown:
        raise AWSError(
            "InvalidParameterCombination",
            f"You cannot use the log types {', '.join(unknown)} with engine aurora-postgresql. "
            f"Supported log types: {', '.join(LOG_TYPES)}.",
        )
    return list(dict.fromkeys(types or []))


def _lookups(
    control: ControlPlane, registry: ProxyRegistry, subnets: SubnetGroups, params: Settings
) -> dict[str, rds_tags.Lookup]:
    def cluster(name: str) -> Found:
        doc = control.cluster(name.lower())
        if doc is None:
            raise AWSError("DBClusterNotFoundFault", f"DBCluster {name} not found.")
        return doc, functools.partial(control.save_cluster, copy.deepcopy(doc), same_status=False)

    def instance(name: str) -> Found:
        doc = control.instance(name.lower())
        if doc is None:
            raise AWSError("DBInstanceNotFoundFault", f"DBInstance {name} not found.")
        return doc, functools.partial(control.save_instance, copy.deepcopy(doc), same_status=False)

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

    def cluster_parameter_group(name: str) -> Found:
        return params.cluster_groups.get(name), params.cluster_groups.save

    def parameter_group(name: str) -> Found:
        return params.instance_groups.get(name), params.instance_groups.save

    return {
        "cluster": cluster,
        "db": instance,
        "db-proxy": proxy,
        "db-proxy-endpoint": proxy_endpoint,
        "target-group": target_group,
        "subgrp": subnet_group,
        "cluster-pg": cluster_parameter_group,
        "pg": parameter_group,
    }


class _Members:
    """What the wrapped cluster and instance operations add: group checks before, group members after."""

    def __init__(
        self, control: ControlPlane, members: Memberships, subnets: SubnetGroups, params: Settings, account: str
    ) -> None:
        self.control = control
        self.members = members
        self.subnets = subnets
        self.params = params
        self.account = account

    # ----------------------------------------------------------------------------------------- checks

    def _parameter_group(self, groups: ParameterGroups, name: str, family: str, fault: str) -> str:
        try:
            doc = groups.get(name)
        except AWSError:
            raise AWSError(fault, f"{name} not found", 404) from None
        if doc["family"] != family:
            raise AWSError(
                "InvalidParameterCombination",
                f"The Parameter Group {doc['name']} with DBParameterGroupFamily {doc['family']} cannot be used for "
                f"this instance. Please use a Parameter Group with DBParameterGroupFamily {family}",
            )
        return str(doc["name"])

    def _cluster_family(self, cluster_id: str) -> str:
        cluster = self.control.cluster(cluster_id)
        return family_of(cluster["engine_version"] if cluster else self.control.engine_version)

    def before(self, operation: str, p: Doc) -> tuple[str, str, Doc] | None:
        """Check the groups (and tags) a request names; returns (kind, id, groups) to record for it, or None."""
        if p.get("Tags"):
            rds_tags.checked_tags(p["Tags"])  # the rules AddTagsToResource applies hold at creation too
        if operation == "CreateDBCluster":
            ident = str(p["DBClusterIdentifier"]).lower()
            family = family_of(p.get("EngineVersion") or self.control.engine_version)
            names: Doc = {"subnet_group": self.subnets.get(p.get("DBSubnetGroupName") or "default")["name"]}
            names["log_exports"] = _log_types(p.get("EnableCloudwatchLogsExports"))
            if p.get("KmsKeyId"):
                if not p.get("StorageEncrypted"):
                    raise AWSError(
                        "InvalidParameterCombination", "KmsKeyId can be specified only when StorageEncrypted is true."
                    )
                names["kms_key_id"] = self._key_arn(str(p["KmsKeyId"]))
            if p.get("DBClusterParameterGroupName"):
                names["cluster_parameter_group"] = self._parameter_group(
                    self.params.cluster_groups, p["DBClusterParameterGroupName"], family,
                    "DBClusterParameterGroupNotFoundFault",
                )  # fmt: skip
            return "cluster", ident, names
        if operation == "ModifyDBCluster":
            ident = str(p["DBClusterIdentifier"]).lower()
            changes: Doc = {}
            if p.get("DBClusterParameterGroupName"):
                changes["cluster_parameter_group"] = self._parameter_group(
                    self.params.cluster_groups, p["DBClusterParameterGroupName"], self._cluster_family(ident),
                    "DBClusterParameterGroupNotFoundFault",
                )  # fmt: skip
            logs = p.get("CloudwatchLogsExportConfiguration")
            if logs:
                enable, disable = _log_types(logs.get("EnableLogTypes")), _log_types(logs.get("DisableLogTypes"))
                current = self.members.get("cluster", ident).get("log_exports") or []
                changes["log_exports"] = [t for t in dict.fromkeys([*current, *enable]) if t not in disable]
            return ("cluster", ident, changes) if changes else None
        if operation in ("CreateDBInstance", "ModifyDBInstance"):
            ident = str(p["DBInstanceIdentifier"]).lower()
            inst = self.control.instance(ident)
            cluster_id = str(p.get("DBClusterIdentifier") or (inst or {}).get("cluster") or "").lower()
            if operation == "CreateDBInstance" and p.get("DBSubnetGroupName") and self.control.cluster(cluster_id):
                wanted = self.subnets.get(p["DBSubnetGroupName"])["name"]
                used = self.subnets.used_by(cluster_id)
                if wanted != used:
                    raise AWSError(
                        "InvalidParameterCombination",
                        f"The DB subnet group {wanted} of the instance must be the one of its DB cluster ({used}).",
                    )
            if p.get("DBParameterGroupName"):
                name = self._parameter_group(
                    self.params.instance_groups, p["DBParameterGroupName"], self._cluster_family(cluster_id),
                    "DBParameterGroupNotFoundFault",
                )  # fmt: skip
                return "instance", ident, {"parameter_group": name}
            if operation == "CreateDBInstance":
                return "instance", ident, {}
        return None

    # ----------------------------------------------------------------------------------------- outputs

    def _key_arn(self, key: str) -> str:
        region = self.control.settings.region
        if key.startswith("arn:"):
            return key
        return f"arn:aws:kms:{region}:{self.account}:{key if key.startswith('alias/') else 'key/' + key}"

    def _default_key(self) -> str:
        """The account's aws/rds key, as AWS names it: a stable key id per account and region."""
        region = self.control.settings.region
        return self._key_arn(str(uuid.uuid5(uuid.NAMESPACE_URL, f"borealis:{self.account}:{region}:aws/rds")))

    def _always(self, out: Doc, record: Doc, created: dt.datetime | None) -> None:
        """The members AWS returns for every Aurora Serverless v2 cluster and instance."""
        if not out.get("VpcSecurityGroups"):
            out["VpcSecurityGroups"] = [{"VpcSecurityGroupId": DEFAULT_SECURITY_GROUP, "Status": "active"}]
        if out.get("StorageEncrypted"):
            out["KmsKeyId"] = record.get("kms_key_id") or self._default_key()
        if record.get("log_exports"):
            out["EnabledCloudwatchLogsExports"] = list(record["log_exports"])
        out["ActivityStreamStatus"] = "stopped"
        out.setdefault("DomainMemberships", [])
        out.setdefault("AssociatedRoles", [])
        out.setdefault("DatabaseInsightsMode", "standard")
        if created is not None:
            # The server certificates Borealis' CA signs are good for a year.
            out["CertificateDetails"] = {"CAIdentifier": CA, "ValidTill": created + dt.timedelta(days=365)}

    def cluster(self, out: Doc) -> None:
        cid = out["DBClusterIdentifier"]
        self._always(out, self.members.get("cluster", cid), out.get("ClusterCreateTime"))
        out.setdefault("DBClusterOptionGroupMemberships", [])
        out["DBSubnetGroup"] = self.subnets.used_by(cid)
        out["DBClusterParameterGroup"] = self.params.cluster_groups.used_by(cid, family_of(out["EngineVersion"]))
        cluster = self.control.cluster(cid)
        for member in out.get("DBClusterMembers") or []:
            status = self.params.status(cluster, member["DBInstanceIdentifier"]) if cluster else "in-sync"
            member["DBClusterParameterGroupStatus"] = status

    def instance(self, out: Doc) -> None:
        cluster_id = out.get("DBClusterIdentifier")
        cluster = self.control.cluster(cluster_id) if cluster_id else None
        if not out.get("VpcSecurityGroups") and cluster and cluster.get("vpc_security_groups"):
            out["VpcSecurityGroups"] = [
                {"VpcSecurityGroupId": g, "Status": "active"} for g in cluster["vpc_security_groups"]
            ]
        self._always(out, self.members.get("cluster", cluster_id or ""), out.get("InstanceCreateTime"))
        if out.get("DBInstanceStatus") == "creating":
            out.pop("Endpoint", None)  # AWS has no address for an instance until it is up
        major = str(out["EngineVersion"]).split(".")[0]
        out["OptionGroupMemberships"] = [{"OptionGroupName": f"default:aurora-postgresql-{major}", "Status": "in-sync"}]
        out.setdefault("DBInstanceAutomatedBackupsReplications", [])
        out.setdefault("CustomerOwnedIpEnabled", False)
        out.setdefault("BackupTarget", "region")
        out.setdefault("DedicatedLogVolume", False)
        out.setdefault("IsStorageConfigUpgradeAvailable", False)
        if cluster is not None:
            out.setdefault("EngineLifecycleSupport", "open-source-rds-extended-support")
        group = self.subnets.get(self.subnets.used_by(cluster_id) if cluster_id else "default")
        out["DBSubnetGroup"] = rds_subnet_groups.render_subnet_group(self.subnets, self.account, group)
        iid = out["DBInstanceIdentifier"]
        out["DBParameterGroups"] = [
            {
                "DBParameterGroupName": self.params.instance_groups.used_by(iid, family_of(out["EngineVersion"])),
                "ParameterApplyStatus": self.params.status(cluster, iid) if cluster else "in-sync",
            }
        ]

    def after(self, result: Doc) -> None:
        """Fill the members of every DBCluster and DBInstance in an output."""
        for key, fill in (("DBCluster", self.cluster), ("DBInstance", self.instance)):
            if isinstance(result.get(key), dict):
                fill(result[key])
            for item in result.get(key + "s") or []:
                fill(item)


class _Applier:
    """Applies parameter group changes to the running instances they concern."""

    def __init__(self, control: ControlPlane, params: Settings) -> None:
        self.control = control
        self.params = params

    async def instances(self, ids: list[str]) -> None:
        """Rewrite and reload the settings of these instances (those not running get them when they start)."""
        for iid in ids:
            # The hook runs inside reconfigure before its only await (the reload signal, sent at once): the
            # flag cannot be seen by an instance start in between.
            self.params.reloading = True
            try:
                await self.control.reconfigure(iid)
            finally:
                self.params.reloading = False

    def of_cluster(self, cluster_id: str) -> list[str]:
        return [i["id"] for i in self.control.cluster_instances(cluster_id)]

    async def group(self, groups: ParameterGroups, name: str) -> None:
        """After a change to group ``name``: every instance using it, directly or through its cluster."""
        if groups.kind == "cluster":
            await self.instances([i for cid in groups.users(name) for i in self.of_cluster(cid)])
        else:
            await self.instances(groups.users(name))


def _wrap(operation: str, handler: Handler, members: _Members, applier: _Applier) -> Handler:
    async def wrapped(ctx: RequestContext, p: Doc) -> Doc:
        record = members.before(operation, p)
        existed = False
        if record is not None:
            kind, ident, names = record
            creating = operation.startswith("Create")
            existed = (
                creating
                and (members.control.cluster(ident) if kind == "cluster" else members.control.instance(ident))
                is not None
            )
            if not existed:
                # Recorded before the control plane may start the instance, so it starts with its groups.
                previous = members.members.get(kind, ident)
                if creating:
                    members.members.reset(kind, ident)
                members.members.set(kind, ident, **names)
        try:
            result = await handler(ctx, p)
        except Exception:
            if record is not None and not existed:
                kind, ident, _ = record
                members.members.reset(kind, ident)
                if not operation.startswith("Create") and previous:
                    members.members.set(kind, ident, **previous)
            raise
        if record is not None and not operation.startswith("Create") and _PARAMETER_GROUP_FIELDS & record[2].keys():
            kind, ident, _ = record
            await applier.instances(applier.of_cluster(ident) if kind == "cluster" else [ident])
        members.after(result)
        return result

    return wrapped


def extend(rds: Mapping[str, Handler], control: ControlPlane, registry: ProxyRegistry) -> dict[str, Handler]:
    """The rds handlers with subnet groups, tags and the catalog added, cluster and instance calls wrapped."""
    settings = control.settings
    region, account = settings.region, settings.account_id
    store = control.store
    members = Memberships(
        store, lambda cid: control.cluster(cid) is not None, lambda iid: control.instance(iid) is not None
    )
    subnets = SubnetGroups(store, region, members)
    catalog = Catalog(store, control.binaries, control.engine_version, settings.data_dir / "engine-probe")
    params = Settings(
        ParameterGroups(store, "cluster", catalog, lambda: families(control), members),
        ParameterGroups(store, "instance", catalog, lambda: families(control), members),
    )
    control.extra_settings = params.for_server
    control.cluster_parameter = params.cluster_value
    applier = _Applier(control, params)
    wrapper = _Members(control, members, subnets, params, account)
    out: dict[str, Handler] = {
        op: _wrap(op, h, wrapper, applier) if "DBCluster" in op or "DBInstance" in op or op.startswith("Create") else h
        for op, h in rds.items()
    }
    out.update(rds_subnet_groups.handlers(subnets, account))
    out.update(
        rds_parameter_groups.handlers(params.cluster_groups, params.instance_groups, region, account, applier.group)
    )
    out.update(rds_tags.handlers(region, account, _lookups(control, registry, subnets, params)))
    out.update(rds_catalog.handlers(control))
    return out
