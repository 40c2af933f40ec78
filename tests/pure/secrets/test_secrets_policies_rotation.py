"""Resource policy checks and rotation schedules, as pure functions."""

from __future__ import annotations

import json

import pytest

from borealis.aws import AWSError
from borealis.secrets._manager import _interval
from borealis.secrets._policies import findings, parse_policy, public

ALLOW = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/r"}, "Action": "secretsmanager:*"}


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


@pytest.mark.parametrize(
    ("statement", "problems"),
    [
        (ALLOW, 0),
        ({**ALLOW, "Effect": "Permit"}, 1),
        ({k: v for k, v in ALLOW.items() if k != "Principal"}, 1),
        ({**ALLOW, "Action": "s3:GetObject"}, 1),
        ({**ALLOW, "NotAction": "secretsmanager:DeleteSecret"}, 1),
    ],
)
def test_findings(statement: dict, problems: int) -> None:
    assert len(findings(_policy(statement))) == problems


@pytest.mark.parametrize(
    ("statement", "is_public"),
    [
        (ALLOW, False),
        ({**ALLOW, "Principal": "*"}, True),
        ({**ALLOW, "Principal": {"AWS": ["arn:aws:iam::1:root", "*"]}}, True),
        ({**ALLOW, "Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": "1"}}}, False),
        ({**ALLOW, "Principal": "*", "Effect": "Deny"}, False),
    ],
)
def test_public(statement: dict, is_public: bool) -> None:
    assert public(_policy(statement)) is is_public


@pytest.mark.parametrize("text", ["{", "[]", '{"Version": "2012-10-17"}', "x" * 20481])
def test_malformed(text: str) -> None:
    with pytest.raises(AWSError):
        parse_policy(text)


def test_parse_keeps_the_document() -> None:
    assert parse_policy(json.dumps(_policy(ALLOW))) == _policy(ALLOW)


@pytest.mark.parametrize(
    ("rules", "seconds"),
    [
        ({"AutomaticallyAfterDays": 7}, 7 * 86400.0),
        ({"ScheduleExpression": "rate(10 days)"}, 10 * 86400.0),
        ({"ScheduleExpression": "rate(4 hours)"}, 4 * 3600.0),
        ({"ScheduleExpression": "cron(0 16 ? * 3#2 *)"}, None),
    ],
)
def test_rotation_interval(rules: dict, seconds: float | None) -> None:
    assert _interval(rules) == seconds


@pytest.mark.parametrize(
    "rules",
    [
        {"AutomaticallyAfterDays": 0},
        {"AutomaticallyAfterDays": 1001},
        {"ScheduleExpression": "rate(1 hours)"},
        {"ScheduleExpression": "every day"},
        {"AutomaticallyAfterDays": 3, "ScheduleExpression": "rate(3 days)"},
        {},
    ],
)
def test_rotation_refusals(rules: dict) -> None:
    with pytest.raises(AWSError):
        _interval(rules)


def test_managed_secret_rotation_schedule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from borealis.secrets import SecretsManager
    from borealis.store import Store

    now = [1_000_000.0]
    manager = SecretsManager(
        Store(tmp_path / "s.db"), tmp_path / "k", account_id="1", region="us-east-1", clock=lambda: now[0]
    )
    arn = manager.create_secret("rds!cluster-x", secret_string="{}", owning_service="rds")["ARN"]
    manager.create_secret("plain", secret_string="{}")
    described = manager.describe_secret(arn)
    assert described["RotationEnabled"] is True and described["RotationRules"] == {"AutomaticallyAfterDays": 7}
    now[0] += 7 * 86400 - 1
    assert manager.due_rotations() == []
    now[0] += 2
    assert manager.due_rotations() == [arn]
    # the owner's new value is the rotation: the next one is 7 days after it
    manager.put_secret_value(arn, secret_string='{"password": "new"}', owning_service="rds")
    assert manager.due_rotations() == []
    described = manager.describe_secret(arn)
    assert (described["NextRotationDate"] - described["LastRotatedDate"]).days == 7
    manager.cancel_rotation(arn)
    now[0] += 30 * 86400
    assert manager.due_rotations() == []
