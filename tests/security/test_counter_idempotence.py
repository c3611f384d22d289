"""Keyed counter adds apply exactly once per key (issue 9, mechanism 3's counters).

A transition bumps its counter with ``add(tenant, metric, 1, once=key)``; when
the reply of that add is lost the caller cannot tell whether it applied, so it
repeats the call. These tests lose replies on purpose (the update applies,
then the call raises as a dropped connection would), race keyed adds from
threads and tasks, and check the documented bound: a key is remembered while
it is among its shard's last ``APPLIED_WINDOW`` keyed adds. Each fails on the
code before keyed adds existed (``add`` took no ``once``).
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
from _support import init_schema_async
from bson import ObjectId
from pymongo.errors import AutoReconnect

from nsn_store.counters import AsyncShardedCounter, ShardedCounter, shard_for_key
from nsn_store.errors import ConnectionFailedError, InvalidArgumentError
from nsn_store.migration._runner import init_schema
from nsn_store.schema._models import APPLIED_WINDOW, Counter

METRIC = "messages.sent"


class _LostReply:
    """Wrap a collection: the next ``lose`` update_one calls apply, then raise."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.lose = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def update_one(self, *args: Any, **kwargs: Any) -> Any:
        result = self._collection.update_one(*args, **kwargs)
        return self._after(result)

    def _after(self, result: Any) -> Any:
        if self.lose:
            self.lose -= 1
            raise AutoReconnect("connection lost after the write applied")
        return result


class _AsyncLostReply(_LostReply):
    async def update_one(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._after(await self._collection.update_one(*args, **kwargs))


class _Database:
    """A database whose ``counters`` collection is ``wrapped``."""

    def __init__(self, db: Any, wrapped: Any) -> None:
        self._db, self._wrapped = db, wrapped

    def __getitem__(self, name: str) -> Any:
        return self._wrapped if name == "counters" else self._db[name]


@pytest.fixture
def store(db: Any) -> Any:
    init_schema(db)
    return db


def _shards(store: Any, tenant: ObjectId) -> list[dict[str, Any]]:
    return list(store.counters.find({"tenantId": tenant}))


# ---------------------------------------------------------------- sync


def test_an_add_retried_after_a_lost_reply_counts_once(store: Any, clock: Any) -> None:
    lossy = _LostReply(store.counters)
    counter = ShardedCounter(_Database(store, lossy), clock=clock)
    tenant = ObjectId()
    lossy.lose = 1
    with pytest.raises(ConnectionFailedError):
        counter.add(tenant, METRIC, 1, once="msg-1:sent:1")
    assert counter.add(tenant, METRIC, 1, once="msg-1:sent:1") is False  # the retry
    assert counter.add(tenant, METRIC, 1, once="msg-1:sent:1") is False  # and again
    assert counter.count(tenant, METRIC) == 1
    assert counter.add(tenant, METRIC, 1, once="msg-2:sent:1") is True
    assert counter.count(tenant, METRIC) == 2


def test_a_lost_reply_on_the_first_add_of_a_new_shard_counts_once(store: Any, clock: Any) -> None:
    # The first keyed add inserts the shard (an upsert); its retry must not insert again.
    lossy = _LostReply(store.counters)
    counter = ShardedCounter(_Database(store, lossy), clock=clock, shards=1)
    tenant = ObjectId()
    lossy.lose = 1
    with pytest.raises(ConnectionFailedError):
        counter.add(tenant, METRIC, 5, once="k")
    assert counter.add(tenant, METRIC, 5, once="k") is False
    (shard,) = _shards(store, tenant)
    assert (shard["value"], shard["applied"]) == (5, ["k"])


def test_a_keyed_add_lands_on_its_keys_shard_and_the_shard_stays_valid(
    store: Any, clock: Any
) -> None:
    counter = ShardedCounter(store, clock=clock, rng=random.Random(3))
    tenant = ObjectId()
    assert counter.add(tenant, METRIC, 2, once="msg-9:failed:2") is True
    (shard,) = _shards(store, tenant)
    assert shard["shard"] == shard_for_key("msg-9:failed:2", counter.shard_count(METRIC))
    assert shard["applied"] == ["msg-9:failed:2"]
    del shard["_id"]
    Counter.model_validate(shard)  # the document the model (and its validator) allows


def test_unkeyed_adds_still_return_true_every_time(store: Any, clock: Any) -> None:
    counter = ShardedCounter(store, clock=clock)
    tenant = ObjectId()
    assert [counter.add(tenant, METRIC) for _ in range(3)] == [True] * 3
    assert counter.count(tenant, METRIC) == 3


def test_concurrent_keyed_adds_from_threads_apply_each_key_once(store: Any, clock: Any) -> None:
    # Eight threads all add the same 40 keys (every key raced by eight callers).
    counter = ShardedCounter(store, clock=clock, shards=4)
    tenant, keys = ObjectId(), [f"msg-{i}:sent:1" for i in range(40)]
    start = threading.Barrier(8)
    applied: list[bool] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        order = keys[:]
        random.Random(seed).shuffle(order)
        start.wait()
        for key in order:
            result = counter.add(tenant, METRIC, 1, once=key)
            with lock:
                applied.append(result)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.count(tenant, METRIC) == len(keys)
    assert applied.count(True) == len(keys) and len(applied) == 8 * len(keys)


def test_a_key_is_remembered_for_its_shards_last_window_of_keyed_adds(
    store: Any, clock: Any
) -> None:
    # One shard, so every key shares it: the documented bound, exactly.
    counter = ShardedCounter(store, clock=clock, shards=1)
    tenant = ObjectId()
    counter.add(tenant, METRIC, once="first")
    for i in range(APPLIED_WINDOW - 1):
        counter.add(tenant, METRIC, once=f"later-{i}")
    assert counter.add(tenant, METRIC, once="first") is False  # still in the window
    counter.add(tenant, METRIC, once="one-more")
    (shard,) = _shards(store, tenant)
    assert len(shard["applied"]) == APPLIED_WINDOW and "first" not in shard["applied"]
    assert counter.add(tenant, METRIC, once="first") is True  # forgotten: counts again
    assert counter.count(tenant, METRIC) == APPLIED_WINDOW + 2


def test_rebalance_and_reconcile_keep_the_keys_so_a_later_retry_counts_once(
    store: Any, clock: Any
) -> None:
    counter = ShardedCounter(store, clock=clock, shards=4)
    tenant = ObjectId()
    for i in range(12):
        counter.add(tenant, METRIC, once=f"msg-{i}:sent:1")
    counter.add(tenant, METRIC, 30, key="hot")  # make the shards uneven
    counter.rebalance(tenant, METRIC)
    assert counter.count(tenant, METRIC) == 42
    assert [counter.add(tenant, METRIC, once=f"msg-{i}:sent:1") for i in range(12)] == [False] * 12
    store.messageEvents.insert_many(
        [{"tenantId": tenant, "eventType": "sent", "createdAt": clock.now()} for _ in range(5)]
    )
    counter.reconcile(tenant, METRIC, source="messageEvents", filter={"eventType": "sent"})
    assert counter.count(tenant, METRIC) == 5
    assert counter.add(tenant, METRIC, once="msg-3:sent:1") is False
    assert counter.count(tenant, METRIC) == 5
    kept = sorted(k for s in _shards(store, tenant) for k in s.get("applied", []))
    assert kept == sorted(f"msg-{i}:sent:1" for i in range(12))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"once": ""}, "once"),
        ({"once": "x" * 201}, "once"),
        ({"once": 7}, "once"),
        ({"once": "\ud800"}, "once"),
        ({"once": "k", "key": "k"}, "key"),
    ],
    ids=["empty", "too-long", "not-a-string", "lone-surrogate", "with-key"],
)
def test_a_bad_key_is_refused_by_name_before_any_write(
    store: Any, clock: Any, kwargs: dict[str, Any], argument: str
) -> None:
    counter = ShardedCounter(store, clock=clock)
    with pytest.raises(InvalidArgumentError) as caught:
        counter.add(ObjectId(), METRIC, 1, **kwargs)
    assert caught.value.argument == argument
    assert store.counters.count_documents({}) == 0


# ---------------------------------------------------------------- async


async def test_async_add_retried_after_a_lost_reply_counts_once(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db, ("counters",))
    lossy = _AsyncLostReply(async_db.counters)
    counter = AsyncShardedCounter(_Database(async_db, lossy), clock=clock)
    tenant = ObjectId()
    lossy.lose = 1
    with pytest.raises(ConnectionFailedError):
        await counter.add(tenant, METRIC, 1, once="msg-1:sent:1")
    assert await counter.add(tenant, METRIC, 1, once="msg-1:sent:1") is False
    assert await counter.count(tenant, METRIC) == 1
    assert await counter.add(tenant, METRIC, 1, once="msg-2:sent:1") is True
    assert await counter.count(tenant, METRIC) == 2


async def test_async_concurrent_keyed_adds_apply_each_key_once(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db, ("counters",))
    counter = AsyncShardedCounter(async_db, clock=clock, shards=4)
    tenant, keys = ObjectId(), [f"msg-{i}:sent:1" for i in range(30)]

    async def work(seed: int) -> list[bool]:
        order = keys[:]
        random.Random(seed).shuffle(order)
        return [await counter.add(tenant, METRIC, 1, once=key) for key in order]

    results = await asyncio.gather(*(work(i) for i in range(6)))
    assert await counter.count(tenant, METRIC) == len(keys)
    assert sum(r.count(True) for r in results) == len(keys)


async def test_async_window_bound_and_rebalance_keep_the_keys(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db, ("counters",))
    counter = AsyncShardedCounter(async_db, clock=clock, shards=1)
    tenant = ObjectId()
    await counter.add(tenant, METRIC, once="first")
    await counter.rebalance(tenant, METRIC)
    assert await counter.add(tenant, METRIC, once="first") is False
    for i in range(APPLIED_WINDOW):
        await counter.add(tenant, METRIC, once=f"later-{i}")
    assert await counter.add(tenant, METRIC, once="first") is True
    assert await counter.count(tenant, METRIC) == APPLIED_WINDOW + 2
