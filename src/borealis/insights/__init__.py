"""Performance Insights: active sessions sampled every second, statement statistics, DB load by dimension.

The public domain API (the AWS ``pi`` service and the web console call it, never the store directly):

- :class:`Insights` — ``start()`` / ``close()``; ``instance_for(resource_id)``; ``load(instance, start, end,
  period, group=...)`` (DB load series, the total then the top keys of a dimension group);
  ``top(instance, start, end, group)`` (the top keys over a window); ``top_sql(instance, start, end)`` (the
  console's "Top SQL", with pg_stat_statements' calls per second and latency); ``statement(instance, sql_id)``
  (full text).
- :func:`tokenize`, :func:`load_series`, :func:`top_keys`: the pure rules (see ``_model``).
"""

from ._api import Insights, InsightsError, TopStatement
from ._model import GROUPS, METRICS, Bucket, Session, dimensions_of, key_id, load_series, tokenize, top_keys
from ._sampler import pi_settings
from ._store import InsightsStore

__all__ = [
    "GROUPS",
    "METRICS",
    "Bucket",
    "Insights",
    "InsightsError",
    "InsightsStore",
    "Session",
    "TopStatement",
    "dimensions_of",
    "key_id",
    "load_series",
    "pi_settings",
    "tokenize",
    "top_keys",
]
