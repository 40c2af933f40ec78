"""Checks for the whole run: which build of the proxy's hot modules the tests import (pure or compiled)."""

from __future__ import annotations

import os

import pytest

from borealis._build import HOT_MODULES, build_name, compiled_modules, fastpath_built


def pytest_report_header(config: pytest.Config) -> str:
    """Say which build runs, in the header of every run."""
    return f"borealis proxy build: {build_name()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """``BOREALIS_EXPECT_COMPILED=1`` (scripts/test-compiled): fail the run unless every hot module is compiled
    and the C data path is built."""
    expected = os.environ.get("BOREALIS_EXPECT_COMPILED") == "1"
    if expected and (len(compiled_modules()) != len(HOT_MODULES) or not fastpath_built()):
        raise pytest.UsageError(f"BOREALIS_EXPECT_COMPILED=1 but the proxy build is {build_name()}")
