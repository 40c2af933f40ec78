"""Performance Insights settings on RDS clusters and instances: the request parameters and the shapes shown.

EnablePerformanceInsights, PerformanceInsightsRetentionPeriod, PerformanceInsightsKMSKeyId and
DatabaseInsightsMode on CreateDBCluster / ModifyDBCluster / CreateDBInstance / ModifyDBInstance, as RDS checks
them: a retention of 7, 731 or a whole number of 31-day months (1 to 23); no retention or key while turning it
off; a KMS key that cannot change once set; Advanced mode only with Performance Insights on and at least 465
days kept. A cluster's setting applies to all its instances (Aurora manages it at the cluster level), and a new
instance takes its cluster's unless it names its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from borealis.aws import AWSError

__all__ = ["apply", "render", "requested"]

_KEYS = ("EnablePerformanceInsights", "PerformanceInsightsRetentionPeriod", "PerformanceInsightsKMSKeyId")
_DEFAULT_RETENTION = 7
_ADVANCED_RETENTION = 465


def _valid_retention(days: int) -> bool:
    return days in (7, 731) or (days % 31 == 0 and 1 <= days // 31 <= 23)


def _kms_arn(key: str, region: str, account: str) -> str:
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{region}:{account}:{key}"
    return f"arn:aws:kms:{region}:{account}:key/{key}"


def requested(p: Mapping[str, Any]) -> bool:
    """Whether a request names any Performance Insights parameter."""
    return any(k in p for k in (*_KEYS, "DatabaseInsightsMode"))


def apply(
    p: Mapping[str, Any], current: Mapping[str, Any] | None, *, region: str, account: str
) -> dict[str, Any] | None:
    """The settings after a request (None: it named none), from the ``current`` stored ones; AWSError when
    the request breaks RDS's rules."""
    if not requested(p):
        return None
    before = dict(current or {})
    enabled = bool(p.get("EnablePerformanceInsights", before.get("enabled", False)))
    retention = p.get("PerformanceInsightsRetentionPeriod")
    kms = p.get("PerformanceInsightsKMSKeyId")
    if not enabled and (retention is not None or kms):
        raise AWSError(
            "InvalidParameterCombination",
            "To set PerformanceInsightsRetentionPeriod or PerformanceInsightsKMSKeyId, "
            "EnablePerformanceInsights must be true.",
        )
    if retention is not None and not _valid_retention(int(retention)):
        raise AWSError(
            "InvalidParameterValue",
            f"Invalid PerformanceInsightsRetentionPeriod: {retention}. Valid values are 7, 731, or month * 31 "
            "where month is a number of months from 1-23.",
        )
    kms_arn = _kms_arn(str(kms), region, account) if kms else None
    if kms_arn and before.get("kms_key") and kms_arn != before["kms_key"]:
        raise AWSError(
            "InvalidParameterCombination",
            f"You can't change the KMS key of Performance Insights once it is set (it is {before['kms_key']}).",
        )
    days = int(retention) if retention is not None else int(before.get("retention", _DEFAULT_RETENTION))
    out: dict[str, Any] = {
        "enabled": enabled,
        "retention": days,
        "kms_key": kms_arn
        or before.get("kms_key")
        or (_kms_arn("alias/aws/rds", region, account) if enabled else None),
        "mode": str(p.get("DatabaseInsightsMode", before.get("mode", "standard"))),
    }
    if out["mode"] not in ("standard", "advanced"):
        raise AWSError(
            "InvalidParameterValue", f"Invalid DatabaseInsightsMode: {out['mode']}. Use standard or advanced."
        )
    if out["mode"] == "advanced" and (not enabled or days < _ADVANCED_RETENTION):
        raise AWSError(
            "InvalidParameterCombination",
            "The Advanced mode of Database Insights requires Performance Insights enabled with a retention period "
            f"of at least {_ADVANCED_RETENTION} days.",
        )
    return out


def render(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The Performance Insights members of a DBCluster or DBInstance shape."""
    found = doc.get("performance_insights") or {}
    out: dict[str, Any] = {
        "PerformanceInsightsEnabled": bool(found.get("enabled", False)),
        "DatabaseInsightsMode": found.get("mode", "standard"),
    }
    if found.get("enabled"):
        out["PerformanceInsightsRetentionPeriod"] = int(found.get("retention", _DEFAULT_RETENTION))
        if found.get("kms_key"):
            out["PerformanceInsightsKMSKeyId"] = found["kms_key"]
    return out
