"""Tenant-scoped access: one entry point that cannot read or write across tenants.

``TenantScope(db, tenant_id)["contacts"]`` is a collection whose every filter
is ANDed with ``tenantId`` (a caller's own ``tenantId`` condition can narrow
but never widen it), whose inserts, replacements and upserts carry the tenant's
id, and whose aggregation pipelines start with ``$match: {tenantId}``. Writes
that would change, remove or rename ``tenantId``, documents that carry another
tenant's id, stages that read or write other collections (``$lookup``,
``$unionWith``, ``$merge``, ...) and references to another tenant's documents
(a scheduled message for another tenant's contact, a step for another tenant's
workflow) raise :class:`~nsn_store.errors.TenantIsolationError`.

Reference checks cost one round trip per referenced collection
(``{_id: {$in: ids}, tenantId}``). A missing document and another tenant's
document are refused alike, so the error never reveals what other tenants own.
"""

from __future__ import annotations

from typing import Any

from nsn_store.tenancy_collections import (
    AsyncScopedCollection,
    ScopedBase,
    ScopedCollection,
)
from nsn_store.tenancy_rules import (
    FOREIGN_STAGES,
    REFERENCES,
    REQUIRED_REFERENCES,
    TENANT_FIELD,
    Call,
    as_pipeline,
    as_tenant,
    check_update,
    check_update_pipeline,
    filtered_call,
    insert_call,
    reference_check_queries,
    references_in,
    replace_call,
    scope_document,
    scope_filter,
    scope_pipeline,
    tenant_collections,
    update_call,
    update_references,
)

# The rules and the collection twins live in their own modules; this one is
# the entry point, so every name stays importable from nsn_store.tenancy.
__all__ = [
    "FOREIGN_STAGES",
    "REFERENCES",
    "REQUIRED_REFERENCES",
    "TENANT_FIELD",
    "AsyncScopedCollection",
    "AsyncTenantScope",
    "Call",
    "ScopedCollection",
    "TenantScope",
    "as_pipeline",
    "as_tenant",
    "check_update",
    "check_update_pipeline",
    "filtered_call",
    "insert_call",
    "reference_check_queries",
    "references_in",
    "replace_call",
    "scope_document",
    "scope_filter",
    "scope_pipeline",
    "tenant_collections",
    "update_call",
    "update_references",
]


class TenantScope:
    """Every tenant-owned collection, scoped to one tenant: ``scope["contacts"]``."""

    collection_class: type[ScopedBase] = ScopedCollection

    def __init__(self, db: Any, tenant_id: Any) -> None:
        # The id gate comes first: {"$ne": None} here would match every tenant.
        self.tenant_id = as_tenant(tenant_id)
        self.db = db

    def __getitem__(self, name: str) -> Any:
        """Return ``name`` seen through this scope; refuse a collection no tenant owns."""
        return self.collection_class(self.db, self.tenant_id, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant_id={self.tenant_id!r})"


class AsyncTenantScope(TenantScope):
    """The asyncio twin of :class:`TenantScope`: ``scope["contacts"]`` awaits its I/O."""

    collection_class = AsyncScopedCollection
