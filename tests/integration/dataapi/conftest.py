"""Fixtures for the Data API tests: a boto3 ``rds-data`` client on the shared Borealis and its ARNs.

The shared ``borealis`` fixture (tests/integration/conftest.py) runs `borealis up` once per session. Its
Data API limits come from ``BOREALIS_DATAAPI_*`` variables read at start-up; the ones set here make the
expiry and timeout tests take seconds instead of AWS's minutes. They only shorten limits no other test
reaches (a 6 s idle transaction, a 4 s call), and are set before any fixture starts Borealis. The idle limit
leaves room for the aws CLI, which can take seconds to start on a loaded machine, between two calls of one
transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.conftest import BorealisProcess

IDLE_TIMEOUT = 6.0
CALL_TIMEOUT = 4.0

os.environ.setdefault("BOREALIS_DATAAPI_TRANSACTION_IDLE_TIMEOUT", str(IDLE_TIMEOUT))
os.environ.setdefault("BOREALIS_DATAAPI_CALL_TIMEOUT", str(CALL_TIMEOUT))


@dataclass(frozen=True)
class Target:
    """The default cluster's ARN and its managed secret's ARN."""

    resource_arn: str
    secret_arn: str


@pytest.fixture(scope="session")
def target(borealis: BorealisProcess) -> Target:
    cluster = borealis.client("rds").describe_db_clusters(DBClusterIdentifier="default")["DBClusters"][0]
    return Target(cluster["DBClusterArn"], cluster["MasterUserSecret"]["SecretArn"])


@pytest.fixture(scope="session")
def data(borealis: BorealisProcess) -> Any:
    """A boto3 ``rds-data`` client (no retries, so each error is seen once)."""
    return borealis.client("rds-data")


@pytest.fixture
def execute(data: Any, target: Target) -> Callable[..., dict[str, Any]]:
    """``execute(sql, **params)``: ExecuteStatement on the default cluster, parameters given as a dict."""

    def run(sql: str, parameters: dict[str, Any] | list[dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, Any]:
        if isinstance(parameters, dict):
            parameters = [{"name": k, "value": v} for k, v in parameters.items()]
        if parameters is not None:
            kwargs["parameters"] = parameters
        out: dict[str, Any] = data.execute_statement(
            resourceArn=target.resource_arn, secretArn=target.secret_arn, sql=sql, **kwargs
        )
        out.pop("ResponseMetadata", None)
        return out

    return run
