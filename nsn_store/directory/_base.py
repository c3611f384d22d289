"""What every directory service shares: its database, clock, round-trip counter and ops.

A service's flows are methods of a class deriving from :class:`DirectoryHost`
(or :class:`TenantHost`, for services bound to one tenant); the op builders
turn a :class:`~nsn_store.scheduler._queries.Query` (which names the index
that serves it) into the one driver call that runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store._flow import FlowHost, Op, TripCounter
from nsn_store.arguments import as_object_id
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import InvalidArgumentError, NotFoundError
from nsn_store.scheduler._queries import Query

__all__ = [
    "DirectoryHost",
    "TenantHost",
    "count",
    "delete_many",
    "delete_one",
    "find",
    "find_one",
    "insert_many",
    "insert_one",
    "modify",
    "not_found",
    "update_many",
]


class DirectoryHost(FlowHost):
    """A service over ``db`` that reads "now" from ``clock`` and counts its round trips."""

    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidArgumentError("clock must have a now() method", argument="clock")
        self.db = db
        self.clock: Clock = clock or DEFAULT_CLOCK
        self.trips = TripCounter()

    @property
    def round_trips(self) -> int:
        """Return how many database calls this service has made."""
        return 0 if self.trips is None else self.trips.count

    def _now(self) -> datetime:
        return self.clock.now()


class TenantHost(DirectoryHost):
    """A service bound to one tenant: every read and write it makes carries ``tenantId``."""

    def __init__(self, db: Any, tenant_id: Any, *, clock: Clock | None = None) -> None:
        # The id gate first: {"$ne": None} as a tenant id would match every tenant.
        self.tenant_id: ObjectId = as_object_id(tenant_id, "tenant_id")
        super().__init__(db, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant_id={self.tenant_id!r})"


def not_found(name: str, document_id: Any) -> NotFoundError:
    """The one error for a document that is missing or another tenant's (no existence oracle)."""
    return NotFoundError(f"{name} {document_id} not found for this tenant")


def _sorted(query: Query, kwargs: dict[str, Any]) -> dict[str, Any]:
    if query.sort:
        kwargs["sort"] = list(query.sort)
    return kwargs


def find(query: Query, **kwargs: Any) -> Op:
    """Return the op that lists the documents ``query`` selects (in its sort order)."""
    return Op("find", query.collection, (query.filter,), _sorted(query, kwargs))


def find_one(query: Query, **kwargs: Any) -> Op:
    """Return the op that reads the first document ``query`` selects, or None."""
    return Op("find_one", query.collection, (query.filter,), _sorted(query, kwargs))


def count(query: Query) -> Op:
    """Return the op that counts the documents ``query`` selects."""
    return Op("count_documents", query.collection, (query.filter,))


def modify(
    query: Query, update: Mapping[str, Any], *, upsert: bool = False, after: bool = True
) -> Op:
    """Return the op that updates the first document ``query`` selects and returns it."""
    kwargs: dict[str, Any] = {
        "return_document": ReturnDocument.AFTER if after else ReturnDocument.BEFORE,
        "upsert": upsert,
    }
    return Op("find_one_and_update", query.collection, (query.filter, dict(update)), kwargs)


def update_many(query: Query, update: Mapping[str, Any]) -> Op:
    """Return the op that updates every document ``query`` selects."""
    return Op("update_many", query.collection, (query.filter, dict(update)))


def delete_many(query: Query) -> Op:
    """Return the op that deletes every document ``query`` selects."""
    return Op("delete_many", query.collection, (query.filter,))


def delete_one(query: Query) -> Op:
    """Return the op that deletes the first document ``query`` selects."""
    return Op("delete_one", query.collection, (query.filter,))


def insert_one(collection: str, document: Mapping[str, Any]) -> Op:
    """Return the op that inserts ``document`` (give it an ``_id``: the driver's goes on a copy)."""
    return Op("insert_one", collection, (dict(document),))


def insert_many(collection: str, documents: list[dict[str, Any]]) -> Op:
    """Return the op that inserts ``documents``, going on past a duplicate (unordered)."""
    return Op("insert_many", collection, (documents,), {"ordered": False})
