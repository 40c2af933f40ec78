"""The RDS control-plane API (query protocol): clusters and instances, as boto3 and the aws CLI call them.

Each handler validates its request the way RDS does (codes and messages as AWS gives them), writes the new
state through the control plane, and renders the stored record as the model's DBCluster or DBInstance shape.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane, FailoverRefused, StaleRecord
from borealis.control._names import (
    cluster_arn,
    generate_password,
    instance_arn,
    master_secret_name,
    resource_id,
)
from borealis.control._snapshots import SnapshotError
from borealis.secrets import SecretsManager
from borealis.services import rds_ha, rds_logs, rds_pi, rds_snapshots
from borealis.services._describe import filtered, paged
from borealis.services._params import identifier as _identifier
from borealis.services._params import key as _key
from borealis.services._params import tags as _tags

__all__ = ["handlers"]

ENGINE = "aurora-postgresql"
MAX_READERS = 15
"""Aurora Replicas per cluster, as on AWS."""
_BAD_PASSWORD_CHARS = set('/@" ')


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _ts(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _invalid(message: str) -> AWSError:
    return AWSError("InvalidParameterValue", message)


def _combination(message: str) -> AWSError:
    return AWSError("InvalidParameterCombination", message)


def _check_password(password: str) -> None:
    if not 8 <= len(password) <= 128:
        raise _invalid(
            "The parameter MasterUserPassword is not a valid password because it is shorter than 8 characters."
        )
    if any(c in _BAD_PASSWORD_CHARS or not (32 < ord(c) < 127) for c in password):
        raise _invalid(
            "The parameter MasterUserPassword is not a valid password. "
            "Only printable ASCII characters besides '/', '@', '\"', ' ' may be used."
        )


def _check_username(name: str) -> None:
    if not name:
        raise _invalid("The parameter MasterUsername must be provided and must not be blank.")
    ok = name[0].isascii() and name[0].isalpha() and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    if not ok or len(name) > 63:
        raise _invalid(
            "The parameter MasterUsername is not a valid identifier. It must begin with a letter and contain "
            "only ASCII letters, digits, and underscores, 1 to 63 characters."
        )
    if name.lower() in ("rdsadmin", "rdsrepladmin", "rds_superuser", "rds_iam", "rds_replication"):
        raise _invalid(f"MasterUsername {name} cannot be used as it is a reserved word used by the engine")


def _scaling(conf: dict[str, Any] | None, current: dict[str, Any] | None, min_pause: int = 300) -> dict[str, Any]:
    """Validate a ServerlessV2ScalingConfiguration against AWS's documented ranges (the auto-pause floor of
    300 s is ``min_pause``: ``--min-auto-pause`` lowers it for tests and development)."""
    if conf is None:
        if current is not None:
            return current
        return {"min": 0.5, "max": 16.0, "pause": None, "set": False}
    lo = conf.get("MinCapacity", current["min"] if current and current.get("set") else None)
    hi = conf.get("MaxCapacity", current["max"] if current and current.get("set") else None)
    if lo is None or hi is None:
        raise _invalid(
            "Both MinCapacity and MaxCapacity must be specified when you initialize Serverless v2 scaling "
            "configuration."
        )
    for label, value in (("MinCapacity", lo), ("MaxCapacity", hi)):
        if not math.isfinite(value) or value * 2 != int(value * 2):
            raise _invalid(f"{label} must be a multiple of 0.5 ACUs.")
    if not 0 <= lo <= 256:
        raise _invalid("MinCapacity must be between 0 and 256 ACUs.")
    if not 1 <= hi <= 256:
        raise _invalid("MaxCapacity must be between 1 and 256 ACUs.")
    if lo > hi:
        raise _invalid("MinCapacity must be less than or equal to MaxCapacity.")
    pause = conf.get("SecondsUntilAutoPause")
    if pause is not None:
        if lo != 0:
            raise _invalid("SecondsUntilAutoPause can be set only when MinCapacity is 0.")
        if not min_pause <= pause <= 86400:
            raise _invalid(f"SecondsUntilAutoPause must be between {min_pause} and 86400 seconds.")
    elif lo == 0:
        previous = current.get("pause") if current and current.get("min") == 0 else None
        pause = previous or 300
    return {"min": float(lo), "max": float(hi), "pause": pause if lo == 0 else None, "set": True}


class _Rds:
    def __init__(self, control: ControlPlane, secrets: SecretsManager) -> None:
        self.control = control
        self.secrets = secrets
        self.settings = control.settings
        self.region = self.settings.region
        self.account = self.settings.account_id

    # ----------------------------------------------------------------------------------- rendering

    def render_cluster(self, doc: dict[str, Any]) -> dict[str, Any]:
        members = [
            {
                "DBInstanceIdentifier": i["id"],
                "IsClusterWriter": i["role"] == "writer",
                "DBClusterParameterGroupStatus": "in-sync",
                "PromotionTier": i["promotion_tier"],
            }
            for i in self.control.cluster_instances(doc["id"])
        ]
        out: dict[str, Any] = {
            "AllocatedStorage": 1,
            "AvailabilityZones": [f"{self.region}a", f"{self.region}b", f"{self.region}c"],
            "BackupRetentionPeriod": doc["backup_retention"],
            "DBClusterIdentifier": doc["id"],
            "DBClusterParameterGroup": f"default.aurora-postgresql{doc['engine_version'].split('.')[0]}",
            "DBSubnetGroup": "default",
            "Status": doc["status"],
            "Endpoint": self.settings.host,
            "ReaderEndpoint": doc["reader_host"],
            "CustomEndpoints": [e["host"] for e in self.control.endpoints.of(doc["id"]) if e["status"] != "deleting"],
            "MultiAZ": len(members) > 1,
            "Engine": doc["engine"],
            "EngineVersion": doc["engine_version"],
            "Port": doc["port"],
            "MasterUsername": doc["master_username"],
            "PreferredBackupWindow": "07:00-07:30",
            "PreferredMaintenanceWindow": "sun:05:00-sun:05:30",
            "ReadReplicaIdentifiers": [],
            "DBClusterMembers": members,
            "VpcSecurityGroups": [
                {"VpcSecurityGroupId": g, "Status": "active"} for g in doc.get("vpc_security_groups", [])
            ],
            "HostedZoneId": "Z2R2ITUGPM61AM",
            "StorageEncrypted": doc["storage_encrypted"],
            "DbClusterResourceId": doc["resource_id"],
            "DBClusterArn": cluster_arn(self.region, self.account, doc["id"]),
            "AssociatedRoles": [],
            "IAMDatabaseAuthenticationEnabled": doc["iam_auth"],
            "ClusterCreateTime": _ts(doc["created"]),
            "EngineMode": "provisioned",
            "DeletionProtection": doc["deletion_protection"],
            "HttpEndpointEnabled": doc["http_endpoint"],
            "CopyTagsToSnapshot": doc.get("copy_tags_to_snapshot", False),
            "CrossAccountClone": False,
            "DomainMemberships": [],
            "TagList": doc["tags"],
            "AutoMinorVersionUpgrade": True,
            "NetworkType": "IPV4",
            "StorageType": "aurora",
            "EngineLifecycleSupport": "open-source-rds-extended-support",
            **rds_pi.render(doc),
        }
        if doc.get("database_name"):
            out["DatabaseName"] = doc["database_name"]
        window = self.control.snapshots.backups.window(doc["id"])
        if window is not None:  # AWS omits both until the first automated backup
            out["EarliestRestorableTime"], out["LatestRestorableTime"] = window
        scaling = doc["scaling"]
        if scaling.get("set"):
            info: dict[str, Any] = {"MinCapacity": scaling["min"], "MaxCapacity": scaling["max"]}
            if scaling["min"] == 0:
                info["SecondsUntilAutoPause"] = scaling["pause"]
            out["ServerlessV2ScalingConfiguration"] = info
            out["ServerlessV2PlatformVersion"] = "3"
        if doc.get("master_secret_arn"):
            out["MasterUserSecret"] = {
                "SecretArn": doc["master_secret_arn"],
                "SecretStatus": "active",
                "KmsKeyId": f"arn:aws:kms:{self.region}:{self.account}:alias/aws/secretsmanager",
            }
        return out

    def render_instance(self, doc: dict[str, Any]) -> dict[str, Any]:
        cluster = self.control.cluster(doc["cluster"]) or {}
        out: dict[str, Any] = {
            "DBInstanceIdentifier": doc["id"],
            "DBInstanceClass": doc["instance_class"],
            "Engine": doc["engine"],
            "DBInstanceStatus": doc["status"],
            "MasterUsername": cluster.get("master_username"),
            "Endpoint": {
                "Address": self.settings.host,
                "Port": doc["port"],
                "HostedZoneId": "Z2R2ITUGPM61AM",
            },
            "AllocatedStorage": 1,
            "InstanceCreateTime": _ts(doc["created"]),
            "PreferredBackupWindow": "07:00-07:30",
            "BackupRetentionPeriod": cluster.get("backup_retention", 1),
            "DBSecurityGroups": [],
            "VpcSecurityGroups": [],
            "DBParameterGroups": [
                {
                    "DBParameterGroupName": f"default.aurora-postgresql{doc['engine_version'].split('.')[0]}",
                    "ParameterApplyStatus": "in-sync",
                }
            ],
            "AvailabilityZone": doc["availability_zone"],
            "PreferredMaintenanceWindow": "sun:05:00-sun:05:30",
            "PendingModifiedValues": {},
            "MultiAZ": False,
            "EngineVersion": doc["engine_version"],
            "AutoMinorVersionUpgrade": True,
            "ReadReplicaDBInstanceIdentifiers": [],
            "LicenseModel": "postgresql-license",
            "PubliclyAccessible": doc.get("publicly_accessible", False),
            "StorageType": "aurora",
            "DbInstancePort": 0,
            "DBClusterIdentifier": doc["cluster"],
            "StorageEncrypted": cluster.get("storage_encrypted", False),
            "DbiResourceId": doc["resource_id"],
            "CACertificateIdentifier": "rds-ca-rsa2048-g1",
            "CopyTagsToSnapshot": False,
            "MonitoringInterval": 0,
            "PromotionTier": doc["promotion_tier"],
            "DBInstanceArn": instance_arn(self.region, self.account, doc["id"]),
            "IAMDatabaseAuthenticationEnabled": cluster.get("iam_auth", False),
            **rds_pi.render(doc),
            "DeletionProtection": False,
            "TagList": doc["tags"],
            "NetworkType": "IPV4",
        }
        if cluster.get("database_name"):
            out["DBName"] = cluster["database_name"]
        return out

    # ----------------------------------------------------------------------------------- lookups

    def _save_cluster(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Store what this request changed in the cluster it read (``before``), keeping changes made meanwhile."""
        try:
            self.control.save_cluster(before, after)
        except StaleRecord as exc:
            raise AWSError(
                "InvalidDBClusterStateFault", f"DB cluster {exc.key} became {exc.status} meanwhile; try again."
            ) from None

    def _save_instance(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """As :meth:`_save_cluster`, for an instance."""
        try:
            self.control.save_instance(before, after)
        except StaleRecord as exc:
            raise AWSError(
                "InvalidDBInstanceStateFault", f"DB instance {exc.key} became {exc.status} meanwhile; try again."
            ) from None

    def _cluster(self, ident: str) -> dict[str, Any]:
        doc = self.control.cluster(_key(ident))
        if doc is None:
            raise AWSError("DBClusterNotFoundFault", f"DBCluster {ident} not found.")
        return doc

    def _instance(self, ident: str) -> dict[str, Any]:
        doc = self.control.instance(_key(ident))
        if doc is None:
            raise AWSError("DBInstanceNotFoundFault", f"DBInstance {ident} not found.")
        return doc

    def _engine_version(self, requested: str | None) -> str:
        if requested is None:
            return self.control.engine_version
        major = requested.split(".")[0]
        if not major.isdigit() or int(major) not in self.control.engines:
            have = ", ".join(str(v) for v in sorted(self.control.engines))
            raise _combination(
                f"Cannot find version {requested} for aurora-postgresql (this Borealis runs PostgreSQL {have})"
            )
        # A major version alone ("17") means that major's current minor, as on Aurora.
        return requested if "." in requested else self.control.engine_version_of(int(major))

    # ----------------------------------------------------------------------------------- clusters

    async def create_db_cluster(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _identifier(p, "DBClusterIdentifier")
        if p["Engine"] != ENGINE:
            raise _invalid(f"Invalid DB engine: {p['Engine']}. Borealis runs aurora-postgresql only.")
        if self.control.cluster(ident) is not None:
            raise AWSError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        if p.get("EngineMode", "provisioned") != "provisioned":
            raise _invalid(
                f"The engine mode {p['EngineMode']} you requested for your DB cluster is not supported "
                "(Serverless v1 is retired; use provisioned with ServerlessV2ScalingConfiguration)."
            )
        version = self._engine_version(p.get("EngineVersion"))
        username = p.get("MasterUsername")
        if username is None:
            raise _invalid("The parameter MasterUsername must be provided and must not be blank.")
        _check_username(username)
        manage = bool(p.get("ManageMasterUserPassword"))
        password = p.get("MasterUserPassword")
        if manage and password is not None:
            raise _combination(
                "You can't specify both MasterUserPassword and ManageMasterUserPassword. "
                "Specify only one and try again."
            )
        if not manage:
            if password is None:
                raise _invalid("The parameter MasterUserPassword must be provided and must not be blank.")
            _check_password(password)
        if p.get("MasterUserSecretKmsKeyId") and not manage:
            raise _combination("MasterUserSecretKmsKeyId requires ManageMasterUserPassword to be enabled.")
        scaling = _scaling(p.get("ServerlessV2ScalingConfiguration"), None, self.settings.min_auto_pause)
        retention = p.get("BackupRetentionPeriod", 1)
        if not 1 <= retention <= 35:
            raise _invalid(f"Invalid backup retention period: {retention}. Valid values are 1 to 35 days.")
        port_requested = p.get("Port")
        if port_requested is not None:
            if not 1150 <= port_requested <= 65535:
                raise _invalid("Invalid port. Valid values are 1150-65535.")
            if port_requested in self.control.used_ports():
                raise _invalid(f"Port {port_requested} is already used by another endpoint of this Borealis.")
        dbname = p.get("DatabaseName")
        if dbname is not None and (
            not dbname
            or not dbname[0].isalpha()
            or not all(c.isalnum() or c == "_" for c in dbname)
            or len(dbname) > 63
        ):
            raise _invalid(
                "The parameter DatabaseName is not a valid identifier: it must begin with a letter and contain "
                "only alphanumeric characters or underscores, up to 63 characters."
            )
        port = port_requested or self.control.allocate_port()
        reader_host, reader_port = self.control.reader_address(port)
        arn = cluster_arn(self.region, self.account, ident)
        doc: dict[str, Any] = {
            "id": ident,
            "resource_id": resource_id("cluster"),
            "engine": ENGINE,
            "engine_version": version,
            "status": "creating",
            "port": port,
            "reader_host": reader_host,
            "reader_port": reader_port,
            "master_username": username,
            "database_name": dbname,
            "scaling": scaling,
            "backup_retention": retention,
            "deletion_protection": bool(p.get("DeletionProtection", False)),
            "http_endpoint": bool(p.get("EnableHttpEndpoint", False)),
            "iam_auth": bool(p.get("EnableIAMDatabaseAuthentication", False)),
            "storage_encrypted": bool(p.get("StorageEncrypted", False)),
            "copy_tags_to_snapshot": bool(p.get("CopyTagsToSnapshot", False)),
            "vpc_security_groups": list(p.get("VpcSecurityGroupIds") or []),
            "tags": _tags(p),
            "created": _now(),
            "admin_password": self.control.sealer.seal(generate_password()),
            "password_version": 0,
        }
        insights = rds_pi.apply(p, None, region=self.region, account=self.account)
        if insights is not None:
            doc["performance_insights"] = insights
        with self.control.store.transaction():
            if manage:
                secret = self.secrets.create_secret(
                    master_secret_name(),
                    secret_string=_secret_json(username, generate_password()),
                    description=f"Aurora database user secret for cluster {ident}",
                    tags=[{"Key": "aws:rds:primaryDBClusterArn", "Value": arn}],
                    owning_service="rds",
                )
                doc["master_secret_arn"] = secret["ARN"]
            else:
                doc["master_password"] = self.control.sealer.seal(str(password))
            self.control.put_cluster(doc)
        return {"DBCluster": self.render_cluster(doc)}

    async def describe_db_clusters(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("DBClusterIdentifier"):
            docs = [self._cluster(p["DBClusterIdentifier"])]
        else:
            docs = self.control.clusters.values()
        docs = filtered(
            docs,
            p,
            {
                "db-cluster-id": lambda d: d["id"],
                "engine": lambda d: d["engine"],
                "db-cluster-resource-id": lambda d: d["resource_id"],
            },
        )
        return paged("DBClusters", docs, p, self.render_cluster)

    async def modify_db_cluster(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._cluster(p["DBClusterIdentifier"])
        before = copy.deepcopy(doc)
        if doc["status"] != "available":
            raise AWSError(
                "InvalidDBClusterStateFault",
                f"DB cluster is not available for modification with status {doc['status']}",
            )
        if p.get("NewDBClusterIdentifier"):
            raise _combination("Renaming a DB cluster (NewDBClusterIdentifier) is not supported by Borealis yet.")
        if "EngineVersion" in p:
            doc["engine_version"] = self._engine_version(p["EngineVersion"])
        if "ServerlessV2ScalingConfiguration" in p:
            doc["scaling"] = _scaling(
                p["ServerlessV2ScalingConfiguration"], doc["scaling"], self.settings.min_auto_pause
            )
        if "DeletionProtection" in p:
            doc["deletion_protection"] = bool(p["DeletionProtection"])
        if "EnableHttpEndpoint" in p:
            doc["http_endpoint"] = bool(p["EnableHttpEndpoint"])
        if "EnableIAMDatabaseAuthentication" in p:
            doc["iam_auth"] = bool(p["EnableIAMDatabaseAuthentication"])
        if "BackupRetentionPeriod" in p:
            if not 1 <= p["BackupRetentionPeriod"] <= 35:
                raise _invalid(
                    f"Invalid backup retention period: {p['BackupRetentionPeriod']}. Valid values are 1 to 35 days."
                )
            doc["backup_retention"] = p["BackupRetentionPeriod"]
        if "CopyTagsToSnapshot" in p:
            doc["copy_tags_to_snapshot"] = bool(p["CopyTagsToSnapshot"])
        insights = rds_pi.apply(p, doc.get("performance_insights"), region=self.region, account=self.account)
        if insights is not None:
            # Aurora manages Performance Insights at the cluster level: every instance follows.
            doc["performance_insights"] = insights
            for inst in self.control.cluster_instances(doc["id"]):
                after = {**inst, "performance_insights": dict(insights)}
                self.control.save_instance(inst, after, same_status=False)
        if p.get("Port") is not None and p["Port"] != doc["port"]:
            port = p["Port"]
            if not 1150 <= port <= 65535:
                raise _invalid("Invalid port. Valid values are 1150-65535.")
            if port in self.control.used_ports():
                raise _invalid(f"Port {port} is already used by another endpoint of this Borealis.")
            doc["port"] = port
            doc["reader_host"], doc["reader_port"] = self.control.reader_address(port)
        manage = p.get("ManageMasterUserPassword")
        password = p.get("MasterUserPassword")
        rotate = p.get("RotateMasterUserPassword")
        if manage and password is not None:
            raise _combination(
                "You can't specify both MasterUserPassword and ManageMasterUserPassword. "
                "Specify only one and try again."
            )
        arn = cluster_arn(self.region, self.account, doc["id"])
        password_before = doc.get("password_version", 0)
        with self.control.store.transaction():
            if rotate:
                if not doc.get("master_secret_arn"):
                    raise _combination(
                        "You can't rotate the master user password because ManageMasterUserPassword is not enabled."
                    )
                if not p.get("ApplyImmediately"):
                    raise _combination("RotateMasterUserPassword requires ApplyImmediately to be enabled.")
                self.secrets.put_secret_value(
                    doc["master_secret_arn"],
                    secret_string=_secret_json(doc["master_username"], generate_password()),
                    owning_service="rds",
                )
                doc["password_version"] = doc.get("password_version", 0) + 1
            if manage is True and not doc.get("master_secret_arn"):
                secret = self.secrets.create_secret(
                    master_secret_name(),
                    secret_string=_secret_json(doc["master_username"], generate_password()),
                    description=f"Aurora database user secret for cluster {doc['id']}",
                    tags=[{"Key": "aws:rds:primaryDBClusterArn", "Value": arn}],
                    owning_service="rds",
                )
                doc["master_secret_arn"] = secret["ARN"]
                doc.pop("master_password", None)
                doc["password_version"] = doc.get("password_version", 0) + 1
            elif manage is False and doc.get("master_secret_arn"):
                if password is None:
                    raise _invalid("You must specify MasterUserPassword when you turn off ManageMasterUserPassword.")
                self.secrets.delete_owned(doc.pop("master_secret_arn"))
            if password is not None:
                _check_password(str(password))
                if doc.get("master_secret_arn"):
                    raise _combination(
                        "You can't specify MasterUserPassword because ManageMasterUserPassword is enabled."
                    )
                doc["master_password"] = self.control.sealer.seal(str(password))
                doc["password_version"] = doc.get("password_version", 0) + 1
            if doc.get("password_version", 0) != password_before:
                doc["status"] = "resetting-master-credentials"
            self._save_cluster(before, doc)
        return {"DBCluster": self.render_cluster(doc)}

    async def delete_db_cluster(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._cluster(p["DBClusterIdentifier"])
        skip = bool(p.get("SkipFinalSnapshot", False))
        final = p.get("FinalDBSnapshotIdentifier")
        if skip and final:
            raise _combination("You cannot specify both FinalDBSnapshotIdentifier and SkipFinalSnapshot")
        if not skip and not final:
            raise _combination("FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.")
        if doc["deletion_protection"]:
            raise _combination("Cannot delete protected Cluster, please disable deletion protection and try again.")
        if doc["status"] not in ("available", "stopped", "failed", "incompatible-parameters"):
            raise AWSError("InvalidDBClusterStateFault", f"Cluster cannot be deleted, it is {doc['status']}.")
        if any(i["status"] != "deleting" for i in self.control.cluster_instances(doc["id"])):
            raise AWSError(
                "InvalidDBClusterStateFault",
                "Cluster cannot be deleted, it still contains DB instances in non-deleting state.",
            )
        before = copy.deepcopy(doc)
        doc["status"] = "deleting"
        if p.get("DeleteAutomatedBackups") is False:  # AWS's default is to delete them with the cluster
            doc["retain_backups"] = True
        with self.control.store.transaction():
            if final:
                # The snapshot is taken first (the reconciler holds the deletion until it is made).
                snapshot = _identifier(p, "FinalDBSnapshotIdentifier")
                try:
                    self.control.snapshots.create(doc["id"], snapshot, final=True, tags=_final_tags(doc))
                except SnapshotError as exc:
                    raise AWSError(exc.code, exc.message) from None
                doc["final_snapshot"] = snapshot
            self._save_cluster(before, doc)
        return {"DBCluster": self.render_cluster(doc)}

    async def stop_db_cluster(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._cluster(p["DBClusterIdentifier"])
        if doc["status"] != "available":
            raise AWSError("InvalidDBClusterStateFault", f"DbCluster {doc['id']} is not in available state.")
        before = copy.deepcopy(doc)
        doc["status"] = "stopping"
        with self.control.store.transaction():
            for inst in self.control.cluster_instances(doc["id"]):
                if inst["status"] == "available":
                    self._save_instance(inst, {**inst, "status": "stopping"})
            self._save_cluster(before, doc)
        return {"DBCluster": self.render_cluster(doc)}

    async def start_db_cluster(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._cluster(p["DBClusterIdentifier"])
        if doc["status"] != "stopped":
            raise AWSError("InvalidDBClusterStateFault", f"DbCluster {doc['id']} is not in stopped state.")
        if self.control.snapshots.taking(doc["id"]):
            # A stopped cluster's snapshot copies its data directory: no postgres may start on it meanwhile.
            raise AWSError("InvalidDBClusterStateFault", f"DbCluster {doc['id']} has a snapshot being created.")
        before = copy.deepcopy(doc)
        doc["status"] = "starting"
        with self.control.store.transaction():
            for inst in self.control.cluster_instances(doc["id"]):
                self._save_instance(inst, {**inst, "status": "starting"})
            self._save_cluster(before, doc)
        return {"DBCluster": self.render_cluster(doc)}

    # ----------------------------------------------------------------------------------- instances

    async def create_db_instance(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        ident = _identifier(p, "DBInstanceIdentifier")
        if p["Engine"] != ENGINE:
            raise _invalid(f"Invalid DB engine: {p['Engine']}. Borealis runs aurora-postgresql only.")
        if not p.get("DBClusterIdentifier"):
            raise _invalid(
                "The requested DB Instance will be a member of a DB Cluster. "
                "You need to provide a DBClusterIdentifier for aurora-postgresql."
            )
        cluster = self._cluster(p["DBClusterIdentifier"])
        if self.control.instance(ident) is not None:
            raise AWSError("DBInstanceAlreadyExistsFault", "DB instance already exists")
        if cluster["status"] not in ("available", "creating"):
            raise AWSError("InvalidDBClusterStateFault", f"DB cluster {cluster['id']} is not in available state.")
        klass = p["DBInstanceClass"]
        if not klass.startswith("db."):
            raise _invalid(f"Invalid DB Instance class: {klass}")
        if klass == "db.serverless" and not cluster["scaling"].get("set"):
            raise AWSError(
                "InvalidDBClusterStateFault",
                "Set the Serverless v2 scaling configuration on the parent DB cluster before creating a "
                "Serverless v2 DB instance.",
            )
        for banned in ("MasterUsername", "MasterUserPassword", "DBName"):
            if p.get(banned):
                raise _combination(
                    f"The requested DB Instance will be a member of a DB Cluster. Set {banned} for the DB Cluster."
                )
        tier = p.get("PromotionTier", 1)
        if not 0 <= tier <= 15:
            raise _invalid("PromotionTier must be between 0 and 15.")
        existing = [i for i in self.control.cluster_instances(cluster["id"]) if i["status"] != "deleting"]
        if len(existing) > MAX_READERS:
            raise AWSError(
                "InstanceQuotaExceededFault",
                f"DB cluster {cluster['id']} already has {MAX_READERS} Aurora Replicas, the most a cluster can have.",
            )
        doc = {
            "id": ident,
            "cluster": cluster["id"],
            "resource_id": resource_id("db"),
            "engine": ENGINE,
            "engine_version": cluster["engine_version"],
            "instance_class": klass,
            "status": "creating",
            # The first instance is the writer; every later one a reader (an Aurora Replica) copied from it.
            "role": "reader" if any(i["role"] == "writer" for i in existing) else "writer",
            "port": self.control.allocate_port(),
            "promotion_tier": tier,
            "availability_zone": p.get("AvailabilityZone") or f"{self.region}a",
            "publicly_accessible": bool(p.get("PubliclyAccessible", False)),
            "tags": _tags(p),
            "created": _now(),
        }
        inherited = cluster.get("performance_insights") if not rds_pi.requested(p) else None
        insights = rds_pi.apply(p, None, region=self.region, account=self.account) or inherited
        if insights is not None:
            doc["performance_insights"] = dict(insights)
        self.control.put_instance(doc)
        return {"DBInstance": self.render_instance(doc)}

    async def describe_db_instances(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("DBInstanceIdentifier"):
            docs = [self._instance(p["DBInstanceIdentifier"])]
        else:
            docs = self.control.instances.values()
        docs = filtered(
            docs,
            p,
            {
                "db-cluster-id": lambda d: d["cluster"],
                "db-instance-id": lambda d: d["id"],
                "dbi-resource-id": lambda d: d["resource_id"],
                "engine": lambda d: d["engine"],
            },
        )
        return paged("DBInstances", docs, p, self.render_instance)

    async def modify_db_instance(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._instance(p["DBInstanceIdentifier"])
        before = copy.deepcopy(doc)
        if doc["status"] != "available":
            raise AWSError("InvalidDBInstanceStateFault", "Database instance is not in available state.")
        if p.get("NewDBInstanceIdentifier"):
            raise _combination("Renaming a DB instance (NewDBInstanceIdentifier) is not supported by Borealis yet.")
        if p.get("MasterUserPassword") is not None or p.get("ManageMasterUserPassword") is not None:
            raise _combination(
                "The specified DB instance is a member of a DB cluster. "
                "Modify the master user password for the DB cluster instead."
            )
        if "PromotionTier" in p:
            if not 0 <= p["PromotionTier"] <= 15:
                raise _invalid("PromotionTier must be between 0 and 15.")
            doc["promotion_tier"] = p["PromotionTier"]
        if "DBInstanceClass" in p:
            klass = p["DBInstanceClass"]
            if not klass.startswith("db."):
                raise _invalid(f"Invalid DB Instance class: {klass}")
            doc["instance_class"] = klass
        if "PubliclyAccessible" in p:
            doc["publicly_accessible"] = bool(p["PubliclyAccessible"])
        insights = rds_pi.apply(p, doc.get("performance_insights"), region=self.region, account=self.account)
        if insights is not None:
            doc["performance_insights"] = insights
        self._save_instance(before, doc)
        return {"DBInstance": self.render_instance(doc)}

    async def delete_db_instance(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._instance(p["DBInstanceIdentifier"])
        if p.get("FinalDBSnapshotIdentifier"):
            raise _combination("FinalDBSnapshotIdentifier can not be specified when deleting a cluster instance")
        if doc["status"] == "deleting":
            raise AWSError("InvalidDBInstanceStateFault", f"Instance {doc['id']} is already being deleted.")
        cluster = self.control.cluster(doc["cluster"])
        if cluster is not None and cluster["status"] in ("stopping", "starting", "creating"):
            raise AWSError("InvalidDBClusterStateFault", f"DB cluster {cluster['id']} is {cluster['status']}.")
        self._save_instance(copy.deepcopy(doc), doc | {"status": "deleting"})
        doc["status"] = "deleting"
        return {"DBInstance": self.render_instance(doc)}

    async def reboot_db_instance(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._instance(p["DBInstanceIdentifier"])
        if doc["status"] != "available":
            raise AWSError("InvalidDBInstanceStateFault", f"DB instance {doc['id']} is not in available state.")
        if p.get("ForceFailover") and doc["role"] == "writer":
            # Rebooting the writer with a failover: a reader takes over, the old writer rejoins as a reader.
            try:
                self.control.request_failover(doc["cluster"], None)
            except FailoverRefused as exc:
                raise AWSError(exc.code, exc.message) from None
            return {"DBInstance": self.render_instance(self._instance(doc["id"]))}
        before = copy.deepcopy(doc)
        doc["status"] = "rebooting"
        self._save_instance(before, doc)
        return {"DBInstance": self.render_instance(doc)}

    # ----------------------------------------------------------------------------------- Data API switch

    async def _http_endpoint(self, p: dict[str, Any], enabled: bool) -> dict[str, Any]:
        arn = p["ResourceArn"]
        prefix = f"arn:aws:rds:{self.region}:{self.account}:cluster:"
        doc = self.control.cluster(arn[len(prefix) :]) if arn.startswith(prefix) else None
        if doc is None:
            raise AWSError("ResourceNotFoundFault", f"The specified resource ARN {arn} is not found.")
        if doc["status"] not in ("available", "stopped"):
            raise AWSError("InvalidResourceStateFault", f"The DB cluster {doc['id']} is in the {doc['status']} state.")
        self._save_cluster(copy.deepcopy(doc), {**doc, "http_endpoint": enabled})
        return {"ResourceArn": arn, "HttpEndpointEnabled": enabled}

    async def enable_http_endpoint(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return await self._http_endpoint(p, True)

    async def disable_http_endpoint(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        return await self._http_endpoint(p, False)


def _final_tags(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The tags of a cluster's final snapshot: the cluster's, if it copies its tags to snapshots."""
    return list(doc.get("tags") or []) if doc.get("copy_tags_to_snapshot") else []


def _secret_json(username: str, password: str) -> str:
    import json

    return json.dumps({"username": username, "password": password})


def handlers(control: ControlPlane, secrets: SecretsManager) -> dict[str, Handler]:
    """The RDS operations Borealis serves, by operation name."""
    rds = _Rds(control, secrets)
    return {
        **rds_ha.handlers(control, rds.render_cluster),
        **rds_logs.handlers(control),
        **rds_snapshots.handlers(control, rds.render_cluster),
        "CreateDBCluster": rds.create_db_cluster,
        "DescribeDBClusters": rds.describe_db_clusters,
        "ModifyDBCluster": rds.modify_db_cluster,
        "DeleteDBCluster": rds.delete_db_cluster,
        "StartDBCluster": rds.start_db_cluster,
        "StopDBCluster": rds.stop_db_cluster,
        "CreateDBInstance": rds.create_db_instance,
        "DescribeDBInstances": rds.describe_db_instances,
        "ModifyDBInstance": rds.modify_db_instance,
        "DeleteDBInstance": rds.delete_db_instance,
        "RebootDBInstance": rds.reboot_db_instance,
        "EnableHttpEndpoint": rds.enable_http_endpoint,
        "DisableHttpEndpoint": rds.disable_http_endpoint,
    }
