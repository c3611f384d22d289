"""No existence oracles through a tenant scope (issue 9, mechanism 5).

Whatever tenant ``a`` tries, a document of tenant ``b`` and a document that
does not exist must look alike. ``_id`` is unique across tenants, so a scoped
insert or upsert that chose ``_id`` failed with a duplicate key on ``b``'s id
and succeeded on a free one; the scope now never lets a caller choose the
``_id`` of a new document (the database assigns it), and refuses both alike.
References to ``b``'s documents and to missing ones are refused with the same
error. Each attempt is made twice, with ``b``'s id and with a fresh one, and
the two outcomes must be identical (type and message) and write nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _scope_world import (
    LATER,
    REFERENCE_FIELDS,
    REFERENCE_IDS,
    World,
    outcome,
    outcome_async,
    seed,
    seed_async,
    snapshot,
    snapshot_async,
)
from bson import ObjectId

from nsn_store.errors import TenantIsolationError
from nsn_store.tenancy._rules import tenant_collections
from nsn_store.tenancy._scope import AsyncTenantScope, TenantScope

COLLECTIONS = sorted(tenant_collections())
Attempt = Callable[[World, str, ObjectId], tuple[str, tuple[Any, ...], dict[str, Any]]]
UPSERT = {"upsert": True}

#: What a second document of a collection changes so its own unique indexes allow it.
UNIQUE_FIELDS = {
    "users": {"clerkUserId": "user_new"},
    "counters": {"shard": 1},
    "aggregates": {"date": "2026-01-06"},
}


def _new(world: World, name: str) -> dict[str, Any]:
    """A valid new document for tenant a (no _id), distinct on every unique index."""
    return {**world.body(name), **UNIQUE_FIELDS.get(name, {}), "createdAt": LATER}


def _on_insert(world: World, name: str) -> dict[str, Any]:
    return {k: v for k, v in _new(world, name).items() if k != "createdAt"}


#: Writes that would create (or re-key) a document with the caller's chosen _id.
ID_ATTEMPTS: dict[str, Attempt] = {
    "insert": lambda w, n, x: ("insert_one", ({**_new(w, n), "_id": x},), {}),
    "insert-many": lambda w, n, x: ("insert_many", ([{**_new(w, n), "_id": x}],), {}),
    "upsert-id": lambda w, n, x: (
        "update_one", ({"_id": x, "createdAt": LATER}, {"$setOnInsert": _on_insert(w, n)}),
        UPSERT),
    "upsert-id-in-and": lambda w, n, x: (
        "update_one", ({"$and": [{"_id": x}], "createdAt": LATER},
                       {"$setOnInsert": _on_insert(w, n)}), UPSERT),
    "upsert-id-one-value-in": lambda w, n, x: (
        "update_one", ({"_id": {"$in": [x]}, "createdAt": LATER},
                       {"$setOnInsert": _on_insert(w, n)}), UPSERT),
    "upsert-id-one-clause-or": lambda w, n, x: (
        "update_one", ({"$or": [{"_id": x}], "createdAt": LATER},
                       {"$setOnInsert": _on_insert(w, n)}), UPSERT),
    "upsert-set-on-insert-id": lambda w, n, x: (
        "update_one", ({"createdAt": LATER}, {"$setOnInsert": {**_on_insert(w, n), "_id": x}}),
        UPSERT),
    "upsert-many-id": lambda w, n, x: (
        "update_many", ({"_id": x, "createdAt": LATER}, {"$setOnInsert": _on_insert(w, n)}),
        UPSERT),
    "upsert-find-one-and-update-id": lambda w, n, x: (
        "find_one_and_update", ({"_id": x, "createdAt": LATER},
                                {"$setOnInsert": _on_insert(w, n)}), UPSERT),
    "upsert-pipeline-id": lambda w, n, x: (
        "update_one", ({"createdAt": LATER}, [{"$set": {**_on_insert(w, n), "_id": x}}]),
        UPSERT),
    "replace-upsert-filter-id": lambda w, n, x: (
        "replace_one", ({"_id": x}, _new(w, n)), UPSERT),
    "replace-upsert-replacement-id": lambda w, n, x: (
        "replace_one", ({"createdAt": LATER}, {**_new(w, n), "_id": x}), UPSERT),
    "replace-changes-id": lambda w, n, x: (
        "replace_one", ({"_id": w.mine(n)}, {**w.body(n), "_id": x}), {}),
    "set-id": lambda w, n, x: ("update_one", ({"_id": w.mine(n)}, {"$set": {"_id": x}}), {}),
    "rename-onto-id": lambda w, n, x: ("update_one", ({}, {"$rename": {"createdAt": "_id"}}), {}),
}  # fmt: skip


def _alike(first: tuple[type, str], second: tuple[type, str], *ids: ObjectId) -> None:
    assert first == second
    assert not any(str(i) in first[1] for i in ids)  # the message names no id


@pytest.mark.parametrize("attempt", ID_ATTEMPTS.values(), ids=ID_ATTEMPTS.keys())
@pytest.mark.parametrize("name", COLLECTIONS)
def test_choosing_an_id_reveals_nothing(db: Any, name: str, attempt: Attempt) -> None:
    world = seed(db)
    before = snapshot(db)
    scoped = TenantScope(db, world.a)[name]
    theirs, free = world.theirs(name), ObjectId()
    results = []
    for x in (theirs, free):
        method, args, kwargs = attempt(world, name, x)
        results.append(outcome(getattr(scoped, method), *args, **kwargs))
    _alike(*results, theirs, free)
    assert results[0][0] is TenantIsolationError
    assert snapshot(db) == before


@pytest.mark.parametrize("name", COLLECTIONS)
async def test_choosing_an_id_reveals_nothing_async(async_db: Any, name: str) -> None:
    world = await seed_async(async_db)
    before = await snapshot_async(async_db)
    scoped = AsyncTenantScope(async_db, world.a)[name]
    theirs, free = world.theirs(name), ObjectId()
    for label, attempt in ID_ATTEMPTS.items():
        results = []
        for x in (theirs, free):
            method, args, kwargs = attempt(world, name, x)
            results.append(await outcome_async(getattr(scoped, method), *args, **kwargs))
        assert results[0] == results[1], label
        assert results[0][0] is TenantIsolationError, label
    assert await snapshot_async(async_db) == before


def test_a_new_document_still_gets_an_id_from_the_database(db: Any) -> None:
    world = seed(db)
    contacts = TenantScope(db, world.a)["contacts"]
    new_id = contacts.insert_one(_new(world, "contacts")).inserted_id
    upserted = contacts.update_one(
        {"email": "new@example.com"}, {"$setOnInsert": {"createdAt": LATER}}, upsert=True
    ).upserted_id
    assert {new_id, upserted} <= {d["_id"] for d in contacts.find()}
    # A replacement may repeat the _id its own filter selects.
    mine = contacts.find_one({"_id": new_id})
    assert contacts.replace_one({"_id": new_id}, {**mine, "firstName": "Bo"}).matched_count == 1


#: Writes of a reference; the target is another tenant's document or a missing one.
REFERENCE_ATTEMPTS: dict[str, Attempt] = {
    "insert": lambda w, n, x: ("insert_one", ({**w.body(n), "ref": x},), {}),
    "set": lambda w, n, x: ("update_one", ({}, {"$set": {"ref": x}}), {}),
    "pipeline-literal": lambda w, n, x: (
        "update_one", ({}, [{"$set": {"ref": {"$literal": x}}}]), {}),
    "upsert-and": lambda w, n, x: (
        "update_one", ({"$and": [{"ref": x}], "createdAt": LATER},
                       {"$setOnInsert": w.body(n, "ref", "createdAt")}), UPSERT),
    "replace": lambda w, n, x: ("replace_one", ({}, {**w.body(n), "ref": x}), {}),
}  # fmt: skip


def _with_field(attempt: Attempt, field: str) -> Attempt:
    """Return ``attempt`` writing ``field`` where it says "ref"."""

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {(field if k == "ref" else k): rename(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(rename(v) for v in value)
        return value

    def made(w: World, n: str, x: ObjectId) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        method, args, kwargs = attempt(w, n, x)
        return method, rename(args), kwargs

    return made


@pytest.mark.parametrize("attempt", REFERENCE_ATTEMPTS.values(), ids=REFERENCE_ATTEMPTS.keys())
@pytest.mark.parametrize(("name", "field", "target"), REFERENCE_FIELDS, ids=REFERENCE_IDS)
def test_a_foreign_reference_and_a_missing_one_are_refused_alike(
    db: Any, name: str, field: str, target: str, attempt: Attempt
) -> None:
    world = seed(db)
    before = snapshot(db)
    scoped = TenantScope(db, world.a)[name]
    write = _with_field(attempt, field)
    theirs, missing = world.theirs(target), ObjectId()
    results = []
    for x in (theirs, missing):
        method, args, kwargs = write(world, name, x)
        results.append(outcome(getattr(scoped, method), *args, **kwargs))
    _alike(*results, theirs, missing)
    assert results[0][0] is TenantIsolationError
    assert snapshot(db) == before


@pytest.mark.parametrize(("name", "field", "target"), REFERENCE_FIELDS, ids=REFERENCE_IDS)
async def test_a_foreign_reference_and_a_missing_one_are_refused_alike_async(
    async_db: Any, name: str, field: str, target: str
) -> None:
    world = await seed_async(async_db)
    before = await snapshot_async(async_db)
    scoped = AsyncTenantScope(async_db, world.a)[name]
    for label, attempt in REFERENCE_ATTEMPTS.items():
        write, results = _with_field(attempt, field), []
        for x in (world.theirs(target), ObjectId()):
            method, args, kwargs = write(world, name, x)
            results.append(await outcome_async(getattr(scoped, method), *args, **kwargs))
        assert results[0] == results[1], label
    assert await snapshot_async(async_db) == before


@pytest.mark.parametrize("name", COLLECTIONS)
def test_reads_updates_and_deletes_of_a_foreign_id_look_like_a_missing_one(
    db: Any, name: str
) -> None:
    # Not a regression (this held before): the guarantee the writes above now match.
    world = seed(db)
    scoped = TenantScope(db, world.a)[name]

    def observed(x: ObjectId) -> tuple[Any, ...]:
        return (
            scoped.find_one({"_id": x}),
            scoped.count_documents({"_id": x}),
            scoped.update_one({"_id": x}, {"$set": {"createdAt": LATER}}).matched_count,
            scoped.find_one_and_update({"_id": x}, {"$set": {"createdAt": LATER}}),
            scoped.delete_one({"_id": x}).deleted_count,
            list(scoped.aggregate([{"$match": {"_id": x}}])),
        )

    assert observed(world.theirs(name)) == observed(ObjectId())
