"""Pure parts of the control plane and settings: identifiers, max_connections, settings precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.config import ConfigError, load_settings
from borealis.control import max_connections_for
from borealis.control._names import cluster_arn, resource_id, valid_identifier


@pytest.mark.parametrize("ident", ["a", "default", "my-cluster-1", "a" * 63])
def test_valid_identifiers(ident: str) -> None:
    assert valid_identifier(ident)


@pytest.mark.parametrize("ident", ["", "1abc", "-abc", "abc-", "ab--c", "a_b", "a" * 64, "ab c", "ünï"])
def test_invalid_identifiers(ident: str) -> None:
    assert not valid_identifier(ident)


def test_ids_and_arns() -> None:
    rid = resource_id("cluster")
    assert rid.startswith("cluster-") and len(rid) == len("cluster-") + 26
    assert all(c.isascii() and (c.isupper() or c.isdigit()) for c in rid[8:])
    assert cluster_arn("eu-west-1", "000000000000", "x") == "arn:aws:rds:eu-west-1:000000000000:cluster:x"


@pytest.mark.parametrize(("acu", "expected"), [(1, 189), (4, 823), (8, 1669), (16, 3360), (32, 5000), (256, 5000)])
def test_max_connections_matches_aurora_table(acu: float, expected: int) -> None:
    assert max_connections_for(acu) == expected


def test_max_connections_interpolates_and_grows() -> None:
    values = [max_connections_for(x / 2) for x in range(1, 80)]
    assert values == sorted(values)
    assert 189 < max_connections_for(2) < 823


def test_settings_precedence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "borealis.toml").write_text('api_port = 5001\nport-base = 30000\nregion = "eu-west-1"\n')
    env = {"BOREALIS_DATA_DIR": str(data), "BOREALIS_API_PORT": "5002"}
    s = load_settings({"api_port": None}, env=env)
    assert (s.api_port, s.port_base, s.region, s.data_dir) == (5002, 30000, "eu-west-1", data)
    s = load_settings({"api_port": 5003}, env=env)
    assert s.api_port == 5003
    assert load_settings({}, env={}).host == "127.0.0.1"


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_port"):
        load_settings({}, env={"BOREALIS_API_PORT": "http"})
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({}, env={}, config_file=bad)
    with pytest.raises(ConfigError, match="not found"):
        load_settings({}, env={}, config_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        bad.write_text("= = =")
        load_settings({}, env={}, config_file=bad)


@pytest.mark.parametrize(("cpus", "asked", "expected"), [(1, 0, 1), (2, 0, 1), (4, 0, 3), (2, 3, 3), (8, 100, 64)])
def test_api_processes_leave_a_cpu_to_postgres(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: int, asked: int, expected: int
) -> None:
    from borealis import app
    from borealis.config import Settings

    monkeypatch.setattr(app.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert app.worker_count(Settings(data_dir=tmp_path, workers=asked)) == expected
