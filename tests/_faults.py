"""Fault injection for tests: a PyMongo ``Database`` whose calls fail when told.

:class:`FaultyDatabase` wraps a database (a real server's or the embedded one);
every collection it hands out asks a *policy* before each call whether that
call fails, and how:

- :attr:`Fault.BEFORE`: raise before the call reaches the database (the
  request never arrived: nothing is applied);
- :attr:`Fault.AFTER`: make the call, then raise as if the reply were lost
  (the write is applied, the caller does not know it).

Both raise :class:`InjectedFault`, a ``pymongo.errors.AutoReconnect``, which is
what the driver raises when a connection drops mid-request; code under test
translates it like any other driver error. The policy is any callable taking
a :class:`Call`; it also sees calls that it lets through, so it can count
them, log them or pause the calling thread there (a test can then interleave
several callers one database call at a time). :class:`FaultPlan` is a simple
policy: faults armed for the next matching calls.

Database commands (``db.command("hello")``) go through the policy too, with
an empty collection name.

Build the objects under test (scheduler, counter) on the *wrapped* database so
that each of their writes can fail.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import AutoReconnect

__all__ = [
    "WRAPPED",
    "Call",
    "Fault",
    "FaultPlan",
    "FaultyCollection",
    "FaultyDatabase",
    "InjectedFault",
    "Policy",
]

#: The collection methods that can fail. Everything else passes straight through.
WRAPPED = frozenset(
    {
        "aggregate",
        "bulk_write",
        "count_documents",
        "delete_many",
        "delete_one",
        "distinct",
        "estimated_document_count",
        "find",
        "find_one",
        "find_one_and_delete",
        "find_one_and_replace",
        "find_one_and_update",
        "insert_many",
        "insert_one",
        "replace_one",
        "update_many",
        "update_one",
    }
)


class Fault(enum.Enum):
    """How an injected failure relates to the call it interrupts."""

    BEFORE = "before"  # the request is lost: nothing applied
    AFTER = "after"  # the reply is lost: the call applied


@dataclass(frozen=True)
class Call:
    """One collection method call as the policy sees it."""

    collection: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class InjectedFault(AutoReconnect):
    """A connection failure injected by a test (``fault`` says whether the call applied)."""

    def __init__(self, call: Call, fault: Fault) -> None:
        super().__init__(f"injected: connection lost {fault.value} {call.collection}.{call.method}")
        self.call = call
        self.fault = fault


#: Decides the fate of one call: ``None`` lets it through.
Policy = Callable[[Call], "Fault | None"]


def _apply(policy: Policy, call: Call, run: Callable[[], Any]) -> Any:
    """Ask ``policy`` about ``call``, then fail before running it, after, or not at all."""
    fault = policy(call)
    if fault is Fault.BEFORE:
        raise InjectedFault(call, fault)
    result = run()
    if fault is Fault.AFTER:
        if call.method in ("find", "aggregate"):
            list(result)  # the server ran the query; only the batch is lost
        raise InjectedFault(call, fault)
    return result


class FaultyCollection:
    """A collection whose :data:`WRAPPED` methods ask ``policy`` before each call."""

    def __init__(self, collection: Any, policy: Policy) -> None:
        self._collection = collection
        self._policy = policy

    @property
    def wrapped(self) -> Any:
        """Return the real collection (calls on it are never faulted)."""
        return self._collection

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in WRAPPED:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, attribute, args, kwargs)

        return call

    def _call(
        self, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return _apply(
            self._policy,
            Call(self._collection.name, name, args, kwargs),
            lambda: method(*args, **kwargs),
        )


class FaultyDatabase:
    """A database whose collections are :class:`FaultyCollection` under one ``policy``."""

    def __init__(self, db: Any, policy: Policy) -> None:
        self._db = db
        self._policy = policy

    @property
    def wrapped(self) -> Any:
        """Return the real database (calls on it are never faulted)."""
        return self._db

    def __getitem__(self, name: str) -> FaultyCollection:
        return FaultyCollection(self._db[name], self._policy)

    def get_collection(self, name: str, **options: Any) -> FaultyCollection:
        return FaultyCollection(self._db.get_collection(name, **options), self._policy)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        """Run a database command (``hello``, ``ping``...), faulted like a collection call."""
        return _apply(
            self._policy,
            Call("", "command", args, kwargs),
            lambda: self._db.command(*args, **kwargs),
        )

    def __getattr__(self, name: str) -> Any:
        # Attribute access to a collection (db.scheduledMessages) is wrapped too;
        # database methods (name, command, list_collection_names...) pass through.
        attribute = getattr(self._db, name)
        if hasattr(attribute, "find_one_and_update"):
            return FaultyCollection(attribute, self._policy)
        return attribute


class FaultPlan:
    """A policy: faults armed for the next calls that match, each used once.

    ``plan.arm(Fault.AFTER, method="update_one", collection="counters")`` makes
    the next counter ``update_one`` apply and then lose its reply. ``calls``
    records every call seen, faulted or not.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Call, Fault | None]] = []
        self._armed: list[tuple[Fault, str | None, str | None]] = []

    def arm(
        self, fault: Fault, *, method: str | None = None, collection: str | None = None
    ) -> None:
        """Fail the next call matching ``method`` and ``collection`` (None matches any)."""
        self._armed.append((fault, method, collection))

    @property
    def pending(self) -> int:
        """Return how many armed faults have not fired yet."""
        return len(self._armed)

    def __call__(self, call: Call) -> Fault | None:
        for index, (fault, method, collection) in enumerate(self._armed):
            if method in (None, call.method) and collection in (None, call.collection):
                del self._armed[index]
                self.calls.append((call, fault))
                return fault
        self.calls.append((call, None))
        return None
