"""Aggregates: per-tenant daily, weekly and monthly event counts, cheap to read.

A rollup is ONE aggregation pipeline that the server executes: match a
tenant's ``messageEvents`` in a time window, group by event type and
``$dateTrunc`` period start (UTC; weeks start on Monday), and ``$merge`` the
rows into ``aggregates`` on the unique ``by_tenant_date_metric`` key. A matched
row gets the new value (and a new ``updatedAt`` only when the value changed),
so running a rollup twice changes nothing. The embedded database runs the same
pipeline (it implements the ``$dateTrunc`` and ``$merge`` subset it uses).

Windows are widened to whole periods before matching, so a rollup always
writes complete period counts and never replaces a full count with a partial
one.

Every id passes the id gate (:func:`nsn_store.arguments.as_object_id`) before
any I/O, so ``{"$ne": None}`` can never change, delete or read another
tenant's rows. ``metric`` is 1-200 characters. Windows are checked by
:func:`~nsn_store.aggregates._periods.checked_window` (years 1 to 9999, ``end``
not before ``start``); ``series`` reads at most
:data:`~nsn_store.aggregates._periods.MAX_SERIES_PERIODS` (1,000) periods per
call. ``rollup`` has no period maximum: its cost follows the tenant's events
in the window, not the window's length (``rebuild`` rolls up a tenant's whole
history in one call per period).

Each operation is written once, as a flow (:mod:`nsn_store._flow`);
:class:`Aggregates` and :class:`AsyncAggregates` declare them.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, Final, TypeAlias

from nsn_store._flow import Flow, FlowHost, Op, TripCounter, asynchronous, sync
from nsn_store._types import Document, IdLike
from nsn_store.aggregates._periods import (
    _MS,
    COLLECTION,
    MAX_SERIES_PERIODS,
    PERIODS,
    SOURCE,
    RollupWindow,
    checked_window,
    rollup_pipeline,
    series_filter,
)
from nsn_store.arguments import as_object_id, check_text
from nsn_store.clock import DEFAULT_CLOCK, Clock

log = logging.getLogger(__name__)

__all__ = ["Aggregates", "AsyncAggregates"]

#: One point of a series: the period's ``date`` ("YYYY-MM-DD") and its value.
SeriesPoint: TypeAlias = tuple[str, int | float]

_ROW_FIELDS: Final = {"_id": 0, "date": 1, "value": 1}
_BY_DATE: Final = [("date", 1)]
_MOMENT: Final = {"_id": 0, "createdAt": 1}


class _AggregateFlows(FlowHost):
    """Every aggregates operation, written once as a flow; the classes below declare them.

    Each flow checks its arguments before its first database call.
    """

    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.trips = TripCounter()
        self.clock = clock or DEFAULT_CLOCK

    def rollup_flow(
        self, tenant_id: IdLike, period: str, *, start: datetime | date, end: datetime | date
    ) -> Flow[RollupWindow]:
        """The flow behind rollup, for services that compose it (the worker's rollup job)."""
        return self._rollup(tenant_id, period, start=start, end=end)

    def _rollup(
        self,
        tenant_id: IdLike,
        period: str,
        *,
        start: datetime | date,
        end: datetime | date,
    ) -> Flow[RollupWindow]:
        """Recompute the rows of every whole period overlapping ``[start, end)``.

        One round trip: the server (or the embedded database) runs the whole
        ``$match``/``$group``/``$merge`` pipeline.
        """
        tenant = as_object_id(tenant_id, "tenant_id")
        window = checked_window(period, start, end)
        yield Op("aggregate", SOURCE, (rollup_pipeline(tenant, window, self.clock.now()),))
        return window

    def _series(
        self,
        tenant_id: IdLike,
        metric: str,
        period: str,
        start: datetime | date,
        end: datetime | date,
    ) -> Flow[list[SeriesPoint]]:
        """Return ``[(date, value), ...]`` by date for periods overlapping ``[start, end)``.

        At most 1,000 periods per call; a longer window is refused.
        """
        tenant = as_object_id(tenant_id, "tenant_id")
        name = check_text(metric, "metric", maximum=200)
        window = checked_window(period, start, end, maximum=MAX_SERIES_PERIODS)
        query = series_filter(tenant, name, window)
        rows: list[Document] = yield Op(
            "find", COLLECTION, (query, _ROW_FIELDS), {"sort": _BY_DATE}
        )
        return [(row["date"], row["value"]) for row in rows]

    def _rebuild(self, tenant_id: IdLike) -> Flow[list[RollupWindow]]:
        """Delete the tenant's rows and roll up every period from all its events."""
        tenant = as_object_id(tenant_id, "tenant_id")
        mine = {"tenantId": tenant}
        yield Op("delete_many", COLLECTION, (mine,))
        first = yield Op("find_one", SOURCE, (mine, _MOMENT), {"sort": [("createdAt", 1)]})
        last = yield Op("find_one", SOURCE, (mine, _MOMENT), {"sort": [("createdAt", -1)]})
        if first is None or last is None:
            return []
        log.info("rebuilding aggregates of tenant %s from %s", tenant, first["createdAt"])
        start, end = first["createdAt"], last["createdAt"] + _MS
        windows = []
        for period in PERIODS:
            windows.append((yield from self._rollup(tenant, period, start=start, end=end)))
        return windows


class Aggregates(_AggregateFlows):
    """Roll ``messageEvents`` up into ``aggregates`` and read series back."""

    rollup = sync(_AggregateFlows._rollup)
    series = sync(_AggregateFlows._series)
    rebuild = sync(_AggregateFlows._rebuild)


class AsyncAggregates(_AggregateFlows):
    """The asyncio twin of :class:`Aggregates`."""

    rollup = asynchronous(_AggregateFlows._rollup)
    series = asynchronous(_AggregateFlows._series)
    rebuild = asynchronous(_AggregateFlows._rebuild)
