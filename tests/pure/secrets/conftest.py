"""Fixtures: a SecretsManager on a temporary store, and a real boto3 client served in-process.

The boto3 client never opens a socket: a botocore ``before-send`` hook hands each signed request to the
real `borealis.aws.Gateway` ASGI app and returns its reply as a botocore AWSResponse, so the tests see
exactly what a client over HTTP would (model parsing, SigV4, error codes), in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.pure.aws.aws_harness import Harness

from borealis.secrets import SecretsManager
from borealis.services.secretsmanager import handlers
from borealis.store import Store

ACCOUNT = "123456789012"
REGION = "us-east-1"


@pytest.fixture
def secrets_manager(tmp_path: Path) -> Iterator[SecretsManager]:
    store = Store(tmp_path / "state.db")
    yield SecretsManager(store, tmp_path / "secrets.key", account_id=ACCOUNT, region=REGION)
    store.close()


@pytest.fixture
def client(secrets_manager: SecretsManager) -> Iterator[Any]:
    """A boto3 secretsmanager client whose requests are served by the Gateway in-process."""
    harness = Harness({"secretsmanager": handlers(secrets_manager)})
    yield harness.client("secretsmanager")
    harness.close()
