"""Parameter groups as Terraform drives them, and their values in a real postgres (checked with SHOW).

aws_rds_cluster_parameter_group and aws_db_parameter_group: create, then the update function (Modify in
chunks of 20, Reset for the parameters removed), the read (Describe*ParameterGroups, Describe*Parameters with
Source=user then Source=system, ListTagsForResource), and the delete retried while the group is in use.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BorealisProcess

from .test_terraform_rds import FAST, _code, _name, _tags, _until_not_found
from .tools import aws_json


def _family(rds: Any) -> str:
    return str(
        rds.describe_db_engine_versions(Engine="aurora-postgresql", DefaultOnly=True)["DBEngineVersions"][0][
            "DBParameterGroupFamily"
        ]
    )


def _all_parameters(rds: Any, call: str, **kwargs: Any) -> list[dict[str, Any]]:
    pages = rds.get_paginator(call).paginate(**kwargs)
    if call.startswith("describe_engine_default"):
        return [p for page in pages for p in page["EngineDefaults"]["Parameters"]]
    return [p for page in pages for p in page["Parameters"]]


def _show(conn: psycopg.Connection[Any], name: str) -> str:
    return str(conn.execute(f"SELECT setting FROM pg_settings WHERE name = '{name}'").fetchone()[0])


def _until_shown(borealis: BorealisProcess, cid: str, name: str, value: str) -> None:
    """Poll new sessions until the setting shows ``value`` (a reload reaches backends asynchronously)."""
    deadline = time.monotonic() + 180
    seen = None
    while time.monotonic() < deadline:
        with borealis.master_connect(cid) as conn:
            seen = _show(conn, name)
        if seen == value:
            return
        time.sleep(0.3)
    raise AssertionError(f"{name} stayed {seen!r}, wanted {value!r}")


def _apply_status(rds: Any, cid: str, iid: str) -> tuple[str, str]:
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cid)["DBClusters"][0]
    inst = rds.describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"][0]
    return cluster["DBClusterMembers"][0]["DBClusterParameterGroupStatus"], inst["DBParameterGroups"][0][
        "ParameterApplyStatus"
    ]


def test_engine_catalog(rds: Any) -> None:
    versions = rds.describe_db_engine_versions(Engine="aurora-postgresql")["DBEngineVersions"]
    assert versions and all(v["Engine"] == "aurora-postgresql" for v in versions)
    default = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    assert default["EngineVersion"] in [v["EngineVersion"] for v in versions]
    v = versions[0]
    assert v["DBParameterGroupFamily"] == f"aurora-postgresql{v['EngineVersion'].split('.')[0]}"
    assert v["ServerlessV2FeaturesSupport"]["MaxCapacity"] == 256
    assert rds.describe_db_engine_versions(Engine="mysql")["DBEngineVersions"] == []
    options = rds.describe_orderable_db_instance_options(Engine="aurora-postgresql")["OrderableDBInstanceOptions"]
    assert "db.serverless" in [o["DBInstanceClass"] for o in options]
    family = v["DBParameterGroupFamily"]
    defaults = _all_parameters(rds, "describe_engine_default_cluster_parameters", DBParameterGroupFamily=family)
    by_name = {p["ParameterName"]: p for p in defaults}
    assert by_name["work_mem"]["ApplyType"] == "dynamic" and by_name["work_mem"]["DataType"] == "integer"
    assert by_name["shared_preload_libraries"]["ApplyType"] == "static"
    assert by_name["log_statement"]["AllowedValues"] == "none,ddl,mod,all"
    assert by_name["enable_seqscan"]["AllowedValues"] == "0,1"
    assert by_name["port"]["IsModifiable"] is False
    assert by_name["archive_command"]["IsModifiable"] is False
    assert by_name["password_encryption"]["IsModifiable"] is False
    assert by_name["wal_log_hints"]["IsModifiable"] is False  # the readers' pg_rewind needs it
    assert len(defaults) > 300
    groups = rds.describe_db_cluster_parameter_groups()["DBClusterParameterGroups"]
    assert groups[0]["DBClusterParameterGroupName"] == f"default.{family}"


@pytest.mark.parametrize(
    ("parameter", "code"),
    [
        (
            {"ParameterName": "no_such_thing", "ParameterValue": "1", "ApplyMethod": "immediate"},
            "InvalidParameterValue",
        ),
        ({"ParameterName": "work_mem", "ParameterValue": "12", "ApplyMethod": "immediate"}, "InvalidParameterValue"),
        (
            {"ParameterName": "log_statement", "ParameterValue": "x", "ApplyMethod": "immediate"},
            "InvalidParameterValue",
        ),
        ({"ParameterName": "port", "ParameterValue": "5433", "ApplyMethod": "pending-reboot"}, "InvalidParameterValue"),
        (
            {"ParameterName": "archive_command", "ParameterValue": "rm -rf /", "ApplyMethod": "immediate"},
            "InvalidParameterValue",
        ),
        (
            {"ParameterName": "shared_preload_libraries", "ParameterValue": "plpgsql", "ApplyMethod": "immediate"},
            "InvalidParameterCombination",
        ),
        (
            {
                "ParameterName": "shared_preload_libraries",
                "ParameterValue": "../../evil",
                "ApplyMethod": "pending-reboot",
            },
            "InvalidParameterValue",
        ),
    ],
)
def test_modify_refusals(rds: Any, parameter: dict[str, str], code: str) -> None:
    name = _name("bad-params")
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName=name, DBParameterGroupFamily=_family(rds), Description="x"
    )
    try:
        with pytest.raises(ClientError) as err:
            rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[parameter])
        assert _code(err) == code
        assert (
            _all_parameters(rds, "describe_db_cluster_parameters", DBClusterParameterGroupName=name, Source="user")
            == []
        )
    finally:
        rds.delete_db_cluster_parameter_group(DBClusterParameterGroupName=name)


def test_group_errors(rds: Any) -> None:
    family = _family(rds)
    with pytest.raises(ClientError) as err:
        rds.modify_db_parameter_group(
            DBParameterGroupName=f"default.{family}",
            Parameters=[{"ParameterName": "work_mem", "ParameterValue": "8192", "ApplyMethod": "immediate"}],
        )
    assert _code(err) == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        rds.delete_db_parameter_group(DBParameterGroupName=f"default.{family}")
    assert _code(err) == "InvalidDBParameterGroupState"
    with pytest.raises(ClientError) as err:
        rds.describe_db_cluster_parameter_groups(DBClusterParameterGroupName="nope")
    assert _code(err) == "DBParameterGroupNotFound"
    with pytest.raises(ClientError) as err:
        rds.create_db_parameter_group(
            DBParameterGroupName="x1", DBParameterGroupFamily="aurora-postgresql9", Description="x"
        )
    assert _code(err) == "InvalidParameterValue"
    name = _name("copy-src")
    rds.create_db_parameter_group(DBParameterGroupName=name, DBParameterGroupFamily=family, Description="src")
    rds.modify_db_parameter_group(
        DBParameterGroupName=name,
        Parameters=[{"ParameterName": "work_mem", "ParameterValue": "8192", "ApplyMethod": "immediate"}],
    )
    with pytest.raises(ClientError) as err:
        rds.create_db_parameter_group(DBParameterGroupName=name, DBParameterGroupFamily=family, Description="x")
    assert _code(err) == "DBParameterGroupAlreadyExists"
    copy = rds.copy_db_parameter_group(
        SourceDBParameterGroupIdentifier=name, TargetDBParameterGroupIdentifier=name + "-copy",
        TargetDBParameterGroupDescription="copy",
    )["DBParameterGroup"]  # fmt: skip
    assert copy["DBParameterGroupArn"].endswith(f":pg:{name}-copy")
    user = _all_parameters(rds, "describe_db_parameters", DBParameterGroupName=name + "-copy", Source="user")
    assert [(p["ParameterName"], p["ParameterValue"]) for p in user] == [("work_mem", "8192")]
    rds.reset_db_parameter_group(DBParameterGroupName=name + "-copy", ResetAllParameters=True)
    assert _all_parameters(rds, "describe_db_parameters", DBParameterGroupName=name + "-copy", Source="user") == []
    for n in (name, name + "-copy"):
        rds.delete_db_parameter_group(DBParameterGroupName=n)


def test_parameter_groups_applied_to_a_cluster(borealis: BorealisProcess, rds: Any) -> None:
    family = _family(rds)
    cpg, dbpg = _name("tf-cpg"), _name("tf-dbpg")
    cid, iid = _name("tf-pg-cluster"), _name("tf-pg-instance")
    # aws_rds_cluster_parameter_group: create, then its update (one Modify chunk), then its read
    arn = rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName=cpg, DBParameterGroupFamily=family, Description="Managed by Terraform",
        Tags=[{"Key": "env", "Value": "test"}],
    )["DBClusterParameterGroup"]["DBClusterParameterGroupArn"]  # fmt: skip
    rds.modify_db_cluster_parameter_group(
        DBClusterParameterGroupName=cpg,
        Parameters=[
            {"ParameterName": "log_min_duration_statement", "ParameterValue": "250", "ApplyMethod": "immediate"},
            {"ParameterName": "shared_preload_libraries", "ParameterValue": "plpgsql", "ApplyMethod": "pending-reboot"},
            {"ParameterName": "log_statement", "ParameterValue": "ddl", "ApplyMethod": "immediate"},
            {"ParameterName": "rds.logical_replication", "ParameterValue": "1", "ApplyMethod": "pending-reboot"},
        ],
    )
    group = rds.describe_db_cluster_parameter_groups(DBClusterParameterGroupName=cpg)["DBClusterParameterGroups"][0]
    assert group["DBParameterGroupFamily"] == family and group["DBClusterParameterGroupArn"] == arn
    user = _all_parameters(rds, "describe_db_cluster_parameters", DBClusterParameterGroupName=cpg, Source="user")
    assert {p["ParameterName"]: p["ParameterValue"] for p in user} == {
        "log_min_duration_statement": "250", "shared_preload_libraries": "plpgsql", "log_statement": "ddl",
        "rds.logical_replication": "1",
    }  # fmt: skip
    assert (
        _all_parameters(rds, "describe_db_cluster_parameters", DBClusterParameterGroupName=cpg, Source="system") == []
    )
    assert _tags(rds, arn) == {"env": "test"}
    # aws_db_parameter_group
    rds.create_db_parameter_group(DBParameterGroupName=dbpg, DBParameterGroupFamily=family, Description="x")
    rds.modify_db_parameter_group(
        DBParameterGroupName=dbpg,
        Parameters=[{"ParameterName": "work_mem", "ParameterValue": "8192", "ApplyMethod": "immediate"}],
    )
    # the cluster and its instance use them
    with pytest.raises(ClientError) as err:
        rds.create_db_cluster(
            DBClusterIdentifier=cid, Engine="aurora-postgresql", MasterUsername="app", ManageMasterUserPassword=True,
            DBClusterParameterGroupName="no-such-group",
        )  # fmt: skip
    assert _code(err) == "DBClusterParameterGroupNotFound"
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=cid, Engine="aurora-postgresql", MasterUsername="app", ManageMasterUserPassword=True,
        DBClusterParameterGroupName=cpg, ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 2},
    )["DBCluster"]  # fmt: skip
    assert cluster["DBClusterParameterGroup"] == cpg
    rds.create_db_instance(
        DBInstanceIdentifier=iid, DBClusterIdentifier=cid, DBInstanceClass="db.serverless",
        Engine="aurora-postgresql", DBParameterGroupName=dbpg,
    )  # fmt: skip
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    with borealis.master_connect(cid) as conn:
        # every value, static ones included, is there from the first start
        assert _show(conn, "log_min_duration_statement") == "250"
        assert _show(conn, "shared_preload_libraries") == "plpgsql"
        assert _show(conn, "log_statement") == "ddl"
        assert _show(conn, "work_mem") == "8192"
        assert _show(conn, "wal_level") == "logical"  # what rds.logical_replication does
    assert _apply_status(rds, cid, iid) == ("in-sync", "in-sync")
    assert (
        rds.describe_db_instances(DBInstanceIdentifier=iid)["DBInstances"][0]["DBParameterGroups"][0][
            "DBParameterGroupName"
        ]
        == dbpg
    )
    # update: a dynamic value applies at once, a static one after a reboot (pending-reboot until then)
    rds.modify_db_cluster_parameter_group(
        DBClusterParameterGroupName=cpg,
        Parameters=[
            {"ParameterName": "log_min_duration_statement", "ParameterValue": "1000", "ApplyMethod": "immediate"},
            {"ParameterName": "shared_preload_libraries", "ParameterValue": "", "ApplyMethod": "pending-reboot"},
        ],
    )
    _until_shown(borealis, cid, "log_min_duration_statement", "1000")
    with borealis.master_connect(cid) as conn:
        assert _show(conn, "shared_preload_libraries") == "plpgsql"
    assert _apply_status(rds, cid, iid) == ("pending-reboot", "pending-reboot")
    rds.modify_db_parameter_group(
        DBParameterGroupName=dbpg,
        Parameters=[{"ParameterName": "work_mem", "ParameterValue": "16384", "ApplyMethod": "immediate"}],
    )
    _until_shown(borealis, cid, "work_mem", "16384")
    # Terraform resets the parameters removed from the configuration
    rds.reset_db_cluster_parameter_group(
        DBClusterParameterGroupName=cpg, ResetAllParameters=False,
        Parameters=[{"ParameterName": "log_statement", "ApplyMethod": "immediate"}],
    )  # fmt: skip
    _until_shown(borealis, cid, "log_statement", "none")
    rds.reboot_db_instance(DBInstanceIdentifier=iid)
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    _until_shown(borealis, cid, "shared_preload_libraries", "")
    assert _apply_status(rds, cid, iid) == ("in-sync", "in-sync")
    # a group in use cannot be deleted (the provider retries this)
    with pytest.raises(ClientError) as err:
        rds.delete_db_cluster_parameter_group(DBClusterParameterGroupName=cpg)
    assert _code(err) == "InvalidDBParameterGroupState"
    # the instance moves back to the default group: its work_mem goes at once, and its old group is free
    moved = rds.modify_db_instance(
        DBInstanceIdentifier=iid, DBParameterGroupName=f"default.{family}", ApplyImmediately=True
    )["DBInstance"]
    assert moved["DBParameterGroups"][0]["DBParameterGroupName"] == f"default.{family}"
    deadline = time.monotonic() + 180
    while True:
        with borealis.master_connect(cid) as conn:
            if _show(conn, "work_mem") != "16384":
                break
        assert time.monotonic() < deadline, "work_mem kept the old group's value"
        time.sleep(0.3)
    # destroy
    rds.delete_db_instance(DBInstanceIdentifier=iid, SkipFinalSnapshot=True)
    rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier=iid, WaiterConfig=FAST)
    rds.delete_db_cluster(DBClusterIdentifier=cid, SkipFinalSnapshot=True)
    _until_not_found(lambda: rds.describe_db_clusters(DBClusterIdentifier=cid), "DBClusterNotFoundFault")
    rds.delete_db_parameter_group(DBParameterGroupName=dbpg)
    rds.delete_db_cluster_parameter_group(DBClusterParameterGroupName=cpg)
    _until_not_found(
        lambda: rds.describe_db_cluster_parameter_groups(DBClusterParameterGroupName=cpg), "DBParameterGroupNotFound"
    )


def test_aws_cli_parameter_groups(borealis: BorealisProcess, rds: Any) -> None:
    name, family = _name("cli-cpg"), _family(rds)
    aws_json(
        borealis, "rds", "create-db-cluster-parameter-group", "--db-cluster-parameter-group-name", name,
        "--db-parameter-group-family", family, "--description", "cli",
    )  # fmt: skip
    aws_json(
        borealis, "rds", "modify-db-cluster-parameter-group", "--db-cluster-parameter-group-name", name,
        "--parameters", "ParameterName=work_mem,ParameterValue=4096,ApplyMethod=immediate",
    )  # fmt: skip
    out = aws_json(
        borealis, "rds", "describe-db-cluster-parameters", "--db-cluster-parameter-group-name", name,
        "--source", "user",
    )  # fmt: skip
    assert [(p["ParameterName"], p["ParameterValue"]) for p in out["Parameters"]] == [("work_mem", "4096")]
    versions = aws_json(
        borealis, "rds", "describe-db-engine-versions", "--engine", "aurora-postgresql", "--default-only"
    )
    assert versions["DBEngineVersions"][0]["DBParameterGroupFamily"] == family
    aws_json(borealis, "rds", "delete-db-cluster-parameter-group", "--db-cluster-parameter-group-name", name)
