"""Aggregates: period arithmetic, the rollup pipeline, and rollups on every backend.

The rollup sends one $match/$group/$merge pipeline; the embedded database runs it too,
so every behaviour test here exercises the server pipeline.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from _support import assert_async_twin, init_schema_async
from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st

from nsn_store.aggregates._periods import (
    PERIODS,
    RollupWindow,
    checked_window,
    next_period_start,
    period_count,
    period_dates,
    period_start,
    period_window,
    rollup_pipeline,
    truncate_expression,
)
from nsn_store.aggregates._service import Aggregates, AsyncAggregates
from nsn_store.errors import ConfigurationError, InvalidArgumentError
from nsn_store.migration._runner import init_schema


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


# $dateTrunc (unit day/week/month, binSize 1, timezone UTC, startOfWeek monday)
# truncates to midnight, to the Monday on or before, to the 1st of the month.
BOUNDARIES = [
    ("day-last-ms", utc(2026, 1, 5, 23, 59, 59, 999000), "day", utc(2026, 1, 5)),
    ("day-midnight", utc(2026, 1, 6), "day", utc(2026, 1, 6)),
    ("leap-day", utc(2028, 2, 29, 12), "day", utc(2028, 2, 29)),
    (
        "sunday-night-is-previous-week",
        utc(2026, 1, 11, 23, 59, 59, 999000),
        "week",
        utc(2026, 1, 5),
    ),
    ("monday-midnight-starts-week", utc(2026, 1, 12), "week", utc(2026, 1, 12)),
    ("week-across-year-end", utc(2026, 1, 1, 8), "week", utc(2025, 12, 29)),
    ("week-holding-leap-day", utc(2028, 2, 29), "week", utc(2028, 2, 28)),
    ("month-end", utc(2026, 1, 31, 23, 59, 59, 999000), "month", utc(2026, 1, 1)),
    ("month-first", utc(2026, 2, 1), "month", utc(2026, 2, 1)),
    ("year-end", utc(2025, 12, 31, 23, 59), "month", utc(2025, 12, 1)),
    ("leap-day-month", utc(2028, 2, 29, 23), "month", utc(2028, 2, 1)),
    ("after-leap-day", utc(2028, 3, 1), "month", utc(2028, 3, 1)),
]


@pytest.mark.parametrize(
    ("moment", "period", "expected"),
    [case[1:] for case in BOUNDARIES],
    ids=[case[0] for case in BOUNDARIES],
)
def test_period_start_matches_date_trunc(moment: datetime, period: str, expected: datetime) -> None:
    assert period_start(moment, period) == expected


def test_period_start_takes_a_date_and_refuses_unknown_periods() -> None:
    assert period_start(date(2026, 1, 7), "week") == utc(2026, 1, 5)
    with pytest.raises(ConfigurationError):
        period_start(utc(2026, 1, 7), "year")


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(PERIODS),
)
def test_every_moment_falls_in_exactly_one_period(moment: datetime, period: str) -> None:
    aware = moment.replace(tzinfo=timezone.utc, microsecond=moment.microsecond // 1000 * 1000)
    start = period_start(aware, period)
    after = next_period_start(start, period)
    assert start <= aware < after
    assert period_start(after, period) == after
    if period == "week":
        assert start.weekday() == 0
    if period == "month":
        assert start.day == 1 and after.day == 1


def test_december_rolls_over_to_january() -> None:
    assert next_period_start(utc(2025, 12, 1), "month") == utc(2026, 1, 1)


@given(
    st.sampled_from(PERIODS),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 6, 1), timezones=st.just(timezone.utc)),
    st.integers(0, 4000),
)
def test_period_count_counts_what_period_dates_lists(
    period: str, start: datetime, days: int
) -> None:
    # The series bound is checked with period_count, without listing the periods.
    last = datetime(9999, 12, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=min(days, (last - start).days))  # never past year 9999
    window = checked_window(period, start, end)
    assert period_count(window) == len(period_dates(window))


def test_window_widens_to_whole_periods() -> None:
    window = period_window("week", utc(2026, 1, 6, 10), utc(2026, 1, 7, 10))
    assert window == RollupWindow("week", utc(2026, 1, 5), utc(2026, 1, 12))
    exact = period_window("day", utc(2026, 1, 6), utc(2026, 1, 8))
    assert (exact.start, exact.end) == (utc(2026, 1, 6), utc(2026, 1, 8))


def test_pipeline_matches_groups_and_merges_on_the_unique_key() -> None:
    tenant, now = ObjectId(), utc(2026, 1, 5, 9)
    window = RollupWindow("week", utc(2026, 1, 5), utc(2026, 1, 12))
    stages = rollup_pipeline(tenant, window, now)
    assert [next(iter(s)) for s in stages] == ["$match", "$group", "$project", "$merge"]
    assert stages[0]["$match"] == {
        "tenantId": tenant,
        "createdAt": {"$gte": utc(2026, 1, 5), "$lt": utc(2026, 1, 12)},
    }
    assert stages[1]["$group"]["_id"]["date"] == truncate_expression("week")
    merge = stages[3]["$merge"]
    assert (merge["into"], merge["on"]) == (
        "aggregates",
        ["tenantId", "date", "metric", "period"],
    )
    assert merge["whenNotMatched"] == "insert"


def test_only_weeks_name_a_start_of_week() -> None:
    assert truncate_expression("week")["$dateTrunc"]["startOfWeek"] == "monday"
    assert "startOfWeek" not in truncate_expression("month")["$dateTrunc"]


def test_sync_and_async_surfaces_match() -> None:
    assert_async_twin(Aggregates, AsyncAggregates, plain=("rollup_flow",))


# ---------------------------------------------------------------- behaviour


@pytest.fixture
def store(db: Any) -> Any:
    init_schema(db)
    return db


@pytest.fixture
def aggregates(store: Any, clock: Any) -> Aggregates:
    return Aggregates(store, clock=clock)


def event(tenant: Any, event_type: str, at: datetime) -> dict[str, Any]:
    return {"tenantId": tenant, "eventType": event_type, "createdAt": at}


BOUNDARY_EVENTS = [
    ("sent", utc(2026, 1, 11, 23, 59, 59, 999000)),  # Sunday, last ms
    ("sent", utc(2026, 1, 12)),  # Monday midnight
    ("delivered", utc(2026, 1, 31, 23)),  # month end
    ("sent", utc(2026, 2, 1)),  # first of month, a Sunday
]


@pytest.fixture
def tenant(store: Any) -> Any:
    tenant, other = ObjectId(), ObjectId()
    store.messageEvents.insert_many([event(tenant, t, at) for t, at in BOUNDARY_EVENTS])
    store.messageEvents.insert_many([event(other, t, at) for t, at in BOUNDARY_EVENTS])
    return tenant


SERIES = [
    ("day", "sent", [("2026-01-11", 1), ("2026-01-12", 1), ("2026-02-01", 1)]),
    ("week", "sent", [("2026-01-05", 1), ("2026-01-12", 1), ("2026-01-26", 1)]),
    ("month", "sent", [("2026-01-01", 2), ("2026-02-01", 1)]),
    ("month", "delivered", [("2026-01-01", 1)]),
]


@pytest.mark.parametrize(
    ("period", "metric", "expected"), SERIES, ids=[f"{p}-{m}" for p, m, _ in SERIES]
)
def test_rollup_buckets_events_across_boundaries(
    aggregates: Aggregates, tenant: Any, period: str, metric: str, expected: list[Any]
) -> None:
    aggregates.rollup(tenant, period, start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    assert aggregates.series(tenant, metric, period, utc(2026, 1, 1), utc(2026, 3, 1)) == expected


def test_rollup_twice_changes_nothing(
    aggregates: Aggregates, tenant: Any, store: Any, clock: Any
) -> None:
    for period in PERIODS:
        aggregates.rollup(tenant, period, start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    first = sorted(store.aggregates.find(), key=lambda d: str(d["_id"]))
    clock.advance(hours=1)
    for period in PERIODS:
        aggregates.rollup(tenant, period, start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    assert sorted(store.aggregates.find(), key=lambda d: str(d["_id"])) == first


def test_rerun_after_new_events_updates_the_value_and_keeps_created_at(
    aggregates: Aggregates, tenant: Any, store: Any, clock: Any
) -> None:
    aggregates.rollup(tenant, "month", start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    created = clock.now()
    store.messageEvents.insert_one(event(tenant, "sent", utc(2026, 1, 20)))
    later = clock.advance(hours=2)
    aggregates.rollup(tenant, "month", start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    row = store.aggregates.find_one({"tenantId": tenant, "metric": "sent", "period": "month"})
    assert (row["value"], row["createdAt"], row["updatedAt"]) == (3, created, later)


def test_a_partial_window_still_writes_whole_period_counts(
    aggregates: Aggregates, tenant: Any
) -> None:
    window = aggregates.rollup(tenant, "week", start=utc(2026, 1, 14, 9), end=utc(2026, 1, 14, 10))
    assert window == RollupWindow("week", utc(2026, 1, 12), utc(2026, 1, 19))
    assert aggregates.series(tenant, "sent", "week", utc(2026, 1, 1), utc(2026, 3, 1)) == [
        ("2026-01-12", 1)
    ]


def test_series_is_limited_to_the_range_metric_and_tenant(
    aggregates: Aggregates, tenant: Any
) -> None:
    aggregates.rollup(tenant, "day", start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    assert aggregates.series(tenant, "sent", "day", utc(2026, 1, 12), utc(2026, 1, 31)) == [
        ("2026-01-12", 1)
    ]
    assert aggregates.series(ObjectId(), "sent", "day", utc(2026, 1, 1), utc(2026, 3, 1)) == []


def test_rows_satisfy_the_schema_fields(aggregates: Aggregates, tenant: Any, store: Any) -> None:
    aggregates.rollup(tenant, "day", start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    fields = {
        "_id",
        "tenantId",
        "period",
        "date",
        "metric",
        "value",
        "createdAt",
        "updatedAt",
    }
    rows = list(store.aggregates.find())
    assert rows and all(set(row) == fields for row in rows)


def test_a_rollup_is_one_round_trip_and_a_rebuild_six(aggregates: Aggregates, tenant: Any) -> None:
    # The server (or the embedded database) runs the whole pipeline: nothing comes back.
    aggregates.rollup(tenant, "week", start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    assert aggregates.trips.count == 1
    aggregates.rebuild(tenant)  # delete, first and last event, one rollup per period
    assert aggregates.trips.count == 1 + 6


def test_bad_arguments_are_refused_before_any_round_trip(aggregates: Aggregates) -> None:
    with pytest.raises(InvalidArgumentError):
        aggregates.rollup({"$ne": None}, "day", start=utc(2026, 1, 1), end=utc(2026, 1, 2))
    with pytest.raises(InvalidArgumentError):
        aggregates.series(ObjectId(), "sent", "year", utc(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(InvalidArgumentError):
        aggregates.rebuild("not-an-id")
    assert aggregates.trips.count == 0


def _random_events(store: Any, tenant: Any, rng: random.Random, count: int) -> None:
    start = utc(2025, 11, 20)
    types = ["sent", "delivered", "failed", "opened"]
    store.messageEvents.insert_many(
        event(
            tenant,
            rng.choice(types),
            start + timedelta(minutes=rng.randrange(60 * 24 * 100)),
        )
        for _ in range(count)
    )


def _rows(store: Any, tenant: Any) -> list[tuple[Any, ...]]:
    docs = store.aggregates.find({"tenantId": tenant})
    return sorted((d["period"], d["date"], d["metric"], d["value"]) for d in docs)


def test_rebuild_equals_incremental_rollups(aggregates: Aggregates, store: Any) -> None:
    tenant, other = ObjectId(), ObjectId()
    _random_events(store, tenant, random.Random(11), 300)
    _random_events(store, other, random.Random(12), 50)
    day = utc(2025, 11, 20)
    while day < utc(2026, 3, 1):  # a daily job rolling up "yesterday" in every period
        for period in PERIODS:
            aggregates.rollup(tenant, period, start=day, end=day + timedelta(days=1))
        day += timedelta(days=1)
    aggregates.rebuild(other)
    incremental = _rows(store, tenant)
    store.aggregates.update_many({"tenantId": tenant}, {"$inc": {"value": 5}})  # damage
    windows = aggregates.rebuild(tenant)
    assert [w.period for w in windows] == list(PERIODS)
    assert _rows(store, tenant) == incremental
    assert sum(v for p, _, _, v in incremental if p == "month") == 300
    assert sum(v for p, _, _, v in _rows(store, other) if p == "day") == 50


def test_rebuild_of_a_tenant_without_events_clears_its_rows(
    aggregates: Aggregates, tenant: Any, store: Any
) -> None:
    aggregates.rollup(tenant, "day", start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    store.messageEvents.delete_many({"tenantId": tenant})
    assert aggregates.rebuild(tenant) == []
    assert store.aggregates.count_documents({"tenantId": tenant}) == 0


def test_date_trunc_on_every_backend_agrees_with_period_start(store: Any) -> None:
    # The embedded database evaluates $dateTrunc itself; a server pins the same table.
    moments = [case[1] for case in BOUNDARIES]
    store.probe.insert_many({"at": at} for at in moments)
    projection = {p: truncate_expression(p) for p in PERIODS}
    for p in PERIODS:
        projection[p]["$dateTrunc"]["date"] = "$at"
    for doc in store.probe.aggregate([{"$project": {"_id": 0, "at": 1, **projection}}]):
        assert all(doc[p] == period_start(doc["at"], p) for p in PERIODS), doc


# ---------------------------------------------------------------- async twin


async def test_async_rollup_series_and_rebuild(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    tenant = ObjectId()
    await async_db.messageEvents.insert_many([event(tenant, t, at) for t, at in BOUNDARY_EVENTS])
    aggregates = AsyncAggregates(async_db, clock=clock)
    await aggregates.rollup(tenant, "week", start=utc(2026, 1, 1), end=utc(2026, 3, 1))
    expected = SERIES[1][2]
    assert (
        await aggregates.series(tenant, "sent", "week", utc(2026, 1, 1), utc(2026, 3, 1))
        == expected
    )
    await aggregates.rebuild(tenant)
    assert await aggregates.series(tenant, "sent", "month", utc(2026, 1, 1), utc(2026, 3, 1)) == [
        ("2026-01-01", 2),
        ("2026-02-01", 1),
    ]
