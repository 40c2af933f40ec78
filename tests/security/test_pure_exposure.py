"""The warning for a ``--host`` beyond loopback (pure: no address other than loopback is ever bound in tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from borealis.config import Settings, load_settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"])
def test_loopback_is_quiet(host: str) -> None:
    assert Settings(host=host).exposure_warnings() == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "db.example.com"])
def test_beyond_loopback_warns_about_the_api_and_the_endpoints(host: str) -> None:
    plain = Settings(host=host, data_dir=Path("/d")).exposure_warnings()
    assert len(plain) == 2
    assert "plain HTTP" in plain[0] and "--tls" in plain[0] and "/d/ca/root.crt" in plain[0]
    assert "cluster endpoint" in plain[1]
    with_tls = Settings(host=host, tls=True).exposure_warnings()
    assert len(with_tls) == 1 and "cluster endpoint" in with_tls[0]


def test_tls_from_flag_environment_and_file(tmp_path: Path) -> None:
    assert load_settings({}, env={"BOREALIS_DATA_DIR": str(tmp_path)}).tls is False
    assert load_settings({"tls": True}, env={"BOREALIS_DATA_DIR": str(tmp_path)}).tls is True
    assert load_settings({}, env={"BOREALIS_DATA_DIR": str(tmp_path), "BOREALIS_TLS": "1"}).tls is True
    (tmp_path / "borealis.toml").write_text("tls = true\n")
    settings = load_settings({}, env={"BOREALIS_DATA_DIR": str(tmp_path)})
    assert settings.tls is True
    assert settings.api_url.startswith("https://127.0.0.1:")
