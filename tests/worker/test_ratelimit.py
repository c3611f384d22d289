"""Provider rate limits: token buckets shared by every worker, reserved once per batch.

Time is a ``ManualClock`` throughout: the buckets refill by the time it says
passed, and the checks count sends per window of that time and round trips,
never wall-clock durations.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from test_worker import World

from nsn_store._flow import TripCounter
from nsn_store._flow import run as run_flow
from nsn_store.clock import ManualClock
from nsn_store.errors import InvalidArgumentError
from nsn_store.migration._runner import init_schema
from nsn_store.worker import RESEND_TEAM, TWILIO, RateLimit, RateLimits
from nsn_store.worker._async import AsyncWorker
from nsn_store.worker._delivery import Delivery, load_deliveries
from nsn_store.worker._ratelimit import (
    Bucket,
    admit,
    message_cost,
    reserve,
    twilio_number_kind,
)
from nsn_store.worker._senders import FakeSender
from nsn_store.worker._worker import Worker

SECOND = timedelta(seconds=1)
NUMBER = "+15550000"  # the World's tenants send SMS from this long code


def delivery(**fields: Any) -> Delivery:
    values: dict[str, Any] = {
        "message_id": ObjectId(),
        "tenant_id": ObjectId(),
        "contact_id": ObjectId(),
        "channel": "sms",
        "to": "+15550100",
        "body": "Hi",
        "attempt": 1,
        "provider": "twilio",
        "from_address": "+15551230000",
        **fields,
    }
    return Delivery(**values)


def max_in_window(times: list[datetime], window: timedelta) -> int:
    """Return the most events in any half-open window [t, t + window) (a window's busiest
    start is an event's own time)."""
    times = sorted(times)
    return max(
        (bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)),
        default=0,
    )


# -- which buckets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("+15551234567", "long_code"),
        ("+18005551234", "toll_free"),
        ("+18885551234", "toll_free"),
        ("+448005551234", "long_code"),  # 800 after +44 is not NANP toll-free
        ("12345", "short_code"),
        ("ACME", "alphanumeric"),
        (None, "long_code"),
    ],
)
def test_twilio_senders_are_classified_by_number_kind(address: str | None, kind: str) -> None:
    assert twilio_number_kind(address) == kind


def test_the_provider_defaults_are_the_documented_ones() -> None:
    assert {kind: limit.per_second for kind, limit in TWILIO.items()} == {
        "long_code": 1.0,
        "toll_free": 3.0,
        "short_code": 100.0,
        "alphanumeric": 10.0,
    }
    assert RESEND_TEAM.per_second == 2.0
    assert all(limit.burst == 1.0 for limit in [*TWILIO.values(), RESEND_TEAM])


def test_a_delivery_draws_from_its_sender_tenant_and_channel_buckets_narrowest_first() -> None:
    limits = RateLimits(tenants={"sms": RateLimit(10)}, channels={"sms": RateLimit(500)})
    sms = delivery(from_address="+18005551234")
    buckets = limits.buckets(sms)
    assert [(b.scope, b.limit.per_second) for b in buckets] == [
        ("sender", 3.0),
        ("tenant", 10.0),
        ("channel", 500.0),
    ]
    assert buckets[0].key == "sender|sms|+18005551234" and buckets[0].tenant_id is None
    assert buckets[1].key == f"tenant:{sms.tenant_id}|sms" and buckets[1].tenant_id == sms.tenant_id


def test_resend_is_limited_per_team_that_is_per_credentials_reference() -> None:
    email = delivery(channel="email", provider="resend", credentials_ref="env:RESEND_KEY")
    [team] = RateLimits().buckets(email)
    assert (team.key, team.limit) == ("team|email|env:RESEND_KEY", RESEND_TEAM)
    faster = RateLimits(teams={"env:RESEND_KEY": RateLimit(10, burst=10)}).buckets(email)
    assert faster[0].limit.per_second == 10


def test_overrides_win_and_unknown_providers_are_unlimited_by_default() -> None:
    limits = RateLimits(senders={"+15551230000": RateLimit(30, burst=5)})
    assert limits.buckets(delivery())[0].limit == RateLimit(30, burst=5)
    assert RateLimits().buckets(delivery(provider="acme-sms")) == []
    assert RateLimits(providers=False).buckets(delivery()) == []


def test_an_sms_costs_its_segments_at_its_sender_and_one_message_elsewhere() -> None:
    long_text = delivery(body="x" * 161)  # GSM-7: two segments of 153
    assert message_cost(long_text, "sender") == 2.0
    assert message_cost(long_text, "tenant") == 1.0
    assert message_cost(delivery(channel="email", body="x" * 5000), "sender") == 1.0


@pytest.mark.parametrize(
    "build",
    [
        lambda: RateLimit(0),
        lambda: RateLimit(-1),
        lambda: RateLimit(float("nan")),
        lambda: RateLimit(1, burst=0.5),
        lambda: RateLimit(True),  # type: ignore[arg-type]
        lambda: RateLimits(tenants={"fax": RateLimit(1)}),
        lambda: RateLimits(senders={"+1555": 3}),  # type: ignore[dict-item]
        lambda: RateLimits(providers="yes"),  # type: ignore[arg-type]
    ],
)
def test_bad_limits_are_refused_naming_the_argument(build: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        build()


def test_a_worker_refuses_rate_limits_that_are_not_rate_limits(world: World) -> None:
    with pytest.raises(InvalidArgumentError, match="rate_limits"):
        Worker(world.db, FakeSender(), rate_limits={"sms": 1})  # type: ignore[arg-type]


# -- the reservation ---------------------------------------------------------------


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock)


def due_now(world: World, count: int) -> None:
    """Schedule ``count`` SMS of the first tenant, due now (sent from ``NUMBER``)."""
    tenant = world.tenants[0]
    contact = world.contact(tenant)
    for _ in range(count):
        world.scheduler.schedule(tenant, contact, "sms", world.clock.now(), payload={"body": "Hi"})


def claimed(world: World, count: int, *, worker: str = "w") -> list[Delivery]:
    due_now(world, count)
    batch = world.scheduler.claim_due(worker, limit=count)
    return [d for d in run_flow(world.db, load_deliveries(batch)) if isinstance(d, Delivery)]


@pytest.mark.parametrize("size", [1, 10, 100])
def test_a_batch_reserves_once_per_bucket_and_defers_the_rest_in_one_write(
    world: World, size: int
) -> None:
    deliveries = claimed(world, size)
    limits = RateLimits(senders={NUMBER: RateLimit(2)})
    trips = TripCounter()
    admission = run_flow(world.db, admit(deliveries, limits, "w", world.clock.now()), trips)
    assert len(admission.admitted) == 1  # a full bucket of one token
    assert len(admission.deferred) == admission.handed_back == size - 1
    assert trips.count == (1 if size == 1 else 2)  # the reservation, then the deferral


def test_deferred_messages_wait_for_their_tokens_with_their_attempts_unspent(
    world: World,
) -> None:
    deliveries = claimed(world, 4)
    now = world.clock.now()
    admission = run_flow(
        world.db, admit(deliveries, RateLimits(senders={NUMBER: RateLimit(2)}), "w", now)
    )
    assert [when - now for _, when in admission.deferred] == [SECOND / 2, SECOND, SECOND * 1.5]
    for sent, _ in admission.deferred:
        doc = world.db.scheduledMessages.find_one({"_id": sent.message_id})
        assert (doc["status"], doc["attempts"], "lockedBy" in doc) == ("scheduled", 0, False)
        assert not doc.get("lastError")
    assert world.db.messageEvents.count_documents({"eventType": "failed"}) == 0


def test_a_wider_bucket_that_refuses_gives_the_narrower_ones_tokens_back(world: World) -> None:
    deliveries = claimed(world, 3)
    limits = RateLimits(senders={NUMBER: RateLimit(100, burst=10)}, tenants={"sms": RateLimit(1)})
    trips = TripCounter()
    admission = run_flow(world.db, admit(deliveries, limits, "w", world.clock.now()), trips)
    assert len(admission.admitted) == 1
    sender_bucket = world.db.rateLimitBuckets.find_one({"_id": f"sender|sms|{NUMBER}"})
    assert sender_bucket["tokens"] == 9.0  # 10 - 3 taken + 2 given back
    assert trips.count == 4  # two reservations, one give-back, one deferral


def test_a_bucket_document_holds_what_the_contract_names(world: World) -> None:
    deliveries = claimed(world, 1)
    limits = RateLimits(tenants={"sms": RateLimit(5, burst=2)})
    run_flow(world.db, admit(deliveries, limits, "w", world.clock.now()))
    doc = world.db.rateLimitBuckets.find_one({"tenantId": world.tenants[0]})
    assert doc == {
        "_id": f"tenant:{world.tenants[0]}|sms",
        "tenantId": world.tenants[0],
        "channel": "sms",
        "tokens": 1.0,
        "capacity": 2.0,
        "refillPerSecond": 5.0,
        "updatedAt": world.clock.now(),
    }


def test_a_message_costlier_than_the_bucket_passes_when_full_and_leaves_a_debt(
    world: World,
) -> None:
    bucket = Bucket("sender|sms|x", "sender", "sms", RateLimit(1))
    now = world.clock.now()
    first = run_flow(world.db, reserve(bucket, [3.0, 1.0], now))
    assert first.granted == 1  # three segments on a one-token bucket: it goes, tokens -2
    later = run_flow(world.db, reserve(bucket, [1.0], now + 2 * SECOND))
    assert later.granted == 0 and later.available_at(0) == now + 3 * SECOND


def test_twenty_workers_sharing_a_two_per_second_bucket_never_exceed_it_over_an_hour(
    db: Any, clock: ManualClock
) -> None:
    """20 workers reserve for batches of 1-6 messages every 0.1-0.7 s of one simulated
    hour, sometimes two at the same instant, far more than the bucket allows: every
    half-open one-second window holds at most 2 grants, the bucket is kept busy (not
    starved), and each worker's reservation for a batch is one round trip."""
    init_schema(db)  # rateLimitBuckets with its validator
    rng = random.Random(20260105)
    bucket = Bucket("sender|sms|+15550001111", "sender", "sms", RateLimit(2))
    start = clock.now()
    grants: list[datetime] = []
    trips = {worker: TripCounter() for worker in range(20)}
    batches: Counter[int] = Counter()
    while clock.now() - start < timedelta(hours=1):
        clock.advance(milliseconds=rng.randint(100, 700))
        for worker in rng.sample(range(20), 2 if rng.random() < 0.2 else 1):
            costs = [1.0] * rng.randint(1, 6)
            grant = run_flow(db, reserve(bucket, costs, clock.now()), trips[worker])
            batches[worker] += 1
            grants += [clock.now()] * grant.granted
    assert max_in_window(grants, SECOND) <= 2  # zero over-limit sends, in every window
    # Demand (~9/s) keeps the bucket busy; a one-token bucket drops what accrues beyond
    # one token between two looks, so it grants less than its full 7,200 here.
    assert len(grants) >= 0.6 * 2 * 3600
    assert all(trips[w].count == batches[w] for w in trips)  # one trip per batch


def test_twenty_workers_send_at_most_two_per_second_and_deferred_messages_keep_attempts(
    db: Any, clock: ManualClock
) -> None:
    """The whole path: 20 Worker objects share the database and a 2/s sender bucket;
    80 messages are due at once. Every window of one second holds at most 2 sends,
    every message is sent once on its first attempt however often it was deferred,
    and the worker's round trips per claimed batch stay bounded."""
    world = World(db, clock)
    due_now(world, 80)
    sends: list[datetime] = []
    sent_ids: Counter[Any] = Counter()

    def sender(delivery: Delivery) -> str:
        sends.append(clock.now())
        sent_ids[delivery.message_id] += 1
        return "ok"

    limits = RateLimits(senders={NUMBER: RateLimit(2)})
    workers = [
        Worker(
            db,
            sender,
            worker_id=f"w{i}",
            clock=clock,
            scheduler=world.scheduler,
            watch=False,
            lease=30,
            concurrency=2,
            batch_size=4,
            rate_limits=limits,
        )
        for i in range(20)
    ]
    runs: Counter[int] = Counter()
    rng = random.Random(7)
    start = clock.now()
    while db.scheduledMessages.count_documents({"status": "sent"}) < 80:
        assert clock.now() - start < timedelta(minutes=5)
        clock.advance(milliseconds=rng.randint(100, 700))
        for i in rng.sample(range(20), 2):
            workers[i].run_once()
            runs[i] += 1
    assert max_in_window(sends, SECOND) <= 2
    assert len(sent_ids) == 80 and set(sent_ids.values()) == {1}
    assert {doc["attempts"] for doc in db.scheduledMessages.find()} == {1}
    assert sum(w.report.deferred for w in workers) > 80  # deferred, several times each
    for i, w in enumerate(workers):
        # per claimed batch: contacts and tenants (no templates), one reservation and one
        # deferral at most; plus the registry's register and deregister per run_once
        assert w.trips.count - 2 * runs[i] <= 4 * w.report.claims


async def test_the_async_worker_defers_the_same_way(
    db: Any, clock: ManualClock, backend: str
) -> None:
    if backend != "embedded":
        pytest.skip("the async twin of a server database is covered by the server suite")
    from nsn_store.testing import async_client

    world = World(db, clock)
    due_now(world, 3)
    adb = async_client(db.client)[db.name]
    sent: list[Any] = []

    async def sender(delivery: Delivery) -> str:
        sent.append(delivery.message_id)
        return "ok"

    worker = AsyncWorker(
        adb,
        sender,
        clock=clock,
        watch=False,
        lease=30,
        rate_limits=RateLimits(senders={NUMBER: RateLimit(1)}),
    )
    report = await worker.run_once()
    assert (report.sent, report.deferred) == (1, 2)
    clock.advance(seconds=1)
    report = await worker.run_once()
    assert report.sent == 2
    assert {d["attempts"] for d in db.scheduledMessages.find({"status": "scheduled"})} == {0}


def test_the_cli_worker_keeps_to_the_provider_limits_with_rate_limits() -> None:
    import json
    import uuid

    from click.testing import CliRunner

    from nsn_store import connection
    from nsn_store.cli import main
    from nsn_store.clock import SystemClock

    uri = f"mongomock://rate-limits-{uuid.uuid4().hex[:10]}/nsn"
    world = World(connection.connect(uri), SystemClock())  # type: ignore[arg-type]
    due_now(world, 3)
    result = CliRunner().invoke(
        main, ["worker", "--once", "--json", "--rate-limits", "--uri", uri, "--log-level", "ERROR"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # one token a second on the tenants' long code: 1 now, the others deferred (unless
    # this run took over a second on a busy machine, when one more may have gone)
    assert report["sent"] >= 1 and report["deferred"] >= 1
    left = world.db.scheduledMessages.count_documents({"status": "scheduled", "attempts": 0})
    assert report["sent"] + left == 3
