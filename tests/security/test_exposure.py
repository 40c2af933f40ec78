"""Item 10 (non-Data-API parts): what Borealis shows and leaves readable: the banner, file modes, /health."""

from __future__ import annotations

import json
import stat
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import BorealisProcess


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis without clusters whose data directory and files were made world-readable beforehand, as an
    earlier version left them."""
    data_dir = tmp_path_factory.mktemp("exposure") / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "borealis.log").write_text("an earlier run\n")
    (data_dir / "borealis.log").chmod(0o644)
    proc = BorealisProcess(data_dir, default_cluster=False, workers=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _banner(proc: BorealisProcess) -> str:
    """The output up to the end of the banner (printed just after /health turns ready)."""
    deadline = time.monotonic() + 60
    text = proc.output.read_text()
    while "Ctrl-C stops Borealis" not in text and time.monotonic() < deadline:
        time.sleep(0.1)
        text = proc.output.read_text()
    assert "Borealis is ready" in text, text
    return text


def test_the_banner_does_not_print_the_secret_key(bare: BorealisProcess) -> None:
    _, secret = bare.credentials()
    banner = _banner(bare)
    assert secret not in banner
    assert "AWS_SECRET_ACCESS_KEY" not in banner
    assert str(bare.data_dir / "credentials") in banner
    assert f'eval "$(borealis env --data-dir {bare.data_dir})"' in banner


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_is_private(bare: BorealisProcess) -> None:
    # No reading or writing by others; a search bit it had stays (postgres, run as another OS user, may need it).
    assert _mode(bare.data_dir) & 0o066 == 0
    names = {p.name for p in bare.data_dir.iterdir() if p.is_file()}
    assert {"borealis.db", "borealis.log", "borealis.json", "credentials", "secrets.key"} <= names, names
    for name in sorted(names):
        assert _mode(bare.data_dir / name) == 0o600, name


def test_the_shared_borealis_files_are_private(borealis: BorealisProcess) -> None:
    """Created by Borealis: 0700, or 0701 when postgres runs as another OS user and must traverse it."""
    assert _mode(borealis.data_dir) in (0o700, 0o701)
    for path in borealis.data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            assert _mode(path) == 0o600, path.name


def test_health_says_only_ready_or_not(borealis: BorealisProcess) -> None:
    with urllib.request.urlopen(borealis.url + "/health", timeout=10) as resp:
        assert resp.status == 200
        body = resp.read()
    assert json.loads(body) == {"status": "ready"}
    assert b"default" not in body
