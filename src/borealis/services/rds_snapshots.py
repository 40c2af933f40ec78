"""RDS operations of DB cluster snapshots: Create/Describe/Delete/Copy, Restore (from a snapshot or to a point in time),
and the retained automated backups of deleted clusters (Describe/DeleteDBClusterAutomatedBackup(s)).

The control plane owns the snapshots (``control._snapshots``); this module validates requests as RDS does,
maps the control plane's refusals to AWS error codes and renders botocore's DBClusterSnapshot shape.

A restored cluster keeps the master user and its password as they were when the snapshot was taken (they are
in the snapshot's data; RestoreDBClusterFromSnapshot takes no password): ModifyDBCluster changes it later,
or turns on ManageMasterUserPassword, as on AWS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.control._names import cluster_arn, resource_id
from borealis.control._snapshots import SnapshotError
from borealis.services._describe import filtered, paged
from borealis.services._params import identifier as _identifier
from borealis.services._params import key as _key
from borealis.services._params import tags as _tags

__all__ = ["handlers"]


class _Snapshots:
    def __init__(self, control: ControlPlane, render_cluster: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.control = control
        self.snapshots = control.snapshots
        self.render_cluster = render_cluster
        self.region = control.settings.region
        self.account = control.settings.account_id

    def arn(self, ident: str) -> str:
        return f"arn:aws:rds:{self.region}:{self.account}:cluster-snapshot:{ident}"

    def render(self, doc: dict[str, Any]) -> dict[str, Any]:
        source = doc["source"]
        out: dict[str, Any] = {
            "AvailabilityZones": [f"{self.region}a", f"{self.region}b", f"{self.region}c"],
            "DBClusterSnapshotIdentifier": doc["id"],
            "DBClusterIdentifier": doc["cluster"],
            "SnapshotCreateTime": dt.datetime.fromisoformat(doc["created"]),
            "Engine": source.get("engine") or "aurora-postgresql",
            "EngineMode": "provisioned",
            "AllocatedStorage": max(1, -(-int(doc.get("size", 0)) // 2**30)),
            "Status": doc["status"],
            "Port": source.get("port") or 0,
            "VpcId": "vpc-borealis",
            "MasterUsername": source.get("master_username"),
            "EngineVersion": source.get("engine_version"),
            "LicenseModel": "postgresql-license",
            "SnapshotType": doc["type"],
            "PercentProgress": doc["percent"],
            "StorageEncrypted": bool(source.get("storage_encrypted")),
            "DBClusterSnapshotArn": self.arn(doc["id"]),
            "IAMDatabaseAuthenticationEnabled": bool(source.get("iam_auth")),
            "TagList": doc.get("tags") or [],
            "StorageType": "aurora",
        }
        if source.get("created"):
            out["ClusterCreateTime"] = dt.datetime.fromisoformat(source["created"])
        if source.get("resource_id"):
            out["DbClusterResourceId"] = source["resource_id"]
        if doc.get("source_snapshot"):
            out["SourceDBClusterSnapshotArn"] = self.arn(doc["source_snapshot"])
        return out

    async def create(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _identifier(p, "DBClusterSnapshotIdentifier")
        try:
            doc = self.snapshots.create(_key(p["DBClusterIdentifier"]), ident, tags=_tags(p))
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBClusterSnapshot": self.render(doc)}

    async def describe(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        docs = self.snapshots.all()
        if p.get("DBClusterSnapshotIdentifier"):
            if p.get("DBClusterIdentifier"):
                raise AWSError(
                    "InvalidParameterCombination",
                    "Cannot specify both DBClusterIdentifier and DBClusterSnapshotIdentifier.",
                )
            wanted = _key(p["DBClusterSnapshotIdentifier"])
            docs = [d for d in docs if d["id"] == wanted]
            if not docs:
                raise AWSError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {wanted} not found.")
        if p.get("DBClusterIdentifier"):
            docs = [d for d in docs if d["cluster"] == _key(p["DBClusterIdentifier"])]
        if p.get("DbClusterResourceId"):
            docs = [d for d in docs if d["source"].get("resource_id") == p["DbClusterResourceId"]]
        kind = p.get("SnapshotType")
        if kind is not None:
            if kind not in ("automated", "manual", "shared", "public", "awsbackup"):
                raise AWSError("InvalidParameterValue", f"Invalid snapshot type: {kind}")
            docs = [d for d in docs if d["type"] == kind]
        docs = filtered(
            docs,
            p,
            {
                "db-cluster-id": lambda d: d["cluster"],
                "db-cluster-snapshot-id": lambda d: d["id"],
                "snapshot-type": lambda d: d["type"],
                "engine": lambda d: d["source"].get("engine") or "aurora-postgresql",
            },
        )
        return paged("DBClusterSnapshots", docs, p, self.render)

    async def delete(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        try:
            doc = self.snapshots.delete(_key(p["DBClusterSnapshotIdentifier"]))
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBClusterSnapshot": self.render(doc)}

    async def copy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        target = _identifier(p, "TargetDBClusterSnapshotIdentifier")
        source = _key(p["SourceDBClusterSnapshotIdentifier"])
        tags = _tags(p)
        if p.get("CopyTags") and not tags:
            found = self.snapshots.get(source)
            tags = list(found.get("tags") or []) if found else []
        try:
            doc = self.snapshots.copy(source, target, tags)
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBClusterSnapshot": self.render(doc)}

    def _new_cluster(self, ident: str, source: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        """The record of a cluster restored from ``source`` (what a snapshot keeps of its cluster)."""
        if self.control.cluster(ident) is not None:
            raise AWSError("DBClusterAlreadyExistsFault", f"DB Cluster {ident} already exists")
        port = p.get("Port")
        if port is not None and not 1150 <= port <= 65535:
            raise AWSError("InvalidParameterValue", "Invalid port. Valid values are 1150-65535.")
        if port is not None and port in self.control.used_ports():
            raise AWSError(
                "InvalidParameterValue", f"Port {port} is already used by another endpoint of this Borealis."
            )
        retention = p.get("BackupRetentionPeriod") or 1
        if not 1 <= retention <= 35:
            raise AWSError("InvalidParameterValue", f"Invalid backup retention period: {retention}. Valid values "
                           "are 1 to 35 days.")  # fmt: skip
        port = port or self.control.allocate_port()
        reader_host, reader_port = self.control.reader_address(port)
        scaling = source.get("scaling") or {"min": 0.5, "max": 16.0, "pause": None, "set": False}
        conf = p.get("ServerlessV2ScalingConfiguration")
        if conf:
            scaling = {**scaling, "min": float(conf.get("MinCapacity", scaling["min"])),
                       "max": float(conf.get("MaxCapacity", scaling["max"])), "set": True}  # fmt: skip
        return {
            "id": ident,
            "resource_id": resource_id("cluster"),
            "engine": source.get("engine") or "aurora-postgresql",
            "engine_version": str(source.get("engine_version")),
            "status": "creating",
            "port": port,
            "reader_host": reader_host,
            "reader_port": reader_port,
            "master_username": source["master_username"],
            "database_name": source.get("database_name"),
            "scaling": scaling,
            "backup_retention": int(retention),
            "deletion_protection": bool(p.get("DeletionProtection", False)),
            "http_endpoint": False,
            "iam_auth": bool(p.get("EnableIAMDatabaseAuthentication", source.get("iam_auth", False))),
            "storage_encrypted": bool(source.get("storage_encrypted")),
            "copy_tags_to_snapshot": bool(p.get("CopyTagsToSnapshot", False)),
            "vpc_security_groups": list(p.get("VpcSecurityGroupIds") or []),
            "tags": _tags(p),
            "created": dt.datetime.now(dt.UTC).isoformat(),
            "admin_password": source["admin_password"],
            "master_password": source.get("master_password"),
            # The roles and the database are in the restored data; the password is applied again once.
            "bootstrapped": True,
            "password_version": 0,
            "password_applied": -1,
        }

    async def restore(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _identifier(p, "DBClusterIdentifier")
        snapshot = self.snapshots.get(_key(p["SnapshotIdentifier"]))
        if snapshot is None:
            raise AWSError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {p['SnapshotIdentifier']} not found.")
        source = snapshot["source"]
        if p.get("Engine") and p["Engine"] != (source.get("engine") or "aurora-postgresql"):
            raise AWSError("InvalidParameterCombination", f"Cannot restore a {source.get('engine')} snapshot "
                           f"as engine {p['Engine']}.")  # fmt: skip
        version = str(source.get("engine_version"))
        if p.get("EngineVersion") and str(p["EngineVersion"]).split(".")[0] != version.split(".")[0]:
            raise AWSError("InvalidParameterCombination", "Borealis restores a snapshot on its own major version "
                           f"({version}); upgrade the restored cluster instead.")  # fmt: skip
        doc = self._new_cluster(ident, source, p)
        doc["bootstrapped"] = not snapshot.get("empty")
        doc["restored_from"] = snapshot["id"]
        try:
            self.snapshots.restore(snapshot["id"], doc)
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBCluster": self.render_cluster(self.control.cluster(ident) or doc)}

    async def restore_to_time(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _identifier(p, "DBClusterIdentifier")
        kind = p.get("RestoreType") or "full-copy"
        if kind not in ("full-copy", "copy-on-write"):
            raise AWSError("InvalidParameterValue", f"Invalid RestoreType: {kind}. Valid values are full-copy "
                           "and copy-on-write.")  # fmt: skip
        when, latest = p.get("RestoreToTime"), bool(p.get("UseLatestRestorableTime"))
        if when is not None and latest:
            raise AWSError("InvalidParameterCombination", "Cannot specify both RestoreToTime and "
                           "UseLatestRestorableTime.")  # fmt: skip
        if when is not None and kind == "copy-on-write":
            raise AWSError("InvalidParameterCombination", "RestoreToTime cannot be used with RestoreType "
                           "copy-on-write: a clone is made at the latest restorable time.")  # fmt: skip
        if when is None and not latest and kind != "copy-on-write":
            raise AWSError("InvalidParameterCombination", "Either RestoreToTime or UseLatestRestorableTime "
                           "must be specified.")  # fmt: skip
        retained = self._retained_source(p)
        if retained is not None:
            # A deleted cluster's retained automated backups: restored as the cluster was when deleted.
            source = {**retained["source"], "id": retained["cluster"]}
            window = self.snapshots.backups.retained_window(retained["resource_id"])
        else:
            source = self._source_cluster(p)
            if source["status"] in ("creating", "deleting", "failed"):
                raise AWSError("InvalidDBClusterStateFault", f"DB cluster {source['id']} is {source['status']}.")
            window = self.snapshots.backups.window(source["id"])
        if window is None:
            raise AWSError("InvalidRestoreFault", f"DB cluster {source['id']} has no automated backup to restore "
                           "from yet.")  # fmt: skip
        earliest, newest = window
        target: dt.datetime | None = None
        if when is not None:
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
            if not earliest <= when <= newest:
                raise AWSError("InvalidRestoreFault", f"The restore time {when:%Y-%m-%dT%H:%M:%SZ} is outside the "
                               f"restorable window {earliest:%Y-%m-%dT%H:%M:%SZ} to "
                               f"{newest:%Y-%m-%dT%H:%M:%SZ}.")  # fmt: skip
            # Past the newest archived time of a resting cluster, "every archived commit" is the same state.
            running = retained is None and self.control.running_writer(source["id"]) is not None
            target = when if running or when < newest else None
        if retained is None:
            password = self.control.master_password(source)
            source = {**source, "master_password": self.control.sealer.seal(password) if password else None}
        doc = self._new_cluster(ident, source, p)
        doc["restored_from_cluster"] = source["id"]
        rid = None if retained is None else retained["resource_id"]
        try:
            self.snapshots.backups.restore(source["id"], target, doc, clone=kind == "copy-on-write", retained=rid)
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBCluster": self.render_cluster(self.control.cluster(ident) or doc)}

    def _retained_source(self, p: dict[str, Any]) -> dict[str, Any] | None:
        """The retained automated backup SourceDbClusterResourceId names, unless a cluster has that id."""
        wanted = p.get("SourceDbClusterResourceId")
        if not wanted or p.get("SourceDBClusterIdentifier"):
            return None
        if any(c["resource_id"] == wanted for c in self.control.clusters.values()):
            return None
        return self.snapshots.retained.get(wanted)

    def _source_cluster(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("SourceDBClusterIdentifier"):
            wanted = _key(p["SourceDBClusterIdentifier"])
            found = self.control.cluster(wanted)
        elif p.get("SourceDbClusterResourceId"):
            wanted = p["SourceDbClusterResourceId"]
            found = next((c for c in self.control.clusters.values() if c["resource_id"] == wanted), None)
        else:
            raise AWSError("InvalidParameterCombination", "SourceDBClusterIdentifier or SourceDbClusterResourceId "
                           "must be specified.")  # fmt: skip
        if found is None:
            raise AWSError("DBClusterNotFoundFault", f"DBCluster {wanted} not found.")
        return found

    def automated_arn(self, resource_id: str) -> str:
        return f"arn:aws:rds:{self.region}:{self.account}:cluster-auto-backup:{resource_id}"

    def render_automated(self, record: dict[str, Any], status: str = "retained") -> dict[str, Any]:
        source = record["source"]
        out: dict[str, Any] = {
            "Engine": source.get("engine") or "aurora-postgresql",
            "VpcId": "vpc-borealis",
            "DBClusterAutomatedBackupsArn": self.automated_arn(record["resource_id"]),
            "DBClusterIdentifier": record["cluster"],
            "MasterUsername": source.get("master_username"),
            "DbClusterResourceId": record["resource_id"],
            "Region": self.region,
            "LicenseModel": "postgresql-license",
            "Status": status,
            "IAMDatabaseAuthenticationEnabled": bool(source.get("iam_auth")),
            "StorageEncrypted": bool(source.get("storage_encrypted")),
            "AllocatedStorage": 1,  # Aurora always says 1
            "EngineVersion": source.get("engine_version"),
            "DBClusterArn": cluster_arn(self.region, self.account, record["cluster"]),
            "BackupRetentionPeriod": int(record["retention"]),
            "EngineMode": "provisioned",
            "AvailabilityZones": [f"{self.region}a", f"{self.region}b", f"{self.region}c"],
            "Port": source.get("port") or 0,
            "StorageType": "aurora",
        }
        if source.get("created"):
            out["ClusterCreateTime"] = dt.datetime.fromisoformat(source["created"])
        window = self.snapshots.backups.retained_window(record["resource_id"])
        if window is not None:
            out["RestoreWindow"] = {"EarliestTime": window[0], "LatestTime": window[1]}
        return out

    async def describe_automated(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        records = self.snapshots.backups.retained()
        if p.get("DbClusterResourceId"):
            records = [r for r in records if r["resource_id"] == p["DbClusterResourceId"]]
        if p.get("DBClusterIdentifier"):
            records = [r for r in records if r["cluster"] == _key(p["DBClusterIdentifier"])]
        if not records and (p.get("DbClusterResourceId") or p.get("DBClusterIdentifier")):
            wanted = p.get("DbClusterResourceId") or p.get("DBClusterIdentifier")
            raise AWSError("DBClusterAutomatedBackupNotFoundFault", f"No automated backup for {wanted}.")
        records = filtered(
            records,
            p,
            {
                "status": lambda r: "retained",
                "db-cluster-id": lambda r: r["cluster"],
                "db-cluster-resource-id": lambda r: r["resource_id"],
            },
        )
        return paged("DBClusterAutomatedBackups", records, p, self.render_automated)

    async def delete_automated(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        rid = p["DbClusterResourceId"]
        record = self.snapshots.retained.get(rid)
        shown = self.render_automated(record, "deleting") if record is not None else None
        try:
            self.snapshots.backups.delete_retained(rid)
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBClusterAutomatedBackup": shown}

    async def modify_attribute(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _key(p["DBClusterSnapshotIdentifier"])
        if p["AttributeName"] != "restore":
            raise AWSError("InvalidParameterValue", f"Invalid attribute name: {p['AttributeName']}. The only "
                           "attribute is restore.")  # fmt: skip
        add, remove = list(p.get("ValuesToAdd") or []), list(p.get("ValuesToRemove") or [])
        for value in add:
            if value != "all" and not (len(value) == 12 and value.isdigit()):
                raise AWSError("InvalidParameterValue", f"Invalid AWS account id: {value}.")
        try:
            doc = self.snapshots.set_attribute(ident, "restore", add, remove)
        except SnapshotError as exc:
            raise AWSError(exc.code, exc.message) from None
        return {"DBClusterSnapshotAttributesResult": self._attributes(doc)}

    async def describe_attributes(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _key(p["DBClusterSnapshotIdentifier"])
        doc = self.snapshots.get(ident)
        if doc is None:
            raise AWSError("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {ident} not found.")
        return {"DBClusterSnapshotAttributesResult": self._attributes(doc)}

    @staticmethod
    def _attributes(doc: dict[str, Any]) -> dict[str, Any]:
        values = (doc.get("attributes") or {}).get("restore", [])
        return {
            "DBClusterSnapshotIdentifier": doc["id"],
            "DBClusterSnapshotAttributes": [{"AttributeName": "restore", "AttributeValues": list(values)}],
        }


def handlers(control: ControlPlane, render_cluster: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Handler]:
    """The DB cluster snapshot operations (``render_cluster``: the rds module's DBCluster)."""
    ops = _Snapshots(control, render_cluster)
    return {
        "CreateDBClusterSnapshot": ops.create,
        "DescribeDBClusterSnapshots": ops.describe,
        "DeleteDBClusterSnapshot": ops.delete,
        "CopyDBClusterSnapshot": ops.copy,
        "RestoreDBClusterFromSnapshot": ops.restore,
        "RestoreDBClusterToPointInTime": ops.restore_to_time,
        "ModifyDBClusterSnapshotAttribute": ops.modify_attribute,
        "DescribeDBClusterSnapshotAttributes": ops.describe_attributes,
        "DescribeDBClusterAutomatedBackups": ops.describe_automated,
        "DeleteDBClusterAutomatedBackup": ops.delete_automated,
    }
