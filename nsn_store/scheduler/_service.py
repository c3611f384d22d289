"""Schedule, claim and finish messages: the worker hot path, sync and asyncio.

Each operation is written once, as a generator that yields database operations
(:class:`Op`) and receives their results; :class:`Scheduler` runs those
generators against a PyMongo ``Database`` and :class:`AsyncScheduler` against
an async one (PyMongo's ``AsyncMongoClient``, Motor, mongomock-motor). The two
classes therefore cannot drift apart: they differ only in how an ``Op`` is
executed. The generators live in :mod:`nsn_store.scheduler._flows`; filters
and updates come from the pure builders in :mod:`nsn_store.scheduler._queries`.

Lifecycle: ``scheduled -> processing`` (claimed, with a lease) ``-> sent``; or
back to ``scheduled`` with a later ``sendAt`` after a transient failure; or
``failed`` after the last attempt; ``scheduled``/``processing -> cancelled``;
``cancelled -> sent`` only when the claim that held the message reports its send.
An expired lease makes a message claimable again.

Every argument is checked before the first database call (a bad one raises
:class:`~nsn_store.errors.InvalidArgumentError` naming it), and every
operation is safe to repeat after a lost reply: see
:class:`~nsn_store.scheduler._flows._Flows`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from nsn_store.errors import NsnStoreError, translated
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._flows import Backlog, Document, Flow, Op, _Flows

log = logging.getLogger(__name__)

# The Op/Backlog types and the operations (_Flows) live in scheduler_flows;
# they are re-exported so every name stays importable from nsn_store.scheduler.
__all__ = ["AsyncScheduler", "Scheduler"]


class Scheduler(_Flows):
    """Schedule, claim and finish messages through a PyMongo ``Database``.

    ``clock`` supplies "now" (default: the system clock), corrected by its
    offset from the database server's clock (measured with ``hello`` at the
    first call and every ``offset_refresh`` seconds, default 60), so workers
    whose clocks disagree still agree on due-ness and lease expiry;
    ``server_time=False`` trusts ``clock`` as it is (virtual time, as in the
    simulation). ``counter`` (a ``ShardedCounter``; its ``add`` must accept
    ``once=``) is bumped once per transition, keyed; a failed attempt is
    retried with exponential backoff from ``base_backoff`` (1 ms to 6 h) until
    the ``max_attempts``-th attempt fails (1 to 10,000); ``rng`` makes the
    jitter reproducible. Leases run from ``MIN_LEASE`` (1 s) to ``MAX_LEASE``
    (1 h). Safe to share between threads.

    ``mark_sent``, ``mark_failed`` and ``extend_lease`` take the document
    ``claim_due`` returned (or, weaker, the message's bare id). The document
    carries the claim's ``claimToken``: only that claim may finish the
    message, and the same call repeated after a lost reply recognises its own
    completed write. Its ``tenantId`` (the shard key) lets a sharded cluster
    route the write to one shard. A bare id is checked by worker id only (a
    claim superseded under the same worker id can still finish the message)
    and a repeated ``mark_sent``/``mark_failed`` by bare id is refused.
    """

    def schedule(
        self,
        tenant_id: Any,
        contact_id: Any,
        channel: str,
        send_at: datetime,
        *,
        payload: Mapping[str, Any] | None = None,
        workflow_step_id: Any = None,
        template_id: Any = None,
        idempotency_key: str | None = None,
    ) -> Document:
        """Schedule a message to the tenant's own contact; a repeated key returns the first."""
        return self._run(
            self._schedule(
                tenant_id,
                contact_id,
                channel,
                send_at,
                payload=payload,
                workflow_step_id=workflow_step_id,
                template_id=template_id,
                idempotency_key=idempotency_key,
            )
        )

    def claim_due(
        self,
        worker_id: str,
        *,
        now: datetime | None = None,
        limit: int = 100,
        lease: timedelta = u.DEFAULT_LEASE,
        tenants: Iterable[Any] | None = None,
    ) -> list[Document]:
        """Claim up to ``limit`` due messages for ``worker_id`` (of ``tenants``, or all).

        Oldest ``sendAt`` first; when more are due than fit, each claim also
        takes the oldest due message of up to ``FAIR_PROBES`` tenants in turn,
        so no tenant's backlog starves another's.
        """
        return self._run(self._claim_due(worker_id, now, limit, lease, tenants))

    def mark_sent(
        self,
        message_id: Any,
        worker_id: str,
        *,
        provider_message_id: str | None = None,
        provider: str | None = None,
    ) -> Document:
        """Mark a held (or, while held, cancelled) message sent; LeaseLostError if not held."""
        return self._run(self._mark_sent(message_id, worker_id, provider_message_id, provider))

    def mark_failed(
        self, message_id: Any, worker_id: str, error: str | BaseException, *, retry: bool = True
    ) -> Document:
        """Record a failed attempt: retry later with backoff, or fail for good."""
        return self._run(self._mark_failed(message_id, worker_id, error, retry))

    def extend_lease(self, message_id: Any, worker_id: str, lease: timedelta) -> Document:
        """Extend a held lease to now + ``lease`` (a heartbeat)."""
        return self._run(self._extend_lease(message_id, worker_id, lease))

    def cancel(self, tenant_id: Any, message_id: Any) -> Document:
        """Cancel a tenant's scheduled or processing message (again: return it as it is)."""
        return self._run(self._cancel(tenant_id, message_id))

    def record_provider_event(
        self,
        tenant_id: Any,
        provider: str,
        provider_message_id: str,
        event_type: str,
        *,
        occurred_at: datetime | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a provider webhook once; return False if it was already recorded."""
        return self._run(
            self._record_provider_event(
                tenant_id, provider, provider_message_id, event_type, occurred_at, raw
            )
        )

    def release(self, messages: Iterable[Mapping[str, Any]], worker_id: str) -> int:
        """Hand claimed, unstarted messages back to ``scheduled`` without spending an attempt."""
        return self._run(self._release(messages, worker_id))

    def extend_leases(
        self, messages: Iterable[Mapping[str, Any]], worker_id: str, lease: timedelta
    ) -> set[ObjectId]:
        """Extend every lease of ``messages`` still held, in one write; return the ids kept."""
        return self._run(self._extend_leases(messages, worker_id, lease))

    def next_due_at(self, *, tenants: Iterable[Any] | None = None) -> datetime | None:
        """Return when the next message becomes claimable (a ``sendAt`` or a lease's end)."""
        return self._run(self._next_due_at(tenants))

    def cancel_opted_out(self, message: Mapping[str, Any], worker_id: str) -> Document:
        """Cancel a held message whose contact opted out, with an ``opted_out`` event."""
        return self._run(self._cancel_opted_out(message, worker_id))

    def backlog(self, tenant_id: Any = None, *, now: datetime | None = None) -> Backlog:
        """Summarise the queue (due, oldest due, leases, recent failures)."""
        return self._run(self._backlog(tenant_id, now))

    def _run(self, flow: Flow) -> Any:
        result: Any = None
        error: NsnStoreError | None = None
        while True:
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                result = self._execute(op)
            except NsnStoreError as exc:
                error = exc

    def _execute(self, op: Op) -> Any:
        if op.method == "counter":
            return self.counter.add(*op.args, **op.kwargs)
        if op.method == "command":
            with translated():
                return self.db.command(*op.args, **op.kwargs)
        self._count_trip()
        collection = self.db[op.collection]
        with translated(collection=op.collection):
            result = getattr(collection, op.method)(*op.args, **op.kwargs)
            return list(result) if op.method == "find" else result


class AsyncScheduler(_Flows):
    """The asyncio twin of :class:`Scheduler` (AsyncMongoClient, Motor, mongomock-motor).

    Same constructor and methods, awaited; ``counter`` may be an
    ``AsyncShardedCounter`` (its ``add`` is awaited) or a sync one.
    """

    async def schedule(
        self,
        tenant_id: Any,
        contact_id: Any,
        channel: str,
        send_at: datetime,
        *,
        payload: Mapping[str, Any] | None = None,
        workflow_step_id: Any = None,
        template_id: Any = None,
        idempotency_key: str | None = None,
    ) -> Document:
        """Schedule a message to the tenant's own contact; a repeated key returns the first."""
        return await self._run(
            self._schedule(
                tenant_id,
                contact_id,
                channel,
                send_at,
                payload=payload,
                workflow_step_id=workflow_step_id,
                template_id=template_id,
                idempotency_key=idempotency_key,
            )
        )

    async def claim_due(
        self,
        worker_id: str,
        *,
        now: datetime | None = None,
        limit: int = 100,
        lease: timedelta = u.DEFAULT_LEASE,
        tenants: Iterable[Any] | None = None,
    ) -> list[Document]:
        """Claim up to ``limit`` due messages for ``worker_id`` (of ``tenants``, or all).

        Oldest ``sendAt`` first; when more are due than fit, each claim also
        takes the oldest due message of up to ``FAIR_PROBES`` tenants in turn,
        so no tenant's backlog starves another's.
        """
        return await self._run(self._claim_due(worker_id, now, limit, lease, tenants))

    async def mark_sent(
        self,
        message_id: Any,
        worker_id: str,
        *,
        provider_message_id: str | None = None,
        provider: str | None = None,
    ) -> Document:
        """Mark a held (or, while held, cancelled) message sent; LeaseLostError if not held."""
        return await self._run(
            self._mark_sent(message_id, worker_id, provider_message_id, provider)
        )

    async def mark_failed(
        self, message_id: Any, worker_id: str, error: str | BaseException, *, retry: bool = True
    ) -> Document:
        """Record a failed attempt: retry later with backoff, or fail for good."""
        return await self._run(self._mark_failed(message_id, worker_id, error, retry))

    async def extend_lease(self, message_id: Any, worker_id: str, lease: timedelta) -> Document:
        """Extend a held lease to now + ``lease`` (a heartbeat)."""
        return await self._run(self._extend_lease(message_id, worker_id, lease))

    async def cancel(self, tenant_id: Any, message_id: Any) -> Document:
        """Cancel a tenant's scheduled or processing message (again: return it as it is)."""
        return await self._run(self._cancel(tenant_id, message_id))

    async def record_provider_event(
        self,
        tenant_id: Any,
        provider: str,
        provider_message_id: str,
        event_type: str,
        *,
        occurred_at: datetime | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a provider webhook once; return False if it was already recorded."""
        return await self._run(
            self._record_provider_event(
                tenant_id, provider, provider_message_id, event_type, occurred_at, raw
            )
        )

    async def release(self, messages: Iterable[Mapping[str, Any]], worker_id: str) -> int:
        """Hand claimed, unstarted messages back to ``scheduled`` without spending an attempt."""
        return await self._run(self._release(messages, worker_id))

    async def extend_leases(
        self, messages: Iterable[Mapping[str, Any]], worker_id: str, lease: timedelta
    ) -> set[ObjectId]:
        """Extend every lease of ``messages`` still held, in one write; return the ids kept."""
        return await self._run(self._extend_leases(messages, worker_id, lease))

    async def next_due_at(self, *, tenants: Iterable[Any] | None = None) -> datetime | None:
        """Return when the next message becomes claimable (a ``sendAt`` or a lease's end)."""
        return await self._run(self._next_due_at(tenants))

    async def cancel_opted_out(self, message: Mapping[str, Any], worker_id: str) -> Document:
        """Cancel a held message whose contact opted out, with an ``opted_out`` event."""
        return await self._run(self._cancel_opted_out(message, worker_id))

    async def backlog(self, tenant_id: Any = None, *, now: datetime | None = None) -> Backlog:
        """Summarise the queue (due, oldest due, leases, recent failures)."""
        return await self._run(self._backlog(tenant_id, now))

    async def _run(self, flow: Flow) -> Any:
        result: Any = None
        error: NsnStoreError | None = None
        while True:
            try:
                op = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                result = await self._execute(op)
            except NsnStoreError as exc:
                error = exc

    async def _execute(self, op: Op) -> Any:
        if op.method == "counter":
            added = self.counter.add(*op.args, **op.kwargs)
            return await added if inspect.isawaitable(added) else added
        if op.method == "command":
            with translated():
                return await self.db.command(*op.args, **op.kwargs)
        self._count_trip()
        collection = self.db[op.collection]
        with translated(collection=op.collection):
            if op.method == "find":
                return await collection.find(*op.args, **op.kwargs).to_list(None)
            return await getattr(collection, op.method)(*op.args, **op.kwargs)
