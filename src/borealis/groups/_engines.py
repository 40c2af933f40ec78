"""Which engine versions Borealis can run: the one place that answers it.

Today a Borealis runs the PostgreSQL of its ``postgres`` setting (embedded 16, embedded:18, or a system
installation), so that version is the one it can create clusters with. When the control plane learns to run
several installations side by side, this function lists them all and every caller (DescribeDBEngineVersions,
DescribeOrderableDBInstanceOptions, the parameter group families) follows.
"""

from __future__ import annotations

from borealis.control import ControlPlane

__all__ = ["engine_versions", "families"]


def engine_versions(control: ControlPlane) -> list[str]:
    """The aurora-postgresql engine versions clusters can be created with (``16.9``), oldest first."""
    return [control.engine_version_of(major) for major in sorted(control.engines)]


def families(control: ControlPlane) -> list[str]:
    """The parameter group families of those versions (``aurora-postgresql16``)."""
    return sorted({f"aurora-postgresql{v.split('.')[0]}" for v in engine_versions(control)})
