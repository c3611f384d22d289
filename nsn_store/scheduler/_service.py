"""Schedule, claim and finish messages: the worker hot path, sync and asyncio.

Each operation is written once, as a flow (:mod:`nsn_store._flow`) in
:mod:`nsn_store.scheduler._flows`; :class:`Scheduler` runs those flows against
a PyMongo ``Database`` and :class:`AsyncScheduler` against an async one
(PyMongo's ``AsyncMongoClient``, Motor, the embedded async client). Both are
lists of declarations, so they cannot drift apart.

Lifecycle: ``scheduled -> processing`` (claimed, with a lease) ``-> sent``; or
back to ``scheduled`` with a later ``sendAt`` after a transient failure; or
``failed`` after the last attempt (``requeue`` puts it back to ``scheduled``);
``scheduled``/``processing -> cancelled``; ``cancelled -> sent`` only when the
claim that held the message reports its send. An expired lease makes a
message claimable again.

Every argument is checked before the first database call (a bad one raises
:class:`~nsn_store.errors.InvalidArgumentError` naming it), and every
operation is safe to repeat after a lost reply: see
:class:`~nsn_store.scheduler._flows._Flows`.
"""

from __future__ import annotations

from nsn_store._flow import asynchronous, sync
from nsn_store.scheduler._flows import _Flows

__all__ = ["AsyncScheduler", "Scheduler"]


class Scheduler(_Flows):
    """Schedule, claim and finish messages through a PyMongo ``Database``.

    ``clock`` supplies "now" (default: the system clock), corrected by its
    offset from the database server's clock (measured with ``hello`` at the
    first call and every ``offset_refresh`` seconds, default 60), so workers
    whose clocks disagree still agree on due-ness and lease expiry;
    ``server_time=False`` trusts ``clock`` as it is (virtual time, as in the
    simulation). ``counter`` (a ``ShardedCounter`` or ``AsyncShardedCounter``:
    anything with ``add_flow``) is bumped once per transition, keyed, its add
    running inside the transition's flow on the scheduler's database; a failed
    attempt is retried with exponential backoff from ``base_backoff`` (1 ms to
    6 h) until the ``max_attempts``-th attempt fails (1 to 10,000); ``rng``
    makes the jitter reproducible. Leases run from ``MIN_LEASE`` (1 s) to
    ``MAX_LEASE`` (1 h). Safe to share between threads.

    ``mark_sent``, ``mark_failed`` and ``extend_lease`` take the document
    ``claim_due`` returned (or, weaker, the message's bare id). The document
    carries the claim's ``claimToken``: only that claim may finish the
    message, and the same call repeated after a lost reply recognises its own
    completed write. Its ``tenantId`` (the shard key) lets a sharded cluster
    route the write to one shard. A bare id is checked by worker id only (a
    claim superseded under the same worker id can still finish the message)
    and a repeated ``mark_sent``/``mark_failed`` by bare id is refused.

    Dead letters: ``failed`` lists messages that failed for good, ``requeue``
    puts them back (one write, however many), ``show`` prints one with its
    event timeline.
    """

    schedule = sync(_Flows._schedule)
    claim_due = sync(_Flows._claim_due)
    mark_sent = sync(_Flows._mark_sent)
    mark_failed = sync(_Flows._mark_failed)
    extend_lease = sync(_Flows._extend_lease)
    cancel = sync(_Flows._cancel)
    record_provider_event = sync(_Flows._record_provider_event)
    release = sync(_Flows._release)
    extend_leases = sync(_Flows._extend_leases)
    next_due_at = sync(_Flows._next_due_at)
    cancel_opted_out = sync(_Flows._cancel_opted_out)
    backlog = sync(_Flows._backlog)
    failed = sync(_Flows._failed)
    requeue = sync(_Flows._requeue)
    show = sync(_Flows._show)


class AsyncScheduler(_Flows):
    """The asyncio twin of :class:`Scheduler` (AsyncMongoClient, Motor, the embedded async client).

    Same constructor and methods, awaited, over the same flows.
    """

    schedule = asynchronous(_Flows._schedule)
    claim_due = asynchronous(_Flows._claim_due)
    mark_sent = asynchronous(_Flows._mark_sent)
    mark_failed = asynchronous(_Flows._mark_failed)
    extend_lease = asynchronous(_Flows._extend_lease)
    cancel = asynchronous(_Flows._cancel)
    record_provider_event = asynchronous(_Flows._record_provider_event)
    release = asynchronous(_Flows._release)
    extend_leases = asynchronous(_Flows._extend_leases)
    next_due_at = asynchronous(_Flows._next_due_at)
    cancel_opted_out = asynchronous(_Flows._cancel_opted_out)
    backlog = asynchronous(_Flows._backlog)
    failed = asynchronous(_Flows._failed)
    requeue = asynchronous(_Flows._requeue)
    show = asynchronous(_Flows._show)
