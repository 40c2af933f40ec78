"""Parameters from pg_settings rows: types, apply types, allowed values, and which values are accepted."""

from __future__ import annotations

import pytest

from borealis.groups import EngineParameter


def _row(name: str, vartype: str, context: str, **extra: object) -> dict[str, object]:
    return {"name": name, "vartype": vartype, "context": context, **extra}


ROWS = {
    "work_mem": _row("work_mem", "integer", "user", min_val="64", max_val="2147483647"),
    "enable_seqscan": _row("enable_seqscan", "bool", "user"),
    "log_statement": _row("log_statement", "enum", "superuser", enumvals=["none", "ddl", "mod", "all"]),
    "shared_preload_libraries": _row(
        "shared_preload_libraries", "string", "postmaster", enumvals=["pg_stat_statements", "vector"]
    ),
    "random_page_cost": _row("random_page_cost", "real", "user", min_val="0", max_val="1.79769e+308"),
    "search_path": _row("search_path", "string", "user"),
    "port": _row("port", "integer", "postmaster", min_val="1", max_val="65535"),
    "archive_command": _row("archive_command", "string", "sighup"),
    "block_size": _row("block_size", "integer", "internal", min_val="8192", max_val="8192"),
}


def _param(name: str) -> EngineParameter:
    return EngineParameter.from_row(ROWS[name])


@pytest.mark.parametrize(
    ("name", "data_type", "static", "modifiable", "allowed"),
    [
        ("work_mem", "integer", False, True, "64-2147483647"),
        ("enable_seqscan", "boolean", False, True, "0,1"),
        ("log_statement", "string", False, True, "none,ddl,mod,all"),
        ("shared_preload_libraries", "list", True, True, "pg_stat_statements,vector"),
        ("random_page_cost", "float", False, True, "0-1.79769e+308"),
        ("search_path", "list", False, True, None),
        ("port", "integer", True, False, "1-65535"),
        ("archive_command", "string", False, False, None),
        ("block_size", "integer", True, False, "8192-8192"),
    ],
)
def test_rds_description(name: str, data_type: str, static: bool, modifiable: bool, allowed: str | None) -> None:
    p = _param(name)
    assert (p.data_type, p.static, p.modifiable, p.allowed) == (data_type, static, modifiable, allowed)


@pytest.mark.parametrize(
    ("name", "value", "normalised"),
    [
        ("work_mem", "4096", "4096"),
        ("work_mem", "63", None),
        ("work_mem", "4MB", None),
        ("enable_seqscan", "1", "on"),
        ("enable_seqscan", "false", "off"),
        ("enable_seqscan", "maybe", None),
        ("log_statement", "DDL", "DDL"),
        ("log_statement", "some", None),
        ("shared_preload_libraries", "vector, pg_stat_statements", "vector,pg_stat_statements"),
        ("shared_preload_libraries", "", ""),
        ("shared_preload_libraries", "/tmp/evil", None),
        ("random_page_cost", "1.5", "1.5"),
        ("random_page_cost", "-1", None),
        ("search_path", '"$user", public', '"$user", public'),
        ("search_path", "a\nb", None),
    ],
)
def test_values(name: str, value: str, normalised: str | None) -> None:
    assert _param(name).normalise(value) == normalised
