"""RDS operations that describe what can be made: engine versions, orderable instance options, global clusters.

The engine versions are those :func:`borealis.groups.engine_versions` lists, the ones this Borealis can create
clusters with, described as Aurora PostgreSQL describes them (family, Serverless v2 ACU range, log export).
Instance classes: ``db.serverless`` is what Borealis runs; any other ``db.*`` class is accepted and runs the
same postgres, so the common ones are listed and a named one is answered for.

Terraform's aws_rds_cluster reads DescribeGlobalClusters on every refresh to learn whether the cluster is a
member of a global database; Borealis has none, so the answer is an empty list (and a named one is not found).
"""

from __future__ import annotations

from typing import Any

from borealis.aws import AWSError, Handler, RequestContext
from borealis.control import ControlPlane
from borealis.groups import engine_versions, family_of
from borealis.services._describe import filtered, paged

__all__ = ["handlers"]

ENGINE = "aurora-postgresql"
_CLASSES = ("db.serverless", "db.t4g.medium", "db.r6g.large", "db.r7g.large")


class _Catalog:
    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self.region = control.settings.region

    def _versions(self, p: dict[str, Any]) -> list[str]:
        if p.get("Engine") not in (None, ENGINE):
            return []
        versions = engine_versions(self.control)
        wanted = p.get("EngineVersion")
        if wanted:
            # "16" matches every 16.x, as RDS matches a major version given alone.
            versions = [v for v in versions if v == wanted or v.split(".")[0] == wanted]
        return versions

    def render_version(self, version: str) -> dict[str, Any]:
        major = version.split(".")[0]
        return {
            "Engine": ENGINE,
            "MajorEngineVersion": major,
            "EngineVersion": version,
            "DBParameterGroupFamily": family_of(version),
            "DBEngineDescription": "Aurora (PostgreSQL)",
            "DBEngineVersionDescription": f"Aurora PostgreSQL (Compatible with PostgreSQL {version})",
            "ValidUpgradeTarget": [],
            "ExportableLogTypes": ["postgresql"],
            "SupportsLogExportsToCloudwatchLogs": True,
            "SupportsReadReplica": False,
            "SupportedEngineModes": ["provisioned"],
            "SupportedFeatureNames": [],
            "Status": "available",
            "SupportsParallelQuery": False,
            "SupportsGlobalDatabases": False,
            "SupportsBabelfish": False,
            "SupportsLimitlessDatabase": False,
            "SupportsCertificateRotationWithoutRestart": True,
            "SupportedCACertificateIdentifiers": ["rds-ca-rsa2048-g1"],
            "SupportsLocalWriteForwarding": False,
            "SupportsIntegrations": False,
            "ServerlessV2FeaturesSupport": {"MinCapacity": 0.0, "MaxCapacity": 256.0},
            "TagList": [],
        }

    async def describe_engine_versions(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        versions = self._versions(p)
        if p.get("DBParameterGroupFamily"):
            versions = [v for v in versions if family_of(v) == p["DBParameterGroupFamily"]]
        if p.get("DefaultOnly") and versions:
            # The version a cluster created without EngineVersion runs (the default engine's).
            default = self.control.engine_version
            versions = [default] if default in versions else versions[-1:]
        docs = [{"version": v, "engine": ENGINE} for v in versions]
        docs = filtered(
            docs,
            p,
            {
                "engine": lambda d: d["engine"],
                "engine-version": lambda d: d["version"],
                "engine-mode": lambda d: "provisioned",
                "status": lambda d: "available",
            },
        )
        return paged("DBEngineVersions", docs, p, lambda d: self.render_version(d["version"]))

    async def describe_orderable_options(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        klass = p.get("DBInstanceClass")
        classes = ([klass] if klass.startswith("db.") else []) if klass else list(_CLASSES)
        if p.get("Vpc") is False:
            classes = []  # every Borealis instance is "in a VPC", as Aurora's are
        options = [(v, c) for v in self._versions(p) for c in classes]
        zones = [{"Name": f"{self.region}{z}"} for z in "abc"]

        def render(item: dict[str, Any]) -> dict[str, Any]:
            return {
                "Engine": ENGINE,
                "EngineVersion": item["version"],
                "DBInstanceClass": item["class"],
                "LicenseModel": "postgresql-license",
                "AvailabilityZones": zones,
                "MultiAZCapable": False,
                "ReadReplicaCapable": False,
                "Vpc": True,
                "SupportsStorageEncryption": True,
                "StorageType": "aurora",
                "SupportsIops": False,
                "SupportsStorageThroughput": False,
                "SupportsEnhancedMonitoring": False,
                "SupportsIAMDatabaseAuthentication": True,
                "SupportsPerformanceInsights": True,
                "SupportedEngineModes": ["provisioned"],
                "SupportsStorageAutoscaling": False,
                "SupportsKerberosAuthentication": False,
                "OutpostCapable": False,
                "SupportedActivityStreamModes": [],
                "SupportsGlobalDatabases": False,
                "SupportedNetworkTypes": ["IPV4"],
                "SupportsClusters": False,
            }

        docs = [{"version": v, "class": c} for v, c in options]
        return paged("OrderableDBInstanceOptions", docs, p, render)

    async def describe_global_clusters(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("GlobalClusterIdentifier"):
            raise AWSError("GlobalClusterNotFoundFault", f"Global cluster {p['GlobalClusterIdentifier']} not found.")
        docs = filtered([], p, {"global-cluster-id": lambda d: d["id"], "engine": lambda d: d["engine"]})
        return paged("GlobalClusters", docs, p)


def handlers(control: ControlPlane) -> dict[str, Handler]:
    """The catalog operations, by operation name (merged into the rds service)."""
    api = _Catalog(control)
    return {
        "DescribeDBEngineVersions": api.describe_engine_versions,
        "DescribeOrderableDBInstanceOptions": api.describe_orderable_options,
        "DescribeGlobalClusters": api.describe_global_clusters,
    }
