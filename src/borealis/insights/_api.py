"""Performance Insights as the rest of Borealis calls it: the sampler, the store, and the questions asked.

The AWS ``pi`` service (services/pi.py) and the web console both call :class:`Insights`; it knows instances by
their identifier, answers in plain Python values, and raises :class:`InsightsError` for what cannot be asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._model import GROUPS, Bucket, DimensionKey, load_series, top_keys
from ._sampler import Sampler, pi_settings
from ._store import InsightsStore, StatementStats

__all__ = ["Insights", "InsightsError", "TopStatement"]


class InsightsError(Exception):
    """A question Performance Insights cannot answer; ``code`` is ``disabled`` or ``unknown``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TopStatement:
    """One statement of :meth:`Insights.top_sql`: its ids and text, its load (average active sessions) over the
    window, and what pg_stat_statements counted for it (None where it has nothing)."""

    id: str
    db_id: str
    statement: str
    load: float
    calls_per_sec: float | None = None
    avg_latency_ms: float | None = None
    rows_per_call: float | None = None


class Insights:
    """Performance Insights for every instance of a control plane."""

    def __init__(self, control: Any, data_dir: Path | None, *, admin_user: str, interval: float = 1.0) -> None:
        """Samples go to ``data_dir/insights.db`` (None: memory only); ``admin_user`` is the internal superuser
        the sampler connects as."""
        self.control = control
        self.store = InsightsStore(None if data_dir is None else data_dir / "insights.db")
        self.sampler = Sampler(control, self.store, admin_user=admin_user, interval=interval)

    def start(self) -> None:
        """Start sampling."""
        self.sampler.start()

    async def close(self) -> None:
        """Stop sampling and write what is pending."""
        await self.sampler.close()

    # --------------------------------------------------------------------------------------- lookups

    def instance_for(self, resource_id: str) -> dict[str, Any]:
        """The instance whose DbiResourceId is ``resource_id``, with Performance Insights on; else
        InsightsError (``unknown`` or ``disabled``)."""
        for doc in list(self.control.instances.values()):
            if doc.get("resource_id") == resource_id:
                if not pi_settings(doc)["enabled"]:
                    raise InsightsError("disabled", f"Performance Insights is not enabled for {resource_id}")
                return dict(doc)
        raise InsightsError("unknown", f"No DB instance has the resource ID {resource_id}")

    def _buckets(self, instance: str, start: int, end: int, period: int) -> tuple[list[Bucket], dict[str, Any]]:
        """One-second buckets where they serve (periods under a minute, or a window the seconds in memory
        cover), else the minutes (on disk and in memory), the window widened to whole minutes."""
        oldest = self.store.oldest_second(instance)
        if period < 60 or (oldest is not None and oldest <= start):
            return self.store.buckets(instance, start, end, fine=True)
        return self.store.buckets(instance, start - start % 60, end, fine=False)

    # --------------------------------------------------------------------------------------- questions

    def load(
        self,
        instance: str,
        start: int,
        end: int,
        period: int,
        *,
        group: str | None = None,
        dimensions: Sequence[str] | None = None,
        where: Mapping[str, str] | None = None,
        limit: int = 10,
        statistic: str = "avg",
    ) -> list[tuple[DimensionKey | None, list[tuple[int, float]]]]:
        """DB load of an instance per ``period`` seconds over ``[start, end)`` (start aligned to the period), its
        ``statistic`` (``avg``: average active sessions, ``max``, ``min``, ``sum``; see :func:`load_series`): the
        total first (key None), then the ``limit`` largest keys of ``group``."""
        buckets, keys = self._buckets(instance, start, end, period)
        return load_series(
            buckets,
            keys,
            start=start,
            end=end,
            period=period,
            group=group,
            dimensions=dimensions,
            where=where,
            limit=limit,
            statistic=statistic,
        )

    def top(
        self,
        instance: str,
        start: int,
        end: int,
        group: str,
        *,
        dimensions: Sequence[str] | None = None,
        where: Mapping[str, str] | None = None,
        partition: str | None = None,
        partition_dimensions: Sequence[str] | None = None,
        limit: int = 10,
    ) -> tuple[list[DimensionKey], list[tuple[DimensionKey, float, list[float]]]]:
        """The keys of ``group`` with the most load over ``[start, end)`` (see :func:`top_keys`)."""
        buckets, keys = self._buckets(instance, start, end, 1 if end - start < 60 else 60)
        return top_keys(
            buckets,
            keys,
            start=min(start, buckets[0].start) if buckets else start,
            end=end,
            group=group,
            dimensions=dimensions,
            where=where,
            partition=partition,
            partition_dimensions=partition_dimensions,
            limit=limit,
        )

    def statement_stats(self, instance: str, start: int, end: int) -> dict[str, StatementStats]:
        """What pg_stat_statements counted over ``[start, end)``, by query id."""
        return self.store.statement_stats(instance, start, end)

    def statement(self, instance: str, sql_id: str) -> str | None:
        """The full text of the statement whose ``db.sql.id`` is ``sql_id`` (None: not seen)."""
        dims = self.store.key(instance, {"db.sql.id": sql_id})
        return None if dims is None else dims.get("db.sql.statement")

    def top_sql(self, instance: str, start: int, end: int, *, limit: int = 10) -> list[TopStatement]:
        """The statements (tokenized: literals as ``?``) with the most load over ``[start, end)``, with their
        pg_stat_statements figures: the console's "Top SQL"."""
        _, rows = self.top(instance, start, end, "db.sql_tokenized", limit=limit)
        stats = self.statement_stats(instance, start, end)
        seconds = max(1, end - start)
        out = []
        for key, load, _ in rows:
            dims = dict(key)
            found = stats.get(dims.get("db.sql_tokenized.db_id", ""))
            out.append(
                TopStatement(
                    id=dims.get("db.sql_tokenized.id", ""),
                    db_id=dims.get("db.sql_tokenized.db_id", ""),
                    statement=dims.get("db.sql_tokenized.statement", ""),
                    load=load,
                    calls_per_sec=None if found is None else found.calls / seconds,
                    avg_latency_ms=None if found is None or not found.calls else found.time_ms / found.calls,
                    rows_per_call=None if found is None or not found.calls else found.rows / found.calls,
                )
            )
        return out

    @staticmethod
    def groups() -> dict[str, tuple[str, ...]]:
        """The dimension groups of ``db.load`` and their dimensions."""
        return dict(GROUPS)
