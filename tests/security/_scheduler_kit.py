"""A scheduler under test, sync or async, on a database whose calls can fail or be hooked.

Issue 9's scheduler regression tests (``test_claim_tokens``, ``test_retry_safe_transitions``,
``test_scheduler_arguments``, ``test_scheduler_references``, ``test_lease_clock``) write each
scenario once as a coroutine over a :class:`Kit` and run it twice: with the sync
:class:`~nsn_store.scheduler.Scheduler` on the ``db`` fixture and with the
:class:`~nsn_store.scheduler.AsyncScheduler` on ``async_db``. ``await kit.do(value)``
awaits what the async scheduler returns and passes the sync one's result through.

A test module imports the fixtures (``sync_kit_fixture``, ``async_kit_fixture``, which
pytest knows as ``sync_kit`` and ``async_kit``) along with the helpers it uses.

The scheduler and its counter run on a wrapped database (``tests/_faults.py`` for sync,
:class:`AsyncFaultyDatabase` here for async): ``kit.plan.arm(Fault.AFTER, ...)`` makes a
call apply and then lose its reply (``pymongo.errors.AutoReconnect``); ``kit.hook`` runs
before each call (a test interleaves a second caller there). ``kit.db`` is the raw
database, for checking what was really written.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from _faults import WRAPPED, Call, Fault, FaultPlan, FaultyDatabase, InjectedFault
from bson import ObjectId

from nsn_store.clock import ManualClock
from nsn_store.counters import AsyncShardedCounter, ShardedCounter
from nsn_store.errors import ConnectionFailedError
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler._service import AsyncScheduler, Scheduler

__all__ = [
    "Fault",
    "Kit",
    "async_kit_fixture",
    "do",
    "lose_reply",
    "once_before",
    "sync_kit_fixture",
    "twins",
]

METRICS = (
    "messages.scheduled",
    "messages.sent",
    "messages.retried",
    "messages.failed",
    "messages.cancelled",
)
Hook = Callable[[Call], Any]


async def do(value: Any) -> Any:
    """Await ``value`` if it is awaitable (the async scheduler), else return it (the sync one)."""
    return await value if inspect.isawaitable(value) else value


@dataclass
class Kit:
    """One scheduler under test, its raw database, fault plan, clock and a tenant's contact."""

    mode: str
    db: Any
    faulty: Any
    plan: FaultPlan
    clock: ManualClock
    counter: Any
    sched: Any
    tenant: ObjectId = field(default_factory=ObjectId)
    contact: ObjectId | None = None
    hooks: list[Hook] = field(default_factory=list)

    do = staticmethod(do)

    def scheduler(self, **options: Any) -> Any:
        """Return another scheduler of this kit's kind on the same (faulty) database."""
        cls = Scheduler if self.mode == "sync" else AsyncScheduler
        return cls(self.faulty, **{"clock": self.clock, "counter": self.counter, **options})

    async def retried(self, call: Callable[[], Any], attempts: int = 3) -> Any:
        """Call ``call`` until it stops failing on a lost connection, as a worker retries."""
        for _ in range(attempts - 1):
            try:
                return await do(call())
            except ConnectionFailedError:
                continue
        return await do(call())

    async def find(self, collection: str, filter_: dict[str, Any]) -> list[dict[str, Any]]:
        cursor = self.db[collection].find(filter_)
        return list(cursor) if self.mode == "sync" else await cursor.to_list(None)

    async def find_one(self, collection: str, filter_: dict[str, Any]) -> Any:
        return await do(self.db[collection].find_one(filter_))

    async def count(self, collection: str, filter_: dict[str, Any] | None = None) -> int:
        return int(await do(self.db[collection].count_documents(filter_ or {})))

    async def counts(self) -> dict[str, int]:
        """Return every scheduler metric of the kit's tenant, exactly."""
        return {metric: await do(self.counter.count(self.tenant, metric)) for metric in METRICS}

    async def message(self, message_id: ObjectId) -> dict[str, Any]:
        found = await self.find_one(q.MESSAGES, {"_id": message_id})
        assert found is not None
        return dict(found)

    async def events(self, message_id: ObjectId, event_type: str | None = None) -> list[Any]:
        query: dict[str, Any] = {"scheduledMessageId": message_id}
        if event_type is not None:
            query["eventType"] = event_type
        return await self.find(q.EVENTS, query)

    async def writes(self) -> tuple[int, int, int]:
        """Return how many messages, events and counter shards exist (to prove none was added)."""
        return (
            await self.count(q.MESSAGES),
            await self.count(q.EVENTS),
            await self.count("counters"),
        )

    async def due(self, count: int = 1, **options: Any) -> list[ObjectId]:
        """Schedule ``count`` messages due now through the scheduler; return their ids."""
        assert self.contact is not None
        ids = []
        for _ in range(count):
            message = await do(
                self.sched.schedule(self.tenant, self.contact, "sms", self.clock.now(), **options)
            )
            ids.append(message["_id"])
        return ids

    async def claim(self, worker: str = "w1", **options: Any) -> list[dict[str, Any]]:
        return list(await do(self.sched.claim_due(worker, **options)))


def _policy(kit_hooks: list[Hook], plan: FaultPlan) -> Callable[[Call], Fault | None]:
    def policy(call: Call) -> Fault | None:
        for hook in list(kit_hooks):
            hook(call)
        return plan(call)

    return policy


@pytest.fixture(name="sync_kit")
def sync_kit_fixture(db: Any, clock: ManualClock) -> Kit:
    """The sync scheduler on ``db`` (schema applied) through a fault-injecting wrapper."""
    init_schema(db)
    plan, hooks = FaultPlan(), []
    faulty = FaultyDatabase(db, _policy(hooks, plan))
    counter = ShardedCounter(faulty, shards=4, clock=clock, rng=random.Random(1))
    sched = Scheduler(faulty, clock=clock, counter=counter, max_attempts=3, rng=random.Random(7))
    kit = Kit("sync", db, faulty, plan, clock, counter, sched, hooks=hooks)
    kit.contact = (
        db[q.CONTACTS].insert_one({"tenantId": kit.tenant, "createdAt": clock.now()}).inserted_id
    )
    return kit


@pytest.fixture(name="async_kit")
async def async_kit_fixture(async_db: Any, clock: ManualClock) -> Kit:
    """The async scheduler on ``async_db`` through :class:`AsyncFaultyDatabase`."""
    from _support import init_schema_async

    await init_schema_async(async_db)
    plan, hooks = FaultPlan(), []
    faulty = AsyncFaultyDatabase(async_db, plan, hooks)
    counter = AsyncShardedCounter(faulty, shards=4, clock=clock, rng=random.Random(1))
    sched = AsyncScheduler(
        faulty, clock=clock, counter=counter, max_attempts=3, rng=random.Random(7)
    )
    kit = Kit("async", async_db, faulty, plan, clock, counter, sched, hooks=hooks)
    inserted = await async_db[q.CONTACTS].insert_one(
        {"tenantId": kit.tenant, "createdAt": clock.now()}
    )
    kit.contact = inserted.inserted_id
    return kit


# --- the async twin of tests/_faults.FaultyDatabase ---------------------------------


class AsyncFaultyCollection:
    """An async collection whose calls ask the plan (and await the hooks) first."""

    def __init__(self, collection: Any, plan: FaultPlan, hooks: list[Hook]) -> None:
        self._collection, self._plan, self._hooks = collection, plan, hooks

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in WRAPPED:
            return attribute
        if name == "find":
            return lambda *args, **kwargs: _FaultyCursor(self, attribute, args, kwargs)

        async def call(*args: Any, **kwargs: Any) -> Any:
            fault = await self.ask(Call(self._collection.name, name, args, kwargs))
            result = await attribute(*args, **kwargs)
            if fault is Fault.AFTER:
                raise InjectedFault(Call(self._collection.name, name, args, kwargs), fault)
            return result

        return call

    async def ask(self, call: Call) -> Fault | None:
        """Run the hooks, then raise a BEFORE fault or return the plan's answer."""
        for hook in list(self._hooks):
            await do(hook(call))
        fault = self._plan(call)
        if fault is Fault.BEFORE:
            raise InjectedFault(call, fault)
        return fault


@dataclass
class _FaultyCursor:
    owner: AsyncFaultyCollection
    find: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    async def to_list(self, length: int | None = None) -> list[Any]:
        call = Call(self.owner._collection.name, "find", self.args, self.kwargs)
        fault = await self.owner.ask(call)
        found = await self.find(*self.args, **self.kwargs).to_list(length)
        if fault is Fault.AFTER:
            raise InjectedFault(call, fault)
        return list(found)


class AsyncFaultyDatabase:
    """An async database whose collections are :class:`AsyncFaultyCollection`."""

    def __init__(self, db: Any, plan: FaultPlan, hooks: list[Hook]) -> None:
        self._db, self._plan, self._hooks = db, plan, hooks

    def __getitem__(self, name: str) -> AsyncFaultyCollection:
        return AsyncFaultyCollection(self._db[name], self._plan, self._hooks)

    def get_collection(self, name: str, **options: Any) -> AsyncFaultyCollection:
        return AsyncFaultyCollection(
            self._db.get_collection(name, **options), self._plan, self._hooks
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def lose_reply(kit: Kit, method: str, collection: str) -> None:
    """Make the next ``collection.method`` apply and then lose its reply."""
    kit.plan.arm(Fault.AFTER, method=method, collection=collection)


def once_before(
    kit: Kit, method: str, collection: str | None, action: Callable[[], Any]
) -> list[Any]:
    """Run ``action`` (awaited if async) just before the next matching call; return its result."""
    results: list[Any] = []

    def hook(call: Call) -> Any:
        if results or call.method != method or collection not in (None, call.collection):
            return None
        results.append(None)
        kit.hooks.remove(hook)
        outcome = action()
        if inspect.isawaitable(outcome):

            async def keep() -> None:
                results[0] = await outcome

            return keep()
        results[0] = outcome
        return None

    kit.hooks.append(hook)
    return results


def twins(scenario: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """Return ``test_<scenario>_sync`` and ``test_<scenario>_async`` running ``scenario``.

    A module registers them with ``globals().update(twins(scenario))``; each
    runs ``scenario(kit, **params)`` with the sync or the async kit.

    ``scenario``'s parameters after ``kit`` stay test parameters (fixtures or
    ``parametrize`` names), and its ``pytest.mark`` marks apply to both tests.
    """
    params = list(inspect.signature(scenario).parameters)[1:]

    def make(fixture: str) -> Callable[..., Any]:
        async def test(**kwargs: Any) -> None:
            await scenario(kwargs.pop(fixture), **kwargs)

        test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in (fixture, *params)]
        )
        test.__doc__ = scenario.__doc__
        test.__name__ = f"test_{scenario.__name__}_{fixture.split('_')[0]}"
        test.pytestmark = list(getattr(scenario, "pytestmark", []))  # type: ignore[attr-defined]
        return test

    tests = [make("sync_kit"), make("async_kit")]
    return {test.__name__: test for test in tests}
