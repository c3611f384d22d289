"""Run scoped calls on a tenant-owned collection: the sync and asyncio twins.

Both classes build every call with the pure builders of
:mod:`nsn_store.tenancy._rules`; each method only runs the reference checks and
the driver call, awaiting them on the async side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nsn_store.errors import ConfigurationError, translated
from nsn_store.tenancy._rules import (
    Call,
    as_tenant,
    filtered_call,
    insert_call,
    reference_refusal,
    replace_call,
    scope_filter,
    scope_pipeline,
    tenant_collections,
    update_call,
)


class ScopedBase:
    """A tenant-owned collection seen through one tenant's scope."""

    def __init__(self, db: Any, tenant_id: Any, name: str) -> None:
        if name not in tenant_collections():
            raise ConfigurationError(f"{name!r} is not a tenant-owned collection")
        self.tenant_id = as_tenant(tenant_id)
        self.db = db
        self.name = name
        self._raw = db[name]

    def find(self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        """Find the tenant's documents (a driver cursor)."""
        return self._raw.find(scope_filter(self.tenant_id, filter), *args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, tenant_id={self.tenant_id!r})"


class ScopedCollection(ScopedBase):
    """A tenant-owned collection seen through one tenant's scope (sync driver)."""

    def find_one(self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        """Return one of the tenant's documents, or None."""
        return self._run(filtered_call(self.tenant_id, "find_one", filter, *args, **kwargs))

    def count_documents(self, filter: Mapping[str, Any] | None = None, **kwargs: Any) -> int:
        """Count the tenant's documents matching ``filter``."""
        return int(self._run(filtered_call(self.tenant_id, "count_documents", filter, **kwargs)))

    def insert_one(self, document: Mapping[str, Any], **kwargs: Any) -> Any:
        """Insert one document owned by the tenant (references checked)."""
        return self._run(insert_call(self.tenant_id, "insert_one", document, kwargs))

    def insert_many(self, documents: Iterable[Mapping[str, Any]], **kwargs: Any) -> Any:
        """Insert documents owned by the tenant (one reference query per collection)."""
        return self._run(insert_call(self.tenant_id, "insert_many", documents, kwargs))

    def update_one(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Update one of the tenant's documents; tenantId cannot change."""
        return self._run(update_call(self.tenant_id, "update_one", filter, update, kwargs))

    def update_many(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Update the tenant's documents; tenantId cannot change."""
        return self._run(update_call(self.tenant_id, "update_many", filter, update, kwargs))

    def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], **kwargs: Any
    ) -> Any:
        """Replace one of the tenant's documents; the replacement keeps tenantId."""
        return self._run(replace_call(self.tenant_id, filter, replacement, kwargs))

    def find_one_and_update(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Atomically update and return one of the tenant's documents."""
        call = update_call(self.tenant_id, "find_one_and_update", filter, update, kwargs)
        return self._run(call)

    def delete_one(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete one of the tenant's documents."""
        return self._run(filtered_call(self.tenant_id, "delete_one", filter, **kwargs))

    def delete_many(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete the tenant's documents matching ``filter``."""
        return self._run(filtered_call(self.tenant_id, "delete_many", filter, **kwargs))

    def aggregate(self, pipeline: Iterable[Mapping[str, Any]], **kwargs: Any) -> Any:
        """Run ``pipeline`` (any iterable of stages, read once) over the tenant's
        documents only (a driver cursor)."""
        return self._run(Call("aggregate", (scope_pipeline(self.tenant_id, pipeline),), kwargs))

    def _run(self, call: Call) -> Any:
        for collection, query, expected in call.checks:
            with translated(collection=collection):
                if self.db[collection].count_documents(query) != expected:
                    raise reference_refusal(collection)
        with translated(collection=self.name):
            return getattr(self._raw, call.method)(*call.args, **call.kwargs)


class AsyncScopedCollection(ScopedBase):
    """The asyncio twin of :class:`ScopedCollection`; ``aggregate`` returns the result list."""

    async def find_one(
        self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Return one of the tenant's documents, or None."""
        return await self._run(filtered_call(self.tenant_id, "find_one", filter, *args, **kwargs))

    async def count_documents(self, filter: Mapping[str, Any] | None = None, **kwargs: Any) -> int:
        """Count the tenant's documents matching ``filter``."""
        call = filtered_call(self.tenant_id, "count_documents", filter, **kwargs)
        return int(await self._run(call))

    async def insert_one(self, document: Mapping[str, Any], **kwargs: Any) -> Any:
        """Insert one document owned by the tenant (references checked)."""
        return await self._run(insert_call(self.tenant_id, "insert_one", document, kwargs))

    async def insert_many(self, documents: Iterable[Mapping[str, Any]], **kwargs: Any) -> Any:
        """Insert documents owned by the tenant (one reference query per collection)."""
        return await self._run(insert_call(self.tenant_id, "insert_many", documents, kwargs))

    async def update_one(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Update one of the tenant's documents; tenantId cannot change."""
        return await self._run(update_call(self.tenant_id, "update_one", filter, update, kwargs))

    async def update_many(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Update the tenant's documents; tenantId cannot change."""
        return await self._run(update_call(self.tenant_id, "update_many", filter, update, kwargs))

    async def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], **kwargs: Any
    ) -> Any:
        """Replace one of the tenant's documents; the replacement keeps tenantId."""
        return await self._run(replace_call(self.tenant_id, filter, replacement, kwargs))

    async def find_one_and_update(
        self, filter: Mapping[str, Any], update: Any, **kwargs: Any
    ) -> Any:
        """Atomically update and return one of the tenant's documents."""
        call = update_call(self.tenant_id, "find_one_and_update", filter, update, kwargs)
        return await self._run(call)

    async def delete_one(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete one of the tenant's documents."""
        return await self._run(filtered_call(self.tenant_id, "delete_one", filter, **kwargs))

    async def delete_many(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete the tenant's documents matching ``filter``."""
        return await self._run(filtered_call(self.tenant_id, "delete_many", filter, **kwargs))

    async def aggregate(self, pipeline: Iterable[Mapping[str, Any]], **kwargs: Any) -> Any:
        """Run ``pipeline`` (any iterable of stages, read once) over the tenant's
        documents only; return the result list."""
        from nsn_store.aggregates._service import to_list

        call = Call("aggregate", (scope_pipeline(self.tenant_id, pipeline),), kwargs)
        with translated(collection=self.name):
            return await to_list(self._raw.aggregate(*call.args, **call.kwargs))

    async def _run(self, call: Call) -> Any:
        for collection, query, expected in call.checks:
            with translated(collection=collection):
                if await self.db[collection].count_documents(query) != expected:
                    raise reference_refusal(collection)
        with translated(collection=self.name):
            return await getattr(self._raw, call.method)(*call.args, **call.kwargs)
