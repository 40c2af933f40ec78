"""Binaries.find: the embedded PostgreSQL 16, 17 and 18, a bin directory, a pg_config, and the errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from borealis.engine import Binaries, EngineError
from borealis.engine._binaries import MIN_VERSION

DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.parametrize(
    ("setting", "version"),
    [(None, 18), ("embedded", 18), ("embedded:16", 16), ("embedded:17", 17), ("embedded:18", 18)],
)
def test_embedded(setting: str | None, version: int) -> None:
    binaries = Binaries.find(setting)
    assert binaries.version == version
    assert binaries.tool("postgres").is_file()
    assert binaries.tool("initdb").is_file()
    assert binaries.bindir.is_absolute()


def test_embedded_engines_differ_and_are_all_available() -> None:
    found = [Binaries.find(f"embedded:{v}") for v in (16, 17, 18)]
    assert len({b.bindir for b in found}) == 3
    # Whatever the setting names, every embedded major version is there beside it.
    assert Binaries.available() == found
    assert Binaries.available("embedded:16") == found


def test_bindir_path_probes_the_version() -> None:
    embedded = Binaries.find("embedded:18")
    found = Binaries.find(str(embedded.bindir))
    assert found == embedded


def test_pg_config_path() -> None:
    embedded = Binaries.find()
    assert Binaries.find(str(embedded.bindir / "pg_config")) == embedded


@pytest.mark.skipif(not (DEBIAN_15 / "postgres").exists(), reason="no Debian PostgreSQL 15")
def test_system_installation_older_than_16_is_refused() -> None:
    # Tenant isolation needs PostgreSQL 16 (pg_ident's `all`, CREATEROLE without self-granting).
    for setting in (DEBIAN_15, DEBIAN_15 / "pg_config"):
        with pytest.raises(EngineError, match=r"PostgreSQL 15 at .* is too old: Borealis needs PostgreSQL 16"):
            Binaries.find(str(setting))


@pytest.mark.skipif(shutil.which("pg_config") is None, reason="no pg_config on PATH")
def test_pg_config_on_path() -> None:
    pg_config = shutil.which("pg_config")
    assert pg_config is not None
    try:
        found = Binaries.find(pg_config)
    except EngineError as exc:
        assert f"Borealis needs PostgreSQL {MIN_VERSION}" in str(exc)
    else:
        assert found.version >= MIN_VERSION


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = Binaries.find()
    monkeypatch.setenv("HOME", str(embedded.bindir.parent))
    assert Binaries.find("~/bin") == embedded


@pytest.mark.parametrize("setting", ["embedded:15", "embedded:19", "embedded:x", "embedded:"])
def test_unknown_embedded_version(setting: str) -> None:
    with pytest.raises(EngineError, match="unknown embedded PostgreSQL"):
        Binaries.find(setting)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="neither a bin directory nor pg_config") as info:
        Binaries.find(str(tmp_path / "nope"))
    assert "\n" not in str(info.value)


def test_directory_without_postgres(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="lacks postgres, initdb, pg_ctl"):
        Binaries.find(str(tmp_path))


def test_broken_pg_config(tmp_path: Path) -> None:
    fake = tmp_path / "pg_config"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(EngineError, match="cannot run"):
        Binaries.find(str(fake))


def test_unrunnable_postgres(tmp_path: Path) -> None:
    for name in ("postgres", "initdb", "pg_ctl"):
        (tmp_path / name).write_text("not a program")
        os.chmod(tmp_path / name, 0o644)
    with pytest.raises(EngineError, match="--version"):
        Binaries.find(str(tmp_path))


def test_tool_missing() -> None:
    with pytest.raises(EngineError, match="has no no-such-tool"):
        Binaries.find().tool("no-such-tool")
