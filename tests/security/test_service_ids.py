"""Ids entering the data services pass one gate (issue 9, mechanisms 1, 4 and 5).

``ShardedCounter``, ``AIPreviews``, ``RagDocuments`` and ``Aggregates`` (and
their async twins) used to put a caller's ``tenant_id`` into filters
unchanged, so an id parsed from a JSON body as ``{"$ne": None}`` changed,
deleted or read every other tenant's counters, rows, previews and passages.
Every id argument now goes through ``nsn_store.arguments.as_object_id``: the
tests check that each bad id is refused by name before any database call, and
that the attacks of the report leave the victim tenant's data untouched.

A preview's ``userId`` must be a user of the preview's tenant (mechanism 4),
and a preview of another tenant is refused exactly as a missing one is
(mechanism 5: no existence oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _support import init_schema_async
from bson import ObjectId

from nsn_store.aggregates._service import Aggregates, AsyncAggregates
from nsn_store.counters import AsyncShardedCounter, ShardedCounter
from nsn_store.errors import InvalidIdError, NotFoundError
from nsn_store.migration._runner import init_schema
from nsn_store.previews import AIPreviews, AsyncAIPreviews
from nsn_store.rag import AsyncRagDocuments, RagDocuments

METRIC = "messages.sent"
FUTURE = datetime(2100, 1, 4, 9, 0, tzinfo=timezone.utc)
DAY = datetime(2026, 1, 5, tzinfo=timezone.utc)
GOOD = ObjectId()

#: Values an untrusted body can carry where an id is expected.
BAD_IDS = [
    ({"$ne": None}, "operator-ne"),
    ({"$exists": True}, "operator-exists"),
    ([str(GOOD)], "list"),
    (None, "none"),
    (0, "number"),
    (True, "bool"),
    ("not-an-object-id", "short-string"),
    (str(GOOD) + "\n", "hex-with-newline"),
    (GOOD.binary, "twelve-bytes"),
]


class _NoIO:
    """A database whose collections fail the test on any call: proves "before any I/O"."""

    def __getitem__(self, name: str) -> Any:
        return _NoIOCollection(name)


class _NoIOCollection:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{self.name}.{method} called before the id was checked")

        return called


Call = Callable[[Any, Any], Any]

#: (id, service factory, call with the bad value in place, argument named in the error)
SYNC_CALLS: list[tuple[str, Callable[[Any], Any], Call, str]] = [
    ("counter.add", ShardedCounter, lambda s, v: s.add(v, METRIC), "tenant_id"),
    (
        "counter.add-once",
        ShardedCounter,
        lambda s, v: s.add(v, METRIC, once="k"),
        "tenant_id",
    ),
    ("counter.count", ShardedCounter, lambda s, v: s.count(v, METRIC), "tenant_id"),
    (
        "counter.estimate",
        ShardedCounter,
        lambda s, v: s.estimate(v, METRIC),
        "tenant_id",
    ),
    ("counter.reset", ShardedCounter, lambda s, v: s.reset(v, METRIC), "tenant_id"),
    (
        "counter.rebalance",
        ShardedCounter,
        lambda s, v: s.rebalance(v, METRIC),
        "tenant_id",
    ),
    (
        "counter.reconcile",
        ShardedCounter,
        lambda s, v: s.reconcile(v, METRIC, source="messageEvents"),
        "tenant_id",
    ),
    ("previews.create", AIPreviews, lambda s, v: s.create(v, "p", ttl=60), "tenant_id"),
    (
        "previews.create-user",
        AIPreviews,
        lambda s, v: s.create(GOOD, "p", ttl=60, user_id=v),
        "user_id",
    ),
    ("previews.get", AIPreviews, lambda s, v: s.get(v, GOOD), "tenant_id"),
    ("previews.get-preview", AIPreviews, lambda s, v: s.get(GOOD, v), "preview_id"),
    (
        "previews.append",
        AIPreviews,
        lambda s, v: s.append_tokens(v, GOOD, "x"),
        "tenant_id",
    ),
    (
        "previews.append-preview",
        AIPreviews,
        lambda s, v: s.append_tokens(GOOD, v, "x"),
        "preview_id",
    ),
    ("previews.complete", AIPreviews, lambda s, v: s.complete(GOOD, v), "preview_id"),
    ("previews.fail", AIPreviews, lambda s, v: s.fail(v, GOOD), "tenant_id"),
    ("previews.list", AIPreviews, lambda s, v: s.list(v), "tenant_id"),
    ("rag.add", RagDocuments, lambda s, v: s.add(v, "text"), "tenant_id"),
    ("rag.list", RagDocuments, lambda s, v: s.list(v), "tenant_id"),
    ("rag.search", RagDocuments, lambda s, v: s.search(v, "x"), "tenant_id"),
    (
        "aggregates.rollup",
        Aggregates,
        lambda s, v: s.rollup(v, "day", start=DAY, end=DAY),
        "tenant_id",
    ),
    (
        "aggregates.series",
        Aggregates,
        lambda s, v: s.series(v, "sent", "day", DAY, DAY),
        "tenant_id",
    ),
    ("aggregates.rebuild", Aggregates, lambda s, v: s.rebuild(v), "tenant_id"),
]

ASYNC_TWINS = {
    ShardedCounter: AsyncShardedCounter,
    AIPreviews: AsyncAIPreviews,
    RagDocuments: AsyncRagDocuments,
    Aggregates: AsyncAggregates,
}


@pytest.mark.parametrize("bad", [b[0] for b in BAD_IDS], ids=[b[1] for b in BAD_IDS])
@pytest.mark.parametrize(
    ("factory", "call", "argument"),
    [c[1:] for c in SYNC_CALLS],
    ids=[c[0] for c in SYNC_CALLS],
)
def test_every_id_argument_is_refused_by_name_before_any_io(
    factory: Callable[[Any], Any], call: Call, argument: str, bad: Any
) -> None:
    if bad is None and argument == "user_id":
        pytest.skip("user_id=None means a preview without a user")
    with pytest.raises(InvalidIdError) as caught:
        call(factory(_NoIO()), bad)
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    ("factory", "call", "argument"),
    [c[1:] for c in SYNC_CALLS],
    ids=[c[0] for c in SYNC_CALLS],
)
async def test_every_async_id_argument_is_refused_by_name_before_any_io(
    factory: Any, call: Call, argument: str
) -> None:
    service = ASYNC_TWINS[factory](_NoIO())
    for bad, _ in BAD_IDS:
        if bad is None and argument == "user_id":
            continue  # no user: allowed
        with pytest.raises(InvalidIdError) as caught:
            await call(service, bad)
        assert caught.value.argument == argument


def test_a_hex_string_id_is_accepted_like_the_object_id(db: Any, clock: Any) -> None:
    init_schema(db)
    counter = ShardedCounter(db, clock=clock)
    tenant = ObjectId()
    counter.add(str(tenant), METRIC, 2)
    assert counter.count(tenant, METRIC) == counter.count(str(tenant), METRIC) == 2


# ------------------------------------------- the attacks: the victim's data survives

ANY_TENANT = {"$ne": None}


@pytest.fixture
def store(db: Any, clock: Any) -> Any:
    init_schema(db)
    clock.set(FUTURE)
    return db


def test_an_operator_tenant_id_cannot_touch_another_tenants_counter(store: Any, clock: Any) -> None:
    counter = ShardedCounter(store, clock=clock, shards=1)
    victim = ObjectId()
    counter.add(victim, METRIC, 7)
    for attack in (
        lambda: counter.add(ANY_TENANT, METRIC, 100),
        lambda: counter.reset(ANY_TENANT, METRIC),
        lambda: counter.count(ANY_TENANT, METRIC),
        lambda: counter.rebalance(ANY_TENANT, METRIC),
    ):
        with pytest.raises(InvalidIdError):
            attack()
    assert counter.count(victim, METRIC) == 7


def test_an_operator_tenant_id_cannot_delete_another_tenants_aggregates(
    store: Any, clock: Any
) -> None:
    aggregates = Aggregates(store, clock=clock)
    victim = ObjectId()
    store.messageEvents.insert_one({"tenantId": victim, "eventType": "sent", "createdAt": DAY})
    aggregates.rollup(victim, "day", start=DAY, end=DAY + timedelta(days=1))
    with pytest.raises(InvalidIdError):
        aggregates.rebuild(ANY_TENANT)
    with pytest.raises(InvalidIdError):
        aggregates.series(ANY_TENANT, "sent", "day", DAY, DAY + timedelta(days=1))
    assert store.aggregates.count_documents({"tenantId": victim}) == 1
    assert aggregates.series(victim, "sent", "day", DAY, DAY + timedelta(days=1)) == [
        ("2026-01-05", 1)
    ]


def test_an_operator_id_cannot_read_another_tenants_previews(store: Any, clock: Any) -> None:
    previews = AIPreviews(store, clock=clock)
    victim = ObjectId()
    secret = previews.create(victim, "victim's prompt", ttl=600)
    for attack in (
        lambda: previews.list(ANY_TENANT),
        lambda: previews.get(ANY_TENANT, secret["_id"]),
        lambda: previews.get(victim, ANY_TENANT),
        lambda: previews.get(victim, None),  # used to drop the _id condition
        lambda: previews.append_tokens(ANY_TENANT, secret["_id"], "x"),
        lambda: previews.complete(victim, ANY_TENANT),
    ):
        with pytest.raises(InvalidIdError):
            attack()
    assert previews.get(victim, secret["_id"]) == secret


def test_an_operator_tenant_id_cannot_read_another_tenants_passages(store: Any, clock: Any) -> None:
    rag = RagDocuments(store, clock=clock)
    victim = ObjectId()
    rag.add(victim, "victim's private passage")
    with pytest.raises(InvalidIdError):
        rag.list(ANY_TENANT)
    with pytest.raises(InvalidIdError):
        rag.search(ANY_TENANT, "private")
    assert [d["text"] for d in rag.list(victim)] == ["victim's private passage"]


async def test_async_operator_ids_touch_no_other_tenants_data(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    clock.set(FUTURE)
    victim = ObjectId()
    counter = AsyncShardedCounter(async_db, clock=clock, shards=1)
    previews = AsyncAIPreviews(async_db, clock=clock)
    rag = AsyncRagDocuments(async_db, clock=clock)
    aggregates = AsyncAggregates(async_db, clock=clock)
    await counter.add(victim, METRIC, 7)
    secret = await previews.create(victim, "victim's prompt", ttl=600)
    await rag.add(victim, "victim's private passage")
    await async_db.messageEvents.insert_one(
        {"tenantId": victim, "eventType": "sent", "createdAt": DAY}
    )
    await aggregates.rollup(victim, "day", start=DAY, end=DAY + timedelta(days=1))
    for attack in (
        counter.add(ANY_TENANT, METRIC, 100),
        counter.reset(ANY_TENANT, METRIC),
        previews.list(ANY_TENANT),
        previews.get(victim, None),
        rag.search(ANY_TENANT, "private"),
        aggregates.rebuild(ANY_TENANT),
    ):
        with pytest.raises(InvalidIdError):
            await attack
    assert await counter.count(victim, METRIC) == 7
    assert await previews.get(victim, secret["_id"]) == secret
    assert len(await rag.list(victim)) == 1
    assert await async_db.aggregates.count_documents({"tenantId": victim}) == 1


# ------------------------------------------- previews: userId belongs to the tenant


def _user(db: Any, tenant: ObjectId | None, clock: Any) -> ObjectId:
    document = {
        "clerkUserId": f"user_{ObjectId()}",
        "role": "user",
        "createdAt": clock.now(),
    }
    if tenant is not None:
        document["tenantId"] = tenant
    return db.users.insert_one(document).inserted_id


def test_a_preview_user_must_be_a_user_of_the_tenant(store: Any, clock: Any) -> None:
    previews = AIPreviews(store, clock=clock)
    tenant, other = ObjectId(), ObjectId()
    own = _user(store, tenant, clock)
    refused = {
        "missing": ObjectId(),
        "foreign": _user(store, other, clock),
        "tenantless": _user(store, None, clock),
    }
    assert previews.create(tenant, "p", ttl=60, user_id=str(own))["userId"] == own
    messages = {}
    for case, user in refused.items():
        with pytest.raises(NotFoundError) as caught:
            previews.create(tenant, "p", ttl=60, user_id=user)
        messages[case] = str(caught.value).replace(str(user), "<id>")
    assert len(set(messages.values())) == 1, messages  # no oracle: one error for all
    assert store.aiPreviews.count_documents({}) == 1  # nothing written when refused


async def test_async_preview_user_must_be_a_user_of_the_tenant(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    clock.set(FUTURE)
    previews = AsyncAIPreviews(async_db, clock=clock)
    tenant, other = ObjectId(), ObjectId()
    own = (
        await async_db.users.insert_one(
            {
                "clerkUserId": "a",
                "tenantId": tenant,
                "role": "user",
                "createdAt": clock.now(),
            }
        )
    ).inserted_id
    foreign = (
        await async_db.users.insert_one(
            {
                "clerkUserId": "b",
                "tenantId": other,
                "role": "user",
                "createdAt": clock.now(),
            }
        )
    ).inserted_id
    assert (await previews.create(tenant, "p", ttl=60, user_id=own))["userId"] == own
    for user in (foreign, ObjectId()):
        with pytest.raises(NotFoundError):
            await previews.create(tenant, "p", ttl=60, user_id=user)
    assert await async_db.aiPreviews.count_documents({}) == 1


# ------------------------------------------- previews: foreign looks exactly like missing

CHANGES = ["get", "append_tokens", "complete", "fail"]


def _outcome(previews: Any, method: str, tenant: ObjectId, preview: ObjectId) -> Any:
    """Return what a caller observes: the result, or the error's type and message."""
    args = (tenant, preview, "x") if method == "append_tokens" else (tenant, preview)
    try:
        return getattr(previews, method)(*args)
    except Exception as exc:
        return type(exc), str(exc).replace(str(preview), "<id>")


@pytest.mark.parametrize("method", CHANGES)
def test_another_tenants_preview_is_refused_exactly_like_a_missing_one(
    store: Any, clock: Any, method: str
) -> None:
    previews = AIPreviews(store, clock=clock)
    tenant, owner = ObjectId(), ObjectId()
    foreign = previews.create(owner, "p", ttl=60)["_id"]
    finished = previews.create(owner, "p", ttl=60)["_id"]
    previews.complete(owner, finished)
    missing = _outcome(previews, method, tenant, ObjectId())
    assert _outcome(previews, method, tenant, foreign) == missing
    assert _outcome(previews, method, tenant, finished) == missing  # even its state hides
    assert missing is None if method == "get" else missing[0] is NotFoundError
    assert previews.get(owner, foreign)["status"] == "pending"


async def test_async_another_tenants_preview_is_refused_like_a_missing_one(
    async_db: Any, clock: Any
) -> None:
    await init_schema_async(async_db)
    clock.set(FUTURE)
    previews = AsyncAIPreviews(async_db, clock=clock)
    tenant, owner = ObjectId(), ObjectId()
    foreign = (await previews.create(owner, "p", ttl=60))["_id"]
    assert await previews.get(tenant, foreign) is None
    for method in CHANGES[1:]:
        seen = []
        for preview in (foreign, ObjectId()):
            args = (tenant, preview, "x") if method == "append_tokens" else (tenant, preview)
            with pytest.raises(NotFoundError) as caught:
                await getattr(previews, method)(*args)
            seen.append(str(caught.value).replace(str(preview), "<id>"))
        assert seen[0] == seen[1], method
    assert (await previews.get(owner, foreign))["status"] == "pending"
