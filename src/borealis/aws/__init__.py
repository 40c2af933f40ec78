"""The generic AWS protocol layer: query/XML, json and rest-json driven by botocore's service models.

`Gateway` is an ASGI application, served lean by `HttpServer`; services register handlers per operation,
raise `AWSError` for AWS errors, and get a `RequestContext` with the caller's region and access key.
"""

from ._errors import AWSError
from ._gateway import Gateway
from ._http import HttpLimits, HttpServer
from ._json import write_float
from ._model import load_service_model
from ._types import ASGIApp, Direct, Handler, RequestContext

__all__ = [
    "ASGIApp",
    "AWSError",
    "Direct",
    "Gateway",
    "Handler",
    "HttpLimits",
    "HttpServer",
    "RequestContext",
    "load_service_model",
    "write_float",
]
