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
declarations.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import errors as pymongo_errors

from nsn_store.errors import NsnStoreError, translate

__all__ = ["CURSOR_METHODS", "Flow", "Op", "TripCounter", "command", "run", "run_async"]

T = TypeVar("T")

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
