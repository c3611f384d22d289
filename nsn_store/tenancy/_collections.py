"""A tenant-owned collection seen through one tenant's scope: each operation once, as a flow.

:class:`_ScopedFlows` writes every operation as a flow over the pure builders
of :mod:`nsn_store.tenancy._rules` (reference checks first, then the one
call); :class:`ScopedCollection` and :class:`AsyncScopedCollection` declare
their methods over those flows, so the two cannot drift apart. ``aggregate``
returns the result list on both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nsn_store._flow import Flow, FlowHost, asynchronous, sync
from nsn_store._types import Document, DocumentIn, IdLike
from nsn_store.errors import ConfigurationError
from nsn_store.tenancy._rules import (
    aggregate_flow,
    as_tenant,
    filtered_flow,
    insert_flow,
    replace_flow,
    scope_filter,
    tenant_collections,
    update_flow,
)

__all__ = ["AsyncScopedCollection", "ScopedCollection"]

#: An update: operators, or a pipeline (any iterable of stages, read once).
Update = DocumentIn | Iterable[DocumentIn]


class _ScopedFlows(FlowHost):
    """The operations of one tenant-owned collection under one tenant's scope, as flows."""

    def __init__(self, db: Any, tenant_id: IdLike, name: str) -> None:
        if name not in tenant_collections():
            raise ConfigurationError(f"{name!r} is not a tenant-owned collection")
        self.tenant_id = as_tenant(tenant_id)
        self.db = db
        self.name = name

    def find(self, filter: DocumentIn | None = None, *args: Any, **kwargs: Any) -> Any:
        """Find the tenant's documents (a driver cursor, iterated by the caller)."""
        return self.db[self.name].find(scope_filter(self.tenant_id, filter), *args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, tenant_id={self.tenant_id!r})"

    def _find_one(
        self, /, filter: DocumentIn | None = None, *args: Any, **kwargs: Any
    ) -> Flow[Document | None]:
        """Return one of the tenant's documents, or None."""
        found = yield from filtered_flow(
            self.tenant_id, self.name, "find_one", filter, *args, **kwargs
        )
        return None if found is None else dict(found)

    def _count_documents(self, /, filter: DocumentIn | None = None, **kwargs: Any) -> Flow[int]:
        """Count the tenant's documents matching ``filter``."""
        count = yield from filtered_flow(
            self.tenant_id, self.name, "count_documents", filter, **kwargs
        )
        return int(count)

    def _insert_one(self, /, document: DocumentIn, **kwargs: Any) -> Flow[Any]:
        """Insert one document owned by the tenant (references checked)."""
        return (yield from insert_flow(self.tenant_id, self.name, "insert_one", document, kwargs))

    def _insert_many(self, /, documents: Iterable[DocumentIn], **kwargs: Any) -> Flow[Any]:
        """Insert documents owned by the tenant (one reference query per collection)."""
        return (yield from insert_flow(self.tenant_id, self.name, "insert_many", documents, kwargs))

    def _update_one(self, /, filter: DocumentIn, update: Update, **kwargs: Any) -> Flow[Any]:
        """Update one of the tenant's documents; tenantId cannot change."""
        return (
            yield from update_flow(self.tenant_id, self.name, "update_one", filter, update, kwargs)
        )

    def _update_many(self, /, filter: DocumentIn, update: Update, **kwargs: Any) -> Flow[Any]:
        """Update the tenant's documents; tenantId cannot change."""
        return (
            yield from update_flow(self.tenant_id, self.name, "update_many", filter, update, kwargs)
        )

    def _replace_one(
        self, /, filter: DocumentIn, replacement: DocumentIn, **kwargs: Any
    ) -> Flow[Any]:
        """Replace one of the tenant's documents; the replacement keeps tenantId."""
        return (yield from replace_flow(self.tenant_id, self.name, filter, replacement, kwargs))

    def _find_one_and_update(
        self, /, filter: DocumentIn, update: Update, **kwargs: Any
    ) -> Flow[Document | None]:
        """Atomically update and return one of the tenant's documents."""
        found = yield from update_flow(
            self.tenant_id, self.name, "find_one_and_update", filter, update, kwargs
        )
        return None if found is None else dict(found)

    def _delete_one(self, /, filter: DocumentIn, **kwargs: Any) -> Flow[Any]:
        """Delete one of the tenant's documents."""
        return (yield from filtered_flow(self.tenant_id, self.name, "delete_one", filter, **kwargs))

    def _delete_many(self, /, filter: DocumentIn, **kwargs: Any) -> Flow[Any]:
        """Delete the tenant's documents matching ``filter``."""
        return (
            yield from filtered_flow(self.tenant_id, self.name, "delete_many", filter, **kwargs)
        )

    def _aggregate(self, /, pipeline: Iterable[DocumentIn], **kwargs: Any) -> Flow[list[Any]]:
        """Run ``pipeline`` (any iterable of stages, read once) over the tenant's
        documents only; return the result list."""
        return (yield from aggregate_flow(self.tenant_id, self.name, pipeline, kwargs))


class ScopedCollection(_ScopedFlows):
    """A tenant-owned collection seen through one tenant's scope (sync driver)."""

    find_one = sync(_ScopedFlows._find_one)
    count_documents = sync(_ScopedFlows._count_documents)
    insert_one = sync(_ScopedFlows._insert_one)
    insert_many = sync(_ScopedFlows._insert_many)
    update_one = sync(_ScopedFlows._update_one)
    update_many = sync(_ScopedFlows._update_many)
    replace_one = sync(_ScopedFlows._replace_one)
    find_one_and_update = sync(_ScopedFlows._find_one_and_update)
    delete_one = sync(_ScopedFlows._delete_one)
    delete_many = sync(_ScopedFlows._delete_many)
    aggregate = sync(_ScopedFlows._aggregate)


class AsyncScopedCollection(_ScopedFlows):
    """The asyncio twin of :class:`ScopedCollection`: the same flows, awaited."""

    find_one = asynchronous(_ScopedFlows._find_one)
    count_documents = asynchronous(_ScopedFlows._count_documents)
    insert_one = asynchronous(_ScopedFlows._insert_one)
    insert_many = asynchronous(_ScopedFlows._insert_many)
    update_one = asynchronous(_ScopedFlows._update_one)
    update_many = asynchronous(_ScopedFlows._update_many)
    replace_one = asynchronous(_ScopedFlows._replace_one)
    find_one_and_update = asynchronous(_ScopedFlows._find_one_and_update)
    delete_one = asynchronous(_ScopedFlows._delete_one)
    delete_many = asynchronous(_ScopedFlows._delete_many)
    aggregate = asynchronous(_ScopedFlows._aggregate)
