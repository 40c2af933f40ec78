"""Which build of the proxy's hot modules runs: pure Python, or compiled with mypyc (``BOREALIS_COMPILE=1``).

:data:`HOT_MODULES` is the one list of what the optional compiled build compiles (``setup.py`` reads it):
what the proxy runs per message and per borrow, nothing that only runs at startup.
"""

from __future__ import annotations

import importlib

__all__ = ["HOT_MODULES", "build_name", "compiled_modules"]

HOT_MODULES = (
    "borealis.proxy._client",
    "borealis.proxy._server",
    "borealis.proxy._pool",
    "borealis.pgwire._framing",
    "borealis.pgwire._pinning",
    "borealis.pgwire._state",
)


def compiled_modules() -> list[str]:
    """The modules of :data:`HOT_MODULES` that were imported from a C extension (compiled), not from source."""
    out = []
    for name in HOT_MODULES:
        path = getattr(importlib.import_module(name), "__file__", None) or ""
        if not path.endswith(".py"):
            out.append(name)
    return out


def build_name() -> str:
    """``"compiled (mypyc)"``, ``"pure Python"``, or ``"mixed"`` when only some hot modules are compiled."""
    compiled = compiled_modules()
    if not compiled:
        return "pure Python"
    return "compiled (mypyc)" if len(compiled) == len(HOT_MODULES) else f"mixed (compiled: {', '.join(compiled)})"
