"""The cluster endpoints as clients meet them: idle sockets cost postgres nothing, logins and cancels work.

Each accepted TCP connection used to open a postgres connection at once, before a byte arrived: enough
idle sockets filled max_connections and every new login failed with 53300.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from borealis import pgwire

from .conftest import BorealisProcess, postgres_pids


def _writer(borealis: BorealisProcess) -> tuple[str, int]:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    return cluster["Endpoint"], cluster["Port"]


def test_idle_sockets_open_no_postgres_connection(borealis: BorealisProcess) -> None:
    host, port = _writer(borealis)
    before = len(postgres_pids(borealis.data_dir))
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(60)]
    try:
        # A login after the idle sockets: the listener accepted them all before it, in order.
        with borealis.master_connect() as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            # postgres forks a process per connection, so 60 relayed sockets would show as 60 more.
            during = len(postgres_pids(borealis.data_dir))
        assert during - before < 20, (before, during)
    finally:
        for s in idle:
            s.close()


def test_cancel_through_the_writer_endpoint(borealis: BorealisProcess) -> None:
    with borealis.master_connect() as conn:
        pid = conn.info.backend_pid
        result: list[Any] = []

        def run() -> None:
            try:
                conn.execute("select pg_sleep(60)")
                result.append("finished")
            except psycopg.errors.QueryCanceled as exc:
                result.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        with borealis.master_connect() as watcher:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = watcher.execute("select wait_event from pg_stat_activity where pid = %s", (pid,)).fetchone()
                if row is not None and row[0] == "PgSleep":
                    break
                time.sleep(0.05)
        conn.cancel_safe()  # a new connection to the endpoint with the CancelRequest
        worker.join(60)
        assert len(result) == 1 and isinstance(result[0], psycopg.errors.QueryCanceled)


@pytest.mark.parametrize("sslmode", ["prefer", "disable"])
def test_login_with_and_without_an_ssl_request(borealis: BorealisProcess, sslmode: str) -> None:
    host, port = _writer(borealis)
    with borealis.master_connect() as conn:
        user = conn.info.user
        password = conn.info.password
    with psycopg.connect(
        host=host, port=port, user=user, password=password, dbname="postgres", sslmode=sslmode, connect_timeout=10
    ) as conn:
        assert conn.execute("select current_user").fetchone() == (user,)


def _endpoints(borealis: BorealisProcess) -> dict[str, tuple[str, int]]:
    rds = borealis.client("rds")
    cluster = rds.describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    instance = rds.describe_db_instances()["DBInstances"][0]
    return {
        "writer": (cluster["Endpoint"], cluster["Port"]),
        "reader": (cluster["ReaderEndpoint"], cluster["Port"]),
        "instance": (instance["Endpoint"]["Address"], instance["Endpoint"]["Port"]),
    }


@pytest.mark.parametrize("endpoint", ["writer", "reader", "instance"])
def test_verify_full_on_every_endpoint(borealis: BorealisProcess, endpoint: str) -> None:
    host, port = _endpoints(borealis)[endpoint]
    with borealis.master_connect() as conn:
        user, password = conn.info.user, conn.info.password
    root = str(borealis.data_dir / "ca" / "root.crt")
    for negotiation in ("postgres", "direct"):
        with psycopg.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            dbname="postgres",
            sslmode="verify-full",
            sslrootcert=root,
            sslnegotiation=negotiation,
            connect_timeout=10,
        ) as conn:
            assert conn.pgconn.ssl_in_use
            row = conn.execute("select repeat('z', 50000), current_user").fetchone()
            assert row == ("z" * 50000, user)


def test_rds_force_ssl_refuses_plaintext_logins(borealis: BorealisProcess) -> None:
    rds = borealis.client("rds")
    family = rds.describe_db_engine_versions(Engine="aurora-postgresql", DefaultOnly=True)["DBEngineVersions"][0][
        "DBParameterGroupFamily"
    ]
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName="force-ssl", DBParameterGroupFamily=family, Description="TLS only"
    )
    rds.modify_db_cluster_parameter_group(
        DBClusterParameterGroupName="force-ssl",
        Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyMethod": "immediate"}],
    )
    rds.modify_db_cluster(DBClusterIdentifier="default", DBClusterParameterGroupName="force-ssl", ApplyImmediately=True)
    try:
        host, port = _writer(borealis)
        with borealis.master_connect() as conn:  # sslmode=prefer: TLS, so allowed
            assert conn.pgconn.ssl_in_use
            user, password = conn.info.user, conn.info.password
        with pytest.raises(
            psycopg.OperationalError, match=r'no pg_hba.conf entry for host ".*", user .* no encryption'
        ):
            psycopg.connect(
                host=host, port=port, user=user, password=password, dbname="postgres", sslmode="disable",
                connect_timeout=10,
            )  # fmt: skip
        # The SQLSTATE, off the wire (libpq keeps none for a login error).
        with socket.create_connection((host, port), timeout=30) as s:
            s.sendall(pgwire.encode(pgwire.StartupMessage({"user": user, "database": "postgres"})))
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        assert answer[:1] == b"E" and b"C28000\0" in answer
    finally:
        rds.modify_db_cluster(
            DBClusterIdentifier="default", DBClusterParameterGroupName=f"default.{family}", ApplyImmediately=True
        )
        rds.delete_db_cluster_parameter_group(DBClusterParameterGroupName="force-ssl")
    with psycopg.connect(
        host=host, port=port, user=user, password=password, dbname="postgres", sslmode="disable", connect_timeout=10
    ) as conn:
        assert not conn.pgconn.ssl_in_use


def test_pgjdbc_verify_full_on_the_writer_endpoint(borealis: BorealisProcess, tmp_path: Path) -> None:
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac is not None and java is not None, "the JDBC test needs a JDK (javac and java)"
    jar = Path("/usr/share/java/postgresql.jar")
    assert jar.exists(), f"{jar} missing: apt-get install libpostgresql-jdbc-java (done by .ci/run)"
    source = Path(__file__).resolve().parents[1] / "clients" / "jdbc" / "ProxyJdbc.java"
    subprocess.run([javac, "-d", str(tmp_path), "-cp", str(jar), str(source)], check=True, timeout=180)
    host, port = _writer(borealis)
    with borealis.master_connect() as conn:
        user, password = conn.info.user, conn.info.password
    out = subprocess.run(
        [java, "-cp", f"{jar}:{tmp_path}", "ProxyJdbc", host, str(port), user, password,
         str(borealis.data_dir / "ca" / "root.crt")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")
