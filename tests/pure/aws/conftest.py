"""Fixtures for the aws tests: a gateway harness factory, recording handlers, and CloudWatch with alarms."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_harness import Harness, Recorder

from borealis.aws import Handler
from borealis.metrics import MetricStore
from borealis.metrics._alarms import AlarmBook
from borealis.services import monitoring


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(services: Mapping[str, Mapping[str, Handler]], **kwargs: Any) -> Harness:
        harness = Harness(services, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[MetricStore, AlarmBook]]:
    """A metric store and an alarm book, in this test's directory."""
    store = MetricStore(tmp_path / "metrics.db")
    yield store, AlarmBook(tmp_path / "alarms.json", region="us-east-1", account="123456789012")
    store.close()


@pytest.fixture
def cloudwatch(harness_factory: Callable[..., Harness], parts: tuple[MetricStore, AlarmBook]) -> Any:
    """A boto3 CloudWatch client on ``parts`` (modules with a CloudWatch of their own define their own)."""
    return harness_factory({"cloudwatch": monitoring.handlers(*parts)}).client("cloudwatch")
