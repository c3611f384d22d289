"""RAG documents: tenant-scoped add, list and literal substring search."""

from __future__ import annotations

from typing import Any

import pytest
from _support import assert_async_twin, init_schema_async
from bson import ObjectId

import nsn_store
from nsn_store.errors import (
    ConfigurationError,
    InvalidArgumentError,
)
from nsn_store.migration._runner import init_schema
from nsn_store.rag import (
    AsyncRagDocuments,
    RagDocuments,
    as_embedding,
    rag_document,
    search_filter,
)

# ---------------------------------------------------------------- pure builders


def test_optional_fields_are_absent_not_null(clock: Any) -> None:
    tenant = ObjectId()
    assert rag_document(tenant, "text", clock.now()) == {
        "tenantId": tenant,
        "text": "text",
        "createdAt": clock.now(),
    }


def test_embeddings_are_stored_as_doubles() -> None:
    vector = as_embedding([1, 0.5, -2])
    assert vector == [1.0, 0.5, -2.0] and all(type(v) is float for v in vector)


@pytest.mark.parametrize("bad", [[], ["0.1"], [True, 0.2]], ids=["empty", "strings", "bools"])
def test_bad_embeddings_are_refused(bad: list[Any]) -> None:
    with pytest.raises(ConfigurationError):
        as_embedding(bad)


def test_search_escapes_the_query_and_stays_in_the_tenant() -> None:
    tenant = ObjectId()
    query = search_filter(tenant, "50% off (today)?")
    assert query["tenantId"] == tenant
    assert query["$or"][0]["text"] == {
        "$regex": r"50%\ off\ \(today\)\?",
        "$options": "i",
    }


def test_sync_and_async_surfaces_match() -> None:
    assert_async_twin(RagDocuments, AsyncRagDocuments)


def test_both_twins_are_exported_from_the_package() -> None:
    assert nsn_store.RagDocuments is RagDocuments
    assert nsn_store.AsyncRagDocuments is AsyncRagDocuments
    assert {"RagDocuments", "AsyncRagDocuments"} <= set(nsn_store.__all__)


# ---------------------------------------------------------------- behaviour


@pytest.fixture
def rag(db: Any, clock: Any) -> RagDocuments:
    init_schema(db)
    return RagDocuments(db, clock=clock)


def test_add_stores_every_given_field(rag: RagDocuments, db: Any) -> None:
    tenant = ObjectId()
    added = rag.add(tenant, "Open 9-5", title="Hours", metadata={"lang": "en"}, embedding=[1, 2])
    stored = db.ragDocuments.find_one({"_id": added["_id"]})
    assert stored == added
    assert stored["embedding"] == [1.0, 2.0]


def test_empty_text_is_refused_before_any_write(rag: RagDocuments, db: Any) -> None:
    # text has minLength 1; it used to reach the validator, now it is checked first.
    with pytest.raises(InvalidArgumentError) as caught:
        rag.add(ObjectId(), "")
    assert caught.value.argument == "text"
    assert db.ragDocuments.count_documents({}) == 0


def test_list_is_scoped_newest_first_and_limited(rag: RagDocuments, clock: Any) -> None:
    tenant, other = ObjectId(), ObjectId()
    for text in ("one", "two", "three"):
        rag.add(tenant, text)
        rag.add(other, text)
        clock.advance(seconds=1)
    assert [d["text"] for d in rag.list(tenant)] == ["three", "two", "one"]
    assert [d["text"] for d in rag.list(tenant, limit=1)] == ["three"]
    assert all(d["tenantId"] == tenant for d in rag.list(tenant))


SEARCHES = [
    ("substring-any-case", "OPENING", ["Opening hours"]),
    ("title", "faq", ["Opening hours"]),
    ("metacharacters-literal", "50% off (today)?", ["Sale: 50% off (today)?"]),
    ("dot-is-not-a-wildcard", "o.e", []),
    ("no-match", "refund", []),
]


@pytest.mark.parametrize(
    ("query", "expected"), [s[1:] for s in SEARCHES], ids=[s[0] for s in SEARCHES]
)
def test_search_matches_text_and_title_literally(
    rag: RagDocuments, query: str, expected: list[str]
) -> None:
    tenant, other = ObjectId(), ObjectId()
    for owner in (tenant, other):  # the same passages in both tenants
        rag.add(owner, "Opening hours", title="FAQ")
        rag.add(owner, "Sale: 50% off (today)?")
        rag.add(owner, "one")
    found = rag.search(tenant, query)
    assert [d["text"] for d in found] == expected
    assert all(d["tenantId"] == tenant for d in found)


def test_search_respects_the_limit(rag: RagDocuments) -> None:
    tenant = ObjectId()
    for i in range(5):
        rag.add(tenant, f"note {i}")
    assert len(rag.search(tenant, "note", limit=3)) == 3


def test_every_operation_is_one_round_trip(rag: RagDocuments) -> None:
    tenant = ObjectId()
    for i in range(4):
        rag.add(tenant, f"note {i}")
    assert rag.trips is not None and rag.trips.count == 4
    assert len(rag.list(tenant, limit=2)) == 2  # sorted and limited by the server, one call
    assert len(rag.search(tenant, "NOTE", limit=3)) == 3
    assert rag.trips.count == 4 + 2


# ---------------------------------------------------------------- async twin


async def test_async_add_list_and_search(async_db: Any, clock: Any) -> None:
    await init_schema_async(async_db)
    rag = AsyncRagDocuments(async_db, clock=clock)
    tenant, other = ObjectId(), ObjectId()
    added = await rag.add(tenant, "Parking is free", title="Visit", embedding=[0.1, 0.2])
    await rag.add(other, "Parking is free")
    assert [d["_id"] for d in await rag.list(tenant)] == [added["_id"]]
    assert [d["_id"] for d in await rag.search(tenant, "PARKING")] == [added["_id"]]
    assert await rag.search(tenant, "valet") == []


async def test_async_list_and_search_are_newest_first_and_limited(
    async_db: Any, clock: Any
) -> None:
    await init_schema_async(async_db)
    rag = AsyncRagDocuments(async_db, clock=clock)
    tenant = ObjectId()
    for text in ("one note", "two notes", "three notes"):
        await rag.add(tenant, text)
        clock.advance(seconds=1)
    assert [d["text"] for d in await rag.list(tenant, limit=2)] == ["three notes", "two notes"]
    assert [d["text"] for d in await rag.search(tenant, "notes", limit=1)] == ["three notes"]
    assert rag.trips is not None and rag.trips.count == 3 + 2
