"""Write each scheduler operation once, as a generator of database operations.

Each operation (schedule, claim, finish, cancel, backlog) is a generator that
yields :class:`Op` values and receives their results; the executors in
:mod:`nsn_store.scheduler` (:class:`~nsn_store.scheduler.Scheduler` and
:class:`~nsn_store.scheduler.AsyncScheduler`) run the same generators, sync or
awaited, so the two cannot drift apart. Filters and updates come from the pure
builders in :mod:`nsn_store.scheduling`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store import scheduling as b
from nsn_store.clock import DEFAULT_CLOCK, Clock, to_bson_time
from nsn_store.errors import DuplicateKeyError

# Named after the public module: users configure "nsn_store.scheduler" logging.
log = logging.getLogger("nsn_store.scheduler")

__all__ = ["Backlog", "Document", "Flow", "Op"]

Document = dict[str, Any]


@dataclass(frozen=True)
class Op:
    """One database call: a collection method and its arguments (``counter`` for counters)."""

    method: str
    collection: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Flow = Generator[Op, Any, Any]


@dataclass(frozen=True)
class Backlog:
    """What the queue looks like at ``now``, for one tenant or for all."""

    now: datetime
    tenant_id: ObjectId | None
    due_now: int
    oldest_due_send_at: datetime | None
    processing_live: int
    processing_expired: int
    failed_last_day: int

    def to_dict(self) -> dict[str, Any]:
        """Return the backlog as JSON-ready values (ISO times, string ids)."""
        oldest = self.oldest_due_send_at
        return {
            "now": self.now.isoformat(),
            "tenant_id": str(self.tenant_id) if self.tenant_id is not None else None,
            "due_now": self.due_now,
            "oldest_due_send_at": oldest.isoformat() if oldest is not None else None,
            "processing_live": self.processing_live,
            "processing_expired": self.processing_expired,
            "failed_last_day": self.failed_last_day,
        }


def _find(query: b.Query, **kwargs: Any) -> Op:
    if query.sort:
        kwargs["sort"] = query.sort
    return Op("find", query.collection, (query.filter,), kwargs)


def _find_one(query: b.Query, **kwargs: Any) -> Op:
    if query.sort:
        kwargs["sort"] = query.sort
    return Op("find_one", query.collection, (query.filter,), kwargs)


def _count(query: b.Query) -> Op:
    return Op("count_documents", query.collection, (query.filter,))


def _modify(filter_: Mapping[str, Any], update: Mapping[str, Any]) -> Op:
    return Op("find_one_and_update", b.MESSAGES, (filter_, update),
              {"return_document": ReturnDocument.AFTER})


def _insert(collection: str, document: Document) -> Op:
    return Op("insert_one", collection, (document,))


class _Flows:
    """The operations, as generators of :class:`Op`; shared by both schedulers."""

    def __init__(
        self,
        db: Any,
        *,
        clock: Clock | None = None,
        counter: Any = None,
        max_attempts: int = 5,
        base_backoff: timedelta = b.DEFAULT_BASE_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        self.db = db
        self.clock = clock or DEFAULT_CLOCK
        self.counter = counter
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.rng = rng or random.Random()
        self._trips = 0
        self._trips_lock = threading.Lock()

    @property
    def round_trips(self) -> int:
        """Return how many collection calls this scheduler has made (counters excluded)."""
        return self._trips

    def _count_trip(self) -> None:
        with self._trips_lock:
            self._trips += 1

    def _now(self, now: datetime | None) -> datetime:
        return self.clock.now() if now is None else to_bson_time(now)

    def _bump(self, tenant_id: ObjectId, metric: str) -> Flow:
        if self.counter is not None:
            yield Op("counter", "", (tenant_id, metric))

    # -- flows ---------------------------------------------------------------

    def _schedule(self, tenant_id: Any, contact_id: Any, channel: str, send_at: datetime,
                  **optional: Any) -> Flow:
        tenant, contact = b.as_object_id(tenant_id), b.as_object_id(contact_id)
        b.check_contact((yield _find_one(b.by_id_query(b.CONTACTS, contact))), tenant, contact)
        key = optional.get("idempotency_key")
        lookup = b.idempotency_query(tenant, key) if key is not None else None
        if lookup is not None and (existing := (yield _find_one(lookup))) is not None:
            return existing
        now = self._now(None)
        message = b.new_message(tenant, contact, channel, send_at, now, **optional)
        try:
            yield _insert(b.MESSAGES, message)
        except DuplicateKeyError:
            if lookup is None:
                raise
            winner = yield _find_one(lookup)  # a concurrent schedule with the same key won
            if winner is None:
                raise
            return winner
        yield _insert(b.EVENTS, b.new_event(tenant, "queued", now, message_id=message["_id"]))
        yield from self._bump(tenant, "messages.scheduled")
        return message

    def _claim_due(self, worker_id: str, now: datetime | None, limit: int,
                   lease: timedelta) -> Flow:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        now = self._now(now)
        end = b.lease_end(now, lease)
        due = yield _find(b.due_query(now), limit=limit, projection=b.CANDIDATE_PROJECTION)
        stale = yield _find(b.expired_lease_query(now), limit=limit,
                            projection=b.CANDIDATE_PROJECTION)
        stale, abandoned = b.split_abandoned(stale, self.max_attempts)
        for doc in abandoned:  # rare: costs round trips only when a worker died last time
            yield from self._give_up(doc["_id"], doc["attempts"], now)
        ids = b.pick_candidates(due, stale, limit)
        if not ids:
            return []
        won = yield Op("update_many", b.MESSAGES,
                       (b.claim_query(ids, now).filter, b.claim_update(worker_id, now, end)))
        if won.modified_count == 0:
            return []  # every candidate went to a faster worker
        held = yield _find(b.held_query(ids, worker_id, end))
        log.debug("worker %s claimed %d of %d candidates", worker_id, len(held), len(ids))
        return b.oldest_first(held)

    def _give_up(self, message_id: ObjectId, attempts: int, now: datetime) -> Flow:
        error = b.abandoned_error(attempts)
        doc = yield _modify(b.abandoned_filter(message_id, now, attempts), b.failed_update(now, error))
        if doc is None:
            return  # another worker gave it up first
        raw = b.failure_raw(error, attempts, None)
        yield _insert(b.EVENTS, b.new_event(doc["tenantId"], b.FAILED, now, message_id=message_id,
                                            raw=raw))
        yield from self._bump(doc["tenantId"], "messages.failed")

    def _mark_sent(self, message_id: Any, worker_id: str, provider_message_id: str | None,
                   provider: str | None) -> Flow:
        b.check_provider(provider)
        (mid, tenant), now = b.message_ref(message_id), self._now(None)
        doc = yield _modify(b.holder_filter(mid, worker_id, now, tenant), b.sent_update(now))
        if doc is None:
            raise b.lease_refusal((yield _find_one(b.by_id_query(b.MESSAGES, mid))), mid, worker_id)
        event = b.new_event(doc["tenantId"], b.SENT, now, message_id=mid,
                            provider=b.sent_provider(doc["channel"], provider, provider_message_id),
                            provider_message_id=provider_message_id)
        try:
            yield _insert(b.EVENTS, event)
        except DuplicateKeyError:  # the provider's webhook reported "sent" first
            log.info("sent event for %s already recorded by a webhook", mid)
        yield from self._bump(doc["tenantId"], "messages.sent")
        return doc

    def _mark_failed(self, message_id: Any, worker_id: str, error: str | BaseException,
                     retry: bool) -> Flow:
        (mid, tenant), now = b.message_ref(message_id), self._now(None)
        held = b.holder_filter(mid, worker_id, now, tenant)
        current = yield _find_one(b.Query(b.MESSAGES, held, "_id_"))
        if current is None:
            raise b.lease_refusal((yield _find_one(b.by_id_query(b.MESSAGES, mid))), mid, worker_id)
        attempts, text = current["attempts"], b.clip_error(error)
        retry_at = None
        if b.should_retry(attempts, self.max_attempts, retry):
            retry_at = to_bson_time(now + b.backoff(attempts, self.base_backoff, self.rng))
        update = b.retry_update(now, retry_at, text) if retry_at else b.failed_update(now, text)
        # attempts in the filter: the lease cannot have been lost and re-won in between.
        doc = yield _modify({**held, "attempts": attempts}, update)
        if doc is None:
            raise b.lease_refusal((yield _find_one(b.by_id_query(b.MESSAGES, mid))), mid, worker_id)
        raw = b.failure_raw(text, attempts, retry_at)
        yield _insert(b.EVENTS, b.new_event(doc["tenantId"], b.FAILED, now, message_id=mid, raw=raw))
        yield from self._bump(doc["tenantId"], "messages.retried" if retry_at else "messages.failed")
        return doc

    def _extend_lease(self, message_id: Any, worker_id: str, lease: timedelta) -> Flow:
        (mid, tenant), now = b.message_ref(message_id), self._now(None)
        doc = yield _modify(b.holder_filter(mid, worker_id, now, tenant),
                            b.extend_update(now, lease))
        if doc is None:
            raise b.lease_refusal((yield _find_one(b.by_id_query(b.MESSAGES, mid))), mid, worker_id)
        return doc

    def _cancel(self, tenant_id: Any, message_id: Any) -> Flow:
        tenant, mid, now = b.as_object_id(tenant_id), b.as_object_id(message_id), self._now(None)
        doc = yield _modify(b.cancel_filter(tenant, mid), b.cancel_update(now))
        if doc is None:
            raise b.cancel_refusal((yield _find_one(b.by_id_query(b.MESSAGES, mid))), tenant, mid)
        yield from self._bump(tenant, "messages.cancelled")
        return doc

    def _record_provider_event(self, tenant_id: Any, provider: str, provider_message_id: str,
                               event_type: str, occurred_at: datetime | None,
                               raw: Mapping[str, Any] | None) -> Flow:
        tenant = b.as_object_id(tenant_id)
        sent = yield _find_one(b.sent_event_query(tenant, provider, provider_message_id))
        event = b.new_event(tenant, event_type, self._now(None),
                            message_id=(sent or {}).get("scheduledMessageId"), provider=provider,
                            provider_message_id=provider_message_id, occurred_at=occurred_at,
                            raw=raw)
        try:
            yield _insert(b.EVENTS, event)
        except DuplicateKeyError:  # by_provider_message_event: this webhook was seen before
            return False
        return True

    def _backlog(self, tenant_id: Any, now: datetime | None) -> Flow:
        tenant = b.as_object_id(tenant_id) if tenant_id is not None else None
        now = self._now(now)
        due = b.due_query(now, tenant)
        oldest = yield _find_one(due, projection={"sendAt": 1})
        return Backlog(
            now=now, tenant_id=tenant, due_now=(yield _count(due)),
            oldest_due_send_at=oldest["sendAt"] if oldest else None,
            processing_live=(yield _count(b.live_lease_query(now, tenant))),
            processing_expired=(yield _count(b.expired_leases_count_query(now, tenant))),
            failed_last_day=(yield _count(b.failed_since_query(now - b.FAILED_WINDOW, tenant))),
        )

