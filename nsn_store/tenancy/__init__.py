"""Tenant-scoped access: every read and write of a :class:`TenantScope` carries its ``tenantId``.

The rules that scope filters, documents, updates and pipelines (and check that
referenced documents belong to the same tenant) live in :mod:`._rules`; the
scoped collections in :mod:`._collections`.
"""

from nsn_store.tenancy._collections import AsyncScopedCollection, ScopedCollection
from nsn_store.tenancy._rules import REFERENCES, TENANT_FIELD
from nsn_store.tenancy._scope import AsyncTenantScope, TenantScope

__all__ = [
    "REFERENCES",
    "TENANT_FIELD",
    "AsyncScopedCollection",
    "AsyncTenantScope",
    "ScopedCollection",
    "TenantScope",
]
