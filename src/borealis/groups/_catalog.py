"""The parameters of an engine version, read from ``pg_settings`` of a real server of that version.

A throwaway server (initdb in a temporary directory, started on a free loopback port, stopped and removed)
answers once per engine version; the rows are kept in the store, so later starts of Borealis read them from
there. Each row becomes an RDS Parameter: the apply type from the setting's context (``postmaster`` needs a
restart: static; the rest: dynamic), the data type and allowed values from its type, range and enum values.

Settings that Borealis manages itself (where to listen, files, logging destination, replication, archiving)
and those that run commands or load code from paths as the OS user running Borealis are not modifiable: an
API caller is untrusted, the OS user is not theirs to act as.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from borealis.engine import Binaries, PostgresServer
from borealis.store import Store

__all__ = ["Catalog", "EngineParameter"]

_BOREALIS_MANAGED = frozenset(
    {
        # where and how postgres listens and writes: the control plane's
        "listen_addresses", "port", "unix_socket_directories", "unix_socket_group", "unix_socket_permissions",
        "data_directory", "config_file", "hba_file", "ident_file", "external_pid_file", "log_destination",
        "logging_collector", "log_directory", "log_filename", "event_source", "data_sync_retry",
        "password_encryption",  # the listeners and the proxy check SCRAM verifiers
        "ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file", "ssl_crl_dir", "krb_server_keyfile",
        # replication and archiving: the control plane's and the backups'
        "wal_level", "archive_mode", "archive_library", "primary_conninfo", "primary_slot_name", "hot_standby",
        "max_wal_senders", "max_replication_slots", "wal_log_hints", "wal_keep_size", "hot_standby_feedback",
        # readers: pg_rewind needs wal_log_hints, failover needs quorum commit
        "synchronous_standby_names", "recovery_target", "recovery_target_name",
        "recovery_target_time", "recovery_target_xid", "recovery_target_lsn", "recovery_target_inclusive",
        "recovery_target_timeline", "recovery_target_action",
        # commands and code paths run as the OS user running Borealis
        "archive_command", "archive_cleanup_command", "restore_command", "recovery_end_command",
        "ssl_passphrase_command", "dynamic_library_path", "local_preload_libraries", "session_preload_libraries",
        "jit_provider", "allow_system_table_mods", "ignore_system_indexes", "zero_damaged_pages",
        "ignore_checksum_failure", "ignore_invalid_pages", "fsync", "full_page_writes", "allow_alter_system",
    }
)  # fmt: skip
_LISTS = frozenset({"shared_preload_libraries", "search_path", "temp_tablespaces", "default_text_search_config"})
_QUERY = (
    "SELECT name, vartype, context, enumvals, min_val, max_val, short_desc, boot_val, unit "
    "FROM pg_settings ORDER BY name"
)
_LIBRARIES = (
    "SELECT f FROM pg_ls_dir((SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR')) AS f WHERE f LIKE '%.so'"
)


_FORMAT = 3  # of the rows kept in the store: a new one probes again

# Aurora's own parameters that Borealis carries out (groups._parameters turns them into postgres settings).
AURORA_PARAMETERS = (
    {
        "name": "rds.logical_replication",
        "vartype": "bool",
        "context": "postmaster",
        "short_desc": "Enables logical decoding: sets wal_level to logical.",
    },
    {
        # Carried out by the endpoint listeners (control._listener), not by postgres. Aurora's default is 0.
        "name": "rds.force_ssl",
        "vartype": "bool",
        "context": "sighup",
        "short_desc": "Force SSL connections.",
        "boot_val": "off",
    },
)


@dataclass(frozen=True, slots=True)
class EngineParameter:
    """One setting of an engine version, as RDS describes a parameter."""

    name: str
    data_type: str  # boolean, integer, float, string, list
    static: bool
    modifiable: bool
    allowed: str | None  # "0,1", "-1-2147483647", "none,ddl,mod,all"
    description: str
    enum: tuple[str, ...]
    low: float | None
    high: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EngineParameter:
        """Build from a pg_settings row (as stored)."""
        kind, context, name = row["vartype"], row["context"], row["name"]
        enum = tuple(row.get("enumvals") or ())
        low = float(row["min_val"]) if row.get("min_val") not in (None, "") else None
        high = float(row["max_val"]) if row.get("max_val") not in (None, "") else None
        data_type = {"bool": "boolean", "integer": "integer", "real": "float"}.get(kind, "string")
        if name in _LISTS:
            data_type = "list"
        if kind == "bool":
            allowed: str | None = "0,1"
        elif kind in ("integer", "real") and low is not None and high is not None:
            allowed = f"{row['min_val']}-{row['max_val']}"
        elif enum:
            allowed = ",".join(enum)  # for shared_preload_libraries: the libraries this installation has
        else:
            allowed = None
        return cls(
            name=name,
            data_type=data_type,
            static=context in ("postmaster", "internal"),
            modifiable=context != "internal" and name not in _BOREALIS_MANAGED,
            allowed=allowed,
            description=str(row.get("short_desc") or ""),
            enum=enum,
            low=low,
            high=high,
        )

    def normalise(self, value: str) -> str | None:
        """The value as postgres takes it, or None if it is not one this parameter accepts."""
        text = value.strip()
        if self.data_type == "boolean":
            lowered = text.lower()
            if lowered in ("1", "on", "true", "yes"):
                return "on"
            if lowered in ("0", "off", "false", "no"):
                return "off"
            return None
        if self.data_type in ("integer", "float"):
            try:
                number = int(text) if self.data_type == "integer" else float(text)
            except ValueError:
                return None
            if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                return None
            return text
        if self.data_type == "list" and self.enum:
            items = [i.strip() for i in text.split(",") if i.strip()]
            return ",".join(items) if all(i in self.enum for i in items) else None
        if self.enum:
            return text if text.lower() in {e.lower() for e in self.enum} else None
        if "\x00" in text or "\n" in text or "\r" in text:
            return None
        return text


class Catalog:
    """The parameters of the engine version Borealis runs, probed once and kept in the store."""

    def __init__(self, store: Store, binaries: Binaries, version: str, workdir: Path) -> None:
        self.table = store.table("engine_parameters")
        self.binaries = binaries
        self.version = version
        self.workdir = workdir
        self._lock = asyncio.Lock()
        self._params: dict[str, EngineParameter] | None = None
        self._key = f"{version}/{_FORMAT}"

    def cached(self) -> dict[str, EngineParameter] | None:
        """The parameters if they were probed already (in this process or an earlier one)."""
        if self._params is None:
            doc = self.table.get(self._key)
            if doc is not None:
                self._params = {r["name"]: EngineParameter.from_row(r) for r in doc["rows"]}
        return self._params

    async def parameters(self) -> dict[str, EngineParameter]:
        """Every parameter by name; probes a throwaway server the first time."""
        found = self.cached()
        if found is not None:
            return found
        async with self._lock:
            found = self.cached()
            if found is None:
                rows = await self._probe()
                self.table.put(self._key, {"rows": rows})
                found = self._params = {r["name"]: EngineParameter.from_row(r) for r in rows}
        return found

    async def _probe(self) -> list[dict[str, Any]]:
        root = self.workdir / f"probe-{secrets.token_hex(4)}"
        root.mkdir(parents=True, exist_ok=True)
        server = PostgresServer(root / "data", self.binaries, port=_free_port(), log_dir=root / "log")
        password = secrets.token_urlsafe(16)
        try:
            await server.initdb(superuser="borealis_probe", password=password)
            await server.start()
            dsn = server.dsn(user="borealis_probe", password=password)
            async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=30) as conn:
                cur = await conn.execute(_QUERY)
                names = [d.name for d in cur.description or ()]
                rows = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
                cur = await conn.execute(_LIBRARIES)
                libraries = sorted(
                    str(name).removesuffix(".so")
                    for (name,) in await cur.fetchall()
                    if "_and_" not in str(name) and not str(name).startswith(("libpq", "euc", "utf8"))
                )
        finally:
            with contextlib.suppress(Exception):
                await server.stop(mode="immediate")
            shutil.rmtree(root, ignore_errors=True)
        for row in rows:
            if row["name"] == "shared_preload_libraries":
                row["enumvals"] = libraries  # what this installation can load: a missing one stops postgres
        return sorted([*rows, *AURORA_PARAMETERS], key=lambda r: str(r["name"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
