"""The RDS Proxy API through boto3: shapes, defaults, ranges and faults."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

from .conftest import wait_status

ROLE = "arn:aws:iam::000000000000:role/proxy"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _create(rds: Any, name: str, secret: str) -> dict[str, Any]:
    out: dict[str, Any] = rds.create_db_proxy(
        DBProxyName=name,
        EngineFamily="POSTGRESQL",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret}],
        RoleArn=ROLE,
        VpcSubnetIds=["subnet-a"],
    )["DBProxy"]
    return out


def test_lifecycle_and_faults(borealis: BorealisProcess) -> None:
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    secret = cluster["MasterUserSecret"]["SecretArn"]
    created = _create(rds, "api-proxy", secret)
    assert created["Status"] == "creating"
    assert ":" not in created["Endpoint"]
    assert created["Auth"][0]["ClientPasswordAuthType"] == "POSTGRES_SCRAM_SHA_256"
    assert created["IdleClientTimeout"] == 1800
    assert wait_status(rds, "api-proxy")["Status"] == "available"
    with pytest.raises(ClientError) as exc:
        _create(rds, "api-proxy", secret)
    assert _code(exc) == "DBProxyAlreadyExistsFault"
    with pytest.raises(ClientError) as exc:
        rds.describe_db_proxies(DBProxyName="nope")
    assert _code(exc) == "DBProxyNotFoundFault"

    groups = rds.describe_db_proxy_target_groups(DBProxyName="api-proxy")["TargetGroups"]
    assert groups[0]["TargetGroupName"] == "default" and groups[0]["IsDefault"]
    conf = groups[0]["ConnectionPoolConfig"]
    assert conf["MaxConnectionsPercent"] == 100
    assert conf["MaxIdleConnectionsPercent"] == 50
    assert conf["ConnectionBorrowTimeout"] == 120
    with pytest.raises(ClientError) as exc:
        rds.describe_db_proxy_target_groups(DBProxyName="api-proxy", TargetGroupName="other")
    assert _code(exc) == "DBProxyTargetGroupNotFoundFault"
    for bad in ({"MaxConnectionsPercent": 0}, {"ConnectionBorrowTimeout": 3601}, {"MaxIdleConnectionsPercent": 101}):
        with pytest.raises(ClientError) as exc:
            rds.modify_db_proxy_target_group(
                DBProxyName="api-proxy", TargetGroupName="default", ConnectionPoolConfig=bad
            )
        assert _code(exc) == "InvalidParameterValue"
    tg = rds.modify_db_proxy_target_group(
        DBProxyName="api-proxy",
        TargetGroupName="default",
        ConnectionPoolConfig={
            "MaxConnectionsPercent": 40,
            "SessionPinningFilters": ["EXCLUDE_VARIABLE_SETS"],
            "InitQuery": "SET TIME ZONE 'UTC'",
        },
    )["DBProxyTargetGroup"]
    assert tg["ConnectionPoolConfig"]["MaxConnectionsPercent"] == 40
    assert tg["ConnectionPoolConfig"]["MaxIdleConnectionsPercent"] == 40
    assert tg["ConnectionPoolConfig"]["SessionPinningFilters"] == ["EXCLUDE_VARIABLE_SETS"]

    assert rds.describe_db_proxy_targets(DBProxyName="api-proxy")["Targets"] == []
    with pytest.raises(ClientError) as exc:
        rds.register_db_proxy_targets(DBProxyName="api-proxy", DBClusterIdentifiers=["missing"])
    assert _code(exc) == "DBClusterNotFoundFault"
    rds.register_db_proxy_targets(DBProxyName="api-proxy", DBClusterIdentifiers=["default"])
    with pytest.raises(ClientError) as exc:
        rds.register_db_proxy_targets(DBProxyName="api-proxy", DBClusterIdentifiers=["default"])
    assert _code(exc) == "DBProxyTargetAlreadyRegisteredFault"
    targets = rds.describe_db_proxy_targets(DBProxyName="api-proxy")["Targets"]
    kinds = {t["Type"] for t in targets}
    assert kinds == {"TRACKED_CLUSTER", "RDS_INSTANCE"}
    tracked = next(t for t in targets if t["Type"] == "TRACKED_CLUSTER")
    assert tracked["Port"] == cluster["Port"]
    inst = next(t for t in targets if t["Type"] == "RDS_INSTANCE")
    assert inst["Role"] == "READ_WRITE" and inst["TargetHealth"]["State"] == "AVAILABLE"

    ep = rds.create_db_proxy_endpoint(
        DBProxyName="api-proxy", DBProxyEndpointName="api-ro", VpcSubnetIds=["subnet-a"], TargetRole="READ_ONLY"
    )["DBProxyEndpoint"]
    assert ep["TargetRole"] == "READ_ONLY" and not ep["IsDefault"] and ":" not in ep["Endpoint"]
    with pytest.raises(ClientError) as exc:
        rds.create_db_proxy_endpoint(DBProxyName="api-proxy", DBProxyEndpointName="api-ro", VpcSubnetIds=["s"])
    assert _code(exc) == "DBProxyEndpointAlreadyExistsFault"
    eps = rds.describe_db_proxy_endpoints(DBProxyName="api-proxy")["DBProxyEndpoints"]
    assert [e["IsDefault"] for e in eps] == [True, False]
    assert len({e["Endpoint"] for e in eps}) == 2
    rds.delete_db_proxy_endpoint(DBProxyEndpointName="api-ro")
    with pytest.raises(ClientError) as exc:
        rds.describe_db_proxy_endpoints(DBProxyEndpointName="api-ro")
    assert _code(exc) == "DBProxyEndpointNotFoundFault"

    rds.deregister_db_proxy_targets(DBProxyName="api-proxy", DBClusterIdentifiers=["default"])
    assert rds.describe_db_proxy_targets(DBProxyName="api-proxy")["Targets"] == []
    modified = rds.modify_db_proxy(DBProxyName="api-proxy", IdleClientTimeout=60, RequireTLS=True)["DBProxy"]
    assert modified["IdleClientTimeout"] == 60 and modified["RequireTLS"] is True
    rds.delete_db_proxy(DBProxyName="api-proxy")
    with pytest.raises(ClientError) as exc:
        rds.delete_db_proxy(DBProxyName="api-proxy")
    assert _code(exc) == "DBProxyNotFoundFault"
