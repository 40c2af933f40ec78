"""Issue 11 items 1 and 2: one tenant cannot reach the host or another cluster, and postgres keeps no secrets;
the extension allow-list; clusters of two major versions side by side.

A Borealis of its own (started with a canary secret in its environment) with two clusters, A (the default)
and B. The attacker is A's master user, with a real client over A's endpoint, as a tenant would be.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from borealis.engine import Binaries, installed_extensions
from tests.integration.conftest import BorealisProcess

CANARY = "canary-secret-do-not-leak-7f3a9c"
FAST = {"Delay": 1, "MaxAttempts": 180}
B_PASSWORD = "b-master-password-1"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BorealisProcess]:
    """A Borealis whose operator's shell held AWS keys, with cluster B beside the default cluster A."""
    data_dir = tmp_path_factory.mktemp("tenancy") / "data"
    proc = BorealisProcess(
        data_dir, extra_env={"AWS_SECRET_ACCESS_KEY": CANARY, "AWS_SESSION_TOKEN": CANARY, "PGPASSWORD": CANARY}
    )
    proc.start()
    try:
        rds = proc.client("rds")
        rds.create_db_cluster(
            DBClusterIdentifier="tenant-b",
            Engine="aurora-postgresql",
            MasterUsername="b_admin",
            MasterUserPassword=B_PASSWORD,
            DatabaseName="bdb",
            EngineVersion="16",  # beside the default engine (18): two major versions in one Borealis
            ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 1},
        )
        rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier="tenant-b", WaiterConfig=FAST)
        rds.create_db_instance(
            DBInstanceIdentifier="tenant-b-1",
            DBClusterIdentifier="tenant-b",
            DBInstanceClass="db.serverless",
            Engine="aurora-postgresql",
        )
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="tenant-b-1", WaiterConfig=FAST)
        yield proc
    finally:
        proc.stop()


def _master(tenants: BorealisProcess, dbname: str | None = None) -> psycopg.Connection[Any]:
    conn = tenants.master_connect(dbname=dbname)
    conn.autocommit = True
    return conn


def _b_master(tenants: BorealisProcess) -> psycopg.Connection[Any]:
    cluster = tenants.client("rds").describe_db_clusters(DBClusterIdentifier="tenant-b")["DBClusters"][0]
    return psycopg.connect(
        host=cluster["Endpoint"],
        port=cluster["Port"],
        user="b_admin",
        password=B_PASSWORD,
        dbname="bdb",
        autocommit=True,
        connect_timeout=10,
    )


def _where(conn: psycopg.Connection[Any]) -> tuple[str, int, str]:
    """(unix socket directory, port, data directory) of the postgres behind a master's connection: what
    rds_superuser may read (pg_read_all_settings), as on Aurora."""
    row = conn.execute(
        "SELECT current_setting('unix_socket_directories'), inet_server_port(), current_setting('data_directory')"
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), str(row[2])


def _internal(where: tuple[str, int, str], dbname: str = "postgres") -> psycopg.Connection[Any]:
    """Borealis's own login (the OS user running it, as this test does): peer on the cluster's unix socket."""
    return psycopg.connect(host=where[0], port=where[1], user="rdsadmin", dbname=dbname, autocommit=True)


def _refused(conn: psycopg.Connection[Any], statement: str, sqlstate: str) -> str:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement.encode())
    assert info.value.sqlstate == sqlstate, f"{statement}: {info.value.sqlstate} {info.value}"
    return str(info.value)


def test_master_is_not_a_superuser_but_holds_rds_superuser(tenants: BorealisProcess) -> None:
    with _master(tenants) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, True, True, False, False)
        held = conn.execute(
            "SELECT r.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " WHERE m.member = 'postgres'::regrole"
        ).fetchall()
        assert held == [("rds_superuser", True)]
        for role in ("pg_monitor", "pg_signal_backend", "pg_read_all_settings", "pg_read_all_stats"):
            assert conn.execute("SELECT pg_has_role(%s, 'USAGE')", [role]).fetchone() == (True,), role
        for role in ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "rdsadmin"):
            assert conn.execute("SELECT pg_has_role(%s, 'MEMBER')", [role]).fetchone() == (False,), role
        supers = conn.execute("SELECT array_agg(rolname) FROM pg_roles WHERE rolsuper").fetchone()
        assert supers == (["rdsadmin"],)
        for role in ("rds_iam", "rds_replication", "rds_password"):
            assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [role]).fetchone() == (False,)


ATTACKS = [
    # Reaching the host: programs, files, libraries, the server's configuration.
    ("COPY (SELECT 1) TO PROGRAM 'id'", "42501"),
    ("COPY stolen FROM PROGRAM 'psql -h /tmp -U rdsadmin -c \"select 1\"'", "42501"),
    ("COPY stolen FROM '/etc/passwd'", "42501"),
    ("COPY (SELECT 1) TO '/tmp/borealis-tenancy-written'", "42501"),
    ("SELECT pg_read_file('/etc/passwd')", "42501"),
    ("SELECT pg_read_binary_file('/proc/self/environ')", "42501"),
    ("SELECT pg_ls_dir('/')", "42501"),
    ("SELECT lo_import('/etc/passwd')", "42501"),
    ("SELECT lo_export(lo_create(0), '/tmp/borealis-tenancy-lo')", "42501"),
    ("LOAD '/tmp/borealis-tenancy-evil.so'", "42501"),
    ("CREATE FUNCTION evil() RETURNS int AS 'libc.so.6', 'getpid' LANGUAGE c", "42501"),
    ("ALTER SYSTEM SET shared_preload_libraries = 'evil'", "42501"),
    ("SET session_preload_libraries = 'evil'", "42501"),
    ("SELECT pg_reload_conf()", "42501"),
    ("CREATE EVENT TRIGGER evil ON ddl_command_start EXECUTE FUNCTION pg_catalog.now()", "42501"),
    # Becoming a superuser, or handing oneself what reaches the host.
    ("SET ROLE rdsadmin", "42501"),
    ("SET SESSION AUTHORIZATION rdsadmin", "42501"),
    ("ALTER ROLE CURRENT_USER SUPERUSER", "42501"),
    ("CREATE ROLE evil SUPERUSER", "42501"),
    ("CREATE ROLE evil REPLICATION", "42501"),
    ("GRANT pg_execute_server_program TO CURRENT_USER", "42501"),
    ("GRANT pg_read_server_files TO CURRENT_USER", "42501"),
    ("GRANT pg_write_server_files TO CURRENT_USER", "42501"),
    ("GRANT rdsadmin TO CURRENT_USER", "42501"),
    ("ALTER ROLE rdsadmin PASSWORD 'taken-over'", "42501"),
    ("DROP DATABASE postgres", "42501"),
]


@pytest.mark.parametrize(("statement", "sqlstate"), ATTACKS, ids=[a[0][:40] for a in ATTACKS])
def test_master_cannot_reach_the_host_or_become_superuser(
    tenants: BorealisProcess, statement: str, sqlstate: str
) -> None:
    with _master(tenants) as conn:
        conn.execute("CREATE TEMP TABLE stolen (line text)")
        _refused(conn, statement, sqlstate)


def test_master_cannot_terminate_borealis_sessions(tenants: BorealisProcess) -> None:
    with _master(tenants) as conn, _internal(_where(conn)) as admin:
        pid = admin.info.backend_pid
        message = _refused(conn, f"SELECT pg_terminate_backend({pid})", "42501")
        assert "permission denied to terminate process" in message
        assert admin.execute("SELECT 1").fetchone() == (1,)


def test_master_of_one_cluster_cannot_reach_another(tenants: BorealisProcess) -> None:
    with _b_master(tenants) as b:
        b_socket, b_port, _ = _where(b)
        b.execute("CREATE TABLE IF NOT EXISTS b_private (v text)")
        b.execute("INSERT INTO b_private VALUES ('only for b')")
    with _master(tenants) as a:
        a.execute("CREATE TEMP TABLE stolen (line text)")
        # The attack the issue found: psql from the server to B's unix socket as B's superuser.
        _refused(
            a,
            f"COPY stolen FROM PROGRAM 'psql -h {b_socket} -p {b_port} -U rdsadmin -d bdb -Atc \"table b_private\"'",
            "42501",
        )
        _refused(a, f"SELECT pg_ls_dir('{b_socket}')", "42501")
    # A's master's password is not B's, and B's socket does not take TCP-less strangers either.
    cluster = tenants.client("rds").describe_db_clusters(DBClusterIdentifier="tenant-b")["DBClusters"][0]
    secret = tenants.client("secretsmanager").get_secret_value(
        SecretId=tenants.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0][
            "MasterUserSecret"
        ]["SecretArn"]
    )
    a_password = json.loads(secret["SecretString"])["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=cluster["Endpoint"], port=cluster["Port"], user="postgres", password=a_password, dbname="bdb"
        )


def test_master_still_does_what_an_aurora_master_does(tenants: BorealisProcess) -> None:
    with _master(tenants, "postgres") as conn:
        # The postgres database: tables in public, schemas, as on Aurora.
        conn.execute("CREATE TABLE IF NOT EXISTS public.mine (id int)")
        conn.execute("INSERT INTO public.mine VALUES (1)")
        conn.execute("CREATE SCHEMA IF NOT EXISTS app")
        conn.execute("CREATE TABLE IF NOT EXISTS app.t (id int)")
        # Roles: create, grant the rds_* roles (and rds_superuser itself) to them, drop them.
        conn.execute("DROP ROLE IF EXISTS tenancy_app")
        conn.execute("CREATE ROLE tenancy_app LOGIN PASSWORD 'app-password-1'")
        for role in ("rds_superuser", "rds_iam", "rds_replication", "rds_password", "pg_monitor"):
            conn.execute(f"GRANT {role} TO tenancy_app")
        conn.execute("GRANT SELECT ON public.mine TO tenancy_app")
        # Databases: create one, own it, create tables there.
        conn.execute("DROP DATABASE IF EXISTS tenancy_db")
        conn.execute("CREATE DATABASE tenancy_db")
        owner = conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'tenancy_db'").fetchone()
        assert owner == ("postgres",)
        # Sessions: see everyone's queries, end a session of another role.
        with psycopg.connect(
            host=conn.info.host, port=conn.info.port, user="tenancy_app", password="app-password-1", dbname="postgres"
        ) as app:
            pid = app.info.backend_pid
            rows = conn.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall()
            assert rows and rows[0][0] != "<insufficient privilege>"
            assert conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
        # Extensions on the allow-list that the engine ships: the script runs as rdsadmin, the master owns it.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        owner = conn.execute("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert owner == ("postgres",)
        assert conn.execute("SELECT '[1,2]'::vector <-> '[1,3]'::vector").fetchone() == (1.0,)
        conn.execute("DROP EXTENSION vector")
        conn.execute("DROP TABLE public.mine, app.t")
        conn.execute("DROP SCHEMA app")
        conn.execute("DROP DATABASE tenancy_db")
        conn.execute("DROP ROLE tenancy_app")
    with _master(tenants) as conn:  # and its DatabaseName database
        conn.execute("CREATE TABLE IF NOT EXISTS in_own_db (id int)")
        conn.execute("DROP TABLE in_own_db")


def _postmaster_pid(conn: psycopg.Connection[Any]) -> int:
    text = (Path(_where(conn)[2]) / "postmaster.pid").read_text()
    return int(text.split("\n", 1)[0])


def test_postgres_gets_a_minimal_environment(tenants: BorealisProcess) -> None:
    # The test runs as the OS user running Borealis (root in CI), which may read any process's environment.
    for connect in (_master, _b_master):
        with connect(tenants) as conn:
            pid = _postmaster_pid(conn)
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
        assert CANARY not in raw.decode()
        assert set(env) <= {"PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME", "TZ", "PGLOCALEDIR", "PGSYSCONFDIR"}
        assert env["LC_ALL"] == "C"
    with _master(tenants) as conn:
        _refused(conn, "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/environ')", "42501")
        _refused(conn, "SELECT pg_read_file('/proc/self/environ')", "42501")


def test_superuser_master_of_an_older_borealis_is_fixed_by_a_restart(tenants: BorealisProcess) -> None:
    rds = tenants.client("rds")
    with _master(tenants) as conn:
        where = _where(conn)
    # What a cluster made by an older Borealis looked like: a superuser master that handed out more.
    with _internal(where) as admin:
        admin.execute("ALTER ROLE postgres SUPERUSER")
        admin.execute("DROP ROLE IF EXISTS old_accomplice")
        admin.execute("CREATE ROLE old_accomplice SUPERUSER")
        admin.execute("CREATE ROLE old_reader IN ROLE pg_read_server_files, pg_execute_server_program")
    rds.reboot_db_instance(DBInstanceIdentifier="default-instance-1")
    # The reboot is written (status rebooting) before the call returns; available again once bootstrapped.
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="default-instance-1", WaiterConfig=FAST)
    with _master(tenants) as conn:
        supers = conn.execute("SELECT array_agg(rolname ORDER BY rolname) FROM pg_roles WHERE rolsuper").fetchone()
        assert supers == (["rdsadmin"],)
        for role in ("pg_read_server_files", "pg_execute_server_program"):
            assert conn.execute("SELECT pg_has_role('old_reader', %s, 'MEMBER')", [role]).fetchone() == (False,)
        _refused(conn, "COPY (SELECT 1) TO PROGRAM 'id'", "42501")
        where = _where(conn)
    with _internal(where) as admin:
        admin.execute("DROP ROLE old_accomplice, old_reader")


# Extensions: the allow-list on the default engine (PostgreSQL 18 with contrib) -----------------------------

ALLOWED_HERE = [
    "uuid-ossp", "pg_stat_statements", "pg_trgm", "hstore", "citext", "btree_gist", "btree_gin", "tablefunc",
    "unaccent", "fuzzystrmatch", "intarray", "ltree", "pg_buffercache", "vector", "dblink", "postgres_fdw",
    "pgcrypto",  # built into the wheel by scripts/add-pgcrypto (install-test-deps runs it)
]  # fmt: skip


@pytest.mark.parametrize("extension", ALLOWED_HERE)
def test_master_creates_allowed_extensions(tenants: BorealisProcess, extension: str) -> None:
    with _master(tenants) as conn:
        conn.execute(f'DROP EXTENSION IF EXISTS "{extension}" CASCADE')
        conn.execute(f'CREATE EXTENSION "{extension}"')
        owner = conn.execute("SELECT extowner::regrole::text FROM pg_extension WHERE extname = %s", [extension])
        assert owner.fetchone() == ("postgres",)
        conn.execute(f'DROP EXTENSION "{extension}" CASCADE')


def test_uuid_ossp_and_pg_stat_statements_work_for_the_master(tenants: BorealisProcess) -> None:
    with _master(tenants) as conn:
        conn.execute('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')
        row = conn.execute(
            "SELECT uuid_generate_v4() <> uuid_generate_v4(), uuid_generate_v5(uuid_ns_url(), 'https://aws.amazon.com')"
        ).fetchone()
        assert row is not None and row[0] is True
        assert row[1] == uuid.uuid5(uuid.NAMESPACE_URL, "https://aws.amazon.com")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # Preloaded, as Aurora's default parameter group does: the master reads every statement's text.
        conn.execute("SELECT 1 AS tenancy_statement_marker")
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%tenancy_statement_marker%'"
        ).fetchone()
        assert row is not None and row[0] >= 1
        conn.execute("DROP EXTENSION pg_stat_statements")
        conn.execute('DROP EXTENSION "uuid-ossp"')


def test_pgcrypto_works_for_the_master_on_the_default_engine(tenants: BorealisProcess) -> None:
    built = "pgcrypto" in installed_extensions(Binaries.find())
    assert built, "pgcrypto is not built into the default engine 18: run scripts/add-pgcrypto (install-test-deps does)"
    with _master(tenants) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        row = conn.execute(
            "SELECT crypt('secret', gen_salt('bf', 6)), encode(digest('abc', 'sha1'), 'hex'),"
            " encode(hmac('data', 'key', 'sha256'), 'hex'), length(gen_random_bytes(32)),"
            " pgp_sym_decrypt(pgp_sym_encrypt('hello', 'pw'), 'pw')"
        ).fetchone()
        assert row is not None
        hashed, sha1, mac, random_length, decrypted = row
        assert hashed.startswith("$2a$06$")
        assert conn.execute("SELECT crypt('secret', %s) = %s", [hashed, hashed]).fetchone() == (True,)
        assert sha1 == hashlib.sha1(b"abc").hexdigest()
        assert mac == hmac.new(b"key", b"data", hashlib.sha256).hexdigest()
        assert (random_length, decrypted) == (32, "hello")
        conn.execute("DROP EXTENSION pgcrypto")


def test_extensions_off_the_list_are_refused_without_a_host_path(tenants: BorealisProcess) -> None:
    with _master(tenants) as conn:
        for extension in ("file_fdw", "amcheck_next", "adminpack", "plpython3u", "no_such_extension"):
            with pytest.raises(psycopg.Error) as info:
                conn.execute(f'CREATE EXTENSION "{extension}"')
            error = info.value
            assert error.sqlstate in ("42501", "0A000"), (extension, error)
            text = " ".join(filter(None, [str(error), error.diag.message_detail, error.diag.message_hint]))
            assert "/" not in text, (extension, text)
        message = _refused(conn, "CREATE EXTENSION file_fdw", "42501")
        assert 'permission denied to create extension "file_fdw"' in message


def test_dblink_and_postgres_fdw_cannot_borrow_borealis_login(tenants: BorealisProcess) -> None:
    # A tenant with dblink aims at the unix socket of cluster B (or its own) as B's superuser: a non-superuser
    # must give a password, and a socket login that does not ask for one is refused to it anyway.
    with _b_master(tenants) as b:
        b_socket, b_port, _ = _where(b)
    target = f"host={b_socket} port={b_port} user=rdsadmin dbname=postgres"
    with _master(tenants) as a:
        a.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        a.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        for conninfo in (target, target + " password=guess"):
            with pytest.raises(psycopg.Error) as info:
                a.execute("SELECT * FROM dblink(%s, 'select 1') AS t(x int)", [conninfo])
            assert info.value.sqlstate in ("2F003", "08001"), info.value
        a.execute("DROP SERVER IF EXISTS b_socket CASCADE")
        a.execute(
            "CREATE SERVER b_socket FOREIGN DATA WRAPPER postgres_fdw"
            f" OPTIONS (host '{b_socket}', port '{b_port}', dbname 'postgres')"
        )
        a.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER b_socket OPTIONS (user 'rdsadmin')")
        a.execute(
            "CREATE FOREIGN TABLE b_roles (rolname name) SERVER b_socket"
            " OPTIONS (schema_name 'pg_catalog', table_name 'pg_authid')"
        )
        with pytest.raises(psycopg.Error) as info:
            a.execute("SELECT * FROM b_roles")
        assert info.value.sqlstate in ("2F003", "08001"), info.value
        a.execute("DROP SERVER b_socket CASCADE")
        a.execute("DROP EXTENSION dblink")
        a.execute("DROP EXTENSION postgres_fdw")


def test_clusters_of_different_major_versions_side_by_side(tenants: BorealisProcess) -> None:
    rds = tenants.client("rds")
    versions = {
        c["DBClusterIdentifier"]: c["EngineVersion"]
        for c in rds.describe_db_clusters()["DBClusters"]
        if c["DBClusterIdentifier"] in ("default", "tenant-b")
    }
    assert versions["default"].startswith("18."), versions
    assert versions["tenant-b"].startswith("16."), versions
    with _master(tenants) as a, _b_master(tenants) as b:
        assert a.execute("SHOW server_version_num").fetchone()[0].startswith("18")  # type: ignore[index]
        assert b.execute("SHOW server_version_num").fetchone()[0].startswith("16")  # type: ignore[index]
