"""Tenant-scoped access: one entry point that cannot read or write across tenants.

``TenantScope(db, tenant_id)["contacts"]`` is a collection whose every filter
is ANDed with ``tenantId`` (a caller's own ``tenantId`` condition, with any
operator, ``$or``, ``$nor`` or ``$expr``, can narrow but never widen it),
whose inserts, replacements and upserts carry the tenant's id, and whose
aggregation pipelines (any iterable of stages, read once) start with
``$match: {tenantId}``. Writes that would
change, remove or rename ``tenantId``, documents that carry another tenant's
id, stages that read or write other collections (``$lookup``, ``$unionWith``,
``$merge``, ...) and references to another tenant's documents raise
:class:`~nsn_store.errors.TenantIsolationError`, before any I/O.

**Ids.** ``tenant_id`` passes the library's id gate
(:func:`nsn_store.arguments.as_object_id`) before anything else: an
``ObjectId`` or its 24-hex string, never an operator such as
``{"$ne": None}``, which would match every tenant.

**References** (``contactId``, ``templateId``, ``workflowId``,
``workflowStepId``, ``scheduledMessageId``, ``userId``; see
:data:`REFERENCES`) obey one rule. A reference is written only with a plain
``ObjectId``: in an inserted or replacement document, in ``$set`` or
``$setOnInsert``, in an upsert's filter equality (``ObjectId`` or
``{$eq: ObjectId}``, wherever it sits in ``$and``/``$or``/``$nor``, since
MongoDB copies equalities from ``$and`` into the new document), or in a
pipeline ``$set`` of an ``ObjectId`` or ``{$literal: ObjectId}``. Each such id
is checked, one round trip per referenced collection
(``{_id: {$in: ids}, tenantId}``). Every other way of writing a reference
(``$min``, ``$max``, ``$inc``, ``$rename``, ``$push``, ..., a computed pipeline
expression such as ``$toObjectId``, a dotted path into the field, and in an
upsert's filter any other condition such as a one-value ``$in``, which MongoDB
simplifies to an equality) is refused, because its value is not known before
the write. ``$unset`` of an optional
reference is allowed (it points nowhere); of a required one
(:data:`REQUIRED_REFERENCES`) it is refused. A reference value that is not an
``ObjectId`` raises :class:`~nsn_store.errors.InvalidIdError`. A ``userId``
must name a user attached to the tenant (``users.tenantId``).

**No existence oracles.** A missing document and another tenant's document
look alike everywhere: reads find nothing, updates and deletes match nothing,
and a reference to either is refused with the same message. Because ``_id`` is
unique across tenants, a write that chose the ``_id`` of a new document would
fail on another tenant's id and succeed on a free one; so a scoped write never
chooses ``_id``: inserts may not carry it, an upsert's filter and update may
not name it (the database assigns the new document's ``_id``), no update
writes it, and a replacement may carry it only when the filter selects that
same ``_id`` and the call does not upsert. (Use ``update_one`` without
``upsert`` and then ``insert_one`` for "create if missing".)

Not hidden: ``users.clerkUserId`` is unique across all users by design (Clerk
issues it); writing a Clerk user id that another tenant's user holds fails
with a duplicate key. Clerk ids are not guessable, and users are created by
the sign-up flow, which needs no tenant scope. A driver cursor's ``explain()``
reports index statistics, which are not scoped.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from nsn_store._types import IdLike
from nsn_store.tenancy._collections import AsyncScopedCollection, ScopedCollection
from nsn_store.tenancy._rules import as_tenant

__all__ = ["AsyncTenantScope", "TenantScope"]

C = TypeVar("C", ScopedCollection, AsyncScopedCollection)


class _Scope(Generic[C]):
    """One tenant's scope over the tenant-owned collections of ``db``."""

    collection_class: type[C]

    def __init__(self, db: Any, tenant_id: IdLike) -> None:
        # The id gate comes first: {"$ne": None} here would match every tenant.
        self.tenant_id = as_tenant(tenant_id)
        self.db = db

    def __getitem__(self, name: str) -> C:
        """Return ``name`` seen through this scope; refuse a collection no tenant owns."""
        return self.collection_class(self.db, self.tenant_id, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant_id={self.tenant_id!r})"


class TenantScope(_Scope[ScopedCollection]):
    """Every tenant-owned collection, scoped to one tenant: ``scope["contacts"]``."""

    collection_class = ScopedCollection


class AsyncTenantScope(_Scope[AsyncScopedCollection]):
    """The asyncio twin of :class:`TenantScope`: ``scope["contacts"]`` awaits its I/O."""

    collection_class = AsyncScopedCollection
