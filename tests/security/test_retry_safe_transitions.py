"""Issue 9, mechanism 3: a transition repeated after a lost reply completes what is missing.

A lost reply is injected by letting a call apply and then raising ``AutoReconnect``
(``kit.plan.arm(Fault.AFTER, ...)``): the caller sees ``ConnectionFailedError`` and calls
again, as a worker does. Before: a repeated ``mark_sent`` was refused ("LeaseLostError ...
it is sent") and its event and counter were never written; a repeated ``mark_failed`` was
refused the same way; ``schedule`` returning an existing idempotent message never wrote its
``queued`` event; a repeated ``cancel`` was refused and lost its counter bump. Also here, the
issue's last paragraph: a provider's "sent" webhook that arrives before ``mark_sent``, and a
cancel while a worker is sending, leave the send recorded and linked. Sync and async.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from _scheduler_kit import (  # noqa: F401
    Fault,
    Kit,
    async_kit_fixture,
    do,
    lose_reply,
    once_before,
    sync_kit_fixture,
    twins,
)
from bson import ObjectId

from nsn_store.errors import ConnectionFailedError, InvalidTransitionError, LeaseLostError
from nsn_store.scheduler import _queries as q

LEASE = timedelta(minutes=5)
SENT_ONCE = {
    "messages.scheduled": 1,
    "messages.sent": 1,
    "messages.retried": 0,
    "messages.failed": 0,
    "messages.cancelled": 0,
}


async def assert_sent_once(kit: Kit, mid: ObjectId) -> None:
    """The message is sent, with one sent event, counted once as scheduled and once as sent."""
    assert (await kit.message(mid))["status"] == "sent"
    assert len(await kit.events(mid, "sent")) == 1
    assert await kit.counts() == SENT_ONCE


@pytest.mark.parametrize(
    ("method", "collection"),
    [
        ("find_one_and_update", q.MESSAGES),  # the status write
        ("insert_one", q.EVENTS),  # the sent event
        ("update_one", "counters"),  # the counter bump
    ],
    ids=["status", "event", "counter"],
)
async def mark_sent_repeated_after_a_lost_reply_completes_once(
    kit: Kit, method: str, collection: str
) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    lose_reply(kit, method, collection)
    with pytest.raises(ConnectionFailedError):
        await do(kit.sched.mark_sent(claimed, "w", provider_message_id="SM1"))
    again = await do(kit.sched.mark_sent(claimed, "w", provider_message_id="SM1"))
    assert again["status"] == "sent" and again["_id"] == mid
    await assert_sent_once(kit, mid)
    [event] = await kit.events(mid, "sent")
    assert event["providerMessageId"] == "SM1"


@pytest.mark.parametrize(
    ("method", "collection"),
    [
        ("find_one_and_update", q.MESSAGES),
        ("insert_one", q.EVENTS),
        ("update_one", "counters"),
    ],
    ids=["status", "event", "counter"],
)
async def mark_failed_repeated_after_a_lost_reply_spends_one_attempt(
    kit: Kit, method: str, collection: str
) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    lose_reply(kit, method, collection)
    with pytest.raises(ConnectionFailedError):
        await do(kit.sched.mark_failed(claimed, "w", "provider down"))
    again = await do(kit.sched.mark_failed(claimed, "w", "provider down"))
    stored = await kit.message(mid)
    assert again["status"] == stored["status"] == "scheduled"
    assert stored["attempts"] == 1 and again["sendAt"] == stored["sendAt"]
    [event] = await kit.events(mid, "failed")
    assert event["raw"] == {
        "error": "provider down",
        "attempts": 1,
        "final": False,
        "retryAt": stored["sendAt"],
    }
    assert (await kit.counts())["messages.retried"] == 1


async def a_final_failure_repeated_after_a_lost_reply_counts_once(kit: Kit) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    lose_reply(kit, "insert_one", q.EVENTS)
    with pytest.raises(ConnectionFailedError):
        await do(kit.sched.mark_failed(claimed, "w", "bad number", retry=False))
    assert (await do(kit.sched.mark_failed(claimed, "w", "bad number", retry=False)))[
        "status"
    ] == "failed"
    assert len(await kit.events(mid, "failed")) == 1
    assert (await kit.counts())["messages.failed"] == 1


@pytest.mark.parametrize(
    ("method", "collection"),
    [
        ("insert_one", q.MESSAGES),
        ("insert_one", q.EVENTS),
        ("update_one", "counters"),
    ],
    ids=["message", "event", "counter"],
)
async def schedule_repeated_with_its_key_writes_the_queued_event_once(
    kit: Kit, method: str, collection: str
) -> None:
    lose_reply(kit, method, collection)
    with pytest.raises(ConnectionFailedError):
        await kit.due(idempotency_key="appt-1")
    [mid] = await kit.due(idempotency_key="appt-1")
    assert await kit.count(q.MESSAGES) == 1
    assert [e["eventType"] for e in await kit.events(mid)] == ["queued"]
    assert (await kit.counts())["messages.scheduled"] == 1
    await kit.due(idempotency_key="appt-1")  # and a third call changes nothing
    assert len(await kit.events(mid)) == 1 and (await kit.counts())["messages.scheduled"] == 1


@pytest.mark.parametrize(
    ("method", "collection"),
    [
        ("find_one_and_update", q.MESSAGES),
        ("update_one", "counters"),
    ],
    ids=["status", "counter"],
)
async def cancel_repeated_after_a_lost_reply_succeeds_and_counts_once(
    kit: Kit, method: str, collection: str
) -> None:
    [mid] = await kit.due()
    lose_reply(kit, method, collection)
    with pytest.raises(ConnectionFailedError):
        await do(kit.sched.cancel(kit.tenant, mid))
    assert (await do(kit.sched.cancel(kit.tenant, mid)))["status"] == "cancelled"
    assert (await kit.counts())["messages.cancelled"] == 1


# --- the webhook that comes first, the cancel while sending -------------------------


async def a_sent_webhook_before_mark_sent_is_linked_to_the_message(kit: Kit) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    assert await do(kit.sched.record_provider_event(kit.tenant, "twilio", "SM7", "sent"))
    assert await do(kit.sched.record_provider_event(kit.tenant, "twilio", "SM7", "delivered"))
    await do(kit.sched.mark_sent(claimed, "w", provider_message_id="SM7"))
    [sent] = await kit.find(q.EVENTS, {"eventType": "sent"})
    assert sent["scheduledMessageId"] == mid and sent["providerMessageId"] == "SM7"
    [delivered] = await kit.find(q.EVENTS, {"eventType": "delivered"})
    assert delivered["scheduledMessageId"] == mid
    await assert_sent_once(kit, mid)


@pytest.mark.parametrize("lost", [None, "status", "counter"])
async def a_cancel_while_a_worker_sends_still_records_the_send(kit: Kit, lost: str | None) -> None:
    """The worker called the provider, then the client cancelled, then the worker reports
    the send: the message is sent, its event written, and the cancel's count taken back
    (keyed, so neither a repeated mark_sent nor a repeated cancel changes the counts)."""
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    assert (await do(kit.sched.cancel(kit.tenant, mid)))["status"] == "cancelled"
    if lost == "status":
        lose_reply(kit, "find_one_and_update", q.MESSAGES)
    elif lost == "counter":
        lose_reply(kit, "update_one", "counters")
    sent = await kit.retried(lambda: kit.sched.mark_sent(claimed, "w", provider_message_id="SM8"))
    assert sent["status"] == "sent"
    await assert_sent_once(kit, mid)
    with pytest.raises(InvalidTransitionError, match="sent"):  # too late to cancel it now
        await do(kit.sched.cancel(kit.tenant, mid))
    await assert_sent_once(kit, mid)


async def a_cancel_whose_count_was_lost_is_made_whole_by_the_send(kit: Kit) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    lose_reply(kit, "update_one", "counters")
    with pytest.raises(ConnectionFailedError):  # cancelled, its count never written
        await do(kit.sched.cancel(kit.tenant, mid))
    await do(kit.sched.mark_sent(claimed, "w"))
    await assert_sent_once(kit, mid)


async def a_worker_that_gave_a_message_back_cannot_record_a_send_after_a_cancel(kit: Kit) -> None:
    """Only a claim that held the message when it was cancelled may record its send."""
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    await do(kit.sched.mark_failed(claimed, "w", "busy"))  # back to scheduled
    await do(kit.sched.cancel(kit.tenant, mid))
    with pytest.raises(LeaseLostError):
        await do(kit.sched.mark_sent(claimed, "w"))
    assert (await kit.message(mid))["status"] == "cancelled"
    assert (await kit.counts())["messages.cancelled"] == 1


@pytest.mark.parametrize(
    ("fault", "method", "collection"),
    [
        (Fault.BEFORE, "find_one_and_update", q.MESSAGES),
        (Fault.AFTER, "find_one_and_update", q.MESSAGES),
        (Fault.BEFORE, "insert_one", q.EVENTS),
        (Fault.AFTER, "insert_one", q.EVENTS),
        (Fault.BEFORE, "update_one", "counters"),
        (Fault.AFTER, "update_one", "counters"),
        (Fault.BEFORE, "update_one", q.MESSAGES),
    ],
    ids=[
        "status",
        "status-reply-lost",
        "event",
        "event-reply-lost",
        "counter",
        "counter-reply-lost",
        "marker",
    ],
)
async def a_give_up_that_failed_half_way_is_completed_by_the_next_claim(
    kit: Kit, fault: Fault, method: str, collection: str
) -> None:
    """A message whose lease expired on its last attempt is failed by the next claim,
    status first; the status keeps lockedUntil as a "follow-ups pending" marker, so
    whichever write fails (before it applies or with its reply lost), the next claim
    completes it, and the event and count stay single."""
    [mid] = await kit.due()
    for _ in range(3):  # max_attempts=3: each worker claims it and dies
        await kit.claim("dies", lease=LEASE)
        kit.clock.advance(LEASE)
    kit.plan.arm(fault, method=method, collection=collection)
    with pytest.raises(ConnectionFailedError):
        await kit.claim("sweeper")
    assert await kit.claim("sweeper") == []
    message = await kit.message(mid)
    assert message["status"] == "failed" and "lockedUntil" not in message
    assert len(await kit.events(mid, "failed")) == 1
    assert (await kit.counts())["messages.failed"] == 1


async def a_give_up_that_loses_to_a_cancel_takes_its_follow_ups_back(kit: Kit) -> None:
    """A cancel that lands before the give-up's status write wins: nothing of a failure
    is written (the give-up writes its follow-ups only after its status)."""
    [mid] = await kit.due()
    for _ in range(3):
        await kit.claim("dies", lease=LEASE)
        kit.clock.advance(LEASE)
    once_before(kit, "find_one_and_update", q.MESSAGES, lambda: kit.sched.cancel(kit.tenant, mid))
    assert await kit.claim("sweeper") == []
    assert (await kit.message(mid))["status"] == "cancelled"
    assert await kit.events(mid, "failed") == []
    counts = await kit.counts()
    assert (counts["messages.failed"], counts["messages.cancelled"]) == (0, 1)


async def a_failure_repeated_after_the_message_was_claimed_again_completes_its_count(
    kit: Kit,
) -> None:
    """The retry's count was lost with the reply, and by the time the worker repeats the
    call the backoff has passed and another worker holds the next attempt: the repeat
    completes the earlier attempt's count (found through its keyed event), once."""
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    lose_reply(kit, "update_one", "counters")
    with pytest.raises(ConnectionFailedError):
        await do(kit.sched.mark_failed(claimed, "w", "provider down"))
    kit.clock.advance(hours=7)  # past any backoff
    [second] = await kit.claim("other", lease=LEASE)
    assert second["attempts"] == 2
    await do(kit.sched.mark_failed(claimed, "w", "provider down"))
    await do(kit.sched.mark_failed(claimed, "w", "provider down"))
    assert (await kit.counts())["messages.retried"] == 1
    assert (await kit.message(mid))["lockedBy"] == "other"  # the next attempt is untouched


for _scenario in (
    mark_sent_repeated_after_a_lost_reply_completes_once,
    mark_failed_repeated_after_a_lost_reply_spends_one_attempt,
    a_final_failure_repeated_after_a_lost_reply_counts_once,
    schedule_repeated_with_its_key_writes_the_queued_event_once,
    cancel_repeated_after_a_lost_reply_succeeds_and_counts_once,
    a_sent_webhook_before_mark_sent_is_linked_to_the_message,
    a_cancel_while_a_worker_sends_still_records_the_send,
    a_cancel_whose_count_was_lost_is_made_whole_by_the_send,
    a_worker_that_gave_a_message_back_cannot_record_a_send_after_a_cancel,
    a_give_up_that_failed_half_way_is_completed_by_the_next_claim,
    a_give_up_that_loses_to_a_cancel_takes_its_follow_ups_back,
    a_failure_repeated_after_the_message_was_claimed_again_completes_its_count,
):
    globals().update(twins(_scenario))
