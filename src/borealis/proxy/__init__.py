"""The pooling proxy: RDS Proxy's resources (registry) and its PostgreSQL data path (manager).

Split by role, as PgBouncer is: the registry (API state), the manager (listeners, janitor, cancel keys),
the client side, the server side, the pool, authentication (passwords, IAM tokens), TLS (the CA in
``DATA_DIR/ca``) and stats.
"""

from ._config import DEFAULT_POOL, pool_config
from ._manager import ProxyManager, ProxyRuntime
from ._registry import ProxyRegistry
from ._stats import METRIC_NAMES, REGISTRY, MetricsRegistry, ProxyStats
from ._tls import CertificateAuthority, server_context

__all__ = [
    "DEFAULT_POOL",
    "METRIC_NAMES",
    "REGISTRY",
    "CertificateAuthority",
    "MetricsRegistry",
    "ProxyManager",
    "ProxyRegistry",
    "ProxyRuntime",
    "ProxyStats",
    "pool_config",
    "server_context",
]
