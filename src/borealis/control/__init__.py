"""The control plane: clusters, instances and their endpoints, reconciled from the store."""

from borealis.control._listener import EndpointUnavailable, Listener
from borealis.control._plane import ADMIN_USER, ControlPlane, Event, FailoverRefused, StaleRecord, max_connections_for
from borealis.control._reconciler import Observation
from borealis.control._records import SERVING, ClusterRecord, InstanceRecord, InvalidTransition
from borealis.control._topology import Address, ClusterView, Member, Topology, Unavailable, stored_views

__all__ = [
    "ADMIN_USER",
    "SERVING",
    "Address",
    "ClusterRecord",
    "ClusterView",
    "ControlPlane",
    "EndpointUnavailable",
    "Event",
    "FailoverRefused",
    "InstanceRecord",
    "InvalidTransition",
    "Listener",
    "Member",
    "Observation",
    "StaleRecord",
    "Topology",
    "Unavailable",
    "max_connections_for",
    "stored_views",
]
