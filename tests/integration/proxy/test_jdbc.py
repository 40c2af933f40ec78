"""pgjdbc (Debian's libpostgresql-jdbc-java) through the proxy: TLS verify-full, server-side prepared
statements from 16 connections over a small pool, commit and rollback. The program is
tests/clients/jdbc/ProxyJdbc.java, compiled here with the JDK's javac."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import BorealisProcess

from .conftest import make_auth_proxy

SOURCE = Path(__file__).resolve().parents[2] / "clients" / "jdbc" / "ProxyJdbc.java"
JAR = Path("/usr/share/java/postgresql.jar")


def test_pgjdbc_through_the_proxy(borealis: BorealisProcess, tmp_path: Path) -> None:
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        pytest.fail("no JDK: the JDBC test needs javac and java (apt-get install default-jdk-headless)")
    if not JAR.exists():
        pytest.fail(f"{JAR} missing: apt-get install libpostgresql-jdbc-java (done by .ci/run)")
    subprocess.run([javac, "-d", str(tmp_path), "-cp", str(JAR), str(SOURCE)], check=True, timeout=180)
    info = make_auth_proxy(borealis, "jdbc-proxy", require_tls=True)
    borealis.client("rds").modify_db_proxy_target_group(
        DBProxyName=info.name, TargetGroupName="default", ConnectionPoolConfig={"MaxConnectionsPercent": 1}
    )
    out = subprocess.run(
        [
            java, "-cp", f"{JAR}:{tmp_path}", "ProxyJdbc",
            info.host, str(info.port), info.user, info.password, str(borealis.data_dir / "ca" / "root.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")
