"""The RDS control plane through boto3, against a running `borealis up`, with real postgres behind it."""

from __future__ import annotations

import json
import uuid
from typing import Any
from unittest.mock import ANY

import psycopg
import pytest
from botocore.exceptions import ClientError

from .conftest import BorealisProcess

FAST = {"Delay": 1, "MaxAttempts": 120}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_default_cluster_as_aws_describes_it(rds: Any, secretsmanager: Any) -> None:
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    assert cluster["Status"] == "available"
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["EngineMode"] == "provisioned"
    assert ":" not in cluster["Endpoint"] and ":" not in cluster["ReaderEndpoint"]
    assert isinstance(cluster["Port"], int)
    assert cluster["HttpEndpointEnabled"] is True
    assert cluster["DBClusterArn"] == "arn:aws:rds:us-east-1:000000000000:cluster:default"
    assert cluster["DbClusterResourceId"].startswith("cluster-")
    assert cluster["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 4.0}
    [member] = cluster["DBClusterMembers"]
    assert member == {
        "DBInstanceIdentifier": "default-instance-1",
        "IsClusterWriter": True,
        "DBClusterParameterGroupStatus": "in-sync",
        "PromotionTier": 1,
    }
    secret_arn = cluster["MasterUserSecret"]["SecretArn"]
    assert cluster["MasterUserSecret"]["SecretStatus"] == "active"
    described = secretsmanager.describe_secret(SecretId=secret_arn)
    assert described["Name"].startswith("rds!cluster-")
    assert described["OwningService"] == "rds"
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags["aws:rds:primaryDBClusterArn"] == cluster["DBClusterArn"]
    value = json.loads(secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"])
    assert value["username"] == cluster["MasterUsername"] == "postgres"

    instance = rds.describe_db_instances(DBInstanceIdentifier="default-instance-1")["DBInstances"][0]
    assert instance["DBInstanceStatus"] == "available"
    assert instance["DBInstanceClass"] == "db.serverless"
    assert instance["DBClusterIdentifier"] == "default"
    assert instance["Endpoint"]["Port"] != cluster["Port"]
    assert ":" not in instance["Endpoint"]["Address"]


def test_every_endpoint_reaches_postgres(borealis: BorealisProcess, rds: Any) -> None:
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    instance = rds.describe_db_instances(DBInstanceIdentifier="default-instance-1")["DBInstances"][0]
    addresses = [
        (cluster["Endpoint"], cluster["Port"]),
        (cluster["ReaderEndpoint"], cluster["Port"]),
        (instance["Endpoint"]["Address"], instance["Endpoint"]["Port"]),
    ]
    server_ports = set()
    for host, port in addresses:
        with borealis.master_connect(host=host, port=port) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
            row = conn.execute("SELECT inet_server_port()").fetchone()
            assert row is not None
            server_ports.add(row[0])
    # All three reach the one postgres of the writer, and through listeners: never its own port.
    assert len(server_ports) == 1
    assert server_ports.isdisjoint(port for _, port in addresses)


def test_cluster_life_cycle(borealis: BorealisProcess, rds: Any) -> None:
    cid, iid = _name("life"), _name("life-w")
    created = rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        MasterUsername="app_admin",
        MasterUserPassword="first-password-1",
        DatabaseName="appdb",
        ServerlessV2ScalingConfiguration={"MinCapacity": 0, "MaxCapacity": 2},
        Tags=[{"Key": "team", "Value": "core"}],
    )["DBCluster"]
    assert created["Status"] == "creating"
    assert created["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": 0.0,
        "MaxCapacity": 2.0,
        "SecondsUntilAutoPause": 300,
    }
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    inst = rds.create_db_instance(
        DBInstanceIdentifier=iid,
        DBClusterIdentifier=cid,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )["DBInstance"]
    assert inst["DBInstanceStatus"] == "creating"
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]
    assert cluster["TagList"] == [{"Key": "team", "Value": "core"}]
    assert cluster["DatabaseName"] == "appdb"

    def connect(password: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=cluster["Endpoint"],
            port=cluster["Port"],
            user="app_admin",
            password=password,
            dbname="appdb",
            connect_timeout=10,
        )

    with connect("first-password-1") as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('kept')")

    rds.modify_db_cluster(DBClusterIdentifier=cid, MasterUserPassword="second-password-2", ApplyImmediately=True)
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    with pytest.raises(psycopg.OperationalError):
        connect("first-password-1").close()
    with connect("second-password-2") as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]

    # stop: connections are refused with a PostgreSQL error; start: the data is there
    assert rds.stop_db_cluster(DBClusterIdentifier=cid)["DBCluster"]["Status"] == "stopping"
    _wait_status(rds, cid, "stopped")
    with pytest.raises(ClientError) as exc:
        rds.stop_db_cluster(DBClusterIdentifier=cid)
    assert _code(exc) == ("InvalidDBClusterStateFault", 400)
    with pytest.raises(psycopg.OperationalError, match="stopped"):
        connect("second-password-2").close()
    rds.start_db_cluster(DBClusterIdentifier=cid)
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    with connect("second-password-2") as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]

    # reboot
    assert rds.reboot_db_instance(DBInstanceIdentifier=iid)["DBInstance"]["DBInstanceStatus"] == "rebooting"
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    with connect("second-password-2") as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

    # a cluster with instances cannot be deleted; deletion protection blocks it too
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
    assert _code(exc) == ("InvalidDBClusterStateFault", 400)
    rds.modify_db_cluster(DBClusterIdentifier=cid, DeletionProtection=True)
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)

    rds.delete_db_instance(DBInstanceIdentifier=iid)
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
    assert _code(exc) == ("InvalidParameterCombination", 400)
    rds.modify_db_cluster(DBClusterIdentifier=cid, DeletionProtection=False)
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    deleted = rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)["DBCluster"]
    assert deleted["Status"] == "deleting"
    _wait_gone(rds, cid)
    with pytest.raises(ClientError) as exc:
        rds.describe_db_clusters(DBClusterIdentifier=cid)
    assert _code(exc) == ("DBClusterNotFoundFault", 404)
    assert not (borealis.data_dir / "clusters" / cid).exists()


def test_managed_password_rotation(borealis: BorealisProcess, rds: Any, secretsmanager: Any) -> None:
    cid, iid = _name("managed"), _name("managed-w")
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        MasterUsername="boss",
        ManageMasterUserPassword=True,
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 1},
        EnableHttpEndpoint=True,
    )["DBCluster"]
    rds.create_db_instance(
        DBInstanceIdentifier=iid,
        DBClusterIdentifier=cid,
        DBInstanceClass="db.serverless",
        Engine="aurora-postgresql",
    )
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    arn = cluster["MasterUserSecret"]["SecretArn"]
    first = json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"])

    def data_api_works() -> None:
        # Fresh clients open fresh connections, which the kernel spreads over the API processes (the shared
        # Borealis runs two): each must read the secret as it is now.
        for _ in range(6):
            out = borealis.client("rds-data").execute_statement(
                resourceArn=cluster["DBClusterArn"], secretArn=arn, sql="SELECT current_user"
            )
            assert out["records"] == [[{"stringValue": "boss"}]]

    data_api_works()
    with borealis.master_connect(cid) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("boss",)

    with pytest.raises(ClientError) as exc:
        rds.modify_db_cluster(DBClusterIdentifier=cid, RotateMasterUserPassword=True)
    assert _code(exc) == ("InvalidParameterCombination", 400)
    rds.modify_db_cluster(DBClusterIdentifier=cid, RotateMasterUserPassword=True, ApplyImmediately=True)
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
    second = json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"])
    assert second["password"] != first["password"]
    previous = secretsmanager.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"]) == first
    with borealis.master_connect(cid) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    data_api_works()  # with the same secret ARN, through the rotation

    # Neither password is in any log: Borealis's own, or the postgres logs of the cluster.
    logs = [borealis.data_dir / "borealis.log", *(borealis.data_dir / "clusters" / cid).rglob("*.log")]
    assert len(logs) >= 2
    for path in logs:
        text = path.read_text(errors="replace")
        assert first["password"] not in text and second["password"] not in text, path

    rds.delete_db_instance(DBInstanceIdentifier=iid)
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
    _wait_gone(rds, cid)
    with pytest.raises(ClientError) as exc:
        secretsmanager.get_secret_value(SecretId=arn)
    assert _code(exc)[0] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"DBClusterIdentifier": "default"}, "DBClusterAlreadyExistsFault"),
        ({"DBClusterIdentifier": "1bad"}, "InvalidParameterValue"),
        ({"DBClusterIdentifier": "bad--name"}, "InvalidParameterValue"),
        ({"Engine": "aurora-mysql"}, "InvalidParameterValue"),
        ({"MasterUserPassword": "short"}, "InvalidParameterValue"),
        ({"MasterUserPassword": "has/slash-in-it"}, "InvalidParameterValue"),
        ({"ManageMasterUserPassword": True}, "InvalidParameterCombination"),
        ({"MasterUsername": "rdsadmin"}, "InvalidParameterValue"),
        ({"EngineVersion": "13.4"}, "InvalidParameterCombination"),
        ({"ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5}}, "InvalidParameterValue"),
        ({"ServerlessV2ScalingConfiguration": {"MinCapacity": 4, "MaxCapacity": 2}}, "InvalidParameterValue"),
        (
            {"ServerlessV2ScalingConfiguration": {"MinCapacity": 0.25, "MaxCapacity": 2}},
            "InvalidParameterValue",
        ),
        (
            {
                "ServerlessV2ScalingConfiguration": {
                    "MinCapacity": 1,
                    "MaxCapacity": 2,
                    "SecondsUntilAutoPause": 600,
                }
            },
            "InvalidParameterValue",
        ),
    ],
)
def test_create_cluster_errors(rds: Any, params: dict[str, Any], code: str) -> None:
    request = {
        "DBClusterIdentifier": _name("bad"),
        "Engine": "aurora-postgresql",
        "MasterUsername": "admin",
        "MasterUserPassword": "a-good-password",
        **params,
    }
    with pytest.raises(ClientError) as exc:
        rds.create_db_cluster(**request)
    assert _code(exc) == (code, 400)


def test_not_found_and_state_errors(rds: Any) -> None:
    with pytest.raises(ClientError) as exc:
        rds.describe_db_clusters(DBClusterIdentifier="nope")
    assert _code(exc) == ("DBClusterNotFoundFault", 404)
    with pytest.raises(rds.exceptions.DBClusterNotFoundFault):
        rds.delete_db_cluster(DBClusterIdentifier="nope", SkipFinalSnapshot=True)
    with pytest.raises(ClientError) as exc:
        rds.describe_db_instances(DBInstanceIdentifier="nope")
    assert _code(exc) == ("DBInstanceNotFound", 404)
    with pytest.raises(rds.exceptions.DBInstanceNotFoundFault):
        rds.reboot_db_instance(DBInstanceIdentifier="nope")
    with pytest.raises(ClientError) as exc:
        rds.start_db_cluster(DBClusterIdentifier="default")
    assert _code(exc) == ("InvalidDBClusterStateFault", 400)
    with pytest.raises(ClientError) as exc:
        rds.create_db_instance(
            DBInstanceIdentifier="default-instance-1",
            DBClusterIdentifier="default",
            DBInstanceClass="db.serverless",
            Engine="aurora-postgresql",
        )
    assert _code(exc) == ("DBInstanceAlreadyExists", 400)
    with pytest.raises(ClientError) as exc:
        rds.create_db_instance(
            DBInstanceIdentifier=_name("orphan"),
            DBClusterIdentifier="nope",
            DBInstanceClass="db.serverless",
            Engine="aurora-postgresql",
        )
    assert _code(exc) == ("DBClusterNotFoundFault", 404)
    with pytest.raises(ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier="default")
    assert _code(exc) == ("InvalidParameterCombination", 400)


def test_serverless_instance_needs_scaling_configuration(rds: Any) -> None:
    cid = _name("noscale")
    rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="password-123",
    )
    try:
        with pytest.raises(ClientError) as exc:
            rds.create_db_instance(
                DBInstanceIdentifier=_name("noscale-w"),
                DBClusterIdentifier=cid,
                DBInstanceClass="db.serverless",
                Engine="aurora-postgresql",
            )
        assert _code(exc) == ("InvalidDBClusterStateFault", 400)
        assert "Serverless v2 scaling configuration" in str(exc.value)
    finally:
        rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
        rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)


def test_filters_and_pagination(rds: Any) -> None:
    out = rds.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": ["default"]}])
    assert [i["DBInstanceIdentifier"] for i in out["DBInstances"]] == ["default-instance-1"]
    out = rds.describe_db_clusters(Filters=[{"Name": "engine", "Values": ["aurora-mysql"]}])
    assert out["DBClusters"] == []
    with pytest.raises(ClientError) as exc:
        rds.describe_db_clusters(MaxRecords=5)
    assert _code(exc) == ("InvalidParameterValue", 400)
    pages = list(rds.get_paginator("describe_db_clusters").paginate(PaginationConfig={"PageSize": 20}))
    assert any(c["DBClusterIdentifier"] == "default" for p in pages for c in p["DBClusters"])


def _wait_status(rds: Any, cid: str, status: str) -> None:
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]["Status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{cid} never reached {status}")


def _wait_gone(rds: Any, cid: str) -> None:
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            rds.describe_db_clusters(DBClusterIdentifier=cid)
        except rds.exceptions.DBClusterNotFoundFault:
            return
        time.sleep(0.2)
    raise AssertionError(f"{cid} was never deleted")


def test_http_endpoint_switch(rds: Any) -> None:
    cid = _name("http")
    arn = rds.create_db_cluster(
        DBClusterIdentifier=cid,
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="password-123",
        EnableHttpEndpoint=True,
    )["DBCluster"]["DBClusterArn"]
    try:
        rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=cid, WaiterConfig=FAST)
        assert rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]["HttpEndpointEnabled"] is True
        assert rds.disable_http_endpoint(ResourceArn=arn) == {
            "ResourceArn": arn,
            "HttpEndpointEnabled": False,
            "ResponseMetadata": ANY,
        }
        assert rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]["HttpEndpointEnabled"] is False
        assert rds.enable_http_endpoint(ResourceArn=arn)["HttpEndpointEnabled"] is True
        with pytest.raises(ClientError) as exc:
            rds.enable_http_endpoint(ResourceArn=arn + "-missing")
        assert _code(exc) == ("ResourceNotFoundFault", 404)
    finally:
        rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)


def test_modify_db_instance(rds: Any) -> None:
    iid = "default-instance-1"
    try:
        out = rds.modify_db_instance(DBInstanceIdentifier=iid, PromotionTier=3, ApplyImmediately=True)
        assert out["DBInstance"]["PromotionTier"] == 3
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
        members = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]["DBClusterMembers"]
        assert [m["PromotionTier"] for m in members] == [3]
        with pytest.raises(ClientError) as exc:
            rds.modify_db_instance(DBInstanceIdentifier=iid, PromotionTier=16)
        assert _code(exc) == ("InvalidParameterValue", 400)
        with pytest.raises(ClientError) as exc:
            rds.modify_db_instance(DBInstanceIdentifier=iid, MasterUserPassword="password-123")
        assert _code(exc) == ("InvalidParameterCombination", 400)
        with pytest.raises(ClientError) as exc:
            rds.modify_db_instance(DBInstanceIdentifier="nope", PromotionTier=2)
        assert _code(exc) == ("DBInstanceNotFound", 404)
    finally:
        rds.modify_db_instance(DBInstanceIdentifier=iid, PromotionTier=1)
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
