"""DB cluster parameter groups and DB parameter groups (query protocol), over :mod:`borealis.groups`.

Terraform's aws_rds_cluster_parameter_group (and aws_db_parameter_group) creates the group, then runs its
update: ModifyDB*ParameterGroup in chunks of 20 parameters, ResetDB*ParameterGroup for the ones removed;
it reads with DescribeDB*ParameterGroups and DescribeDB*Parameters (Source=user, then Source=system), and
deletes, retrying while the group is still in use. Each change is applied to the running instances that use
the group at once (``apply``): dynamic values by a reload, the rest when postgres next starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from borealis.aws import Handler, RequestContext
from borealis.groups import ParameterGroups
from borealis.services._describe import paged
from borealis.services.rds_tags import checked_tags

__all__ = ["handlers"]

Apply = Callable[[ParameterGroups, str], Awaitable[None]]


class _Api:
    """The operations of one kind; ``label`` is the shape word: ``DBClusterParameterGroup`` or ``DBParameterGroup``."""

    def __init__(self, groups: ParameterGroups, region: str, account: str, apply: Apply) -> None:
        self.groups = groups
        self.apply = apply
        self.cluster = groups.kind == "cluster"
        self.label = "DBClusterParameterGroup" if self.cluster else "DBParameterGroup"
        self.arn_prefix = f"arn:aws:rds:{region}:{account}:{'cluster-pg' if self.cluster else 'pg'}:"

    def render(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {
            f"{self.label}Name": doc["name"],
            "DBParameterGroupFamily": doc["family"],
            "Description": doc["description"],
            f"{self.label}Arn": self.arn_prefix + doc["name"],
        }

    async def create(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.groups.create(
            p[f"{self.label}Name"], p["DBParameterGroupFamily"], p["Description"], checked_tags(p.get("Tags"))
        )
        return {self.label: self.render(doc)}

    async def copy(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.groups.copy(
            p[f"Source{self.label}Identifier"],
            p[f"Target{self.label}Identifier"],
            p[f"Target{self.label}Description"],
            checked_tags(p.get("Tags")),
        )
        return {self.label: self.render(doc)}

    async def describe_groups(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get(f"{self.label}Name")
        docs = [self.groups.get(name)] if name else self.groups.all()
        return paged(f"{self.label}s", docs, p, self.render)

    async def modify(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = await self.groups.modify(p[f"{self.label}Name"], p["Parameters"])
        await self.apply(self.groups, doc["name"])
        return {f"{self.label}Name": doc["name"]}

    async def reset(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = await self.groups.reset(
            p[f"{self.label}Name"], bool(p.get("ResetAllParameters")), p.get("Parameters") or []
        )
        await self.apply(self.groups, doc["name"])
        return {f"{self.label}Name": doc["name"]}

    async def delete(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        self.groups.delete(p[f"{self.label}Name"])
        return {}

    async def describe_parameters(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc = self.groups.get(p[f"{self.label}Name"])
        # Filters are documented as not supported on these calls: accepted and ignored, as RDS does.
        return paged("Parameters", await self.groups.describe(doc, p.get("Source")), p)

    async def engine_defaults(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        family = p["DBParameterGroupFamily"]
        params = await self.groups.describe(None, None) if family in self.groups.families() else []
        page = paged("Parameters", params, p)
        return {"EngineDefaults": {"DBParameterGroupFamily": family, **page}}


def handlers(
    cluster_groups: ParameterGroups, instance_groups: ParameterGroups, region: str, account: str, apply: Apply
) -> dict[str, Handler]:
    """Both kinds' operations, by operation name (merged into the rds service)."""
    out: dict[str, Handler] = {}
    for groups in (cluster_groups, instance_groups):
        api = _Api(groups, region, account, apply)
        word = "DBCluster" if api.cluster else "DB"
        out.update(
            {
                f"Create{api.label}": api.create,
                f"Copy{api.label}": api.copy,
                f"Describe{api.label}s": api.describe_groups,
                f"Modify{api.label}": api.modify,
                f"Reset{api.label}": api.reset,
                f"Delete{api.label}": api.delete,
                f"Describe{word}Parameters": api.describe_parameters,
                f"DescribeEngineDefault{'Cluster' if api.cluster else ''}Parameters": api.engine_defaults,
            }
        )
    return out
