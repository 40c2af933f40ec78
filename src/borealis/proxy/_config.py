"""RDS Proxy settings as AWS defines them: defaults, ranges and the messages AWS gives, as pure functions.

The API layer calls these to validate requests; the data path reads the resulting plain dicts. Nothing here
does I/O, so every rule is tested with byte-free pure tests.
"""

from __future__ import annotations

import re
from typing import Any

from borealis.aws import AWSError

__all__ = [
    "DEFAULT_POOL",
    "ENGINE_FAMILY",
    "auth_entries",
    "idle_client_timeout",
    "pool_config",
    "valid_proxy_name",
]

ENGINE_FAMILY = "POSTGRESQL"

#: ConnectionPoolConfig defaults for a new target group, as AWS documents them.
DEFAULT_POOL: dict[str, Any] = {
    "MaxConnectionsPercent": 100,
    "MaxIdleConnectionsPercent": 50,
    "ConnectionBorrowTimeout": 120,
    "SessionPinningFilters": [],
    "InitQuery": "",
}

# AWS: 1 to 63 letters, digits or hyphens, starting with a letter, no trailing or doubled hyphen.
_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?!-))*(?<!-)$")
_PINNING_FILTERS = frozenset({"EXCLUDE_VARIABLE_SETS"})


def _invalid(message: str) -> AWSError:
    return AWSError("InvalidParameterValue", message)


def valid_proxy_name(name: str) -> bool:
    """AWS's rule for DBProxyName, DBProxyEndpointName and target group names."""
    return 1 <= len(name) <= 63 and _NAME.match(name) is not None


def idle_client_timeout(value: Any) -> int:
    """IdleClientTimeout: 1 to 28,800 seconds (8 hours); AWS's default is 1,800."""
    if value is None:
        return 1800
    if not 1 <= int(value) <= 28800:
        raise _invalid("IdleClientTimeout must be between 1 and 28800 seconds.")
    return int(value)


def pool_config(requested: dict[str, Any] | None, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge a ConnectionPoolConfig request over ``current`` (or the defaults) and check AWS's ranges.

    MaxConnectionsPercent is 1-100; MaxIdleConnectionsPercent is 0 up to MaxConnectionsPercent;
    ConnectionBorrowTimeout is 0-3600 seconds; SessionPinningFilters may hold EXCLUDE_VARIABLE_SETS.
    """
    conf = dict(current or DEFAULT_POOL)
    req = requested or {}
    for key in DEFAULT_POOL:
        if key in req and req[key] is not None:
            conf[key] = req[key]
    max_pct = int(conf["MaxConnectionsPercent"])
    if not 1 <= max_pct <= 100:
        raise _invalid("MaxConnectionsPercent must be between 1 and 100.")
    if req.get("MaxIdleConnectionsPercent") is None:
        # Not asked for: the idle share follows a lowered MaxConnectionsPercent (AWS's default is 50, or
        # MaxConnectionsPercent when that is lower).
        conf["MaxIdleConnectionsPercent"] = min(int(conf["MaxIdleConnectionsPercent"]), max_pct)
    idle_pct = int(conf["MaxIdleConnectionsPercent"])
    if not 0 <= idle_pct <= max_pct:
        raise _invalid("MaxIdleConnectionsPercent must be between 0 and the value of MaxConnectionsPercent.")
    timeout = int(conf["ConnectionBorrowTimeout"])
    if not 0 <= timeout <= 3600:
        raise _invalid("ConnectionBorrowTimeout must be between 0 and 3600 seconds.")
    filters = list(conf.get("SessionPinningFilters") or [])
    bad = [f for f in filters if f not in _PINNING_FILTERS]
    if bad:
        raise _invalid(f"Invalid SessionPinningFilters value: {bad[0]}. Valid values: EXCLUDE_VARIABLE_SETS.")
    init = str(conf.get("InitQuery") or "")
    if len(init) > 65536:
        raise _invalid("InitQuery must be at most 65536 characters.")
    return {
        "MaxConnectionsPercent": max_pct,
        "MaxIdleConnectionsPercent": idle_pct,
        "ConnectionBorrowTimeout": timeout,
        "SessionPinningFilters": filters,
        "InitQuery": init,
    }


def auth_entries(auth: list[dict[str, Any]] | None, *, required: bool = True) -> list[dict[str, Any]]:
    """Validate the Auth list of CreateDBProxy/ModifyDBProxy; fill AWS's defaults.

    Each entry names a Secrets Manager secret (AuthScheme SECRETS) holding ``username`` and ``password``;
    IAMAuth defaults to DISABLED and ClientPasswordAuthType to POSTGRES_SCRAM_SHA_256 for PostgreSQL.
    """
    if not auth:
        if required:
            raise _invalid("The Auth parameter must contain at least one UserAuthConfig.")
        return []
    out = []
    for entry in auth:
        scheme = entry.get("AuthScheme") or "SECRETS"
        if scheme != "SECRETS":
            raise _invalid(f"Invalid AuthScheme: {scheme}.")
        if not entry.get("SecretArn"):
            raise _invalid("A UserAuthConfig with AuthScheme SECRETS must name a SecretArn.")
        kind = entry.get("ClientPasswordAuthType") or "POSTGRES_SCRAM_SHA_256"
        if kind not in ("POSTGRES_SCRAM_SHA_256", "POSTGRES_MD5"):
            raise _invalid(f"ClientPasswordAuthType {kind} is not valid for engine family POSTGRESQL.")
        iam = entry.get("IAMAuth") or "DISABLED"
        item = {
            "AuthScheme": scheme,
            "SecretArn": entry["SecretArn"],
            "IAMAuth": iam,
            "ClientPasswordAuthType": kind,
        }
        for optional in ("Description", "UserName"):
            if entry.get(optional):
                item[optional] = entry[optional]
        out.append(item)
    return out
