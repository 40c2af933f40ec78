"""Aurora's roles in a cluster: the internal superuser, ``rds_superuser`` and a master user that is not one.

On Aurora the master user is ``LOGIN CREATEDB CREATEROLE``, NOSUPERUSER, and a member of ``rds_superuser``:
it creates roles and databases, grants, installs allowed extensions, sees every session and ends them, but
cannot read server files, run programs or load libraries. Only ``rdsadmin`` (Borealis itself, logging in
over the unix socket) is a PostgreSQL superuser. Every function here is idempotent and runs on a
connection of that superuser (autocommit), so a start of any cluster, however old, makes it so again.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "ADMIN_USER",
    "FORBIDDEN_ROLES",
    "RDS_ROLES",
    "RDS_SUPERUSER_GRANTS",
    "close_old_holes",
    "ensure_database",
    "ensure_master",
    "ensure_roles",
]

ADMIN_USER = "rdsadmin"
"""The internal superuser Borealis manages clusters with, as Aurora's own ``rdsadmin``."""

RDS_ROLES = ("rds_superuser", "rds_iam", "rds_replication", "rds_password")
"""Aurora's predefined roles, NOLOGIN groups: ``rds_iam`` members log in with IAM tokens (issue 17)."""

RDS_SUPERUSER_GRANTS = (
    "pg_monitor",
    "pg_signal_backend",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
    "pg_checkpoint",
    "pg_create_subscription",
    "pg_use_reserved_connections",
)
"""Predefined roles ``rds_superuser`` holds (with ADMIN OPTION, so the master can pass them on), where the
server's version has them: monitoring, reading settings and statistics, signalling (cancelling and
terminating) non-superuser backends, checkpoints, subscriptions."""

FORBIDDEN_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
"""Never granted to anyone but superusers: each one reaches the host (files, programs) as the server."""

_Conn = psycopg.AsyncConnection[Any]


async def _exists(conn: _Conn, query: str, name: str) -> bool:
    return await (await conn.execute(query, [name])).fetchone() is not None


async def _role_exists(conn: _Conn, name: str) -> bool:
    return await _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", name)


async def ensure_roles(conn: _Conn) -> None:
    """Create Aurora's roles and give ``rds_superuser`` what AWS documents for it; revoke what it must not have."""
    for role in RDS_ROLES:
        if not await _role_exists(conn, role):
            await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    rds_superuser = sql.Identifier("rds_superuser")
    for role in RDS_SUPERUSER_GRANTS:
        if await _role_exists(conn, role):
            await conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(role), rds_superuser))
    # rds_superuser grants (and revokes) the other rds_* roles to users, as on Aurora.
    for role in RDS_ROLES[1:]:
        await conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(role), rds_superuser))
    # In the postgres database the public schema belongs to pg_database_owner (PostgreSQL 15+), and the
    # database to rdsadmin, so that the master cannot drop the database Borealis's own work connects to;
    # rds_superuser gets what a database owner would use there: creating schemas, tables and extensions.
    await conn.execute(sql.SQL("GRANT CREATE, TEMPORARY ON DATABASE postgres TO {}").format(rds_superuser))
    if conn.info.dbname == "postgres":
        await conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(rds_superuser))


async def close_old_holes(conn: _Conn) -> None:
    """Undo what a superuser master of an older Borealis could hand out: SUPERUSER on other roles, and
    membership in the roles that reach the host. Only the connected superuser (rdsadmin) keeps SUPERUSER."""
    cur = await conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper AND rolname <> current_user")
    for (role,) in await cur.fetchall():
        await conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(role)))
    cur = await conn.execute(
        "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
        " JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = ANY(%s) AND NOT m.rolsuper",
        [list(FORBIDDEN_ROLES)],
    )
    for role, member in await cur.fetchall():
        await conn.execute(sql.SQL("REVOKE {} FROM {} CASCADE").format(sql.Identifier(role), sql.Identifier(member)))


async def ensure_master(conn: _Conn, master: str) -> None:
    """Create the master user, or make an existing one what Aurora's is (a superuser from an older Borealis
    loses SUPERUSER, REPLICATION and BYPASSRLS here), and a member of ``rds_superuser`` WITH ADMIN OPTION."""
    name = sql.Identifier(master)
    attributes = sql.SQL("LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS CREATEDB CREATEROLE INHERIT")
    if await _role_exists(conn, master):
        await conn.execute(sql.SQL("ALTER ROLE {} ").format(name) + attributes)
    else:
        await conn.execute(sql.SQL("CREATE ROLE {} ").format(name) + attributes)
    await conn.execute(sql.SQL("GRANT rds_superuser TO {} WITH ADMIN OPTION").format(name))


async def ensure_database(conn: _Conn, dbname: str, owner: str) -> None:
    """Create database ``dbname`` owned by ``owner`` unless it exists (the cluster's DatabaseName)."""
    if not await _exists(conn, "SELECT 1 FROM pg_database WHERE datname = %s", dbname):
        await conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner)))
