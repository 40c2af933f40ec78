"""DescribeEventCategories through boto3's rds client, and its table against the events Borealis records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aws_harness import Harness
from botocore.exceptions import ClientError

from borealis.control._events import EventKind, Kinds
from borealis.serverless import _autopause
from borealis.services.rds_ha import EVENT_CATEGORIES, describe_event_categories


@pytest.fixture
def rds(harness_factory: Callable[..., Harness]) -> Any:
    harness = harness_factory({"rds": {"DescribeEventCategories": describe_event_categories}})
    return harness.client("rds")


def test_all_source_types(rds: Any) -> None:
    maps = rds.describe_event_categories()["EventCategoriesMapList"]
    by_type = {m["SourceType"]: m["EventCategories"] for m in maps}
    assert set(by_type) == {
        "db-instance",
        "db-cluster",
        "db-parameter-group",
        "db-security-group",
        "db-snapshot",
        "db-cluster-snapshot",
        "db-proxy",
    }
    assert "failover" in by_type["db-cluster"]
    assert "serverless" in by_type["db-cluster"]


def test_one_source_type(rds: Any) -> None:
    maps = rds.describe_event_categories(SourceType="db-proxy")["EventCategoriesMapList"]
    assert maps == [{"SourceType": "db-proxy", "EventCategories": ["configuration change", "creation", "deletion"]}]


def test_unknown_source_type(rds: Any) -> None:
    with pytest.raises(ClientError) as err:
        rds.describe_event_categories(SourceType="db-cluster-thing")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_every_recorded_event_is_in_its_source_types_categories() -> None:
    kinds = [v for v in vars(Kinds).values() if isinstance(v, EventKind)]
    kinds += [v for v in vars(_autopause).values() if isinstance(v, EventKind)]
    assert len(kinds) > 10
    for kind in kinds:
        assert set(kind.categories) <= set(EVENT_CATEGORIES[kind.source_type]), kind
