"""Scheduler behaviour on every backend, with a controlled clock."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from nsn_store._flow import Flow
from nsn_store.clock import ManualClock
from nsn_store.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidTransitionError,
    LeaseLostError,
    NotFoundError,
)
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._flows import FAIR_PROBES
from nsn_store.scheduler._service import Scheduler

MINUTE = timedelta(minutes=1)
LEASE = timedelta(minutes=5)


def prepare(db: Any) -> None:
    """Create the collections with their validators and indexes (migration 0001)."""
    init_schema(db)


def add_contact(db: Any, tenant_id: ObjectId, now: datetime) -> ObjectId:
    """Insert a contact for ``tenant_id`` and return its id."""
    return db[q.CONTACTS].insert_one({"tenantId": tenant_id, "createdAt": now}).inserted_id


def seed_due(db: Any, count: int, now: datetime, tenants: int = 3) -> list[ObjectId]:
    """Insert ``count`` messages already due at ``now`` (bulk, bypassing schedule())."""
    tenant_ids = [ObjectId() for _ in range(tenants)]
    contacts = [add_contact(db, tenant, now) for tenant in tenant_ids]
    docs = [
        u.new_message(
            tenant_ids[i % tenants],
            contacts[i % tenants],
            "sms",
            now - timedelta(seconds=count - i),
            now,
        )
        for i in range(count)
    ]
    return list(db[q.MESSAGES].insert_many(docs).inserted_ids)


def sent_events_per_message(db: Any) -> Counter[ObjectId]:
    """Count the ``sent`` events of each message."""
    events = db[q.EVENTS].find({"eventType": "sent"}, {"scheduledMessageId": 1})
    return Counter(event["scheduledMessageId"] for event in events)


class RecordingCounter:
    """A stand-in for ShardedCounter that records every add it applies.

    Like ``ShardedCounter.add_flow(once=...)`` it applies a keyed add at most
    once; its flow makes no database call.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[ObjectId, str]] = []
        self.keys: set[tuple[ObjectId, str, str]] = set()

    def add_flow(
        self, tenant_id: ObjectId, metric: str, n: int = 1, *, once: str | None = None
    ) -> Flow[bool]:
        if once is not None and (tenant_id, metric, once) in self.keys:
            return False
        if once is not None:
            self.keys.add((tenant_id, metric, once))
        self.calls.append((tenant_id, metric))
        return True
        yield  # a flow: a generator that yields no call


@pytest.fixture
def store(db: Any) -> Any:
    prepare(db)
    return db


@pytest.fixture
def tenant() -> ObjectId:
    return ObjectId()


@pytest.fixture
def contact(store: Any, tenant: ObjectId, clock: ManualClock) -> ObjectId:
    return add_contact(store, tenant, clock.now())


@pytest.fixture
def counter() -> RecordingCounter:
    return RecordingCounter()


@pytest.fixture
def sched(store: Any, clock: ManualClock, counter: RecordingCounter) -> Scheduler:
    return Scheduler(
        store,
        clock=clock,
        counter=counter,
        max_attempts=3,
        base_backoff=timedelta(seconds=30),
        rng=random.Random(42),
    )


def _message(db: Any, message_id: ObjectId) -> dict[str, Any]:
    found = db[q.MESSAGES].find_one({"_id": message_id})
    assert found is not None
    return found


#: Events written in the same millisecond tie on createdAt, and a server returns ties in
#: any order. The scheduler's own events have keyed ``_id`` values (in no time order), so
#: ties are broken by the lifecycle (queued, then a failure's or the send's event, then
#: webhooks), then by ``_id`` (a driver-made ObjectId grows with every insert of this process).
LIFECYCLE = {"queued": 0, "failed": 1, "sent": 1}


def write_order(event: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key: when, then where in the lifecycle, then (for webhooks) insertion order."""
    rank = LIFECYCLE.get(event["eventType"], 2)
    return (
        event["createdAt"],
        rank,
        event.get("raw", {}).get("attempts", 0),
        event["_id"] if rank == 2 else 0,
    )


def _events(db: Any, message_id: ObjectId) -> list[str]:
    found = db[q.EVENTS].find({"scheduledMessageId": message_id})
    return [event["eventType"] for event in sorted(found, key=write_order)]


# --- schedule ------------------------------------------------------------------


def test_schedule_stores_a_valid_message_and_a_queued_event(
    sched: Scheduler,
    store: Any,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    message = sched.schedule(tenant, contact, "sms", clock.now() + MINUTE, payload={"name": "A"})
    stored = _message(store, message["_id"])
    assert stored["status"] == "scheduled" and stored["attempts"] == 0
    assert stored["sendAt"] == clock.now() + MINUTE
    assert "lockedBy" not in stored and "templateId" not in stored
    assert _events(store, message["_id"]) == ["queued"]
    assert counter.calls == [(tenant, "messages.scheduled")]


def test_schedule_refuses_an_unknown_contact(
    sched: Scheduler, store: Any, tenant: ObjectId, clock: ManualClock, counter: RecordingCounter
) -> None:
    with pytest.raises(NotFoundError, match="contact"):
        sched.schedule(tenant, ObjectId(), "sms", clock.now())
    assert store[q.MESSAGES].count_documents({}) == 0
    assert store[q.EVENTS].count_documents({}) == 0 and counter.calls == []


def test_schedule_refuses_another_tenants_contact_as_if_it_did_not_exist(
    sched: Scheduler, store: Any, contact: ObjectId, clock: ManualClock
) -> None:
    """Adapted (issue 9): a foreign contact was a TenantIsolationError, an existence oracle."""
    with pytest.raises(NotFoundError) as foreign:
        sched.schedule(ObjectId(), contact, "sms", clock.now())
    assert store[q.MESSAGES].count_documents({}) == 0
    with pytest.raises(NotFoundError) as missing:
        sched.schedule(ObjectId(), ObjectId(), "sms", clock.now())
    assert type(foreign.value) is type(missing.value)


def test_schedule_with_an_unknown_channel_is_refused_before_any_write(
    sched: Scheduler,
    store: Any,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    """Adapted (issue 9): the channel is checked up front, not left to the validator."""
    with pytest.raises(InvalidArgumentError) as caught:
        sched.schedule(tenant, contact, "fax", clock.now())
    assert caught.value.argument == "channel"
    assert store[q.MESSAGES].count_documents({}) == 0
    assert store[q.EVENTS].count_documents({}) == 0 and counter.calls == []


def test_a_repeated_idempotency_key_returns_the_first_message(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    first = sched.schedule(tenant, contact, "sms", clock.now(), idempotency_key="appt-1")
    again = sched.schedule(tenant, contact, "sms", clock.now() + MINUTE, idempotency_key="appt-1")
    assert again["_id"] == first["_id"] and again["sendAt"] == first["sendAt"]
    assert store[q.MESSAGES].count_documents({}) == 1
    assert _events(store, first["_id"]) == ["queued"]


def test_the_same_idempotency_key_in_two_tenants_gives_two_messages(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    ids = set()
    for tenant in (ObjectId(), ObjectId()):
        contact = add_contact(store, tenant, clock.now())
        ids.add(sched.schedule(tenant, contact, "sms", clock.now(), idempotency_key="k")["_id"])
    assert len(ids) == 2


def test_racing_schedules_with_one_key_create_one_message(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    results: list[ObjectId] = []
    barrier = threading.Barrier(6)

    def schedule() -> None:
        barrier.wait()
        results.append(
            sched.schedule(tenant, contact, "sms", clock.now(), idempotency_key="race")["_id"]
        )

    threads = [threading.Thread(target=schedule) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert store[q.MESSAGES].count_documents({}) == 1


# --- claim ---------------------------------------------------------------------


def test_only_due_messages_are_claimed(
    sched: Scheduler, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    now = clock.now()
    past, present, future = (
        sched.schedule(tenant, contact, "sms", now + MINUTE * k)["_id"] for k in (-1, 0, 1)
    )
    assert [m["_id"] for m in sched.claim_due("w1")] == [past, present]
    assert sched.claim_due("w1") == []
    clock.advance(MINUTE)
    assert [m["_id"] for m in sched.claim_due("w1")] == [future]


def test_claims_oldest_first_across_tenants_up_to_the_limit(
    sched: Scheduler, store: Any, clock: ManualClock
) -> None:
    now = clock.now()
    tenants = [ObjectId(), ObjectId()]
    contacts = [add_contact(store, t, now) for t in tenants]
    expected = []
    for k in (5, 1, 4, 2, 3):  # interleave the tenants out of order
        message = sched.schedule(tenants[k % 2], contacts[k % 2], "sms", now - MINUTE * k)
        expected.append((message["sendAt"], message["_id"]))
    batch = sched.claim_due("w1", limit=3)
    assert [m["_id"] for m in batch] == [i for _, i in sorted(expected)[:3]]
    assert {m["tenantId"] for m in batch} == set(tenants)
    for message in batch:
        assert message["status"] == "processing" and message["lockedBy"] == "w1"
        assert message["lockedUntil"] == now + u.DEFAULT_LEASE and message["attempts"] == 1


def test_round_trips_per_claim_do_not_grow_with_the_batch(store: Any, clock: ManualClock) -> None:
    seed_due(store, 60, clock.now())
    trips = []
    for limit in (5, 50):
        sched = Scheduler(store, clock=clock)
        assert len(sched.claim_due("w", limit=limit)) == limit
        trips.append(sched.round_trips)
    # 4 for the claim itself; a full page (a backlog) adds the fairness probes:
    # one per tenant due (3 here) and one that finds no more, never more than FAIR_PROBES + 2.
    assert trips[0] == trips[1] == 4 + 3 + 1
    assert trips[0] <= 4 + FAIR_PROBES + 2


def test_an_expired_lease_is_claimed_again_and_the_old_holder_is_refused(
    sched: Scheduler, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    assert len(sched.claim_due("w1", lease=LEASE)) == 1
    assert sched.claim_due("w2", lease=LEASE) == []  # w1's lease is live
    clock.advance(LEASE)
    [again] = sched.claim_due("w2", lease=LEASE)
    assert again["_id"] == message_id and again["attempts"] == 2 and again["lockedBy"] == "w2"
    with pytest.raises(LeaseLostError, match="'w2'") as lost:
        sched.mark_sent(message_id, "w1")
    assert str(message_id) in str(lost.value)
    assert sched.mark_sent(message_id, "w2")["status"] == "sent"


def test_mark_sent_after_the_lease_ran_out_is_refused(
    sched: Scheduler, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1", lease=LEASE)
    clock.advance(LEASE)
    with pytest.raises(LeaseLostError):
        sched.mark_sent(message_id, "w1")


# --- finish ------------------------------------------------------------------


def test_mark_sent_records_the_provider_and_releases_the_lease(
    sched: Scheduler,
    store: Any,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1")
    clock.advance(seconds=3)
    sent = sched.mark_sent(message_id, "w1", provider_message_id="SM123")
    assert sent["status"] == "sent" and sent["sentAt"] == clock.now()
    assert "lockedBy" not in sent and "lockedUntil" not in sent
    event = store[q.EVENTS].find_one({"eventType": "sent"})
    assert event is not None
    assert (event["provider"], event["providerMessageId"]) == ("twilio", "SM123")
    assert counter.calls[-1] == (tenant, "messages.sent")
    with pytest.raises(LeaseLostError, match="sent"):
        sched.mark_sent(message_id, "w1")


def test_workers_may_finish_with_the_claimed_documents_themselves(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    """Passing back what claim_due returned puts tenantId (the shard key) in each write."""
    for _ in range(3):
        sched.schedule(tenant, contact, "sms", clock.now())
    first, second, third = sched.claim_due("w1", lease=LEASE)
    assert sched.extend_lease(first, "w1", LEASE)["lockedUntil"] == clock.now() + LEASE
    assert sched.mark_sent(first, "w1")["status"] == "sent"
    assert sched.mark_failed(second, "w1", "timeout")["status"] == "scheduled"
    with pytest.raises(LeaseLostError):  # a document of another tenant never matches
        sched.mark_sent({**third, "tenantId": ObjectId()}, "w1")
    assert _message(store, third["_id"])["status"] == "processing"


def test_mark_sent_of_an_unknown_message_is_not_found(sched: Scheduler) -> None:
    with pytest.raises(NotFoundError):
        sched.mark_sent(ObjectId(), "w1")


def test_failures_back_off_exponentially_then_fail_for_good(
    sched: Scheduler,
    store: Any,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    expected_rng = random.Random(42)
    for attempt in (1, 2):
        [claimed] = sched.claim_due("w1")
        assert claimed["attempts"] == attempt
        retried = sched.mark_failed(message_id, "w1", f"timeout {attempt}")
        delay = u.backoff(attempt, timedelta(seconds=30), expected_rng)
        assert retried["status"] == "scheduled" and retried["lastError"] == f"timeout {attempt}"
        assert retried["sendAt"] == clock.now() + delay
        assert "lockedBy" not in retried and "lockedUntil" not in retried
        assert sched.claim_due("w1", now=retried["sendAt"] - timedelta(milliseconds=1)) == []
        clock.set(retried["sendAt"])
    sched.claim_due("w1")
    failed = sched.mark_failed(message_id, "w1", "timeout 3")  # the 3rd of max_attempts=3
    assert failed["status"] == "failed" and failed["lastError"] == "timeout 3"
    assert _events(store, message_id) == ["queued", "failed", "failed", "failed"]
    failures = sorted(store[q.EVENTS].find({"eventType": "failed"}), key=write_order)
    finals = [e["raw"]["final"] for e in failures]
    assert finals == [False, False, True]
    assert [m for _, m in counter.calls] == [
        "messages.scheduled",
        "messages.retried",
        "messages.retried",
        "messages.failed",
    ]
    assert sched.claim_due("w1", now=clock.now() + timedelta(days=1)) == []


def test_a_permanent_failure_does_not_retry(
    sched: Scheduler,
    store: Any,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1")
    failed = sched.mark_failed(message_id, "w1", ValueError("bad number"), retry=False)
    assert failed["status"] == "failed" and failed["lastError"] == "ValueError: bad number"
    assert failed["attempts"] == 1 and "lockedBy" not in failed
    assert sched.claim_due("w1", now=clock.now() + timedelta(days=30)) == []  # never again
    [event] = store[q.EVENTS].find({"eventType": "failed", "scheduledMessageId": message_id})
    assert event["raw"]["final"] is True
    assert counter.calls[-1] == (tenant, "messages.failed")


def test_mark_failed_by_a_worker_without_the_lease_is_refused(
    sched: Scheduler, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1")
    with pytest.raises(LeaseLostError, match="'w1'"):
        sched.mark_failed(message_id, "w2", "boom")


def test_extend_lease_keeps_other_workers_out(
    sched: Scheduler, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1", lease=LEASE)
    clock.advance(minutes=4)
    extended = sched.extend_lease(message_id, "w1", LEASE)
    assert extended["lockedUntil"] == clock.now() + LEASE
    clock.advance(minutes=2)  # past the first lease, inside the extended one
    assert sched.claim_due("w2") == []
    with pytest.raises(LeaseLostError):
        sched.extend_lease(message_id, "w2", LEASE)
    assert sched.mark_sent(message_id, "w1")["status"] == "sent"


# --- cancel ------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [False, True], ids=["scheduled", "processing"])
def test_cancel_a_scheduled_or_processing_message(
    sched: Scheduler,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    claimed: bool,
    counter: RecordingCounter,
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    if claimed:
        sched.claim_due("w1")
    cancelled = sched.cancel(tenant, message_id)
    assert cancelled["status"] == "cancelled" and "lockedBy" not in cancelled
    assert counter.calls[-1] == (tenant, "messages.cancelled")
    assert sched.claim_due("w2") == []
    with pytest.raises(LeaseLostError, match="cancelled"):
        sched.mark_sent(message_id, "w1")


@pytest.mark.parametrize("final", ["sent", "failed"])
def test_cancel_refuses_finished_messages(
    sched: Scheduler, tenant: ObjectId, contact: ObjectId, clock: ManualClock, final: str
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1")
    if final == "sent":
        sched.mark_sent(message_id, "w1")
    else:
        sched.mark_failed(message_id, "w1", "x", retry=False)
    with pytest.raises(InvalidTransitionError, match=final):
        sched.cancel(tenant, message_id)


def test_cancelling_twice_succeeds_and_counts_once(
    sched: Scheduler,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    """Adapted (issue 9): a second cancel was refused, so a retried cancel lost its count."""
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.cancel(tenant, message_id)
    assert sched.cancel(tenant, message_id)["status"] == "cancelled"
    assert counter.calls.count((tenant, "messages.cancelled")) == 1


def test_cancel_is_tenant_checked(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    """Adapted (issue 9): another tenant's message is "not found", exactly like a missing one."""
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    with pytest.raises(NotFoundError) as foreign:
        sched.cancel(ObjectId(), message_id)
    unknown = ObjectId()
    with pytest.raises(NotFoundError) as missing:
        sched.cancel(tenant, unknown)
    assert str(foreign.value) == str(missing.value).replace(str(unknown), str(message_id))
    assert _message(store, message_id)["status"] == "scheduled"


# --- webhooks ------------------------------------------------------------------


def test_a_repeated_webhook_is_recorded_once_and_linked_to_the_message(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1")
    sched.mark_sent(message_id, "w1", provider_message_id="SM9")
    occurred = clock.now() - timedelta(seconds=1)
    assert sched.record_provider_event(
        tenant,
        "twilio",
        "SM9",
        "delivered",
        occurred_at=occurred,
        raw={"MessageStatus": "delivered"},
    )
    assert not sched.record_provider_event(tenant, "twilio", "SM9", "delivered")
    assert sched.record_provider_event(tenant, "twilio", "SM9", "clicked")
    assert _events(store, message_id) == ["queued", "sent", "delivered", "clicked"]
    delivered = store[q.EVENTS].find_one({"eventType": "delivered"})
    assert delivered is not None and delivered["occurredAt"] == occurred


def test_a_webhook_for_an_unknown_provider_id_is_kept_unlinked(
    sched: Scheduler, store: Any, tenant: ObjectId
) -> None:
    assert sched.record_provider_event(tenant, "resend", "re_1", "bounced")
    event = store[q.EVENTS].find_one({"providerMessageId": "re_1"})
    assert event is not None and "scheduledMessageId" not in event


# --- backlog -------------------------------------------------------------------


def test_backlog_counts_each_state_per_tenant_and_in_total(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    now = clock.now()
    other = ObjectId()
    other_contact = add_contact(store, other, now)
    ids = [sched.schedule(tenant, contact, "sms", now - MINUTE * k)["_id"] for k in range(4)]
    sched.schedule(other, other_contact, "sms", now - MINUTE * 10)
    sched.schedule(tenant, contact, "sms", now + MINUTE)  # not due yet
    sched.claim_due("w1", limit=1)  # the other tenant's (oldest) message
    sched.claim_due("w1", limit=3, lease=timedelta(seconds=30))  # ids[3], ids[2], ids[1]
    sched.mark_failed(ids[3], "w1", "x", retry=False)
    clock.advance(seconds=30)  # the short leases on ids[2] and ids[1] expire
    total = sched.backlog()
    assert total.to_dict() == {
        "now": clock.now().isoformat(),
        "tenant_id": None,
        "due_now": 1,
        "oldest_due_send_at": now.isoformat(),
        "processing_live": 1,
        "processing_expired": 2,
        "failed_last_day": 1,
    }
    mine = sched.backlog(tenant)
    assert (mine.due_now, mine.processing_live, mine.processing_expired, mine.failed_last_day) == (
        1,
        0,
        2,
        1,
    )
    theirs = sched.backlog(other, now=clock.now() + timedelta(days=2))
    assert (
        theirs.due_now,
        theirs.processing_live,
        theirs.processing_expired,
        theirs.failed_last_day,
    ) == (0, 0, 1, 0)
    assert sched.backlog(now=clock.now() + timedelta(days=2)).failed_last_day == 0


# --- index use on a real server ----------------------------------------------


def _stages(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten an explain plan: classic (``inputStage``), SBE (``queryPlan``, 6.0+) and
    sharded (``shards[].winningPlan``) shapes alike."""
    if "queryPlan" in plan:  # SBE: {queryPlan: <classic-shaped tree>, slotBasedPlan: ...}
        return _stages(plan["queryPlan"])
    found = [plan]
    children = [plan.get("inputStage"), *plan.get("inputStages", [])]
    children += [shard.get("winningPlan") for shard in plan.get("shards", [])]
    for child in children:
        if child:
            found += _stages(child)
    return found


def test_due_scan_is_an_index_scan_without_a_sort_on_a_server(
    store: Any, backend: str, clock: ManualClock
) -> None:
    if backend != "server":
        pytest.skip("explain() plans exist only on a real server")
    seed_due(store, 50, clock.now())
    query = q.due_query(clock.now())
    explained = store[q.MESSAGES].find(query.filter).sort(query.sort).limit(10).explain()
    stages = _stages(explained["queryPlanner"]["winningPlan"])
    names = [stage["stage"] for stage in stages]
    assert "SORT" not in names
    scans = [stage for stage in stages if stage["stage"] == "IXSCAN"]
    assert [scan["indexName"] for scan in scans] == ["by_sendAt"]


def test_transitions_bump_the_tenants_sharded_counters(
    store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    from nsn_store.counters import ShardedCounter

    counters = ShardedCounter(store, shards=4, clock=clock, rng=random.Random(1))
    sched = Scheduler(store, clock=clock, counter=counters, max_attempts=2)
    first, second, third = (
        sched.schedule(tenant, contact, "sms", clock.now())["_id"] for _ in range(3)
    )
    sched.claim_due("w1")
    sched.mark_sent(first, "w1")
    sched.mark_failed(second, "w1", "busy")
    sched.cancel(tenant, third)
    expected = {
        "messages.scheduled": 3,
        "messages.sent": 1,
        "messages.retried": 1,
        "messages.failed": 0,
        "messages.cancelled": 1,
    }
    assert {metric: counters.count(tenant, metric) for metric in expected} == expected


def test_a_message_whose_worker_dies_on_every_attempt_fails_instead_of_looping(
    sched: Scheduler,
    store: Any,
    tenant: ObjectId,
    contact: ObjectId,
    clock: ManualClock,
    counter: RecordingCounter,
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    for attempt in range(1, sched.max_attempts + 1):  # each worker claims it, then dies
        [claimed] = sched.claim_due(f"w{attempt}", lease=LEASE)
        assert claimed["attempts"] == attempt
        clock.advance(LEASE)
    assert sched.claim_due("survivor") == []
    given_up = _message(store, message_id)
    assert given_up["status"] == "failed" and "lease expired" in given_up["lastError"]
    assert "lockedBy" not in given_up
    assert _events(store, message_id) == ["queued", "failed"]
    assert counter.calls[-1] == (tenant, "messages.failed")


def test_mark_sent_with_an_unknown_provider_changes_nothing(
    sched: Scheduler, store: Any, tenant: ObjectId, contact: ObjectId, clock: ManualClock
) -> None:
    message_id = sched.schedule(tenant, contact, "sms", clock.now())["_id"]
    sched.claim_due("w1")
    with pytest.raises(ConfigurationError, match="provider"):
        sched.mark_sent(message_id, "w1", provider="carrier-pigeon", provider_message_id="p1")
    assert _message(store, message_id)["status"] == "processing"
