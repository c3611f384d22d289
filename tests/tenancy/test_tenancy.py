"""Tenant isolation: two tenants with overlapping data, every collection, every operation."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from _support import assert_async_twin, init_schema_async, public_surface
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import ReturnDocument

from nsn_store._flow import Flow, Op
from nsn_store.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidIdError,
    TenantIsolationError,
)
from nsn_store.migration._runner import init_schema
from nsn_store.schema._registry import SCHEMA
from nsn_store.tenancy._collections import AsyncScopedCollection, ScopedCollection
from nsn_store.tenancy._rules import (
    check_update,
    insert_flow,
    reference_check_queries,
    references_in,
    scope_filter,
    scope_pipeline,
    tenant_collections,
    update_flow,
)
from nsn_store.tenancy._scope import AsyncTenantScope, TenantScope

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
TENANT = ObjectId()
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)  # beyond a real server's TTL monitor

# ---------------------------------------------------------------- pure builders


def test_filters_gain_the_tenant_and_keep_the_callers_conditions() -> None:
    assert scope_filter(TENANT, None) == {"tenantId": TENANT}
    assert scope_filter(TENANT, {"email": "a@b.co"}) == {
        "email": "a@b.co",
        "tenantId": TENANT,
    }


def test_a_callers_own_tenant_condition_can_only_narrow() -> None:
    other = ObjectId()
    widened = {"$or": [{"tenantId": other}, {"tenantId": {"$exists": True}}]}
    assert scope_filter(TENANT, widened) == {**widened, "tenantId": TENANT}
    assert scope_filter(TENANT, {"tenantId": other}) == {
        "tenantId": TENANT,
        "$and": [{"tenantId": other}],
    }


REFUSED_UPDATES = {
    "set-other-tenant": {"$set": {"tenantId": ObjectId()}},
    "unset": {"$unset": {"tenantId": ""}},
    "rename-away": {"$rename": {"tenantId": "owner"}},
    "rename-onto": {"$rename": {"owner": "tenantId"}},
    "set-on-insert-other": {"$setOnInsert": {"tenantId": ObjectId()}},
    "dotted": {"$set": {"tenantId.x": 1}},
    "replacement-document": {"name": "x"},
    "pipeline-set": [{"$set": {"tenantId": "$other"}}],
    "pipeline-unset": [{"$unset": "tenantId"}],
    "pipeline-replace-root": [{"$replaceWith": {"a": 1}}],
    "pipeline-project": [{"$project": {"name": 1}}],
}


@pytest.mark.parametrize("update", REFUSED_UPDATES.values(), ids=REFUSED_UPDATES.keys())
def test_updates_that_would_change_the_tenant_are_refused(update: Any) -> None:
    with pytest.raises(TenantIsolationError):
        check_update(TENANT, update)


ALLOWED_UPDATES = {
    "other-fields": {"$set": {"name": "x"}, "$inc": {"attempts": 1}},
    "same-tenant": {"$set": {"tenantId": TENANT}},
    "pipeline": [{"$set": {"tokens": {"$concat": ["$tokens", "x"]}}}],
}


@pytest.mark.parametrize("update", ALLOWED_UPDATES.values(), ids=ALLOWED_UPDATES.keys())
def test_updates_that_keep_the_tenant_pass(update: Any) -> None:
    check_update(TENANT, update)


@pytest.mark.parametrize(
    "stage",
    [
        {
            "$lookup": {
                "from": "contacts",
                "localField": "contactId",
                "foreignField": "_id",
                "as": "c",
            }
        },
        {"$unionWith": "contacts"},
        {"$out": "elsewhere"},
        {"$merge": {"into": "elsewhere"}},
        {"$facet": {"a": [{"$graphLookup": {"from": "workflows"}}]}},
    ],
    ids=["lookup", "unionWith", "out", "merge", "nested-in-facet"],
)
def test_pipelines_reaching_other_collections_are_refused(
    stage: dict[str, Any],
) -> None:
    with pytest.raises(TenantIsolationError):
        scope_pipeline(TENANT, [stage])


def test_pipelines_start_with_the_tenant_match() -> None:
    stages = scope_pipeline(TENANT, [{"$group": {"_id": "$status"}}])
    assert stages == [{"$match": {"tenantId": TENANT}}, {"$group": {"_id": "$status"}}]


def test_references_are_checked_with_one_query_per_collection() -> None:
    c1, c2, t1 = ObjectId(), ObjectId(), ObjectId()
    docs = [
        {"contactId": c1, "templateId": t1},
        {"contactId": c2},
        {"contactId": c1},
    ]
    queries = reference_check_queries(TENANT, references_in(docs))
    assert [(name, count) for name, _, count in queries] == [
        ("contacts", 2),
        ("templates", 1),
    ]
    assert queries[0][1]["tenantId"] == TENANT


@pytest.mark.parametrize(
    "value", [{"$in": []}, str(ObjectId()), None, 7], ids=["operator", "hex", "none", "int"]
)
def test_a_reference_that_is_not_an_object_id_is_refused(value: Any) -> None:
    # Formerly a dict value was skipped unchecked; a reference is an ObjectId or nothing.
    with pytest.raises(InvalidIdError):
        references_in([{"contactId": value}])


def planned(flow: Flow[Any]) -> list[Op]:
    """Drive a scoped flow by hand (every reference check passes); return the calls it makes."""
    ops, result = [], None
    while True:
        try:
            op = flow.send(result)
        except StopIteration:
            return ops
        ops.append(op)
        # A check counts {_id: {$in: ids}}: answer with what it expects, so the flow goes on.
        result = len(op.args[0]["_id"]["$in"]) if op.method == "count_documents" else None


def checks(ops: list[Op]) -> list[tuple[str, dict[str, Any], int]]:
    """Return the reference checks among ``ops``: (collection, filter, expected)."""
    return [
        (op.collection, op.args[0], len(op.args[0]["_id"]["$in"]))
        for op in ops
        if op.method == "count_documents"
    ]


def update(query: Any, change: Any, kwargs: dict[str, Any]) -> list[Op]:
    return planned(update_flow(TENANT, "scheduledMessages", "update_one", query, change, kwargs))


def test_an_insert_is_planned_with_the_tenant_and_its_reference_checks() -> None:
    contact = ObjectId()
    ops = planned(
        insert_flow(
            TENANT,
            "scheduledMessages",
            "insert_one",
            {"contactId": contact, "tenantId": TENANT},
            {},
        )
    )
    assert ops == [
        Op("count_documents", "contacts", ({"_id": {"$in": [contact]}, "tenantId": TENANT},)),
        Op("insert_one", "scheduledMessages", ({"contactId": contact, "tenantId": TENANT},), {}),
    ]


def test_a_reference_that_is_not_the_tenants_stops_the_flow_before_the_write() -> None:
    flow = insert_flow(TENANT, "scheduledMessages", "insert_one", {"contactId": ObjectId()}, {})
    assert next(flow).method == "count_documents"
    with pytest.raises(TenantIsolationError, match="contacts"):
        flow.send(0)  # the tenant has none of the referenced ids


def test_an_upsert_checks_the_references_its_filter_would_insert() -> None:
    contact = ObjectId()
    ops = update({"contactId": contact}, {"$set": {"a": 1}}, {"upsert": True})
    assert [name for name, _, _ in checks(ops)] == ["contacts"]
    assert ops[-1].args[0] == {"contactId": contact, "tenantId": TENANT}
    eq = update({"contactId": {"$eq": contact}}, {"$set": {}}, {"upsert": True})
    assert [name for name, _, _ in checks(eq)] == ["contacts"]
    plain = update({"contactId": contact}, {"$set": {"a": 1}}, {})
    assert checks(plain) == []  # a plain filter only narrows: nothing is written from it


def test_an_upsert_checks_references_inside_and_or_and_eq() -> None:
    contact, template = ObjectId(), ObjectId()
    ops = update(
        {"$and": [{"contactId": contact}, {"$or": [{"templateId": {"$eq": template}}]}]},
        {"$set": {"attempts": 0}},
        {"upsert": True},
    )
    assert checks(ops) == [
        ("contacts", {"_id": {"$in": [contact]}, "tenantId": TENANT}, 1),
        ("templates", {"_id": {"$in": [template]}, "tenantId": TENANT}, 1),
    ]


def test_a_pipeline_may_remove_an_optional_reference_only() -> None:
    # The embedded database has no pipeline $unset, so the rule is checked here.
    assert checks(update({}, [{"$unset": "templateId"}], {})) == []
    with pytest.raises(TenantIsolationError):
        update({}, [{"$unset": ["contactId"]}], {})


def test_every_schema_collection_but_tenants_is_tenant_owned() -> None:
    assert set(tenant_collections()) == {spec.name for spec in SCHEMA if spec.tenant_owned}


@pytest.mark.parametrize("name", ["tenants", "nope"])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        TenantScope(object(), TENANT)[name]


def test_sync_and_async_surfaces_match() -> None:
    assert_async_twin(ScopedCollection, AsyncScopedCollection, plain=("find",))
    assert set(public_surface(ScopedCollection)) == {
        "find", "find_one", "count_documents", "insert_one", "insert_many", "update_one",
        "update_many", "replace_one", "find_one_and_update", "delete_one", "delete_many",
        "aggregate",
    }  # fmt: skip


# ---------------------------------------------------------------- two tenants, overlapping data


def seed(scope: TenantScope, tag: str) -> dict[str, ObjectId]:
    """Insert one document per tenant-owned collection through the scope; return the ids."""
    ids: dict[str, ObjectId] = {}

    def put(name: str, doc: dict[str, Any]) -> None:
        ids[name] = scope[name].insert_one({**doc, "createdAt": NOW}).inserted_id

    # Same names, emails and phone numbers in both tenants: only tenantId tells them apart.
    put(
        "users",
        {"clerkUserId": f"user_{tag}", "role": "user", "email": "ada@example.com"},
    )
    put(
        "contacts",
        {"firstName": "Ada", "email": "ada@example.com", "phone": "+15550001111"},
    )
    put("workflows", {"name": "Onboarding"})
    put("templates", {"name": "Welcome", "channel": "sms", "body": "Hi"})
    put(
        "workflowSteps",
        {"workflowId": ids["workflows"], "templateId": ids["templates"], "order": 0,
         "channel": "sms", "delaySeconds": 0, "useAi": False},
    )  # fmt: skip
    put(
        "scheduledMessages",
        {"contactId": ids["contacts"], "workflowStepId": ids["workflowSteps"],
         "templateId": ids["templates"], "channel": "sms", "sendAt": NOW,
         "status": "scheduled", "attempts": 0},
    )  # fmt: skip
    put(
        "messageEvents",
        {"eventType": "sent", "scheduledMessageId": ids["scheduledMessages"]},
    )
    put(
        "aiPreviews",
        {"prompt": "Draft", "status": "pending", "expiresAt": FAR_FUTURE},
    )
    put("ragDocuments", {"text": "Opening hours", "title": "FAQ"})
    put(
        "counters",
        {"metric": "messages.sent", "shard": 0, "value": 1, "updatedAt": NOW},
    )
    put(
        "aggregates",
        {
            "period": "day",
            "date": "2026-01-05",
            "metric": "sent",
            "value": 1,
            "updatedAt": NOW,
        },
    )
    return ids


#: A harmless valid change per collection, to prove writes stay inside the tenant.
CHANGE = {
    "users": {"email": "zed@example.com"},
    "contacts": {"firstName": "Zed"},
    "workflows": {"name": "Zed"},
    "workflowSteps": {"order": 5},
    "templates": {"name": "Zed"},
    "scheduledMessages": {"attempts": 3},
    "messageEvents": {"occurredAt": NOW},
    "aiPreviews": {"prompt": "Zed"},
    "ragDocuments": {"text": "Zed"},
    "counters": {"value": 9},
    "aggregates": {"value": 9},
}
COLLECTIONS = sorted(CHANGE)


def test_the_suite_covers_every_tenant_owned_collection() -> None:
    assert set(COLLECTIONS) == set(tenant_collections())


class World:
    def __init__(self, db: Any) -> None:
        init_schema(db)
        self.db = db
        self.a_id, self.b_id = ObjectId(), ObjectId()
        self.a, self.b = TenantScope(db, self.a_id), TenantScope(db, self.b_id)
        self.a_ids, self.b_ids = seed(self.a, "a"), seed(self.b, "b")

    def raw_b(self, name: str) -> list[dict[str, Any]]:
        return list(self.db[name].find({"tenantId": self.b_id}))


@pytest.fixture
def world(db: Any) -> World:
    return World(db)


@pytest.mark.parametrize("name", COLLECTIONS)
def test_reads_see_only_the_tenants_documents(world: World, name: str) -> None:
    scoped, theirs = world.a[name], world.b_ids[name]
    assert [d["_id"] for d in scoped.find()] == [world.a_ids[name]]
    assert list(scoped.find({"_id": theirs})) == []
    assert list(scoped.find({"tenantId": world.b_id})) == []
    assert list(scoped.find({"$or": [{"tenantId": world.b_id}, {"_id": theirs}]})) == []
    assert scoped.find_one({"_id": theirs}) is None
    assert scoped.find_one()["tenantId"] == world.a_id
    assert scoped.count_documents({}) == 1
    assert scoped.count_documents({"_id": theirs}) == 0
    assert list(scoped.aggregate([{"$group": {"_id": "$tenantId", "n": {"$sum": 1}}}])) == [
        {"_id": world.a_id, "n": 1}
    ]


@pytest.mark.parametrize("name", COLLECTIONS)
def test_writes_never_touch_the_other_tenant(world: World, name: str) -> None:
    scoped, theirs, before = world.a[name], world.b_ids[name], world.raw_b(name)
    change = {"$set": CHANGE[name]}
    assert scoped.update_one({"_id": theirs}, change).matched_count == 0
    assert scoped.update_many({}, change).matched_count == 1
    assert scoped.find_one_and_update({"_id": theirs}, change) is None
    mine = scoped.find_one_and_update({}, change, return_document=ReturnDocument.AFTER)
    assert mine["_id"] == world.a_ids[name]
    assert scoped.replace_one({"_id": theirs}, _without_id(mine)).matched_count == 0
    assert scoped.delete_one({"_id": theirs}).deleted_count == 0
    assert world.raw_b(name) == before
    assert scoped.delete_many({}).deleted_count == 1
    assert world.raw_b(name) == before


def _without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "tenantId")}


@pytest.mark.parametrize("name", COLLECTIONS)
def test_replacement_keeps_the_tenant(world: World, name: str) -> None:
    scoped = world.a[name]
    replacement = _without_id(scoped.find_one())
    assert scoped.replace_one({}, replacement).modified_count in (0, 1)
    assert scoped.find_one()["tenantId"] == world.a_id
    with pytest.raises(TenantIsolationError):
        scoped.replace_one({}, {**replacement, "tenantId": world.b_id})


@pytest.mark.parametrize("name", COLLECTIONS)
def test_inserts_carry_the_tenant_and_refuse_another(world: World, name: str) -> None:
    scoped = world.a[name]
    template = {**_without_id(scoped.find_one()), **UNIQUE_FIELDS.get(name, {})}
    (new_id,) = scoped.insert_many([dict(template)]).inserted_ids
    assert world.db[name].find_one({"_id": new_id})["tenantId"] == world.a_id
    with pytest.raises(TenantIsolationError):
        scoped.insert_one({**template, "tenantId": world.b_id})
    with pytest.raises(TenantIsolationError):
        scoped.insert_many([{}, {**template, "tenantId": world.b_id}])
    assert scoped.count_documents({}) == 2


#: Fields that a second document needs to differ in, for unique indexes.
UNIQUE_FIELDS = {
    "users": {"clerkUserId": "user_new"},
    "counters": {"shard": 1},
    "aggregates": {"date": "2026-01-06"},
}


TENANT_CHANGES = {
    "set-to-other-tenant": lambda other: {"$set": {"tenantId": other}},
    "unset": lambda other: {"$unset": {"tenantId": ""}},
    "rename": lambda other: {"$rename": {"tenantId": "owner"}},
}


@pytest.mark.parametrize("name", COLLECTIONS)
@pytest.mark.parametrize("make_update", TENANT_CHANGES.values(), ids=TENANT_CHANGES.keys())
def test_updates_of_tenant_id_are_refused(world: World, name: str, make_update: Any) -> None:
    scoped, update = world.a[name], make_update(world.b_id)
    for call in (scoped.update_one, scoped.update_many, scoped.find_one_and_update):
        with pytest.raises(TenantIsolationError):
            call({}, update)
    assert scoped.find_one()["tenantId"] == world.a_id
    assert scoped.count_documents({}) == 1


def _filters(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """Filters a caller might write, including ones that name the other tenant."""
    leaves = st.sampled_from(
        [
            {},
            {"email": "ada@example.com"},
            {"tenantId": world.b_id},
            {"tenantId": {"$ne": world.a_id}},
            {"tenantId": {"$in": [world.a_id, world.b_id]}},
            {"_id": world.b_ids["contacts"]},
            {"$expr": {"$ne": ["$tenantId", world.a_id]}},
        ]
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


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_filter_reaches_the_other_tenant(world: World, data: st.DataObject) -> None:
    query = data.draw(_filters(world))  # the world is only read, so sharing it is sound
    contacts = world.a["contacts"]
    assert all(d["tenantId"] == world.a_id for d in contacts.find(query))
    assert contacts.count_documents(query) <= 1


def test_an_upsert_inserts_into_the_tenant(world: World) -> None:
    contacts = world.a["contacts"]
    contacts.update_one(
        {"email": "new@example.com"},
        {"$set": {"firstName": "New"}, "$setOnInsert": {"createdAt": NOW}},
        upsert=True,
    )
    created = world.db.contacts.find_one({"email": "new@example.com"})
    assert created["tenantId"] == world.a_id
    assert world.b["contacts"].count_documents({"email": "new@example.com"}) == 0


def test_an_upsert_may_name_its_own_tenant(world: World) -> None:
    # The caller's own tenant equality is redundant: kept, an upsert would see
    # tenantId matched twice (a server refuses that with code 54).
    contacts = world.a["contacts"]
    for own in (world.a_id, {"$eq": world.a_id}):
        assert scope_filter(world.a_id, {"tenantId": own}) == {"tenantId": world.a_id}
        contacts.update_one(
            {"tenantId": own, "email": "own@example.com"},
            {"$setOnInsert": {"createdAt": NOW}},
            upsert=True,
        )
    assert [d["tenantId"] for d in world.db.contacts.find({"email": "own@example.com"})] == [
        world.a_id
    ]


def _message(world: World, **refs: Any) -> dict[str, Any]:
    doc = {"contactId": world.a_ids["contacts"], "channel": "sms", "sendAt": NOW,
           "status": "scheduled", "attempts": 0, "createdAt": NOW}  # fmt: skip
    return {**doc, **refs}


CROSS_REFERENCES = [
    ("scheduledMessages", "contactId", "contacts"),
    ("scheduledMessages", "workflowStepId", "workflowSteps"),
    ("scheduledMessages", "templateId", "templates"),
    ("workflowSteps", "workflowId", "workflows"),
    ("workflowSteps", "templateId", "templates"),
    ("messageEvents", "scheduledMessageId", "scheduledMessages"),
]


def _valid(world: World, name: str) -> dict[str, Any]:
    return _without_id(world.a[name].find_one())


@pytest.mark.parametrize(
    ("name", "field", "target"),
    CROSS_REFERENCES,
    ids=[f"{n}.{f}" for n, f, _ in CROSS_REFERENCES],
)
def test_cross_tenant_references_are_refused(
    world: World, name: str, field: str, target: str
) -> None:
    scoped, theirs, missing = world.a[name], world.b_ids[target], ObjectId()
    doc = _valid(world, name)
    for bad in (theirs, missing):
        with pytest.raises(TenantIsolationError):
            scoped.insert_one({**doc, field: bad})
        with pytest.raises(TenantIsolationError):
            scoped.insert_many([dict(doc), {**doc, field: bad}])
        with pytest.raises(TenantIsolationError):
            scoped.update_one({}, {"$set": {field: bad}})
        with pytest.raises(TenantIsolationError):
            scoped.find_one_and_update({}, {"$set": {field: bad}})
        with pytest.raises(TenantIsolationError):
            scoped.replace_one({}, {**doc, field: bad})
        with pytest.raises(TenantIsolationError):
            scoped.update_many({field: bad}, {"$set": {"createdAt": NOW}}, upsert=True)
    assert scoped.count_documents({}) == 1  # nothing was written
    scoped.insert_one({**doc, field: world.a_ids[target]})  # its own reference is fine
    assert scoped.count_documents({}) == 2


def test_a_scheduled_message_for_another_tenants_contact_is_refused(
    world: World,
) -> None:
    messages = world.a["scheduledMessages"]
    with pytest.raises(TenantIsolationError, match="contacts"):
        messages.insert_one(_message(world, contactId=world.b_ids["contacts"]))
    messages.insert_one(_message(world))
    assert messages.count_documents({}) == 2


def test_foreign_stages_are_refused_on_the_scoped_collection(world: World) -> None:
    lookup = {
        "$lookup": {
            "from": "contacts",
            "localField": "contactId",
            "foreignField": "_id",
            "as": "c",
        }
    }
    with pytest.raises(TenantIsolationError):
        world.a["scheduledMessages"].aggregate([lookup])


class _NoIO:
    """A database whose collections are None: any I/O would fail with AttributeError."""

    def __getitem__(self, name: str) -> Any:
        return None


def _stages() -> Any:
    """A one-shot iterable of stages, as a caller building a pipeline lazily passes."""
    yield {"$match": {"email": "nobody@example.com"}}
    yield {"$project": {"email": 1}}


@pytest.mark.parametrize("name", ["contacts"])
def test_aggregate_reads_a_generator_of_stages_once_and_keeps_them(world: World, name: str) -> None:
    # Formerly the stages were consumed by the foreign-stage check and then dropped,
    # so this returned the tenant's whole collection.
    assert list(world.a[name].aggregate(_stages())) == []
    assert list(world.a[name].aggregate(iter([{"$count": "n"}]))) == [{"n": 1}]
    assert list(world.a[name].aggregate(({"$project": {"_id": 0, "tenantId": 1}},))) == [
        {"tenantId": world.a_id}
    ]


def test_a_foreign_stage_in_a_generator_is_still_refused(world: World) -> None:
    stages = (s for s in [{"$match": {}}, {"$unionWith": "contacts"}])
    with pytest.raises(TenantIsolationError):
        world.a["contacts"].aggregate(stages)


@pytest.mark.parametrize(
    "pipeline",
    [{"$match": {}}, "$match", None, 5, [{"$match": {}, "$limit": 1}], [{"match": {}}], ["x"]],
    ids=["one-stage-dict", "string", "none", "int", "two-key-stage", "no-dollar", "not-a-stage"],
)
def test_a_pipeline_that_is_not_a_list_of_stages_is_refused_before_any_io(
    pipeline: Any,
) -> None:
    with pytest.raises(InvalidArgumentError):
        TenantScope(_NoIO(), TENANT)["contacts"].aggregate(pipeline)
    with pytest.raises(InvalidArgumentError):
        scope_pipeline(TENANT, pipeline)


def test_an_update_pipeline_given_as_a_generator_is_applied(world: World) -> None:
    contacts = world.a["contacts"]
    contacts.update_one({}, (s for s in [{"$set": {"firstName": "Gen"}}]))
    assert contacts.find_one()["firstName"] == "Gen"
    assert world.b["contacts"].find_one()["firstName"] == "Ada"


@pytest.mark.parametrize(
    ("method", "args"),
    [("find_one", (ObjectId(),)), ("count_documents", ("x",)), ("insert_one", ([1],)),
     ("insert_many", ({"a": 1},)), ("insert_many", ([],)), ("update_one", ({}, {"$set": 1})),
     ("replace_one", ({}, "doc"))],
    ids=["find-one-id", "count-string", "insert-list", "insert-many-dict", "insert-many-empty",
         "update-non-mapping-fields", "replace-string"],
)  # fmt: skip
def test_malformed_arguments_are_refused_by_name_before_any_io(
    method: str, args: tuple[Any, ...]
) -> None:
    with pytest.raises(InvalidArgumentError):
        getattr(TenantScope(_NoIO(), TENANT)["contacts"], method)(*args)


async def test_async_aggregate_reads_a_generator_of_stages(async_db: Any) -> None:
    await init_schema_async(async_db)
    scope = AsyncTenantScope(async_db, ObjectId())
    await scope["contacts"].insert_one({"email": "ada@example.com", "createdAt": NOW})
    assert await scope["contacts"].aggregate(_stages()) == []
    assert await scope["contacts"].aggregate(iter([{"$count": "n"}])) == [{"n": 1}]


# ---------------------------------------------------------------- async twin


async def test_async_scope_isolates_tenants(async_db: Any) -> None:
    await init_schema_async(async_db)
    a_id, b_id = ObjectId(), ObjectId()
    a, b = AsyncTenantScope(async_db, a_id), AsyncTenantScope(async_db, b_id)
    for scope in (a, b):
        await scope["contacts"].insert_many([{"email": "ada@example.com", "createdAt": NOW}])
    theirs = (await b["contacts"].find_one())["_id"]
    assert [d["tenantId"] for d in await a["contacts"].find().to_list(None)] == [a_id]
    assert await a["contacts"].find_one({"_id": theirs}) is None
    assert await a["contacts"].count_documents({}) == 1
    assert (await a["contacts"].update_many({}, {"$set": {"firstName": "A"}})).matched_count == 1
    assert (await a["contacts"].delete_one({"_id": theirs})).deleted_count == 0
    assert await a["contacts"].aggregate([{"$count": "n"}]) == [{"n": 1}]
    with pytest.raises(TenantIsolationError):
        await a["scheduledMessages"].insert_one(
            {
                "contactId": theirs,
                "channel": "sms",
                "sendAt": NOW,
                "status": "scheduled",
                "attempts": 0,
                "createdAt": NOW,
            }
        )
    with pytest.raises(TenantIsolationError):
        await a["contacts"].update_one({}, {"$set": {"tenantId": b_id}})
    assert (await a["contacts"].delete_many({})).deleted_count == 1
    assert await b["contacts"].count_documents({}) == 1
