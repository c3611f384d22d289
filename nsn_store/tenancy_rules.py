"""Build tenant-scoped filters, documents, updates and pipelines (pure, no I/O).

The isolation rules of :mod:`nsn_store.tenancy` live here as functions of the
tenant id and the caller's arguments, so they are tested without a database. A
:class:`Call` is what a scoped collection hands to the driver, with the
reference checks (``{_id: {$in: ids}, tenantId}`` and the count expected) that
must pass first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nsn_store.errors import TenantIsolationError

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


def reference_refusal(collection: str) -> TenantIsolationError:
    """Return the error for a reference that is missing or another tenant's (alike)."""
    return TenantIsolationError(
        f"a referenced {collection} document is not this tenant's"
    )
