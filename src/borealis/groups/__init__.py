"""DB subnet groups and parameter groups: the RDS resources that clusters and instances name."""

from borealis.groups._subnets import SubnetGroups

__all__ = ["SubnetGroups"]
