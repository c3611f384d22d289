"""Every limit, window, duration and value the data services take is bounded (issue 9,
mechanisms 10 and 11).

``AIPreviews.list(limit=0)`` and ``RagDocuments.search(limit=0)`` returned
everything; ``Aggregates.series`` over years 1-9999 ran for 39 s; NaN
embeddings were stored; huge or NaN TTLs, a counter's ``n`` of 2**63 and a key
with a lone surrogate raised raw ``OverflowError``/``ValueError``/
``UnicodeEncodeError``. Each bad value must now raise
:class:`~nsn_store.errors.InvalidArgumentError` naming its argument, before
any database call, on the sync class and its async twin alike; the documented
maximum itself is accepted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from _support import init_schema_async
from bson import ObjectId

from nsn_store import previews as pv
from nsn_store import rag as rg
from nsn_store.aggregates import _periods as periods
from nsn_store.aggregates._service import Aggregates, AsyncAggregates
from nsn_store.counters import MAX_SHARDS, AsyncShardedCounter, ShardedCounter
from nsn_store.errors import InvalidArgumentError
from nsn_store.migration._runner import init_schema
from nsn_store.previews import AIPreviews, AsyncAIPreviews
from nsn_store.rag import AsyncRagDocuments, RagDocuments

T, P = ObjectId(), ObjectId()
METRIC = "messages.sent"
DAY = datetime(2026, 1, 5, tzinfo=timezone.utc)
FUTURE = datetime(2100, 1, 4, 9, 0, tzinfo=timezone.utc)


class _NoIO:
    """A database whose collections fail the test on any call: proves "before any I/O"."""

    def __getitem__(self, name: str) -> Any:
        return _NoIOCollection(name)


class _NoIOCollection:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{self.name}.{method} called before the check")

        return called


def _bad_limits(maximum: int) -> list[tuple[str, Any]]:
    return [
        ("zero", 0),
        ("negative", -1),
        ("over-max", maximum + 1),
        ("float", 1.5),
        ("bool", True),
        ("string", "10"),
        ("none", None),
    ]


Case = tuple[str, type, Callable[[Any], Any], str]

CASES: list[Case] = []


def _cases(
    prefix: str, cls: type, argument: str, values: list[tuple[str, Any]], call: Callable
) -> None:
    for label, value in values:
        CASES.append((f"{prefix}-{label}", cls, lambda s, v=value: call(s, v), argument))


# -- previews
_cases(
    "previews.list.limit",
    AIPreviews,
    "limit",
    _bad_limits(pv.MAX_LIST_LIMIT),
    lambda s, v: s.list(T, limit=v),
)
TTLS = [
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("1e308", 1e308),
    ("1e20", 1e20),
    ("zero", 0),
    ("negative", -5),
    ("under-min", 0.5),
    ("over-max", pv.MAX_TTL + timedelta(seconds=1)),
    ("timedelta-max", timedelta.max),
    ("string", "60"),
    ("none", None),
    ("bool", True),
]
_cases("previews.create.ttl", AIPreviews, "ttl", TTLS, lambda s, v: s.create(T, "p", ttl=v))
TEXTS = [("not-a-string", 5), ("lone-surrogate", "a\udc80b")]
_cases(
    "previews.create.prompt",
    AIPreviews,
    "prompt",
    [*TEXTS, ("empty", ""), ("too-long", "p" * (pv.MAX_PROMPT + 1))],
    lambda s, v: s.create(T, v, ttl=60),
)
_cases(
    "previews.append.text",
    AIPreviews,
    "text",
    [*TEXTS, ("too-long", "t" * (pv.MAX_CHUNK + 1))],
    lambda s, v: s.append_tokens(T, P, v),
)

# -- rag
_cases(
    "rag.list.limit",
    RagDocuments,
    "limit",
    _bad_limits(rg.MAX_LIST_LIMIT),
    lambda s, v: s.list(T, limit=v),
)
_cases(
    "rag.search.limit",
    RagDocuments,
    "limit",
    _bad_limits(rg.MAX_LIST_LIMIT),
    lambda s, v: s.search(T, "x", limit=v),
)
_cases(
    "rag.search.query",
    RagDocuments,
    "query",
    [*TEXTS, ("empty", ""), ("too-long", "q" * (rg.MAX_QUERY + 1))],
    lambda s, v: s.search(T, v),
)
EMBEDDINGS = [
    ("nan", [0.1, math.nan]),
    ("inf", [math.inf]),
    ("-inf", [-math.inf]),
    ("huge-int", [10**400]),
    ("empty", []),
    ("too-long", [0.0] * (rg.MAX_EMBEDDING + 1)),
    ("not-a-sequence", 5),
    ("a-string", "0.1"),
    ("bools", [True]),
    ("strings", ["0.1"]),
    ("none-inside", [None]),
    ("mapping", {"a": 1.0}),
]
_cases(
    "rag.add.embedding",
    RagDocuments,
    "embedding",
    EMBEDDINGS,
    lambda s, v: s.add(T, "text", embedding=v),
)
_cases(
    "rag.add.text",
    RagDocuments,
    "text",
    [*TEXTS, ("empty", ""), ("too-long", "x" * (rg.MAX_TEXT + 1))],
    lambda s, v: s.add(T, v),
)
_cases(
    "rag.add.title",
    RagDocuments,
    "title",
    [*TEXTS, ("too-long", "x" * (rg.MAX_TITLE + 1))],
    lambda s, v: s.add(T, "text", title=v),
)
_cases(
    "rag.add.metadata",
    RagDocuments,
    "metadata",
    [("a-list", [("a", 1)]), ("unencodable", {"tags": {1, 2}}), ("int-key", {1: "a"})],
    lambda s, v: s.add(T, "text", metadata=v),
)

# -- aggregates
EVER = (
    datetime(1, 1, 2, tzinfo=timezone.utc),
    datetime(9999, 12, 1, tzinfo=timezone.utc),
)
for period in periods.PERIODS:
    CASES.append(
        (
            f"aggregates.series.years-1-9999-{period}",
            Aggregates,
            lambda s, p=period: s.series(T, "sent", p, *EVER),
            "end",
        )
    )
MOMENTS = [
    ("string", "2026-01-01"),
    ("number", 1767225600),
    ("none", None),
    ("date-max", date.max),
    ("datetime-max", datetime.max),
    ("datetime-min", datetime.min),
]
_cases(
    "aggregates.series.start",
    Aggregates,
    "start",
    MOMENTS,
    lambda s, v: s.series(T, "sent", "day", v, DAY),
)
_cases(
    "aggregates.series.end",
    Aggregates,
    "end",
    [*MOMENTS, ("before-start", DAY - timedelta(days=1))],
    lambda s, v: s.series(T, "sent", "day", DAY, v),
)
_cases(
    "aggregates.rollup.end",
    Aggregates,
    "end",
    MOMENTS,
    lambda s, v: s.rollup(T, "day", start=DAY, end=v),
)
PERIOD_VALUES = [("unknown", "year"), ("none", None), ("operator", {"$ne": None})]
_cases(
    "aggregates.series.period",
    Aggregates,
    "period",
    PERIOD_VALUES,
    lambda s, v: s.series(T, "sent", v, DAY, DAY),
)
_cases(
    "aggregates.rollup.period",
    Aggregates,
    "period",
    PERIOD_VALUES,
    lambda s, v: s.rollup(T, v, start=DAY, end=DAY),
)
METRICS = [
    ("empty", ""),
    ("too-long", "m" * 201),
    ("operator", {"$ne": None}),
    ("number", 5),
]
_cases(
    "aggregates.series.metric",
    Aggregates,
    "metric",
    METRICS,
    lambda s, v: s.series(T, v, "day", DAY, DAY),
)

# -- counters
AMOUNTS = [
    ("float", 1.5),
    ("bool", True),
    ("string", "1"),
    ("none", None),
    ("int64-overflow", 2**63),
    ("int64-underflow", -(2**63) - 1),
]
_cases("counter.add.n", ShardedCounter, "n", AMOUNTS, lambda s, v: s.add(T, METRIC, v))
_cases(
    "counter.add.metric",
    ShardedCounter,
    "metric",
    [*METRICS, ("lone-surrogate", "m\udc80")],
    lambda s, v: s.add(T, v),
)
_cases(
    "counter.count.metric",
    ShardedCounter,
    "metric",
    METRICS,
    lambda s, v: s.count(T, v),
)
_cases(
    "counter.reset.metric",
    ShardedCounter,
    "metric",
    METRICS,
    lambda s, v: s.reset(T, v),
)
_cases(
    "counter.add.key",
    ShardedCounter,
    "key",
    [("lone-surrogate", "k\udc80"), ("number", 5), ("too-long", "k" * 201)],
    lambda s, v: s.add(T, METRIC, key=v),
)
_cases(
    "counter.estimate.sample",
    ShardedCounter,
    "sample",
    _bad_limits(MAX_SHARDS),
    lambda s, v: s.estimate(T, METRIC, sample=v),
)
_cases(
    "counter.reconcile.source",
    ShardedCounter,
    "source",
    [("number", 5), ("empty", ""), ("none", None)],
    lambda s, v: s.reconcile(T, METRIC, source=v),
)
_cases(
    "counter.reconcile.filter",
    ShardedCounter,
    "filter",
    [("a-list", [("status", "sent")]), ("a-string", "status")],
    lambda s, v: s.reconcile(T, METRIC, source="messageEvents", filter=v),
)

ASYNC_TWINS = {
    ShardedCounter: AsyncShardedCounter,
    AIPreviews: AsyncAIPreviews,
    RagDocuments: AsyncRagDocuments,
    Aggregates: AsyncAggregates,
}


@pytest.mark.parametrize(
    ("cls", "call", "argument"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_bad_value_is_refused_by_name_before_any_io(
    cls: type, call: Callable[[Any], Any], argument: str
) -> None:
    began = time.perf_counter()
    with pytest.raises(InvalidArgumentError) as caught:
        call(cls(_NoIO()))
    assert caught.value.argument == argument
    assert time.perf_counter() - began < 1  # refused at once, not after the work


async def test_the_async_twins_refuse_the_same_values() -> None:
    for label, cls, call, argument in CASES:
        with pytest.raises(InvalidArgumentError) as caught:
            await call(ASYNC_TWINS[cls](_NoIO()))
        assert caught.value.argument == argument, label


@pytest.mark.parametrize(
    ("shards", "shards_for", "argument"),
    [
        (0, None, "shards"),
        (1.5, None, "shards"),
        (MAX_SHARDS + 1, None, "shards"),
        (16, {"hot": 0}, "shards_for['hot']"),
        (16, {"": 4}, "metric"),
        (16, [("hot", 4)], "shards_for"),
    ],
    ids=[
        "zero",
        "float",
        "over-max",
        "zero-for-a-metric",
        "empty-metric",
        "not-a-mapping",
    ],
)
def test_shard_counts_are_bounded(shards: Any, shards_for: Any, argument: str) -> None:
    for cls in (ShardedCounter, AsyncShardedCounter):
        with pytest.raises(InvalidArgumentError) as caught:
            cls(_NoIO(), shards, shards_for=shards_for)
        assert caught.value.argument == argument


# ------------------------------------------------ the documented maxima are accepted


@pytest.fixture
def store(db: Any, clock: Any) -> Any:
    init_schema(db)
    clock.set(FUTURE)
    return db


def test_limit_zero_no_longer_returns_everything_and_the_maximum_is_accepted(
    store: Any, clock: Any
) -> None:
    previews, rag = AIPreviews(store, clock=clock), RagDocuments(store, clock=clock)
    for i in range(3):
        previews.create(T, f"p{i}", ttl=600)
        rag.add(T, f"note {i}")
    for refused in (
        lambda: previews.list(T, limit=0),
        lambda: rag.search(T, "note", limit=0),
        lambda: rag.list(T, limit=0),
    ):
        with pytest.raises(InvalidArgumentError):
            refused()
    assert len(previews.list(T, limit=pv.MAX_LIST_LIMIT)) == 3
    assert len(rag.search(T, "note", limit=rg.MAX_LIST_LIMIT)) == 3
    assert len(rag.list(T, limit=1)) == 1


def test_ttl_bounds_are_inclusive(store: Any, clock: Any) -> None:
    previews = AIPreviews(store, clock=clock)
    shortest = previews.create(T, "p", ttl=pv.MIN_TTL)
    longest = previews.create(T, "p", ttl=pv.MAX_TTL.total_seconds())
    assert shortest["expiresAt"] == clock.now() + pv.MIN_TTL
    assert longest["expiresAt"] == clock.now() + pv.MAX_TTL


def test_nan_embeddings_are_not_stored(store: Any, clock: Any) -> None:
    rag = RagDocuments(store, clock=clock)
    with pytest.raises(InvalidArgumentError):
        rag.add(T, "text", embedding=[0.5, math.nan])
    assert store.ragDocuments.count_documents({}) == 0
    widest = rag.add(T, "text", embedding=(0.25 for _ in range(rg.MAX_EMBEDDING)))
    assert len(store.ragDocuments.find_one({"_id": widest["_id"]})["embedding"]) == 8192


@pytest.mark.parametrize("period", periods.PERIODS)
def test_a_series_of_exactly_the_maximum_periods_is_served(
    store: Any, clock: Any, period: str
) -> None:
    aggregates = Aggregates(store, clock=clock)
    start = datetime(2000, 1, 3, tzinfo=timezone.utc)  # a Monday, the 1st of no month
    window = periods.period_window(period, start, start)
    end = window.start
    for _ in range(periods.MAX_SERIES_PERIODS):
        end = periods.next_period_start(end, period)
    assert aggregates.series(T, "sent", period, start, end) == []
    with pytest.raises(InvalidArgumentError) as caught:
        aggregates.series(T, "sent", period, start, end + timedelta(milliseconds=1))
    assert caught.value.argument == "end"


def test_n_must_be_a_whole_number_within_int64(store: Any, clock: Any) -> None:
    counter = ShardedCounter(store, clock=clock, shards=1)
    counter.add(T, METRIC, 2**63 - 1)
    counter.add(T, METRIC, -(2**63 - 1))
    counter.add(T, METRIC, -2)
    assert counter.count(T, METRIC) == -2
    for bad in (True, 1.0):
        with pytest.raises(InvalidArgumentError):
            counter.add(T, METRIC, bad)
    assert counter.count(T, METRIC) == -2


async def test_async_bounds_on_a_real_database(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    clock.set(FUTURE)
    previews, rag = (
        AsyncAIPreviews(async_db, clock=clock),
        AsyncRagDocuments(async_db, clock=clock),
    )
    await previews.create(T, "p", ttl=600)
    await rag.add(T, "note")
    with pytest.raises(InvalidArgumentError):
        await previews.list(T, limit=0)
    with pytest.raises(InvalidArgumentError):
        await rag.search(T, "note", limit=0)
    with pytest.raises(InvalidArgumentError):
        await rag.add(T, "text", embedding=[math.inf])
    assert await async_db.ragDocuments.count_documents({}) == 1
    assert len(await previews.list(T, limit=pv.MAX_LIST_LIMIT)) == 1
