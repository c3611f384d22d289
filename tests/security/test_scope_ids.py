"""The id gate of a tenant scope (issue 9, mechanism 1).

``TenantScope(db, tenant_id)`` put ``tenant_id`` into every filter unchanged,
so ``tenant_id={"$ne": None}`` (an id parsed from a JSON body) read every
tenant's contacts and ``delete_many({})`` deleted another tenant's. The id now
passes :func:`nsn_store.arguments.as_object_id` before anything else, and a
reference written into a document must be a real ObjectId. A caller's own
``tenantId`` condition, whatever its operators, may narrow but never widen.
"""

from __future__ import annotations

from typing import Any

import pytest
from _scope_world import LATER, NoIO, World, seed, seed_async, snapshot, snapshot_async
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsn_store.errors import InvalidIdError, TenantIsolationError
from nsn_store.tenancy._collections import AsyncScopedCollection, ScopedCollection
from nsn_store.tenancy._scope import AsyncTenantScope, TenantScope

#: Tenant ids an attacker (or a JSON body) can pass instead of an id.
BAD_TENANT_IDS = {
    "ne-none": {"$ne": None},
    "exists": {"$exists": True},
    "in": {"$in": [ObjectId(), ObjectId()]},
    "gt": {"$gt": ObjectId("000000000000000000000000")},
    "none": None,
    "list": [ObjectId()],
    "int": 0,
    "bool": True,
    "short-string": "abc",
    "twelve-bytes": b"123456789012",
    "twelve-char-string": "123456789012",
}


@pytest.mark.parametrize("bad", BAD_TENANT_IDS.values(), ids=BAD_TENANT_IDS.keys())
def test_a_tenant_id_that_is_not_an_id_is_refused_before_any_io(bad: Any) -> None:
    for make in (TenantScope, AsyncTenantScope):
        with pytest.raises(InvalidIdError) as caught:
            make(NoIO(), bad)
        assert caught.value.argument == "tenant_id"
    for collection in (ScopedCollection, AsyncScopedCollection):
        with pytest.raises(InvalidIdError):
            collection(NoIO(), bad, "contacts")


def test_an_operator_tenant_id_reads_and_deletes_nothing(db: Any) -> None:
    world = seed(db)
    before = snapshot(db)
    for bad in (BAD_TENANT_IDS["ne-none"], {"$ne": world.a}, {"$in": [world.a, world.b]}):
        with pytest.raises(InvalidIdError):
            list(TenantScope(db, bad)["contacts"].find())
        with pytest.raises(InvalidIdError):
            TenantScope(db, bad)["contacts"].delete_many({})
    assert snapshot(db) == before


async def test_an_operator_tenant_id_reads_and_deletes_nothing_async(async_db: Any) -> None:
    await seed_async(async_db)
    before = await snapshot_async(async_db)
    with pytest.raises(InvalidIdError):
        await AsyncTenantScope(async_db, {"$ne": None})["contacts"].delete_many({})
    assert await snapshot_async(async_db) == before


def test_the_hex_form_of_a_tenant_id_is_the_same_tenant(db: Any) -> None:
    world = seed(db)
    scope = TenantScope(db, str(world.a))
    assert scope.tenant_id == world.a
    assert [d["_id"] for d in scope["contacts"].find()] == [world.mine("contacts")]


#: Reference values that are not ObjectIds (a hex string is data, not an id, in a document).
BAD_REFERENCES = {
    "operator": {"$ne": None},
    "hex-string": "0123456789abcdef01234567",
    "none": None,
    "int": 7,
    "list": [ObjectId()],
}


def _writes(world: World, value: Any) -> dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Every plain-value way of writing scheduledMessages.contactId, with ``value``."""
    body = world.body("scheduledMessages", "contactId")
    fresh = world.body("scheduledMessages", "contactId", "createdAt")
    return {
        "insert": ("insert_one", ({**body, "contactId": value},), {}),
        "insert-many": ("insert_many", ([{**body, "contactId": value}],), {}),
        "replace": ("replace_one", ({}, {**body, "contactId": value}), {}),
        "set": ("update_one", ({}, {"$set": {"contactId": value}}), {}),
        "set-on-insert": ("update_one", ({"createdAt": LATER},
                          {"$setOnInsert": {**fresh, "contactId": value}}), {"upsert": True}),
        "upsert-filter": ("update_one", ({"contactId": value, "createdAt": LATER},
                          {"$setOnInsert": fresh}), {"upsert": True}),
    }  # fmt: skip


@pytest.mark.parametrize("value", BAD_REFERENCES.values(), ids=BAD_REFERENCES.keys())
def test_a_reference_that_is_not_an_object_id_is_refused(db: Any, value: Any) -> None:
    world = seed(db)
    before = snapshot(db)
    messages = TenantScope(db, world.a)["scheduledMessages"]
    for label, (method, args, kwargs) in _writes(world, value).items():
        with pytest.raises((InvalidIdError, TenantIsolationError)) as caught:
            getattr(messages, method)(*args, **kwargs)
        if label != "upsert-filter":  # a filter's operator is refused as a form instead
            assert caught.type is InvalidIdError, label
    assert snapshot(db) == before


async def test_a_reference_that_is_not_an_object_id_is_refused_async(async_db: Any) -> None:
    world = await seed_async(async_db)
    before = await snapshot_async(async_db)
    messages = AsyncTenantScope(async_db, world.a)["scheduledMessages"]
    for value in BAD_REFERENCES.values():
        for method, args, kwargs in _writes(world, value).values():
            with pytest.raises((InvalidIdError, TenantIsolationError)):
                await getattr(messages, method)(*args, **kwargs)
    assert await snapshot_async(async_db) == before


# ---------------------------------------------------------------- narrowing only


def _tenant_conditions(world: World) -> st.SearchStrategy[Any]:
    b, a = world.b, world.a
    return st.sampled_from(
        [b, {"$ne": a}, {"$in": [a, b]}, {"$nin": [a]}, {"$exists": True}, {"$gt": a},
         {"$lt": a}, {"$gte": ObjectId("000000000000000000000000")}, {"$not": {"$eq": a}},
         {"$type": "objectId"}, {"$eq": b}, None]
    )  # fmt: skip


def _filters(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """Filters that try to reach tenant b: operators, $or/$nor/$and nesting, $expr."""
    leaves = st.one_of(
        st.builds(lambda c: {"tenantId": c}, _tenant_conditions(world)),
        st.sampled_from(
            [
                {},
                {"email": "ada@example.com"},
                {"_id": world.theirs("contacts")},
                {"_id": {"$in": [world.mine("contacts"), world.theirs("contacts")]}},
                {"$expr": {"$ne": ["$tenantId", world.a]}},
                {"$expr": {"$or": [{"$eq": ["$tenantId", world.b]}, True]}},
                {"$expr": True},
                {"tenantId.x": {"$exists": False}},
            ]
        ),
    )
    return st.recursive(
        leaves,
        lambda inner: st.builds(
            lambda op, parts: {op: parts},
            st.sampled_from(["$or", "$and", "$nor"]),
            st.lists(inner, min_size=1, max_size=3),
        ),
        max_leaves=6,
    )


@pytest.fixture
def world(db: Any) -> tuple[Any, World]:
    return db, seed(db)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_no_filter_widens_the_scope(world: tuple[Any, World], data: st.DataObject) -> None:
    db, w = world
    query = data.draw(_filters(w))
    before = snapshot(db)
    contacts = TenantScope(db, w.a)["contacts"]
    assert all(d["tenantId"] == w.a for d in contacts.find(query))
    assert contacts.count_documents(query) <= 1
    assert all(d["tenantId"] == w.a for d in contacts.aggregate([{"$match": query}]))
    # A write through the filter changes only a's contact (set a field to what it holds).
    contacts.update_many(query, {"$set": {"firstName": "Ada"}})
    assert snapshot(db) == before


WIDENING_DELETES = {
    "other-tenant": lambda w: {"tenantId": w.b},
    "ne": lambda w: {"tenantId": {"$ne": w.a}},
    "or": lambda w: {"$or": [{"tenantId": w.b}, {"_id": w.theirs("contacts")}]},
    "nor": lambda w: {"$nor": [{"tenantId": w.a}]},
    "expr": lambda w: {"$expr": {"$ne": ["$tenantId", w.a]}},
    "their-id": lambda w: {"_id": w.theirs("contacts")},
    "everything": lambda w: {"$or": [{}, {"tenantId": {"$exists": True}}]},
}


@pytest.mark.parametrize("make", WIDENING_DELETES.values(), ids=WIDENING_DELETES.keys())
def test_no_delete_filter_reaches_the_other_tenant(db: Any, make: Any) -> None:
    world = seed(db)
    theirs = list(db.contacts.find({"tenantId": world.b}))
    TenantScope(db, world.a)["contacts"].delete_many(make(world))
    assert list(db.contacts.find({"tenantId": world.b})) == theirs
