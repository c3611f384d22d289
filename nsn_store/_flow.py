"""One sync/async mechanism: operations written once as flows of database calls.

A *flow* is a generator that yields :class:`Op` values (one database call
each) and receives their results; it returns the operation's result. Every
service (scheduler, counters, previews, RAG, aggregates, tenancy, migration,
worker) writes each operation once, as a flow; :func:`run` executes a flow
against a PyMongo ``Database`` and :func:`run_async` against an async one
(PyMongo's ``AsyncMongoClient``, Motor, the embedded async client). The two
runners are the only place where driver calls are made, driver errors are
translated (:func:`nsn_store.errors.translate`, then thrown *into* the flow so
it can react, for example to a duplicate key) and round trips are counted.
A flow composes others with ``yield from``.

This is httpx's ``auth_flow`` idea: one generator driven two ways, so the sync
class and its async twin cannot drift apart; each is a list of one-line
declarations made with :func:`sync` and :func:`asynchronous`::

    class _CounterFlows(FlowHost):
        def _get(self, name: str) -> Flow[int]:
            # the flow's docstring becomes the methods' docstring
            rows = yield Op("find", "counters", ({"name": name},))
            return sum(row["value"] for row in rows)

    class ShardedCounter(_CounterFlows):
        get = sync(_CounterFlows._get)           # (name: str) -> int

    class AsyncShardedCounter(_CounterFlows):
        get = asynchronous(_CounterFlows._get)   # async (name: str) -> int

The declaration keeps the flow's signature and docstring, so ``help()``, IDEs
and type checkers see the real method.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from pymongo import errors as pymongo_errors

from nsn_store.errors import NsnStoreError, translate

__all__ = [
    "CURSOR_METHODS",
    "Flow",
    "FlowHost",
    "Op",
    "TripCounter",
    "asynchronous",
    "command",
    "run",
    "run_async",
    "sync",
]

T = TypeVar("T")
P = ParamSpec("P")
H = TypeVar("H", bound="FlowHost")
M = TypeVar("M", bound=Callable[..., Any])

#: A flow: yields database calls, receives their results, returns ``T``.
Flow = Generator["Op", Any, T]

#: Methods whose result is a cursor; the runners return it as a list.
CURSOR_METHODS = frozenset({"find", "aggregate", "list_indexes", "list_collections"})

#: ``Op.collection`` for calls on the database itself (``command``, ``create_collection``).
DATABASE = ""


@dataclass(frozen=True)
class Op:
    """One database call: ``db[collection].method(*args, **kwargs)``.

    ``collection`` is :data:`DATABASE` (empty) for a call on the database.
    """

    method: str
    collection: str = DATABASE
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def command(document: Mapping[str, Any]) -> Op:
    """Return the op that runs a database command (``db.command(document)``)."""
    return Op("command", DATABASE, (dict(document),))


class TripCounter:
    """Counts the database calls a service made (thread-safe)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Return how many calls were made."""
        return self._count

    def add(self) -> None:
        """Count one call."""
        with self._lock:
            self._count += 1


def run(db: Any, flow: Flow[T], trips: TripCounter | None = None) -> T:
    """Execute ``flow`` against the sync database ``db`` and return its result."""
    result: Any = None
    error: NsnStoreError | None = None
    while True:
        try:
            op = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result, error = None, None
        if trips is not None:
            trips.add()
        try:
            result = _call(db, op)
            if op.method in CURSOR_METHODS:
                result = list(result)
        except pymongo_errors.PyMongoError as exc:
            error = _translated(exc, op)


async def run_async(db: Any, flow: Flow[T], trips: TripCounter | None = None) -> T:
    """Execute ``flow`` against the async database ``db`` and return its result."""
    result: Any = None
    error: NsnStoreError | None = None
    while True:
        try:
            op = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result, error = None, None
        if trips is not None:
            trips.add()
        try:
            result = _call(db, op)
            if inspect.isawaitable(result):  # PyMongo async's aggregate is awaited for a cursor
                result = await result
            if op.method in CURSOR_METHODS:
                result = await result.to_list(None)
        except pymongo_errors.PyMongoError as exc:
            error = _translated(exc, op)


def _call(db: Any, op: Op) -> Any:
    target = db if op.collection == DATABASE else db[op.collection]
    return getattr(target, op.method)(*op.args, **op.kwargs)


def _translated(exc: pymongo_errors.PyMongoError, op: Op) -> NsnStoreError:
    error = translate(exc, collection=op.collection or None)
    error.__cause__ = exc  # the flow sees it as `raise translated from exc`
    return error


class FlowHost:
    """What a service gives the runners: its database and its round-trip counter.

    A service's flows are methods of a class deriving from this one; its sync
    and async classes declare their public methods with :func:`sync` and
    :func:`asynchronous` over those flows.
    """

    db: Any
    trips: TripCounter | None = None


def sync(flow: Callable[Concatenate[H, P], Flow[T]]) -> Callable[Concatenate[H, P], T]:
    """Declare a sync method that runs ``flow`` with :func:`run` on ``self.db``."""

    @functools.wraps(flow)
    def method(self: H, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(self.db, flow(self, *args, **kwargs), self.trips)

    return _as_declared(method, flow)


def asynchronous(
    flow: Callable[Concatenate[H, P], Flow[T]],
) -> Callable[Concatenate[H, P], Coroutine[Any, Any, T]]:
    """Declare a coroutine method that runs ``flow`` with :func:`run_async` on ``self.db``."""

    @functools.wraps(flow)
    async def method(self: H, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(self.db, flow(self, *args, **kwargs), self.trips)

    return _as_declared(method, flow)


def _as_declared(method: M, flow: Callable[..., Any]) -> M:
    """Name ``method`` after the public method it declares and annotate its real result.

    A flow ``_claim_due`` declares ``claim_due``; its ``Flow[list[Document]]``
    annotation becomes ``list[Document]``, so ``help()`` and ``inspect.signature``
    show what a caller gets (an async declaration's coroutine returns the same).
    """
    name = flow.__name__.removeprefix("_")
    method.__name__ = name
    method.__qualname__ = f"{flow.__qualname__.rpartition('.')[0]}.{name}".lstrip(".")
    annotations = dict(getattr(flow, "__annotations__", {}))
    result = annotations.get("return")
    if isinstance(result, str) and result.startswith("Flow[") and result.endswith("]"):
        annotations["return"] = result[len("Flow[") : -1]
        signature = inspect.signature(flow).replace(return_annotation=annotations["return"])
        method.__signature__ = signature  # type: ignore[attr-defined]  # read by inspect
    method.__annotations__ = annotations
    return method
