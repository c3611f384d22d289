"""Concurrent workers: every due message is sent exactly once, none is left behind."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from test_scheduler import prepare, seed_due, sent_events_per_message
from test_scheduler_async import prepare_async

from nsn_store.clock import ManualClock
from nsn_store.errors import LeaseLostError
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import AsyncScheduler, Scheduler

WORKERS = 8
LEASE = timedelta(minutes=5)


def drain(sched: Scheduler, worker_id: str, limit: int = 25, *, leases_expire: bool = False) -> int:
    """Claim and send until nothing is due; return how many this worker sent.

    A lost lease is an error unless ``leases_expire`` says the test makes time run
    out under the workers (then another worker has taken the message over)."""
    sent = 0
    while True:
        batch = sched.claim_due(worker_id, limit=limit, lease=LEASE)
        if not batch and _idle(sched):
            return sent
        for message in batch:
            try:
                sched.mark_sent(message["_id"], worker_id)
                sent += 1
            except LeaseLostError:
                if not leases_expire:
                    raise


def _idle(sched: Scheduler) -> bool:
    backlog = sched.backlog()
    return backlog.due_now == 0 and backlog.processing_expired == 0


def run_workers(
    sched: Scheduler, count: int, prefix: str = "w", limit: int = 25, *, leases_expire: bool = False
) -> list[int]:
    """Run ``count`` draining threads; re-raise the first exception any of them hit."""
    with ThreadPoolExecutor(count) as pool:
        futures = [
            pool.submit(drain, sched, f"{prefix}{i}", limit, leases_expire=leases_expire)
            for i in range(count)
        ]
        return [future.result() for future in futures]


def assert_sent_exactly_once(db: Any, ids: list[ObjectId]) -> None:
    per_message = sent_events_per_message(db)
    assert set(per_message) == set(ids)
    assert set(per_message.values()) == {1}
    statuses = Counter(doc["status"] for doc in db[q.MESSAGES].find({}, {"status": 1}))
    assert statuses == {"sent": len(ids)}


@pytest.mark.slow
def test_eight_threads_drain_2000_messages_exactly_once(db: Any, clock: ManualClock) -> None:
    prepare(db)
    ids = seed_due(db, 2000, clock.now())
    sched = Scheduler(db, clock=clock)
    sent = run_workers(sched, WORKERS, limit=100)
    assert sum(sent) == 2000
    assert_sent_exactly_once(db, ids)


def test_a_dead_workers_messages_are_reclaimed_after_its_lease(db: Any, clock: ManualClock) -> None:
    prepare(db)
    ids = seed_due(db, 300, clock.now())
    sched = Scheduler(db, clock=clock)
    abandoned = sched.claim_due("dead", limit=40, lease=LEASE)  # claims, then dies
    assert sum(run_workers(sched, 4)) == 260
    assert sched.backlog().processing_live == 40
    clock.advance(LEASE)
    assert sum(run_workers(sched, 4, prefix="late")) == 40
    for message in abandoned:  # the dead worker wakes up: every write is refused
        with pytest.raises(LeaseLostError):
            sched.mark_sent(message["_id"], "dead")
    assert_sent_exactly_once(db, ids)
    reclaimed = db[q.MESSAGES].count_documents(
        {"_id": {"$in": [m["_id"] for m in abandoned]}, "attempts": 2}
    )
    assert reclaimed == 40


def test_leases_expiring_while_workers_run_never_send_twice(db: Any, clock: ManualClock) -> None:
    prepare(db)
    ids = seed_due(db, 200, clock.now())
    # A lease lasts ~25 ms of wall time here; on a real server (slower round trips) a
    # message may lose several leases, so the attempt cap must not give it up as failed.
    sched = Scheduler(db, clock=clock, max_attempts=10_000)
    stop = threading.Event()

    def tick() -> None:  # time runs fast: leases keep expiring under the workers
        while not stop.wait(0.005):
            clock.advance(minutes=1)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        # small batches: a lease outlives one send
        run_workers(sched, WORKERS, limit=2, leases_expire=True)
    finally:
        stop.set()
        ticker.join()
    assert_sent_exactly_once(db, ids)


async def adrain(sched: AsyncScheduler, worker_id: str, limit: int = 25) -> int:
    """The asyncio twin of :func:`drain`."""
    sent = 0
    while True:
        batch = await sched.claim_due(worker_id, limit=limit, lease=LEASE)
        if not batch and (await sched.backlog()).due_now == 0:
            return sent
        for message in batch:
            await sched.mark_sent(message["_id"], worker_id)
            sent += 1


async def aseed_due(db: Any, count: int, now: datetime) -> list[ObjectId]:
    tenant = ObjectId()
    contact = (await db[q.CONTACTS].insert_one({"tenantId": tenant, "createdAt": now})).inserted_id
    docs = [
        u.new_message(tenant, contact, "sms", now - timedelta(seconds=count - i), now)
        for i in range(count)
    ]
    return list((await db[q.MESSAGES].insert_many(docs)).inserted_ids)


@pytest.mark.slow
async def test_eight_tasks_drain_2000_messages_exactly_once(
    async_db: Any, clock: ManualClock
) -> None:
    await prepare_async(async_db)
    ids = await aseed_due(async_db, 2000, clock.now())
    sched = AsyncScheduler(async_db, clock=clock)
    sent = await asyncio.gather(*(adrain(sched, f"t{i}", limit=100) for i in range(WORKERS)))
    assert sum(sent) == 2000
    events = await async_db[q.EVENTS].find({"eventType": "sent"}).to_list(None)
    per_message = Counter(event["scheduledMessageId"] for event in events)
    assert set(per_message) == set(ids) and set(per_message.values()) == {1}
    assert await async_db[q.MESSAGES].count_documents({"status": {"$ne": "sent"}}) == 0
