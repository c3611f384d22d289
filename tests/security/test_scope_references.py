"""Reference integrity on every write path of a tenant scope (issue 9, mechanism 4).

The rule under test: a reference field (``contactId``, ``templateId``,
``workflowId``, ``workflowStepId``, ``scheduledMessageId``, ``userId``) is
written only with a plain ObjectId, which is checked against the tenant; every
other way of writing one is refused before any I/O. Tenant ``a`` attacks with
the ids of tenant ``b``'s documents, which overlap ``a``'s in every field but
``tenantId``. Before the rule, ``$min``/``$max``, pipeline ``$set`` with
``$literal`` or ``$toObjectId``, ``$rename`` into a reference and upsert
equalities inside ``$and`` (or a one-clause ``$or``, a one-value ``$in``)
pointed ``a``'s documents at ``b``'s; ``aiPreviews.userId`` was never checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from _scope_world import (
    LATER,
    REFERENCE_FIELDS,
    REFERENCE_IDS,
    NoIO,
    World,
    outcome,
    outcome_async,
    seed,
    seed_async,
    snapshot,
    snapshot_async,
)
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsn_store.errors import NsnStoreError, TenantIsolationError
from nsn_store.tenancy._scope import AsyncTenantScope, TenantScope

Attack = Callable[[World, str, str, ObjectId], tuple[str, tuple[Any, ...], dict[str, Any]]]
UPSERT = {"upsert": True}


def _fresh(world: World, name: str, field: str) -> dict[str, Any]:
    """An upsert's $setOnInsert: a's document without the attacked field and createdAt."""
    return world.body(name, field, "createdAt")


#: Ways of writing a reference whose value cannot be checked first: refused outright.
REFUSED: dict[str, Attack] = {
    "max": lambda w, n, f, t: ("update_one", ({"_id": w.mine(n)}, {"$max": {f: t}}), {}),
    "min": lambda w, n, f, t: ("update_one", ({"_id": w.mine(n)}, {"$min": {f: t}}), {}),
    "max-many": lambda w, n, f, t: ("update_many", ({}, {"$max": {f: t}}), {}),
    "max-find-one-and-update": lambda w, n, f, t: (
        "find_one_and_update", ({"_id": w.mine(n)}, {"$max": {f: t}}), {}),
    "push": lambda w, n, f, t: ("update_one", ({}, {"$push": {f: t}}), {}),
    "current-date": lambda w, n, f, t: ("update_one", ({}, {"$currentDate": {f: True}}), {}),
    "rename-into": lambda w, n, f, t: ("update_one", ({}, {"$rename": {"payload.ref": f}}), {}),
    "rename-away": lambda w, n, f, t: ("update_one", ({}, {"$rename": {f: "elsewhere"}}), {}),
    "set-dotted": lambda w, n, f, t: ("update_one", ({}, {"$set": {f"{f}.oid": t}}), {}),
    "pipeline-to-object-id": lambda w, n, f, t: (
        "update_one", ({}, [{"$set": {f: {"$toObjectId": str(t)}}}]), {}),
    "pipeline-field-path": lambda w, n, f, t: (
        "update_one", ({}, [{"$set": {"tmp": t}}, {"$set": {f: "$tmp"}}]), {}),
    "pipeline-cond": lambda w, n, f, t: (
        "update_one", ({}, [{"$addFields": {f: {"$cond": [True, t, f"${f}"]}}}]), {}),
    "pipeline-generator": lambda w, n, f, t: (
        "update_one", ({}, (s for s in [{"$set": {f: {"$toObjectId": str(t)}}}])), {}),
    "upsert-in-one-value": lambda w, n, f, t: (
        "update_one", ({f: {"$in": [t]}, "createdAt": LATER},
                       {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "upsert-all": lambda w, n, f, t: (
        "update_one", ({f: {"$all": [t]}, "createdAt": LATER},
                       {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
}  # fmt: skip

#: Plain-ObjectId writes: allowed in form, so the id is checked, and b's is refused.
CHECKED: dict[str, Attack] = {
    "set": lambda w, n, f, t: ("update_one", ({"_id": w.mine(n)}, {"$set": {f: t}}), {}),
    "pipeline-plain": lambda w, n, f, t: ("update_one", ({}, [{"$set": {f: t}}]), {}),
    "pipeline-literal": lambda w, n, f, t: (
        "update_one", ({}, [{"$set": {f: {"$literal": t}}}]), {}),
    "pipeline-literal-many": lambda w, n, f, t: (
        "update_many", ({}, [{"$addFields": {f: {"$literal": t}}}]), {}),
    "set-on-insert": lambda w, n, f, t: (
        "update_one", ({"createdAt": LATER}, {"$setOnInsert": {**_fresh(w, n, f), f: t}}),
        UPSERT),
    "upsert-and": lambda w, n, f, t: (
        "update_one", ({"$and": [{f: t}, {"createdAt": LATER}]},
                       {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "upsert-nested-and": lambda w, n, f, t: (
        "update_one", ({"$and": [{"$and": [{f: t}]}], "createdAt": LATER},
                       {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "upsert-or-one-clause": lambda w, n, f, t: (
        "update_one", ({"$or": [{f: t}], "createdAt": LATER},
                       {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "upsert-eq": lambda w, n, f, t: (
        "update_one", ({f: {"$eq": t}, "createdAt": LATER},
                       {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "upsert-many-and": lambda w, n, f, t: (
        "update_many", ({"$and": [{f: t}], "createdAt": LATER},
                        {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "upsert-find-one-and-update-and": lambda w, n, f, t: (
        "find_one_and_update", ({"$and": [{f: t}], "createdAt": LATER},
                                {"$setOnInsert": _fresh(w, n, f)}), UPSERT),
    "replace": lambda w, n, f, t: (
        "replace_one", ({"_id": w.mine(n)}, {**w.body(n), f: t}), {}),
    "replace-upsert": lambda w, n, f, t: (
        "replace_one", ({"createdAt": LATER}, {**w.body(n), f: t, "createdAt": LATER}), UPSERT),
    "replace-upsert-and": lambda w, n, f, t: (
        "replace_one", ({"$and": [{f: t}], "createdAt": LATER},
                        {**w.body(n, f), "createdAt": LATER}), UPSERT),
    "insert": lambda w, n, f, t: ("insert_one", ({**w.body(n), f: t},), {}),
    "insert-many": lambda w, n, f, t: ("insert_many", ([w.body(n), {**w.body(n), f: t}],), {}),
}  # fmt: skip

ATTACKS = {**REFUSED, **CHECKED}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
@pytest.mark.parametrize(("name", "field", "target"), REFERENCE_FIELDS, ids=REFERENCE_IDS)
def test_no_write_path_points_at_another_tenants_document(
    db: Any, name: str, field: str, target: str, attack: Attack
) -> None:
    world = seed(db)
    before = snapshot(db)
    method, args, kwargs = attack(world, name, field, world.theirs(target))
    scoped = TenantScope(db, world.a)[name]
    error, _ = outcome(getattr(scoped, method), *args, **kwargs)
    assert error is TenantIsolationError
    assert snapshot(db) == before  # nothing was written, anywhere


@pytest.mark.parametrize(("name", "field", "target"), REFERENCE_FIELDS, ids=REFERENCE_IDS)
async def test_no_async_write_path_points_at_another_tenants_document(
    async_db: Any, name: str, field: str, target: str
) -> None:
    world = await seed_async(async_db)
    before = await snapshot_async(async_db)
    scoped = AsyncTenantScope(async_db, world.a)[name]
    for label, attack in ATTACKS.items():
        method, args, kwargs = attack(world, name, field, world.theirs(target))
        error, _ = await outcome_async(getattr(scoped, method), *args, **kwargs)
        assert error is TenantIsolationError, label
    assert await snapshot_async(async_db) == before


@pytest.mark.parametrize("attack", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize(("name", "field", "target"), REFERENCE_FIELDS, ids=REFERENCE_IDS)
async def test_unverifiable_reference_writes_are_refused_before_any_io(
    name: str, field: str, target: str, attack: Attack
) -> None:
    world = World(ObjectId(), ObjectId(), {}, {})
    world.a_docs = {n: {"_id": ObjectId(), "createdAt": LATER} for n, _, _ in REFERENCE_FIELDS}
    for scope in (TenantScope(NoIO(), world.a), AsyncTenantScope(NoIO(), world.a)):
        method, args, kwargs = attack(world, name, field, ObjectId())  # fresh: a generator
        call = getattr(scope[name], method)
        with pytest.raises(TenantIsolationError):
            result = call(*args, **kwargs)
            if isinstance(scope, AsyncTenantScope):
                await result


def test_a_preview_for_another_tenants_user_is_refused(db: Any) -> None:
    world = seed(db)
    previews = TenantScope(db, world.a)["aiPreviews"]
    with pytest.raises(TenantIsolationError, match="users"):
        previews.insert_one({**world.body("aiPreviews"), "userId": world.theirs("users")})
    previews.insert_one(world.body("aiPreviews"))  # its own user is fine
    assert previews.count_documents({"userId": world.mine("users")}) == 2


def test_a_rename_cannot_smuggle_a_stored_id_into_a_reference(db: Any) -> None:
    world = seed(db)
    messages = TenantScope(db, world.a)["scheduledMessages"]
    # The payload is free-form, so another tenant's id may sit there as data ...
    messages.update_one({}, {"$set": {"payload.ref": world.theirs("contacts")}})
    # ... but it cannot be moved into a reference field afterwards.
    with pytest.raises(TenantIsolationError):
        messages.update_one({}, {"$rename": {"payload.ref": "contactId"}})
    assert db.scheduledMessages.find_one({"_id": world.mine("scheduledMessages")})[
        "contactId"
    ] == world.mine("contacts")


def test_the_tenants_own_references_still_go_through_every_allowed_form(db: Any) -> None:
    world = seed(db)
    messages = TenantScope(db, world.a)["scheduledMessages"]
    other_template = (
        TenantScope(db, world.a)["templates"].insert_one(world.body("templates")).inserted_id
    )
    for update in (
        {"$set": {"templateId": other_template}},
        [{"$set": {"templateId": {"$literal": world.mine("templates")}}}],
        [{"$set": {"templateId": other_template}}],
    ):
        assert messages.update_one({}, update).matched_count == 1
    assert messages.find_one()["templateId"] == other_template
    created = messages.update_one(
        {"$and": [{"templateId": other_template}], "createdAt": LATER},
        {"$setOnInsert": world.body("scheduledMessages", "templateId", "createdAt")},
        upsert=True,
    ).upserted_id
    stored = db.scheduledMessages.find_one({"_id": created})
    assert stored["tenantId"] == world.a
    assert stored.get("templateId", other_template) == other_template


@pytest.mark.parametrize(
    ("name", "field", "removable"),
    [("scheduledMessages", "templateId", True), ("scheduledMessages", "workflowStepId", True),
     ("aiPreviews", "userId", True), ("messageEvents", "scheduledMessageId", True),
     ("scheduledMessages", "contactId", False), ("workflowSteps", "workflowId", False)],
)  # fmt: skip
def test_only_optional_references_may_be_removed(
    db: Any, name: str, field: str, removable: bool
) -> None:
    world = seed(db)
    scoped = TenantScope(db, world.a)[name]
    if not removable:
        for update in ({"$unset": {field: ""}}, [{"$unset": field}], [{"$unset": [field]}]):
            with pytest.raises(TenantIsolationError):
                scoped.update_one({}, update)
        assert field in db[name].find_one({"_id": world.mine(name)})
        return
    # (The embedded database has no pipeline $unset, so the operator form is run here.)
    assert scoped.update_one({}, {"$unset": {field: ""}}).modified_count == 1
    assert field not in db[name].find_one({"_id": world.mine(name)})


# ---------------------------------------------------------------- any update, one invariant


def _update_strategy(world: World, field: str, target: str) -> st.SearchStrategy[Any]:
    theirs, mine, missing = world.theirs(target), world.mine(target), ObjectId()
    values = st.sampled_from(
        [theirs, mine, missing, str(theirs), {"$literal": theirs}, 1, True, "elsewhere"]
    )
    paths = st.sampled_from([field, f"{field}.x", "payload.ref", "attempts", "createdAt"])
    operators = st.sampled_from(
        ["$set", "$setOnInsert", "$max", "$min", "$rename", "$unset", "$inc", "$push",
         "$addToSet", "$currentDate", "$mul"]
    )  # fmt: skip
    expressions = st.sampled_from(
        [theirs, mine, {"$literal": theirs}, {"$toObjectId": str(theirs)}, "$payload.ref",
         {"$max": [f"${field}", theirs]}, {"$ifNull": [f"${field}", theirs]}]
    )  # fmt: skip
    # Away from the reference, only plain writes: the embedded database fails on
    # $max/$push/... across types, or a dotted $rename, with raw errors unrelated to tenancy.
    operator_update = st.dictionaries(
        operators, st.dictionaries(paths, values, min_size=1), min_size=1, max_size=2
    ).filter(
        lambda u: not any(
            field not in f"{path}{value}"
            and (
                op not in ("$set", "$setOnInsert", "$unset", "$rename")
                or (op == "$rename" and "." in f"{path}{value}")
            )
            for op, fields in u.items() for path, value in fields.items()
        )
    )  # fmt: skip
    pipeline = st.lists(
        st.builds(lambda s, p, e: {s: {p: e}}, st.sampled_from(["$set", "$addFields"]),
                  paths, expressions),
        min_size=1, max_size=2,
    )  # fmt: skip
    return st.one_of(operator_update, pipeline)


def _filter_strategy(world: World, field: str, target: str) -> st.SearchStrategy[Any]:
    theirs = world.theirs(target)
    return st.sampled_from(
        [{}, {"createdAt": LATER}, {"$and": [{field: theirs}], "createdAt": LATER},
         {field: {"$in": [theirs]}, "createdAt": LATER}, {"$or": [{field: theirs}]},
         {field: theirs, "createdAt": LATER}, {field: {"$eq": theirs}}]
    )  # fmt: skip


def _references_hold(db: Any, world: World) -> None:
    """Every reference in tenant a's documents names a document of tenant a."""
    for name, field, target in REFERENCE_FIELDS:
        for doc in db[name].find({"tenantId": world.a, field: {"$exists": True}}):
            ref = doc[field]
            assert db[target].count_documents({"_id": ref, "tenantId": world.a}) == 1, (
                name,
                field,
            )


@pytest.fixture
def seeded(db: Any) -> tuple[Any, World]:
    return db, seed(db)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_whatever_update_a_caller_sends_references_stay_in_the_tenant(
    seeded: tuple[Any, World], data: st.DataObject
) -> None:
    db, world = seeded
    name, field, target = data.draw(st.sampled_from(REFERENCE_FIELDS))
    update = data.draw(_update_strategy(world, field, target))
    query = data.draw(_filter_strategy(world, field, target))
    method = data.draw(st.sampled_from(["update_one", "update_many", "find_one_and_update"]))
    upsert = data.draw(st.booleans())
    theirs_before = {n: list(db[n].find({"tenantId": world.b})) for n, _, _ in REFERENCE_FIELDS}
    # Refused by the scope or by the database: either way the invariant must hold.
    with contextlib.suppress(NsnStoreError):
        getattr(TenantScope(db, world.a)[name], method)(query, update, upsert=upsert)
    _references_hold(db, world)
    assert {n: list(db[n].find({"tenantId": world.b})) for n in theirs_before} == theirs_before
