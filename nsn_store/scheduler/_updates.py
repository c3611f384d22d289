"""Build the scheduled-message writes: updates, new documents, retry delays, refusals.

Everything here is pure: ``now``, leases, random numbers and ids come in as
arguments, so the builders are tested without a database and shared by the
sync :class:`~nsn_store.scheduler.Scheduler` and its asyncio twin. The reads
(each naming the index that serves it) live in :mod:`nsn_store.scheduler._queries`,
which re-exports every name defined here.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from bson import ObjectId

from nsn_store._types import DocumentIn
from nsn_store.arguments import (
    as_object_id,
    check_datetime,
    check_document,
    check_duration,
    check_text,
    optional_object_id,
)
from nsn_store.clock import to_bson_time
from nsn_store.errors import (
    InvalidArgumentError,
    InvalidTransitionError,
    LeaseLostError,
    NotFoundError,
    NsnStoreError,
)
from nsn_store.schema._models import CHANNELS, EVENT_TYPES, PROVIDERS

SCHEDULED, PROCESSING, SENT, FAILED, CANCELLED = (
    "scheduled",
    "processing",
    "sent",
    "failed",
    "cancelled",
)
CANCELLABLE = (SCHEDULED, PROCESSING)
DEFAULT_PROVIDER = {"sms": "twilio", "email": "resend"}

#: ``lastError`` is free text from a provider; keep it bounded like the validator.
ERROR_LIMIT = 1000
DEFAULT_LEASE = timedelta(minutes=5)
#: A shorter lease could end before the claim's reply reaches the worker.
MIN_LEASE = timedelta(seconds=1)
#: A longer one would keep a dead worker's messages unsent for longer; heartbeat instead.
MAX_LEASE = timedelta(hours=1)
DEFAULT_BASE_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=6)
#: ``max_attempts`` is at most this (a bound, not advice: each retry waits up to 6 h).
MAX_ATTEMPTS = 10_000
#: Ids, keys, worker ids and provider message ids are ``Identifier`` strings in the model.
TEXT_LIMIT = 200
#: A payload (rendering variables) or a webhook's raw body, in bytes of BSON.
PAYLOAD_LIMIT = 64 * 1024

Filter = dict[str, Any]
Update = dict[str, Any]
LOCK_FIELDS = {"lockedBy": "", "lockedUntil": ""}
#: Leaving ``processing`` by a failure also drops the claim (a sent or cancelled message keeps it).
CLAIM_FIELDS = {**LOCK_FIELDS, "claimToken": ""}


# --- arguments: checked before any I/O, naming the argument -------------------


class ClaimRef(NamedTuple):
    """A message as a finishing write names it: id, and what the claimed document adds.

    ``tenant`` (the shard key), ``token`` (the claim) and ``attempts`` come from
    the document ``claim_due`` returned; a bare id gives none of them.
    """

    id: ObjectId
    tenant: ObjectId | None = None
    token: str | None = None
    attempts: int | None = None


def claim_ref(message: Any) -> ClaimRef:
    """Return the :class:`ClaimRef` of a claimed document or a bare message id."""
    if not isinstance(message, Mapping):
        return ClaimRef(as_object_id(message, "message_id"))
    token = message.get("claimToken")
    attempts = message.get("attempts")
    if attempts is not None and (type(attempts) is not int or attempts < 0):
        raise InvalidArgumentError("message['attempts'] must be a whole number", argument="message")
    return ClaimRef(
        as_object_id(message.get("_id"), "message['_id']"),
        optional_object_id(message.get("tenantId"), "message['tenantId']"),
        None if token is None else check_text(token, "message['claimToken']", maximum=TEXT_LIMIT),
        attempts,
    )


def claimed_refs(messages: Any, argument: str = "messages") -> list[ClaimRef]:
    """Return the refs of claimed documents (each must carry its ``claimToken``).

    The batch operations (hand-back, heartbeat) touch only what these claims
    hold, so a bare id, which names no claim, is refused.
    """
    if isinstance(messages, Mapping | str | bytes) or not hasattr(messages, "__iter__"):
        raise InvalidArgumentError(
            f"{argument} must be a list of claimed documents", argument=argument
        )
    refs = [claim_ref(m) if isinstance(m, Mapping) else None for m in messages]
    if any(ref is None or ref.token is None for ref in refs):
        raise InvalidArgumentError(
            f"{argument} must be documents claim_due returned (with their claimToken)",
            argument=argument,
        )
    if len(refs) > 10_000:
        raise InvalidArgumentError(f"{argument} holds more than 10000 messages", argument=argument)
    return [ref for ref in refs if ref is not None]


def batch_filter(refs: list[ClaimRef], worker_id: str, now: datetime) -> Filter:
    """Match the messages these claims still hold with a live lease (for batch writes)."""
    return {
        "_id": {"$in": [r.id for r in refs]},
        "status": PROCESSING,
        "lockedBy": worker_id,
        "claimToken": {"$in": sorted({r.token for r in refs if r.token})},
        "lockedUntil": {"$gt": now},
    }


def release_update(now: datetime) -> Update:
    """Hand a claimed, unstarted message back: scheduled again, its attempt not spent."""
    return {
        "$set": {"status": SCHEDULED, "updatedAt": now},
        "$unset": CLAIM_FIELDS,
        "$inc": {"attempts": -1},
    }


def check_worker(worker_id: Any) -> str:
    """Return a worker id fit for ``lockedBy``."""
    return check_text(worker_id, "worker_id", maximum=TEXT_LIMIT)


def check_lease(lease: Any, argument: str = "lease") -> timedelta:
    """Return a lease from ``MIN_LEASE`` to ``MAX_LEASE`` (a timedelta or seconds)."""
    return check_duration(lease, argument, minimum=MIN_LEASE, maximum=MAX_LEASE)


def check_max_attempts(value: Any) -> int:
    """Return ``max_attempts`` if it is a whole number from 1 to ``MAX_ATTEMPTS``."""
    if type(value) is not int or not 1 <= value <= MAX_ATTEMPTS:
        raise InvalidArgumentError(
            f"max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}", argument="max_attempts"
        )
    return value


def check_backoff(value: Any) -> timedelta:
    """Return ``base_backoff`` from 1 ms to ``MAX_BACKOFF``."""
    return check_duration(
        value, "base_backoff", minimum=timedelta(milliseconds=1), maximum=MAX_BACKOFF
    )


def check_choice(value: Any, argument: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{argument} must be one of {choices}", argument=argument)
    return value


def check_provider(provider: Any) -> str | None:
    """Refuse an unknown provider before a message is marked sent, not after."""
    return None if provider is None else check_choice(provider, "provider", PROVIDERS)


def check_provider_message_id(value: Any, argument: str = "provider_message_id") -> str:
    """Return a provider's message id: non-empty text of at most ``TEXT_LIMIT`` characters."""
    return check_text(value, argument, maximum=TEXT_LIMIT)


def check_flag(value: Any, argument: str) -> bool:
    """Return ``value`` if it is a bool (1, "no" and None are refused, not guessed)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{argument} must be True or False", argument=argument)
    return value


def check_error(error: Any) -> str:
    """Return a failure's text for ``lastError``, bounded, encodable and never empty."""
    if not isinstance(error, str | BaseException):
        raise InvalidArgumentError("error must be a string or an exception", argument="error")
    return clip_error(error)


def check_event(
    tenant_id: Any,
    provider: Any,
    provider_message_id: Any,
    event_type: Any,
    occurred_at: Any,
    raw: Any,
) -> dict[str, Any]:
    """Check a provider webhook's arguments; return them as ``new_event`` keywords."""
    return {
        "tenant_id": as_object_id(tenant_id, "tenant_id"),
        "provider": check_choice(provider, "provider", PROVIDERS),
        "provider_message_id": check_provider_message_id(provider_message_id),
        "event_type": check_choice(event_type, "event_type", EVENT_TYPES),
        "occurred_at": None if occurred_at is None else check_datetime(occurred_at, "occurred_at"),
        "raw": None if raw is None else check_document(raw, "raw", maximum_bytes=PAYLOAD_LIMIT),
    }


#: The most message ids one requeue names (its filter stays far below a command's 16 MB).
MAX_IDS = 10_000


def check_ids(values: Any, argument: str) -> list[ObjectId]:
    """Return 1 to ``MAX_IDS`` distinct ids, sorted; refuse a string, a mapping, a bad id."""
    if isinstance(values, Mapping | str | bytes) or not hasattr(values, "__iter__"):
        raise InvalidArgumentError(f"{argument} must be a list of ids", argument=argument)
    ids = sorted({as_object_id(value, argument) for value in values})
    if not 1 <= len(ids) <= MAX_IDS:
        raise InvalidArgumentError(
            f"{argument} must name 1 to {MAX_IDS} messages", argument=argument
        )
    return ids


def check_window(since: Any, until: Any) -> tuple[datetime | None, datetime | None]:
    """Return a time window ``[since, until)`` at BSON precision; either end may be open."""
    start = None if since is None else to_bson_time(check_datetime(since, "since"))
    end = None if until is None else to_bson_time(check_datetime(until, "until"))
    if start is not None and end is not None and end <= start:
        raise InvalidArgumentError("until must come after since", argument="until")
    return start, end


@dataclass(frozen=True)
class ScheduleRequest:
    """A checked ``schedule`` call: every value is safe to write."""

    tenant: ObjectId
    contact: ObjectId
    channel: str
    send_at: datetime
    payload: dict[str, Any] | None = None
    workflow_step: ObjectId | None = None
    template: ObjectId | None = None
    idempotency_key: str | None = None

    def references(self) -> list[tuple[str, str, ObjectId]]:
        """Return ``(collection, name, id)`` of each document the message refers to."""
        named = [
            ("contacts", "contact", self.contact),
            ("templates", "template", self.template),
            ("workflowSteps", "workflow step", self.workflow_step),
        ]
        return [(collection, name, ref) for collection, name, ref in named if ref is not None]


def schedule_request(
    tenant_id: Any,
    contact_id: Any,
    channel: Any,
    send_at: Any,
    *,
    payload: Any = None,
    workflow_step_id: Any = None,
    template_id: Any = None,
    idempotency_key: Any = None,
) -> ScheduleRequest:
    """Check every ``schedule`` argument (before any I/O)."""
    return ScheduleRequest(
        tenant=as_object_id(tenant_id, "tenant_id"),
        contact=as_object_id(contact_id, "contact_id"),
        channel=check_choice(channel, "channel", CHANNELS),
        send_at=to_bson_time(check_datetime(send_at, "send_at")),
        payload=None
        if payload is None
        else check_document(payload, "payload", maximum_bytes=PAYLOAD_LIMIT),
        workflow_step=optional_object_id(workflow_step_id, "workflow_step_id"),
        template=optional_object_id(template_id, "template_id"),
        idempotency_key=None
        if idempotency_key is None
        else check_text(idempotency_key, "idempotency_key", maximum=TEXT_LIMIT),
    )


# --- keys: one per follow-up, so a repeated call finds its own ----------------


def follow_up_key(message_id: ObjectId, transition: str, attempt: int | None = None) -> str:
    """Return the key of one transition's follow-ups (its event ``_id``, its counter add).

    ``sent``, ``queued`` and ``cancelled`` happen at most once per message;
    ``failed`` once per attempt.
    """
    return f"{message_id}:{transition}" + ("" if attempt is None else f":{attempt}")


def failure_key(message_id: ObjectId, attempts: int, token: str | None) -> str:
    """Return the key of one failed attempt's follow-ups: its number and the claim that made it.

    The claim's token keeps the key unique when a requeue resets ``attempts``
    (attempt 1 after a requeue is not the first attempt 1). Every path that
    writes a failure's follow-ups knows that claim: the held document, the
    claimed document a worker passes back, or a given-up message (which keeps
    its token until its follow-ups are written). Without a token (a message
    claimed before claims carried one) the key is the attempt alone.
    """
    key = follow_up_key(message_id, FAILED, attempts)
    return key if token is None else f"{key}:{token}"


def event_id(key: str) -> ObjectId:
    """Return the ``_id`` of the event with follow-up ``key`` (96 bits of its SHA-256)."""
    return ObjectId(hashlib.sha256(key.encode()).digest()[:12])


# --- claiming ----------------------------------------------------------------


def claim_update(worker_id: str, now: datetime, lease_end: datetime, token: str) -> Update:
    """Stamp the worker, its lease end, this claim's token and one more attempt onto messages."""
    return {
        "$set": {
            "status": PROCESSING,
            "lockedBy": worker_id,
            "lockedUntil": lease_end,
            "claimToken": token,
            "updatedAt": now,
        },
        "$inc": {"attempts": 1},
    }


def lease_end(now: datetime, lease: timedelta) -> datetime:
    """Return the end of a lease taken at ``now`` (at BSON precision)."""
    if lease <= timedelta(0):
        raise InvalidArgumentError(f"a lease must be positive, not {lease}", argument="lease")
    return to_bson_time(now + lease)


def abandoned_filter(message_id: ObjectId, now: datetime, attempts: int) -> Filter:
    """Match a message whose lease expired on its last attempt, if nobody took it since."""
    return {
        "_id": message_id,
        "status": PROCESSING,
        "lockedUntil": {"$lte": now},
        "attempts": attempts,
    }


def abandoned_error(attempts: int) -> str:
    """Describe a message given up after its worker's lease expired on the last attempt."""
    return f"lease expired on attempt {attempts} of {attempts}: the worker never finished"


# --- finishing ---------------------------------------------------------------


def holder_filter(
    message_id: ObjectId,
    worker_id: str,
    now: datetime,
    tenant_id: ObjectId | None = None,
    token: str | None = None,
) -> Filter:
    """Match the message only while ``worker_id`` holds a live lease on it.

    With ``tenant_id`` (known when the worker passes back the claimed document)
    the write carries the shard key, so a sharded cluster routes it to one
    shard instead of refusing it (before 7.0) or broadcasting it (7.0+). With
    ``token`` (also from the claimed document) only that claim matches, not
    another claim by a worker that chose the same id.
    """
    tenant = {} if tenant_id is None else {"tenantId": tenant_id}
    claim = {} if token is None else {"claimToken": token}
    return {
        "_id": message_id,
        **tenant,
        "status": PROCESSING,
        "lockedBy": worker_id,
        "lockedUntil": {"$gt": now},
        **claim,
    }


def cancelled_claim_filter(message_id: ObjectId, token: str) -> Filter:
    """Match the message if it was cancelled while claim ``token`` held it."""
    return {"_id": message_id, "status": CANCELLED, "claimToken": token}


def own_claim(current: DocumentIn | None, ref: ClaimRef) -> str | None:
    """Return the status of ``current`` if claim ``ref`` finished it (or held it when cancelled).

    A sent or cancelled message keeps the token of the claim that held it. A
    failed attempt drops the token but leaves ``attempts`` as the claim set
    it, and only a new claim raises it, so a scheduled or failed message with
    the claimed document's attempts was failed by that claim (or, on its last
    attempt, given up at the same attempt: the same key, the same follow-ups).
    """
    if current is None or ref.token is None:
        return None
    status = current["status"]
    if status in (SENT, CANCELLED):
        return status if current.get("claimToken") == ref.token else None
    if status in (SCHEDULED, FAILED) and ref.attempts is not None:
        return status if current["attempts"] == ref.attempts else None
    return None


def sent_update(now: datetime) -> Update:
    """Mark a message sent and release its lease (the claim's token stays: see ``own_claim``)."""
    return {"$set": {"status": SENT, "sentAt": now, "updatedAt": now}, "$unset": LOCK_FIELDS}


def retry_update(now: datetime, send_at: datetime, error: str) -> Update:
    """Return a message to the queue at ``send_at`` after a transient failure."""
    return {
        "$set": {
            "status": SCHEDULED,
            "sendAt": send_at,
            "lastError": clip_error(error),
            "updatedAt": now,
        },
        "$unset": CLAIM_FIELDS,
    }


def failed_update(now: datetime, error: str) -> Update:
    """Mark a message failed for good with its last error."""
    return {
        "$set": {"status": FAILED, "lastError": clip_error(error), "updatedAt": now},
        "$unset": CLAIM_FIELDS,
    }


def given_up_update(now: datetime, error: str) -> Update:
    """Fail a message whose lease expired on its last attempt, its follow-ups still to write.

    ``lockedUntil`` stays as the marker "follow-ups pending": every claim's
    scan of expired leases also finds failed messages that still carry it and
    completes their follow-ups (``follow_ups_done_update``), so a give-up whose
    reply was lost is finished by the next claim, and a cancel can no longer
    race it (a failed message cannot be cancelled). ``claimToken`` stays with
    it: the follow-ups' key names the claim (``failure_key``).
    """
    return {
        "$set": {"status": FAILED, "lastError": clip_error(error), "updatedAt": now},
        "$unset": {"lockedBy": ""},
    }


def follow_ups_done_update() -> Update:
    """Drop a given-up message's "follow-ups pending" marker (and its claim) once written."""
    return {"$unset": {"lockedUntil": "", "claimToken": ""}}


def requeue_update(now: datetime) -> Update:
    """Put a message that failed for good back to ``scheduled``, due now, its attempts reset.

    ``lastError`` stays: it is still the last delivery error, until a new one.
    """
    return {
        "$set": {"status": SCHEDULED, "sendAt": now, "attempts": 0, "updatedAt": now},
        "$unset": CLAIM_FIELDS,
    }


def extend_update(now: datetime, lease: timedelta) -> Update:
    """Move the lease end to ``now + lease`` (a worker's heartbeat)."""
    return {"$set": {"lockedUntil": lease_end(now, lease), "updatedAt": now}}


def cancel_filter(tenant_id: ObjectId, message_id: ObjectId) -> Filter:
    """Match the tenant's message while it can still be cancelled."""
    return {"_id": message_id, "tenantId": tenant_id, "status": {"$in": list(CANCELLABLE)}}


def cancel_update(now: datetime) -> Update:
    """Cancel a message and drop any lease on it.

    The claim's token stays, so a worker that was sending it can still record
    the send (``mark_sent``): the message went out, and nobody else can claim it.
    """
    return {"$set": {"status": CANCELLED, "updatedAt": now}, "$unset": LOCK_FIELDS}


def should_retry(attempts: int, max_attempts: int, retry: bool) -> bool:
    """Return whether a failed attempt goes back to the queue."""
    return retry and attempts < max_attempts


def backoff(
    attempts: int, base: timedelta, rng: random.Random, *, cap: timedelta = MAX_BACKOFF
) -> timedelta:
    """Return the delay before retry number ``attempts`` ("equal jitter").

    ``d = min(cap, base * 2**(attempts - 1))``; the delay is uniform in
    ``[d/2, d)``: it doubles per attempt on average, never drops below half the
    step, and spreads retries of messages that failed together.
    """
    # In float seconds: base * 2**n overflows timedelta long before the cap applies.
    step = min(cap.total_seconds(), base.total_seconds() * 2.0 ** min(max(attempts - 1, 0), 64))
    delay = step / 2 + step / 2 * rng.random()
    return timedelta(milliseconds=int(delay * 1000))


def clip_error(error: str | BaseException) -> str:
    """Return an error as bounded text for ``lastError`` (lone surrogates replaced)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {_text(error)}"
    text = text.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"
    return text[:ERROR_LIMIT] or "unknown error"


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a broken __str__ must not stop a failure from being recorded
        return "(unprintable)"


# --- documents ---------------------------------------------------------------


def new_message(
    tenant_id: ObjectId,
    contact_id: ObjectId,
    channel: str,
    send_at: datetime,
    now: datetime,
    *,
    payload: Mapping[str, Any] | None = None,
    workflow_step_id: ObjectId | None = None,
    template_id: ObjectId | None = None,
    idempotency_key: str | None = None,
    message_id: ObjectId | None = None,
) -> dict[str, Any]:
    """Build a new scheduled message; optional fields are left out, never null."""
    optional = {
        "workflowStepId": workflow_step_id,
        "templateId": template_id,
        "payload": dict(payload) if payload is not None else None,
        "idempotencyKey": idempotency_key,
    }
    first = {} if message_id is None else {"_id": message_id}
    return {
        **first,
        "tenantId": tenant_id,
        "contactId": contact_id,
        "channel": channel,
        "sendAt": to_bson_time(send_at),
        "status": SCHEDULED,
        "attempts": 0,
        **{k: v for k, v in optional.items() if v is not None},
        "createdAt": now,
    }


def new_event(
    tenant_id: ObjectId,
    event_type: str,
    now: datetime,
    *,
    message_id: ObjectId | None = None,
    provider: str | None = None,
    provider_message_id: str | None = None,
    occurred_at: datetime | None = None,
    raw: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Build a ``messageEvents`` row; optional fields are left out, never null.

    With a follow-up ``key`` the ``_id`` is derived from it, so writing the
    same transition's event again is a duplicate key, not a second event.
    """
    optional = {
        "_id": None if key is None else event_id(key),
        "scheduledMessageId": message_id,
        "provider": provider,
        "providerMessageId": provider_message_id,
        "occurredAt": to_bson_time(occurred_at) if occurred_at else None,
        "raw": dict(raw) if raw is not None else None,
    }
    return {
        "tenantId": tenant_id,
        "eventType": event_type,
        **{k: v for k, v in optional.items() if v is not None},
        "createdAt": now,
    }


def sent_provider(
    channel: str, provider: str | None, provider_message_id: str | None
) -> str | None:
    """Return the provider to record on a ``sent`` event (the channel's default if unnamed)."""
    if provider is not None or provider_message_id is None:
        return provider
    return DEFAULT_PROVIDER.get(channel)


def failure_raw(error: str, attempts: int, retry_at: datetime | None) -> dict[str, Any]:
    """Describe a failed attempt for the ``failed`` event's ``raw`` field."""
    raw: dict[str, Any] = {
        "error": clip_error(error),
        "attempts": attempts,
        "final": retry_at is None,
    }
    if retry_at is not None:
        raw["retryAt"] = retry_at
    return raw


# --- refusals: which error explains a write that matched nothing -------------


def not_found(name: str, document_id: ObjectId) -> NotFoundError:
    """The one error for a document that is missing or another tenant's (no existence oracle)."""
    return NotFoundError(f"{name} {document_id} not found for this tenant")


def check_reference(found: DocumentIn | None, name: str, document_id: ObjectId) -> None:
    """Raise unless the tenant-scoped lookup of a referenced document found it."""
    if found is None:
        raise not_found(name, document_id)


def lease_refusal(
    current: DocumentIn | None, message_id: ObjectId, worker_id: str
) -> NsnStoreError:
    """Explain why ``worker_id`` may not finish the message (naming the current holder)."""
    if current is None:
        return NotFoundError(f"scheduled message {message_id} does not exist")
    holder = current.get("lockedBy") if current["status"] == PROCESSING else None
    state = f"held by {holder!r}" if holder else "held by no worker"
    return LeaseLostError(
        f"worker {worker_id!r} does not hold a live lease on message {message_id}: "
        f"it is {current['status']}, {state}"
    )


def cancel_refusal(current: DocumentIn | None, message_id: ObjectId) -> NsnStoreError:
    """Explain why the tenant's message (looked up with its tenant) could not be cancelled."""
    if current is None:
        return not_found("scheduled message", message_id)
    return InvalidTransitionError(
        f"message {message_id} is {current['status']}: only scheduled or processing "
        "messages can be cancelled"
    )
