"""Metrics: the time-series store (1 s for 3 h, 1 min for 15 days) and the sampler that feeds it."""

from ._store import MINUTE_RETENTION, SECOND_RETENTION, Datapoint, MetricStore, Series, aggregate

__all__ = ["MINUTE_RETENTION", "SECOND_RETENTION", "Datapoint", "MetricStore", "Series", "aggregate"]
