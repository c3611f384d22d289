"""Build tenant-scoped filters, documents, updates and pipelines (pure, no I/O).

The isolation rules of :mod:`nsn_store.tenancy` live here as functions of the
tenant id and the caller's arguments, so they are tested without a database. Each
scoped operation is a flow (:mod:`nsn_store._flow`) built here: the reference
checks (``{_id: {$in: ids}, tenantId}`` and the count expected) that must pass
first, then the one call. Every refusal happens here, before any I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bson import ObjectId

from nsn_store._flow import Flow, Op
from nsn_store.arguments import as_object_id
from nsn_store.errors import InvalidArgumentError, InvalidIdError, TenantIsolationError

TENANT_FIELD = "tenantId"
ID_FIELD = "_id"

#: Reference field -> the tenant-owned collection it points into.
REFERENCES: dict[str, str] = {
    "contactId": "contacts",
    "workflowId": "workflows",
    "workflowStepId": "workflowSteps",
    "templateId": "templates",
    "scheduledMessageId": "scheduledMessages",
    "userId": "users",
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
_LOGICAL = ("$and", "$or", "$nor")
#: The stages a server accepts in an update pipeline.
_UPDATE_STAGES = frozenset(
    {"$set", "$addFields", "$unset", "$project", "$replaceRoot", "$replaceWith"}
)


def _required_references() -> frozenset[str]:
    """Reference fields some collection requires; removing one would orphan a document."""
    from nsn_store.schema._models import MODELS

    return frozenset(
        name
        for model in MODELS
        for name, info in model.model_fields.items()
        if name in REFERENCES and info.is_required()
    )


#: Reference fields that may not be removed ($unset) once written.
REQUIRED_REFERENCES = _required_references()


def tenant_collections() -> tuple[str, ...]:
    """Return every collection of the schema that is owned by a tenant (the registry says)."""
    from nsn_store.schema._registry import SCHEMA

    return tuple(spec.name for spec in SCHEMA if spec.tenant_owned)


# ---------------------------------------------------------------- argument shapes


def as_tenant(tenant_id: Any) -> ObjectId:
    """Return the tenant id as an ObjectId; refuse operators, None and the rest."""
    return as_object_id(tenant_id, "tenant_id")


def as_filter(query: Any) -> dict[str, Any]:
    """Return a caller's filter as a dict (None is ``{}``); refuse anything but a mapping."""
    if query is None:
        return {}
    if not isinstance(query, Mapping):
        raise InvalidArgumentError(
            f"filter must be a mapping, not {type(query).__name__}", argument="filter"
        )
    return dict(query)


def as_document(document: Any, argument: str = "document") -> dict[str, Any]:
    """Return a document to write as a dict; refuse anything but a mapping."""
    if not isinstance(document, Mapping):
        raise InvalidArgumentError(
            f"{argument} must be a mapping, not {type(document).__name__}",
            argument=argument,
        )
    return dict(document)


def as_pipeline(pipeline: Any, argument: str = "pipeline") -> list[dict[str, Any]]:
    """Return ``pipeline`` (any iterable of one-key stages, read once) as a list.

    A generator is materialised here, exactly once, so every later check and
    the driver see the same stages. A mapping or a string is refused: it is a
    single stage or a typo, never a pipeline.
    """
    if isinstance(pipeline, Mapping | str | bytes) or not isinstance(pipeline, Iterable):
        raise InvalidArgumentError(
            f"{argument} must be a list of stages, not {type(pipeline).__name__}",
            argument=argument,
        )
    stages = list(pipeline)
    for stage in stages:
        if not (isinstance(stage, Mapping) and len(stage) == 1):
            raise InvalidArgumentError(
                f"each stage of {argument} must be a mapping with one key",
                argument=argument,
            )
        (name,) = stage
        if not (isinstance(name, str) and name.startswith("$")):
            raise InvalidArgumentError(
                f"a stage of {argument} is not named by a $-operator", argument=argument
            )
    return [dict(stage) for stage in stages]


def as_update(update: Any) -> dict[str, Any] | list[dict[str, Any]]:
    """Return an update as an operator dict or a materialised pipeline."""
    if isinstance(update, Mapping):
        return dict(update)
    return as_pipeline(update, "update")


def _upsert_flag(kwargs: Mapping[str, Any]) -> bool:
    upsert = kwargs.get("upsert", False)
    if not isinstance(upsert, bool):
        raise InvalidArgumentError("upsert must be True or False", argument="upsert")
    return upsert


# ---------------------------------------------------------------- tenant rules


def scope_filter(tenant_id: Any, query: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``query`` ANDed with ``tenantId``.

    The tenant equality stays a top-level field so an upsert inserts it; a
    caller's own tenantId condition is kept inside ``$and``, where it can only
    narrow the result. MongoDB ANDs a filter's top-level fields, so no
    operator, ``$or``, ``$nor`` or ``$expr`` in the caller's filter can widen it.
    """
    tenant, query = as_tenant(tenant_id), as_filter(query)
    own = query.get(TENANT_FIELD)
    if (type(own) is ObjectId and own == tenant) or own == {"$eq": tenant}:
        # The same equality twice would make an upsert fail ("matched twice", code 54).
        del query[TENANT_FIELD]
    if TENANT_FIELD in query:
        return {TENANT_FIELD: tenant, "$and": [query]}
    return {**query, TENANT_FIELD: tenant}


def scope_document(tenant_id: Any, document: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``document`` carrying ``tenantId``; refuse one carrying another tenant's."""
    tenant, document = as_tenant(tenant_id), as_document(document)
    if document.get(TENANT_FIELD, tenant) != tenant:
        raise TenantIsolationError("document carries another tenant's tenantId")
    return {**document, TENANT_FIELD: tenant}


def _touches(path: str, name: str) -> bool:
    return path == name or path.startswith(name + ".")


def check_update(tenant_id: Any, update: Mapping[str, Any] | Sequence[Any]) -> None:
    """Refuse an update (operators or pipeline) that would change ``tenantId``."""
    tenant, update = as_tenant(tenant_id), as_update(update)
    if isinstance(update, list):
        check_update_pipeline(tenant, update)
        return
    for operator, fields in _operator_fields(update):
        for path, value in fields.items():
            renamed_onto = operator == "$rename" and _touches(str(value), TENANT_FIELD)
            if renamed_onto or (
                _touches(path, TENANT_FIELD)
                and not (operator in _WRITES_TENANT and value == tenant)
            ):
                raise TenantIsolationError(f"{operator} may not change tenantId")


def _operator_fields(update: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(operator, {path: value})`` pairs; refuse a replacement document or junk."""
    pairs = []
    for operator, fields in update.items():
        if not str(operator).startswith("$"):
            raise TenantIsolationError(
                f"update key {operator!r} is not an operator; use replace_one"
            )
        if not isinstance(fields, Mapping):
            raise InvalidArgumentError(f"{operator} takes a mapping of fields", argument="update")
        if operator == "$rename" and not all(isinstance(v, str) for v in fields.values()):
            raise InvalidArgumentError("$rename takes new field names", argument="update")
        pairs.append((str(operator), {str(k): v for k, v in fields.items()}))
    return pairs


def _stage_fields(name: str, spec: Any) -> list[str]:
    """Return the top-level paths a $set/$addFields/$unset stage writes."""
    if name == "$unset":
        return [spec] if isinstance(spec, str) else [str(p) for p in spec]
    if not isinstance(spec, Mapping):
        raise InvalidArgumentError(f"{name} takes a mapping of fields", argument="update")
    return [str(p) for p in spec]


def check_update_pipeline(tenant_id: Any, pipeline: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a pipeline update that sets, unsets or replaces ``tenantId``."""
    tenant, stages = as_tenant(tenant_id), as_pipeline(pipeline, "update")
    for stage in stages:
        ((name, spec),) = stage.items()
        if name not in _UPDATE_STAGES:
            raise InvalidArgumentError(f"{name} is not an update pipeline stage", argument="update")
        if name in ("$replaceRoot", "$replaceWith", "$project"):
            # An inclusion $project drops every field it does not name, tenantId too.
            raise TenantIsolationError(f"{name} in an update could drop tenantId")
        for path in _stage_fields(name, spec):
            if _touches(path, TENANT_FIELD) and not (
                name in ("$set", "$addFields") and spec[path] == tenant
            ):
                raise TenantIsolationError(f"{name} may not change tenantId")


def scope_pipeline(tenant_id: Any, pipeline: Iterable[Any]) -> list[dict[str, Any]]:
    """Return ``pipeline`` behind a leading ``$match`` on tenantId; refuse foreign stages.

    Any iterable of stages is accepted and read exactly once.
    """
    tenant, stages = as_tenant(tenant_id), as_pipeline(pipeline)
    _refuse_foreign_stages(stages)
    return [{"$match": {TENANT_FIELD: tenant}}, *stages]


def _refuse_foreign_stages(pipeline: Iterable[Any]) -> None:
    for stage in pipeline:
        for name, spec in dict(stage).items():
            if name in FOREIGN_STAGES:
                raise TenantIsolationError(f"{name} reaches outside the tenant scope")
            if name == "$facet":
                if not isinstance(spec, Mapping):
                    raise InvalidArgumentError("$facet takes a mapping", argument="pipeline")
                for sub in spec.values():
                    _refuse_foreign_stages(as_pipeline(sub))


# ---------------------------------------------------------------- references
#
# The one rule: a reference field is written only with a plain ObjectId (in an
# inserted or replacement document, in $set/$setOnInsert, in an upsert's
# filter equality, or as a pipeline $set of an ObjectId or {$literal: ObjectId}),
# and every such id is checked against the tenant. Any other way of writing a
# reference (another operator, a computed expression, $rename, a dotted path
# into it) is refused, because its value is not known before the write.
# Removing an optional reference ($unset) points nowhere, so it is allowed.

References = dict[str, set[ObjectId]]


def _reference_of(path: str) -> str | None:
    """Return the reference field ``path`` writes into, if any."""
    return next((name for name in REFERENCES if _touches(path, name)), None)


def _add(found: References, name: str, value: Any) -> None:
    """Record ``value`` as a reference in ``name``; it must be an ObjectId."""
    if type(value) is not ObjectId:
        raise InvalidIdError(
            f"{name} must be an ObjectId, not a value of type {type(value).__name__}",
            argument=name,
        )
    found.setdefault(REFERENCES[name], set()).add(value)


def _refuse(how: str, name: str) -> TenantIsolationError:
    return TenantIsolationError(
        f"{how} may not write the reference {name}: write an ObjectId with "
        "$set or $setOnInsert (or a pipeline $set of an ObjectId or $literal)"
    )


def references_in(documents: Iterable[Mapping[str, Any]]) -> References:
    """Return ``{collection: ids}`` referenced by documents to insert or replace with.

    A reference must be a top-level field holding an ObjectId; a dotted name
    into one is refused, and any other value raises :class:`InvalidIdError`.
    """
    found: References = {}
    for document in documents:
        for key, value in document.items():
            name = _reference_of(str(key))
            if name is not None and key != name:
                raise _refuse(f"the field {key!r}", name)
            if name is not None:
                _add(found, name, value)
    return found


def update_references(
    update: Mapping[str, Any] | Sequence[Any],
    query: Mapping[str, Any] | None,
    upsert: bool,
) -> References:
    """Return the references an update (and an upsert's filter) would write.

    Refuses, with :class:`TenantIsolationError`, every way of writing a
    reference whose value cannot be checked before the write.
    """
    update = as_update(update)
    found: References = {}
    if isinstance(update, list):
        _pipeline_references(update, found)
    else:
        _operator_references(update, found)
    if upsert:  # MongoDB builds the new document from the filter's equalities too
        _filter_references(as_filter(query), found)
    return found


def _operator_references(update: Mapping[str, Any], found: References) -> None:
    for operator, fields in _operator_fields(update):
        for path, value in fields.items():
            targets = [path, str(value)] if operator == "$rename" else [path]
            for target in targets:
                name = _reference_of(target)
                if name is None:
                    continue
                if operator in _WRITES_TENANT and target == name:
                    _add(found, name, value)
                elif not (operator == "$unset" and _removable(target, name)):
                    raise _refuse(operator, name)


def _removable(path: str, name: str) -> bool:
    return path == name and name not in REQUIRED_REFERENCES


def _pipeline_references(stages: list[dict[str, Any]], found: References) -> None:
    for stage in stages:
        ((stage_name, spec),) = stage.items()
        if stage_name not in ("$set", "$addFields", "$unset"):
            continue  # refused by check_update_pipeline
        for path in _stage_fields(stage_name, spec):
            name = _reference_of(path)
            if name is None:
                continue
            if stage_name == "$unset":
                if not _removable(path, name):
                    raise _refuse("$unset", name)
                continue
            value = _literal(spec[path])
            if path != name or type(value) is not ObjectId:
                raise _refuse(f"a pipeline {stage_name} of a computed value", name)
            _add(found, name, value)


def _literal(value: Any) -> Any:
    is_literal = isinstance(value, Mapping) and list(value) == ["$literal"]
    return value["$literal"] if is_literal else value


def _filter_references(query: Mapping[str, Any], found: References) -> None:
    """Collect an upsert filter's reference equalities, wherever they sit.

    MongoDB copies equalities into the upserted document from the top level and
    from inside ``$and`` (and from a one-clause ``$or`` or a one-value ``$in``
    after it simplifies the filter), so every mention of a reference is treated
    as a write: it must be ``ObjectId`` or ``{$eq: ObjectId}``, and is checked.
    """
    for key, value in query.items():
        if key in _LOGICAL:
            for clause in _clauses(key, value):
                _filter_references(clause, found)
            continue
        name = _reference_of(str(key))
        if name is None:
            continue
        equal = value["$eq"] if _is_eq(value) else value
        if key != name or type(equal) is not ObjectId:
            raise TenantIsolationError(
                f"an upsert's filter may name {name} only by equality with an ObjectId"
            )
        _add(found, name, equal)


def _is_eq(value: Any) -> bool:
    return isinstance(value, Mapping) and list(value) == ["$eq"]


def _clauses(operator: str, value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list | tuple) or not all(isinstance(c, Mapping) for c in value):
        raise InvalidArgumentError(f"{operator} takes a list of conditions", argument="filter")
    return list(value)


def reference_check_queries(
    tenant_id: Any, references: Mapping[str, set[Any]]
) -> list[tuple[str, dict[str, Any], int]]:
    """Return ``(collection, filter, expected count)`` proving each reference is the tenant's."""
    tenant = as_tenant(tenant_id)
    return [
        (
            collection,
            {"_id": {"$in": sorted(ids, key=str)}, TENANT_FIELD: tenant},
            len(ids),
        )
        for collection, ids in sorted(references.items())
    ]


# ---------------------------------------------------------------- no existence oracles
#
# A new document's _id is unique across every tenant, so a write that chose it
# would fail on another tenant's document and succeed on a free id: the error
# would tell the caller what another tenant owns. A scoped write therefore
# never chooses _id for a new document (the database assigns it) and never
# changes one.


def _refuse_id_in_documents(documents: Iterable[Mapping[str, Any]]) -> None:
    if any(_touches(str(key), ID_FIELD) for d in documents for key in d):
        raise TenantIsolationError("a scoped insert may not choose _id: the database assigns it")


def _refuse_id_in_update(update: Mapping[str, Any] | list[dict[str, Any]]) -> None:
    if isinstance(update, list):
        paths = [
            path
            for stage in update
            for name, spec in stage.items()
            if name in ("$set", "$addFields", "$unset")
            for path in _stage_fields(name, spec)
        ]
    else:
        paths = [
            target
            for operator, fields in _operator_fields(update)
            for path, value in fields.items()
            for target in ([path, str(value)] if operator == "$rename" else [path])
        ]
    if any(_touches(path, ID_FIELD) for path in paths):
        raise TenantIsolationError("a scoped update may not write _id")


def _names_id(query: Mapping[str, Any]) -> bool:
    """Return True if a filter mentions ``_id`` anywhere in its logical tree."""
    return any(
        any(_names_id(c) for c in _clauses(key, value))
        if key in _LOGICAL
        else _touches(str(key), ID_FIELD)
        for key, value in query.items()
    )


def _refuse_id_in_upsert(query: Mapping[str, Any]) -> None:
    if _names_id(query):
        raise TenantIsolationError(
            "a scoped upsert may not name _id in its filter: the new document's "
            "_id is assigned by the database"
        )


def _refuse_replacement_id(
    query: Mapping[str, Any], replacement: Mapping[str, Any], upsert: bool
) -> None:
    """Allow ``_id`` in a replacement only when it repeats the filter's own ``_id``."""
    if ID_FIELD not in replacement:
        return
    if upsert or query.get(ID_FIELD, object()) != replacement[ID_FIELD]:
        raise TenantIsolationError(
            "a scoped replacement may carry _id only when the filter selects that "
            "_id and the call does not upsert"
        )


# ---------------------------------------------------------------- flows
#
# Each scoped operation is a flow (nsn_store._flow): its arguments are checked
# and scoped when the flow starts, before its first call; then one count per
# referenced collection proves the references are the tenant's, then the one
# call on the scoped collection. The sync and async scoped collections run the
# same flows.

#: A reference check: ``(collection, filter, expected count)``.
Check = tuple[str, dict[str, Any], int]


def checked(op: Op, checks: Sequence[Check] = ()) -> Flow[Any]:
    """Run ``op`` once every reference check counts what it expects (one count each)."""
    for collection, query, expected in checks:
        if (yield Op("count_documents", collection, (query,))) != expected:
            raise reference_refusal(collection)
    return (yield op)


def filtered_flow(
    tenant_id: Any, collection: str, method: str, query: Any, *args: Any, **kwargs: Any
) -> Flow[Any]:
    """Return the flow of a read or delete whose filter is scoped to the tenant."""
    scoped = scope_filter(tenant_id, query)
    return (yield Op(method, collection, (scoped, *args), kwargs))


def insert_flow(
    tenant_id: Any, collection: str, method: str, documents: Any, kwargs: dict[str, Any]
) -> Flow[Any]:
    """Return the flow of an insert_one/insert_many of tenant-owned documents.

    ``insert_many`` accepts any iterable of documents, read once.
    """
    single = method == "insert_one"
    if single:
        given = [as_document(documents)]
    elif isinstance(documents, Mapping) or not isinstance(documents, Iterable):
        raise InvalidArgumentError("documents must be a list of documents", argument="documents")
    else:
        given = [as_document(d, "documents") for d in documents]
        if not given:
            raise InvalidArgumentError("documents must not be empty", argument="documents")
    _refuse_id_in_documents(given)
    scoped = [scope_document(tenant_id, d) for d in given]
    checks = reference_check_queries(tenant_id, references_in(scoped))
    op = Op(method, collection, (scoped[0] if single else scoped,), kwargs)
    return (yield from checked(op, checks))


def update_flow(
    tenant_id: Any,
    collection: str,
    method: str,
    query: Any,
    update: Any,
    kwargs: dict[str, Any],
) -> Flow[Any]:
    """Return the flow of an update that cannot change tenantId or _id, nor reference
    another tenant's documents."""
    query, update, upsert = as_filter(query), as_update(update), _upsert_flag(kwargs)
    check_update(tenant_id, update)
    _refuse_id_in_update(update)
    if upsert:
        _refuse_id_in_upsert(query)
    written = update_references(update, query, upsert)
    checks = reference_check_queries(tenant_id, written)
    op = Op(method, collection, (scope_filter(tenant_id, query), update), kwargs)
    return (yield from checked(op, checks))


def replace_flow(
    tenant_id: Any, collection: str, query: Any, replacement: Any, kwargs: dict[str, Any]
) -> Flow[Any]:
    """Return the flow of a replace_one whose replacement keeps tenantId and its _id."""
    query, upsert = as_filter(query), _upsert_flag(kwargs)
    scoped = scope_document(tenant_id, as_document(replacement, "replacement"))
    _refuse_replacement_id(query, scoped, upsert)
    written = references_in([scoped])
    if upsert:
        _refuse_id_in_upsert(query)
        for referenced, ids in update_references({}, query, True).items():
            written.setdefault(referenced, set()).update(ids)
    checks = reference_check_queries(tenant_id, written)
    op = Op("replace_one", collection, (scope_filter(tenant_id, query), scoped), kwargs)
    return (yield from checked(op, checks))


def aggregate_flow(
    tenant_id: Any, collection: str, pipeline: Any, kwargs: dict[str, Any]
) -> Flow[list[Any]]:
    """Return the flow of an aggregation over the tenant's documents only (its result list)."""
    stages = scope_pipeline(tenant_id, pipeline)
    return list((yield Op("aggregate", collection, (stages,), kwargs)))


def reference_refusal(collection: str) -> TenantIsolationError:
    """Return the error for a reference that is missing or another tenant's (alike)."""
    return TenantIsolationError(f"a referenced {collection} document is not this tenant's")
