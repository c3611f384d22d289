"""Build the scheduled-message queries, updates, documents and retry delays.

Everything here is pure: ``now``, leases, random numbers and ids come in as
arguments, so the builders are tested without a database and shared by the
sync :class:`~nsn_store.scheduler.Scheduler` and its asyncio twin.

Every read is a :class:`Query` that names the declared index serving it
(``nsn_store.schema.SCHEMA``); ``tests/test_scheduling_builders.py`` checks each
shape against that index's key order by the ESR rule (equality, sort, range).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from nsn_store.clock import to_bson_time
from nsn_store.errors import (
    ConfigurationError,
    InvalidTransitionError,
    LeaseLostError,
    NotFoundError,
    NsnStoreError,
    TenantIsolationError,
)
from nsn_store.models import PROVIDERS

MESSAGES = "scheduledMessages"
EVENTS = "messageEvents"
CONTACTS = "contacts"

SCHEDULED, PROCESSING, SENT, FAILED, CANCELLED = (
    "scheduled", "processing", "sent", "failed", "cancelled",
)
CANCELLABLE = (SCHEDULED, PROCESSING)
DEFAULT_PROVIDER = {"sms": "twilio", "email": "resend"}

#: ``lastError`` is free text from a provider; keep it bounded like the validator.
ERROR_LIMIT = 1000
DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_BASE_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=6)
FAILED_WINDOW = timedelta(days=1)

Document = Mapping[str, Any]
Filter = dict[str, Any]
Update = dict[str, Any]
Sort = list[tuple[str, int]]
LOCK_FIELDS = {"lockedBy": "", "lockedUntil": ""}


@dataclass(frozen=True)
class Query:
    """A read: its filter, sort, the index that serves it and fields it filters after fetch.

    ``residual`` names filter fields the index does not hold; they are checked
    on the fetched documents and are declared so the ESR test can tell an
    intended residual from an index that was forgotten.
    """

    collection: str
    filter: Filter
    index: str
    sort: Sort = field(default_factory=list)
    residual: tuple[str, ...] = ()


def as_object_id(value: ObjectId | str) -> ObjectId:
    """Return ``value`` as an ObjectId, accepting its 24-hex string form."""
    return value if isinstance(value, ObjectId) else ObjectId(value)


# --- reads -----------------------------------------------------------------


def due_query(now: datetime, tenant_id: ObjectId | None = None) -> Query:
    """Select scheduled messages due at ``now``, oldest ``sendAt`` first."""
    condition: Filter = {"status": SCHEDULED, "sendAt": {"$lte": now}}
    sort = [("sendAt", 1)]
    if tenant_id is None:
        # by_sendAt {status, sendAt}: equality on status, then sendAt as both the
        # sort and the range, so the scan stops after `limit` keys with no SORT.
        return Query(MESSAGES, condition, "by_sendAt", sort)
    # by_tenantId {tenantId, status, sendAt}: the same shape behind a tenant prefix.
    return Query(MESSAGES, {"tenantId": tenant_id, **condition}, "by_tenantId", sort)


def expired_lease_query(now: datetime) -> Query:
    """Select processing messages whose lease ended at or before ``now``."""
    # by_status {status, lockedUntil}: sorting on the range key keeps index order.
    condition = {"status": PROCESSING, "lockedUntil": {"$lte": now}}
    return Query(MESSAGES, condition, "by_status", [("lockedUntil", 1)])


def live_lease_query(now: datetime, tenant_id: ObjectId | None = None) -> Query:
    """Select processing messages whose lease is still running at ``now``."""
    return _processing_query({"$gt": now}, tenant_id)


def expired_leases_count_query(now: datetime, tenant_id: ObjectId | None = None) -> Query:
    """Select processing messages with an expired lease, optionally for one tenant."""
    return _processing_query({"$lte": now}, tenant_id)


def _processing_query(bound: Mapping[str, Any], tenant_id: ObjectId | None) -> Query:
    condition = {"status": PROCESSING, "lockedUntil": dict(bound)}
    if tenant_id is None:
        return Query(MESSAGES, condition, "by_status")  # by_status {status, lockedUntil}
    # by_tenantId {tenantId, status, ...}: a tenant's in-flight messages are few,
    # so lockedUntil is checked on the fetched documents.
    return Query(MESSAGES, {"tenantId": tenant_id, **condition}, "by_tenantId",
                 residual=("lockedUntil",))


def failed_since_query(since: datetime, tenant_id: ObjectId | None = None) -> Query:
    """Select messages that failed for good at or after ``since``."""
    condition: Filter = {"status": FAILED, "updatedAt": {"$gte": since}}
    if tenant_id is None:
        return Query(MESSAGES, condition, "by_status_updatedAt")  # {status, updatedAt}
    # by_status_updatedAt again: one day of failures across tenants is small, while
    # a tenant prefix (by_tenantId) would walk every failure the tenant ever had.
    return Query(MESSAGES, {**condition, "tenantId": tenant_id}, "by_status_updatedAt",
                 residual=("tenantId",))


def idempotency_query(tenant_id: ObjectId, key: str) -> Query:
    """Find a tenant's message by its idempotency key."""
    # by_tenant_idempotencyKey {tenantId, idempotencyKey} unique, partial on the key.
    return Query(MESSAGES, {"tenantId": tenant_id, "idempotencyKey": key},
                 "by_tenant_idempotencyKey")


def by_id_query(collection: str, document_id: ObjectId) -> Query:
    """Find one document by ``_id``."""
    return Query(collection, {"_id": document_id}, "_id_")


def sent_event_query(tenant_id: ObjectId, provider: str, provider_message_id: str) -> Query:
    """Find the ``sent`` event that links a provider's message id to our message."""
    # by_provider_message_event {tenantId, provider, providerMessageId, eventType}.
    condition = {"tenantId": tenant_id, "provider": provider,
                 "providerMessageId": provider_message_id, "eventType": SENT}
    return Query(EVENTS, condition, "by_provider_message_event")


def message_events_query(tenant_id: ObjectId, message_id: ObjectId) -> Query:
    """List one message's events in the order they were written."""
    # by_scheduledMessageId {tenantId, scheduledMessageId, createdAt}.
    return Query(EVENTS, {"tenantId": tenant_id, "scheduledMessageId": message_id},
                 "by_scheduledMessageId", [("createdAt", 1)])


# --- claiming ----------------------------------------------------------------


def claimable_condition(now: datetime) -> Filter:
    """Return the condition under which a message may be claimed at ``now``."""
    return {"$or": [
        {"status": SCHEDULED, "sendAt": {"$lte": now}},
        {"status": PROCESSING, "lockedUntil": {"$lte": now}},
    ]}


def claim_query(ids: Sequence[ObjectId], now: datetime) -> Query:
    """Select the candidates that are still claimable (re-checked per document).

    The update re-evaluates this filter on each document as it writes it, so of
    two workers racing for one candidate only the first matches it.
    """
    return Query(MESSAGES, {"_id": {"$in": list(ids)}, **claimable_condition(now)}, "_id_",
                 residual=("$or",))


def claim_update(worker_id: str, now: datetime, lease_end: datetime) -> Update:
    """Stamp the worker, its lease end and one more attempt onto claimed messages."""
    return {
        "$set": {"status": PROCESSING, "lockedBy": worker_id, "lockedUntil": lease_end,
                 "updatedAt": now},
        "$inc": {"attempts": 1},
    }


def held_query(ids: Sequence[ObjectId], worker_id: str, lease_end: datetime) -> Query:
    """Select the candidates this claim actually won (this worker, this exact lease)."""
    condition = {"_id": {"$in": list(ids)}, "lockedBy": worker_id, "lockedUntil": lease_end}
    return Query(MESSAGES, condition, "_id_", residual=("lockedBy", "lockedUntil"))


def lease_end(now: datetime, lease: timedelta) -> datetime:
    """Return the end of a lease taken at ``now`` (at BSON precision)."""
    if lease <= timedelta(0):
        raise ValueError(f"a lease must be positive, not {lease}")
    return to_bson_time(now + lease)


def pick_candidates(
    due: Iterable[Mapping[str, Any]], expired: Iterable[Mapping[str, Any]], limit: int
) -> list[ObjectId]:
    """Return up to ``limit`` candidate ids, oldest ``sendAt`` first, from both scans."""
    unique = {doc["_id"]: doc for doc in [*expired, *due]}
    return [doc["_id"] for doc in oldest_first(unique.values())][:limit]


def oldest_first(documents: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Sort messages by ``sendAt`` then ``_id`` (the order workers should send them in)."""
    return sorted(documents, key=lambda doc: (doc["sendAt"], doc["_id"]))


CANDIDATE_PROJECTION = {"_id": 1, "sendAt": 1, "attempts": 1}


def split_abandoned(
    stale: Iterable[Mapping[str, Any]], max_attempts: int
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split expired leases into re-claimable ones and ones whose last attempt died.

    A message that keeps killing its worker would otherwise be re-claimed forever.
    """
    retry: list[Mapping[str, Any]] = []
    abandoned: list[Mapping[str, Any]] = []
    for doc in stale:
        (abandoned if doc["attempts"] >= max_attempts else retry).append(doc)
    return retry, abandoned


def abandoned_filter(message_id: ObjectId, now: datetime, attempts: int) -> Filter:
    """Match a message whose lease expired on its last attempt, if nobody took it since."""
    return {"_id": message_id, "status": PROCESSING, "lockedUntil": {"$lte": now},
            "attempts": attempts}


def abandoned_error(attempts: int) -> str:
    """Describe a message given up after its worker's lease expired on the last attempt."""
    return f"lease expired on attempt {attempts} of {attempts}: the worker never finished"


# --- finishing ---------------------------------------------------------------


def holder_filter(message_id: ObjectId, worker_id: str, now: datetime) -> Filter:
    """Match the message only while ``worker_id`` holds a live lease on it."""
    return {"_id": message_id, "status": PROCESSING, "lockedBy": worker_id,
            "lockedUntil": {"$gt": now}}


def sent_update(now: datetime) -> Update:
    """Mark a message sent and release its lease."""
    return {"$set": {"status": SENT, "sentAt": now, "updatedAt": now}, "$unset": LOCK_FIELDS}


def retry_update(now: datetime, send_at: datetime, error: str) -> Update:
    """Return a message to the queue at ``send_at`` after a transient failure."""
    return {"$set": {"status": SCHEDULED, "sendAt": send_at, "lastError": clip_error(error),
                     "updatedAt": now}, "$unset": LOCK_FIELDS}


def failed_update(now: datetime, error: str) -> Update:
    """Mark a message failed for good with its last error."""
    return {"$set": {"status": FAILED, "lastError": clip_error(error), "updatedAt": now},
            "$unset": LOCK_FIELDS}


def extend_update(now: datetime, lease: timedelta) -> Update:
    """Move the lease end to ``now + lease`` (a worker's heartbeat)."""
    return {"$set": {"lockedUntil": lease_end(now, lease), "updatedAt": now}}


def cancel_filter(tenant_id: ObjectId, message_id: ObjectId) -> Filter:
    """Match the tenant's message while it can still be cancelled."""
    return {"_id": message_id, "tenantId": tenant_id, "status": {"$in": list(CANCELLABLE)}}


def cancel_update(now: datetime) -> Update:
    """Cancel a message and drop any lease on it."""
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
    """Return an error as bounded text for ``lastError``."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:ERROR_LIMIT] or "unknown error"


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
) -> dict[str, Any]:
    """Build a new scheduled message; optional fields are left out, never null."""
    optional = {"workflowStepId": workflow_step_id, "templateId": template_id,
                "payload": dict(payload) if payload is not None else None,
                "idempotencyKey": idempotency_key}
    return {"tenantId": tenant_id, "contactId": contact_id, "channel": channel,
            "sendAt": to_bson_time(send_at), "status": SCHEDULED, "attempts": 0,
            **{k: v for k, v in optional.items() if v is not None}, "createdAt": now}


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
) -> dict[str, Any]:
    """Build a ``messageEvents`` row; optional fields are left out, never null."""
    optional = {"scheduledMessageId": message_id, "provider": provider,
                "providerMessageId": provider_message_id,
                "occurredAt": to_bson_time(occurred_at) if occurred_at else None,
                "raw": dict(raw) if raw is not None else None}
    return {"tenantId": tenant_id, "eventType": event_type,
            **{k: v for k, v in optional.items() if v is not None}, "createdAt": now}


def sent_provider(channel: str, provider: str | None, provider_message_id: str | None) -> str | None:
    """Return the provider to record on a ``sent`` event (the channel's default if unnamed)."""
    if provider is not None or provider_message_id is None:
        return provider
    return DEFAULT_PROVIDER.get(channel)


def check_provider(provider: str | None) -> None:
    """Refuse an unknown provider before a message is marked sent, not after."""
    if provider is not None and provider not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def failure_raw(error: str, attempts: int, retry_at: datetime | None) -> dict[str, Any]:
    """Describe a failed attempt for the ``failed`` event's ``raw`` field."""
    raw: dict[str, Any] = {"error": clip_error(error), "attempts": attempts,
                           "final": retry_at is None}
    if retry_at is not None:
        raw["retryAt"] = retry_at
    return raw


# --- refusals: which error explains a write that matched nothing -------------


def check_contact(contact: Document | None, tenant_id: ObjectId, contact_id: ObjectId) -> None:
    """Raise unless ``contact`` exists and belongs to ``tenant_id``."""
    if contact is None:
        raise NotFoundError(f"contact {contact_id} does not exist")
    if contact["tenantId"] != tenant_id:
        raise TenantIsolationError(f"contact {contact_id} does not belong to tenant {tenant_id}")


def lease_refusal(current: Document | None, message_id: ObjectId, worker_id: str) -> NsnStoreError:
    """Explain why ``worker_id`` may not finish the message (naming the current holder)."""
    if current is None:
        return NotFoundError(f"scheduled message {message_id} does not exist")
    holder = current.get("lockedBy") if current["status"] == PROCESSING else None
    state = f"held by {holder!r}" if holder else "held by no worker"
    return LeaseLostError(
        f"worker {worker_id!r} does not hold a live lease on message {message_id}: "
        f"it is {current['status']}, {state}"
    )


def cancel_refusal(current: Document | None, tenant_id: ObjectId,
                     message_id: ObjectId) -> NsnStoreError:
    """Explain why the message could not be cancelled."""
    if current is None:
        return NotFoundError(f"scheduled message {message_id} does not exist")
    if current["tenantId"] != tenant_id:
        return TenantIsolationError(f"message {message_id} does not belong to tenant {tenant_id}")
    return InvalidTransitionError(
        f"message {message_id} is {current['status']}: only scheduled or processing "
        "messages can be cancelled"
    )


def all_queries(now: datetime) -> list[Query]:
    """Return one instance of every query shape the scheduler issues (for index checks)."""
    tenant, other = ObjectId(), ObjectId()
    ids = [other]
    return [
        due_query(now), due_query(now, tenant), expired_lease_query(now),
        live_lease_query(now), live_lease_query(now, tenant),
        expired_leases_count_query(now), expired_leases_count_query(now, tenant),
        failed_since_query(now), failed_since_query(now, tenant),
        idempotency_query(tenant, "key"), by_id_query(MESSAGES, other),
        by_id_query(CONTACTS, other), sent_event_query(tenant, "twilio", "SM1"),
        message_events_query(tenant, other), claim_query(ids, now),
        held_query(ids, "w", now),
        Query(MESSAGES, holder_filter(other, "w", now), "_id_",
              residual=("status", "lockedBy", "lockedUntil")),
        Query(MESSAGES, cancel_filter(tenant, other), "_id_", residual=("tenantId", "status")),
        Query(MESSAGES, abandoned_filter(other, now, 5), "_id_",
              residual=("status", "lockedUntil", "attempts")),
    ]
