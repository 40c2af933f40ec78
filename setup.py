"""Build hook for the optional compiled build of the proxy's hot modules (everything else is in pyproject.toml).

``pip install .`` (and ``pip install -e .``) builds the pure-Python package: no compiler, no mypyc. With
``BOREALIS_COMPILE=1`` in the environment the modules in :data:`COMPILED` are also compiled with mypyc into C
extensions, which Python imports instead of the ``.py`` files beside them (the ``.py`` files stay the source of
truth and ship either way), and the proxy's C data path (``borealis/proxy/_fastpath.c``) is built. A compiled
build that cannot be made fails: it never falls back to pure silently.
It needs a C compiler and mypy (mypyc comes with it); with pip's build isolation, pip installs mypy into the
build environment itself. ``scripts/build-compiled`` builds it into a directory of its own for the tests.
"""

from __future__ import annotations

import os
import runpy
import sys

from setuptools import Extension, setup

#: What the proxy runs per message and per borrow (``bench/proxy/hotpath.py --profile``), listed once in
#: ``borealis/_build.py`` (read as a file: the package's dependencies need not be installed here). Their native
#: classes check argument types at run time: pass them real objects.
COMPILED = [
    "src/" + name.replace(".", "/") + ".py"
    for name in runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "src/borealis/_build.py"))[
        "HOT_MODULES"
    ]
]


def _ext_modules() -> list[object]:
    if os.environ.get("BOREALIS_COMPILE", "") in ("", "0"):
        return []
    if "egg_info" in sys.argv or "dist_info" in sys.argv:
        # Metadata only (pip asks for it before building, and under build isolation before mypy is there):
        # mypycify would compile now, and again for the build.
        return []
    if "editable_wheel" in sys.argv:
        # In place, the extensions would sit beside the sources and shadow every later edit of them.
        raise SystemExit("BOREALIS_COMPILE=1 builds no editable install: use `pip install .` or scripts/build-compiled")
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit("BOREALIS_COMPILE=1 needs mypy (for mypyc) and a C compiler: pip install mypy") from None
    # Third-party packages may be missing from an isolated build environment: their types are then Any,
    # which changes no behaviour (mypyc treats Any as any object).
    modules = list(mypycify(["--ignore-missing-imports", "--no-warn-unused-ignores", *COMPILED], opt_level="3"))
    # The proxy's C data path (hand-written: see its header comment), optional like the rest of this build.
    modules.append(
        Extension("borealis.proxy._fastpath", ["src/borealis/proxy/_fastpath.c"], extra_compile_args=["-O2", "-Wall"])
    )
    return modules


setup(
    ext_modules=_ext_modules(),
    setup_requires=["mypy>=1.10"] if os.environ.get("BOREALIS_COMPILE", "") not in ("", "0") else [],
)
