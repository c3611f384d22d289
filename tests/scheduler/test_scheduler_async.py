"""AsyncScheduler: the same surface and behaviour as Scheduler, on async drivers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from _support import assert_async_twin, init_schema_async, public_surface
from bson import ObjectId

from nsn_store._flow import Flow, Op
from nsn_store.clock import ManualClock
from nsn_store.errors import (
    InvalidTransitionError,
    LeaseLostError,
    NotFoundError,
)
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import AsyncScheduler, Scheduler

MINUTE = timedelta(minutes=1)


async def prepare_async(db: Any) -> None:
    """Create the scheduler's collections with their validators and indexes."""
    await init_schema_async(db, (q.CONTACTS, q.MESSAGES, q.EVENTS))


async def add_contact_async(db: Any, tenant_id: ObjectId, now: datetime) -> ObjectId:
    """Insert a contact for ``tenant_id`` and return its id."""
    result = await db[q.CONTACTS].insert_one({"tenantId": tenant_id, "createdAt": now})
    return result.inserted_id


def test_sync_and_async_surfaces_match() -> None:
    assert_async_twin(Scheduler, AsyncScheduler)
    assert set(public_surface(Scheduler)) >= {
        "schedule",
        "claim_due",
        "mark_sent",
        "mark_failed",
        "extend_lease",
        "cancel",
        "record_provider_event",
        "backlog",
        "failed",
        "requeue",
        "show",
    }


@pytest.fixture
async def setup(async_db: Any, clock: ManualClock) -> tuple[AsyncScheduler, ObjectId, ObjectId]:
    await prepare_async(async_db)
    tenant = ObjectId()
    contact = await add_contact_async(async_db, tenant, clock.now())
    sched = AsyncScheduler(async_db, clock=clock, max_attempts=2, rng=random.Random(3))
    return sched, tenant, contact


async def test_async_lifecycle_schedule_claim_send_and_webhook(
    setup: tuple[AsyncScheduler, ObjectId, ObjectId], async_db: Any, clock: ManualClock
) -> None:
    sched, tenant, contact = setup
    first = await sched.schedule(tenant, contact, "email", clock.now(), idempotency_key="k")
    again = await sched.schedule(tenant, contact, "email", clock.now(), idempotency_key="k")
    assert again["_id"] == first["_id"]
    later = await sched.schedule(tenant, contact, "email", clock.now() + MINUTE)
    [claimed] = await sched.claim_due("w1")
    assert claimed["_id"] == first["_id"] and claimed["lockedBy"] == "w1"
    with pytest.raises(LeaseLostError):
        await sched.mark_sent(first["_id"], "w2")
    sent = await sched.mark_sent(first["_id"], "w1", provider_message_id="re_1")
    assert sent["status"] == "sent"
    assert await sched.record_provider_event(tenant, "resend", "re_1", "opened")
    assert not await sched.record_provider_event(tenant, "resend", "re_1", "opened")
    opened = await async_db[q.EVENTS].find_one({"eventType": "opened"})
    assert opened["scheduledMessageId"] == first["_id"]
    backlog = await sched.backlog(tenant, now=clock.now() + MINUTE)
    assert backlog.due_now == 1 and backlog.oldest_due_send_at == later["sendAt"]


async def test_async_failures_retry_then_fail_and_cancel_rules(
    setup: tuple[AsyncScheduler, ObjectId, ObjectId], clock: ManualClock
) -> None:
    sched, tenant, contact = setup
    message_id = (await sched.schedule(tenant, contact, "sms", clock.now()))["_id"]
    await sched.claim_due("w1")
    retried = await sched.mark_failed(message_id, "w1", "busy")
    assert retried["status"] == "scheduled"
    assert retried["sendAt"] == clock.now() + u.backoff(1, sched.base_backoff, random.Random(3))
    clock.set(retried["sendAt"])
    await sched.claim_due("w1")
    extended = await sched.extend_lease(message_id, "w1", timedelta(minutes=1))
    assert extended["lockedUntil"] == clock.now() + MINUTE
    failed = await sched.mark_failed(message_id, "w1", "busy again")
    assert failed["status"] == "failed"
    with pytest.raises(InvalidTransitionError):
        await sched.cancel(tenant, message_id)
    other = (await sched.schedule(tenant, contact, "sms", clock.now()))["_id"]
    with pytest.raises(NotFoundError):  # another tenant's: as if it did not exist (issue 9)
        await sched.cancel(ObjectId(), other)
    assert (await sched.cancel(tenant, other))["status"] == "cancelled"


class AsyncRecordingCounter:
    """A stand-in counter whose add flow makes one database call (it counts the events)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[str, int]] = []

    def add_flow(
        self, tenant_id: ObjectId, metric: str, n: int = 1, *, once: str | None = None
    ) -> Flow[bool]:
        events = yield Op("count_documents", q.EVENTS, ({"tenantId": tenant_id},))
        self.metrics.append((metric, events))
        return True


async def test_a_counters_add_flow_runs_awaited_inside_the_transition(
    setup: tuple[AsyncScheduler, ObjectId, ObjectId], async_db: Any, clock: ManualClock
) -> None:
    _, tenant, contact = setup
    counter = AsyncRecordingCounter()
    sched = AsyncScheduler(async_db, clock=clock, counter=counter)
    message_id = (await sched.schedule(tenant, contact, "sms", clock.now()))["_id"]
    await sched.claim_due("w1")
    before = sched.round_trips
    await sched.mark_sent(message_id, "w1")
    # Each add ran on the async database after its transition's event was written.
    assert counter.metrics == [("messages.scheduled", 1), ("messages.sent", 2)]
    assert sched.round_trips - before == 2  # the sent write and its event, not the counter
    assert sched.trips.count > sched.round_trips


async def test_async_scheduler_bumps_an_async_sharded_counter(
    setup: tuple[AsyncScheduler, ObjectId, ObjectId], async_db: Any, clock: ManualClock
) -> None:
    from nsn_store.counters import AsyncShardedCounter

    _, tenant, contact = setup
    counters = AsyncShardedCounter(async_db, shards=2, clock=clock)
    sched = AsyncScheduler(async_db, clock=clock, counter=counters)
    message_id = (await sched.schedule(tenant, contact, "sms", clock.now()))["_id"]
    await sched.claim_due("w1")
    await sched.mark_sent(message_id, "w1")
    assert await counters.count(tenant, "messages.sent") == 1
