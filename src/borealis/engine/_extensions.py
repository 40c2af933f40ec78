"""Aurora's ``rds.allowed_extensions``: the extensions a non-superuser master may create, by an engine overlay.

PostgreSQL lets a non-superuser run CREATE EXTENSION only for extensions whose control file says
``trusted = true``, and then runs the script as the bootstrap superuser (rdsadmin). Aurora's master, a
member of rds_superuser, may create every extension Aurora supports, pg_stat_statements and postgres_fdw
included. Borealis gets there with an overlay: a copy of the installation (hard links where the file system
allows, so it costs no space) under the data directory, whose control files say ``trusted = true`` for the
allowed extensions and ``trusted = false`` for every other one. PostgreSQL finds its share and lib
directories relative to the real path of its executable, so the overlay's own ``bin/postgres`` (a hard link,
not a symlink) reads the overlay's control files.

Chosen over PostgreSQL 18's ``extension_control_path`` because it works the same on 16, 17 and 18 and for a
system installation, and because it also turns off the upstream ``trusted`` flag of what is not allowed.

Only extensions whose scripts are safe to run as the superuser and whose functions keep their own privilege
checks are allowed; never adminpack, file_fdw, untrusted languages (plpython3u, plperlu, pltclu), nor anything
that reads or writes server files (pg_walinspect, pg_logicalinspect) or bypasses the heap's checks
(pg_surgery). dblink and postgres_fdw refuse a non-superuser a connection that did not use a password, so
Borealis's peer login on the unix socket is not theirs to borrow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import _uuid_ossp
from ._binaries import Binaries
from ._errors import EngineError

__all__ = [
    "ALLOWED_EXTENSIONS",
    "NEVER_ALLOWED",
    "EngineInfo",
    "allowed_overlay",
    "available_engines",
    "full_version",
    "installed_extensions",
]

ALLOWED_EXTENSIONS = frozenset(
    {
        # Contrib modules Aurora PostgreSQL supports.
        "amcheck", "bloom", "btree_gin", "btree_gist", "citext", "cube", "dblink", "dict_int", "dict_xsyn",
        "earthdistance", "fuzzystrmatch", "hstore", "intagg", "intarray", "isn", "lo", "ltree", "pageinspect",
        "pg_buffercache", "pg_freespacemap", "pg_prewarm", "pg_stat_statements", "pg_trgm", "pg_visibility",
        "pgcrypto", "pgrowlocks", "pgstattuple", "plpgsql", "postgres_fdw", "refint", "seg", "sslinfo",
        "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time", "unaccent", "uuid-ossp",
        # Third-party extensions Aurora supports, where an installation has them.
        "vector", "postgis", "postgis_raster", "postgis_topology", "postgis_tiger_geocoder",
        "address_standardizer", "address_standardizer_data_us", "pgrouting", "hll", "ip4r", "prefix",
        "pg_hint_plan", "pg_partman", "orafce", "pgtap", "pg_bigm", "pg_similarity", "rdkit", "h3", "h3_postgis",
        "plv8",
    }
)  # fmt: skip
"""What the master (rds_superuser) may CREATE EXTENSION, where the engine ships it."""

NEVER_ALLOWED = frozenset(
    {
        "adminpack", "file_fdw", "plpython3u", "plpythonu", "plpython2u", "plperlu", "pltclu",
        "pg_walinspect", "pg_logicalinspect", "pg_surgery",
    }
)  # fmt: skip
"""Reach the host's files or programs, or bypass the server's checks: superuser alone, whatever the list."""

_STAMP = ".borealis-overlay.json"
_TRUSTED_RE = re.compile(r"^\s*trusted\s*=.*$", re.MULTILINE)
_SYSTEM_ROOTS = {Path("/"), Path("/usr"), Path("/usr/local"), Path("/opt")}


def _layout(binaries: Binaries) -> tuple[Path, list[Path], Path]:
    """(root, directories to mirror, share directory) of an installation."""
    bindir = binaries.bindir
    pg_config = bindir / "pg_config"
    sharedir = bindir.parent / "share"
    dirs: list[Path] = []
    if pg_config.is_file():
        try:
            out = subprocess.run(
                [str(pg_config), "--sharedir", "--pkglibdir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.split("\n")
            sharedir, pkglibdir = Path(out[0]).resolve(), Path(out[1]).resolve()
            dirs = [bindir, sharedir, pkglibdir]
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            raise EngineError(f"cannot run {pg_config}: {exc}") from exc
    root = Path(os.path.commonpath(dirs)) if dirs else bindir.parent
    if root not in _SYSTEM_ROOTS:
        # A private tree (a wheel's pginstall): all of it, and the libraries auditwheel put beside the
        # package (``<package>.libs``), which the modules' RPATH finds as $ORIGIN/../../../<package>.libs.
        package = root.parent
        dirs = [root, *[p for p in [package.parent / f"{package.name}.libs"] if p.is_dir()]]
        root = package.parent
    return root, dirs, sharedir


def _extension_dir(sharedir: Path) -> Path:
    for candidate in (sharedir / "extension", sharedir / "postgresql" / "extension"):
        if candidate.is_dir():
            return candidate
    raise EngineError(f"PostgreSQL {sharedir} has no extension directory")


def installed_extensions(binaries: Binaries) -> list[str]:
    """The extensions an installation ships (the names of its control files), sorted."""
    _, _, sharedir = _layout(binaries)
    return sorted(p.stem for p in _extension_dir(sharedir).glob("*.control"))


def _mirror(source: Path, target: Path) -> None:
    """Recreate `source` under `target`: directories made, files hard-linked (copied across file systems)."""
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            src, dst = Path(dirpath) / name, target / rel / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


# What a trusted extension's script creates belongs to the bootstrap superuser; where the master needs a
# privilege on it that upstream grants nobody, the first install script gets a GRANT to rds_superuser (which
# the master holds, and may pass on), as Aurora's rds_superuser has it.
_GRANTS = {
    "postgres_fdw--1.0.sql": "GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO rds_superuser WITH GRANT OPTION",
}


def _add_grants(extension_dir: Path) -> None:
    for script, grant in _GRANTS.items():
        path = extension_dir / script
        if not path.is_file():
            continue
        text = path.read_text()
        path.unlink()  # a new file, not an edit through the hard link
        path.write_text(
            text.rstrip("\n") + "\n\n-- Added by Borealis: what Aurora's rds_superuser may use.\n"
            "DO $borealis$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_superuser') THEN "
            f"{grant}; END IF; END $borealis$;\n"
        )
        path.chmod(0o644)


def _rewrite_controls(extension_dir: Path, allowed: frozenset[str]) -> None:
    for control in extension_dir.glob("*.control"):
        name = control.stem
        trusted = name in allowed and name not in NEVER_ALLOWED
        text = _TRUSTED_RE.sub("", control.read_text())
        # A new file, not an edit through the hard link: the installation's own control file stays as it was.
        control.unlink()
        control.write_text(text.rstrip("\n") + f"\ntrusted = {'true' if trusted else 'false'}\n")
        control.chmod(0o644)


def _write_stubs(extension_dir: Path, allowed: frozenset[str], version: int) -> None:
    """A control file for each allowed extension the engine lacks, whose script says so.

    Before PostgreSQL 18, CREATE EXTENSION of a missing extension answers with the control file's full path
    in its DETAIL, a host path; the stub answers "not available" with a hint instead (a name off the list
    still gets PostgreSQL's own answer).
    """
    for name in sorted(allowed):
        if (extension_dir / f"{name}.control").exists():
            continue
        (extension_dir / f"{name}.control").write_text(
            "comment = 'not available in this Borealis engine'\ndefault_version = '0'\nrelocatable = true\n"
        )
        hint = f"The PostgreSQL {version} engine of this Borealis does not ship it; another engine version may."
        (extension_dir / f"{name}--0.sql").write_text(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', "
            f"MESSAGE = 'extension \"{name}\" is not available', HINT = '{hint}'; END $$;\n"
        )


def allowed_overlay(binaries: Binaries, root: Path, allowed: Iterable[str] = ALLOWED_EXTENSIONS) -> Binaries:
    """The installation `binaries` laid out again under `root`, with the allowed extensions trusted.

    Made once per installation and list (a directory named by their digest; a stamp file marks it complete),
    so later starts reuse it. Returns `binaries` with ``server_bindir`` in the overlay: the same programs.
    """
    allowed_set = frozenset(allowed)
    install_root, dirs, sharedir = _layout(binaries)
    postgres = binaries.tool("postgres").stat()
    identity = {
        "shim": hashlib.sha256((_uuid_ossp.SCRIPT + json.dumps(_GRANTS)).encode()).hexdigest(),
        "source": str(install_root),
        "dirs": [str(d) for d in dirs],
        "postgres": [postgres.st_ino, postgres.st_size, postgres.st_mtime_ns],
        "allowed": sorted(allowed_set),
        # An extension built into the installation later (scripts/add-pgcrypto) makes a new overlay.
        "extensions": sorted(p.name for p in _extension_dir(sharedir).glob("*.control")),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    target = root / f"pg{binaries.version}-{digest}"
    overlay = dataclasses.replace(binaries, server_bindir=target / binaries.bindir.relative_to(install_root))
    if (target / _STAMP).is_file():
        return overlay
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    building = Path(tempfile.mkdtemp(prefix=f".pg{binaries.version}-", dir=root))
    try:
        for d in dirs:
            _mirror(d, building / d.relative_to(install_root))
        extension_dir = _extension_dir(building / sharedir.relative_to(install_root))
        if not (extension_dir / "uuid-ossp.control").exists():
            (extension_dir / "uuid-ossp.control").write_text(_uuid_ossp.CONTROL)
            (extension_dir / f"uuid-ossp--{_uuid_ossp.VERSION}.sql").write_text(_uuid_ossp.SCRIPT)
        if binaries.version < 18:
            _write_stubs(extension_dir, allowed_set, binaries.version)
        _add_grants(extension_dir)
        _rewrite_controls(extension_dir, allowed_set)
        (building / _STAMP).write_text(json.dumps(identity, indent=1) + "\n")
        os.chmod(building, 0o755)
        try:
            building.rename(target)
        except OSError:  # another process finished the same overlay first
            if not (target / _STAMP).is_file():
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(building)
    for old in root.glob(f"pg{binaries.version}-*"):
        if old != target and (old / _STAMP).is_file():
            # Overlays of an earlier installation or list: no postgres of this Borealis runs them any more.
            shutil.rmtree(old, ignore_errors=True)
    return overlay


@dataclass(frozen=True)
class EngineInfo:
    """One engine clusters can run, as DescribeDBEngineVersions tells it."""

    major: int
    version: str
    """The full version as Aurora writes it (``18.6``)."""
    extensions: tuple[str, ...]
    """What the master may CREATE EXTENSION on it: the allowed extensions it ships, sorted."""
    default: bool
    """Whether a cluster created without EngineVersion runs it."""


def full_version(binaries: Binaries) -> str:
    """``major.minor`` of an installation, from ``postgres --version`` (``18.6``)."""
    return _full_version(binaries.tool("postgres"))


@functools.cache
def _full_version(postgres: Path) -> str:
    try:
        out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"cannot run {postgres} --version: {exc}") from exc
    match = re.search(r"\(PostgreSQL\)\s+(\d+)\.(\d+)", out)
    if match is None:
        raise EngineError(f"cannot tell the PostgreSQL version from {postgres} --version: {out.strip()!r}")
    return f"{match.group(1)}.{match.group(2)}"


def available_engines(setting: str | None = None) -> list[EngineInfo]:
    """The engines a Borealis with ``postgres = setting`` runs clusters on, oldest first (for the iac engineer's
    DescribeDBEngineVersions): the chosen installation (the default) and every other embedded major version."""
    default = Binaries.find(setting).version
    return [
        EngineInfo(
            major=b.version,
            version=full_version(b),
            extensions=tuple(sorted(set(installed_extensions(b)) & ALLOWED_EXTENSIONS | {"uuid-ossp"})),
            default=b.version == default,
        )
        for b in Binaries.available(setting)
    ]
