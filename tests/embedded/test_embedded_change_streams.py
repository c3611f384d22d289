"""Change streams on the embedded database: PyMongo's ``ChangeStream`` shape, server events."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import Timestamp

from nsn_store.clock import ManualClock
from nsn_store.embedded._async import AsyncEmbeddedClient
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler._service import Scheduler
from nsn_store.testing import mongomock_client
from nsn_store.worker._senders import FakeSender
from nsn_store.worker._worker import Worker

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def client(clock: ManualClock) -> Any:
    return mongomock_client(clock=clock)


def drain(stream: Any) -> list[dict[str, Any]]:
    events = []
    while (event := stream.try_next()) is not None:
        events.append(event)
    return events


def test_each_write_is_one_event_in_the_servers_shape(client: Any, clock: ManualClock) -> None:
    items = client["t"]["items"]
    with items.watch(max_await_time_ms=0) as stream:
        items.insert_one({"_id": 1, "a": {"b": 1, "c": 2}, "d": 1})
        clock.advance(seconds=1)
        items.update_one({"_id": 1}, {"$set": {"a.b": 5, "e": [1]}, "$unset": {"d": ""}})
        items.replace_one({"_id": 1}, {"x": 1})
        items.delete_one({"_id": 1})
        inserted, updated, replaced, deleted = drain(stream)
    assert [e["operationType"] for e in (inserted, updated, replaced, deleted)] == [
        "insert",
        "update",
        "replace",
        "delete",
    ]
    for event in (inserted, updated, replaced, deleted):
        assert event["ns"] == {"db": "t", "coll": "items"}
        assert event["documentKey"] == {"_id": 1}
        assert set(event["_id"]) == {"_data"}
        assert isinstance(event["clusterTime"], Timestamp)
    assert inserted["fullDocument"] == {"_id": 1, "a": {"b": 1, "c": 2}, "d": 1}
    assert inserted["wallTime"] == START
    assert updated["wallTime"] == START + timedelta(seconds=1)
    assert updated["clusterTime"].time == int((START + timedelta(seconds=1)).timestamp())
    assert "fullDocument" not in updated
    assert updated["updateDescription"] == {
        "updatedFields": {"a.b": 5, "e": [1]},
        "removedFields": ["d"],
        "truncatedArrays": [],
    }
    assert replaced["fullDocument"] == {"_id": 1, "x": 1}
    assert "fullDocument" not in deleted
    tokens = [e["_id"]["_data"] for e in (inserted, updated, replaced, deleted)]
    assert tokens == sorted(tokens) and len(set(tokens)) == 4
    assert stream.resume_token == deleted["_id"]


def test_update_lookup_gives_updates_their_full_document(client: Any) -> None:
    items = client["t"]["items"]
    items.insert_one({"_id": 1, "n": 1})
    with items.watch(full_document="updateLookup", max_await_time_ms=0) as stream:
        items.update_one({"_id": 1}, {"$inc": {"n": 1}})
        (event,) = drain(stream)
    assert event["fullDocument"] == {"_id": 1, "n": 2}


def test_upserts_bulk_writes_find_and_modify_and_ttl_expiry_all_produce_events(
    client: Any, clock: ManualClock
) -> None:
    from pymongo import InsertOne, UpdateOne

    items = client["t"]["items"]
    items.create_index("at", expireAfterSeconds=60)
    with items.watch(max_await_time_ms=0) as stream:
        items.update_one({"_id": 1}, {"$set": {"at": clock.now()}}, upsert=True)
        items.bulk_write([InsertOne({"_id": 2}), UpdateOne({"_id": 2}, {"$set": {"x": 1}})])
        items.find_one_and_update({"_id": 2}, {"$set": {"x": 2}})
        items.find_one_and_delete({"_id": 2})
        clock.advance(seconds=61)
        assert client.run_ttl_monitor() == 1
        kinds = [(e["operationType"], e["documentKey"]["_id"]) for e in drain(stream)]
    assert kinds == [
        ("insert", 1),
        ("insert", 2),
        ("update", 2),
        ("update", 2),
        ("delete", 2),
        ("delete", 1),
    ]


def test_a_write_that_changes_nothing_and_a_rejected_write_produce_no_event(client: Any) -> None:
    items = client["t"]["items"]
    items.create_index("u", unique=True)
    items.insert_many([{"_id": 1, "u": 1}, {"_id": 2, "u": 2}])
    with items.watch(max_await_time_ms=0) as stream:
        items.update_one({"_id": 1}, {"$set": {"u": 1}})
        with pytest.raises(Exception, match="duplicate key"):
            items.update_one({"_id": 1}, {"$set": {"u": 2}})
        assert drain(stream) == []


def test_match_stages_filter_events_and_other_stages_are_refused_by_name(client: Any) -> None:
    items = client["t"]["items"]
    pipeline = [
        {"$match": {"operationType": {"$in": ["insert", "replace"]}}},
        {"$match": {"fullDocument.keep": True}},
    ]
    with items.watch(pipeline, max_await_time_ms=0) as stream:
        items.insert_one({"_id": 1, "keep": True})
        items.insert_one({"_id": 2, "keep": False})
        items.update_one({"_id": 1}, {"$set": {"n": 1}})
        items.replace_one({"_id": 2}, {"keep": True})
        assert [e["documentKey"]["_id"] for e in drain(stream)] == [1, 2]
    with pytest.raises(NotImplementedError, match=r"\$project"):
        items.watch([{"$project": {"fullDocument": 0}}])
    with pytest.raises(NotImplementedError, match="resume"):
        items.watch(resume_after={"_data": "00"})
    with pytest.raises(NotImplementedError, match="whenAvailable"):
        items.watch(full_document="whenAvailable")
    with pytest.raises(TypeError, match="pipeline"):
        items.watch({"$match": {}})
    with pytest.raises(TypeError, match="max_await_time_ms"):
        items.watch(max_await_time_ms="1")
    assert client["t"]._store["items"].watchers.__len__() == 0  # refused streams never opened


def test_a_match_on_dates_compares_in_utc(client: Any, clock: ManualClock) -> None:
    items = client["t"]["items"]
    with items.watch([{"$match": {"wallTime": {"$gte": START}}}], max_await_time_ms=0) as stream:
        items.insert_one({"_id": 1})
        assert len(drain(stream)) == 1


def test_try_next_waits_up_to_max_await_then_returns_none(client: Any) -> None:
    with client["t"]["items"].watch(max_await_time_ms=150) as stream:
        started = time.monotonic()
        assert stream.try_next() is None
        waited = time.monotonic() - started
        assert stream.alive and stream.resume_token is not None
    assert 0.12 <= waited < 1.0
    assert not stream.alive
    assert stream.try_next() is None  # closed: None at once, as PyMongo's
    with pytest.raises(StopIteration):
        next(stream)


def test_next_blocks_until_another_thread_writes_and_close_releases_it(client: Any) -> None:
    items = client["t"]["items"]
    stream = items.watch(max_await_time_ms=5000)
    writer = threading.Timer(0.05, lambda: items.insert_one({"_id": 1}))
    writer.start()
    started = time.monotonic()
    event = next(stream)
    assert event["documentKey"] == {"_id": 1}
    assert time.monotonic() - started < 2
    threading.Timer(0.05, stream.close).start()
    started = time.monotonic()
    assert list(stream) == []  # iteration ends once another thread closes the stream
    assert time.monotonic() - started < 2


def test_database_streams_see_every_collection(client: Any) -> None:
    db = client["t"]
    with db.watch(max_await_time_ms=0) as stream:
        db.a.insert_one({"_id": 1})
        db.b.insert_one({"_id": 2})
        client["other"].c.insert_one({"_id": 3})
        assert [e["ns"] for e in drain(stream)] == [
            {"db": "t", "coll": "a"},
            {"db": "t", "coll": "b"},
        ]


def test_events_are_copies_the_reader_may_change(client: Any) -> None:
    items = client["t"]["items"]
    with items.watch(max_await_time_ms=0) as stream:
        items.insert_one({"_id": 1, "tags": ["a"]})
        drain(stream)[0]["fullDocument"]["tags"].append("b")
    assert items.find_one({"_id": 1}) == {"_id": 1, "tags": ["a"]}


def test_streams_closed_or_dropped_stop_costing_anything(client: Any) -> None:
    items = client["t"]["items"]
    watchers = client["t"]._store["items"].watchers
    stream = items.watch()
    assert len(watchers) == 1
    stream.close()
    assert len(watchers) == 0
    forgotten = items.watch()
    del forgotten
    gc.collect()
    assert len(watchers) == 0


def test_two_streams_each_get_every_event(client: Any) -> None:
    items = client["t"]["items"]
    with items.watch(max_await_time_ms=0) as one, items.watch(max_await_time_ms=0) as two:
        items.insert_one({"_id": 1})
        first, second = drain(one), drain(two)
    assert first == second and len(first) == 1


# -- async --------------------------------------------------------------------------


async def test_async_streams_support_async_with_async_for_and_try_next(client: Any) -> None:
    items = AsyncEmbeddedClient(client)["t"]["items"]
    async with await items.watch(max_await_time_ms=50) as stream:
        assert await stream.try_next() is None
        await items.insert_one({"_id": 1})
        assert (await stream.try_next())["operationType"] == "insert"
        await items.insert_one({"_id": 2})
        async for event in stream:
            assert event["documentKey"] == {"_id": 2}
            break
        assert stream.resume_token == event["_id"]
    assert not stream.alive


async def test_an_async_stream_wakes_on_a_write_from_another_thread(client: Any) -> None:
    stream = await AsyncEmbeddedClient(client)["t"].watch(max_await_time_ms=5000)
    sync_items = client["t"]["items"]
    threading.Timer(0.05, lambda: sync_items.insert_one({"_id": 1})).start()
    started = time.monotonic()
    event = await stream.next()
    assert event["ns"] == {"db": "t", "coll": "items"}
    assert time.monotonic() - started < 2
    ticker = asyncio.get_running_loop().time()
    await asyncio.sleep(0)  # the loop was never blocked: it still runs other tasks
    assert asyncio.get_running_loop().time() - ticker < 1
    await stream.close()


# -- the worker -----------------------------------------------------------------------


def test_an_idle_worker_wakes_on_a_new_message_well_within_a_second() -> None:
    client = mongomock_client()  # the wall clock: the wake-up is measured in real time
    db = client["nsn"]
    init_schema(db)
    scheduler = Scheduler(db)
    tenant = db.tenants.insert_one(
        {
            "name": "org",
            "clerkOrgId": "org",
            "createdAt": datetime.now(timezone.utc),
            "providerConfigs": [
                {
                    "channel": "sms",
                    "provider": "twilio",
                    "fromAddress": "+15550000",
                    "credentialsRef": "env:TWILIO_TOKEN",
                }
            ],
        }
    ).inserted_id
    contact = db.contacts.insert_one(
        {
            "tenantId": tenant,
            "firstName": "Ada",
            "phone": "+15550100",
            "createdAt": datetime.now(timezone.utc),
        }
    ).inserted_id
    sender = FakeSender()
    worker = Worker(db, sender, poll=30, lease=30, scheduler=scheduler)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while not client["nsn"]._store["scheduledMessages"].watchers:
            assert time.monotonic() < deadline, "the worker never opened its change stream"
            time.sleep(0.01)
        time.sleep(0.2)  # the worker has planned its 30 s sleep
        started = time.monotonic()
        scheduler.schedule(
            tenant, contact, "sms", datetime.now(timezone.utc), payload={"body": "Hi {{firstName}}"}
        )
        while sender.calls == 0:
            assert time.monotonic() - started < 5, "the worker slept through the new message"
            time.sleep(0.005)
        lag = time.monotonic() - started
    finally:
        worker.stop(timeout=5)
        runner.join(timeout=5)
    assert lag < 1.0


async def test_an_idle_async_worker_wakes_on_a_new_message_well_within_a_second() -> None:
    import asyncio

    from nsn_store.scheduler._service import AsyncScheduler
    from nsn_store.testing import async_client
    from nsn_store.worker._async import AsyncWorker
    from nsn_store.worker._senders import AsyncFakeSender

    client = mongomock_client()  # the wall clock: the wake-up is measured in real time
    init_schema(client["nsn"])
    adb = async_client(client)["nsn"]
    tenant = (
        client["nsn"]
        .tenants.insert_one(
            {"name": "org", "clerkOrgId": "org", "createdAt": datetime.now(timezone.utc)}
        )
        .inserted_id
    )
    contact = (
        client["nsn"]
        .contacts.insert_one(
            {"tenantId": tenant, "phone": "+15550100", "createdAt": datetime.now(timezone.utc)}
        )
        .inserted_id
    )
    scheduler = AsyncScheduler(adb)
    sender = AsyncFakeSender()
    worker = AsyncWorker(adb, sender, poll=30, lease=30, scheduler=scheduler)
    running = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 5
        while not client["nsn"]._store["scheduledMessages"].watchers:
            assert time.monotonic() < deadline, "the worker never opened its change stream"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the worker has planned its 30 s sleep
        started = time.monotonic()
        await scheduler.schedule(
            tenant, contact, "sms", datetime.now(timezone.utc), payload={"body": "Hi"}
        )
        while sender.calls == 0:
            assert time.monotonic() - started < 5, "the worker slept through the new message"
            await asyncio.sleep(0.005)
        lag = time.monotonic() - started
    finally:
        worker.stop(timeout=5)
        await asyncio.wait_for(running, timeout=10)
    assert lag < 1.0
