"""DB cluster parameter groups and DB parameter groups, and the settings they give each instance.

Both kinds behave alike (as on RDS), so one class serves both, told apart by ``kind``. A group holds the
values set in it (ModifyDB*ParameterGroup), each with its apply method; everything else is the engine's
default from :class:`Catalog`. Every family Borealis can run has a ``default.<family>`` group, which cannot be
changed or deleted. Names are stored lowercase.

What an instance runs with (:class:`Settings`): its cluster's cluster group values, then its own DB group
values on top (the instance level wins, as on Aurora). Dynamic values apply at once (a reload); static ones,
and those set with ``pending-reboot``, when postgres next starts: until then the instance's group shows
``pending-reboot``, as RDS shows it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError
from borealis.groups._catalog import Catalog, EngineParameter
from borealis.groups._members import Memberships
from borealis.store import Store

__all__ = ["ParameterGroups", "Settings"]

MAX_PER_CALL = 20
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,254}$")
_FIELD = {"cluster": "cluster_parameter_group", "instance": "parameter_group"}


def _not_found(name: str) -> AWSError:
    return AWSError("DBParameterGroupNotFoundFault", f"DBParameterGroup not found: {name}", 404)


def _invalid(message: str) -> AWSError:
    return AWSError("InvalidParameterValue", message)


def default_name(family: str) -> str:
    """The default group of a family (``default.aurora-postgresql16``)."""
    return f"default.{family}"


class ParameterGroups:
    """The parameter groups of one kind: ``cluster`` (DB cluster parameter groups) or ``instance``."""

    def __init__(
        self, store: Store, kind: str, catalog: Catalog, families: Callable[[], list[str]], members: Memberships
    ) -> None:
        self.kind = kind
        self.field = _FIELD[kind]
        self.table = store.table("db_cluster_parameter_groups" if kind == "cluster" else "db_parameter_groups")
        self.catalog = catalog
        self.families = families
        self.members = members

    # ------------------------------------------------------------------------------------------ lookups

    def _default(self, family: str) -> dict[str, Any]:
        what = "cluster parameter group" if self.kind == "cluster" else "parameter group"
        return {
            "name": default_name(family),
            "family": family,
            "description": f"Default {what} for {family}",
            "values": {},
            "tags": [],
            "default": True,
        }

    def get(self, name: str) -> dict[str, Any]:
        """A group by name or ARN (any case), or DBParameterGroupNotFound."""
        key = name.rsplit(":", 1)[-1].lower() if name.startswith("arn:") else name.lower()
        for family in self.families():
            if key == default_name(family):
                return self._default(family)
        doc = self.table.get(key)
        if doc is None:
            raise _not_found(name)
        return doc

    def all(self) -> list[dict[str, Any]]:
        """Every group: the defaults first, then by name."""
        defaults = [self._default(f) for f in self.families()]
        return [*defaults, *sorted(self.table.values(), key=lambda d: d["name"])]

    def save(self, doc: dict[str, Any]) -> None:
        """Store a changed group (its tags)."""
        if not doc.get("default"):
            self.table.put(doc["name"], doc)

    def users(self, name: str) -> list[str]:
        """The clusters (cluster groups) or instances (DB groups) using group ``name``."""
        return self.members.users(self.kind, self.field, name)

    def used_by(self, ident: str, family: str) -> str:
        """The name of the group a cluster or instance uses (the family's default if none was named)."""
        return str(self.members.get(self.kind, ident).get(self.field) or default_name(family))

    # ------------------------------------------------------------------------------------------ changes

    def _new(self, name: str, family: str, description: str, tags: list[dict[str, str]]) -> dict[str, Any]:
        key = name.lower()
        label = "DBClusterParameterGroupName" if self.kind == "cluster" else "DBParameterGroupName"
        if not _NAME.match(key) or key.endswith("-") or "--" in key:
            raise _invalid(
                f"The parameter {label} is not a valid identifier. Identifiers must begin with a letter; must "
                "contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two "
                "consecutive hyphens."
            )
        if family not in self.families():
            raise _invalid(
                f"The parameter DBParameterGroupFamily is not valid: {family}. "
                f"Borealis runs: {', '.join(self.families())}."
            )
        if self.table.get(key) is not None:
            raise AWSError("DBParameterGroupAlreadyExistsFault", f"Parameter group {key} already exists")
        return {
            "name": key,
            "family": family,
            "description": description,
            "values": {},
            "tags": tags,
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }

    def create(self, name: str, family: str, description: str, tags: list[dict[str, str]]) -> dict[str, Any]:
        """CreateDB(Cluster)ParameterGroup."""
        doc = self._new(name, family, description, tags)
        self.table.put(doc["name"], doc)
        return doc

    def copy(self, source: str, target: str, description: str, tags: list[dict[str, str]]) -> dict[str, Any]:
        """CopyDB(Cluster)ParameterGroup: the source's family and values under a new name."""
        src = self.get(source)
        doc = self._new(target, src["family"], description, tags)
        doc["values"] = dict(src["values"])
        self.table.put(doc["name"], doc)
        return doc

    def _changeable(self, name: str) -> dict[str, Any]:
        doc = self.get(name)
        if doc.get("default"):
            raise _invalid(f"Default parameter groups cannot be modified: {doc['name']}.")
        return doc

    async def modify(self, name: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
        """ModifyDB(Cluster)ParameterGroup: validate every parameter first, then store them all."""
        doc = self._changeable(name)
        if not parameters or len(parameters) > MAX_PER_CALL:
            raise _invalid(f"You can modify between 1 and {MAX_PER_CALL} parameters in one request.")
        catalog = await self.catalog.parameters()
        changes: dict[str, dict[str, str]] = {}
        for p in parameters:
            param = _known(catalog, p.get("ParameterName"))
            if not param.modifiable:
                raise _invalid(f"The parameter {param.name} cannot be modified.")
            if p.get("ParameterValue") is None:
                raise _invalid(f"The parameter value for {param.name} must be provided.")
            value = param.normalise(str(p["ParameterValue"]))
            if value is None:
                raise _invalid(
                    f"Invalid parameter value: {p['ParameterValue']} for: {param.name} "
                    f"allowed values are: {param.allowed or 'a string without line breaks'}"
                )
            method = p.get("ApplyMethod") or ("pending-reboot" if param.static else "immediate")
            if method not in ("immediate", "pending-reboot"):
                raise _invalid(f"Invalid apply method {method}: use immediate or pending-reboot.")
            if param.static and method == "immediate":
                raise AWSError(
                    "InvalidParameterCombination",
                    f"cannot use immediate apply method for static parameter {param.name}",
                )
            # Shown as given (Terraform compares what it set with what it reads), run as postgres takes it.
            changes[param.name] = {"value": str(p["ParameterValue"]).strip(), "pg": value, "method": method}
        doc["values"] = {**doc["values"], **changes}
        self.table.put(doc["name"], doc)
        return doc

    async def reset(self, name: str, everything: bool, parameters: list[dict[str, Any]]) -> dict[str, Any]:
        """ResetDB(Cluster)ParameterGroup: all values, or the named ones, back to the engine's defaults."""
        doc = self._changeable(name)
        if everything == bool(parameters):
            raise AWSError(
                "InvalidParameterCombination", "Specify either ResetAllParameters or Parameters, and not both."
            )
        if everything:
            doc["values"] = {}
        else:
            catalog = await self.catalog.parameters()
            names = {_known(catalog, p.get("ParameterName")).name for p in parameters}
            doc["values"] = {k: v for k, v in doc["values"].items() if k not in names}
        self.table.put(doc["name"], doc)
        return doc

    def delete(self, name: str) -> None:
        """DeleteDB(Cluster)ParameterGroup: refused for a default group and while something uses it."""
        doc = self.get(name)
        if doc.get("default"):
            raise AWSError("InvalidDBParameterGroupStateFault", "Default DBParameterGroup cannot be deleted")
        users = self.users(doc["name"])
        if users:
            what = "DB clusters" if self.kind == "cluster" else "database instances"
            raise AWSError(
                "InvalidDBParameterGroupStateFault",
                f"One or more {what} are still members of this parameter group {doc['name']}, so the group "
                f"cannot be deleted ({users[0]}).",
            )
        self.table.delete(doc["name"])

    # ------------------------------------------------------------------------------------------ parameters

    async def describe(self, doc: dict[str, Any] | None, source: str | None) -> list[dict[str, Any]]:
        """The RDS Parameter shapes of a group (None: the engine defaults), filtered by ``Source``."""
        catalog = await self.catalog.parameters()
        values = doc["values"] if doc is not None else {}
        out = []
        for param in catalog.values():
            if param.name in values:
                if source not in (None, "user"):
                    continue
                out.append(_render(param, self.catalog.version, values[param.name]))
            elif source in (None, "engine-default"):
                out.append(_render(param, self.catalog.version, None))
        return out


def _known(catalog: dict[str, EngineParameter], name: Any) -> EngineParameter:
    param = catalog.get(str(name)) if name else None
    if param is None:
        raise _invalid(f"Could not find parameter with name: {name}")
    return param


def _render(param: EngineParameter, version: str, value: dict[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ParameterName": param.name,
        "Description": param.description,
        "Source": "user" if value is not None else "engine-default",
        "ApplyType": "static" if param.static else "dynamic",
        "DataType": param.data_type,
        "IsModifiable": param.modifiable,
        "MinimumEngineVersion": version,
        "ApplyMethod": value["method"] if value is not None else "pending-reboot",
        "SupportedEngineModes": ["provisioned"],
    }
    if param.allowed is not None:
        out["AllowedValues"] = param.allowed
    if value is not None:
        out["ParameterValue"] = value["value"]
    return out


class Settings:
    """The postgres settings each instance gets from its groups, and whether a reboot is pending."""

    def __init__(self, cluster_groups: ParameterGroups, instance_groups: ParameterGroups) -> None:
        self.cluster_groups = cluster_groups
        self.instance_groups = instance_groups
        self.catalog = cluster_groups.catalog
        self._booted: dict[str, dict[str, str]] = {}
        self.reloading = False
        """Set while a change is being applied to running servers (not a start): static values stay put."""

    def wanted(self, cluster: dict[str, Any], instance_id: str) -> dict[str, dict[str, str]]:
        """The values an instance should run with: its cluster group's, then its own group's on top."""
        family = family_of(cluster["engine_version"])
        cgroup = self.cluster_groups.get(self.cluster_groups.used_by(cluster["id"], family))
        igroup = self.instance_groups.get(self.instance_groups.used_by(instance_id, family))
        return {**cgroup["values"], **igroup["values"]}

    def _later(self, name: str, value: dict[str, str]) -> bool:
        catalog = self.catalog.cached() or {}
        param = catalog.get(name)
        return value["method"] == "pending-reboot" or (param is not None and param.static)

    def for_server(self, cluster: dict[str, Any], instance: dict[str, Any]) -> dict[str, str]:
        """The control plane's ``extra_settings`` hook: at a start everything, on a reload the dynamic ones."""
        try:
            wanted = self.wanted(cluster, instance["id"])
        except AWSError:  # a group the cluster names is gone: run with the engine's defaults
            wanted = {}
        if not self.reloading:
            self._booted[instance["id"]] = {k: _pg(v) for k, v in wanted.items()}
            return _translate({k: _pg(v) for k, v in wanted.items()})
        booted = self._booted.get(instance["id"], {})
        out = {k: _pg(v) for k, v in wanted.items() if not self._later(k, v)}
        out.update({k: booted[k] for k, v in wanted.items() if self._later(k, v) and k in booted})
        return _translate(out)

    def cluster_value(self, cluster: dict[str, Any], name: str) -> str | None:
        """The value ``name`` has in the cluster's parameter group (None: the engine default), as postgres
        would take it; the control plane's ``cluster_parameter`` hook (rds.force_ssl at the endpoints)."""
        try:
            group = self.cluster_groups.get(
                self.cluster_groups.used_by(cluster["id"], family_of(cluster["engine_version"]))
            )
        except AWSError:
            return None
        value = group["values"].get(name)
        return None if value is None else _pg(value)

    def status(self, cluster: dict[str, Any], instance_id: str) -> str:
        """``pending-reboot`` while a value that waits for a restart differs from the one postgres started with."""
        booted = self._booted.get(instance_id)
        if booted is None:
            return "in-sync"
        wanted = self.wanted(cluster, instance_id)
        names = {k for k, v in wanted.items() if self._later(k, v)} | {k for k in booted if k not in wanted}
        if any(booted.get(k) != (_pg(wanted[k]) if k in wanted else None) for k in names):
            return "pending-reboot"
        return "in-sync"


def _pg(value: dict[str, str]) -> str:
    return value.get("pg", value["value"])


def _translate(values: dict[str, str]) -> dict[str, str]:
    """Aurora's own parameters as the postgres settings that do what they say."""
    out = {k: v for k, v in values.items() if not k.startswith("rds.")}
    if values.get("rds.logical_replication") == "on":
        out["wal_level"] = "logical"
    return out


def family_of(engine_version: str) -> str:
    """The parameter group family of an engine version (``16.9`` -> ``aurora-postgresql16``)."""
    return f"aurora-postgresql{engine_version.split('.')[0]}"
