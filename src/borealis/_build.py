"""Which build of the proxy's hot modules runs: pure Python, or compiled (``BOREALIS_COMPILE=1``: mypyc, and the
C data path).

:data:`HOT_MODULES` is the one list of what the optional compiled build compiles (``setup.py`` reads it):
what the proxy runs per message and per borrow, nothing that only runs at startup.
"""

from __future__ import annotations

import importlib

__all__ = ["HOT_MODULES", "build_name", "compiled_modules", "fastpath_built"]

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


def fastpath_built() -> bool:
    """The proxy's C data path (``borealis.proxy._fastpath``) was built, whether or not it is turned on."""
    try:
        importlib.import_module("borealis.proxy._fastpath")
    except ImportError:
        return False
    return True


def build_name() -> str:
    """``"compiled (mypyc) + C data path"``, ``"pure Python"``, or ``"mixed"`` when only some parts are built."""
    compiled = compiled_modules()
    fast = fastpath_built()
    if not compiled and not fast:
        return "pure Python"
    if len(compiled) == len(HOT_MODULES) and fast:
        return "compiled (mypyc) + C data path"
    parts = [*compiled, *(["borealis.proxy._fastpath"] if fast else [])]
    return f"mixed (compiled: {', '.join(parts)})"
