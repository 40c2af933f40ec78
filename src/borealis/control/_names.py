"""Identifiers, ARNs and generated values in the forms AWS uses."""

from __future__ import annotations

import re
import secrets
import string
import uuid

__all__ = [
    "cluster_arn",
    "generate_password",
    "instance_arn",
    "master_secret_name",
    "resource_id",
    "valid_identifier",
]

_IDENT = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-))*(?<!-)$")
_RESOURCE_ALPHABET = string.ascii_uppercase + string.digits
_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def valid_identifier(ident: str) -> bool:
    """AWS's rule for cluster and instance identifiers (checked after lower-casing): 1 to 63 characters,
    letters, digits and hyphens, starting with a letter, no trailing or doubled hyphen."""
    return 1 <= len(ident) <= 63 and _IDENT.match(ident) is not None


def resource_id(prefix: str) -> str:
    """An immutable resource id such as ``cluster-ABCD...`` (26 characters after the prefix, as AWS)."""
    return prefix + "-" + "".join(secrets.choice(_RESOURCE_ALPHABET) for _ in range(26))


def cluster_arn(region: str, account: str, ident: str) -> str:
    """The DBClusterArn of cluster ``ident``."""
    return f"arn:aws:rds:{region}:{account}:cluster:{ident}"


def instance_arn(region: str, account: str, ident: str) -> str:
    """The DBInstanceArn of instance ``ident``."""
    return f"arn:aws:rds:{region}:{account}:db:{ident}"


def master_secret_name() -> str:
    """The name RDS gives a managed master-user secret."""
    return f"rds!cluster-{uuid.uuid4()}"


def generate_password(length: int = 32) -> str:
    """A master or internal password; letters and digits only so it is safe in any connection URL."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
