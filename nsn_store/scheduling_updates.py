"""Build the scheduled-message writes: updates, new documents, retry delays, refusals.

Everything here is pure: ``now``, leases, random numbers and ids come in as
arguments, so the builders are tested without a database and shared by the
sync :class:`~nsn_store.scheduler.Scheduler` and its asyncio twin. The reads
(each naming the index that serves it) live in :mod:`nsn_store.scheduling`,
which re-exports every name defined here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
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

Document = Mapping[str, Any]
Filter = dict[str, Any]
Update = dict[str, Any]
LOCK_FIELDS = {"lockedBy": "", "lockedUntil": ""}


# --- claiming ----------------------------------------------------------------


def claim_update(worker_id: str, now: datetime, lease_end: datetime) -> Update:
    """Stamp the worker, its lease end and one more attempt onto claimed messages."""
    return {
        "$set": {"status": PROCESSING, "lockedBy": worker_id, "lockedUntil": lease_end,
                 "updatedAt": now},
        "$inc": {"attempts": 1},
    }


def lease_end(now: datetime, lease: timedelta) -> datetime:
    """Return the end of a lease taken at ``now`` (at BSON precision)."""
    if lease <= timedelta(0):
        raise ValueError(f"a lease must be positive, not {lease}")
    return to_bson_time(now + lease)


def abandoned_filter(message_id: ObjectId, now: datetime, attempts: int) -> Filter:
    """Match a message whose lease expired on its last attempt, if nobody took it since."""
    return {"_id": message_id, "status": PROCESSING, "lockedUntil": {"$lte": now},
            "attempts": attempts}


def abandoned_error(attempts: int) -> str:
    """Describe a message given up after its worker's lease expired on the last attempt."""
    return f"lease expired on attempt {attempts} of {attempts}: the worker never finished"


# --- finishing ---------------------------------------------------------------


def holder_filter(message_id: ObjectId, worker_id: str, now: datetime,
                  tenant_id: ObjectId | None = None) -> Filter:
    """Match the message only while ``worker_id`` holds a live lease on it.

    With ``tenant_id`` (known when the worker passes back the claimed document)
    the write carries the shard key, so a sharded cluster routes it to one
    shard instead of refusing it (before 7.0) or broadcasting it (7.0+).
    """
    tenant = {} if tenant_id is None else {"tenantId": tenant_id}
    return {"_id": message_id, **tenant, "status": PROCESSING, "lockedBy": worker_id,
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
