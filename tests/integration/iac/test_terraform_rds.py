"""Terraform AWS provider call sequences, in the provider's order: create, read, update, read, destroy.

Each test follows one resource's Create/Read/Update/Delete functions as the provider calls the RDS API
(internal/service/rds/*.go): the create call with its tags, the waits on Describe*, the read (Describe*,
ListTagsForResource where the provider lists tags), the update (Modify*, AddTagsToResource and
RemoveTagsFromResource for the tag diff), and the destroy (Delete*, then Describe* until the not-found fault).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

from .tools import aws_json

FAST = {"Delay": 1, "MaxAttempts": 180}
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def _until_not_found(call: Callable[[], Any], code: str) -> None:
    """The provider's RetryUntilNotFound: call until the not-found fault (generous deadline, no timing)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            call()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == code
            return
        time.sleep(0.3)
    raise AssertionError(f"never got {code}")


def _tags(rds: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def _update_tags(rds: Any, arn: str, old: dict[str, str], new: dict[str, str]) -> None:
    """The provider's UpdateTags: remove the keys gone, then add the new and changed ones."""
    gone = [k for k in old if k not in new]
    if gone:
        rds.remove_tags_from_resource(ResourceName=arn, TagKeys=gone)
    changed = [{"Key": k, "Value": v} for k, v in new.items() if old.get(k) != v]
    if changed:
        rds.add_tags_to_resource(ResourceName=arn, Tags=changed)


def test_aws_db_subnet_group(rds: Any) -> None:
    name = _name("tf-subnets")
    out = rds.create_db_subnet_group(
        DBSubnetGroupName=name.upper(),
        DBSubnetGroupDescription="Managed by Terraform",
        SubnetIds=SUBNETS,
        Tags=[{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "db"}],
    )["DBSubnetGroup"]
    assert out["DBSubnetGroupName"] == name  # stored lowercase, as RDS does
    # read
    group = rds.describe_db_subnet_groups(DBSubnetGroupName=name)["DBSubnetGroups"][0]
    arn = group["DBSubnetGroupArn"]
    assert arn == f"arn:aws:rds:us-east-1:000000000000:subgrp:{name}"
    assert sorted(s["SubnetIdentifier"] for s in group["Subnets"]) == SUBNETS
    assert len({s["SubnetAvailabilityZone"]["Name"] for s in group["Subnets"]}) == 2
    assert group["SubnetGroupStatus"] == "Complete" and group["VpcId"]
    assert group["SupportedNetworkTypes"] == ["IPV4"]
    assert _tags(rds, arn) == {"env": "test", "team": "db"}
    # update
    third = "subnet-0a1b2c3d4e5f6071a"
    changed = rds.modify_db_subnet_group(
        DBSubnetGroupName=name, DBSubnetGroupDescription="changed", SubnetIds=[*SUBNETS, third]
    )["DBSubnetGroup"]
    assert changed["DBSubnetGroupDescription"] == "changed" and len(changed["Subnets"]) == 3
    _update_tags(rds, arn, {"env": "test", "team": "db"}, {"env": "prod", "owner": "me"})
    assert _tags(rds, arn) == {"env": "prod", "owner": "me"}
    # destroy
    rds.delete_db_subnet_group(DBSubnetGroupName=name)
    _until_not_found(lambda: rds.describe_db_subnet_groups(DBSubnetGroupName=name), "DBSubnetGroupNotFoundFault")


@pytest.mark.parametrize(
    ("subnets", "code"),
    [
        (["subnet-0a1b2c3d4e5f60718"], "DBSubnetGroupDoesNotCoverEnoughAZs"),
        (["subnet-xyz", "subnet-0a1b2c3d4e5f60718"], "InvalidSubnet"),
    ],
)
def test_subnet_group_validation(rds: Any, subnets: list[str], code: str) -> None:
    with pytest.raises(ClientError) as err:
        rds.create_db_subnet_group(DBSubnetGroupName=_name("bad"), DBSubnetGroupDescription="x", SubnetIds=subnets)
    assert _code(err) == code


def test_subnet_group_errors(rds: Any) -> None:
    with pytest.raises(ClientError) as err:
        rds.create_db_subnet_group(DBSubnetGroupName="default", DBSubnetGroupDescription="x", SubnetIds=SUBNETS)
    assert _code(err) == "InvalidParameterValue"
    name = _name("dup")
    rds.create_db_subnet_group(DBSubnetGroupName=name, DBSubnetGroupDescription="x", SubnetIds=SUBNETS)
    with pytest.raises(ClientError) as err:
        rds.create_db_subnet_group(DBSubnetGroupName=name, DBSubnetGroupDescription="x", SubnetIds=SUBNETS)
    assert _code(err) == "DBSubnetGroupAlreadyExists"
    rds.delete_db_subnet_group(DBSubnetGroupName=name)
    with pytest.raises(ClientError) as err:
        rds.delete_db_subnet_group(DBSubnetGroupName=name)
    assert _code(err) == "DBSubnetGroupNotFoundFault"
    names = [g["DBSubnetGroupName"] for g in rds.describe_db_subnet_groups()["DBSubnetGroups"]]
    assert names[0] == "default"


def test_tags_refused_as_rds_refuses_them(rds: Any) -> None:
    arn = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]["DBClusterArn"]
    for tags in ([{"Key": "aws:x", "Value": "1"}], [{"Key": "k", "Value": "bad\u0007char"}]):
        with pytest.raises(ClientError) as err:
            rds.add_tags_to_resource(ResourceName=arn, Tags=tags)
        assert _code(err) == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(51)])
    assert _code(err) == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:  # the same rules at creation
        rds.create_db_subnet_group(
            DBSubnetGroupName=_name("tagged"), DBSubnetGroupDescription="x", SubnetIds=SUBNETS,
            Tags=[{"Key": "rds:x", "Value": "1"}],
        )  # fmt: skip
    assert _code(err) == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        rds.create_db_cluster(
            DBClusterIdentifier=_name("tagged"), Engine="aurora-postgresql", MasterUsername="app",
            ManageMasterUserPassword=True, Tags=[{"Key": "aws:x", "Value": "1"}],
        )  # fmt: skip
    assert _code(err) == "InvalidParameterValue"
    for missing, code in (
        ("arn:aws:rds:us-east-1:000000000000:cluster:nope", "DBClusterNotFoundFault"),
        ("arn:aws:rds:us-east-1:000000000000:db:nope", "DBInstanceNotFound"),
        ("arn:aws:rds:us-east-1:000000000000:db-proxy:prx-nope", "DBProxyNotFoundFault"),
        ("arn:aws:rds:us-east-1:000000000000:subgrp:nope", "DBSubnetGroupNotFoundFault"),
        ("arn:aws:rds:us-east-1:000000000000:es:nope", "InvalidParameterValue"),
    ):
        with pytest.raises(ClientError) as err:
            rds.list_tags_for_resource(ResourceName=missing)
        assert _code(err) == code, missing


def test_aws_rds_cluster_and_instance(borealis: BorealisProcess, rds: Any) -> None:
    subnets = _name("tf-sng")
    rds.create_db_subnet_group(DBSubnetGroupName=subnets, DBSubnetGroupDescription="x", SubnetIds=SUBNETS)
    cid, iid = _name("tf-cluster"), _name("tf-instance")
    with pytest.raises(ClientError) as err:
        rds.create_db_cluster(
            DBClusterIdentifier=cid, Engine="aurora-postgresql", MasterUsername="app", ManageMasterUserPassword=True,
            DBSubnetGroupName="no-such-group",
        )  # fmt: skip
    assert _code(err) == "DBSubnetGroupNotFoundFault"
    _until_not_found(lambda: rds.describe_db_clusters(DBClusterIdentifier=cid), "DBClusterNotFoundFault")
    # aws_rds_cluster create
    created = rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        EngineMode="provisioned",
        MasterUsername="app",
        ManageMasterUserPassword=True,
        DBSubnetGroupName=subnets,
        CopyTagsToSnapshot=False,
        DeletionProtection=False,
        StorageEncrypted=True,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 2},
        EnableCloudwatchLogsExports=["postgresql"],
        Tags=[{"Key": "Name", "Value": "tf"}],
    )["DBCluster"]
    assert created["DBSubnetGroup"] == subnets
    # what AWS returns for every Aurora Serverless v2 cluster
    assert created["KmsKeyId"].startswith("arn:aws:kms:us-east-1:000000000000:key/")
    assert created["VpcSecurityGroups"] == [{"VpcSecurityGroupId": "sg-0b0ea115000000000", "Status": "active"}]
    assert created["ActivityStreamStatus"] == "stopped"
    assert created["EnabledCloudwatchLogsExports"] == ["postgresql"]
    assert created["CertificateDetails"]["CAIdentifier"] == "rds-ca-rsa2048-g1"
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    # aws_rds_cluster read: the cluster, then whether it is in a global cluster; tags from TagList
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]
    assert cluster["DBSubnetGroup"] == subnets
    assert {t["Key"]: t["Value"] for t in cluster["TagList"]} == {"Name": "tf"}
    assert rds.describe_global_clusters()["GlobalClusters"] == []
    arn = cluster["DBClusterArn"]
    # aws_rds_cluster_instance create and read
    with pytest.raises(ClientError) as err:
        rds.create_db_instance(
            DBInstanceIdentifier=iid, DBClusterIdentifier=cid, DBInstanceClass="db.serverless",
            Engine="aurora-postgresql", DBSubnetGroupName="default",
        )  # fmt: skip
    assert _code(err) == "InvalidParameterCombination"
    creating = rds.create_db_instance(
        DBInstanceIdentifier=iid,
        DBClusterIdentifier=cid,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
        DBSubnetGroupName=subnets,
        PubliclyAccessible=False,
        Tags=[{"Key": "Name", "Value": "tf-instance"}],
    )["DBInstance"]
    assert creating["DBInstanceStatus"] == "creating" and "Endpoint" not in creating
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    inst = rds.describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"][0]
    assert inst["Endpoint"]["Port"] > 0
    assert inst["KmsKeyId"] == created["KmsKeyId"]
    assert inst["VpcSecurityGroups"] == created["VpcSecurityGroups"]
    assert inst["OptionGroupMemberships"][0]["OptionGroupName"].startswith("default:aurora-postgresql-")
    assert inst["CertificateDetails"]["CAIdentifier"] == inst["CACertificateIdentifier"]
    assert inst["EnabledCloudwatchLogsExports"] == ["postgresql"]
    assert inst["ActivityStreamStatus"] == "stopped"
    assert inst["DBSubnetGroup"]["DBSubnetGroupName"] == subnets
    assert len(inst["DBSubnetGroup"]["Subnets"]) == 2
    iarn = inst["DBInstanceArn"]
    # update: tags on both, log exports off
    changed = rds.modify_db_cluster(
        DBClusterIdentifier=cid, CloudwatchLogsExportConfiguration={"DisableLogTypes": ["postgresql"]},
        ApplyImmediately=True,
    )["DBCluster"]  # fmt: skip
    assert "EnabledCloudwatchLogsExports" not in changed
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    _update_tags(rds, arn, {"Name": "tf"}, {"Name": "tf2", "env": "dev"})
    _update_tags(rds, iarn, {"Name": "tf-instance"}, {})
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]
    assert {t["Key"]: t["Value"] for t in cluster["TagList"]} == {"Name": "tf2", "env": "dev"}
    assert _tags(rds, arn) == {"Name": "tf2", "env": "dev"}
    assert rds.describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"][0]["TagList"] == []
    # the subnet group is in use
    with pytest.raises(ClientError) as err:
        rds.delete_db_subnet_group(DBSubnetGroupName=subnets)
    assert _code(err) == "InvalidDBSubnetGroupStateFault"
    # destroy: instance, cluster (SkipFinalSnapshot), subnet group
    rds.delete_db_instance(DBInstanceIdentifier=iid, SkipFinalSnapshot=True)
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
    _until_not_found(lambda: rds.describe_db_clusters(DBClusterIdentifier=cid), "DBClusterNotFoundFault")
    rds.delete_db_subnet_group(DBSubnetGroupName=subnets)
    _until_not_found(lambda: rds.describe_db_subnet_groups(DBSubnetGroupName=subnets), "DBSubnetGroupNotFoundFault")


def test_unknown_log_type_refused(rds: Any) -> None:
    with pytest.raises(ClientError) as err:
        rds.create_db_cluster(
            DBClusterIdentifier=_name("logs"), Engine="aurora-postgresql", MasterUsername="app",
            ManageMasterUserPassword=True, EnableCloudwatchLogsExports=["audit"],
        )  # fmt: skip
    assert _code(err) == "InvalidParameterCombination"


def test_tags_on_proxies(rds: Any, secretsmanager: Any) -> None:
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    name = _name("tf-proxy")
    proxy = rds.create_db_proxy(
        DBProxyName=name,
        EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": cluster["MasterUserSecret"]["SecretArn"], "IAMAuth": "DISABLED"}],
        RoleArn="arn:aws:iam::000000000000:role/proxy",
        VpcSubnetIds=SUBNETS,
        Tags=[{"Key": "a", "Value": "1"}],
    )["DBProxy"]
    try:
        arn = proxy["DBProxyArn"]
        assert _tags(rds, arn) == {"a": "1"}
        rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "b", "Value": "2"}])
        assert _tags(rds, arn) == {"a": "1", "b": "2"}
        group = rds.describe_db_proxy_target_groups(DBProxyName=name)["TargetGroups"][0]
        rds.add_tags_to_resource(ResourceName=group["TargetGroupArn"], Tags=[{"Key": "tg", "Value": "x"}])
        assert _tags(rds, group["TargetGroupArn"]) == {"tg": "x"}
    finally:
        rds.delete_db_proxy(DBProxyName=name)


def test_aws_cli_subnet_groups_and_tags(borealis: BorealisProcess) -> None:
    name = _name("cli-subnets")
    out = aws_json(
        borealis, "rds", "create-db-subnet-group", "--db-subnet-group-name", name,
        "--db-subnet-group-description", "cli", "--subnet-ids", *SUBNETS, "--tags", "Key=k,Value=v",
    )  # fmt: skip
    arn = out["DBSubnetGroup"]["DBSubnetGroupArn"]
    assert aws_json(borealis, "rds", "list-tags-for-resource", "--resource-name", arn)["TagList"] == [
        {"Key": "k", "Value": "v"}
    ]
    aws_json(borealis, "rds", "add-tags-to-resource", "--resource-name", arn, "--tags", "Key=k2,Value=v2")
    aws_json(borealis, "rds", "remove-tags-from-resource", "--resource-name", arn, "--tag-keys", "k")
    assert aws_json(borealis, "rds", "list-tags-for-resource", "--resource-name", arn)["TagList"] == [
        {"Key": "k2", "Value": "v2"}
    ]
    aws_json(borealis, "rds", "modify-db-subnet-group", "--db-subnet-group-name", name, "--subnet-ids", *SUBNETS)
    groups = aws_json(borealis, "rds", "describe-db-subnet-groups", "--db-subnet-group-name", name)
    assert groups["DBSubnetGroups"][0]["DBSubnetGroupDescription"] == "cli"
    aws_json(borealis, "rds", "delete-db-subnet-group", "--db-subnet-group-name", name)


def test_aws_rds_cluster_destroy_with_final_snapshot(rds: Any) -> None:
    """Terraform's default destroy (skip_final_snapshot = false): DeleteDBCluster with the final snapshot's id,
    then DescribeDBClusters until not found; the snapshot stays, with the cluster's tags (copy_tags_to_snapshot)."""
    cid, iid, final = _name("tf-final"), _name("tf-final-i"), _name("tf-final-snap")
    rds.create_db_cluster(
        DBClusterIdentifier=cid, Engine="aurora-postgresql", MasterUsername="app", ManageMasterUserPassword=True,
        CopyTagsToSnapshot=True, ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 2},
        Tags=[{"Key": "Name", "Value": "tf"}],
    )  # fmt: skip
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    rds.create_db_instance(
        DBInstanceIdentifier=iid, DBClusterIdentifier=cid, DBInstanceClass="db.serverless", Engine="aurora-postgresql"
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    # destroy: the instance, then the cluster with its final snapshot
    rds.delete_db_instance(DBInstanceIdentifier=iid, SkipFinalSnapshot=True)
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    deleting = rds.delete_db_cluster(
        DBClusterIdentifier=cid, SkipFinalSnapshot=False, FinalDBSnapshotIdentifier=final, DeleteAutomatedBackups=True
    )["DBCluster"]
    assert deleting["Status"] == "deleting"
    _until_not_found(lambda: rds.describe_db_clusters(DBClusterIdentifier=cid), "DBClusterNotFoundFault")
    rds.get_waiter("db_cluster_snapshot_available").wait(DBClusterSnapshotIdentifier=final, WaiterConfig=FAST)
    [snap] = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=final)["DBClusterSnapshots"]
    assert (snap["DBClusterIdentifier"], snap["SnapshotType"], snap["MasterUsername"]) == (cid, "manual", "app")
    assert snap["TagList"] == [{"Key": "Name", "Value": "tf"}]
    rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=final)
    _until_not_found(
        lambda: rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=final), "DBClusterSnapshotNotFoundFault"
    )
