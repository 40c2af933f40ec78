"""Load botocore service models once and answer the few questions the gateway asks of them."""

from __future__ import annotations

import functools
from typing import Any

from botocore.loaders import Loader
from botocore.model import ServiceModel

__all__ = ["load_service_model", "protocols_of", "signing_name_of"]

# One loader for the process: it caches the JSON files it has read.
_LOADER = Loader()


@functools.cache
def load_service_model(name: str) -> ServiceModel:
    """Return botocore's `ServiceModel` for the service `name` (e.g. "rds", "rds-data"), cached."""
    data: dict[str, Any] = _LOADER.load_service_model(name, "service-2")
    return ServiceModel(data, service_name=name)


def protocols_of(model: ServiceModel) -> tuple[str, ...]:
    """The wire protocols a service accepts: `protocols` when the model lists several, else `protocol`.

    CloudWatch lists json and query (botocore picks one by version), so a server must accept each.
    """
    metadata = model.metadata
    listed = metadata.get("protocols")
    if listed:
        return tuple(listed)
    return (metadata["protocol"],)


def signing_name_of(model: ServiceModel) -> str:
    """The SigV4 service name clients put in the credential scope ("monitoring" for cloudwatch)."""
    metadata = model.metadata
    return str(metadata.get("signingName") or metadata["endpointPrefix"])
