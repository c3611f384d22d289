"""The worker: deliveries, compliance, wake-up, heartbeats, shutdown and fairness.

Every test runs on the embedded database (and on a server when configured)
with a ``ManualClock``: time moves only when a test moves it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from nsn_store._flow import TripCounter
from nsn_store._flow import run as run_flow
from nsn_store.clock import ManualClock
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler._service import Scheduler
from nsn_store.worker._delivery import Delivery, Refusal, load_deliveries
from nsn_store.worker._senders import FakeSender, PermanentSendError, TransientSendError
from nsn_store.worker._worker import Worker

MINUTE = timedelta(minutes=1)


class World:
    """Two tenants with provider configs, contacts, templates and a scheduler."""

    def __init__(self, db: Any, clock: ManualClock) -> None:
        init_schema(db)
        self.db, self.clock = db, clock
        self.scheduler = Scheduler(db, clock=clock)
        self.tenants = [self.tenant(f"org_{i}") for i in range(2)]

    def tenant(self, org: str) -> ObjectId:
        config = {
            "channel": "sms",
            "provider": "twilio",
            "fromAddress": "+15550000",
            "credentialsRef": "env:TWILIO_TOKEN",
        }
        return self.db.tenants.insert_one(
            {
                "name": org,
                "clerkOrgId": org,
                "providerConfigs": [config],
                "createdAt": self.clock.now(),
            }
        ).inserted_id

    def contact(self, tenant: ObjectId, **fields: Any) -> ObjectId:
        document = {
            "tenantId": tenant,
            "firstName": "Ada",
            "phone": "+15550100",
            "email": "ada@example.com",
            "createdAt": self.clock.now(),
            **fields,
        }
        return self.db.contacts.insert_one(
            {k: v for k, v in document.items() if v is not None}
        ).inserted_id

    def template(
        self, tenant: ObjectId, body: str, channel: str = "sms", subject: str | None = None
    ) -> ObjectId:
        document = {
            "tenantId": tenant,
            "name": "t",
            "channel": channel,
            "body": body,
            "createdAt": self.clock.now(),
        }
        if subject is not None:
            document["subject"] = subject
        return self.db.templates.insert_one(document).inserted_id

    def schedule(
        self,
        tenant: ObjectId,
        contact: ObjectId | None = None,
        *,
        at: timedelta = timedelta(0),
        channel: str = "sms",
        **kwargs: Any,
    ) -> Any:
        contact = contact or self.contact(tenant)
        kwargs.setdefault("payload", {"body": "Hi {{firstName}}", "subject": "Reminder"})
        return self.scheduler.schedule(tenant, contact, channel, self.clock.now() + at, **kwargs)

    def status(self, message: Any) -> str:
        return str(self.db.scheduledMessages.find_one({"_id": message["_id"]})["status"])


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock)


def worker(world: World, sender: Any, **options: Any) -> Worker:
    options.setdefault("lease", 30)
    return Worker(
        world.db, sender, clock=world.clock, scheduler=world.scheduler, watch=False, **options
    )


# -- deliveries ---------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 10, 60])
def test_deliveries_cost_three_round_trips_whatever_the_batch_size(world: World, size: int) -> None:
    template = world.template(world.tenants[0], "Hello {{firstName}}, at {{time}}")
    for i in range(size):
        world.schedule(
            world.tenants[i % 2],
            template_id=template if i % 2 == 0 else None,
            payload={"time": "10:00", "body": "B {{time}}"},
        )
    batch = world.scheduler.claim_due("w", limit=100)
    trips = TripCounter()
    prepared = run_flow(world.db, load_deliveries(batch), trips)
    assert len(prepared) == size
    assert trips.count == 3  # contacts, templates, tenants: one find each


def test_a_delivery_is_rendered_addressed_and_carries_the_tenant_config(world: World) -> None:
    tenant = world.tenants[0]
    template = world.template(tenant, "Hi {{firstName}}, see you at {{time}}")
    world.schedule(tenant, template_id=template, payload={"time": "09:30"})
    [message] = world.scheduler.claim_due("w")
    [delivery] = run_flow(world.db, load_deliveries([message]))
    assert isinstance(delivery, Delivery)
    assert (
        delivery.to,
        delivery.body,
        delivery.from_address,
        delivery.credentials_ref,
        delivery.provider,
    ) == ("+15550100", "Hi Ada, see you at 09:30", "+15550000", "env:TWILIO_TOKEN", "twilio")
    assert delivery.idempotency_key == f"{message['_id']}:1"


def test_the_idempotency_key_changes_with_the_attempt_only(world: World) -> None:
    world.schedule(world.tenants[0])
    [first] = world.scheduler.claim_due("w")
    [delivery] = run_flow(world.db, load_deliveries([first]))
    assert run_flow(world.db, load_deliveries([first]))[0].idempotency_key == (
        delivery.idempotency_key
    )
    world.scheduler.mark_failed(first, "w", "timeout")
    world.clock.advance(hours=7)
    [second] = world.scheduler.claim_due("w")
    [retry] = run_flow(world.db, load_deliveries([second]))
    assert retry.idempotency_key != delivery.idempotency_key


@pytest.mark.parametrize(
    ("fields", "channel", "kind", "reason"),
    [
        ({"optedOut": True}, "sms", "opted_out", "opted out"),
        ({"phone": None}, "sms", "permanent", "no phone number for sms"),
        ({"email": None}, "email", "permanent", "no email address for email"),
    ],
    ids=["opted-out", "no-phone", "no-email"],
)
def test_contacts_that_cannot_be_sent_to_are_refused_with_the_reason(
    world: World, fields: dict[str, Any], channel: str, kind: str, reason: str
) -> None:
    tenant = world.tenants[0]
    world.schedule(tenant, world.contact(tenant, **fields), channel=channel)
    [message] = world.scheduler.claim_due("w")
    [refusal] = run_flow(world.db, load_deliveries([message]))
    assert isinstance(refusal, Refusal)
    assert refusal.kind == kind and reason in refusal.reason


def test_a_missing_variable_is_a_permanent_failure_naming_it(world: World) -> None:
    tenant = world.tenants[0]
    world.schedule(tenant, template_id=world.template(tenant, "At {{ payload.time }}"), payload={})
    [message] = world.scheduler.claim_due("w")
    [refusal] = run_flow(world.db, load_deliveries([message]))
    assert isinstance(refusal, Refusal) and refusal.kind == "permanent"
    assert "payload.time" in refusal.reason


def test_another_tenants_template_is_never_rendered(world: World) -> None:
    mine, theirs = world.tenants
    foreign = world.template(theirs, "secret of {{firstName}}")
    contact = world.contact(mine)
    world.db.scheduledMessages.insert_one(
        {  # bypasses schedule(), which refuses it
            "tenantId": mine,
            "contactId": contact,
            "channel": "sms",
            "templateId": foreign,
            "sendAt": world.clock.now(),
            "status": "scheduled",
            "attempts": 0,
            "createdAt": world.clock.now(),
        }
    )
    [message] = world.scheduler.claim_due("w")
    [refusal] = run_flow(world.db, load_deliveries([message]))
    assert isinstance(refusal, Refusal) and "template does not exist" in refusal.reason


# -- the worker's outcomes ------------------------------------------------------


def test_run_once_sends_what_is_due_and_reports_it(world: World) -> None:
    due = [world.schedule(world.tenants[i % 2]) for i in range(5)]
    later = world.schedule(world.tenants[0], at=MINUTE)
    sender = FakeSender()
    report = worker(world, sender, concurrency=3).run_once()
    assert report.sent == 5 and report.claimed == 5
    assert all(world.status(m) == "sent" for m in due)
    assert world.status(later) == "scheduled"
    assert set(sender.sent.values()) == {1}


def test_opted_out_contacts_are_cancelled_with_an_event_and_never_sent(world: World) -> None:
    tenant = world.tenants[0]
    message = world.schedule(tenant, world.contact(tenant, optedOut=True))
    sender = FakeSender()
    report = worker(world, sender).run_once()
    assert report.cancelled == 1 and sender.calls == 0
    assert world.status(message) == "cancelled"
    events = world.db.messageEvents.find({"scheduledMessageId": message["_id"]})
    assert "opted_out" in {event["eventType"] for event in events}


def test_transient_errors_retry_and_permanent_ones_fail_for_good(world: World) -> None:
    transient, permanent, broken = (world.schedule(world.tenants[0]) for _ in range(3))

    def sender(delivery: Delivery) -> str:
        if delivery.message_id == transient["_id"]:
            raise TransientSendError("503")
        if delivery.message_id == permanent["_id"]:
            raise PermanentSendError("invalid number")
        if delivery.message_id == broken["_id"]:
            raise RuntimeError("bug in the sender")
        return "ok"

    report = worker(world, sender).run_once()
    assert (report.retried, report.failed) == (2, 1)
    assert [world.status(m) for m in (transient, permanent, broken)] == [
        "scheduled",
        "failed",
        "scheduled",
    ]


def test_a_heartbeat_keeps_a_slow_sends_lease(world: World) -> None:
    message = world.schedule(world.tenants[0])
    started, release = threading.Event(), threading.Event()

    def slow(delivery: Delivery) -> str:
        started.set()
        release.wait(10)
        return "slow-ok"

    w = worker(world, slow, lease=3, heartbeat=0.1)
    runner = threading.Thread(target=w.run_once)
    runner.start()
    assert started.wait(5)
    for _ in range(5):  # 10 s of manual time: three leases, kept alive by heartbeats
        world.clock.advance(seconds=2)
        time.sleep(0.3)
        thief = world.scheduler.claim_due("thief")
        assert thief == []
    release.set()
    runner.join(10)
    assert world.status(message) == "sent"


def test_the_idle_worker_sleeps_until_the_next_send_at_not_a_poll_tick(world: World) -> None:
    world.schedule(world.tenants[0], at=timedelta(seconds=7))
    w = worker(world, FakeSender(), poll=30)
    assert w.plan_sleep() == timedelta(seconds=7)
    world.clock.advance(seconds=5)
    assert w.plan_sleep() == timedelta(seconds=2)


def test_with_nothing_scheduled_the_worker_sleeps_the_poll_cap(world: World) -> None:
    assert worker(world, FakeSender(), poll=4).plan_sleep() == timedelta(seconds=4)


# -- shutdown -------------------------------------------------------------------


class StopAfterClaim(Worker):
    """A worker that stops right after a claim: its batch is claimed but not started."""

    def _claim_batch(self) -> bool:
        won = super()._claim_batch()
        self.stop()
        return won


STOP_POINTS = 1000


def test_stop_at_random_points_finishes_in_flight_and_hands_back_the_rest_unspent(
    db: Any, clock: ManualClock
) -> None:
    """1,000 randomized stop points: inside the k-th send, right after a claim, or from
    another thread at a random moment. Every message ends sent exactly once, or back in
    ``scheduled`` with its attempt unspent and no lease; none is left ``processing``."""
    world = World(db, clock)
    rng = random.Random(20261201)
    handed_back = 0
    for trial in range(STOP_POINTS):
        tenant = world.tenant(f"trial-{trial}")
        contact = world.contact(tenant)
        messages = [world.schedule(tenant, contact) for _ in range(rng.randint(1, 6))]
        sent: Counter[Any] = Counter()
        stop_at, how = rng.randint(1, len(messages)), rng.choice(["send", "claim", "thread"])
        box: dict[str, Worker] = {}

        def sender(
            delivery: Delivery,
            sent: Counter[Any] = sent,
            stop_at: int = stop_at,
            how: str = how,
            box: dict[str, Worker] = box,
        ) -> str:
            sent[delivery.message_id] += 1
            if how == "send" and sum(sent.values()) == stop_at:
                box["w"].stop()
            return "ok"

        kind = StopAfterClaim if how == "claim" else Worker
        w = kind(
            world.db,
            sender,
            clock=clock,
            scheduler=world.scheduler,
            watch=False,
            lease=30,
            concurrency=rng.randint(1, 4),
            batch_size=rng.randint(1, 6),
            tenants=[tenant],
        )
        box["w"] = w
        if how == "thread":
            threading.Timer(rng.random() * 0.003, w.stop).start()
        report = w.run_once()
        handed_back += report.handed_back
        assert set(sent.values()) <= {1}, trial
        for message in messages:
            doc = world.db.scheduledMessages.find_one({"_id": message["_id"]})
            if message["_id"] in sent:
                assert doc["status"] == "sent", trial
            else:
                assert doc["status"] == "scheduled", trial
                assert doc["attempts"] == 0 and "lockedUntil" not in doc, trial
        assert report.sent + report.handed_back == report.claimed, trial
    assert handed_back > 0  # the hand-back path really ran


# -- fairness -------------------------------------------------------------------


def test_one_tenants_backlog_does_not_starve_anothers_single_message(
    db: Any, clock: ManualClock
) -> None:
    world = World(db, clock)
    busy, quiet = world.tenants
    contact = world.contact(busy)
    now = clock.now()
    db.scheduledMessages.insert_many(
        [
            {
                "tenantId": busy,
                "contactId": contact,
                "channel": "sms",
                "status": "scheduled",
                "sendAt": now - timedelta(seconds=10_000 - i),
                "attempts": 0,
                "createdAt": now,
                "payload": {"body": "x"},
            }
            for i in range(10_000)
        ]
    )
    single = world.schedule(quiet)
    first = world.scheduler.claim_due("w", limit=50)
    assert single["_id"] in {m["_id"] for m in first}


def test_the_async_worker_is_the_twin_of_the_worker() -> None:
    from _support import assert_async_twin

    from nsn_store.worker._async import AsyncWorker

    assert_async_twin(Worker, AsyncWorker, plain=("stop",))
