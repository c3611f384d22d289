"""Aggregates: per-tenant daily, weekly and monthly event counts, cheap to read.

A rollup is ONE aggregation pipeline that the server executes: match a
tenant's ``messageEvents`` in a time window, group by event type and
``$dateTrunc`` period start (UTC; weeks start on Monday), and ``$merge`` the
rows into ``aggregates`` on the unique ``by_tenant_date_metric`` key. A matched
row gets the new value (and a new ``updatedAt`` only when the value changed),
so running a rollup twice changes nothing.

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

The embedded database (mongomock) implements neither ``$dateTrunc`` nor
``$merge``. :func:`rollup_pipeline` stays the single source of truth for a
server; the embedded fallback lives in one place (:func:`embedded_rows` and
:func:`embedded_requests`): it fetches the matched events, buckets them with
the pure :func:`period_start` (tested against ``$dateTrunc``'s documented
semantics) and upserts rows with one ``bulk_write``.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne

from nsn_store.aggregates._periods import (
    _MS,
    COLLECTION,
    MAX_SERIES_PERIODS,
    PERIODS,
    SOURCE,
    RollupWindow,
    checked_window,
    date_key,
    event_match,
    period_start,
    rollup_pipeline,
    row_filter,
    rows_filter,
    series_filter,
)
from nsn_store.arguments import as_object_id, check_text
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.connection import is_embedded
from nsn_store.errors import translated

log = logging.getLogger(__name__)

# The period math and pipeline builders live in aggregates_periods; they are
# re-exported so every name stays importable from nsn_store.aggregates.
__all__ = ["Aggregates", "AsyncAggregates", "embedded_requests", "embedded_rows", "to_list"]


# -------------------------------------------- embedded fallback (no $dateTrunc/$merge)


def embedded_rows(events: Iterable[Mapping[str, Any]], period: str) -> dict[tuple[str, str], int]:
    """Bucket events as the pipeline's ``$group`` does: ``{(metric, date): count}``."""
    buckets = Counter(
        (e["eventType"], date_key(period_start(e["createdAt"], period))) for e in events
    )
    return dict(buckets)


def embedded_requests(
    tenant_id: Any,
    period: str,
    rows: Mapping[tuple[str, str], int],
    existing: Iterable[Mapping[str, Any]],
    now: datetime,
) -> list[UpdateOne]:
    """Return the upserts the pipeline's ``$merge`` would apply (changed rows only)."""
    stored = {(r["metric"], r["date"]): r.get("value") for r in existing}
    return [
        UpdateOne(
            row_filter(tenant_id, period, metric, day),
            {
                "$set": {"value": value, "updatedAt": now},
                "$setOnInsert": {"createdAt": now},
            },
            upsert=True,
        )
        for (metric, day), value in sorted(rows.items())
        if stored.get((metric, day)) != value
    ]


_EVENT_FIELDS = {"_id": 0, "eventType": 1, "createdAt": 1}
_ROW_FIELDS = {"_id": 0, "metric": 1, "date": 1, "value": 1}


async def to_list(cursor: Any) -> list[Any]:
    """Drain a cursor from PyMongo async (awaitable aggregate), Motor or mongomock-motor."""
    if inspect.isawaitable(cursor):
        cursor = await cursor
    result: list[Any] = await cursor.to_list(None)
    return result


def _series_rows(docs: Iterable[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    return [(d["date"], d["value"]) for d in docs]


# ---------------------------------------------------------------- I/O twins


class _AggregatesBase:
    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or DEFAULT_CLOCK
        self.embedded = is_embedded(db)
        self._rows = db[COLLECTION]
        self._events = db[SOURCE]

    def _series_query(
        self, tenant_id: Any, metric: str, period: str, start: Any, end: Any
    ) -> dict[str, Any]:
        """Check a series' arguments (before any I/O); return its filter."""
        tenant = as_object_id(tenant_id, "tenant_id")
        name = check_text(metric, "metric", maximum=200)
        window = checked_window(period, start, end, maximum=MAX_SERIES_PERIODS)
        return series_filter(tenant, name, window)

    def _rollup_args(
        self, tenant_id: Any, period: str, start: Any, end: Any
    ) -> tuple[ObjectId, RollupWindow]:
        """Check a rollup's arguments (before any I/O); return the tenant and window."""
        return as_object_id(tenant_id, "tenant_id"), checked_window(period, start, end)


class Aggregates(_AggregatesBase):
    """Roll ``messageEvents`` up into ``aggregates`` and read series back."""

    def rollup(
        self,
        tenant_id: Any,
        period: str,
        *,
        start: datetime | date,
        end: datetime | date,
    ) -> RollupWindow:
        """Recompute the rows of every whole period overlapping ``[start, end)``."""
        tenant, window = self._rollup_args(tenant_id, period, start, end)
        now = self.clock.now()
        with translated(collection=COLLECTION):
            if self.embedded:
                self._rollup_embedded(tenant, window, now)
            else:
                list(self._events.aggregate(rollup_pipeline(tenant, window, now)))
        return window

    def series(
        self,
        tenant_id: Any,
        metric: str,
        period: str,
        start: datetime | date,
        end: datetime | date,
    ) -> list[tuple[str, Any]]:
        """Return ``[(date, value), ...]`` by date for periods overlapping ``[start, end)``.

        At most 1,000 periods per call; a longer window is refused.
        """
        query = self._series_query(tenant_id, metric, period, start, end)
        with translated(collection=COLLECTION):
            return _series_rows(self._rows.find(query, _ROW_FIELDS).sort("date", 1))

    def rebuild(self, tenant_id: Any) -> list[RollupWindow]:
        """Delete the tenant's rows and roll up every period from all its events."""
        tenant_id = as_object_id(tenant_id, "tenant_id")
        with translated(collection=COLLECTION):
            self._rows.delete_many({"tenantId": tenant_id})
            first = self._events.find_one({"tenantId": tenant_id}, sort=[("createdAt", 1)])
            last = self._events.find_one({"tenantId": tenant_id}, sort=[("createdAt", -1)])
        if first is None or last is None:
            return []
        log.info("rebuilding aggregates of tenant %s from %s", tenant_id, first["createdAt"])
        end = last["createdAt"] + _MS
        return [self.rollup(tenant_id, p, start=first["createdAt"], end=end) for p in PERIODS]

    def _rollup_embedded(self, tenant_id: Any, window: RollupWindow, now: datetime) -> None:
        events = self._events.find(event_match(tenant_id, window), _EVENT_FIELDS)
        rows = embedded_rows(events, window.period)
        existing = self._rows.find(rows_filter(tenant_id, window), _ROW_FIELDS)
        requests = embedded_requests(tenant_id, window.period, rows, existing, now)
        if requests:
            self._rows.bulk_write(requests, ordered=False)


class AsyncAggregates(_AggregatesBase):
    """The asyncio twin of :class:`Aggregates`."""

    async def rollup(
        self,
        tenant_id: Any,
        period: str,
        *,
        start: datetime | date,
        end: datetime | date,
    ) -> RollupWindow:
        """Recompute the rows of every whole period overlapping ``[start, end)``."""
        tenant, window = self._rollup_args(tenant_id, period, start, end)
        now = self.clock.now()
        with translated(collection=COLLECTION):
            if self.embedded:
                await self._rollup_embedded(tenant, window, now)
            else:
                await to_list(self._events.aggregate(rollup_pipeline(tenant, window, now)))
        return window

    async def series(
        self,
        tenant_id: Any,
        metric: str,
        period: str,
        start: datetime | date,
        end: datetime | date,
    ) -> list[tuple[str, Any]]:
        """Return ``[(date, value), ...]`` by date for periods overlapping ``[start, end)``.

        At most 1,000 periods per call; a longer window is refused.
        """
        query = self._series_query(tenant_id, metric, period, start, end)
        with translated(collection=COLLECTION):
            return _series_rows(await to_list(self._rows.find(query, _ROW_FIELDS).sort("date", 1)))

    async def rebuild(self, tenant_id: Any) -> list[RollupWindow]:
        """Delete the tenant's rows and roll up every period from all its events."""
        tenant_id = as_object_id(tenant_id, "tenant_id")
        with translated(collection=COLLECTION):
            await self._rows.delete_many({"tenantId": tenant_id})
            first = await self._events.find_one({"tenantId": tenant_id}, sort=[("createdAt", 1)])
            last = await self._events.find_one({"tenantId": tenant_id}, sort=[("createdAt", -1)])
        if first is None or last is None:
            return []
        log.info("rebuilding aggregates of tenant %s from %s", tenant_id, first["createdAt"])
        end = last["createdAt"] + _MS
        return [await self.rollup(tenant_id, p, start=first["createdAt"], end=end) for p in PERIODS]

    async def _rollup_embedded(self, tenant_id: Any, window: RollupWindow, now: datetime) -> None:
        events = await to_list(self._events.find(event_match(tenant_id, window), _EVENT_FIELDS))
        rows = embedded_rows(events, window.period)
        existing = await to_list(self._rows.find(rows_filter(tenant_id, window), _ROW_FIELDS))
        requests = embedded_requests(tenant_id, window.period, rows, existing, now)
        if requests:
            await self._rows.bulk_write(requests, ordered=False)
