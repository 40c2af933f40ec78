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
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ._binaries import Binaries
from ._errors import EngineError

__all__ = ["ALLOWED_EXTENSIONS", "NEVER_ALLOWED", "allowed_overlay", "installed_extensions"]

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
        # package (``<package>.libs``: libpq for libpqwalreceiver, dblink and postgres_fdw), which the
        # modules' RPATH finds relative to themselves ($ORIGIN/../../../../<package>.libs).
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


def _rewrite_controls(extension_dir: Path, allowed: frozenset[str]) -> None:
    for control in extension_dir.glob("*.control"):
        name = control.stem
        trusted = name in allowed and name not in NEVER_ALLOWED
        text = _TRUSTED_RE.sub("", control.read_text())
        # A new file, not an edit through the hard link: the installation's own control file stays as it was.
        control.unlink()
        control.write_text(text.rstrip("\n") + f"\ntrusted = {'true' if trusted else 'false'}\n")
        control.chmod(0o644)


def allowed_overlay(binaries: Binaries, root: Path, allowed: Iterable[str] = ALLOWED_EXTENSIONS) -> Binaries:
    """The installation `binaries` laid out again under `root`, with the allowed extensions trusted.

    Made once per installation and list (a directory named by their digest; a stamp file marks it complete),
    so later starts reuse it. Returns `binaries` with ``server_bindir`` in the overlay: the same programs.
    """
    allowed_set = frozenset(allowed)
    install_root, dirs, sharedir = _layout(binaries)
    postgres = binaries.tool("postgres").stat()
    identity = {
        "source": str(install_root),
        "dirs": [str(d) for d in dirs],
        "postgres": [postgres.st_ino, postgres.st_size, postgres.st_mtime_ns],
        "allowed": sorted(allowed_set),
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
        _rewrite_controls(_extension_dir(building / sharedir.relative_to(install_root)), allowed_set)
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
