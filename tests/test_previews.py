"""AI previews: streaming, transitions and expiry under a controlled clock."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _support import assert_async_twin, init_schema_async
from bson import ObjectId

from nsn_store.errors import ConfigurationError, InvalidTransitionError, NotFoundError
from nsn_store.migration._runner import init_schema
from nsn_store.previews import (
    AIPreviews,
    AsyncAIPreviews,
    append_update,
    live_filter,
    preview_document,
)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
# A real server's TTL monitor runs on wall-clock time; previews that expire in
# 2100 are never removed by it during a test, only by our own clock moving.
FUTURE = datetime(2100, 1, 4, 9, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- pure builders


def test_a_new_preview_is_pending_and_expires_after_its_ttl() -> None:
    tenant = ObjectId()
    doc = preview_document(tenant, "Draft a reminder", NOW, timedelta(minutes=5))
    assert doc == {
        "tenantId": tenant,
        "prompt": "Draft a reminder",
        "status": "pending",
        "expiresAt": NOW + timedelta(minutes=5),
        "createdAt": NOW,
    }
    assert preview_document(tenant, "p", NOW, 30, ObjectId())["expiresAt"] == NOW + timedelta(
        seconds=30
    )


@pytest.mark.parametrize("ttl", [0, -1, timedelta(0)], ids=["zero", "negative", "zero-delta"])
def test_a_ttl_must_be_positive(ttl: Any) -> None:
    with pytest.raises(ConfigurationError):
        preview_document(ObjectId(), "p", NOW, ttl)


def test_appends_are_one_atomic_pipeline_update_with_literal_text() -> None:
    (stage,) = append_update("$price", NOW)
    assert stage["$set"]["tokens"] == {
        "$concat": [{"$ifNull": ["$tokens", ""]}, {"$literal": "$price"}]
    }


def test_reads_filter_out_expired_previews() -> None:
    assert live_filter("t", NOW)["expiresAt"] == {"$gt": NOW}


def test_sync_and_async_surfaces_match() -> None:
    assert_async_twin(AIPreviews, AsyncAIPreviews)


# ---------------------------------------------------------------- behaviour


@pytest.fixture
def previews(db: Any, clock: Any) -> AIPreviews:
    init_schema(db)
    clock.set(FUTURE)
    return AIPreviews(db, clock=clock)


def test_create_then_get(previews: AIPreviews, db: Any, clock: Any) -> None:
    tenant = ObjectId()
    # The user must be one of the tenant's (issue 9): a made-up id is refused.
    user = db.users.insert_one(
        {"clerkUserId": "user_1", "tenantId": tenant, "role": "user", "createdAt": clock.now()}
    ).inserted_id
    created = previews.create(tenant, "Draft a reminder", ttl=timedelta(minutes=5), user_id=user)
    assert previews.get(tenant, created["_id"]) == created
    assert previews.get(tenant, str(created["_id"])) == created
    assert created["userId"] == user and created["expiresAt"] == clock.now() + timedelta(minutes=5)


def test_tokens_stream_in_order_and_finish(previews: AIPreviews) -> None:
    tenant = ObjectId()
    preview_id = previews.create(tenant, "p", ttl=60)["_id"]
    previews.append_tokens(tenant, preview_id, "Hello, ")
    streamed = previews.append_tokens(tenant, preview_id, "$name")
    assert (streamed["status"], streamed["tokens"]) == ("streaming", "Hello, $name")
    done = previews.complete(tenant, preview_id)
    assert (done["status"], done["tokens"]) == ("done", "Hello, $name")


def test_concurrent_appends_are_never_lost(previews: AIPreviews) -> None:
    tenant = ObjectId()
    preview_id = previews.create(tenant, "p", ttl=60)["_id"]
    start = threading.Barrier(8)

    def stream(letter: str) -> None:
        start.wait()
        for _ in range(25):
            previews.append_tokens(tenant, preview_id, letter)

    threads = [threading.Thread(target=stream, args=(chr(97 + i),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tokens = previews.get(tenant, preview_id)["tokens"]
    assert sorted(tokens) == sorted("abcdefgh" * 25)


@pytest.mark.parametrize("finish", ["complete", "fail"])
def test_a_finished_preview_accepts_no_more_changes(previews: AIPreviews, finish: str) -> None:
    tenant = ObjectId()
    preview_id = previews.create(tenant, "p", ttl=60)["_id"]
    ended = getattr(previews, finish)(tenant, preview_id)
    assert ended["status"] == {"complete": "done", "fail": "error"}[finish]
    for change in (previews.complete, previews.fail):
        with pytest.raises(InvalidTransitionError):
            change(tenant, preview_id)
    with pytest.raises(InvalidTransitionError):
        previews.append_tokens(tenant, preview_id, "late")


def test_another_tenant_cannot_read_or_change_a_preview(previews: AIPreviews) -> None:
    tenant, other = ObjectId(), ObjectId()
    preview_id = previews.create(tenant, "p", ttl=60)["_id"]
    assert previews.get(other, preview_id) is None
    assert previews.list(other) == []
    with pytest.raises(NotFoundError):
        previews.append_tokens(other, preview_id, "x")
    assert previews.get(tenant, preview_id)["status"] == "pending"


def test_list_is_newest_first_and_limited(previews: AIPreviews, clock: Any) -> None:
    tenant = ObjectId()
    ids = []
    for prompt in ("one", "two", "three"):
        ids.append(previews.create(tenant, prompt, ttl=600)["_id"])
        clock.advance(seconds=1)
    assert [p["prompt"] for p in previews.list(tenant)] == ["three", "two", "one"]
    assert [p["_id"] for p in previews.list(tenant, limit=2)] == ids[:0:-1]


def test_an_expired_preview_is_never_served(previews: AIPreviews, clock: Any) -> None:
    tenant = ObjectId()
    short = previews.create(tenant, "short", ttl=timedelta(seconds=30))["_id"]
    long = previews.create(tenant, "long", ttl=timedelta(minutes=10))["_id"]
    clock.advance(seconds=30)  # expiresAt == now counts as expired, as for the TTL monitor
    assert previews.get(tenant, short) is None
    assert [p["_id"] for p in previews.list(tenant)] == [long]
    with pytest.raises(NotFoundError):
        previews.append_tokens(tenant, short, "x")
    with pytest.raises(NotFoundError):
        previews.complete(tenant, short)


def test_the_ttl_monitor_removes_what_reads_already_hid(
    previews: AIPreviews, db: Any, clock: Any, ttl_monitor: Any
) -> None:
    tenant = ObjectId()
    expired = previews.create(tenant, "short", ttl=30)["_id"]
    alive = previews.create(tenant, "long", ttl=600)["_id"]
    clock.advance(minutes=1)
    assert previews.get(tenant, expired) is None
    assert db.aiPreviews.count_documents({"_id": expired}) == 1  # not removed yet, only hidden
    assert ttl_monitor() == 1
    assert db.aiPreviews.count_documents({}) == 1
    assert previews.get(tenant, alive)["prompt"] == "long"


def test_an_unknown_preview_is_not_found(previews: AIPreviews) -> None:
    with pytest.raises(NotFoundError):
        previews.complete(ObjectId(), ObjectId())


def _trips(previews: AIPreviews | AsyncAIPreviews) -> int:
    assert previews.trips is not None
    return previews.trips.count


def test_a_change_is_one_round_trip_and_a_refused_one_reads_once_more(
    previews: AIPreviews,
) -> None:
    tenant = ObjectId()
    preview_id = previews.create(tenant, "p", ttl=60)["_id"]
    before = _trips(previews)
    previews.append_tokens(tenant, preview_id, "a")
    previews.complete(tenant, preview_id)
    assert _trips(previews) - before == 2  # one find_one_and_update each
    with pytest.raises(InvalidTransitionError):
        previews.fail(tenant, preview_id)
    assert _trips(previews) - before == 2 + 2  # the update matched nothing: read to say why


def test_create_checks_the_user_with_one_read(previews: AIPreviews, db: Any, clock: Any) -> None:
    tenant = ObjectId()
    user = db.users.insert_one(
        {"clerkUserId": "user_2", "tenantId": tenant, "role": "user", "createdAt": clock.now()}
    ).inserted_id
    previews.create(tenant, "p", ttl=60)
    assert _trips(previews) == 1
    previews.create(tenant, "p", ttl=60, user_id=user)
    assert _trips(previews) == 1 + 2
    with pytest.raises(NotFoundError):
        previews.create(ObjectId(), "p", ttl=60, user_id=user)  # another tenant's user
    assert _trips(previews) == 1 + 2 + 1  # refused after the read, nothing inserted
    assert db.aiPreviews.count_documents({}) == 2


# ---------------------------------------------------------------- async twin


async def test_async_previews_stream_expire_and_scope(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    clock.set(FUTURE)
    previews = AsyncAIPreviews(async_db, clock=clock)
    tenant = ObjectId()
    preview_id = (await previews.create(tenant, "p", ttl=60))["_id"]
    await previews.append_tokens(tenant, preview_id, "Hi ")
    await previews.append_tokens(tenant, preview_id, "there")
    assert (await previews.complete(tenant, preview_id))["tokens"] == "Hi there"
    with pytest.raises(InvalidTransitionError):
        await previews.fail(tenant, preview_id)
    assert [p["_id"] for p in await previews.list(tenant)] == [preview_id]
    assert await previews.get(ObjectId(), preview_id) is None
    clock.advance(seconds=61)
    assert await previews.get(tenant, preview_id) is None
    assert await previews.list(tenant) == []


async def test_async_previews_refuse_like_the_sync_ones(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    clock.set(FUTURE)
    previews = AsyncAIPreviews(async_db, clock=clock)
    tenant = ObjectId()
    preview_id = (await previews.create(tenant, "p", ttl=60))["_id"]
    with pytest.raises(NotFoundError):
        await previews.append_tokens(ObjectId(), preview_id, "x")  # another tenant's
    with pytest.raises(NotFoundError):
        await previews.create(tenant, "p", ttl=60, user_id=ObjectId())  # not a user of it
    assert _trips(previews) == 1 + 2 + 1
    assert (await previews.get(tenant, preview_id))["status"] == "pending"
