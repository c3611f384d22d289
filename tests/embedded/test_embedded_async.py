"""The async embedded client: PyMongo's ``AsyncMongoClient`` surface without Motor.

``pip install nsn-store`` (no test extra) must give working async paths, so
the async face of the embedded database may import neither Motor nor
mongomock-motor; these tests check that in a fresh interpreter, and check
the surface the library and the README use against PyMongo's own classes.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from nsn_store.clock import ManualClock
from nsn_store.testing import async_client, mongomock_client

USED_COLLECTION_COROUTINES = [
    "aggregate",
    "bulk_write",
    "count_documents",
    "create_index",
    "create_indexes",
    "delete_many",
    "delete_one",
    "distinct",
    "drop",
    "drop_index",
    "estimated_document_count",
    "find_one",
    "find_one_and_delete",
    "find_one_and_replace",
    "find_one_and_update",
    "index_information",
    "insert_many",
    "insert_one",
    "list_indexes",
    "options",
    "replace_one",
    "update_many",
    "update_one",
]
USED_DATABASE_COROUTINES = [
    "command",
    "create_collection",
    "drop_collection",
    "list_collection_names",
    "list_collections",
]


def test_the_async_path_imports_neither_motor_nor_mongomock_motor() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from nsn_store import AsyncScheduler
        from nsn_store.testing import async_client, mongomock_client

        async def main():
            db = async_client(mongomock_client())["t"]
            await db.items.insert_one({"a": 1})
            assert [d["a"] async for d in db.items.find()] == [1]
            AsyncScheduler(db)

        asyncio.run(main())
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in {"motor", "mongomock_motor"})
        print(",".join(leaked))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("name", USED_COLLECTION_COROUTINES)
def test_collection_methods_are_coroutines_where_pymongo_has_coroutines(name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(AsyncCollection, name))
    collection = async_client(mongomock_client())["t"]["items"]
    assert inspect.iscoroutinefunction(getattr(collection, name))


@pytest.mark.parametrize("name", USED_DATABASE_COROUTINES)
def test_database_methods_are_coroutines_where_pymongo_has_coroutines(name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(AsyncDatabase, name))
    database = async_client(mongomock_client())["t"]
    assert inspect.iscoroutinefunction(getattr(database, name))


async def test_find_returns_a_cursor_without_await_and_chains() -> None:
    db = async_client(mongomock_client())["t"]
    await db.items.insert_many([{"n": n} for n in range(5)])
    cursor = db.items.find({}, {"_id": 0}).sort("n", -1).skip(1).limit(2)
    assert await cursor.to_list(None) == [{"n": 3}, {"n": 2}]
    assert await db.items.find().to_list(2) == (await db.items.find().to_list(None))[:2]


async def test_aggregate_and_list_indexes_are_awaited_for_a_cursor() -> None:
    db = async_client(mongomock_client())["t"]
    await db.items.insert_many([{"g": "a"}, {"g": "a"}, {"g": "b"}])
    await db.items.create_index("g", name="by_g")
    cursor = await db.items.aggregate(
        [{"$group": {"_id": "$g", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    )
    assert await cursor.to_list(None) == [{"_id": "a", "n": 2}, {"_id": "b", "n": 1}]
    names = [index["name"] async for index in await db.items.list_indexes()]
    assert names == ["_id_", "by_g"]


async def test_sync_and_async_share_one_store_and_clock() -> None:
    clock = ManualClock()
    sync = mongomock_client(clock=clock)
    adb = async_client(sync)["t"]
    await adb.items.insert_one({"_id": 1})
    assert sync["t"]["items"].find_one({"_id": 1}) == {"_id": 1}
    created = await adb.create_collection("other")
    assert created.name == "other"
    assert "other" in await adb.list_collection_names()


async def test_change_streams_are_served() -> None:
    db = async_client(mongomock_client())["t"]
    async with await db.items.watch(max_await_time_ms=0) as stream:
        await db.items.insert_one({"_id": 1})
        assert (await stream.try_next())["documentKey"] == {"_id": 1}
