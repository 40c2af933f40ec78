"""What an instance runs with from its parameter groups, and when a reboot is pending (no postgres needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from borealis.groups import Catalog, Memberships, ParameterGroups, Settings
from borealis.store import Store

FAMILY = "aurora-postgresql16"
ROWS = [
    {"name": "work_mem", "vartype": "integer", "context": "user", "min_val": "64", "max_val": "2147483647"},
    {"name": "shared_preload_libraries", "vartype": "string", "context": "postmaster", "enumvals": ["vector"]},
    {"name": "rds.logical_replication", "vartype": "bool", "context": "postmaster"},
]
CLUSTER = {"id": "c1", "engine_version": "16.9"}
INSTANCE = {"id": "i1", "cluster": "c1"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    store = Store(tmp_path / "b.db")
    catalog = Catalog(store, None, "16.9", tmp_path)  # type: ignore[arg-type]  # never probes: rows are stored
    store.table("engine_parameters").put(catalog._key, {"rows": ROWS})
    members = Memberships(store, lambda c: True, lambda i: True)
    out = Settings(
        ParameterGroups(store, "cluster", catalog, lambda: [FAMILY], members),
        ParameterGroups(store, "instance", catalog, lambda: [FAMILY], members),
    )
    out.cluster_groups.create("cpg", FAMILY, "x", [])
    out.instance_groups.create("dbpg", FAMILY, "x", [])
    members.set("cluster", "c1", cluster_parameter_group="cpg")
    members.set("instance", "i1", parameter_group="dbpg")
    return out


def _modify(groups: ParameterGroups, name: str, *params: tuple[str, str, str]) -> None:
    asyncio.run(
        groups.modify(name, [{"ParameterName": n, "ParameterValue": v, "ApplyMethod": m} for n, v, m in params])
    )


def _reload(settings: Settings) -> dict[str, Any]:
    settings.reloading = True
    try:
        return settings.for_server(CLUSTER, INSTANCE)
    finally:
        settings.reloading = False


def test_instance_group_wins_and_rds_parameters_are_translated(settings: Settings) -> None:
    _modify(
        settings.cluster_groups,
        "cpg",
        ("work_mem", "8192", "immediate"),
        ("rds.logical_replication", "1", "pending-reboot"),
    )
    _modify(settings.instance_groups, "dbpg", ("work_mem", "16384", "immediate"))
    assert settings.for_server(CLUSTER, INSTANCE) == {"work_mem": "16384", "wal_level": "logical"}
    assert settings.status(CLUSTER, "i1") == "in-sync"


def test_static_values_wait_for_a_restart(settings: Settings) -> None:
    _modify(settings.cluster_groups, "cpg", ("shared_preload_libraries", "vector", "pending-reboot"))
    assert settings.for_server(CLUSTER, INSTANCE) == {"shared_preload_libraries": "vector"}  # a start
    _modify(
        settings.cluster_groups,
        "cpg",
        ("shared_preload_libraries", "", "pending-reboot"),
        ("work_mem", "4096", "immediate"),
    )
    assert _reload(settings) == {"shared_preload_libraries": "vector", "work_mem": "4096"}
    assert settings.status(CLUSTER, "i1") == "pending-reboot"
    assert settings.for_server(CLUSTER, INSTANCE) == {"shared_preload_libraries": "", "work_mem": "4096"}  # reboot
    assert settings.status(CLUSTER, "i1") == "in-sync"


def test_a_reset_static_value_is_pending_too(settings: Settings) -> None:
    _modify(settings.cluster_groups, "cpg", ("shared_preload_libraries", "vector", "pending-reboot"))
    settings.for_server(CLUSTER, INSTANCE)
    asyncio.run(settings.cluster_groups.reset("cpg", True, []))
    assert settings.status(CLUSTER, "i1") == "pending-reboot"


def test_dynamic_value_set_for_the_next_reboot_waits(settings: Settings) -> None:
    settings.for_server(CLUSTER, INSTANCE)
    _modify(settings.instance_groups, "dbpg", ("work_mem", "2048", "pending-reboot"))
    assert _reload(settings) == {}
    assert settings.status(CLUSTER, "i1") == "pending-reboot"
