"""Which instance becomes the writer in a failover (pure).

Aurora promotes the reader with the best (lowest) promotion tier, then the largest, as its documentation
says. Borealis does the same among the readers that hold every acknowledged commit: with synchronous
replication to *any one* reader, a commit the old writer acknowledged may be on one reader only, so after a
crash only readers whose received WAL reaches the furthest position are candidates (in a planned failover
the old writer is stopped cleanly first, which sends its last WAL to every connected reader, and they all
qualify). Ties go to the lower lag, then the name, so the choice is stable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ._reconciler import Observation
from ._records import InstanceRecord

__all__ = ["choose_writer", "instance_size"]

_SIZES = {"micro": 1, "small": 2, "medium": 3, "large": 4, "xlarge": 8}


def instance_size(instance_class: str) -> float:
    """A number that orders instance classes by size (db.r6g.2xlarge > db.r6g.xlarge > db.r6g.large).

    ``db.serverless`` ranks with the largest, since its capacity follows the load.
    """
    if instance_class == "db.serverless":
        return 1e6
    size = instance_class.rsplit(".", 1)[-1]
    match = re.fullmatch(r"(\d+)xlarge", size)
    if match:
        return 8.0 * int(match.group(1))
    return float(_SIZES.get(size, 0))


def choose_writer(
    instances: Sequence[InstanceRecord],
    observed: Mapping[str, Observation],
    *,
    target: str | None = None,
    crashed: bool = False,
) -> InstanceRecord | None:
    """The reader to promote, or None if no reader can take over.

    ``target``: the one the user named (FailoverDBCluster's TargetDBInstanceIdentifier); None if it cannot
    serve. ``crashed``: the old writer is gone without a clean stop, so only the most advanced readers count.
    """
    candidates = [
        i
        for i in instances
        if not i.is_writer
        and i.status in ("available", "modifying", "backing-up")
        and observed.get(i.id, Observation(False)).running
        and observed.get(i.id, Observation(False)).healthy is not False
    ]
    if target is not None:
        candidates = [i for i in candidates if i.id == target]
    if crashed and candidates:
        furthest = max(observed[i.id].lsn or 0 for i in candidates)
        candidates = [i for i in candidates if (observed[i.id].lsn or 0) >= furthest]
    if not candidates:
        return None

    def rank(i: InstanceRecord) -> tuple[int, float, float, str]:
        lag = observed[i.id].lag_ms
        return (i.promotion_tier, -instance_size(i.instance_class), lag if lag is not None else 1e12, i.id)

    return min(candidates, key=rank)
