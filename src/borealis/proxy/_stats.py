"""The proxy's metrics, under RDS Proxy's CloudWatch names and meanings, in an in-process registry.

The data path bumps plain integer attributes of a :class:`ProxyStats` (one per proxy; no locks, no dict
look-ups on the hot path). :class:`MetricsRegistry` turns them into CloudWatch-shaped samples when asked;
the metrics issue exposes those (Prometheus, GetMetricData).

Meanings, as AWS documents them:

* ClientConnections: client connections open now.
* ClientConnectionsReceived: client connection requests received (a counter).
* ClientConnectionsSetupSucceeded / ClientConnectionsSetupFailedAuth: logins that passed / failed.
* DatabaseConnections: database connections open now.
* DatabaseConnectionsCurrentlyBorrowed: database connections lent to a client now.
* DatabaseConnectionsCurrentlySessionPinned: database connections pinned to one client now.
* DatabaseConnectionsCurrentlyInTransaction: borrowed connections inside a transaction now.
* DatabaseConnectionsBorrowLatency: microseconds a client waited for a database connection (sum/count).
* DatabaseConnectionRequestsWithTLS, QueryRequests: queries (sync points: Query, Sync, FunctionCall) received.
* QueryDatabaseResponseLatency: microseconds from forwarding a query to the first response bytes (sum/count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._server import fastpath_counters

__all__ = ["METRIC_NAMES", "REGISTRY", "MetricsRegistry", "ProxyStats"]

METRIC_NAMES = (
    "ClientConnections",
    "ClientConnectionsReceived",
    "ClientConnectionsSetupSucceeded",
    "ClientConnectionsSetupFailedAuth",
    "ClientConnectionsClosed",
    "DatabaseConnections",
    "DatabaseConnectionRequests",
    "DatabaseConnectionsCurrentlyBorrowed",
    "DatabaseConnectionsCurrentlySessionPinned",
    "DatabaseConnectionsCurrentlyInTransaction",
    "DatabaseConnectionsBorrowLatency",
    "QueryRequests",
    "QueryDatabaseResponseLatency",
)


@dataclass(slots=True)
class ProxyStats:
    """Counters and gauges of one proxy; the data path writes the attributes directly."""

    proxy: str
    client_connections: int = 0
    client_connections_received: int = 0
    client_setup_succeeded: int = 0
    client_setup_failed_auth: int = 0
    client_connections_closed: int = 0
    database_connections: int = 0
    database_connection_requests: int = 0
    borrowed: int = 0
    pinned: int = 0
    pins_total: int = 0
    #: Sums of latencies in microseconds (floats: the hot path adds without rounding).
    borrow_latency_us_sum: float = 0.0
    borrow_count: int = 0
    query_requests: int = 0
    response_latency_us_sum: float = 0.0
    response_count: int = 0
    borrow_timeouts: int = 0
    in_transaction: Any = field(default=None, repr=False)
    """A callable giving DatabaseConnectionsCurrentlyInTransaction (sampled, not counted on the hot path)."""
    fast: Any = field(default=None, repr=False)
    """What the C data path forwarded and lent (``_fastpath.Counters``), when built."""

    def queries(self) -> int:
        """QueryRequests, through either data path."""
        return self.query_requests + (self.fast.queries if self.fast is not None else 0)

    def response_latency(self) -> tuple[float, int]:
        """QueryDatabaseResponseLatency's sum (microseconds) and count, through either data path."""
        if self.fast is None:
            return self.response_latency_us_sum, self.response_count
        return self.response_latency_us_sum + self.fast.latency_us, self.response_count + self.fast.responses

    def borrow_latency(self) -> tuple[float, int]:
        """DatabaseConnectionsBorrowLatency's sum (microseconds) and count, with the C path's lanes' lends."""
        if self.fast is None:
            return self.borrow_latency_us_sum, self.borrow_count
        return self.borrow_latency_us_sum + self.fast.borrow_us, self.borrow_count + self.fast.borrows

    def samples(self) -> dict[str, float]:
        """Every metric's current value; latencies are averages since start, in microseconds."""
        in_tx = int(self.in_transaction()) if callable(self.in_transaction) else 0
        latency, responses = self.response_latency()
        waited, borrows = self.borrow_latency()
        return {
            "ClientConnections": self.client_connections,
            "ClientConnectionsReceived": self.client_connections_received,
            "ClientConnectionsSetupSucceeded": self.client_setup_succeeded,
            "ClientConnectionsSetupFailedAuth": self.client_setup_failed_auth,
            "ClientConnectionsClosed": self.client_connections_closed,
            "DatabaseConnections": self.database_connections,
            "DatabaseConnectionRequests": self.database_connection_requests,
            "DatabaseConnectionsCurrentlyBorrowed": self.borrowed,
            "DatabaseConnectionsCurrentlySessionPinned": self.pinned,
            "DatabaseConnectionsCurrentlyInTransaction": in_tx,
            "DatabaseConnectionsBorrowLatency": waited / max(1, borrows),
            "QueryRequests": self.queries(),
            "QueryDatabaseResponseLatency": latency / max(1, responses),
        }


class MetricsRegistry:
    """Every proxy's :class:`ProxyStats`, by proxy name (CloudWatch dimension ``ProxyName``)."""

    def __init__(self) -> None:
        self._stats: dict[str, ProxyStats] = {}

    def stats(self, proxy: str) -> ProxyStats:
        """The stats of ``proxy``, created on first use."""
        found = self._stats.get(proxy)
        if found is None:
            found = self._stats[proxy] = ProxyStats(proxy, fast=fastpath_counters())
        return found

    def drop(self, proxy: str) -> None:
        """Forget a deleted proxy."""
        self._stats.pop(proxy, None)

    def fastpath_queries(self) -> dict[str, int]:
        """Queries each proxy's C data path forwarded itself (a part of QueryRequests; 0 without it)."""
        return {name: s.fast.queries if s.fast is not None else 0 for name, s in sorted(self._stats.items())}

    def fastpath_borrows(self) -> dict[str, int]:
        """Connections each proxy's C data path lent from its pools' lanes (a part of the borrows; 0 without it)."""
        return {name: s.fast.borrows if s.fast is not None else 0 for name, s in sorted(self._stats.items())}

    def snapshot(self) -> list[dict[str, Any]]:
        """``[{"MetricName", "Dimensions", "Value"}]`` for every proxy and metric, CloudWatch-shaped."""
        out = []
        for name, stats in sorted(self._stats.items()):
            for metric, value in stats.samples().items():
                out.append({"MetricName": metric, "Dimensions": [{"Name": "ProxyName", "Value": name}], "Value": value})
        return out


#: The process-wide registry the proxy manager writes to and the metrics issue will read.
REGISTRY = MetricsRegistry()
