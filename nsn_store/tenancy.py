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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nsn_store.errors import ConfigurationError, TenantIsolationError, translated

TENANT_FIELD = "tenantId"

#: Reference field -> the tenant-owned collection it points into.
REFERENCES: dict[str, str] = {
    "contactId": "contacts",
    "workflowId": "workflows",
    "workflowStepId": "workflowSteps",
    "templateId": "templates",
    "scheduledMessageId": "scheduledMessages",
}

#: Stages that reach other collections (or write), which a leading $match cannot scope.
FOREIGN_STAGES = frozenset(
    {
        "$lookup",
        "$graphLookup",
        "$unionWith",
        "$out",
        "$merge",
        "$documents",
        "$currentOp",
    }
)

_WRITES_TENANT = ("$set", "$setOnInsert")


def tenant_collections() -> tuple[str, ...]:
    """Return every collection of the schema that is owned by a tenant (all but tenants)."""
    from nsn_store.schema import SCHEMA

    return tuple(name for name in SCHEMA.names if name != "tenants")


# ---------------------------------------------------------------- pure builders


def scope_filter(tenant_id: Any, query: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``query`` ANDed with ``tenantId``.

    The tenant equality stays a top-level field so an upsert inserts it; a
    caller's own tenantId condition is kept inside ``$and``, where it can only
    narrow the result.
    """
    query = dict(query or {})
    if TENANT_FIELD in query:
        return {TENANT_FIELD: tenant_id, "$and": [query]}
    return {**query, TENANT_FIELD: tenant_id}


def scope_document(tenant_id: Any, document: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``document`` carrying ``tenantId``; refuse one carrying another tenant's."""
    if document.get(TENANT_FIELD, tenant_id) != tenant_id:
        raise TenantIsolationError("document carries another tenant's tenantId")
    return {**document, TENANT_FIELD: tenant_id}


def _touches_tenant(path: str) -> bool:
    return path == TENANT_FIELD or path.startswith(TENANT_FIELD + ".")


def check_update(tenant_id: Any, update: Mapping[str, Any] | Sequence[Any]) -> None:
    """Refuse an update (operators or pipeline) that would change ``tenantId``."""
    if not isinstance(update, Mapping):
        check_update_pipeline(tenant_id, update)
        return
    for operator, fields in update.items():
        if not operator.startswith("$"):
            raise TenantIsolationError(
                f"update key {operator!r} is not an operator; use replace_one"
            )
        for path, value in dict(fields).items():
            renamed_onto = operator == "$rename" and _touches_tenant(str(value))
            if renamed_onto or (
                _touches_tenant(path) and not _same_tenant(operator, value, tenant_id)
            ):
                raise TenantIsolationError(f"{operator} may not change tenantId")


def _same_tenant(operator: str, value: Any, tenant_id: Any) -> bool:
    return operator in _WRITES_TENANT and value == tenant_id


def check_update_pipeline(
    tenant_id: Any, pipeline: Sequence[Mapping[str, Any]]
) -> None:
    """Refuse a pipeline update that sets, unsets or replaces ``tenantId``."""
    for stage in pipeline:
        ((name, spec),) = stage.items()
        if name in ("$replaceRoot", "$replaceWith", "$project"):
            # An inclusion $project drops every field it does not name, tenantId too.
            raise TenantIsolationError(f"{name} in an update could drop tenantId")
        fields = [spec] if name == "$unset" and isinstance(spec, str) else spec
        for path in fields:
            if _touches_tenant(str(path)) and not (
                name in ("$set", "$addFields") and spec[path] == tenant_id
            ):
                raise TenantIsolationError(f"{name} may not change tenantId")


def scope_pipeline(
    tenant_id: Any, pipeline: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Return ``pipeline`` behind a leading ``$match`` on tenantId; refuse foreign stages."""
    _refuse_foreign_stages(pipeline)
    return [{"$match": {TENANT_FIELD: tenant_id}}, *map(dict, pipeline)]


def _refuse_foreign_stages(pipeline: Iterable[Any]) -> None:
    for stage in pipeline:
        for name, spec in dict(stage).items():
            if name in FOREIGN_STAGES:
                raise TenantIsolationError(f"{name} reaches outside the tenant scope")
            if name == "$facet":
                for sub in spec.values():
                    _refuse_foreign_stages(sub)


def references_in(documents: Iterable[Mapping[str, Any]]) -> dict[str, set[Any]]:
    """Return ``{collection: ids}`` referenced by the top-level reference fields."""
    found: dict[str, set[Any]] = {}
    for document in documents:
        for name, collection in REFERENCES.items():
            if name in document and not isinstance(document[name], Mapping):
                found.setdefault(collection, set()).add(document[name])
    return found


def update_values(
    update: Mapping[str, Any] | Sequence[Any],
    query: Mapping[str, Any] | None,
    upsert: bool,
) -> list[dict[str, Any]]:
    """Return the field values an update (and an upsert's filter) would write."""
    stages = update if not isinstance(update, Mapping) else [update]
    written = [
        dict(spec)
        for stage in stages
        for name, spec in dict(stage).items()
        if name in ("$set", "$setOnInsert", "$addFields") and isinstance(spec, Mapping)
    ]
    if upsert and query:  # an upsert inserts the filter's equalities too
        written.append(
            {k: _equality(v) for k, v in query.items() if not k.startswith("$")}
        )
    return written


def _equality(value: Any) -> Any:
    is_eq = isinstance(value, Mapping) and list(value) == ["$eq"]
    return value["$eq"] if is_eq else value


def reference_check_queries(
    tenant_id: Any, references: Mapping[str, set[Any]]
) -> list[tuple[str, dict, int]]:
    """Return ``(collection, filter, expected count)`` proving each reference is the tenant's."""
    return [
        (
            collection,
            {"_id": {"$in": sorted(ids, key=str)}, TENANT_FIELD: tenant_id},
            len(ids),
        )
        for collection, ids in sorted(references.items())
    ]


@dataclass(frozen=True)
class Call:
    """One driver call on a scoped collection, and the reference checks that must pass first."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    checks: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


def filtered_call(
    tenant_id: Any, method: str, query: Any, *args: Any, **kwargs: Any
) -> Call:
    """Return a read or delete call whose filter is scoped to the tenant."""
    return Call(method, (scope_filter(tenant_id, query), *args), kwargs)


def insert_call(
    tenant_id: Any, method: str, documents: Any, kwargs: dict[str, Any]
) -> Call:
    """Return an insert_one/insert_many call with tenant-owned documents."""
    single = method == "insert_one"
    scoped = [
        scope_document(tenant_id, d) for d in ([documents] if single else documents)
    ]
    checks = reference_check_queries(tenant_id, references_in(scoped))
    return Call(method, (scoped[0] if single else scoped,), kwargs, checks)


def update_call(
    tenant_id: Any, method: str, query: Any, update: Any, kwargs: dict[str, Any]
) -> Call:
    """Return an update call that cannot change tenantId or reference another tenant."""
    check_update(tenant_id, update)
    written = update_values(update, query, bool(kwargs.get("upsert")))
    checks = reference_check_queries(tenant_id, references_in(written))
    return Call(method, (scope_filter(tenant_id, query), update), kwargs, checks)


def replace_call(
    tenant_id: Any, query: Any, replacement: Any, kwargs: dict[str, Any]
) -> Call:
    """Return a replace_one call whose replacement keeps tenantId."""
    scoped = scope_document(tenant_id, replacement)
    checks = reference_check_queries(tenant_id, references_in([scoped]))
    return Call("replace_one", (scope_filter(tenant_id, query), scoped), kwargs, checks)


def _refusal(collection: str) -> TenantIsolationError:
    return TenantIsolationError(
        f"a referenced {collection} document is not this tenant's"
    )


# ---------------------------------------------------------------- I/O twins


class _ScopedBase:
    """A tenant-owned collection seen through one tenant's scope."""

    def __init__(self, db: Any, tenant_id: Any, name: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.name = name
        self._raw = db[name]

    def find(
        self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Find the tenant's documents (a driver cursor)."""
        return self._raw.find(scope_filter(self.tenant_id, filter), *args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, tenant_id={self.tenant_id!r})"


class ScopedCollection(_ScopedBase):
    """A tenant-owned collection seen through one tenant's scope (sync driver)."""

    def find_one(
        self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Return one of the tenant's documents, or None."""
        return self._run(
            filtered_call(self.tenant_id, "find_one", filter, *args, **kwargs)
        )

    def count_documents(
        self, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> int:
        """Count the tenant's documents matching ``filter``."""
        return int(
            self._run(
                filtered_call(self.tenant_id, "count_documents", filter, **kwargs)
            )
        )

    def insert_one(self, document: Mapping[str, Any], **kwargs: Any) -> Any:
        """Insert one document owned by the tenant (references checked)."""
        return self._run(insert_call(self.tenant_id, "insert_one", document, kwargs))

    def insert_many(self, documents: Iterable[Mapping[str, Any]], **kwargs: Any) -> Any:
        """Insert documents owned by the tenant (one reference query per collection)."""
        return self._run(insert_call(self.tenant_id, "insert_many", documents, kwargs))

    def update_one(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Update one of the tenant's documents; tenantId cannot change."""
        return self._run(
            update_call(self.tenant_id, "update_one", filter, update, kwargs)
        )

    def update_many(self, filter: Mapping[str, Any], update: Any, **kwargs: Any) -> Any:
        """Update the tenant's documents; tenantId cannot change."""
        return self._run(
            update_call(self.tenant_id, "update_many", filter, update, kwargs)
        )

    def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], **kwargs: Any
    ) -> Any:
        """Replace one of the tenant's documents; the replacement keeps tenantId."""
        return self._run(replace_call(self.tenant_id, filter, replacement, kwargs))

    def find_one_and_update(
        self, filter: Mapping[str, Any], update: Any, **kwargs: Any
    ) -> Any:
        """Atomically update and return one of the tenant's documents."""
        call = update_call(
            self.tenant_id, "find_one_and_update", filter, update, kwargs
        )
        return self._run(call)

    def delete_one(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete one of the tenant's documents."""
        return self._run(filtered_call(self.tenant_id, "delete_one", filter, **kwargs))

    def delete_many(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete the tenant's documents matching ``filter``."""
        return self._run(filtered_call(self.tenant_id, "delete_many", filter, **kwargs))

    def aggregate(self, pipeline: Sequence[Mapping[str, Any]], **kwargs: Any) -> Any:
        """Run ``pipeline`` over the tenant's documents only (a driver cursor)."""
        return self._run(
            Call("aggregate", (scope_pipeline(self.tenant_id, pipeline),), kwargs)
        )

    def _run(self, call: Call) -> Any:
        for collection, query, expected in call.checks:
            with translated(collection=collection):
                if self.db[collection].count_documents(query) != expected:
                    raise _refusal(collection)
        with translated(collection=self.name):
            return getattr(self._raw, call.method)(*call.args, **call.kwargs)


class AsyncScopedCollection(_ScopedBase):
    """The asyncio twin of :class:`ScopedCollection`; ``aggregate`` returns the result list."""

    async def find_one(
        self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Return one of the tenant's documents, or None."""
        return await self._run(
            filtered_call(self.tenant_id, "find_one", filter, *args, **kwargs)
        )

    async def count_documents(
        self, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> int:
        """Count the tenant's documents matching ``filter``."""
        call = filtered_call(self.tenant_id, "count_documents", filter, **kwargs)
        return int(await self._run(call))

    async def insert_one(self, document: Mapping[str, Any], **kwargs: Any) -> Any:
        """Insert one document owned by the tenant (references checked)."""
        return await self._run(
            insert_call(self.tenant_id, "insert_one", document, kwargs)
        )

    async def insert_many(
        self, documents: Iterable[Mapping[str, Any]], **kwargs: Any
    ) -> Any:
        """Insert documents owned by the tenant (one reference query per collection)."""
        return await self._run(
            insert_call(self.tenant_id, "insert_many", documents, kwargs)
        )

    async def update_one(
        self, filter: Mapping[str, Any], update: Any, **kwargs: Any
    ) -> Any:
        """Update one of the tenant's documents; tenantId cannot change."""
        return await self._run(
            update_call(self.tenant_id, "update_one", filter, update, kwargs)
        )

    async def update_many(
        self, filter: Mapping[str, Any], update: Any, **kwargs: Any
    ) -> Any:
        """Update the tenant's documents; tenantId cannot change."""
        return await self._run(
            update_call(self.tenant_id, "update_many", filter, update, kwargs)
        )

    async def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], **kwargs: Any
    ) -> Any:
        """Replace one of the tenant's documents; the replacement keeps tenantId."""
        return await self._run(
            replace_call(self.tenant_id, filter, replacement, kwargs)
        )

    async def find_one_and_update(
        self, filter: Mapping[str, Any], update: Any, **kwargs: Any
    ) -> Any:
        """Atomically update and return one of the tenant's documents."""
        call = update_call(
            self.tenant_id, "find_one_and_update", filter, update, kwargs
        )
        return await self._run(call)

    async def delete_one(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete one of the tenant's documents."""
        return await self._run(
            filtered_call(self.tenant_id, "delete_one", filter, **kwargs)
        )

    async def delete_many(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        """Delete the tenant's documents matching ``filter``."""
        return await self._run(
            filtered_call(self.tenant_id, "delete_many", filter, **kwargs)
        )

    async def aggregate(
        self, pipeline: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Any:
        """Run ``pipeline`` over the tenant's documents only; return the result list."""
        from nsn_store.aggregates import to_list

        call = Call("aggregate", (scope_pipeline(self.tenant_id, pipeline),), kwargs)
        with translated(collection=self.name):
            return await to_list(self._raw.aggregate(*call.args, **call.kwargs))

    async def _run(self, call: Call) -> Any:
        for collection, query, expected in call.checks:
            with translated(collection=collection):
                if await self.db[collection].count_documents(query) != expected:
                    raise _refusal(collection)
        with translated(collection=self.name):
            return await getattr(self._raw, call.method)(*call.args, **call.kwargs)


class TenantScope:
    """Every tenant-owned collection, scoped to one tenant: ``scope["contacts"]``."""

    collection_class: type[_ScopedBase] = ScopedCollection

    def __init__(self, db: Any, tenant_id: Any) -> None:
        if tenant_id is None:
            raise ConfigurationError("a tenant scope needs a tenant id")
        self.db = db
        self.tenant_id = tenant_id

    def __getitem__(self, name: str) -> Any:
        if name not in tenant_collections():
            raise ConfigurationError(f"{name!r} is not a tenant-owned collection")
        return self.collection_class(self.db, self.tenant_id, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tenant_id={self.tenant_id!r})"


class AsyncTenantScope(TenantScope):
    """The asyncio twin of :class:`TenantScope`: ``scope["contacts"]`` awaits its I/O."""

    collection_class = AsyncScopedCollection
