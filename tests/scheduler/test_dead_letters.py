"""Dead letters: list what failed for good, requeue it in one write, show a message's timeline."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from _support import init_schema_async
from bson import ObjectId
from test_scheduler import add_contact, prepare

from nsn_store.clock import ManualClock
from nsn_store.counters import ShardedCounter
from nsn_store.errors import InvalidArgumentError, NotFoundError
from nsn_store.scheduler import DeadLetter, MessageHistory
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import AsyncScheduler, Scheduler

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@pytest.fixture
def store(db: Any) -> Any:
    prepare(db)
    return db


@pytest.fixture
def sched(store: Any, clock: ManualClock) -> Scheduler:
    return Scheduler(store, clock=clock, max_attempts=2, rng=random.Random(5))


def seed_failed(
    db: Any, tenant: ObjectId, count: int, failed_at: datetime, *, error: str = "provider said no"
) -> list[ObjectId]:
    """Insert ``count`` messages of ``tenant`` that failed for good at ``failed_at``."""
    contact = ObjectId()
    docs = [
        {
            **u.new_message(tenant, contact, "sms", failed_at - HOUR, failed_at - HOUR),
            "status": u.FAILED,
            "attempts": 5,
            "lastError": error,
            "updatedAt": failed_at,
        }
        for _ in range(count)
    ]
    return list(db[q.MESSAGES].insert_many(docs).inserted_ids)


def fail_for_good(sched: Scheduler, tenant: ObjectId, contact: ObjectId, error: str) -> ObjectId:
    """Schedule a message due now, claim it and fail it without retry; return its id."""
    mid = sched.schedule(tenant, contact, "sms", sched.clock.now())["_id"]
    [held] = sched.claim_due("w1")
    sched.mark_failed(held, "w1", error, retry=False)
    return mid


def snapshot(db: Any) -> list[dict[str, Any]]:
    return list(db[q.MESSAGES].find({}, sort=[("_id", 1)]))


# ---------------------------------------------------------------- failed


def test_failed_lists_what_failed_for_good_with_its_last_error_oldest_first(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    tenant, other = ObjectId(), ObjectId()
    contact = add_contact(store, tenant, clock.now())
    first = fail_for_good(sched, tenant, contact, "number unreachable")
    clock.advance(MINUTE)
    second = fail_for_good(sched, tenant, contact, "carrier rejected")
    sched.schedule(tenant, contact, "sms", clock.now())
    [held] = sched.claim_due("w1")
    sched.mark_failed(held, "w1", "busy")  # retried, not failed for good
    [theirs] = seed_failed(store, other, 1, clock.now())

    letters = sched.failed()
    assert [d.message_id for d in letters] == [first, second, theirs]
    assert letters[0] == DeadLetter(
        message_id=first,
        tenant_id=tenant,
        contact_id=contact,
        channel="sms",
        attempts=1,
        last_error="number unreachable",
        failed_at=clock.now() - MINUTE,
        send_at=clock.now() - MINUTE,
    )
    assert [d.message_id for d in sched.failed(tenant)] == [first, second]
    assert [d.message_id for d in sched.failed(tenant, since=clock.now())] == [second]
    assert [d.message_id for d in sched.failed(until=clock.now())] == [first]
    assert [d.message_id for d in sched.failed(limit=1)] == [first]
    assert letters[1].to_dict() == {
        "message_id": str(second),
        "tenant_id": str(tenant),
        "contact_id": str(contact),
        "channel": "sms",
        "attempts": 1,
        "last_error": "carrier rejected",
        "failed_at": clock.now().isoformat(),
        "send_at": clock.now().isoformat(),
    }


def test_failed_costs_one_round_trip(sched: Scheduler, store: Any, clock: ManualClock) -> None:
    seed_failed(store, ObjectId(), 50, clock.now())
    sched.backlog()  # the first call measures the server's clock (not a round trip)
    before = sched.round_trips
    assert len(sched.failed(limit=20)) == 20
    assert sched.round_trips - before == 1


# ---------------------------------------------------------------- requeue


def test_requeueing_10000_failed_messages_is_one_write_and_a_repeat_changes_nothing(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    tenant, other = ObjectId(), ObjectId()
    seed_failed(store, tenant, 10_000, clock.now() - HOUR)
    [theirs] = seed_failed(store, other, 1, clock.now() - HOUR)
    sched.backlog()  # the server's clock is measured once, before counting
    before = sched.round_trips
    assert sched.requeue(tenant_id=tenant) == 10_000
    assert sched.round_trips - before == 1  # one update_many, however many match
    requeued = store[q.MESSAGES].find({"tenantId": tenant})
    assert all(
        (m["status"], m["attempts"], m["sendAt"]) == ("scheduled", 0, clock.now()) for m in requeued
    )
    assert store[q.MESSAGES].find_one({"_id": theirs})["status"] == "failed"

    after_first = snapshot(store)
    clock.advance(MINUTE)
    before = sched.round_trips
    assert sched.requeue(tenant_id=tenant) == 0
    assert sched.round_trips - before == 1
    assert snapshot(store) == after_first  # running it twice changes nothing


def test_requeue_round_trips_do_not_grow_with_the_match(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    trips = []
    for count in (1, 300):
        tenant = ObjectId()
        seed_failed(store, tenant, count, clock.now())
        sched.backlog()
        before = sched.round_trips
        assert sched.requeue(tenant_id=tenant) == count
        trips.append(sched.round_trips - before)
    assert trips == [1, 1]


def test_requeue_by_ids_takes_only_those_and_only_failed_ones(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    tenant, other = ObjectId(), ObjectId()
    contact = add_contact(store, tenant, clock.now())
    ids = seed_failed(store, tenant, 3, clock.now())
    [theirs] = seed_failed(store, other, 1, clock.now())
    live = sched.schedule(tenant, contact, "sms", clock.now() + HOUR)["_id"]
    assert sched.requeue([ids[0], str(ids[1]), live]) == 2  # hex strings are ids too
    statuses = {m["_id"]: m["status"] for m in store[q.MESSAGES].find()}
    assert [statuses[i] for i in ids] == ["scheduled", "scheduled", "failed"]
    assert statuses[live] == "scheduled"
    # With a tenant, another tenant's message is not touched, named or not.
    assert sched.requeue([theirs, ids[2]], tenant_id=tenant) == 1
    assert statuses[theirs] == store[q.MESSAGES].find_one({"_id": theirs})["status"] == "failed"


def test_requeue_by_time_window_across_tenants(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    start = clock.now()
    early = seed_failed(store, ObjectId(), 2, start - HOUR)
    outage = seed_failed(store, ObjectId(), 2, start) + seed_failed(store, ObjectId(), 1, start)
    late = seed_failed(store, ObjectId(), 2, start + HOUR)
    assert sched.requeue(since=start, until=start + HOUR) == 3
    failed = {m["_id"] for m in store[q.MESSAGES].find({"status": "failed"})}
    assert failed == set(early + late) and not failed & set(outage)
    assert sched.requeue(since=start + HOUR) == 2
    assert sched.requeue(until=start) == 2


def test_a_requeued_message_gets_its_attempts_again_and_new_follow_ups(
    store: Any, clock: ManualClock
) -> None:
    counter = ShardedCounter(store, shards=2, clock=clock)
    sched = Scheduler(store, clock=clock, counter=counter, max_attempts=1)
    tenant = ObjectId()
    contact = add_contact(store, tenant, clock.now())
    mid = fail_for_good(sched, tenant, contact, "first outage")
    assert sched.requeue([mid]) == 1
    [again] = sched.claim_due("w1")
    assert (again["_id"], again["attempts"]) == (mid, 1)
    sched.mark_failed(again, "w1", "second outage")  # max_attempts=1: failed for good again
    failures = store[q.EVENTS].find({"scheduledMessageId": mid, "eventType": "failed"})
    # Attempt 1 after the requeue is another attempt than the first attempt 1.
    assert sorted(e["raw"]["error"] for e in failures) == ["first outage", "second outage"]
    assert counter.count(tenant, "messages.failed") == 2


def test_a_give_up_with_pending_follow_ups_is_requeued_only_once_they_are_written(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    tenant = ObjectId()
    contact = add_contact(store, tenant, clock.now())
    mid = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    # The message's give-up wrote its status and stopped before its follow-ups.
    store[q.MESSAGES].update_one(
        {"_id": mid},
        {
            "$set": {
                "status": "failed",
                "attempts": 2,
                "lockedUntil": clock.now(),
                "claimToken": "t" * 32,
                "updatedAt": clock.now(),
            }
        },
    )
    assert sched.requeue(tenant_id=tenant) == 0
    assert sched.claim_due("w1") == []  # the claim's scan writes the follow-ups
    assert store[q.EVENTS].count_documents({"scheduledMessageId": mid, "eventType": "failed"}) == 1
    assert sched.requeue(tenant_id=tenant) == 1


class NoIO:
    """A database that fails the test on any use."""

    def __getitem__(self, name: str) -> Any:
        raise AssertionError(f"database used: {name}")

    def command(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("database command sent")


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({}, "message_ids"),
        ({"message_ids": "65f0c0ffee0000000000beef"}, "message_ids"),
        ({"message_ids": []}, "message_ids"),
        ({"message_ids": [{"$ne": None}]}, "message_ids"),
        ({"tenant_id": {"$ne": None}}, "tenant_id"),
        ({"since": "yesterday"}, "since"),
        ({"since": datetime(2026, 1, 2), "until": datetime(2026, 1, 1)}, "until"),
    ],
    ids=["nothing", "a-string", "no-ids", "an-operator", "tenant-operator", "since-text", "until"],
)
def test_a_bad_requeue_is_refused_by_name_before_any_io(
    arguments: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        Scheduler(NoIO(), server_time=False).requeue(**arguments)
    assert refused.value.argument == argument


def test_bad_listing_and_show_arguments_are_refused_before_any_io() -> None:
    sched = Scheduler(NoIO(), server_time=False)
    for call, argument in [
        (lambda: sched.failed(limit=0), "limit"),
        (lambda: sched.failed({"$gt": ""}), "tenant_id"),
        (lambda: sched.failed(since=3), "since"),
        (lambda: sched.show("nope"), "message_id"),
        (lambda: sched.show(ObjectId(), tenant_id=""), "tenant_id"),
    ]:
        with pytest.raises(InvalidArgumentError) as refused:
            call()
        assert refused.value.argument == argument


# ---------------------------------------------------------------- show


def test_show_returns_the_message_and_its_timeline_oldest_first(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    tenant = ObjectId()
    contact = add_contact(store, tenant, clock.now())
    mid = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    [held] = sched.claim_due("w1")
    clock.advance(MINUTE)
    sched.mark_failed(held, "w1", "busy")  # retried in 30 s to 1 min
    clock.advance(MINUTE)
    [held] = sched.claim_due("w1")
    clock.advance(MINUTE)
    sched.mark_sent(held, "w1", provider_message_id="SM1")
    clock.advance(MINUTE)
    sched.record_provider_event(tenant, "twilio", "SM1", "delivered")

    history = sched.show(mid)
    assert isinstance(history, MessageHistory)
    assert history.message["_id"] == mid and history.message["status"] == "sent"
    assert [e["eventType"] for e in history.events] == ["queued", "failed", "sent", "delivered"]
    assert history.events[1]["raw"]["error"] == "busy"
    assert sched.show(str(mid), tenant_id=tenant) == history
    plain = history.to_dict()
    assert plain["message"]["_id"] == str(mid) and plain["message"]["tenantId"] == str(tenant)
    assert plain["events"][2]["createdAt"] == (clock.now() - MINUTE).isoformat()


def test_show_of_another_tenants_message_is_refused_like_a_missing_one(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    [mid] = seed_failed(store, ObjectId(), 1, clock.now())
    missing = ObjectId()
    with pytest.raises(NotFoundError) as foreign:
        sched.show(mid, tenant_id=ObjectId())
    with pytest.raises(NotFoundError) as unknown:
        sched.show(missing)
    assert str(foreign.value) == str(unknown.value).replace(str(missing), str(mid))
    assert sched.show(mid).events == []


# ---------------------------------------------------------------- async twins


async def test_the_async_scheduler_lists_requeues_and_shows(
    async_db: Any, clock: ManualClock
) -> None:
    await init_schema_async(async_db, (q.CONTACTS, q.MESSAGES, q.EVENTS))
    sched = AsyncScheduler(async_db, clock=clock)
    tenant = ObjectId()
    docs = [
        {
            **u.new_message(tenant, ObjectId(), "email", clock.now(), clock.now()),
            "status": "failed",
            "attempts": 5,
            "lastError": "mailbox full",
            "updatedAt": clock.now(),
        }
        for _ in range(3)
    ]
    ids = (await async_db[q.MESSAGES].insert_many(docs)).inserted_ids
    letters = await sched.failed(tenant)
    assert [d.message_id for d in letters] == ids
    assert {d.last_error for d in letters} == {"mailbox full"}
    assert await sched.requeue([ids[0]]) == 1
    assert await sched.requeue(tenant_id=tenant) == 2
    assert await sched.requeue(tenant_id=tenant) == 0
    history = await sched.show(ids[0], tenant_id=tenant)
    assert (history.message["status"], history.message["attempts"]) == ("scheduled", 0)
    with pytest.raises(NotFoundError):
        await sched.show(ids[0], tenant_id=ObjectId())
