"""Every scheduler operation, written once as a flow (:mod:`nsn_store._flow`).

Each operation (schedule, claim, finish, cancel, backlog, dead letters) is a
generator that yields :class:`~nsn_store._flow.Op` values and receives their
results; :class:`~nsn_store.scheduler.Scheduler` and
:class:`~nsn_store.scheduler.AsyncScheduler` declare their methods over these
flows with :func:`~nsn_store._flow.sync` and :func:`~nsn_store._flow.asynchronous`,
so the two cannot drift apart. Filters and updates come from the pure builders
in :mod:`nsn_store.scheduler._queries` and :mod:`nsn_store.scheduler._updates`.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store._flow import DATABASE, Flow, FlowHost, Op, TripCounter
from nsn_store._types import Document, DocumentIn, IdLike
from nsn_store.arguments import as_object_id, check_datetime, check_limit, optional_object_id
from nsn_store.clock import DEFAULT_CLOCK, OFFSET_REFRESH, Clock, ServerClock, to_bson_time
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError, NsnStoreError, ServerError
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u

# Named after the public module: users configure "nsn_store.scheduler" logging.
log = logging.getLogger("nsn_store.scheduler")

__all__ = ["FAIR_PROBES", "Backlog", "DeadLetter", "MessageHistory"]

T = TypeVar("T")


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


#: What a dead-letter listing reads of each message (not its payload).
DEAD_LETTER_PROJECTION = {
    "_id": 1,
    "tenantId": 1,
    "contactId": 1,
    "channel": 1,
    "attempts": 1,
    "lastError": 1,
    "sendAt": 1,
    "updatedAt": 1,
}


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed for good: whose, which channel, when, and its last error."""

    message_id: ObjectId
    tenant_id: ObjectId
    contact_id: ObjectId
    channel: str
    attempts: int
    last_error: str | None
    failed_at: datetime | None
    send_at: datetime

    @classmethod
    def from_document(cls, doc: DocumentIn) -> DeadLetter:
        """Return the dead letter of a failed message, as ``DEAD_LETTER_PROJECTION`` reads it."""
        return cls(
            message_id=doc["_id"],
            tenant_id=doc["tenantId"],
            contact_id=doc["contactId"],
            channel=doc["channel"],
            attempts=doc["attempts"],
            last_error=doc.get("lastError"),
            failed_at=doc.get("updatedAt"),
            send_at=doc["sendAt"],
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the dead letter as JSON-ready values (ISO times, string ids)."""
        return {
            "message_id": str(self.message_id),
            "tenant_id": str(self.tenant_id),
            "contact_id": str(self.contact_id),
            "channel": self.channel,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "failed_at": self.failed_at.isoformat() if self.failed_at is not None else None,
            "send_at": self.send_at.isoformat(),
        }


@dataclass(frozen=True)
class MessageHistory:
    """One message as stored and its event timeline, oldest event first."""

    message: Document
    events: list[Document]

    def to_dict(self) -> dict[str, Any]:
        """Return the message and its events as JSON-ready values (ISO times, string ids)."""
        return {"message": _plain(self.message), "events": [_plain(e) for e in self.events]}


def _plain(value: Any) -> Any:
    """Return ``value`` with ObjectIds as strings and datetimes as ISO text, recursively."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    return value


def _find(query: q.Query, **kwargs: Any) -> Op:
    if query.sort:
        kwargs["sort"] = query.sort
    return Op("find", query.collection, (query.filter,), kwargs)


def _find_one(query: q.Query, **kwargs: Any) -> Op:
    if query.sort:
        kwargs["sort"] = query.sort
    return Op("find_one", query.collection, (query.filter,), kwargs)


def _count(query: q.Query) -> Op:
    return Op("count_documents", query.collection, (query.filter,))


def _modify(filter_: DocumentIn, update: DocumentIn) -> Op:
    return Op(
        "find_one_and_update",
        q.MESSAGES,
        (filter_, update),
        {"return_document": ReturnDocument.AFTER},
    )


def _insert(collection: str, document: DocumentIn) -> Op:
    return Op("insert_one", collection, (document,))


def _update_many(collection: str, filter_: DocumentIn, update: DocumentIn) -> Op:
    return Op("update_many", collection, (filter_, update))


#: Tenants probed per claim when the due page is full (fairness, see ``_fair_heads``).
FAIR_PROBES = 8

#: The server's clock: every MongoDB server answers ``hello`` with its ``localTime``.
HELLO = Op("command", DATABASE, ("hello",))


class _Flows(FlowHost):
    """The scheduler's operations as flows; both schedulers declare their methods over them.

    Every argument is checked before the first database call. Each transition
    writes its status first, then its follow-ups (an event whose ``_id`` and a
    counter add whose ``once`` key derive from the message, the transition and
    the attempt), so the same call repeated after a lost reply finds the status
    already changed by its own claim and writes only what is missing.

    ``trips`` counts every database call; :attr:`round_trips` leaves out the
    server-clock ``hello`` and the counter's adds, which are not the queue's work.
    """

    trips: TripCounter

    def __init__(
        self,
        db: Any,
        *,
        clock: Clock | None = None,
        counter: Any = None,
        max_attempts: int = 5,
        base_backoff: timedelta = u.DEFAULT_BASE_BACKOFF,
        rng: random.Random | None = None,
        server_time: bool = True,
        offset_refresh: float = OFFSET_REFRESH,
    ) -> None:
        self.max_attempts = u.check_max_attempts(max_attempts)
        self.base_backoff = u.check_backoff(base_backoff)
        self.db = db
        self.clock: Clock = _checked("clock", clock or DEFAULT_CLOCK, Clock)
        self.server_clock = ServerClock(self.clock, refresh=_refresh(offset_refresh))
        self.server_time = u.check_flag(server_time, "server_time")
        if counter is not None and not callable(getattr(counter, "add_flow", None)):
            raise InvalidArgumentError(
                "counter must have an add_flow method (a ShardedCounter)", argument="counter"
            )
        self.counter = counter
        self.rng: random.Random = _checked("rng", rng or random.Random(), random.Random)
        self.trips = TripCounter()
        self._uncounted_trips = TripCounter()
        self._fair_cursor: ObjectId | None = None

    @property
    def round_trips(self) -> int:
        """Return how many collection calls this scheduler has made (not counters, commands)."""
        return self.trips.count - self._uncounted_trips.count

    def _uncounted(self, flow: Flow[T]) -> Flow[T]:
        """Run ``flow`` as part of this one, leaving its calls out of :attr:`round_trips`."""
        result: Any = None
        error: NsnStoreError | None = None
        while True:
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            self._uncounted_trips.add()
            try:
                result, error = (yield op), None
            except NsnStoreError as exc:  # the runner's translated error: the sub-flow's to handle
                result, error = None, exc

    def _now(self, now: datetime | None = None) -> Flow[datetime]:
        """Return ``now`` if given, else the server's time (re-measuring the offset when due)."""
        if now is not None:
            return to_bson_time(check_datetime(now, "now"))
        if not self.server_time:
            return self.clock.now()
        if self.server_clock.stale():
            before = self.clock.now()
            try:
                reply = yield from self._uncounted(_one(HELLO))
            except ServerError as exc:  # a server refusing hello: keep the last offset
                log.warning("the server refused hello (%s): judging time by the last offset", exc)
                reply = None
            self.server_clock.update(before, (reply or {}).get("localTime"), self.clock.now())
        return self.server_clock.now()

    def _bump(self, tenant_id: ObjectId, metric: str, key: str, n: int = 1) -> Flow[None]:
        """Add ``n`` to the tenant's ``metric`` once per ``key`` (when a counter is set)."""
        if self.counter is not None:
            yield from self._uncounted(self.counter.add_flow(tenant_id, metric, n, once=key))

    def _event(self, event: Document) -> Flow[bool]:
        """Insert a keyed event; return False if it was written before (by an earlier try)."""
        try:
            yield _insert(q.EVENTS, event)
        except DuplicateKeyError:
            return False
        return True

    # -- schedule --------------------------------------------------------------

    def _schedule(
        self,
        tenant_id: IdLike,
        contact_id: IdLike,
        channel: str,
        send_at: datetime,
        *,
        payload: DocumentIn | None = None,
        workflow_step_id: IdLike | None = None,
        template_id: IdLike | None = None,
        idempotency_key: str | None = None,
    ) -> Flow[Document]:
        """Schedule a message to the tenant's own contact; a repeated key returns the first."""
        request = u.schedule_request(
            tenant_id,
            contact_id,
            channel,
            send_at,
            payload=payload,
            workflow_step_id=workflow_step_id,
            template_id=template_id,
            idempotency_key=idempotency_key,
        )
        for collection, name, ref in request.references():  # at most 3 round trips
            found = yield _find_one(
                q.owned_query(collection, ref, request.tenant), projection={"_id": 1}
            )
            u.check_reference(found, name, ref)
        key = request.idempotency_key
        lookup = q.idempotency_query(request.tenant, key) if key is not None else None
        if lookup is not None and (existing := (yield _find_one(lookup))) is not None:
            return (yield from self._queued(existing))
        message = u.new_message(
            request.tenant,
            request.contact,
            request.channel,
            request.send_at,
            (yield from self._now()),
            payload=request.payload,
            workflow_step_id=request.workflow_step,
            template_id=request.template,
            idempotency_key=key,
            message_id=ObjectId(),
        )
        try:
            yield _insert(q.MESSAGES, message)
        except DuplicateKeyError:
            winner = (yield _find_one(lookup)) if lookup is not None else None
            if winner is None:
                raise
            message = winner  # a concurrent schedule with the same key won
        return (yield from self._queued(message))

    def _queued(self, message: Document) -> Flow[Document]:
        """Ensure a scheduled message's ``queued`` event and counter (once each)."""
        mid, tenant = message["_id"], message["tenantId"]
        key = u.follow_up_key(mid, "queued")
        yield from self._event(
            u.new_event(tenant, "queued", message["createdAt"], message_id=mid, key=key)
        )
        yield from self._bump(tenant, "messages.scheduled", key)
        return message

    # -- claim ---------------------------------------------------------------

    def _claim_due(
        self,
        worker_id: str,
        *,
        now: datetime | None = None,
        limit: int = 100,
        lease: timedelta = u.DEFAULT_LEASE,
        tenants: Iterable[IdLike] | None = None,
    ) -> Flow[list[Document]]:
        """Claim up to ``limit`` due messages for ``worker_id`` (of ``tenants``, or all).

        Oldest ``sendAt`` first; when more are due than fit, each claim also
        takes the oldest due message of up to ``FAIR_PROBES`` tenants in turn,
        so no tenant's backlog starves another's.
        """
        worker, lease = u.check_worker(worker_id), u.check_lease(lease)
        limit = check_limit(limit, "limit")
        only = _tenants(tenants)
        at = yield from self._now(now)
        end = u.lease_end(at, lease)
        due = yield _find(q.due_for_query(at, only), limit=limit, projection=q.CANDIDATE_PROJECTION)
        # A full page means a backlog: probe a few tenants so none waits behind another's.
        heads = (yield from self._fair_heads(at, only, limit)) if len(due) >= limit else []
        stale = yield _find(q.stale_query(at, only), limit=limit, projection=q.STALE_PROJECTION)
        pending = [doc for doc in stale if doc["status"] == u.FAILED]
        for doc in pending:  # a give-up whose follow-ups were lost: finish them
            yield from self._given_up_follow_ups(doc, at)
        stale, abandoned = q.split_abandoned(
            [doc for doc in stale if doc["status"] != u.FAILED], self.max_attempts
        )
        for doc in abandoned:  # rare: costs round trips only when a worker died last time
            yield from self._give_up(doc, at)
        ids = q.pick_candidates(due, stale, limit, heads)
        if not ids:
            return []
        token = secrets.token_hex(16)  # this call's claim: read back only what it won
        won = yield _update_many(
            q.MESSAGES, q.claim_query(ids, at).filter, u.claim_update(worker, at, end, token)
        )
        if won.modified_count == 0:
            return []  # every candidate went to a faster worker
        held = yield _find(q.held_query(ids, token))
        log.debug("worker %s claimed %d of %d candidates", worker, len(held), len(ids))
        return q.oldest_first(held)

    def _fair_heads(
        self, now: datetime, tenants: list[ObjectId] | None, limit: int
    ) -> Flow[list[Document]]:
        """Return the oldest due message of up to ``FAIR_PROBES`` tenants, round robin.

        Each probe is one index seek (``next_tenant_query``); the cursor goes on
        from the last tenant seen at the next claim, so with T tenants due every
        tenant gets a message into a batch at least once every T / FAIR_PROBES
        claims, whatever another tenant's backlog. Round trips per claim: at most
        FAIR_PROBES + 2 (a miss at the end and a wrap), only when the due page was
        full; they do not grow with the backlog.
        """
        heads: list[Document] = []
        start = after = self._fair_cursor
        wrapped = start is None  # starting at the first tenant, the end means all were seen
        while len(heads) < min(limit, FAIR_PROBES):
            head = yield _find_one(
                q.next_tenant_query(now, after, tenants), projection=q.CANDIDATE_PROJECTION
            )
            if head is None and not wrapped:
                after, wrapped = None, True  # past the last tenant: start again at the first
                continue
            if head is None or any(h["tenantId"] == head["tenantId"] for h in heads):
                break
            heads.append(head)
            after = head["tenantId"]
        self._fair_cursor = after
        return heads

    def _release(self, messages: Iterable[DocumentIn], worker_id: str) -> Flow[int]:
        """Hand claimed, unstarted messages back to ``scheduled`` without spending an attempt."""
        refs, worker = u.claimed_refs(messages), u.check_worker(worker_id)
        if not refs:
            return 0
        now = yield from self._now()
        result = yield _update_many(
            q.MESSAGES, u.batch_filter(refs, worker, now), u.release_update(now)
        )
        return int(result.modified_count)

    def _extend_leases(
        self, messages: Iterable[DocumentIn], worker_id: str, lease: timedelta
    ) -> Flow[set[ObjectId]]:
        """Extend every lease of ``messages`` still held, in one write; return the ids kept."""
        refs, worker = u.claimed_refs(messages), u.check_worker(worker_id)
        lease = u.check_lease(lease)
        if not refs:
            return set()
        now = yield from self._now()
        update = u.extend_update(now, lease)
        yield _update_many(q.MESSAGES, u.batch_filter(refs, worker, now), update)
        tokens = sorted({r.token for r in refs if r.token})
        kept = yield _find(
            q.held_by_query([r.id for r in refs], tokens, update["$set"]["lockedUntil"]),
            projection={"_id": 1},
        )
        return {doc["_id"] for doc in kept}

    def _next_due_at(self, *, tenants: Iterable[IdLike] | None = None) -> Flow[datetime | None]:
        """Return when the next message becomes claimable (a ``sendAt`` or a lease's end)."""
        only = _tenants(tenants)
        due = yield _find_one(q.next_due_query(only), projection={"sendAt": 1})
        expiry = yield _find_one(q.next_expiry_query(only), projection={"lockedUntil": 1})
        moments: list[datetime] = [
            doc[field]
            for doc, field in ((due, "sendAt"), (expiry, "lockedUntil"))
            if doc is not None and doc.get(field) is not None
        ]
        return min(moments, default=None)

    def _cancel_opted_out(self, message: DocumentIn, worker_id: str) -> Flow[Document]:
        """Cancel a held message whose contact opted out, with an ``opted_out`` event."""
        ref, worker = u.claim_ref(message), u.check_worker(worker_id)
        now = yield from self._now()
        doc = yield _modify(
            u.holder_filter(ref.id, worker, now, ref.tenant, ref.token), u.cancel_update(now)
        )
        if doc is None:
            doc = yield _find_one(q.by_id_query(q.MESSAGES, ref.id))
            if u.own_claim(doc, ref) != u.CANCELLED:
                raise u.lease_refusal(doc, ref.id, worker)
            assert doc is not None  # own_claim returned a status
        tenant, key = doc["tenantId"], u.follow_up_key(ref.id, u.CANCELLED)
        yield from self._event(
            u.new_event(
                tenant,
                "opted_out",
                now,
                message_id=ref.id,
                key=u.follow_up_key(ref.id, "opted_out"),
            )
        )
        yield from self._bump(tenant, "messages.cancelled", key)
        return dict(doc)

    def _give_up(self, candidate: DocumentIn, now: datetime) -> Flow[None]:
        """Fail a message whose lease expired on its last attempt, then write its follow-ups.

        Status first, as every transition: the status write keeps ``lockedUntil``
        as a "follow-ups pending" marker, so if this call stops before the
        follow-ups are written, the next claim's scan finds the message and
        finishes them (``_given_up_follow_ups``). A cancel that lands first wins
        the message and nothing is written here.
        """
        message_id, attempts = candidate["_id"], candidate["attempts"]
        doc = yield _modify(
            u.abandoned_filter(message_id, now, attempts),
            u.given_up_update(now, u.abandoned_error(attempts)),
        )
        if doc is not None:
            yield from self._given_up_follow_ups(doc, now)

    def _given_up_follow_ups(self, doc: DocumentIn, now: datetime) -> Flow[None]:
        attempts = doc["attempts"]
        yield from self._failed_follow_ups(
            doc["tenantId"],
            doc["_id"],
            now,
            u.abandoned_error(attempts),
            None,
            u.failure_key(doc["_id"], attempts, doc.get("claimToken")),
            attempts,
        )
        yield Op(
            "update_one",
            q.MESSAGES,
            ({"_id": doc["_id"], "status": u.FAILED}, u.follow_ups_done_update()),
        )

    # -- finish ----------------------------------------------------------------

    def _mark_sent(
        self,
        message_id: IdLike | DocumentIn,
        worker_id: str,
        *,
        provider_message_id: str | None = None,
        provider: str | None = None,
    ) -> Flow[Document]:
        """Mark a held (or, while held, cancelled) message sent; LeaseLostError if not held."""
        ref, worker = u.claim_ref(message_id), u.check_worker(worker_id)
        pmid = (
            None
            if provider_message_id is None
            else u.check_provider_message_id(provider_message_id)
        )
        checked_provider = u.check_provider(provider)
        now = yield from self._now()
        doc = yield _modify(
            u.holder_filter(ref.id, worker, now, ref.tenant, ref.token), u.sent_update(now)
        )
        if doc is None:
            doc = yield from self._sent_without_lease(ref, worker, now)
        yield from self._sent_follow_ups(
            doc, now, u.sent_provider(doc["channel"], checked_provider, pmid), pmid
        )
        return dict(doc)

    def _sent_without_lease(self, ref: u.ClaimRef, worker: str, now: datetime) -> Flow[Document]:
        """Return the message if this claim's send is recorded, or can still be; else refuse."""
        current = yield _find_one(q.by_id_query(q.MESSAGES, ref.id))
        if u.own_claim(current, ref) == u.SENT:
            return dict(current)  # a repeated call: the status is written, not the follow-ups
        if current is not None and u.own_claim(current, ref) == u.CANCELLED:
            # Cancelled while this claim was sending: the message went out, so record it,
            # taking back the cancel's count first (keyed: a repeat changes nothing).
            yield from self._uncancel(current)
            doc = yield _modify(
                u.cancelled_claim_filter(ref.id, current["claimToken"]), u.sent_update(now)
            )
            if doc is not None:
                return dict(doc)
            current = yield _find_one(q.by_id_query(q.MESSAGES, ref.id))
            if u.own_claim(current, ref) == u.SENT:
                return dict(current)
        raise u.lease_refusal(current, ref.id, worker)

    def _uncancel(self, message: DocumentIn) -> Flow[None]:
        key = u.follow_up_key(message["_id"], u.CANCELLED)
        yield from self._bump(message["tenantId"], "messages.cancelled", key)  # the cancel's own
        yield from self._bump(message["tenantId"], "messages.cancelled", f"{key}:undone", -1)

    def _sent_follow_ups(
        self, doc: DocumentIn, now: datetime, provider: str | None, pmid: str | None
    ) -> Flow[None]:
        mid, tenant = doc["_id"], doc["tenantId"]
        key = u.follow_up_key(mid, u.SENT)
        event = u.new_event(
            tenant,
            u.SENT,
            now,
            message_id=mid,
            provider=provider,
            provider_message_id=pmid,
            key=key,
        )
        if not (yield from self._event(event)) and pmid is not None and provider is not None:
            # Written before, or the provider's "sent" webhook came first: link what it recorded.
            yield _update_many(
                q.EVENTS, q.unlinked_events_filter(tenant, provider, pmid), q.link_update(mid)
            )
        yield from self._bump(tenant, "messages.sent", key)

    def _mark_failed(
        self,
        message_id: IdLike | DocumentIn,
        worker_id: str,
        error: str | BaseException,
        *,
        retry: bool = True,
    ) -> Flow[Document]:
        """Record a failed attempt: retry later with backoff, or fail for good."""
        ref, worker = u.claim_ref(message_id), u.check_worker(worker_id)
        text, retry = u.check_error(error), u.check_flag(retry, "retry")
        now = yield from self._now()
        held = u.holder_filter(ref.id, worker, now, ref.tenant, ref.token)
        current = yield _find_one(q.Query(q.MESSAGES, held, "_id_"))
        if current is None:
            return (yield from self._failed_without_lease(ref, worker, now))
        attempts, retry_at = current["attempts"], None
        if u.should_retry(attempts, self.max_attempts, retry):
            retry_at = to_bson_time(now + u.backoff(attempts, self.base_backoff, self.rng))
        update = u.retry_update(now, retry_at, text) if retry_at else u.failed_update(now, text)
        # attempts in the filter: the lease cannot have been lost and re-won in between.
        doc = yield _modify({**held, "attempts": attempts}, update)
        if doc is None:
            return (yield from self._failed_without_lease(ref, worker, now))
        key = u.failure_key(ref.id, attempts, current.get("claimToken"))
        yield from self._failed_follow_ups(
            doc["tenantId"], ref.id, now, text, retry_at, key, attempts
        )
        return dict(doc)

    def _failed_without_lease(self, ref: u.ClaimRef, worker: str, now: datetime) -> Flow[Document]:
        """Complete a failure this claim already recorded (a repeated call), or refuse."""
        current = yield _find_one(q.by_id_query(q.MESSAGES, ref.id))
        status = u.own_claim(current, ref)
        # Claimed again since: if this claim's failure was recorded (its event is there),
        # only its count can be missing; the next attempt is someone else's.
        moved_on = (
            current is not None
            and status is None
            and ref.attempts is not None
            and current["attempts"] > ref.attempts
        )
        if moved_on and (yield from self._complete_earlier_failure(current["tenantId"], ref)):
            return dict(current)
        if current is None or status not in (u.SCHEDULED, u.FAILED):
            raise u.lease_refusal(current, ref.id, worker)
        attempts = current["attempts"]
        yield from self._failed_follow_ups(
            current["tenantId"],
            ref.id,
            now,
            current.get("lastError", "unknown error"),
            current["sendAt"] if status == u.SCHEDULED else None,
            u.failure_key(ref.id, attempts, ref.token),
            attempts,
        )
        return dict(current)

    def _complete_earlier_failure(self, tenant: ObjectId, ref: u.ClaimRef) -> Flow[bool]:
        """Ensure the count of this claim's recorded failure; return whether it was recorded."""
        assert ref.attempts is not None  # only a claimed document gets here
        key = u.failure_key(ref.id, ref.attempts, ref.token)
        event = yield _find_one(q.by_id_query(q.EVENTS, u.event_id(key)))
        if event is None:
            return False
        retried = bool((event.get("raw") or {}).get("retryAt"))
        yield from self._bump(tenant, "messages.retried" if retried else "messages.failed", key)
        return True

    def _failed_follow_ups(
        self,
        tenant: ObjectId,
        mid: ObjectId,
        now: datetime,
        text: str,
        retry_at: datetime | None,
        key: str,
        attempts: int,
    ) -> Flow[None]:
        raw = u.failure_raw(text, attempts, retry_at)
        yield from self._event(u.new_event(tenant, u.FAILED, now, message_id=mid, raw=raw, key=key))
        yield from self._bump(tenant, "messages.retried" if retry_at else "messages.failed", key)

    def _extend_lease(
        self, message_id: IdLike | DocumentIn, worker_id: str, lease: timedelta
    ) -> Flow[Document]:
        """Extend a held lease to now + ``lease`` (a heartbeat)."""
        ref, worker = u.claim_ref(message_id), u.check_worker(worker_id)
        lease = u.check_lease(lease)
        now = yield from self._now()
        doc = yield _modify(
            u.holder_filter(ref.id, worker, now, ref.tenant, ref.token), u.extend_update(now, lease)
        )
        if doc is None:
            raise u.lease_refusal(
                (yield _find_one(q.by_id_query(q.MESSAGES, ref.id))), ref.id, worker
            )
        return dict(doc)

    # -- cancel, webhooks, backlog ----------------------------------------------

    def _cancel(self, tenant_id: IdLike, message_id: IdLike) -> Flow[Document]:
        """Cancel a tenant's scheduled or processing message (again: return it as it is)."""
        tenant = as_object_id(tenant_id, "tenant_id")
        mid = as_object_id(message_id, "message_id")
        now = yield from self._now()
        doc = yield _modify(u.cancel_filter(tenant, mid), u.cancel_update(now))
        if doc is None:
            doc = yield _find_one(q.owned_query(q.MESSAGES, mid, tenant))
            if doc is None or doc["status"] != u.CANCELLED:
                raise u.cancel_refusal(doc, mid)
            # Already cancelled: a repeated cancel succeeds and completes its count.
        yield from self._bump(tenant, "messages.cancelled", u.follow_up_key(mid, u.CANCELLED))
        return dict(doc)

    def _record_provider_event(
        self,
        tenant_id: IdLike,
        provider: str,
        provider_message_id: str,
        event_type: str,
        *,
        occurred_at: datetime | None = None,
        raw: DocumentIn | None = None,
    ) -> Flow[bool]:
        """Record a provider webhook once; return False if it was already recorded."""
        checked = u.check_event(
            tenant_id, provider, provider_message_id, event_type, occurred_at, raw
        )
        tenant = checked.pop("tenant_id")
        sent = yield _find_one(
            q.sent_event_query(tenant, checked["provider"], checked["provider_message_id"])
        )
        event = u.new_event(
            tenant,
            checked.pop("event_type"),
            (yield from self._now()),
            message_id=(sent or {}).get("scheduledMessageId"),
            **checked,
        )
        # by_provider_message_event: a DuplicateKey means this webhook was seen before.
        return (yield from self._event(event))

    def _backlog(
        self, tenant_id: IdLike | None = None, *, now: datetime | None = None
    ) -> Flow[Backlog]:
        """Summarise the queue (due, oldest due, leases, recent failures)."""
        tenant = optional_object_id(tenant_id, "tenant_id")
        at = yield from self._now(now)
        due = q.due_query(at, tenant)
        oldest = yield _find_one(due, projection={"sendAt": 1})
        return Backlog(
            now=at,
            tenant_id=tenant,
            due_now=(yield _count(due)),
            oldest_due_send_at=oldest["sendAt"] if oldest else None,
            processing_live=(yield _count(q.live_lease_query(at, tenant))),
            processing_expired=(yield _count(q.expired_leases_count_query(at, tenant))),
            failed_last_day=(yield _count(q.failed_since_query(at - q.FAILED_WINDOW, tenant))),
        )

    # -- dead letters -------------------------------------------------------------

    def _failed(
        self,
        tenant_id: IdLike | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Flow[list[DeadLetter]]:
        """List up to ``limit`` messages that failed for good, oldest failure first.

        Of one tenant (or all), that failed in ``[since, until)`` (either end
        open); each with its last error. One round trip. To page on, pass the
        last ``failed_at`` as ``since``.
        """
        tenant = optional_object_id(tenant_id, "tenant_id")
        start, end = u.check_window(since, until)
        limit = check_limit(limit, "limit")
        docs = yield _find(
            q.dead_letters_query(tenant, start, end),
            limit=limit,
            projection=DEAD_LETTER_PROJECTION,
        )
        return [DeadLetter.from_document(doc) for doc in docs]

    def _requeue(
        self,
        message_ids: Iterable[IdLike] | None = None,
        *,
        tenant_id: IdLike | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Flow[int]:
        """Put messages that failed for good back to ``scheduled``, due now; return how many.

        Selects by ``message_ids`` (1 to 10,000), ``tenant_id`` and failure time
        ``[since, until)``, all that are given (at least one); each goes back
        with its attempts reset to 0, so it gets ``max_attempts`` new tries. One
        write, however many match, and idempotent: a requeued message is no
        longer failed, so running it again (after a lost reply, say) requeues
        nothing more. It writes no event and no counter: the timeline shows the
        final failure, then the new attempts. A given-up message whose
        follow-ups are still pending is left for the next claim to finish, and
        for the next requeue.
        """
        ids = None if message_ids is None else u.check_ids(message_ids, "message_ids")
        tenant = optional_object_id(tenant_id, "tenant_id")
        start, end = u.check_window(since, until)
        if ids is None and tenant is None and start is None and end is None:
            raise InvalidArgumentError(
                "requeue needs message_ids, tenant_id or a time window (since, until)",
                argument="message_ids",
            )
        now = yield from self._now()
        result = yield _update_many(
            q.MESSAGES, q.requeue_query(ids, tenant, start, end).filter, u.requeue_update(now)
        )
        log.info("requeued %d failed messages", result.modified_count)
        return int(result.modified_count)

    def _show(self, message_id: IdLike, *, tenant_id: IdLike | None = None) -> Flow[MessageHistory]:
        """Return a message and its event timeline (oldest first); NotFoundError if missing.

        With ``tenant_id``, another tenant's message is as missing as an
        unknown one. Two round trips.
        """
        mid = as_object_id(message_id, "message_id")
        tenant = optional_object_id(tenant_id, "tenant_id")
        query = (
            q.by_id_query(q.MESSAGES, mid)
            if tenant is None
            else q.owned_query(q.MESSAGES, mid, tenant)
        )
        message = yield _find_one(query)
        if message is None:
            raise u.not_found("scheduled message", mid)
        events = yield _find(q.message_events_query(message["tenantId"], mid))
        return MessageHistory(dict(message), [dict(event) for event in events])


def _one(op: Op) -> Flow[Any]:
    """The flow of one call: yield ``op``, return its result."""
    return (yield op)


def _tenants(value: Any) -> list[ObjectId] | None:
    """Check a worker's ``tenants`` restriction: None (all) or ids."""
    if value is None:
        return None
    if isinstance(value, Mapping | str | bytes) or not hasattr(value, "__iter__"):
        raise InvalidArgumentError("tenants must be a list of tenant ids", argument="tenants")
    ids = sorted({as_object_id(t, "tenants") for t in value})
    if not ids or len(ids) > 1000:
        raise InvalidArgumentError("tenants must name 1 to 1000 tenants", argument="tenants")
    return ids


def _refresh(value: Any) -> float:
    """Check ``offset_refresh``: seconds between measurements of the server's clock."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise InvalidArgumentError(
            "offset_refresh must be from 0 to 86400 seconds", argument="offset_refresh"
        )
    return float(value)


def _checked(argument: str, value: Any, kind: type) -> Any:
    """Return ``value`` if it is a ``kind`` (a clock must have ``now()``, an rng be a Random)."""
    if not isinstance(value, kind):
        raise InvalidArgumentError(
            f"{argument} must be a {kind.__name__}, not a value of type {type(value).__name__}",
            argument=argument,
        )
    return value
