"""Sharded counters: pure builders, then behaviour on every backend (sync and async)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import zlib
from datetime import datetime, timezone
from typing import Any

import pytest
from _support import assert_async_twin, init_schema_async
from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st
from pymongo.errors import DuplicateKeyError as PyMongoDuplicateKeyError

from nsn_store._flow import Flow, Op, TripCounter, run, run_async
from nsn_store.counters import (
    DEFAULT_SHARDS,
    AsyncShardedCounter,
    ReconcileResult,
    ShardedCounter,
    counter_update,
    even_targets,
    is_shard_duplicate,
    pick_sample,
    pick_shard,
    rebalance_deltas,
    shard_for_key,
)
from nsn_store.errors import ConfigurationError, InvalidIdError
from nsn_store.migration._runner import init_schema
from nsn_store.schema._models import APPLIED_WINDOW

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
METRIC = "messages.sent"


# ---------------------------------------------------------------- pure builders


def test_counter_update_is_an_upsert_on_the_unique_shard_key() -> None:
    tenant = ObjectId()
    query, update = counter_update(tenant, METRIC, 3, 2, NOW)
    assert query == {"tenantId": tenant, "metric": METRIC, "shard": 3}
    assert update == {
        "$inc": {"value": 2},
        "$set": {"updatedAt": NOW},
        "$setOnInsert": {"createdAt": NOW},
    }


def test_a_keyed_update_skips_a_shard_holding_the_key_and_remembers_the_last_256() -> None:
    tenant = ObjectId()
    query, update = counter_update(tenant, METRIC, 3, 1, NOW, once="msg:sent:1")
    assert query == {
        "tenantId": tenant,
        "metric": METRIC,
        "shard": 3,
        "applied": {"$ne": "msg:sent:1"},
    }
    assert update["$push"] == {"applied": {"$each": ["msg:sent:1"], "$slice": -APPLIED_WINDOW}}
    assert update["$inc"] == {"value": 1}


def test_only_a_duplicate_of_the_shard_key_means_already_applied() -> None:
    shard_key = {"tenantId": 1, "metric": 1, "shard": 1}
    assert is_shard_duplicate(PyMongoDuplicateKeyError("E11000", 11000, {"keyPattern": shard_key}))
    assert not is_shard_duplicate(
        PyMongoDuplicateKeyError("E11000", 11000, {"keyPattern": {"_id": 1}})
    )
    assert is_shard_duplicate(  # a server reply without keyPattern names the index
        PyMongoDuplicateKeyError(
            "E11000", 11000, {"errmsg": "E11000 index: by_tenant_metric_shard dup key"}
        )
    )


def test_sticky_shard_is_a_stable_crc32_not_the_salted_hash() -> None:
    assert shard_for_key("worker-7", 16) == zlib.crc32(b"worker-7") % 16
    assert pick_shard(16, random.Random(1), key="worker-7") == shard_for_key("worker-7", 16)


def test_random_shard_comes_from_the_given_rng() -> None:
    picks = [pick_shard(16, random.Random(42)) for _ in range(3)]
    assert picks == [random.Random(42).randrange(16)] * 3


@given(st.integers(1, 64), st.integers(1, 64), st.integers(0, 2**32))
def test_sample_is_distinct_sorted_and_bounded(shards: int, sample: int, seed: int) -> None:
    chosen = pick_sample(shards, sample, random.Random(seed))
    assert chosen == sorted(set(chosen))
    assert len(chosen) == min(sample, shards)
    assert all(0 <= s < shards for s in chosen)


def test_sample_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        pick_sample(16, 0, random.Random(0))


@given(st.integers(-(10**6), 10**9), st.integers(1, 64))
def test_even_targets_keep_the_total_and_differ_by_at_most_one(total: int, shards: int) -> None:
    targets = even_targets(total, shards)
    assert sum(targets) == total
    assert max(targets) - min(targets) <= 1


@given(st.dictionaries(st.integers(0, 40), st.integers(-100, 10**6)), st.integers(1, 32))
def test_rebalance_deltas_reach_even_targets_without_changing_the_total(
    current: dict[int, int], shards: int
) -> None:
    total = sum(current.values())
    deltas = rebalance_deltas(current, shards, total)
    assert sum(deltas.values()) == 0
    after = {s: current.get(s, 0) + deltas.get(s, 0) for s in set(current) | set(deltas)}
    assert all(after[s] == 0 for s in after if s >= shards)
    assert sorted(after.get(s, 0) for s in range(shards)) == sorted(even_targets(total, shards))


def test_a_counter_needs_at_least_one_shard() -> None:
    with pytest.raises(ConfigurationError):
        ShardedCounter({"counters": None}, shards=0)
    with pytest.raises(ConfigurationError):
        ShardedCounter({"counters": None}, shards_for={"x": 0})


def test_sync_and_async_surfaces_match() -> None:
    assert_async_twin(
        ShardedCounter, AsyncShardedCounter, plain=("shard_count", "add_flow", "reconcile_flow")
    )


# ---------------------------------------------------------------- behaviour (sync)


@pytest.fixture
def store(db: Any) -> Any:
    init_schema(db)
    return db


@pytest.fixture
def counter(store: Any, clock: Any) -> ShardedCounter:
    return ShardedCounter(store, clock=clock, rng=random.Random(7))


def test_count_sums_every_add_and_starts_at_zero(counter: ShardedCounter) -> None:
    tenant = ObjectId()
    assert counter.count(tenant, METRIC) == 0
    for n in (1, 1, 5, 10):
        counter.add(tenant, METRIC, n)
    assert counter.count(tenant, METRIC) == 17


def test_counters_are_per_tenant_and_per_metric(counter: ShardedCounter) -> None:
    a, b = ObjectId(), ObjectId()
    counter.add(a, METRIC, 3)
    counter.add(b, METRIC, 4)
    counter.add(a, "messages.failed", 5)
    assert (counter.count(a, METRIC), counter.count(b, METRIC)) == (3, 4)
    assert counter.count(a, "messages.failed") == 5


def test_shard_documents_are_valid_and_within_the_shard_count(
    counter: ShardedCounter, store: Any, clock: Any
) -> None:
    tenant = ObjectId()
    for _ in range(100):
        counter.add(tenant, METRIC)
    docs = list(store.counters.find({"tenantId": tenant}))
    assert 1 < len(docs) <= DEFAULT_SHARDS
    assert {d["shard"] for d in docs} <= set(range(DEFAULT_SHARDS))
    assert all(d["createdAt"] == clock.now() and d["updatedAt"] == clock.now() for d in docs)
    fields = {"_id", "tenantId", "metric", "shard", "value", "createdAt", "updatedAt"}
    assert all(set(d) == fields for d in docs)


def test_shards_for_gives_a_metric_its_own_shard_count(store: Any, clock: Any) -> None:
    tenant = ObjectId()
    counter = ShardedCounter(store, clock=clock, rng=random.Random(1), shards_for={"hot": 2})
    for _ in range(50):
        counter.add(tenant, "hot")
    shards = {d["shard"] for d in store.counters.find({"tenantId": tenant, "metric": "hot"})}
    assert shards == {0, 1}
    assert counter.count(tenant, "hot") == 50


def test_a_key_sticks_to_one_shard(counter: ShardedCounter, store: Any) -> None:
    tenant = ObjectId()
    for _ in range(20):
        counter.add(tenant, METRIC, key="worker-1")
    docs = list(store.counters.find({"tenantId": tenant}))
    assert [(d["shard"], d["value"]) for d in docs] == [(shard_for_key("worker-1", 16), 20)]


def test_concurrent_adds_from_eight_threads_sum_exactly(store: Any, clock: Any) -> None:
    tenant, per_thread = ObjectId(), 150
    counter = ShardedCounter(store, clock=clock)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            counter.add(tenant, METRIC)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.count(tenant, METRIC) == 8 * per_thread


def test_estimate_is_within_five_percent_on_uniform_traffic(store: Any, clock: Any) -> None:
    # 10,000 unit adds over 16 shards, 8 sampled: relative standard error
    # sqrt((16/8 - 1) / 10000) = 1%, so 5% is five standard errors.
    tenant, total = ObjectId(), 10_000
    counter = ShardedCounter(store, clock=clock, rng=random.Random(2026))
    for _ in range(total):
        counter.add(tenant, METRIC)
    assert counter.count(tenant, METRIC) == total
    for _ in range(5):
        assert abs(counter.estimate(tenant, METRIC, sample=8) - total) <= 0.05 * total
    assert counter.estimate(tenant, METRIC, sample=16) == total


def test_estimate_of_a_few_real_adds_scales_the_sampled_shards(
    counter: ShardedCounter,
) -> None:
    tenant = ObjectId()
    for _ in range(64):
        counter.add(tenant, METRIC)
    estimate = counter.estimate(tenant, METRIC, sample=4)
    assert estimate % 4 == 0  # a sum over 4 of 16 shards, times 4
    assert 0 <= estimate <= 4 * 64


def test_reset_sets_the_counter_to_zero_for_that_metric_only(
    counter: ShardedCounter,
) -> None:
    tenant = ObjectId()
    counter.add(tenant, METRIC, 9)
    counter.add(tenant, "other", 2)
    counter.reset(tenant, METRIC)
    assert counter.count(tenant, METRIC) == 0
    assert counter.count(tenant, "other") == 2
    counter.add(tenant, METRIC)
    assert counter.count(tenant, METRIC) == 1


def test_rebalance_evens_the_shards_and_keeps_the_total(
    counter: ShardedCounter, store: Any
) -> None:
    tenant = ObjectId()
    for _ in range(100):
        counter.add(tenant, METRIC, key="one-hot-worker")
    counter.rebalance(tenant, METRIC)
    values = sorted(d["value"] for d in store.counters.find({"tenantId": tenant}))
    assert values == [6] * 12 + [7] * 4
    assert counter.count(tenant, METRIC) == 100


def test_rebalance_keeps_an_add_that_lands_between_its_read_and_write(
    counter: ShardedCounter, store: Any
) -> None:
    tenant = ObjectId()
    counter.add(tenant, METRIC, 40, key="k")
    current = run(store, counter._shards(tenant, METRIC))  # rebalance's read ...
    counter.add(tenant, METRIC, 5)  # ... a concurrent writer ...
    total = sum(current.values())
    run(store, counter._apply(tenant, METRIC, current, total))  # ... rebalance's $inc deltas
    assert counter.count(tenant, METRIC) == 45


def test_rebalance_to_fewer_shards_moves_the_counts(store: Any, clock: Any) -> None:
    tenant = ObjectId()
    wide = ShardedCounter(store, clock=clock, rng=random.Random(3))
    for _ in range(200):
        wide.add(tenant, METRIC)
    narrow = ShardedCounter(store, clock=clock, shards=4)
    narrow.rebalance(tenant, METRIC)
    live = {d["shard"]: d["value"] for d in store.counters.find({"tenantId": tenant}) if d["value"]}
    assert live == {0: 50, 1: 50, 2: 50, 3: 50}


def _seed_events(store: Any, tenant: Any, sent: int, failed: int) -> None:
    events = [{"tenantId": tenant, "eventType": "sent", "createdAt": NOW}] * sent
    events += [{"tenantId": tenant, "eventType": "failed", "createdAt": NOW}] * failed
    store.messageEvents.insert_many([dict(e) for e in events])


def test_reconcile_leaves_a_correct_counter_alone(counter: ShardedCounter, store: Any) -> None:
    tenant, other = ObjectId(), ObjectId()
    _seed_events(store, tenant, sent=7, failed=2)
    _seed_events(store, other, sent=3, failed=0)
    counter.add(tenant, METRIC, 7)
    result = counter.reconcile(tenant, METRIC, source="messageEvents", filter={"eventType": "sent"})
    assert result == ReconcileResult(before=7, actual=7, repaired=False)


def test_reconcile_repairs_a_damaged_counter(
    counter: ShardedCounter, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nsn_store.counters")
    tenant = ObjectId()
    _seed_events(store, tenant, sent=7, failed=2)
    for _ in range(7):
        counter.add(tenant, METRIC)
    store.counters.delete_one({"tenantId": tenant, "value": {"$gt": 0}})  # a lost shard
    damaged = counter.count(tenant, METRIC)
    result = counter.reconcile(tenant, METRIC, source="messageEvents", filter={"eventType": "sent"})
    assert result == ReconcileResult(before=damaged, actual=7, repaired=True)
    assert damaged < 7 and counter.count(tenant, METRIC) == 7
    assert result.to_dict() == {"before": damaged, "actual": 7, "repaired": True}
    assert "repairing" in caplog.text  # logged, never printed


def test_reconcile_filter_cannot_count_another_tenant(counter: ShardedCounter, store: Any) -> None:
    tenant, other = ObjectId(), ObjectId()
    _seed_events(store, other, sent=5, failed=0)
    result = counter.reconcile(tenant, METRIC, source="messageEvents", filter={"tenantId": other})
    assert result.actual == 0 and counter.count(tenant, METRIC) == 0


# ---------------------------------------------------------------- flows and round trips


def test_add_flow_takes_the_same_arguments_as_add() -> None:
    flow, add = inspect.signature(ShardedCounter.add_flow), inspect.signature(ShardedCounter.add)
    assert flow.parameters == add.parameters
    assert (flow.return_annotation, add.return_annotation) == ("Flow[bool]", "bool")
    assert inspect.signature(AsyncShardedCounter.add) == inspect.signature(ShardedCounter.add)


def test_add_flow_composed_in_another_flow_is_one_round_trip_of_that_flow(
    counter: ShardedCounter, store: Any
) -> None:
    tenant, trips = ObjectId(), TripCounter()

    def transition(key: str) -> Flow[bool]:
        # What a composing service does: its own write, then the counter's add.
        event = {"tenantId": tenant, "eventType": "sent", "createdAt": NOW}
        yield Op("insert_one", "messageEvents", (event,))
        return (yield from counter.add_flow(tenant, METRIC, 2, once=key))

    assert run(store, transition("msg-1:sent:1"), trips) is True
    assert trips.count == 2  # the event and one upsert
    assert run(store, transition("msg-1:sent:1"), trips) is False  # a retry: counted once
    assert trips.count == 2 + 3  # the event, the upsert and its one retry on the shard key
    assert counter.count(tenant, METRIC) == 2
    assert counter.trips is not None and counter.trips.count == 1  # only count() is its own


def test_add_flow_checks_its_arguments_before_its_first_call(counter: ShardedCounter) -> None:
    trips = TripCounter()
    with pytest.raises(InvalidIdError):
        attack: Any = {"$ne": None}  # an id parsed from an untrusted body
        run(None, counter.add_flow(attack, METRIC), trips)
    assert trips.count == 0


def test_each_operation_makes_its_documented_round_trips(
    counter: ShardedCounter, store: Any
) -> None:
    tenant = ObjectId()
    _seed_events(store, tenant, sent=3, failed=0)

    def trips_of(call: Any) -> int:
        assert counter.trips is not None
        before = counter.trips.count
        call()
        return counter.trips.count - before

    source = {"source": "messageEvents", "filter": {"eventType": "sent"}}
    assert trips_of(lambda: counter.add(tenant, METRIC, 3, key="hot")) == 1
    assert trips_of(lambda: counter.count(tenant, METRIC)) == 1
    assert trips_of(lambda: counter.estimate(tenant, METRIC)) == 1
    assert trips_of(lambda: counter.rebalance(tenant, METRIC)) == 2  # read, one bulk of deltas
    assert trips_of(lambda: counter.rebalance(tenant, METRIC)) == 1  # already even: no write
    assert trips_of(lambda: counter.reconcile(tenant, METRIC, **source)) == 2  # right: no write
    counter.add(tenant, METRIC, 4)
    assert trips_of(lambda: counter.reconcile(tenant, METRIC, **source)) == 3  # repaired
    assert trips_of(lambda: counter.reset(tenant, METRIC)) == 1


def test_a_repeated_reconcile_finds_the_counter_repaired(
    counter: ShardedCounter, store: Any
) -> None:
    # What a caller does when the repair's reply was lost: run it again.
    tenant = ObjectId()
    _seed_events(store, tenant, sent=4, failed=1)
    counter.add(tenant, METRIC, 9)
    source = {"source": "messageEvents", "filter": {"eventType": "sent"}}
    assert counter.reconcile(tenant, METRIC, **source).repaired is True
    assert counter.reconcile(tenant, METRIC, **source) == ReconcileResult(4, 4, repaired=False)
    assert counter.count(tenant, METRIC) == 4


# ---------------------------------------------------------------- behaviour (async)


async def test_async_adds_from_eight_tasks_sum_exactly(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    tenant, per_task = ObjectId(), 100
    counter = AsyncShardedCounter(async_db, clock=clock, rng=random.Random(5))

    async def work() -> None:
        for _ in range(per_task):
            await counter.add(tenant, METRIC)

    await asyncio.gather(*(work() for _ in range(8)))
    assert await counter.count(tenant, METRIC) == 8 * per_task


async def test_async_twin_behaves_like_the_sync_counter(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    tenant = ObjectId()
    counter = AsyncShardedCounter(async_db, clock=clock, rng=random.Random(5))
    for _ in range(30):
        await counter.add(tenant, METRIC, key="sticky")
    await counter.rebalance(tenant, METRIC)
    assert await counter.count(tenant, METRIC) == 30
    assert await counter.estimate(tenant, METRIC, sample=16) == 30
    await async_db.messageEvents.insert_one(
        {"tenantId": tenant, "eventType": "sent", "createdAt": NOW}
    )
    result = await counter.reconcile(
        tenant, METRIC, source="messageEvents", filter={"eventType": "sent"}
    )
    assert result == ReconcileResult(before=30, actual=1, repaired=True)
    assert await counter.count(tenant, METRIC) == 1
    await counter.reset(tenant, METRIC)
    assert await counter.count(tenant, METRIC) == 0


async def test_async_add_flow_composes_on_the_async_runner(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db, ("counters",))
    counter = AsyncShardedCounter(async_db, clock=clock, rng=random.Random(5))
    tenant, trips = ObjectId(), TripCounter()

    def bump() -> Flow[bool]:
        return (yield from counter.add_flow(tenant, METRIC, 3, once="k"))

    assert await run_async(async_db, bump(), trips) is True
    assert await run_async(async_db, bump(), trips) is False
    assert trips.count == 1 + 2
    assert await counter.count(tenant, METRIC) == 3
