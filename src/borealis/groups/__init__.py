"""DB subnet groups and parameter groups: the RDS resources that clusters and instances name."""

from borealis.groups._catalog import Catalog, EngineParameter
from borealis.groups._engines import engine_versions, families
from borealis.groups._members import Memberships
from borealis.groups._parameters import ParameterGroups, Settings, family_of
from borealis.groups._subnets import DEFAULT_GROUP, DEFAULT_SECURITY_GROUP, VPC_ID, SubnetGroups

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_SECURITY_GROUP",
    "VPC_ID",
    "Catalog",
    "EngineParameter",
    "Memberships",
    "ParameterGroups",
    "Settings",
    "SubnetGroups",
    "engine_versions",
    "families",
    "family_of",
]
