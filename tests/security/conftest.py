"""Fixtures of the security tier: the integration tier's running Borealis, and the `pg` marker.

Tests here that need a running Borealis or PostgreSQL use the ``borealis`` fixture (a real `borealis up`,
from tests/integration/conftest.py) and are marked ``pg`` by path below, so ``pytest -m "not pg"`` stays
fast; pure tests of this tier go in files named ``test_pure_*.py`` and stay unmarked.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import BorealisProcess, borealis, rds, secretsmanager

__all__ = ["BorealisProcess", "borealis", "rds", "secretsmanager"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "/security/" in path and "/test_pure_" not in path:
            item.add_marker(pytest.mark.pg)
