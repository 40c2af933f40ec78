"""A well-known client's own test suite, run through the proxy (issue 13).

The issue asked for a slice of psycopg 3's suite, fetched from PyPI's sdist. No psycopg sdist carries its tests
(psycopg, psycopg-pool and psycopg-c 3.3.9, and psycopg 3.0.18, were checked: the tests live only in the
project's repository, which CI cannot reach). psycopg2's sdist does ship its suite (``tests/``, 774 tests of
connections, cursors, transactions, COPY, the async and green APIs, large objects, types), so that is the one
run here: the pinned sdist and the matching ``psycopg2-binary`` wheel, both fetched with pip at test time.

The slice is the whole suite with ``PSYCOPG2_TEST_FAST=1``, which skips the tests psycopg2 marks slow: they
wait on fixed sleeps (a cancel 0.3 s after a query, a NOTIFY 0.5 s later, two pg_sleep(4) in under 7 s), and
fixed sleeps fail under load. Four tests are deselected, each for a reason every transaction pooler shares
(:data:`KNOWN`). A failed download fails the test: it never skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import ProxyInfo

PSYCOPG2 = "2.9.13"
DATABASE = "psycopg2_test"
#: Tests that fail through any transaction pooler (or fail direct too), and why.
KNOWN = {
    "tests/test_connection.py::TestConnectionInfo::test_backend_pid": (
        "the backend pid is the proxy's virtual one (BackendKeyData names the client, as PgBouncer and RDS Proxy do)"
    ),
    "tests/test_async.py::AsyncTests::test_notify": "a NOTIFY carries the real server pid, not the virtual one",
    "tests/test_cursor.py::CursorTests::test_external_close_async": (
        "pg_terminate_backend() of the virtual pid terminates nothing"
    ),
    "tests/test_connection.py::ConnectionTests::test_pgconn_ptr": (
        "fails direct too: ctypes loads another libpq than the wheel's, whose PQserverVersion answers 0"
    ),
}
#: The slice passes about 645 tests (99 skipped); far fewer means it did not really run.
MIN_PASSED = 500


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        pytest.fail(f"pip {' '.join(args)} failed (PyPI is needed for this test):\n{done.stderr[-3000:]}")


@pytest.fixture(scope="module")
def psycopg2_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """psycopg2's sdist unpacked (its ``tests/``) and a directory holding the matching binary wheel's module."""
    work = tmp_path_factory.mktemp("psycopg2-suite")
    _pip("download", "--no-deps", "--no-binary", ":all:", f"psycopg2=={PSYCOPG2}", "-d", "sdist", cwd=work)
    _pip("download", "--no-deps", "--only-binary", ":all:", f"psycopg2-binary=={PSYCOPG2}", "-d", "wheel", cwd=work)
    wheels = list((work / "wheel").glob("*.whl"))
    assert len(wheels) == 1, wheels
    _pip("install", "--no-deps", "--target", str(work / "lib"), str(wheels[0]), cwd=work)
    with tarfile.open(next((work / "sdist").glob("psycopg2-*.tar.gz"))) as tar:
        tar.extractall(work / "src", filter="data")
    source = work / "src" / f"psycopg2-{PSYCOPG2}"
    assert (source / "tests" / "test_cursor.py").is_file()
    return source, work / "lib"


@pytest.mark.timeout(900)  # downloads and a suite of its own: past the project's 300 s, still bounded
def test_psycopg2_suite_through_the_proxy(
    borealis: BorealisProcess, proxy: ProxyInfo, psycopg2_suite: tuple[Path, Path]
) -> None:
    source, lib = psycopg2_suite
    with borealis.master_connect() as conn:
        conn.autocommit = True
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    (source / "pytest.ini").write_text("[pytest]\n")  # the sdist's tests, not this project's settings
    report = source / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PG"))}
    env.update(
        PYTHONPATH=str(lib),
        PSYCOPG2_TEST_FAST="1",
        PSYCOPG2_TESTDB=DATABASE,
        PSYCOPG2_TESTDB_HOST=proxy.host,
        PSYCOPG2_TESTDB_PORT=str(proxy.port),
        PSYCOPG2_TESTDB_USER=proxy.user,
        PSYCOPG2_TESTDB_PASSWORD=proxy.password,
    )
    deselect = [arg for test in KNOWN for arg in ("--deselect", test)]
    cmd = [sys.executable, "-m", "pytest", "-c", "pytest.ini", "-p", "no:cacheprovider", "-q", "-rfE",
           "-k", "not test_suite", f"--junitxml={report}", *deselect, "tests"]  # fmt: skip
    try:
        done = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"psycopg2's suite did not finish in 420 s:\n{str(exc.stdout)[-3000:]}") from None
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    assert counts["failures"] == counts["errors"] == 0, done.stdout[-6000:]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert passed >= MIN_PASSED, (counts, done.stdout[-3000:])
