"""Build the scheduled-message queries; re-export the updates, documents and retry delays.

Everything here is pure: ``now``, leases, random numbers and ids come in as
arguments, so the builders are tested without a database and shared by the
sync :class:`~nsn_store.scheduler.Scheduler` and its asyncio twin.

Every read is a :class:`Query` that names the declared index serving it
(``nsn_store.schema.SCHEMA``); ``tests/scheduler/test_scheduling_builders.py`` checks each
shape against that index's key order by the ESR rule (equality, sort, range).
The reads live here; the writes (updates, new documents, backoff, refusals)
live in :mod:`nsn_store.scheduler._updates` and are re-exported, so every
builder stays importable from this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from nsn_store.arguments import as_object_id
from nsn_store.scheduler._updates import (
    FAILED,
    PROCESSING,
    SCHEDULED,
    SENT,
    Filter,
    Update,
    abandoned_filter,
    cancel_filter,
    cancelled_claim_filter,
    holder_filter,
)

__all__ = [
    "CANDIDATE_PROJECTION",
    "CONTACTS",
    "EVENTS",
    "FAILED_WINDOW",
    "MESSAGES",
    "STALE_PROJECTION",
    "STEPS",
    "TEMPLATES",
    "Query",
    "Sort",
    "all_queries",
    "by_id_query",
    "claim_query",
    "claimable_condition",
    "dead_letters_query",
    "due_for_query",
    "due_query",
    "expired_lease_query",
    "expired_leases_count_query",
    "failed_since_query",
    "held_by_query",
    "held_query",
    "idempotency_query",
    "link_update",
    "live_lease_query",
    "message_events_query",
    "message_ref",
    "next_due_query",
    "next_expiry_query",
    "next_tenant_query",
    "oldest_first",
    "owned_query",
    "pick_candidates",
    "requeue_query",
    "sent_event_query",
    "split_abandoned",
    "stale_query",
    "unlinked_events_filter",
]

MESSAGES = "scheduledMessages"
EVENTS = "messageEvents"
CONTACTS = "contacts"
TEMPLATES = "templates"
STEPS = "workflowSteps"

FAILED_WINDOW = timedelta(days=1)

Sort = list[tuple[str, int]]


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


def message_ref(message: ObjectId | str | Mapping[str, Any]) -> tuple[ObjectId, ObjectId | None]:
    """Return ``(_id, tenantId)`` of a message given as a claimed document or as its id.

    A claimed document also gives the tenant, which finishing writes use to
    reach a single shard (see ``holder_filter``); a bare id gives no tenant.
    """
    if isinstance(message, Mapping):
        return as_object_id(message.get("_id"), "message['_id']"), message.get("tenantId")
    return as_object_id(message, "message_id"), None


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


def due_for_query(now: datetime, tenants: Sequence[ObjectId] | None) -> Query:
    """Select due messages of ``tenants`` (all when None), oldest ``sendAt`` first."""
    if tenants is None:
        return due_query(now)
    condition = {"tenantId": {"$in": list(tenants)}, "status": SCHEDULED, "sendAt": {"$lte": now}}
    # by_tenantId {tenantId, status, sendAt}: one point range per tenant, merged in sendAt order.
    return Query(MESSAGES, condition, "by_tenantId", [("sendAt", 1)])


def next_tenant_query(
    now: datetime, after: ObjectId | None, tenants: Sequence[ObjectId] | None = None
) -> Query:
    """Select the oldest due message of the first tenant after ``after`` (a fairness probe).

    by_tenantId {tenantId, status, sendAt}: a range on the tenant, then equality
    on status and a range on sendAt inside it; a server seeks past each
    tenant's keys that are not due, so one probe costs one index seek per tenant.
    """
    tenant: Filter = {} if after is None else {"$gt": after}
    if tenants is not None:
        tenant["$in"] = list(tenants)
    condition: Filter = {"status": SCHEDULED, "sendAt": {"$lte": now}}
    if tenant:
        condition = {"tenantId": tenant, **condition}
    return Query(
        MESSAGES, condition, "by_tenantId", [("tenantId", 1), ("status", 1), ("sendAt", 1)]
    )


def next_due_query(tenants: Sequence[ObjectId] | None = None) -> Query:
    """Select the scheduled message with the earliest ``sendAt`` (the worker's wake-up)."""
    if tenants is None:
        return Query(MESSAGES, {"status": SCHEDULED}, "by_sendAt", [("sendAt", 1)])
    return Query(
        MESSAGES,
        {"tenantId": {"$in": list(tenants)}, "status": SCHEDULED},
        "by_tenantId",
        [("sendAt", 1)],
    )


def next_expiry_query(tenants: Sequence[ObjectId] | None = None) -> Query:
    """Select the processing message whose lease ends first (it becomes claimable then)."""
    condition: Filter = {"status": PROCESSING}
    if tenants is not None:
        condition["tenantId"] = {"$in": list(tenants)}
    return Query(
        MESSAGES,
        condition,
        "by_status",
        [("lockedUntil", 1)],
        residual=("tenantId",) if tenants is not None else (),
    )


def held_by_query(ids: Sequence[ObjectId], tokens: Sequence[str], lease_end: datetime) -> Query:
    """Select the messages a heartbeat kept: those of these claims with the new lease end."""
    condition = {
        "_id": {"$in": list(ids)},
        "claimToken": {"$in": list(tokens)},
        "lockedUntil": lease_end,
    }
    return Query(MESSAGES, condition, "_id_", residual=("claimToken", "lockedUntil"))


def expired_lease_query(now: datetime, tenants: Sequence[ObjectId] | None = None) -> Query:
    """Select processing messages whose lease ended at or before ``now`` (of ``tenants``)."""
    # by_status {status, lockedUntil}: sorting on the range key keeps index order.
    condition: Filter = {"status": PROCESSING, "lockedUntil": {"$lte": now}}
    if tenants is None:
        return Query(MESSAGES, condition, "by_status", [("lockedUntil", 1)])
    return Query(
        MESSAGES,
        {**condition, "tenantId": {"$in": list(tenants)}},
        "by_status",
        [("lockedUntil", 1)],
        residual=("tenantId",),
    )


def stale_query(now: datetime, tenants: Sequence[ObjectId] | None = None) -> Query:
    """Select expired leases and given-up messages whose follow-ups are pending.

    by_status {status, lockedUntil}: ``$in`` on status (two point ranges merged
    in ``lockedUntil`` order), then the range on ``lockedUntil``.
    """
    condition: Filter = {"status": {"$in": [PROCESSING, FAILED]}, "lockedUntil": {"$lte": now}}
    if tenants is None:
        return Query(MESSAGES, condition, "by_status", [("lockedUntil", 1)])
    return Query(
        MESSAGES,
        {**condition, "tenantId": {"$in": list(tenants)}},
        "by_status",
        [("lockedUntil", 1)],
        residual=("tenantId",),
    )


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
    return Query(
        MESSAGES, {"tenantId": tenant_id, **condition}, "by_tenantId", residual=("lockedUntil",)
    )


def failed_since_query(since: datetime, tenant_id: ObjectId | None = None) -> Query:
    """Select messages that failed for good at or after ``since``."""
    condition: Filter = {"status": FAILED, "updatedAt": {"$gte": since}}
    if tenant_id is None:
        return Query(MESSAGES, condition, "by_status_updatedAt")  # {status, updatedAt}
    # by_status_updatedAt again: one day of failures across tenants is small, while
    # a tenant prefix (by_tenantId) would walk every failure the tenant ever had.
    return Query(
        MESSAGES,
        {**condition, "tenantId": tenant_id},
        "by_status_updatedAt",
        residual=("tenantId",),
    )


def _window(since: datetime | None, until: datetime | None) -> Filter:
    bounds = {"$gte": since, "$lt": until}
    return {op: moment for op, moment in bounds.items() if moment is not None}


def dead_letters_query(
    tenant_id: ObjectId | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Query:
    """Select messages that failed for good in ``[since, until)``, oldest failure first.

    A failed message's ``updatedAt`` is when it failed (nothing changes it
    afterwards but a requeue, which makes it scheduled). by_status_updatedAt
    {status, updatedAt}: equality on status, then updatedAt as the sort and the
    range. A tenant is a residual: no declared index leads with tenantId and
    holds updatedAt (``{tenantId, status, updatedAt}`` would serve it), so one
    tenant's failures are picked from everyone's in the window.
    """
    condition: Filter = {"status": FAILED}
    window = _window(since, until)
    if window:
        condition["updatedAt"] = window
    if tenant_id is None:
        return Query(MESSAGES, condition, "by_status_updatedAt", [("updatedAt", 1)])
    return Query(
        MESSAGES,
        {**condition, "tenantId": tenant_id},
        "by_status_updatedAt",
        [("updatedAt", 1)],
        residual=("tenantId",),
    )


def requeue_query(
    ids: Sequence[ObjectId] | None = None,
    tenant_id: ObjectId | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Query:
    """Select the failed messages a requeue puts back: by ids, or by tenant and failure time.

    A given-up message whose follow-ups are still pending (it keeps
    ``lockedUntil``, see ``given_up_update``) is left for the next claim to
    finish; a later requeue takes it. By ids: the ``_id_`` index, the rest
    checked on the few documents named. Otherwise: ``dead_letters_query``'s
    index, ``lockedUntil`` checked on the fetched documents.
    """
    pending: Filter = {"lockedUntil": {"$exists": False}}
    if ids is None:
        query = dead_letters_query(tenant_id, since, until)
        return Query(
            MESSAGES,
            {**query.filter, **pending},
            query.index,
            residual=(*query.residual, "lockedUntil"),
        )
    condition: Filter = {"_id": {"$in": list(ids)}, "status": FAILED, **pending}
    if tenant_id is not None:
        condition["tenantId"] = tenant_id
    window = _window(since, until)
    if window:
        condition["updatedAt"] = window
    return Query(MESSAGES, condition, "_id_", residual=tuple(f for f in condition if f != "_id"))


def idempotency_query(tenant_id: ObjectId, key: str) -> Query:
    """Find a tenant's message by its idempotency key."""
    # by_tenant_idempotencyKey {tenantId, idempotencyKey} unique, partial on the key.
    return Query(
        MESSAGES, {"tenantId": tenant_id, "idempotencyKey": key}, "by_tenant_idempotencyKey"
    )


def by_id_query(collection: str, document_id: ObjectId) -> Query:
    """Find one document by ``_id``."""
    return Query(collection, {"_id": document_id}, "_id_")


def owned_query(collection: str, document_id: ObjectId, tenant_id: ObjectId) -> Query:
    """Find a tenant's document by ``_id``: another tenant's is as absent as a missing one."""
    return Query(
        collection, {"_id": document_id, "tenantId": tenant_id}, "_id_", residual=("tenantId",)
    )


def sent_event_query(tenant_id: ObjectId, provider: str, provider_message_id: str) -> Query:
    """Find the ``sent`` event that links a provider's message id to our message."""
    # by_provider_message_event {tenantId, provider, providerMessageId, eventType}.
    condition = {
        "tenantId": tenant_id,
        "provider": provider,
        "providerMessageId": provider_message_id,
        "eventType": SENT,
    }
    return Query(EVENTS, condition, "by_provider_message_event")


def unlinked_events_filter(tenant_id: ObjectId, provider: str, provider_message_id: str) -> Filter:
    """Match a provider message's webhook events recorded before we knew our message."""
    # by_provider_message_event {tenantId, provider, providerMessageId, eventType}: a prefix.
    return {
        "tenantId": tenant_id,
        "provider": provider,
        "providerMessageId": provider_message_id,
        "scheduledMessageId": {"$exists": False},
    }


def link_update(message_id: ObjectId) -> Update:
    """Link webhook events to the message they report on."""
    return {"$set": {"scheduledMessageId": message_id}}


def message_events_query(tenant_id: ObjectId, message_id: ObjectId) -> Query:
    """List one message's events in the order they were written."""
    # by_scheduledMessageId {tenantId, scheduledMessageId, createdAt}.
    return Query(
        EVENTS,
        {"tenantId": tenant_id, "scheduledMessageId": message_id},
        "by_scheduledMessageId",
        [("createdAt", 1)],
    )


# --- claiming ----------------------------------------------------------------


def claimable_condition(now: datetime) -> Filter:
    """Return the condition under which a message may be claimed at ``now``."""
    return {
        "$or": [
            {"status": SCHEDULED, "sendAt": {"$lte": now}},
            {"status": PROCESSING, "lockedUntil": {"$lte": now}},
        ]
    }


def claim_query(ids: Sequence[ObjectId], now: datetime) -> Query:
    """Select the candidates that are still claimable (re-checked per document).

    The update re-evaluates this filter on each document as it writes it, so of
    two workers racing for one candidate only the first matches it.
    """
    return Query(
        MESSAGES, {"_id": {"$in": list(ids)}, **claimable_condition(now)}, "_id_", residual=("$or",)
    )


def held_query(ids: Sequence[ObjectId], token: str) -> Query:
    """Select the candidates this claim actually won: those carrying its token.

    Not "this worker and this lease end": two claims in the same millisecond
    by workers that chose the same id would each read back the other's wins.
    """
    # status: a cancel that lands between the claim and this read keeps the token.
    condition = {"_id": {"$in": list(ids)}, "claimToken": token, "status": PROCESSING}
    return Query(MESSAGES, condition, "_id_", residual=("claimToken", "status"))


def pick_candidates(
    due: Iterable[Mapping[str, Any]],
    expired: Iterable[Mapping[str, Any]],
    limit: int,
    heads: Iterable[Mapping[str, Any]] = (),
) -> list[ObjectId]:
    """Return up to ``limit`` candidate ids: the oldest, each tenant's head, then oldest first.

    The oldest message of both scans always goes first (a batch of one is
    strictly oldest first); then ``heads`` (one due message per tenant, from
    the fairness probes), so a tenant with one due message is not starved by
    another's backlog; then the rest by oldest ``sendAt``.
    """
    ordered = oldest_first([*expired, *due])
    chosen: dict[Any, Mapping[str, Any]] = {}
    for doc in [*ordered[:1], *oldest_first(heads), *ordered[1:]]:
        if len(chosen) >= limit:
            break
        chosen.setdefault(doc["_id"], doc)
    return [doc["_id"] for doc in oldest_first(chosen.values())]


def oldest_first(documents: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Sort messages by ``sendAt`` then ``_id`` (the order workers should send them in)."""
    return sorted(documents, key=lambda doc: (doc["sendAt"], doc["_id"]))


CANDIDATE_PROJECTION = {"_id": 1, "sendAt": 1, "attempts": 1, "tenantId": 1}
#: The stale scan also tells expired leases from give-ups whose follow-ups are pending,
#: and reads a give-up's token: its follow-ups' key names the claim (``failure_key``).
STALE_PROJECTION = {**CANDIDATE_PROJECTION, "status": 1, "claimToken": 1}


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


def all_queries(now: datetime) -> list[Query]:
    """Return one instance of every query shape the scheduler issues (for index checks)."""
    tenant, other = ObjectId(), ObjectId()
    ids = [other]
    return [
        due_query(now),
        due_query(now, tenant),
        expired_lease_query(now),
        due_for_query(now, [tenant, other]),
        expired_lease_query(now, [tenant]),
        next_tenant_query(now, None),
        next_tenant_query(now, tenant),
        next_tenant_query(now, tenant, [tenant, other]),
        next_due_query(),
        next_due_query([tenant]),
        next_expiry_query(),
        next_expiry_query([tenant]),
        held_by_query(ids, ["token"], now),
        stale_query(now),
        stale_query(now, [tenant]),
        live_lease_query(now),
        live_lease_query(now, tenant),
        expired_leases_count_query(now),
        expired_leases_count_query(now, tenant),
        failed_since_query(now),
        failed_since_query(now, tenant),
        dead_letters_query(),
        dead_letters_query(tenant),
        dead_letters_query(None, now, now),
        dead_letters_query(tenant, now, now),
        requeue_query(None, tenant),
        requeue_query(None, None, now, now),
        requeue_query(None, tenant, now, now),
        requeue_query(ids),
        requeue_query(ids, tenant, now, now),
        idempotency_query(tenant, "key"),
        by_id_query(MESSAGES, other),
        by_id_query(CONTACTS, other),
        sent_event_query(tenant, "twilio", "SM1"),
        message_events_query(tenant, other),
        claim_query(ids, now),
        held_query(ids, "token"),
        owned_query(CONTACTS, other, tenant),
        owned_query(TEMPLATES, other, tenant),
        owned_query(STEPS, other, tenant),
        owned_query(MESSAGES, other, tenant),
        Query(
            EVENTS,
            unlinked_events_filter(tenant, "twilio", "SM1"),
            "by_provider_message_event",
            residual=("scheduledMessageId",),
        ),
        Query(
            MESSAGES,
            holder_filter(other, "w", now),
            "_id_",
            residual=("status", "lockedBy", "lockedUntil"),
        ),
        Query(
            MESSAGES,
            holder_filter(other, "w", now, tenant, "token"),
            "_id_",
            residual=("tenantId", "status", "lockedBy", "lockedUntil", "claimToken"),
        ),
        Query(
            MESSAGES,
            cancelled_claim_filter(other, "token"),
            "_id_",
            residual=("status", "claimToken"),
        ),
        Query(MESSAGES, cancel_filter(tenant, other), "_id_", residual=("tenantId", "status")),
        Query(
            MESSAGES,
            abandoned_filter(other, now, 5),
            "_id_",
            residual=("status", "lockedUntil", "attempts"),
        ),
    ]
