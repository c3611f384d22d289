"""Issue 9, mechanisms 3 and 10: every scheduler argument is checked before the first write.

A bad argument raises ``InvalidArgumentError`` (an ``NsnStoreError`` and a ``ValueError``)
naming it, and nothing is written: no message, event or counter, and the claimed message
is unchanged. Before: a ``send_at`` that is a date or a string, an unencodable payload, a
NaN or huge lease, ``limit=1.5`` and the like raised raw ``AttributeError``,
``InvalidDocument``, ``OverflowError``, ``TypeError`` or ``ValueError``, some after a write
(an empty ``provider_message_id`` left a message sent without its event). Sync and async.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from _scheduler_kit import Kit, async_kit_fixture, do, sync_kit_fixture, twins  # noqa: F401 (fixtures)
from bson import ObjectId

from nsn_store.errors import InvalidArgumentError, NsnStoreError
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import AsyncScheduler, Scheduler

LEASE = timedelta(minutes=5)
Case = Callable[[Kit, dict[str, Any]], Any]


def _schedule(**override: Any) -> Case:
    def call(kit: Kit, claimed: dict[str, Any]) -> Any:
        args = {
            "tenant_id": kit.tenant,
            "contact_id": kit.contact,
            "channel": "sms",
            "send_at": kit.clock.now(),
            **override,
        }
        return kit.sched.schedule(**args)

    return call


def _method(name: str, *args: Any, **kwargs: Any) -> Case:
    """Call ``name`` on the claimed document by worker ``w``, with these arguments."""

    def call(kit: Kit, claimed: dict[str, Any]) -> Any:
        positional = [claimed if arg is CLAIMED else arg for arg in args]
        return getattr(kit.sched, name)(*positional, **kwargs)

    return call


CLAIMED = object()
SURROGATE = "SM\ud800"
BAD = [
    # schedule
    ("send_at", _schedule(send_at=date(2026, 1, 5)), "send-at-date"),
    ("send_at", _schedule(send_at="2026-01-05T09:00:00Z"), "send-at-string"),
    ("send_at", _schedule(send_at=None), "send-at-none"),
    ("tenant_id", _schedule(tenant_id={"$ne": None}), "tenant-operator"),
    ("contact_id", _schedule(contact_id=12), "contact-number"),
    ("template_id", _schedule(template_id="not-an-id"), "template-string"),
    ("workflow_step_id", _schedule(workflow_step_id={}), "step-dict"),
    ("channel", _schedule(channel="fax"), "channel-unknown"),
    ("channel", _schedule(channel=None), "channel-none"),
    ("payload", _schedule(payload={"tags": {1, 2}}), "payload-set"),
    ("payload", _schedule(payload={"x": object()}), "payload-object"),
    ("payload", _schedule(payload={"n": 2**70}), "payload-huge-int"),
    ("payload", _schedule(payload={"name": SURROGATE}), "payload-surrogate"),
    ("payload", _schedule(payload={"blob": "x" * (u.PAYLOAD_LIMIT + 1)}), "payload-too-big"),
    ("payload", _schedule(payload=["a"]), "payload-list"),
    ("idempotency_key", _schedule(idempotency_key=""), "key-empty"),
    ("idempotency_key", _schedule(idempotency_key=7), "key-number"),
    ("idempotency_key", _schedule(idempotency_key="k" * 201), "key-too-long"),
    # claim_due
    ("limit", _method("claim_due", "w2", limit=1.5), "limit-float"),
    ("limit", _method("claim_due", "w2", limit=0), "limit-zero"),
    ("limit", _method("claim_due", "w2", limit=True), "limit-bool"),
    ("limit", _method("claim_due", "w2", limit=10**9), "limit-huge"),
    ("lease", _method("claim_due", "w2", lease=float("nan")), "lease-nan"),
    ("lease", _method("claim_due", "w2", lease=1e308), "lease-1e308"),
    ("lease", _method("claim_due", "w2", lease=timedelta(days=10**6)), "lease-huge"),
    ("lease", _method("claim_due", "w2", lease=timedelta(microseconds=500)), "lease-500us"),
    ("lease", _method("claim_due", "w2", lease=timedelta(milliseconds=999)), "lease-999ms"),
    ("lease", _method("claim_due", "w2", lease="300"), "lease-string"),
    ("worker_id", _method("claim_due", ""), "worker-empty"),
    ("worker_id", _method("claim_due", None), "worker-none"),
    ("worker_id", _method("claim_due", "w" * 201), "worker-too-long"),
    ("now", _method("claim_due", "w2", now=date(2026, 1, 5)), "now-date"),
    ("now", _method("claim_due", "w2", now="now"), "now-string"),
    # mark_sent
    (
        "provider_message_id",
        _method("mark_sent", CLAIMED, "w", provider_message_id=""),
        "pmid-empty",
    ),
    (
        "provider_message_id",
        _method("mark_sent", CLAIMED, "w", provider_message_id="S" * 201),
        "pmid-too-long",
    ),
    (
        "provider_message_id",
        _method("mark_sent", CLAIMED, "w", provider_message_id=5),
        "pmid-number",
    ),
    (
        "provider_message_id",
        _method("mark_sent", CLAIMED, "w", provider_message_id=SURROGATE),
        "pmid-surrogate",
    ),
    ("provider", _method("mark_sent", CLAIMED, "w", provider="carrier-pigeon"), "provider-unknown"),
    ("worker_id", _method("mark_sent", CLAIMED, None), "sent-worker-none"),
    ("message_id", _method("mark_sent", ["$ne", None], "w"), "sent-message-list"),
    ("message['_id']", _method("mark_sent", {"_id": {"$ne": None}}, "w"), "sent-message-op"),
    # mark_failed, extend_lease
    ("error", _method("mark_failed", CLAIMED, "w", 5), "error-number"),
    ("error", _method("mark_failed", CLAIMED, "w", None), "error-none"),
    ("retry", _method("mark_failed", CLAIMED, "w", "x", retry="no"), "retry-string"),
    ("lease", _method("extend_lease", CLAIMED, "w", float("inf")), "extend-inf"),
    ("lease", _method("extend_lease", CLAIMED, "w", timedelta(0)), "extend-zero"),
    # cancel, webhooks, backlog
    ("tenant_id", _method("cancel", {"$gt": ""}, CLAIMED), "cancel-tenant-op"),
    ("message_id", _method("cancel", ObjectId(), 1), "cancel-message-number"),
    (
        "event_type",
        _method("record_provider_event", ObjectId(), "twilio", "SM1", "read"),
        "event-unknown",
    ),
    (
        "provider",
        _method("record_provider_event", ObjectId(), "pigeon", "SM1", "sent"),
        "event-provider",
    ),
    (
        "provider_message_id",
        _method("record_provider_event", ObjectId(), "twilio", "", "sent"),
        "event-pmid-empty",
    ),
    (
        "raw",
        _method("record_provider_event", ObjectId(), "twilio", "SM1", "sent", raw={"x": {1}}),
        "event-raw-set",
    ),
    (
        "occurred_at",
        _method(
            "record_provider_event", ObjectId(), "twilio", "SM1", "sent", occurred_at="yesterday"
        ),
        "event-occurred-string",
    ),
    ("tenant_id", _method("backlog", {"$ne": None}), "backlog-tenant-op"),
    ("now", _method("backlog", now=20260105), "backlog-now-number"),
]


@pytest.mark.parametrize(
    ("argument", "case"), [(a, c) for a, c, _ in BAD], ids=[i for _, _, i in BAD]
)
async def a_bad_argument_is_refused_by_name_before_any_write(
    kit: Kit, argument: str, case: Case
) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    before, message = await kit.writes(), await kit.message(mid)
    with pytest.raises(InvalidArgumentError) as refused:
        await do(case(kit, claimed))
    assert refused.value.argument == argument
    assert isinstance(refused.value, NsnStoreError) and isinstance(refused.value, ValueError)
    assert await kit.writes() == before
    assert await kit.message(mid) == message


async def a_minimum_lease_is_granted_live(kit: Kit) -> None:
    """The shortest lease accepted (1 s) still ends after the claim's now."""
    await kit.due()
    [claimed] = await kit.claim("w", lease=u.MIN_LEASE)
    assert claimed["lockedUntil"] == kit.clock.now() + u.MIN_LEASE > kit.clock.now()
    assert await do(kit.sched.claim_due("w2", lease=u.MAX_LEASE)) == []


async def lone_surrogates_in_an_error_are_replaced_not_fatal(kit: Kit) -> None:
    """A provider's error text is recorded even if it cannot be encoded as it is."""
    await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    failed = await do(kit.sched.mark_failed(claimed, "w", "bad \ud800 byte", retry=False))
    assert failed["status"] == "failed" and failed["lastError"] == "bad ? byte"


for _scenario in (
    a_bad_argument_is_refused_by_name_before_any_write,
    a_minimum_lease_is_granted_live,
    lone_surrogates_in_an_error_are_replaced_not_fatal,
):
    globals().update(twins(_scenario))


@pytest.mark.parametrize("cls", [Scheduler, AsyncScheduler], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("argument", "options"),
    [
        ("max_attempts", {"max_attempts": 0}),
        ("max_attempts", {"max_attempts": 1.5}),
        ("max_attempts", {"max_attempts": True}),
        ("max_attempts", {"max_attempts": 10**12}),
        ("base_backoff", {"base_backoff": float("nan")}),
        ("base_backoff", {"base_backoff": timedelta(seconds=-1)}),
        ("base_backoff", {"base_backoff": timedelta(days=30)}),
        ("base_backoff", {"base_backoff": "30s"}),
        ("server_time", {"server_time": "yes"}),
        ("offset_refresh", {"offset_refresh": float("nan")}),
        ("clock", {"clock": "system"}),
        ("rng", {"rng": 42}),
        ("counter", {"counter": object()}),
    ],
    ids=[
        "attempts-zero",
        "attempts-float",
        "attempts-bool",
        "attempts-huge",
        "backoff-nan",
        "backoff-negative",
        "backoff-month",
        "backoff-string",
        "server-time-string",
        "refresh-nan",
        "clock-string",
        "rng-number",
        "counter-without-add",
    ],
)
def test_constructor_options_are_checked(cls: type, argument: str, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        cls(object(), **options)
    assert refused.value.argument == argument


def test_a_naive_send_at_is_taken_as_utc(sync_kit: Kit) -> None:
    kit = sync_kit
    naive = datetime(2026, 1, 5, 9, 30)
    message = kit.sched.schedule(kit.tenant, kit.contact, "sms", naive)
    assert message["sendAt"].replace(tzinfo=None) == naive
