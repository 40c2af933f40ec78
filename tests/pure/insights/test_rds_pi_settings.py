"""Performance Insights parameters on RDS clusters and instances, checked as RDS checks them (pure)."""

from __future__ import annotations

import pytest

from borealis.aws import AWSError
from borealis.services.rds_pi import apply, render

R = {"region": "us-east-1", "account": "123456789012"}


def test_enabling_keeps_a_default_key_and_seven_days() -> None:
    assert apply({}, None, **R) is None
    on = apply({"EnablePerformanceInsights": True}, None, **R)
    assert on == {"enabled": True, "retention": 7, "kms_key": "arn:aws:kms:us-east-1:123456789012:alias/aws/rds",
                  "mode": "standard"}  # fmt: skip
    assert render({"performance_insights": on}) == {
        "PerformanceInsightsEnabled": True,
        "DatabaseInsightsMode": "standard",
        "PerformanceInsightsRetentionPeriod": 7,
        "PerformanceInsightsKMSKeyId": "arn:aws:kms:us-east-1:123456789012:alias/aws/rds",
    }
    off = apply({"EnablePerformanceInsights": False}, on, **R)
    assert off is not None and render({"performance_insights": off})["PerformanceInsightsEnabled"] is False
    assert render({}) == {"PerformanceInsightsEnabled": False, "DatabaseInsightsMode": "standard"}


@pytest.mark.parametrize("days", [7, 31, 93, 713, 731])
def test_valid_retention_periods(days: int) -> None:
    found = apply({"EnablePerformanceInsights": True, "PerformanceInsightsRetentionPeriod": days}, None, **R)
    assert found is not None and found["retention"] == days


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"EnablePerformanceInsights": True, "PerformanceInsightsRetentionPeriod": 94}, "InvalidParameterValue"),
        ({"EnablePerformanceInsights": True, "PerformanceInsightsRetentionPeriod": 744}, "InvalidParameterValue"),
        ({"EnablePerformanceInsights": False, "PerformanceInsightsRetentionPeriod": 7}, "InvalidParameterCombination"),
        ({"EnablePerformanceInsights": True, "DatabaseInsightsMode": "advanced"}, "InvalidParameterCombination"),
        ({"EnablePerformanceInsights": True, "DatabaseInsightsMode": "fancy"}, "InvalidParameterValue"),
    ],
)
def test_refusals(params: dict[str, object], code: str) -> None:
    with pytest.raises(AWSError) as err:
        apply(params, None, **R)
    assert err.value.code == code


def test_the_kms_key_cannot_change_once_set() -> None:
    on = apply({"EnablePerformanceInsights": True, "PerformanceInsightsKMSKeyId": "k-1"}, None, **R)
    assert on is not None and on["kms_key"] == "arn:aws:kms:us-east-1:123456789012:key/k-1"
    assert apply({"PerformanceInsightsKMSKeyId": "k-1", "EnablePerformanceInsights": True}, on, **R) == on
    with pytest.raises(AWSError) as err:
        apply({"EnablePerformanceInsights": True, "PerformanceInsightsKMSKeyId": "k-2"}, on, **R)
    assert err.value.code == "InvalidParameterCombination"
