"""Request parameters every RDS module reads the same way: resource keys, new identifiers and Tags.

Shared by ``rds``, ``rds_ha`` and ``rds_snapshots``; it lives apart from ``rds`` because ``rds`` imports the
others to register their handlers.
"""

from __future__ import annotations

from typing import Any

from borealis.aws import AWSError
from borealis.control._names import valid_identifier

__all__ = ["IDENT_MESSAGE", "identifier", "key", "tags"]

IDENT_MESSAGE = (
    "The parameter {name} is not a valid identifier. Identifiers must begin with a letter; must contain only "
    "ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two consecutive hyphens."
)
"""RDS's InvalidParameterValue text for a malformed identifier."""


def key(ident: str) -> str:
    """The store key of a resource named by its identifier or its ARN (RDS identifiers are case-insensitive)."""
    return ident.rsplit(":", 1)[-1].lower() if ident.startswith("arn:") else ident.lower()


def identifier(params: dict[str, Any], name: str) -> str:
    """The new identifier ``params[name]``, lowercased as RDS stores it; InvalidParameterValue if malformed."""
    ident = str(params[name]).lower()
    if not valid_identifier(ident):
        raise AWSError("InvalidParameterValue", IDENT_MESSAGE.format(name=name))
    return ident


def tags(params: dict[str, Any]) -> list[dict[str, str]]:
    """The request's Tags as stored: each with a Value, empty when the caller left it out."""
    return [{"Key": t["Key"], "Value": t.get("Value", "")} for t in params.get("Tags") or []]
