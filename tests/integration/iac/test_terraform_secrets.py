"""Secrets Manager as Terraform and CDK drive it: secrets with policies and versions, managed rotation, batch
reads; and ModifyDBProxyEndpoint (aws_db_proxy_endpoint's update).

aws_secretsmanager_secret: CreateSecret, then DescribeSecret and GetResourcePolicy on every read,
PutResourcePolicy (aws_secretsmanager_secret_policy, BlockPublicPolicy), DeleteSecret with a recovery window.
aws_secretsmanager_secret_version: PutSecretValue, GetSecretValue by VersionId, and on destroy
UpdateSecretVersionStage removing its label. aws_secretsmanager_secret_rotation: RotateSecret, then
DescribeSecret; destroy is CancelRotateSecret.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

from .test_terraform_rds import FAST, SUBNETS, _code, _name, _until_not_found
from .tools import aws_json

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::000000000000:role/app"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }
    ],
}
PUBLIC = {"Version": "2012-10-17", "Statement": [{**POLICY["Statement"][0], "Principal": "*"}]}


def test_aws_secretsmanager_secret_policy_and_version(secretsmanager: Any) -> None:
    name = _name("tf/secret")
    arn = secretsmanager.create_secret(
        Name=name, Description="Managed by Terraform", Tags=[{"Key": "a", "Value": "1"}]
    )["ARN"]
    # read
    described = secretsmanager.describe_secret(SecretId=arn)
    assert described["RotationEnabled"] is False
    assert "ResourcePolicy" not in secretsmanager.get_resource_policy(SecretId=arn)
    # aws_secretsmanager_secret_policy
    text = json.dumps(POLICY)
    assert secretsmanager.validate_resource_policy(ResourcePolicy=text)["PolicyValidationPassed"] is True
    with pytest.raises(ClientError) as err:
        secretsmanager.put_resource_policy(SecretId=arn, ResourcePolicy=json.dumps(PUBLIC), BlockPublicPolicy=True)
    assert _code(err) == "PublicPolicyException"
    secretsmanager.put_resource_policy(SecretId=arn, ResourcePolicy=text, BlockPublicPolicy=True)
    assert json.loads(secretsmanager.get_resource_policy(SecretId=arn)["ResourcePolicy"]) == POLICY
    with pytest.raises(ClientError) as err:
        secretsmanager.put_resource_policy(SecretId=arn, ResourcePolicy="{not json")
    assert _code(err) == "MalformedPolicyDocumentException"
    bad = secretsmanager.validate_resource_policy(
        SecretId=arn, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]})
    )
    assert bad["PolicyValidationPassed"] is False and bad["ValidationErrors"]
    # aws_secretsmanager_secret_version
    v1 = secretsmanager.put_secret_value(SecretId=arn, SecretString='{"k": "v1"}', ClientRequestToken="a" * 32)
    assert secretsmanager.get_secret_value(SecretId=arn, VersionId=v1["VersionId"])["SecretString"] == '{"k": "v1"}'
    v2 = secretsmanager.put_secret_value(SecretId=arn, SecretString='{"k": "v2"}', VersionStages=["AWSCURRENT"])
    secretsmanager.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSPREVIOUS", RemoveFromVersionId=v1["VersionId"]
    )
    assert secretsmanager.get_secret_value(SecretId=arn)["VersionId"] == v2["VersionId"]
    # the policy goes, then the secret
    secretsmanager.delete_resource_policy(SecretId=arn)
    assert "ResourcePolicy" not in secretsmanager.get_resource_policy(SecretId=arn)
    deleted = secretsmanager.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    assert deleted["DeletionDate"]
    assert secretsmanager.describe_secret(SecretId=arn)["DeletedDate"]
    with pytest.raises(ClientError) as err:
        secretsmanager.put_resource_policy(SecretId=arn, ResourcePolicy=text)
    assert _code(err) == "InvalidRequestException"


def test_rotation_needs_a_managed_secret(secretsmanager: Any) -> None:
    arn = secretsmanager.create_secret(Name=_name("plain"), SecretString="x")["ARN"]
    with pytest.raises(ClientError) as err:
        secretsmanager.rotate_secret(
            SecretId=arn,
            RotationLambdaARN="arn:aws:lambda:us-east-1:000000000000:function:rotate",
            RotationRules={"AutomaticallyAfterDays": 30},
        )
    assert _code(err) == "InvalidRequestException"
    assert secretsmanager.describe_secret(SecretId=arn)["RotationEnabled"] is False
    secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_batch_get_secret_value(secretsmanager: Any) -> None:
    prefix = _name("batch")
    arns = [secretsmanager.create_secret(Name=f"{prefix}/{i}", SecretString=str(i))["ARN"] for i in range(3)]
    out = secretsmanager.batch_get_secret_value(SecretIdList=[*arns[:2], f"{prefix}/missing"])
    assert sorted(v["SecretString"] for v in out["SecretValues"]) == ["0", "1"]
    assert [(e["SecretId"], e["ErrorCode"]) for e in out["Errors"]] == [
        (f"{prefix}/missing", "ResourceNotFoundException")
    ]
    first = secretsmanager.batch_get_secret_value(Filters=[{"Key": "name", "Values": [prefix]}], MaxResults=2)
    second = secretsmanager.batch_get_secret_value(
        Filters=[{"Key": "name", "Values": [prefix]}], MaxResults=2, NextToken=first["NextToken"]
    )
    assert "NextToken" not in second
    assert sorted(v["SecretString"] for page in (first, second) for v in page["SecretValues"]) == ["0", "1", "2"]
    with pytest.raises(ClientError) as err:
        secretsmanager.batch_get_secret_value()
    assert _code(err) == "InvalidParameterException"
    for arn in arns:
        secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_managed_master_secret_rotation(borealis: BorealisProcess, rds: Any, secretsmanager: Any) -> None:
    cid, iid = _name("rotating"), _name("rotating-1")
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=cid, Engine="aurora-postgresql", MasterUsername="app", ManageMasterUserPassword=True,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 1},
    )["DBCluster"]  # fmt: skip
    arn = cluster["MasterUserSecret"]["SecretArn"]
    rds.create_db_instance(
        DBInstanceIdentifier=iid, DBClusterIdentifier=cid, DBInstanceClass="db.serverless", Engine="aurora-postgresql"
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    described = secretsmanager.describe_secret(SecretId=arn)
    # RDS's managed secrets rotate every 7 days unless told otherwise
    assert described["RotationEnabled"] is True and described["RotationRules"]["AutomaticallyAfterDays"] == 7
    assert described["NextRotationDate"] > described["CreatedDate"]
    before = secretsmanager.get_secret_value(SecretId=arn)
    out = secretsmanager.rotate_secret(SecretId=arn, RotationRules={"AutomaticallyAfterDays": 3})
    assert out["VersionId"] != before["VersionId"]
    after = secretsmanager.get_secret_value(SecretId=arn)
    assert after["VersionId"] == out["VersionId"] and after["SecretString"] != before["SecretString"]
    described = secretsmanager.describe_secret(SecretId=arn)
    assert described["RotationRules"]["AutomaticallyAfterDays"] == 3
    assert (described["NextRotationDate"] - described["LastRotatedDate"]).days == 3
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    with borealis.master_connect(cid) as conn:  # logs in with the rotated password
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError):
        value = json.loads(before["SecretString"])
        psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user="app", password=value["password"],
            dbname="postgres", connect_timeout=10,
        ).close()  # fmt: skip
    # only a schedule change: no new value
    out = secretsmanager.rotate_secret(
        SecretId=arn, RotationRules={"ScheduleExpression": "rate(10 days)"}, RotateImmediately=False
    )
    assert out["VersionId"] == after["VersionId"]
    secretsmanager.cancel_rotate_secret(SecretId=arn)
    described = secretsmanager.describe_secret(SecretId=arn)
    assert described["RotationEnabled"] is False and "NextRotationDate" not in described
    rds.delete_db_instance(DBInstanceIdentifier=iid, SkipFinalSnapshot=True)
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
    _until_not_found(lambda: rds.describe_db_clusters(DBClusterIdentifier=cid), "DBClusterNotFoundFault")


def _until_proxy_available(rds: Any, name: str) -> None:
    deadline = time.monotonic() + 120
    while rds.describe_db_proxies(DBProxyName=name)["DBProxies"][0]["Status"] != "available":
        assert time.monotonic() < deadline, f"proxy {name} never became available"
        time.sleep(0.2)


def test_modify_db_proxy_endpoint(rds: Any) -> None:
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    proxy, endpoint = _name("tf-px"), _name("tf-pxe")
    rds.create_db_proxy(
        DBProxyName=proxy, EngineFamily="POSTGRESQL", RoleArn="arn:aws:iam::000000000000:role/proxy",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": cluster["MasterUserSecret"]["SecretArn"], "IAMAuth": "DISABLED"}],
        VpcSubnetIds=SUBNETS,
    )  # fmt: skip
    try:
        _until_proxy_available(rds, proxy)
        created = rds.create_db_proxy_endpoint(
            DBProxyName=proxy, DBProxyEndpointName=endpoint, VpcSubnetIds=SUBNETS, TargetRole="READ_ONLY"
        )["DBProxyEndpoint"]
        renamed = rds.modify_db_proxy_endpoint(
            DBProxyEndpointName=endpoint, NewDBProxyEndpointName=endpoint + "-2", VpcSecurityGroupIds=["sg-0123abcd"]
        )["DBProxyEndpoint"]
        assert renamed["DBProxyEndpointName"] == endpoint + "-2"
        assert renamed["VpcSecurityGroupIds"] == ["sg-0123abcd"]
        assert (
            renamed["Endpoint"] == created["Endpoint"]
            and renamed["DBProxyEndpointArn"] == created["DBProxyEndpointArn"]
        )
        with pytest.raises(ClientError) as err:
            rds.describe_db_proxy_endpoints(DBProxyEndpointName=endpoint)
        assert _code(err) == "DBProxyEndpointNotFoundFault"
        found = rds.describe_db_proxy_endpoints(DBProxyEndpointName=endpoint + "-2")["DBProxyEndpoints"]
        assert found[0]["TargetRole"] == "READ_ONLY"
        with pytest.raises(ClientError) as err:
            rds.modify_db_proxy_endpoint(DBProxyEndpointName=endpoint + "-2", NewDBProxyEndpointName=proxy)
        assert _code(err) == "DBProxyEndpointAlreadyExistsFault"
        rds.delete_db_proxy_endpoint(DBProxyEndpointName=endpoint + "-2")
    finally:
        rds.delete_db_proxy(DBProxyName=proxy)


def test_aws_cli_secret_policy_and_batch(borealis: BorealisProcess) -> None:
    name = _name("cli-secret")
    arn = aws_json(borealis, "secretsmanager", "create-secret", "--name", name, "--secret-string", "s")["ARN"]
    aws_json(
        borealis, "secretsmanager", "put-resource-policy", "--secret-id", arn, "--resource-policy", json.dumps(POLICY)
    )
    got = aws_json(borealis, "secretsmanager", "get-resource-policy", "--secret-id", arn)
    assert json.loads(got["ResourcePolicy"]) == POLICY
    batch = aws_json(borealis, "secretsmanager", "batch-get-secret-value", "--secret-id-list", arn)
    assert [v["SecretString"] for v in batch["SecretValues"]] == ["s"]
    aws_json(borealis, "secretsmanager", "delete-secret", "--secret-id", arn, "--force-delete-without-recovery")


def test_aws_db_proxy_resources(rds: Any) -> None:
    """aws_db_proxy, aws_db_proxy_default_target_group, aws_db_proxy_target and aws_db_proxy_endpoint."""
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    name, endpoint = _name("tf-proxy"), _name("tf-proxy-ep")
    auth = [
        {
            "AuthScheme": "SECRETS",
            "SecretArn": cluster["MasterUserSecret"]["SecretArn"],
            "IAMAuth": "DISABLED",
            "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
        }
    ]
    role = "arn:aws:iam::000000000000:role/proxy"
    # aws_db_proxy create: CreateDBProxy with tags, wait for available, read (+ tags by ARN)
    arn = rds.create_db_proxy(
        DBProxyName=name, EngineFamily="POSTGRESQL", RoleArn=role, Auth=auth, VpcSubnetIds=SUBNETS,
        Tags=[{"Key": "Name", "Value": name}], IdleClientTimeout=1800, RequireTLS=False, DebugLogging=False,
    )["DBProxy"]["DBProxyArn"]  # fmt: skip
    _until_proxy_available(rds, name)
    assert rds.list_tags_for_resource(ResourceName=arn)["TagList"] == [{"Key": "Name", "Value": name}]
    # aws_db_proxy update: every argument again, NewDBProxyName equal to the name
    rds.modify_db_proxy(
        DBProxyName=name, NewDBProxyName=name, DebugLogging=True, RequireTLS=False, RoleArn=role, Auth=auth,
        IdleClientTimeout=900,
    )  # fmt: skip
    _until_proxy_available(rds, name)
    proxy = rds.describe_db_proxies(DBProxyName=name)["DBProxies"][0]
    assert proxy["DebugLogging"] is True and proxy["IdleClientTimeout"] == 900
    rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "env", "Value": "dev"}])
    # aws_db_proxy_default_target_group
    pool = {"MaxConnectionsPercent": 90, "MaxIdleConnectionsPercent": 50, "ConnectionBorrowTimeout": 60}
    rds.modify_db_proxy_target_group(DBProxyName=name, TargetGroupName="default", ConnectionPoolConfig=pool)
    group = rds.describe_db_proxy_target_groups(DBProxyName=name, TargetGroupName="default")["TargetGroups"][0]
    assert group["ConnectionPoolConfig"]["MaxConnectionsPercent"] == 90
    # aws_db_proxy_target
    rds.register_db_proxy_targets(DBProxyName=name, TargetGroupName="default", DBClusterIdentifiers=["default"])
    targets = rds.describe_db_proxy_targets(DBProxyName=name, TargetGroupName="default")["Targets"]
    assert any(t["Type"] == "TRACKED_CLUSTER" and t["TrackedClusterId"] == "default" for t in targets)
    # aws_db_proxy_endpoint: create, wait, read (+ tags), update, destroy
    ep = rds.create_db_proxy_endpoint(
        DBProxyName=name, DBProxyEndpointName=endpoint, VpcSubnetIds=SUBNETS, TargetRole="READ_WRITE",
        Tags=[{"Key": "ep", "Value": "1"}],
    )["DBProxyEndpoint"]  # fmt: skip
    assert rds.list_tags_for_resource(ResourceName=ep["DBProxyEndpointArn"])["TagList"] == [{"Key": "ep", "Value": "1"}]
    rds.modify_db_proxy_endpoint(DBProxyEndpointName=endpoint, VpcSecurityGroupIds=["sg-0123abcd"])
    assert rds.describe_db_proxy_endpoints(DBProxyEndpointName=endpoint)["DBProxyEndpoints"][0][
        "VpcSecurityGroupIds"
    ] == ["sg-0123abcd"]
    rds.delete_db_proxy_endpoint(DBProxyEndpointName=endpoint)
    _until_not_found(
        lambda: rds.describe_db_proxy_endpoints(DBProxyEndpointName=endpoint), "DBProxyEndpointNotFoundFault"
    )
    # destroy: the target, then the proxy (wait until not found)
    rds.deregister_db_proxy_targets(DBProxyName=name, TargetGroupName="default", DBClusterIdentifiers=["default"])
    rds.delete_db_proxy(DBProxyName=name)
    _until_not_found(lambda: rds.describe_db_proxies(DBProxyName=name), "DBProxyNotFoundFault")
