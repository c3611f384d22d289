"""A worker that dies holding a batch loses nothing: the lease expires, others finish it."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from nsn_store.clock import ManualClock
from nsn_store.errors import LeaseLostError
from nsn_store.simulate._report import SimulationConfig
from nsn_store.simulate._run import run_simulation

LEASE = timedelta(seconds=60)


def _seed_messages(db: Any, clock: ManualClock, count: int) -> tuple[Any, list[ObjectId]]:
    from nsn_store.migration._runner import init_schema
    from nsn_store.scheduler._service import Scheduler

    init_schema(db)
    now = clock.now()
    tenant = (
        db["tenants"]
        .insert_one({"name": "Clinic", "clerkOrgId": "org_crash", "createdAt": now})
        .inserted_id
    )
    contact = (
        db["contacts"]
        .insert_one({"tenantId": tenant, "phone": "+15550001111", "createdAt": now})
        .inserted_id
    )
    scheduler = Scheduler(db, clock=clock)
    ids = [
        scheduler.schedule(tenant, contact, "sms", now + timedelta(seconds=i))["_id"]
        for i in range(count)
    ]
    return scheduler, ids


def _drain(scheduler: Any, worker: str) -> list[ObjectId]:
    sent = []
    while batch := scheduler.claim_due(worker, limit=7, lease=LEASE):
        for message in batch:
            scheduler.mark_sent(message["_id"], worker)
            sent.append(message["_id"])
    return sent


def _drain_in_parallel(scheduler: Any, workers: int) -> list[ObjectId]:
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_drain, scheduler, f"survivor-{k}") for k in range(workers)]
        return [mid for future in futures for mid in future.result()]


def test_messages_of_a_dead_worker_are_sent_once_after_its_lease(
    db: Any, clock: ManualClock
) -> None:
    scheduler, ids = _seed_messages(db, clock, 40)
    clock.advance(minutes=1)
    doomed = scheduler.claim_due("doomed", limit=10, lease=LEASE)  # then the process dies
    assert len(doomed) == 10

    first = _drain_in_parallel(scheduler, 3)
    assert set(first) == set(ids) - {m["_id"] for m in doomed}  # the lease still protects them

    clock.advance(LEASE + timedelta(seconds=1))
    second = _drain_in_parallel(scheduler, 3)
    assert sorted(second) == sorted(m["_id"] for m in doomed)

    sent_events = Counter(
        e["scheduledMessageId"] for e in db["messageEvents"].find({"eventType": "sent"})
    )
    assert sorted(sent_events) == sorted(ids)
    assert set(sent_events.values()) == {1}
    assert db["scheduledMessages"].count_documents({"status": {"$ne": "sent"}}) == 0


def test_the_dead_worker_cannot_mark_a_message_taken_over(db: Any, clock: ManualClock) -> None:
    scheduler, _ = _seed_messages(db, clock, 3)
    clock.advance(minutes=1)
    [message, *_] = scheduler.claim_due("doomed", limit=3, lease=LEASE)
    clock.advance(LEASE + timedelta(seconds=1))
    assert _drain(scheduler, "survivor")
    with pytest.raises(LeaseLostError):
        scheduler.mark_sent(message["_id"], "doomed")  # a zombie coming back
    assert (
        db["messageEvents"].count_documents(
            {"eventType": "sent", "scheduledMessageId": message["_id"]}
        )
        == 1
    )


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_simulation_with_crashing_workers_loses_nothing(
    db: Any, mode: str, open_async_db: Any
) -> None:
    config = SimulationConfig(
        tenants=3,
        messages_per_tenant=20,
        workers=3,
        batch=5,
        crashes=2,
        failure_rate=0.1,
        mode=mode,
        seed=11,
    )  # type: ignore[arg-type]
    report = run_simulation(db, config, open_async_db=open_async_db)
    assert 0 < report.crashed_claims <= config.crashes * config.batch
    assert (report.duplicates, report.lost) == (0, 0)
    assert report.sent + report.failed == 60
    assert report.lag_max >= config.lease  # abandoned messages waited for the lease
