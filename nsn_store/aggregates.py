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
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from pymongo import UpdateOne

from nsn_store.clock import DEFAULT_CLOCK, Clock, to_bson_time
from nsn_store.errors import ConfigurationError, translated
from nsn_store.connection import is_embedded

log = logging.getLogger(__name__)

COLLECTION = "aggregates"
SOURCE = "messageEvents"
PERIODS = ("day", "week", "month")
MERGE_KEY = ("tenantId", "date", "metric", "period")
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class RollupWindow:
    """The whole-period window ``[start, end)`` that a rollup recomputed."""

    period: str
    start: datetime
    end: datetime


# ---------------------------------------------------------------- pure builders


def as_utc(value: datetime | date) -> datetime:
    """Return ``value`` as an aware UTC datetime (a date means its midnight UTC)."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=timezone.utc)
    return to_bson_time(value)


def check_period(period: str) -> str:
    """Return ``period`` if it is one of day, week, month; else raise ConfigurationError."""
    if period not in PERIODS:
        raise ConfigurationError(
            f"unknown period {period!r}; expected one of {PERIODS}"
        )
    return period


def period_start(moment: datetime | date, period: str) -> datetime:
    """Return the UTC start of the period holding ``moment``.

    Same as ``$dateTrunc: {unit: period, binSize: 1, timezone: "UTC",
    startOfWeek: "monday"}``: midnight; the Monday on or before; the 1st.
    """
    day = datetime.combine(as_utc(moment).date(), time(), tzinfo=timezone.utc)
    if check_period(period) == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def next_period_start(start: datetime, period: str) -> datetime:
    """Return the start of the period after the one starting at ``start``."""
    if check_period(period) == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    year, month = (
        (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    )
    return start.replace(year=year, month=month, day=1)


def period_window(
    period: str, start: datetime | date, end: datetime | date
) -> RollupWindow:
    """Widen ``[start, end)`` to whole periods."""
    first = period_start(start, period)
    last = period_start(as_utc(end) - _MS, period)
    return RollupWindow(period, first, max(first, next_period_start(last, period)))


def date_key(moment: datetime) -> str:
    """Return the ``date`` field of a row: "YYYY-MM-DD" of the UTC period start."""
    return moment.strftime("%Y-%m-%d")


def event_match(tenant_id: Any, window: RollupWindow) -> dict[str, Any]:
    """Return the ``$match`` of a rollup (served by ``by_tenantId``: tenantId, createdAt)."""
    return {
        "tenantId": tenant_id,
        "createdAt": {"$gte": window.start, "$lt": window.end},
    }


def truncate_expression(period: str) -> dict[str, Any]:
    """Return the ``$dateTrunc`` expression bucketing ``createdAt`` into ``period``."""
    spec: dict[str, Any] = {
        "date": "$createdAt",
        "unit": check_period(period),
        "timezone": "UTC",
    }
    if period == "week":
        spec["startOfWeek"] = "monday"
    return {"$dateTrunc": spec}


def merge_when_matched() -> list[dict[str, Any]]:
    """Return the ``$merge`` whenMatched pipeline: new value, createdAt kept,
    updatedAt moved only when the value changed (a rerun is a no-op)."""
    same = {"$eq": ["$value", "$$new.value"]}
    return [
        {
            "$set": {
                "value": "$$new.value",
                "updatedAt": {"$cond": [same, "$updatedAt", "$$new.updatedAt"]},
            }
        }
    ]


def rollup_pipeline(
    tenant_id: Any, window: RollupWindow, now: datetime
) -> list[dict[str, Any]]:
    """Return the server pipeline of one rollup (match, group, shape, merge)."""
    group_id = {"metric": "$eventType", "date": truncate_expression(window.period)}
    date_string = {
        "$dateToString": {"date": "$_id.date", "format": "%Y-%m-%d", "timezone": "UTC"}
    }
    return [
        {"$match": event_match(tenant_id, window)},
        {"$group": {"_id": group_id, "value": {"$sum": 1}}},
        {
            "$project": {
                "_id": 0,
                "tenantId": {"$literal": tenant_id},
                "period": {"$literal": window.period},
                "metric": "$_id.metric",
                "date": date_string,
                "value": 1,
                "createdAt": {"$literal": now},
                "updatedAt": {"$literal": now},
            }
        },
        {
            "$merge": {
                "into": COLLECTION,
                "on": list(MERGE_KEY),
                "whenMatched": merge_when_matched(),
                "whenNotMatched": "insert",
            }
        },
    ]


def row_filter(tenant_id: Any, period: str, metric: str, day: str) -> dict[str, Any]:
    """Return the unique-key filter of one aggregate row."""
    return {"tenantId": tenant_id, "date": day, "metric": metric, "period": period}


def rows_filter(tenant_id: Any, window: RollupWindow) -> dict[str, Any]:
    """Return the filter of a tenant's rows in a window (served by ``by_tenant_period``)."""
    dates = {"$gte": date_key(window.start), "$lt": date_key(window.end)}
    return {"tenantId": tenant_id, "period": window.period, "date": dates}


# -------------------------------------------- embedded fallback (no $dateTrunc/$merge)


def embedded_rows(
    events: Iterable[Mapping[str, Any]], period: str
) -> dict[tuple[str, str], int]:
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
        query = rows_filter(tenant_id, period_window(period, start, end))
        query["metric"] = metric
        return query


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
        window = period_window(period, start, end)
        now = self.clock.now()
        with translated(collection=COLLECTION):
            if self.embedded:
                self._rollup_embedded(tenant_id, window, now)
            else:
                list(self._events.aggregate(rollup_pipeline(tenant_id, window, now)))
        return window

    def series(
        self,
        tenant_id: Any,
        metric: str,
        period: str,
        start: datetime | date,
        end: datetime | date,
    ) -> list[tuple[str, Any]]:
        """Return ``[(date, value), ...]`` by date for periods overlapping ``[start, end)``."""
        query = self._series_query(tenant_id, metric, period, start, end)
        with translated(collection=COLLECTION):
            return _series_rows(self._rows.find(query, _ROW_FIELDS).sort("date", 1))

    def rebuild(self, tenant_id: Any) -> list[RollupWindow]:
        """Delete the tenant's rows and roll up every period from all its events."""
        with translated(collection=COLLECTION):
            self._rows.delete_many({"tenantId": tenant_id})
            first = self._events.find_one(
                {"tenantId": tenant_id}, sort=[("createdAt", 1)]
            )
            last = self._events.find_one(
                {"tenantId": tenant_id}, sort=[("createdAt", -1)]
            )
        if first is None or last is None:
            return []
        log.info(
            "rebuilding aggregates of tenant %s from %s", tenant_id, first["createdAt"]
        )
        end = last["createdAt"] + _MS
        return [
            self.rollup(tenant_id, p, start=first["createdAt"], end=end)
            for p in PERIODS
        ]

    def _rollup_embedded(
        self, tenant_id: Any, window: RollupWindow, now: datetime
    ) -> None:
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
        window = period_window(period, start, end)
        now = self.clock.now()
        with translated(collection=COLLECTION):
            if self.embedded:
                await self._rollup_embedded(tenant_id, window, now)
            else:
                await to_list(
                    self._events.aggregate(rollup_pipeline(tenant_id, window, now))
                )
        return window

    async def series(
        self,
        tenant_id: Any,
        metric: str,
        period: str,
        start: datetime | date,
        end: datetime | date,
    ) -> list[tuple[str, Any]]:
        """Return ``[(date, value), ...]`` by date for periods overlapping ``[start, end)``."""
        query = self._series_query(tenant_id, metric, period, start, end)
        with translated(collection=COLLECTION):
            return _series_rows(
                await to_list(self._rows.find(query, _ROW_FIELDS).sort("date", 1))
            )

    async def rebuild(self, tenant_id: Any) -> list[RollupWindow]:
        """Delete the tenant's rows and roll up every period from all its events."""
        with translated(collection=COLLECTION):
            await self._rows.delete_many({"tenantId": tenant_id})
            first = await self._events.find_one(
                {"tenantId": tenant_id}, sort=[("createdAt", 1)]
            )
            last = await self._events.find_one(
                {"tenantId": tenant_id}, sort=[("createdAt", -1)]
            )
        if first is None or last is None:
            return []
        log.info(
            "rebuilding aggregates of tenant %s from %s", tenant_id, first["createdAt"]
        )
        end = last["createdAt"] + _MS
        return [
            await self.rollup(tenant_id, p, start=first["createdAt"], end=end)
            for p in PERIODS
        ]

    async def _rollup_embedded(
        self, tenant_id: Any, window: RollupWindow, now: datetime
    ) -> None:
        events = await to_list(
            self._events.find(event_match(tenant_id, window), _EVENT_FIELDS)
        )
        rows = embedded_rows(events, window.period)
        existing = await to_list(
            self._rows.find(rows_filter(tenant_id, window), _ROW_FIELDS)
        )
        requests = embedded_requests(tenant_id, window.period, rows, existing, now)
        if requests:
            await self._rows.bulk_write(requests, ordered=False)
