"""The query/XML protocol (rds) through a real boto3 client."""

from __future__ import annotations

import datetime as dt

import pytest
from aws_harness import REGION, Recorder
from botocore.exceptions import ClientError

from borealis.aws import AWSError

CREATED = dt.datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=dt.UTC)

CLUSTER = {
    "DBClusterIdentifier": "app",
    "Status": "available",
    "Engine": "aurora-postgresql",
    "Port": 5432,
    "MultiAZ": False,
    "IAMDatabaseAuthenticationEnabled": True,
    "ClusterCreateTime": CREATED,
    "ServerlessV2ScalingConfiguration": {
        "MinCapacity": 0.5,
        "MaxCapacity": 16.0,
        "SecondsUntilAutoPause": 300,
    },
    "DBClusterMembers": [
        {"DBInstanceIdentifier": "app-1", "IsClusterWriter": True, "PromotionTier": 1},
        {"DBInstanceIdentifier": "app-2", "IsClusterWriter": False, "PromotionTier": 2},
    ],
    "TagList": [{"Key": "team", "Value": "data & <ops>"}],
    "AvailabilityZones": ["eu-west-1a", "eu-west-1b"],
    "CustomEndpoints": [],
}


def test_create_db_cluster_input_is_typed(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds": {"CreateDBCluster": recorder.returning({"DBCluster": CLUSTER})}})
    rds = harness.client("rds")
    out = rds.create_db_cluster(
        DBClusterIdentifier="app",
        Engine="aurora-postgresql",
        Port=5432,
        EnableHttpEndpoint=True,
        DeletionProtection=False,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0, "MaxCapacity": 8.5, "SecondsUntilAutoPause": 600},
        VpcSecurityGroupIds=["sg-1", "sg-2"],
        Tags=[{"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "me"}],
    )
    ctx, args = recorder.calls[0]
    assert ctx.service == "rds"
    assert ctx.operation == "CreateDBCluster"
    assert ctx.region == REGION
    assert ctx.access_key == "AKIDBOREALISTEST"
    assert args == {
        "DBClusterIdentifier": "app",
        "Engine": "aurora-postgresql",
        "Port": 5432,
        "EnableHttpEndpoint": True,
        "DeletionProtection": False,
        "ServerlessV2ScalingConfiguration": {
            "MinCapacity": 0.0,
            "MaxCapacity": 8.5,
            "SecondsUntilAutoPause": 600,
        },
        "VpcSecurityGroupIds": ["sg-1", "sg-2"],
        "Tags": [{"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "me"}],
    }
    assert isinstance(args["ServerlessV2ScalingConfiguration"]["MinCapacity"], float)
    assert out["DBCluster"]["DBClusterIdentifier"] == "app"
    assert out["ResponseMetadata"]["RequestId"] == ctx.request_id


def test_describe_db_clusters_output_round_trips(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {"rds": {"DescribeDBClusters": recorder.returning({"DBClusters": [CLUSTER], "Marker": None})}}
    )
    out = harness.client("rds").describe_db_clusters(
        Filters=[{"Name": "engine", "Values": ["aurora-postgresql", "aurora-mysql"]}], MaxRecords=20
    )
    _, args = recorder.calls[0]
    assert args == {
        "Filters": [{"Name": "engine", "Values": ["aurora-postgresql", "aurora-mysql"]}],
        "MaxRecords": 20,
    }
    expected = dict(CLUSTER)
    del expected["CustomEndpoints"]  # an empty XML list reads back as absent, as from AWS
    got = out["DBClusters"][0]
    got.pop("CustomEndpoints", None)
    assert got == expected
    assert "Marker" not in out
    _, _, body = harness.last
    assert b"<DBClusters><DBCluster>" in body
    assert b"<DBClusterMembers><DBClusterMember>" in body
    assert b"<IsClusterWriter>true</IsClusterWriter>" in body
    assert b"<ClusterCreateTime>2024-05-01T12:30:15.123Z</ClusterCreateTime>" in body
    assert b'<DescribeDBClustersResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">' in body


def test_list_member_names_come_from_the_model(harness_factory, recorder: Recorder) -> None:
    proxy = {
        "DBProxyName": "p",
        "VpcSubnetIds": ["s-1"],
        "Auth": [{"AuthScheme": "SECRETS", "SecretArn": "arn:aws:secretsmanager:x"}],
    }
    harness = harness_factory(
        {
            "rds": {
                "DescribeDBProxies": recorder.returning({"DBProxies": [proxy]}),
                "CreateDBProxy": recorder.returning({"DBProxy": proxy}),
            }
        }
    )
    rds = harness.client("rds")
    assert rds.describe_db_proxies()["DBProxies"] == [proxy]
    assert b"<DBProxies><member>" in harness.last[2]
    rds.create_db_proxy(
        DBProxyName="p",
        EngineFamily="POSTGRESQL",
        RoleArn="arn:aws:iam::1:role/r",
        VpcSubnetIds=["s-1", "s-2"],
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": "arn:aws:secretsmanager:x", "IAMAuth": "DISABLED"}],
    )
    _, args = recorder.calls[-1]
    assert args["VpcSubnetIds"] == ["s-1", "s-2"]
    assert args["Auth"] == [{"AuthScheme": "SECRETS", "SecretArn": "arn:aws:secretsmanager:x", "IAMAuth": "DISABLED"}]


def test_timestamp_input_becomes_aware_datetime(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds": {"RestoreDBClusterToPointInTime": recorder.returning({"DBCluster": CLUSTER})}})
    harness.client("rds").restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="copy", SourceDBClusterIdentifier="app", RestoreToTime=CREATED
    )
    _, args = recorder.calls[0]
    assert args["RestoreToTime"] == CREATED
    assert args["RestoreToTime"].tzinfo is not None


def test_modeled_error_takes_code_and_status_from_model(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {
            "rds": {
                "DescribeDBClusters": recorder.raising(AWSError("DBClusterNotFoundFault", "DBCluster nope not found.")),
                "DescribeDBInstances": recorder.raising(AWSError("DBInstanceNotFoundFault", "DBInstance x not found.")),
            }
        }
    )
    rds = harness.client("rds")
    with pytest.raises(rds.exceptions.DBClusterNotFoundFault) as cluster_error:
        rds.describe_db_clusters(DBClusterIdentifier="nope")
    assert cluster_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert cluster_error.value.response["Error"]["Message"] == "DBCluster nope not found."
    with pytest.raises(rds.exceptions.DBInstanceNotFoundFault) as instance_error:
        rds.describe_db_instances(DBInstanceIdentifier="x")
    assert instance_error.value.response["Error"]["Code"] == "DBInstanceNotFound"
    assert instance_error.value.response["Error"]["Type"] == "Sender"
    assert instance_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_unmodeled_error_is_sent_as_given(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory(
        {"rds": {"DescribeDBClusters": recorder.raising(AWSError("InvalidParameterCombination", "no"))}}
    )
    with pytest.raises(ClientError) as caught:
        harness.client("rds").describe_db_clusters()
    assert caught.value.response["Error"]["Code"] == "InvalidParameterCombination"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_and_unimplemented_actions(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds": {"DescribeDBClusters": recorder.returning({})}})
    with pytest.raises(ClientError) as caught:
        harness.client("rds").describe_db_instances()  # modeled, but no handler here
    assert caught.value.response["Error"]["Code"] == "InvalidAction"
    assert (
        caught.value.response["Error"]["Message"] == "The action DescribeDBInstances is not valid for this web service."
    )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    status, _, body = harness.signed(
        "rds",
        "POST",
        "/",
        b"Action=MakeCoffee&Version=2014-10-31",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400
    assert b"<Code>InvalidAction</Code>" in body


def test_missing_required_parameter(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds": {"CreateDBCluster": recorder.returning({})}})
    status, _, body = harness.signed(
        "rds",
        "POST",
        "/",
        b"Action=CreateDBCluster&Version=2014-10-31&DBClusterIdentifier=x",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert status == 400
    assert b"<Code>MissingParameter</Code>" in body
    assert b"The request must contain the parameter Engine" in body
    assert recorder.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"Action=CreateDBCluster&DBClusterIdentifier=x&Engine=e&Port=five",
        b"Action=CreateDBCluster&DBClusterIdentifier=x&Engine=e&DeletionProtection=maybe",
        b"Action=CreateDBCluster&DBClusterIdentifier=x&Engine=e&Tags.Tag.first.Key=k",
        b"Action=CreateDBCluster&DBClusterIdentifier=x&Engine=e&ServerlessV2ScalingConfiguration=3",
        b"Action=CreateDBCluster&DBClusterIdentifier=\xff\xfe",
    ],
)
def test_malformed_values_are_400_not_500(harness_factory, recorder: Recorder, body: bytes) -> None:
    harness = harness_factory({"rds": {"CreateDBCluster": recorder.returning({})}})
    status, _, out = harness.signed("rds", "POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400, out
    assert b"<ErrorResponse" in out
    assert b"Traceback" not in out
    assert recorder.calls == []


def test_handler_crash_is_internal_failure_without_traceback(harness_factory, recorder: Recorder, caplog) -> None:
    harness = harness_factory({"rds": {"DescribeDBClusters": recorder.raising(RuntimeError("secret detail"))}})
    with pytest.raises(ClientError) as caught:
        harness.client("rds").describe_db_clusters()
    assert caught.value.response["Error"]["Code"] == "InternalFailure"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    _, _, body = harness.last
    assert b"secret detail" not in body
    assert b"Traceback" not in body
    assert "secret detail" in caplog.text  # logged for us, not sent to them


def test_output_that_does_not_fit_is_internal_failure(harness_factory, recorder: Recorder) -> None:
    harness = harness_factory({"rds": {"DescribeDBClusters": recorder.returning({"DBClusters": [{"Port": "x"}]})}})
    with pytest.raises(ClientError) as caught:
        harness.client("rds").describe_db_clusters()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
