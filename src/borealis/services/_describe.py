"""What every RDS Describe* operation shares: Filters and Marker/MaxRecords paging, with AWS's errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from borealis.aws import AWSError

__all__ = ["filtered", "paged"]

Doc = dict[str, Any]


def filtered(items: list[Doc], params: dict[str, Any], allowed: dict[str, Callable[[Doc], str]]) -> list[Doc]:
    """The items every filter in ``params["Filters"]`` lets through; an unknown filter name is refused."""
    for f in params.get("Filters") or []:
        if f["Name"] not in allowed:
            raise AWSError("InvalidParameterValue", f"Unrecognized filter name: {f['Name']}.")
        get, values = allowed[f["Name"]], set(f.get("Values") or [])
        items = [i for i in items if get(i) in values]
    return items


def paged(key: str, items: list[Doc], params: dict[str, Any], render: Callable[[Doc], Any] | None = None) -> Doc:
    """The output of a Describe call: one page of ``items`` (rendered) under ``key``, and the next Marker.

    Pages go by MaxRecords (20-100, default 100) and Marker, as RDS does.
    """
    size = params.get("MaxRecords")
    if size is None:
        size = 100
    elif not 20 <= size <= 100:
        raise AWSError("InvalidParameterValue", f"Invalid value {size} for MaxRecords. Must be between 20 and 100")
    start = 0
    if params.get("Marker"):
        try:
            start = int(params["Marker"])
        except ValueError:
            raise AWSError("InvalidParameterValue", "The marker is not valid.") from None
    shown = items[start : start + size]
    out: Doc = {key: shown if render is None else [render(d) for d in shown]}
    if start + size < len(items):
        out["Marker"] = str(start + size)
    return out
