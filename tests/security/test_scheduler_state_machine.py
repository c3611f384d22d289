"""A hypothesis state machine of the scheduler: workers, clock jumps and lost replies.

What runs
    Three workers (two share the worker id ``w-shared``, one is ``w-solo``) and
    two clients share one :class:`~nsn_store.scheduler.Scheduler` and one
    :class:`~nsn_store.counters.ShardedCounter`, both built on a
    :class:`~_faults.FaultyDatabase` over the ``db`` fixture (the embedded
    database; a real server too when ``NSN_TEST_MONGODB_URI`` is set). Each
    scheduler call runs in its own thread and stops before every database call
    it makes (collection calls, the counter's writes, the ``hello`` that
    measures the server's clock). Rules let a stopped call make some calls
    cleanly, then one call that either goes through, fails *before* it applies,
    or applies and then fails *as if the reply were lost* (both raise
    ``pymongo.errors.AutoReconnect``). So calls of different actors interleave
    at every database call (two claims of ``w-shared`` in the same millisecond
    included), exactly one thread runs at a time, and every run replays
    exactly. The shared ``ManualClock`` jumps by 1 s to an hour: past leases
    (5 minutes) and retry backoffs. "Now" is the scheduler's own: the clock
    plus the server offset it measured.

How callers behave (as a real worker would)
    A worker claims a batch, then for each message it holds either *sends* it
    (calls the provider, which the model records, then ``mark_sent``), reports
    a provider failure (``mark_failed``, transient or permanent), heartbeats
    (``extend_lease``), or dies between calls, abandoning what it holds. It
    calls the provider only while its lease is live (the ``lockedUntil`` of the
    claimed document or of its last heartbeat); otherwise it drops the message.
    ``mark_sent``/``mark_failed`` that fail with a connection error are
    repeated (later, other steps in between) until they answer; a
    ``LeaseLostError`` makes the worker drop the message. Clients schedule with
    an idempotency key (new or reused) and cancel, repeating after connection
    errors too. A lost ``claim_due`` or heartbeat is not repeated: the worker
    carries on, and what it claimed unknowingly waits for its lease to expire.

Invariants after every step
    - no message is held by two live claims;
    - a live claim not yet finishing is what the database says:
      ``processing``, this worker id, this claim's ``claimToken`` and a lease at
      least as long (or the message was cancelled); ``claim_due`` returns only
      messages it holds (``processing``, with a lease);
    - no message sent twice (see below), none with two ``sent`` events, and no
      holder refused while its lease is live (unless the message was cancelled);
    - no counter above what the statuses justify (a repeated bump never counts
      twice). A give-up (``claim_due`` failing a message whose last lease
      expired) writes its follow-ups before its status, so ``messages.failed``
      is exempt while a claim is in flight.

At teardown, with faults off: calls in flight finish, pending repeats
complete, workers finish what they hold, then time jumps a day at a time while
a sweeper worker drains the queue. Then: every message is sent, failed for
good or cancelled (none lost); each sent message has exactly one ``sent``
event, carrying the provider id of its confirmed send; each message one
``queued`` event, each failed one one final ``failed`` event, none more failed
events than attempts; ``messages.scheduled``, ``.sent``, ``.failed`` and
``.cancelled`` equal the statuses per tenant, ``messages.retried`` the retry
(non-final ``failed``) events.

"Sent twice"
    Leases give at-least-once delivery: a worker may call the provider while
    its lease is live and reach ``mark_sent`` only after the lease ran out
    (here: the clock jumps in between); the scheduler then rightly refuses it
    with ``LeaseLostError``, and another worker may send the message again.
    Such a send is *excused*: a provider call whose ``mark_sent`` was refused
    with the lease expired, or is still unanswered with the lease expired.
    Every other provider call counts, and a message may have at most one that
    counts, and at most one accepted ``mark_sent``. A duplicate is therefore
    the scheduler's fault: it handed one message to two live claims, accepted
    a second ``mark_sent``, or refused a holder whose lease was live.

Size
    CI profile ``scheduler-ci`` (the default): 100 examples of up to 100
    steps, derandomized (the same examples every run) and not shrunk; about
    15-20 s on the embedded database. ``NSN_STATE_MACHINE_PROFILE=shrink`` runs
    the same search and shrinks a failure (minutes); ``=deep`` searches afresh:
    2,000 examples of up to 150 steps, shrunk. ``NSN_STATE_MACHINE_EXAMPLES=N``
    overrides the example count of any of them. A failure prints its steps and
    a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _faults import Call, Fault, FaultPlan, FaultyDatabase, InjectedFault
from bson import ObjectId
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nsn_store.clock import ManualClock
from nsn_store.counters import ShardedCounter
from nsn_store.errors import ConnectionFailedError, InvalidTransitionError, LeaseLostError
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import Scheduler

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 3
BASE_BACKOFF = timedelta(seconds=10)
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
METRICS = (
    "messages.scheduled",
    "messages.sent",
    "messages.failed",
    "messages.retried",
    "messages.cancelled",
)
TURN_TIMEOUT = 10.0  # seconds a scheduler call may run between two database calls

# CI: a fixed search (the same examples every run, so a failure is never flaky) and no
# shrinking (on this machine a shrink takes minutes; the failure prints its full steps
# and a @reproduce_failure blob). "shrink" runs the same search and shrinks a failure;
# "deep" searches afresh, much longer, and shrinks.
settings.register_profile(
    "scheduler-ci",
    max_examples=100,
    stateful_step_count=100,
    deadline=None,
    print_blob=True,
    derandomize=True,
    phases=[p for p in Phase if p is not Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "scheduler-shrink", parent=settings.get_profile("scheduler-ci"), phases=list(Phase)
)
settings.register_profile(
    "scheduler-deep",
    parent=settings.get_profile("scheduler-shrink"),
    max_examples=2000,
    stateful_step_count=150,
    derandomize=False,
)


def _profile() -> settings:
    name = os.environ.get("NSN_STATE_MACHINE_PROFILE", "ci")
    chosen = settings.get_profile(f"scheduler-{name}")
    examples = os.environ.get("NSN_STATE_MACHINE_EXAMPLES")
    return settings(chosen, max_examples=int(examples)) if examples else chosen


# ---------------------------------------------------------------- stepping calls


class Task:
    """One scheduler call in its own thread, stopped before each database call."""

    def __init__(self, label: str, fn: Callable[[], Any], local: threading.local) -> None:
        self.label = label
        self.call: Call | None = None
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self._fault: Fault | None = None
        self._go = threading.Event()
        self._back = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(fn, local), daemon=True, name=f"task {label}"
        )
        self._thread.start()
        self._wait()

    def _main(self, fn: Callable[[], Any], local: threading.local) -> None:
        local.task = self
        try:
            self.value = fn()
        except BaseException as exc:  # handed to the state machine, which judges it
            self.error = exc
        finally:
            self.call, self.done = None, True
            self._back.set()

    def park(self, call: Call) -> Fault | None:
        """In the task's thread: wait here until the machine lets this call proceed."""
        self.call = call
        self._back.set()
        self._go.wait()
        self._go.clear()
        return self._fault

    def step(self, fault: Fault | None) -> None:
        """Let the parked call proceed (with ``fault``) until the next call or the end."""
        assert not self.done and self.call is not None
        self._fault = fault
        self._back.clear()
        self._go.set()
        self._wait()

    def _wait(self) -> None:
        if not self._back.wait(TURN_TIMEOUT):
            raise AssertionError(f"{self.label} neither reached a database call nor ended")
        if self.done:
            self._thread.join(TURN_TIMEOUT)


class Stepper:
    """The fault policy: a call made inside a :class:`Task` parks until it is stepped."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, call: Call) -> Fault | None:
        task: Task | None = getattr(self._local, "task", None)
        return None if task is None else task.park(call)

    def start(self, label: str, fn: Callable[[], Any]) -> Task:
        return Task(label, fn, self._local)


# ---------------------------------------------------------------- the model


@dataclass
class Send:
    """One provider call: a worker delivered the message to the provider."""

    message_id: ObjectId
    worker: str
    provider_message_id: str
    holding: Holding
    outcome: str = "pending"  # "confirmed" (mark_sent answered) or "excused" (see docstring)


@dataclass
class Holding:
    """A claim a worker believes it holds on one message."""

    doc: dict[str, Any]
    lease_end: datetime
    phase: str = "held"  # "held", "sending" (provider called), "failing"
    send: Send | None = None

    @property
    def message_id(self) -> ObjectId:
        return ObjectId(self.doc["_id"])


@dataclass
class Action:
    """A call an actor makes (and repeats after a connection error when ``retried``)."""

    kind: str
    fn: Callable[[], Any]
    retried: bool
    holding: Holding | None = None
    key: str | None = None
    tries: int = 0


@dataclass
class Actor:
    name: str
    worker_id: str | None  # None: the client (schedules and cancels)
    holdings: dict[ObjectId, Holding] = field(default_factory=dict)
    task: Task | None = None
    action: Action | None = None  # in flight (task set) or waiting for its retry

    @property
    def idle(self) -> bool:
        return self.task is None and self.action is None


FAULTS = st.sampled_from([None, None, None, None, Fault.BEFORE, Fault.AFTER])
JUMPS = st.sampled_from(
    [
        timedelta(seconds=1),
        timedelta(seconds=20),
        timedelta(minutes=2),
        LEASE,
        LEASE + timedelta(seconds=1),
        timedelta(hours=1),
    ]
)
PICK = st.integers(0, 7)
RUN = st.integers(0, 12)  # database calls let through before the one that may fail
DELAYS = st.sampled_from(
    [timedelta(0), timedelta(seconds=-30), timedelta(seconds=15), timedelta(minutes=3)]
)


class SchedulerMachine(RuleBasedStateMachine):
    """Workers, clients and a clock against one scheduler on a faulty database."""

    def __init__(self, db: Any, clock: ManualClock) -> None:
        super().__init__()
        for name in (q.MESSAGES, q.EVENTS, q.CONTACTS, "counters"):
            db[name].delete_many({})
        clock.set(START)
        self.raw, self.clock = db, clock
        self.stepper = Stepper()
        faulty = FaultyDatabase(db, self.stepper)
        counter = ShardedCounter(faulty, clock=clock, rng=random.Random(0))
        self.sched = Scheduler(
            faulty,
            clock=clock,
            counter=counter,
            max_attempts=MAX_ATTEMPTS,
            base_backoff=BASE_BACKOFF,
            rng=random.Random(0),
        )
        self.clients = [Actor("client-1", None), Actor("client-2", None)]
        self.workers = [Actor("A", "w-shared"), Actor("B", "w-shared"), Actor("C", "w-solo")]
        self.tenants = [ObjectId(), ObjectId()]
        self.contacts = {
            t: db[q.CONTACTS].insert_one({"tenantId": t, "createdAt": START}).inserted_id
            for t in self.tenants
        }
        self.messages: dict[ObjectId, ObjectId] = {}  # message -> tenant
        self.keys: dict[str, tuple[ObjectId, ObjectId]] = {}  # key -> (tenant, message)
        self.sends: dict[ObjectId, list[Send]] = defaultdict(list)
        self.provider_ids = 0
        self.key_count = 0
        self.faults_on = True

    # -- actors ------------------------------------------------------------

    @property
    def actors(self) -> list[Actor]:
        return [*self.clients, *self.workers]

    def _busy(self) -> list[Actor]:
        return [a for a in self.actors if a.task is not None]

    def _waiting(self) -> list[Actor]:
        return [a for a in self.actors if a.task is None and a.action is not None]

    def _idle_workers(self) -> list[Actor]:
        return [w for w in self.workers if w.idle]

    def _begin(
        self, actor: Actor, action: Action, run: int = 0, fault: Fault | None = None
    ) -> None:
        """Start ``action`` (its thread stops before its first database call), then
        advance it as :meth:`step` does."""
        action.tries += 1
        actor.action = action
        actor.task = self.stepper.start(f"{actor.name}.{action.kind}", action.fn)
        self._advance(actor, run, fault)

    def _advance(self, actor: Actor, clean: int, fault: Fault | None) -> None:
        """Let ``clean`` database calls of the actor's call through, then one with ``fault``."""
        task = actor.task
        assert task is not None
        for _ in range(clean):
            if task.done:
                break
            task.step(None)
        if fault is not None and not task.done and self.faults_on:
            assert task.call is not None
            event(f"fault {fault.value} {task.call.collection or 'db'}.{task.call.method}")
            task.step(fault)
        self._settle_if_done(actor)

    def _settle_if_done(self, actor: Actor) -> None:
        task, action = actor.task, actor.action
        if task is None or action is None or not task.done:
            return
        actor.task = None
        if isinstance(task.error, ConnectionFailedError) and action.retried:
            return  # the action stays: the actor repeats it later
        actor.action = None
        if isinstance(task.error, ConnectionFailedError):
            return  # a lost claim or heartbeat: carry on without it
        getattr(self, f"_on_{action.kind}")(actor, action, task)

    # -- outcomes ----------------------------------------------------------

    def _raise_unexpected(self, task: Task) -> None:
        if task.error is not None:
            raise AssertionError(f"{task.label} raised {task.error!r}") from task.error

    def _on_schedule(self, actor: Actor, action: Action, task: Task) -> None:
        self._raise_unexpected(task)
        doc = task.value
        assert action.key is not None
        tenant = doc["tenantId"]
        first = self.keys.setdefault(action.key, (tenant, doc["_id"]))
        assert first == (tenant, doc["_id"]), f"key {action.key} gave two messages"
        self.messages[doc["_id"]] = tenant

    def _on_cancel(self, actor: Actor, action: Action, task: Task) -> None:
        if isinstance(task.error, InvalidTransitionError):
            return  # already finished: a client accepts that
        self._raise_unexpected(task)

    def _on_claim(self, actor: Actor, action: Action, task: Task) -> None:
        self._raise_unexpected(task)
        for doc in task.value:
            mid = ObjectId(doc["_id"])
            assert doc["status"] == u.PROCESSING and "lockedUntil" in doc, (
                f"claim_due handed {actor.name} a message it does not hold: {doc}"
            )
            assert mid not in actor.holdings or not self._live(actor.holdings[mid]), (
                f"{actor.name} was handed {mid} again while its own claim is live"
            )
            actor.holdings[mid] = Holding(dict(doc), doc["lockedUntil"])

    def _on_mark_sent(self, actor: Actor, action: Action, task: Task) -> None:
        holding = action.holding
        assert holding is not None and holding.send is not None
        actor.holdings.pop(holding.message_id, None)
        if task.error is None:
            holding.send.outcome = "confirmed"
            event(f"mark_sent confirmed after {action.tries} tries")
            return
        event("mark_sent refused: the lease ran out after the provider call")
        self._refused(actor, holding, task)
        holding.send.outcome = "excused"

    def _on_mark_failed(self, actor: Actor, action: Action, task: Task) -> None:
        holding = action.holding
        assert holding is not None
        actor.holdings.pop(holding.message_id, None)
        if task.error is not None:
            self._refused(actor, holding, task)

    def _on_extend(self, actor: Actor, action: Action, task: Task) -> None:
        holding = action.holding
        assert holding is not None
        if task.error is None:
            holding.lease_end = task.value["lockedUntil"]
            return
        actor.holdings.pop(holding.message_id, None)
        self._refused(actor, holding, task)

    def _refused(self, actor: Actor, holding: Holding, task: Task) -> None:
        """A finishing write was refused: fine once the lease ran out or after a cancel."""
        if not isinstance(task.error, LeaseLostError):
            self._raise_unexpected(task)
        if self._live(holding) and self._status(holding.message_id) != u.CANCELLED:
            raise AssertionError(
                f"{task.label} was refused while {actor.name}'s lease on "
                f"{holding.message_id} is live until {holding.lease_end}: {task.error}"
            )

    # -- helpers -----------------------------------------------------------

    def _now(self) -> datetime:
        """Return the scheduler's now: the clock plus the server offset it measured."""
        return self.sched.server_clock.now()

    def _live(self, holding: Holding) -> bool:
        return bool(self._now() < holding.lease_end)

    def _status(self, message_id: ObjectId) -> str | None:
        doc = self.raw[q.MESSAGES].find_one({"_id": message_id}, {"status": 1})
        return None if doc is None else str(doc["status"])

    def _pick(self, items: list[Any], pick: int) -> Any:
        return items[pick % len(items)]

    # -- rules: clients and workers ---------------------------------------------

    def _idle_clients(self) -> list[Actor]:
        return [c for c in self.clients if c.idle]

    @initialize()
    def two_due_messages(self) -> None:
        """Both clients start scheduling a message due now (stepped like any call)."""
        for client, tenant in zip(self.clients, self.tenants, strict=True):
            self._schedule(client, tenant, timedelta(0), reuse=False, run=0)  # stepped later

    @precondition(lambda self: self._idle_clients())
    @rule(
        pick=PICK,
        what=st.sampled_from(["schedule", "schedule", "schedule", "cancel"]),
        tenant=st.integers(0, 1),
        delay=DELAYS,
        reuse=st.booleans(),
        which=PICK,
        run=RUN,
        fault=FAULTS,
    )
    def client(
        self,
        pick: int,
        what: str,
        tenant: int,
        delay: timedelta,
        reuse: bool,
        which: int,
        run: int,
        fault: Fault | None,
    ) -> None:
        """An idle client schedules a message (idempotency key new or reused) or cancels one."""
        client = self._pick(self._idle_clients(), pick)
        if what == "cancel" and self.messages:
            self._cancel(client, self._pick(sorted(self.messages), which), run, fault)
        else:
            self._schedule(client, self.tenants[tenant], delay, reuse, run, fault)

    @precondition(lambda self: self._idle_workers())
    @rule(
        pick=PICK,
        what=st.sampled_from(["claim", "send", "send", "fail", "heartbeat", "crash"]),
        which=PICK,
        limit=st.integers(1, 3),
        permanent=st.booleans(),
        run=RUN,
        fault=FAULTS,
    )
    def worker(
        self,
        pick: int,
        what: str,
        which: int,
        limit: int,
        permanent: bool,
        run: int,
        fault: Fault | None,
    ) -> None:
        """An idle worker claims, or sends / fails / heartbeats a message it holds, or dies."""
        worker = self._pick(self._idle_workers(), pick)
        held = [h for _, h in sorted(worker.holdings.items()) if h.phase == "held"]
        if what == "crash":
            worker.holdings.clear()  # its claims are left to expire
        elif what == "claim" or not held:
            self._claim(worker, limit, run, fault)
        elif what == "send":
            self._send(worker, self._pick(held, which), run, fault)
        elif what == "fail":
            self._fail(worker, self._pick(held, which), permanent, run, fault)
        else:
            self._heartbeat(worker, self._pick(held, which), run, fault)

    # -- what clients and workers do -------------------------------------------

    def _schedule(
        self,
        client: Actor,
        tenant: ObjectId,
        delay: timedelta,
        reuse: bool,
        run: int,
        fault: Fault | None = None,
    ) -> None:
        used = sorted(k for k, (t, _) in self.keys.items() if t == tenant)
        self.key_count += 1
        key = used[-1] if reuse and used else f"key-{self.key_count}"
        send_at, contact = self._now() + delay, self.contacts[tenant]

        def call() -> Any:
            return self.sched.schedule(tenant, contact, "sms", send_at, idempotency_key=key)

        self._begin(client, Action("schedule", call, retried=True, key=key), run, fault)

    def _cancel(self, client: Actor, mid: ObjectId, run: int, fault: Fault | None) -> None:
        tenant = self.messages[mid]
        self._begin(
            client,
            Action("cancel", lambda: self.sched.cancel(tenant, mid), retried=True),
            run,
            fault,
        )

    def _claim(self, worker: Actor, limit: int, run: int, fault: Fault | None) -> None:
        worker_id = worker.worker_id
        assert worker_id is not None

        def call() -> Any:
            return self.sched.claim_due(worker_id, limit=limit, lease=LEASE)

        self._begin(worker, Action("claim", call, retried=False), run, fault)

    def _send(
        self, worker: Actor, holding: Holding, run: int = 0, fault: Fault | None = None
    ) -> None:
        if not self._live(holding):  # a worker checks its lease before the provider call
            del worker.holdings[holding.message_id]
            return
        self.provider_ids += 1
        provider_id = f"pm-{self.provider_ids}"
        holding.phase = "sending"
        holding.send = Send(holding.message_id, worker.name, provider_id, holding)
        self.sends[holding.message_id].append(holding.send)
        doc, worker_id = holding.doc, worker.worker_id
        assert worker_id is not None

        def call() -> Any:
            return self.sched.mark_sent(
                doc, worker_id, provider_message_id=provider_id, provider="twilio"
            )

        self._begin(worker, Action("mark_sent", call, retried=True, holding=holding), run, fault)

    def _fail(
        self, worker: Actor, holding: Holding, permanent: bool, run: int, fault: Fault | None
    ) -> None:
        if not self._live(holding):
            del worker.holdings[holding.message_id]
            return
        holding.phase = "failing"
        doc, worker_id = holding.doc, worker.worker_id
        assert worker_id is not None

        def call() -> Any:
            return self.sched.mark_failed(doc, worker_id, "provider timed out", retry=not permanent)

        self._begin(worker, Action("mark_failed", call, retried=True, holding=holding), run, fault)

    def _heartbeat(self, worker: Actor, holding: Holding, run: int, fault: Fault | None) -> None:
        doc, worker_id = holding.doc, worker.worker_id
        assert worker_id is not None
        self._begin(
            worker,
            Action(
                "extend",
                lambda: self.sched.extend_lease(doc, worker_id, LEASE),
                retried=False,
                holding=holding,
            ),
            run,
            fault,
        )

    # -- rules: time and the network ------------------------------------------

    @precondition(lambda self: self._busy())
    @rule(pick=PICK, clean=RUN, fault=FAULTS)
    def step(self, pick: int, clean: int, fault: Fault | None) -> None:
        """Let a call in flight make ``clean`` database calls, then one with ``fault``."""
        self._advance(self._pick(self._busy(), pick), clean, fault)

    @precondition(lambda self: self._waiting())
    @rule(run=RUN, pick=PICK, fault=FAULTS)
    def retry(self, run: int, pick: int, fault: Fault | None) -> None:
        actor = self._pick(self._waiting(), pick)
        assert actor.action is not None
        self._begin(actor, actor.action, run, fault)

    @rule(jump=JUMPS)
    def tick(self, jump: timedelta) -> None:
        self.clock.advance(jump)

    # -- invariants ----------------------------------------------------------

    @invariant()
    def no_message_held_by_two_live_claims(self) -> None:
        holders: dict[ObjectId, list[str]] = defaultdict(list)
        for worker in self.workers:
            for mid, holding in worker.holdings.items():
                if self._live(holding):
                    holders[mid].append(worker.name)
        doubles = {mid: names for mid, names in holders.items() if len(names) > 1}
        assert not doubles, f"messages held by two live claims: {doubles}"

    @invariant()
    def live_claims_match_the_database(self) -> None:
        for worker in self.workers:
            for mid, holding in worker.holdings.items():
                if holding.phase != "held" or not self._live(holding):
                    continue
                doc = self.raw[q.MESSAGES].find_one({"_id": mid})
                assert doc is not None
                if doc["status"] == u.CANCELLED:
                    continue
                assert doc["status"] == u.PROCESSING, (worker.name, doc)
                assert doc.get("lockedBy") == worker.worker_id, (worker.name, doc)
                token = holding.doc.get("claimToken")
                assert token is None or doc.get("claimToken") == token, (worker.name, doc)
                assert doc["lockedUntil"] >= holding.lease_end, (worker.name, doc)

    @invariant()
    def no_message_sent_twice(self) -> None:
        for mid, sends in self.sends.items():
            counted = [s for s in sends if not self._excused(s)]
            assert len(counted) <= 1, f"{mid} sent twice: {counted}"

    def _excused(self, send: Send) -> bool:
        if send.outcome == "pending":
            return not self._live(send.holding)
        return send.outcome == "excused"

    @invariant()
    def no_message_has_two_sent_events(self) -> None:
        events = Counter(
            e["scheduledMessageId"]
            for e in self.raw[q.EVENTS].find({"eventType": u.SENT}, {"scheduledMessageId": 1})
        )
        assert all(n == 1 for n in events.values()), events

    @invariant()
    def counters_never_exceed_the_statuses(self) -> None:
        expected, counted = self._expected_counts(giving_up=True), self._counter_values()
        over = {k: (v, expected.get(k, 0)) for k, v in counted.items() if v > expected.get(k, 0)}
        assert not over, (
            f"counters above the statuses (counted, justified): {over}; "
            f"messages: {self._describe({tenant for tenant, _ in over})}"
        )

    def _describe(self, tenants: set[ObjectId]) -> list[tuple[str, int, list[str]]]:
        """Return (status, attempts, event types) of the tenants' messages, for failures."""
        kinds: dict[ObjectId, list[str]] = defaultdict(list)
        for row in self.raw[q.EVENTS].find({"tenantId": {"$in": list(tenants)}}):
            final = row.get("raw", {}).get("final")
            kinds[row.get("scheduledMessageId")].append(
                row["eventType"] + ("" if final is None else " final" if final else " retry")
            )
        return [
            (d["status"], d["attempts"], kinds[d["_id"]])
            for d in self.raw[q.MESSAGES].find({"tenantId": {"$in": list(tenants)}})
        ]

    def _expected_counts(self, *, giving_up: bool = False) -> Counter[tuple[ObjectId, str]]:
        """Count per tenant what each counter should say, from statuses and events.

        ``giving_up`` also counts as failed a message still ``processing`` that has
        its final ``failed`` event: a give-up (``claim_due`` failing a message whose
        last lease expired) writes its follow-ups before its status, on purpose
        (nobody repeats a give-up; the next claim redoes it with the same keys).
        """
        expected: Counter[tuple[ObjectId, str]] = Counter()
        status = {}
        for doc in self.raw[q.MESSAGES].find({}, {"tenantId": 1, "status": 1}):
            status[doc["_id"]] = doc["status"]
            expected[doc["tenantId"], "messages.scheduled"] += 1
            if doc["status"] in (u.SENT, u.FAILED, u.CANCELLED):
                expected[doc["tenantId"], f"messages.{doc['status']}"] += 1
        for row in self.raw[q.EVENTS].find({"eventType": u.FAILED}):
            if not row["raw"]["final"]:
                expected[row["tenantId"], "messages.retried"] += 1
            elif giving_up and status.get(row["scheduledMessageId"]) == u.PROCESSING:
                expected[row["tenantId"], "messages.failed"] += 1
        return +expected

    def _counter_values(self) -> Counter[tuple[ObjectId, str]]:
        values: Counter[tuple[ObjectId, str]] = Counter()
        for shard in self.raw["counters"].find({"metric": {"$in": list(METRICS)}}):
            values[shard["tenantId"], shard["metric"]] += shard.get("value", 0)
        return +values

    # -- teardown: quiesce with faults off, then check the end state ----------

    def teardown(self) -> None:
        self.faults_on = False
        try:
            self._quiesce()
            self._finish_holdings()
            self._drain()
            self._check_end_state()
        finally:
            self._release_all()

    def _run_to_end(self, actor: Actor) -> None:
        for _ in range(1000):
            if actor.task is not None:
                actor.task.step(None)
                self._settle_if_done(actor)
            elif actor.action is not None:
                self._begin(actor, actor.action)
            else:
                return
        raise AssertionError(f"{actor.name} never finished {actor.action}")

    def _quiesce(self) -> None:
        for actor in self.actors:
            self._run_to_end(actor)

    def _finish_holdings(self) -> None:
        for worker in self.workers:
            for holding in [h for h in list(worker.holdings.values()) if h.phase == "held"]:
                self._send(worker, holding)
                self._run_to_end(worker)
            worker.holdings.clear()

    def _drain(self) -> None:
        sweeper = Actor("sweeper", "w-sweeper")
        self.workers.append(sweeper)
        for _ in range(4 * MAX_ATTEMPTS):
            if not self.raw[q.MESSAGES].count_documents(
                {"status": {"$in": [u.SCHEDULED, u.PROCESSING]}}
            ):
                return
            self.clock.advance(timedelta(days=1))
            self._begin(
                sweeper,
                Action(
                    "claim",
                    lambda: self.sched.claim_due("w-sweeper", limit=100, lease=LEASE),
                    retried=False,
                ),
            )
            self._run_to_end(sweeper)
            for holding in list(sweeper.holdings.values()):
                self._send(sweeper, holding)
                self._run_to_end(sweeper)

    def _release_all(self) -> None:
        for actor in self.actors:
            for _ in range(1000):
                if actor.task is None or actor.task.done:
                    break
                actor.task.step(None)

    def _check_end_state(self) -> None:
        docs = {d["_id"]: d for d in self.raw[q.MESSAGES].find({})}
        assert set(docs) == set(self.messages), "the database and the model disagree on messages"
        unfinished = {
            m: d["status"]
            for m, d in docs.items()
            if d["status"] not in (u.SENT, u.FAILED, u.CANCELLED)
        }
        assert not unfinished, f"messages lost (never finished): {unfinished}"
        self._check_events(docs)
        self._check_sends(docs)
        expected, counted = self._expected_counts(), self._counter_values()
        assert counted == expected, (
            f"counters differ from the statuses: counted {dict(counted)}, statuses {dict(expected)}"
        )

    def _check_events(self, docs: dict[ObjectId, dict[str, Any]]) -> None:
        events: dict[ObjectId, Counter[str]] = defaultdict(Counter)
        for row in self.raw[q.EVENTS].find({}):
            kind = row["eventType"]
            if kind == u.FAILED:
                kind = "failed-final" if row.get("raw", {}).get("final") else "failed-retry"
            events[row.get("scheduledMessageId")][kind] += 1
        for mid, doc in docs.items():
            seen = events[mid]
            assert seen["queued"] == 1, f"{mid} has {seen['queued']} queued events"
            if doc["status"] == u.SENT:
                assert seen[u.SENT] == 1, f"sent message {mid} has {seen[u.SENT]} sent events"
            elif doc["status"] == u.FAILED:
                assert seen[u.SENT] == 0, f"failed message {mid} has a sent event"
                assert seen["failed-final"] == 1, f"failed message {mid}: {dict(seen)}"
            assert seen["failed-retry"] + seen["failed-final"] <= doc["attempts"], (
                f"{mid} has more failed events than attempts: {dict(seen)}, {doc['attempts']}"
            )

    def _check_sends(self, docs: dict[ObjectId, dict[str, Any]]) -> None:
        for mid, sends in self.sends.items():
            confirmed = [s for s in sends if s.outcome == "confirmed"]
            assert len(confirmed) <= 1, f"{mid}: mark_sent accepted twice: {confirmed}"
            assert all(s.outcome != "pending" for s in sends), sends
            if confirmed:
                assert docs[mid]["status"] == u.SENT, (mid, docs[mid])
                row = self.raw[q.EVENTS].find_one({"scheduledMessageId": mid, "eventType": u.SENT})
                assert row is not None
                assert row.get("providerMessageId") == confirmed[0].provider_message_id, row
        for mid, doc in docs.items():
            if doc["status"] == u.SENT:
                assert self.sends.get(mid), f"{mid} is sent but no worker called the provider"


def test_scheduler_state_machine(db: Any, clock: ManualClock) -> None:
    init_schema(db)

    class OnThisDatabase(SchedulerMachine):
        def __init__(self) -> None:
            super().__init__(db, clock)

    run_state_machine_as_test(OnThisDatabase, settings=_profile())


@pytest.mark.parametrize("fault", [Fault.BEFORE, Fault.AFTER])
def test_the_fault_wrapper_fails_before_or_after_applying(db: Any, fault: Fault) -> None:
    plan = FaultPlan()
    faulty = FaultyDatabase(db, plan)
    plan.arm(fault, method="insert_one")
    with pytest.raises(InjectedFault):
        faulty["things"].insert_one({"_id": 1})
    assert db["things"].count_documents({}) == (1 if fault is Fault.AFTER else 0)
    faulty["things"].insert_one({"_id": 2})  # one-shot: the next call goes through
    assert plan.pending == 0 and [c.method for c, _ in plan.calls] == ["insert_one"] * 2


@pytest.mark.parametrize("fault", [Fault.BEFORE, Fault.AFTER])
def test_a_counter_on_the_wrapped_database_gets_the_faults(db: Any, fault: Fault) -> None:
    plan = FaultPlan()
    counter = ShardedCounter(FaultyDatabase(db, plan), shards=1)
    tenant = ObjectId()
    plan.arm(fault, collection="counters")
    with pytest.raises(ConnectionFailedError):  # translated like a real dropped connection
        counter.add(tenant, "messages.sent")
    assert ShardedCounter(db, shards=1).count(tenant, "messages.sent") == (
        1 if fault is Fault.AFTER else 0
    )
