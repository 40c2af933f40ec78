"""DB subnet groups: stored, validated as RDS validates them, and tied to the clusters that use them.

Borealis has no VPC: every well-formed subnet id exists, in one VPC, and a subnet keeps the Availability
Zone it was given the first time a group named it (zones are handed out in turn, so two new subnets always
cover two zones, as RDS requires). The ``default`` group is the default VPC's: always there, never changed.

Which group a cluster uses is a :class:`Memberships` record, not part of the cluster record.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from borealis.aws import AWSError
from borealis.groups._members import Memberships
from borealis.store import Store

__all__ = ["DEFAULT_GROUP", "DEFAULT_SECURITY_GROUP", "VPC_ID", "SubnetGroups"]

DEFAULT_GROUP = "default"
VPC_ID = "vpc-borealis"
DEFAULT_SECURITY_GROUP = "sg-0b0ea115000000000"  # the VPC's default group, which AWS gives a cluster named none
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?$")
_NAME = re.compile(r"^[a-z0-9._ -]{1,255}$")
_MAX_SUBNETS = 20
_ZONES = "abcdef"


def _not_found(name: str) -> AWSError:
    return AWSError("DBSubnetGroupNotFoundFault", f"DB Subnet Group '{name}' not found", 404)


class SubnetGroups:
    """The DB subnet groups of one Borealis."""

    def __init__(self, store: Store, region: str, members: Memberships) -> None:
        self.groups = store.table("db_subnet_groups")
        self.subnets = store.table("subnets")
        self.members = members
        self.region = region

    # ------------------------------------------------------------------------------------------ lookups

    def default(self) -> dict[str, Any]:
        """The default VPC's group: one subnet in each of three zones."""
        subnets = [f"subnet-{i:08x}" for i in range(1, 4)]
        return {
            "name": DEFAULT_GROUP,
            "description": DEFAULT_GROUP,
            "subnets": subnets,
            "tags": [],
            "created": "1970-01-01T00:00:00+00:00",
        }

    def get(self, name: str) -> dict[str, Any]:
        """A group by name (any case), or DBSubnetGroupNotFoundFault."""
        key = name.lower()
        if key == DEFAULT_GROUP:
            return self.default()
        doc = self.groups.get(key)
        if doc is None:
            raise _not_found(name)
        return doc

    def all(self) -> list[dict[str, Any]]:
        """Every group, the default one first, then by name."""
        return [self.default(), *sorted(self.groups.values(), key=lambda d: d["name"])]

    def zone_of(self, subnet: str) -> str:
        """The Availability Zone of a subnet (``us-east-1a``, ...)."""
        doc = self.subnets.get(subnet)
        if doc is not None:
            return str(doc["zone"])
        if subnet.startswith("subnet-0000000"):  # the default group's
            return f"{self.region}{_ZONES[(int(subnet[-1], 16) - 1) % 3]}"
        zone = f"{self.region}{_ZONES[len(self.subnets.values()) % 3]}"
        self.subnets.put(subnet, {"zone": zone})
        return zone

    def used_by(self, cluster_id: str) -> str:
        """The name of the group a cluster uses."""
        return str(self.members.get("cluster", cluster_id).get("subnet_group", DEFAULT_GROUP))

    # ------------------------------------------------------------------------------------------ changes

    def _check_subnets(self, subnets: list[str]) -> list[str]:
        if not subnets:
            raise AWSError("InvalidParameterValue", "Some input subnets in :[] are invalid.")
        bad = [s for s in subnets if not _SUBNET_ID.match(s)]
        if bad:
            raise AWSError("InvalidSubnet", f"Some input subnets in :[{', '.join(bad)}] are invalid.")
        unique = list(dict.fromkeys(subnets))
        if len(unique) > _MAX_SUBNETS:
            raise AWSError("DBSubnetQuotaExceededFault", f"The DB subnet group has more than {_MAX_SUBNETS} subnets.")
        zones = sorted({self.zone_of(s) for s in unique})
        if len(zones) < 2:
            raise AWSError(
                "DBSubnetGroupDoesNotCoverEnoughAZs",
                "The DB subnet group doesn't meet Availability Zone (AZ) coverage requirement. "
                f"Current AZ coverage: {', '.join(zones)}. Add subnets to cover at least 2 AZs.",
            )
        return unique

    def create(self, name: str, description: str, subnets: list[str], tags: list[dict[str, str]]) -> dict[str, Any]:
        """CreateDBSubnetGroup: the name is stored lowercase, as RDS stores it."""
        key = name.lower()
        if not _NAME.match(key) or key.endswith("-") or "--" in key:
            raise AWSError(
                "InvalidParameterValue",
                f"The parameter DBSubnetGroupName is not a valid identifier: {name}. It must contain only "
                "ASCII letters, digits, periods, underscores, spaces or hyphens, up to 255 characters.",
            )
        if key == DEFAULT_GROUP:
            raise AWSError("InvalidParameterValue", "DBSubnetGroupName must not be default.")
        if self.groups.get(key) is not None:
            raise AWSError("DBSubnetGroupAlreadyExistsFault", f"The DB subnet group '{key}' already exists.")
        doc = {
            "name": key,
            "description": description,
            "subnets": self._check_subnets(subnets),
            "tags": tags,
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.groups.put(key, doc)
        return doc

    def modify(self, name: str, description: str | None, subnets: list[str]) -> dict[str, Any]:
        """ModifyDBSubnetGroup: new subnets (all of them) and, if given, a new description."""
        doc = self.get(name)
        if doc["name"] == DEFAULT_GROUP:
            raise AWSError("InvalidParameterValue", "The default DB subnet group cannot be modified.")
        doc["subnets"] = self._check_subnets(subnets)
        if description is not None:
            doc["description"] = description
        self.groups.put(doc["name"], doc)
        return doc

    def delete(self, name: str) -> None:
        """DeleteDBSubnetGroup: refused while a cluster uses the group."""
        doc = self.get(name)
        if doc["name"] == DEFAULT_GROUP:
            raise AWSError("InvalidDBSubnetGroupStateFault", "Cannot delete the default subnet group.")
        users = self.members.users("cluster", "subnet_group", doc["name"])
        if users:
            raise AWSError(
                "InvalidDBSubnetGroupStateFault",
                f"Cannot delete the subnet group '{doc['name']}' because at least one database cluster: "
                f"{users[0]} is still using it.",
            )
        self.groups.delete(doc["name"])

    def save(self, doc: dict[str, Any]) -> None:
        """Store a changed group (its tags)."""
        if doc["name"] != DEFAULT_GROUP:
            self.groups.put(doc["name"], doc)
