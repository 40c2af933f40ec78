"""DB subnet groups (CreateDBSubnetGroup & co.), over :class:`borealis.groups.SubnetGroups`.

Terraform's aws_db_subnet_group creates with its tags, reads with DescribeDBSubnetGroups and
ListTagsForResource, updates with ModifyDBSubnetGroup (every subnet, every time) and deletes, then reads
again until DBSubnetGroupNotFoundFault.
"""

from __future__ import annotations

from typing import Any

from borealis.aws import Handler, RequestContext
from borealis.groups import VPC_ID, SubnetGroups
from borealis.services._describe import filtered, paged
from borealis.services.rds_tags import checked_tags

__all__ = ["handlers", "render_subnet_group"]


def render_subnet_group(groups: SubnetGroups, account: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The DBSubnetGroup shape of a stored group."""
    return {
        "DBSubnetGroupName": doc["name"],
        "DBSubnetGroupDescription": doc["description"],
        "VpcId": VPC_ID,
        "SubnetGroupStatus": "Complete",
        "Subnets": [
            {
                "SubnetIdentifier": s,
                "SubnetAvailabilityZone": {"Name": groups.zone_of(s)},
                "SubnetOutpost": {},
                "SubnetStatus": "Active",
            }
            for s in doc["subnets"]
        ],
        "DBSubnetGroupArn": f"arn:aws:rds:{groups.region}:{account}:subgrp:{doc['name']}",
        "SupportedNetworkTypes": ["IPV4"],
    }


class _SubnetGroupsApi:
    def __init__(self, groups: SubnetGroups, account: str) -> None:
        self.groups = groups
        self.account = account

    def _render(self, doc: dict[str, Any]) -> dict[str, Any]:
        return render_subnet_group(self.groups, self.account, doc)

    async def create(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.groups.create(
            p["DBSubnetGroupName"], p["DBSubnetGroupDescription"], p["SubnetIds"], checked_tags(p.get("Tags"))
        )
        return {"DBSubnetGroup": self._render(doc)}

    async def describe(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        docs = [self.groups.get(p["DBSubnetGroupName"])] if p.get("DBSubnetGroupName") else self.groups.all()
        docs = filtered(docs, p, {})
        return paged("DBSubnetGroups", docs, p, self._render)

    async def modify(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.groups.modify(p["DBSubnetGroupName"], p.get("DBSubnetGroupDescription"), p["SubnetIds"])
        return {"DBSubnetGroup": self._render(doc)}

    async def delete(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        self.groups.delete(p["DBSubnetGroupName"])
        return {}


def handlers(groups: SubnetGroups, account: str) -> dict[str, Handler]:
    """The DB subnet group operations, by operation name (merged into the rds service)."""
    api = _SubnetGroupsApi(groups, account)
    return {
        "CreateDBSubnetGroup": api.create,
        "DescribeDBSubnetGroups": api.describe,
        "ModifyDBSubnetGroup": api.modify,
        "DeleteDBSubnetGroup": api.delete,
    }
