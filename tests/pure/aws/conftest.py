"""Fixtures for the aws tests: a gateway harness factory and recording handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from aws_harness import Harness, Recorder

from borealis.aws import Handler


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
