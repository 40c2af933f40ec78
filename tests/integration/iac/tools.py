"""Running the aws CLI and node scripts against a test Borealis (shared by this package's tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BorealisProcess

__all__ = ["aws", "aws_json", "node"]

CLIENTS = Path(__file__).resolve().parents[2] / "clients"


def aws(borealis: BorealisProcess, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the aws CLI (installed in the venv with the test extras) against ``borealis``."""
    cli = os.path.join(os.path.dirname(sys.executable), "aws")
    return subprocess.run(
        [cli, *args, "--endpoint-url", borealis.url, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or borealis.env(),
    )


def aws_json(borealis: BorealisProcess, *args: str, env: dict[str, str] | None = None) -> Any:
    """The parsed output of a CLI call that must succeed ({} for commands that print nothing)."""
    done = aws(borealis, *args, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def node(script: str, borealis: BorealisProcess, **extra: str) -> None:
    """Run ``tests/clients/<script>`` with the endpoint and admin credentials in its environment."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed: the JavaScript client tests need Node.js 18+")
    if not (CLIENTS / "node_modules").is_dir():
        pytest.fail("tests/clients/node_modules is missing: run `npm ci --prefix tests/clients` (done by .ci/run)")
    env = borealis.env()
    env["BOREALIS_URL"] = borealis.url
    env.update(extra)
    out = subprocess.run([exe, str(CLIENTS / script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}"
