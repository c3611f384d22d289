"""Build the pure side of aggregates: period math and the rollup pipeline.

Periods are UTC days, Monday-start weeks and calendar months, computed exactly
as the server's ``$dateTrunc`` buckets them. :func:`rollup_pipeline` is the
one rollup pipeline, sent to a server and to the embedded database alike; the
operations that send it live in :mod:`nsn_store.aggregates._service`.

Windows are checked before any I/O (:func:`checked_window`): ``period`` is one
of day, week, month; ``start`` and ``end`` are datetimes (naive means UTC) or
dates between :data:`EARLIEST` and :data:`LATEST` (years 1 to 9999, less the
last month, so the period after the last one still has a date), with ``end``
not before ``start``. A series reads at most :data:`MAX_SERIES_PERIODS`
(1,000) periods per call, counted after widening to whole periods: about 2.7
years of days, 19 years of weeks or 83 years of months; ask for more in
several calls. Each bad value raises
:class:`~nsn_store.errors.InvalidArgumentError` naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Final

from bson import ObjectId

from nsn_store._types import Document
from nsn_store.arguments import check_datetime
from nsn_store.clock import to_bson_time
from nsn_store.errors import InvalidArgumentError

COLLECTION = "aggregates"
SOURCE = "messageEvents"
PERIODS = ("day", "week", "month")
MERGE_KEY = ("tenantId", "date", "metric", "period")
_MS = timedelta(milliseconds=1)
#: The most periods one ``series`` call reads (its ``$in`` lists each period start).
MAX_SERIES_PERIODS: Final = 1_000
#: The first and last moments a window may start or end at.
EARLIEST: Final = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST: Final = datetime(9999, 12, 1, tzinfo=timezone.utc)


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
    """Return ``period`` if it is one of day, week, month; else raise InvalidArgumentError."""
    if not isinstance(period, str) or period not in PERIODS:
        raise InvalidArgumentError(f"period must be one of {', '.join(PERIODS)}", argument="period")
    return period


def check_moment(value: Any, argument: str) -> datetime:
    """Return ``value`` (a datetime, naive meaning UTC, or a date) as aware UTC.

    Refuses other types and moments outside :data:`EARLIEST` .. :data:`LATEST`.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=timezone.utc)
    moment = as_utc(check_datetime(value, argument))
    if not EARLIEST <= moment <= LATEST:
        raise InvalidArgumentError(
            f"{argument} must be from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}",
            argument=argument,
        )
    return moment


def period_count(window: RollupWindow) -> int:
    """Return how many periods ``window`` holds (without listing them)."""
    if window.period == "month":
        return (window.end.year - window.start.year) * 12 + (window.end.month - window.start.month)
    days = (window.end - window.start).days
    return days // 7 if window.period == "week" else days


def checked_window(
    period: Any, start: Any, end: Any, *, maximum: int | None = None
) -> RollupWindow:
    """Check a window's arguments (before any I/O) and widen it to whole periods.

    With ``maximum``, a window of more periods than that is refused (``end``).
    """
    check_period(period)
    first = check_moment(start, "start")
    last = check_moment(end, "end")
    if last < first:
        raise InvalidArgumentError("end must not be before start", argument="end")
    window = period_window(period, first, last)
    if maximum is not None and period_count(window) > maximum:
        raise InvalidArgumentError(
            f"a series reads at most {maximum} {period}s per call, "
            f"not {period_count(window)}: split the window",
            argument="end",
        )
    return window


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
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month, day=1)


def period_window(period: str, start: datetime | date, end: datetime | date) -> RollupWindow:
    """Widen ``[start, end)`` to whole periods."""
    first = period_start(start, period)
    last = period_start(as_utc(end) - _MS, period)
    return RollupWindow(period, first, max(first, next_period_start(last, period)))


def date_key(moment: datetime) -> str:
    """Return the ``date`` field of a row: "YYYY-MM-DD" of the UTC period start."""
    return moment.strftime("%Y-%m-%d")


def event_match(tenant_id: ObjectId, window: RollupWindow) -> Document:
    """Return the ``$match`` of a rollup (served by ``by_tenantId``: tenantId, createdAt)."""
    return {
        "tenantId": tenant_id,
        "createdAt": {"$gte": window.start, "$lt": window.end},
    }


def truncate_expression(period: str) -> Document:
    """Return the ``$dateTrunc`` expression bucketing ``createdAt`` into ``period``."""
    spec: Document = {
        "date": "$createdAt",
        "unit": check_period(period),
        "timezone": "UTC",
    }
    if period == "week":
        spec["startOfWeek"] = "monday"
    return {"$dateTrunc": spec}


def merge_when_matched() -> list[Document]:
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


def rollup_pipeline(tenant_id: ObjectId, window: RollupWindow, now: datetime) -> list[Document]:
    """Return the server pipeline of one rollup (match, group, shape, merge)."""
    group_id = {"metric": "$eventType", "date": truncate_expression(window.period)}
    date_string = {"$dateToString": {"date": "$_id.date", "format": "%Y-%m-%d", "timezone": "UTC"}}
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


def row_filter(tenant_id: ObjectId, period: str, metric: str, day: str) -> Document:
    """Return the unique-key filter of one aggregate row."""
    return {"tenantId": tenant_id, "date": day, "metric": metric, "period": period}


def period_dates(window: RollupWindow) -> list[str]:
    """Return the ``date`` key of every period start in ``window``, in order."""
    dates, start = [], window.start
    while start < window.end:
        dates.append(date_key(start))
        start = next_period_start(start, window.period)
    return dates


def series_filter(tenant_id: ObjectId, metric: str, window: RollupWindow) -> Document:
    """Return the filter of one metric's rows in a window (served by ``by_tenant_date_metric``).

    Rows exist only at period starts, so the window's dates are listed with
    ``$in``: every field of the unique key is then an equality, the scan reads
    exactly the rows returned, and ``$in`` bounds on ``date`` come out in date
    order (no SORT). A ``date`` range would put a range before ``metric`` and
    ``period`` in that key, and on ``by_tenant_period`` leave ``metric`` to be
    filtered after the fetch, so the planner's pick would depend on the data.
    """
    return {
        "tenantId": tenant_id,
        "date": {"$in": period_dates(window)},
        "metric": metric,
        "period": window.period,
    }


def rows_filter(tenant_id: ObjectId, window: RollupWindow) -> Document:
    """Return the filter of a tenant's rows in a window (served by ``by_tenant_period``)."""
    dates = {"$gte": date_key(window.start), "$lt": date_key(window.end)}
    return {"tenantId": tenant_id, "period": window.period, "date": dates}
