"""The control plane: clusters, instances and their endpoints, reconciled from the store."""

from borealis.control._listener import EndpointUnavailable, Listener
from borealis.control._plane import ADMIN_USER, ControlPlane, Event, max_connections_for

__all__ = ["ADMIN_USER", "ControlPlane", "EndpointUnavailable", "Event", "Listener", "max_connections_for"]
