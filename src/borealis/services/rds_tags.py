"""Tags on RDS resources: ListTagsForResource, AddTagsToResource, RemoveTagsFromResource.

A resource is named by its ARN (``arn:aws:rds:REGION:ACCOUNT:KIND:NAME``); each kind Borealis has is found
by a lookup given at start-up (clusters and instances from the control plane, proxies and their endpoints
and target groups from the proxy registry, subnet and parameter groups from theirs), which returns the stored
document and how to save it. Tags live in the document's ``tags`` list, as CreateDB* stored them, so they
show in the TagList of Describe outputs too. Rules as RDS documents them: at most 50 tags; keys of 1-128 and
values of 0-256 Unicode letters, digits, spaces and ``_.:/=+-@``; neither may start with ``aws:`` or ``rds:``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError, Handler, RequestContext

__all__ = ["Found", "Lookup", "checked_tags", "handlers"]

MAX_TAGS = 50
_EXTRA_CHARS = set("_.:/=+-@")

Found = tuple[dict[str, Any], Callable[[dict[str, Any]], None]]
Lookup = Callable[[str], Found]
"""Resolve the NAME part of an ARN to (document, save); raise the kind's not-found fault if there is none."""


def _invalid(message: str) -> AWSError:
    return AWSError("InvalidParameterValue", message)


def _check_text(what: str, text: str, low: int, high: int) -> None:
    if not low <= len(text) <= high:
        raise _invalid(f"Tag {what} must be between {low} and {high} characters long: {text!r}.")
    if any(not (c.isalnum() or c.isspace() or c in _EXTRA_CHARS) for c in text):
        raise _invalid(
            f"Tag {what} {text!r} may contain only Unicode letters, digits, white space and the characters _.:/=+-@"
        )
    if text.lower().startswith(("aws:", "rds:")):
        raise _invalid(f"Tag {what} {text!r} cannot start with 'aws:' or 'rds:'.")


def checked_tags(tags: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Tags as given in a request, validated; a repeated key keeps its last value."""
    out: dict[str, str] = {}
    for tag in tags or []:
        key, value = tag.get("Key"), tag.get("Value", "")
        if key is None:
            raise _invalid("Tag keys must be provided.")
        _check_text("key", key, 1, 128)
        _check_text("value", value, 0, 256)
        out[key] = value
    if len(out) > MAX_TAGS:
        raise _invalid(f"A resource can have at most {MAX_TAGS} tags.")
    return [{"Key": k, "Value": v} for k, v in out.items()]


class _Tags:
    def __init__(self, region: str, account: str, kinds: dict[str, Lookup]) -> None:
        self.prefix = f"arn:aws:rds:{region}:{account}:"
        self.kinds = kinds

    def _find(self, arn: str) -> Found:
        kind, _, name = arn[len(self.prefix) :].partition(":") if arn.startswith(self.prefix) else ("", "", "")
        lookup = self.kinds.get(kind)
        if lookup is None or not name:
            raise _invalid(f"The specified resource name does not match an RDS resource in this region: {arn}")
        return lookup(name)

    async def list_tags(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc, _ = self._find(p["ResourceName"])
        # RDS documents Filters here as not supported; they are accepted and ignored, as RDS does.
        return {"TagList": list(doc.get("tags") or [])}

    async def add_tags(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc, save = self._find(p["ResourceName"])
        merged = {t["Key"]: t["Value"] for t in doc.get("tags") or []}
        merged.update({t["Key"]: t["Value"] for t in checked_tags(p["Tags"])})
        doc["tags"] = checked_tags([{"Key": k, "Value": v} for k, v in merged.items()])
        save(doc)
        return {}

    async def remove_tags(self, ctx: RequestContext, p: dict[str, Any]) -> dict[str, Any]:
        doc, save = self._find(p["ResourceName"])
        gone = set(p["TagKeys"])
        doc["tags"] = [t for t in doc.get("tags") or [] if t["Key"] not in gone]
        save(doc)
        return {}


def handlers(region: str, account: str, kinds: dict[str, Lookup]) -> dict[str, Handler]:
    """The tagging operations over the resource kinds given (ARN kind, e.g. ``cluster``, -> lookup)."""
    api = _Tags(region, account, kinds)
    return {
        "ListTagsForResource": api.list_tags,
        "AddTagsToResource": api.add_tags,
        "RemoveTagsFromResource": api.remove_tags,
    }
