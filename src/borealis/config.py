"""Settings for `borealis up` and the other commands: flags, then environment, then a TOML file.

Precedence is the usual one: a command-line flag wins over a ``BOREALIS_*`` environment variable, which wins
over the TOML file (``--config FILE``, ``$BOREALIS_CONFIG``, or ``borealis.toml`` in the data directory),
which wins over the defaults below.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Settings", "default_data_dir", "load_settings"]

ACCOUNT_ID = "000000000000"


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the user."""


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/borealis`` or ``~/.local/share/borealis``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "borealis"


@dataclass(frozen=True)
class Settings:
    """Everything `borealis up` needs to know before it starts."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    api_port: int = 4600
    port_base: int = 15432
    region: str = "us-east-1"
    postgres: str = "embedded"
    """The default engine: "embedded" (18), "embedded:16", "embedded:17", or a bin directory / pg_config path."""
    create_default_cluster: bool = True
    default_cluster: str = "default"
    log_level: str = "info"
    login_timeout: int = 60
    """Seconds a client of a cluster or proxy endpoint may take to send its startup packet and log in (as
    PostgreSQL's authentication_timeout); silent clients are disconnected after it."""
    workers: int = 0
    """HTTP API processes sharing the API port (SO_REUSEPORT): 0 means one per CPU but one (left to
    PostgreSQL), 1 only the main one."""
    tls: bool = False
    """Serve the HTTP API over TLS, with a certificate from Borealis's own CA (``DATA_DIR/ca/root.crt``)."""
    http_idle_timeout: float = 60.0
    """Seconds the HTTP API keeps a connection with no request in progress (or whose replies go unread)."""
    http_request_timeout: float = 60.0
    """Seconds the HTTP API gives a client to send one whole request (a slow sender is cut off)."""
    min_auto_pause: int = 300
    """The smallest SecondsUntilAutoPause accepted (AWS: 300); lower it for tests and development."""
    resume_wait: int = 0
    """Milliseconds a Data API call to a paused cluster waits for the resume it starts before failing with
    DatabaseResumingException (0: fail at once, as AWS does)."""
    monitoring: bool = True
    """Record what Borealis measures (AWS/RDS metrics in the metric store, API call counters for GET /metrics)
    and evaluate alarms; off only to measure what monitoring costs (bench/monitoring)."""
    archive_timeout: int = 60
    """Seconds after which a writer with new WAL closes its segment so it is archived (PostgreSQL's
    archive_timeout); a point-in-time restore switches segments itself, so this only bounds what an unplanned
    loss of the whole data directory would lose. Each early switch archives a gzip of a mostly empty segment."""
    backup_interval_minutes: int = 1440
    """Minutes between two automated base backups of a running cluster (AWS: daily); the first is taken once
    a new cluster's writer is up."""
    snapshot_quota: int = 100
    """Manual DB cluster snapshots allowed at once (AWS's default quota per Region: 100)."""
    wal_keep_mb: int = 512
    """Megabytes of WAL a writer keeps for readers that fall behind (PostgreSQL's wal_keep_size); a reader
    further behind catches up from the cluster's WAL archive instead. Lowered by tests to make that happen."""
    proxy_unix_socket: bool = True
    """The RDS proxies reach their targets' postgres over its unix socket (once PostgreSQL has accepted the
    secret's password over TCP, as for the Data API): a send there costs far less than one on loopback TCP.
    Off: over TCP only (then ``inet_server_addr()`` through a proxy shows the instance's address)."""

    @property
    def account_id(self) -> str:
        """The AWS account id that ARNs carry."""
        return ACCOUNT_ID

    @property
    def api_url(self) -> str:
        """The URL to give to ``AWS_ENDPOINT_URL``."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.api_port}"

    @property
    def ca_bundle(self) -> Path:
        """The root certificate that verifies the API (``--tls``) and the endpoints: ``AWS_CA_BUNDLE``."""
        return self.data_dir / "ca" / "root.crt"

    def exposure_warnings(self) -> list[str]:
        """What binding ``host`` exposes beyond this machine (nothing on a loopback address)."""
        if _is_loopback(self.host):
            return []
        warnings = [
            f"--host {self.host} makes every cluster endpoint reachable from the network: anyone who can reach "
            "this machine can try to log in (use strong passwords, IAM authentication, TLS in the clients)"
        ]
        if not self.tls:
            warnings.insert(
                0,
                f"--host {self.host} serves the AWS API in plain HTTP beyond this machine: secrets, passwords and "
                "query results cross the network unencrypted; add --tls (clients then trust "
                f"{self.ca_bundle})",
            )
        return warnings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


_ENV = {
    "data_dir": "BOREALIS_DATA_DIR",
    "host": "BOREALIS_HOST",
    "api_port": "BOREALIS_API_PORT",
    "port_base": "BOREALIS_PORT_BASE",
    "region": "BOREALIS_REGION",
    "postgres": "BOREALIS_POSTGRES",
    "create_default_cluster": "BOREALIS_CREATE_DEFAULT_CLUSTER",
    "default_cluster": "BOREALIS_DEFAULT_CLUSTER",
    "log_level": "BOREALIS_LOG_LEVEL",
    "workers": "BOREALIS_WORKERS",
    "login_timeout": "BOREALIS_LOGIN_TIMEOUT",
    "tls": "BOREALIS_TLS",
    "http_idle_timeout": "BOREALIS_HTTP_IDLE_TIMEOUT",
    "http_request_timeout": "BOREALIS_HTTP_REQUEST_TIMEOUT",
    "min_auto_pause": "BOREALIS_MIN_AUTO_PAUSE",
    "resume_wait": "BOREALIS_RESUME_WAIT",
    "monitoring": "BOREALIS_MONITORING",
    "archive_timeout": "BOREALIS_ARCHIVE_TIMEOUT",
    "backup_interval_minutes": "BOREALIS_BACKUP_INTERVAL_MINUTES",
    "snapshot_quota": "BOREALIS_SNAPSHOT_QUOTA",
    "wal_keep_mb": "BOREALIS_WAL_KEEP_MB",
    "proxy_unix_socket": "BOREALIS_PROXY_UNIX_SOCKET",
}


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "Path":
            return Path(str(value)).expanduser()
        if kind == "int":
            port = int(value)
            if not 0 <= port <= 65535:
                raise ValueError
            return port
        if kind == "float":
            number = float(value)
            if not 0 < number < 86400:
                raise ValueError
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return text in ("1", "true", "yes", "on")
        return str(value)
    except ValueError:
        raise ConfigError(f"invalid value for {name}: {value!r}") from None


def load_settings(
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults, the TOML file, the environment and the flags (None values in flags are unset)."""
    env = dict(os.environ) if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        if var in env and env[var] != "":
            values[name] = _coerce(name, env[var])
    values.update({k: _coerce(k, v) for k, v in flags.items() if k in _ENV})
    data_dir = values.get("data_dir") or default_data_dir()

    path = config_file or (Path(env["BOREALIS_CONFIG"]) if env.get("BOREALIS_CONFIG") else None)
    explicit = path is not None
    path = path or Path(data_dir) / "borealis.toml"
    file_values: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        table = raw.get("borealis", raw)
        for key, val in table.items():
            name = key.replace("-", "_")
            if name not in _ENV:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            file_values[name] = _coerce(name, val)
    elif explicit:
        raise ConfigError(f"config file not found: {path}")
    return replace(Settings(), **{**file_values, **values})
