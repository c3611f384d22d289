"""Atomic operations across threads, the async wrapper, and the public test helpers."""

from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymongo import ReturnDocument
from pymongo.errors import WriteError

from nsn_store.clock import ManualClock, SystemClock

# The plugin's fixtures, imported so this file works whether or not the
# package (and so its pytest11 entry point) is installed.

CLAIMERS = 8
JOBS = 1000


def _claim_all(db: Any, worker: str) -> list[Any]:
    claimed = []
    while True:
        doc = db["jobs"].find_one_and_update(
            {"status": "new"},
            {"$set": {"status": "claimed", "worker": worker}},
            sort=[("_id", 1)],
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return claimed
        claimed.append(doc["_id"])


@pytest.mark.slow
def test_eight_threads_claim_every_document_exactly_once(db: Any) -> None:
    db["jobs"].insert_many([{"_id": i, "status": "new"} for i in range(JOBS)])
    start = threading.Barrier(CLAIMERS)

    def claimer(worker: str) -> list[Any]:
        start.wait()
        return _claim_all(db, worker)

    with ThreadPoolExecutor(CLAIMERS) as pool:
        batches = list(pool.map(claimer, [f"w{n}" for n in range(CLAIMERS)]))
    claimed = [doc_id for batch in batches for doc_id in batch]
    assert sorted(claimed) == list(range(JOBS))
    assert db["jobs"].count_documents({"status": "claimed"}) == JOBS
    for worker, batch in zip((f"w{n}" for n in range(CLAIMERS)), batches, strict=False):
        assert db["jobs"].count_documents({"worker": worker}) == len(batch)


def test_concurrent_increments_and_reads_lose_nothing(db: Any) -> None:
    db["counters"].insert_one({"_id": "c", "n": 0})
    db["log"].insert_many([{"i": i} for i in range(200)])

    def work(_: int) -> None:
        for _ in range(50):
            db["counters"].update_one({"_id": "c"}, {"$inc": {"n": 1}})
            db["log"].insert_one({"i": -1})
            list(db["log"].find({"i": {"$lt": 10}}))  # reads while others write

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert db["counters"].find_one({"_id": "c"})["n"] == 200
    assert db["log"].count_documents({}) == 400


def test_id_lookups_agree_with_scans(db: Any) -> None:
    coll = db["docs"]
    coll.insert_many([{"_id": i, "even": i % 2 == 0} for i in range(50)])
    assert coll.find_one({"_id": 7}) == {"_id": 7, "even": False}
    assert coll.find_one({"_id": 7, "even": True}) is None
    assert [d["_id"] for d in coll.find({"_id": {"$in": [9, 3, 3, 99]}})] == [3, 9]
    assert coll.count_documents({"$and": [{"_id": {"$in": [2, 3, 4]}}, {"even": True}]}) == 2
    assert coll.update_many({"_id": {"$in": [1, 2]}}, {"$set": {"x": 1}}).modified_count == 2
    assert coll.delete_one({"_id": {"$eq": 1}}).deleted_count == 1
    assert coll.find_one({"_id": 1}) is None
    assert coll.count_documents({"_id": {"$gte": 45}}) == 5


def test_current_date_uses_the_client_clock(db: Any, backend: str, clock: ManualClock) -> None:
    if backend != "embedded":
        pytest.skip("a server's $currentDate is its own wall clock")
    db["t"].insert_one({"_id": 1})
    db["t"].update_one({"_id": 1}, {"$currentDate": {"touched": True}})
    assert db["t"].find_one({"_id": 1})["touched"] == clock.now()


def test_now_in_pipeline_updates_is_refused_clearly(db: Any, backend: str) -> None:
    if backend != "embedded":
        pytest.skip("embedded limitation: a server evaluates $$NOW")
    db["t"].insert_one({"_id": 1})
    with pytest.raises(NotImplementedError, match="NOW"):
        db["t"].update_one({"_id": 1}, [{"$set": {"at": "$$NOW"}}])


async def test_async_wrapper_runs_on_the_same_rules(async_db: Any) -> None:
    validator = {"$jsonSchema": {"bsonType": "object", "required": ["status"]}}
    jobs = await async_db.create_collection("jobs", validator=validator)
    await jobs.insert_many([{"_id": i, "status": "new"} for i in range(3)])
    listed = await (await async_db.list_collections()).to_list(None)
    assert [info["options"]["validator"] for info in listed] == [validator]
    claimed = await jobs.find_one_and_update(
        {"status": "new"},
        {"$set": {"status": "claimed"}},
        sort=[("_id", 1)],
        return_document=ReturnDocument.AFTER,
    )
    assert claimed == {"_id": 0, "status": "claimed"}
    assert (
        await jobs.update_many({"status": "new"}, {"$set": {"status": "done"}})
    ).modified_count == 2
    assert len(await jobs.find({"status": "done"}).to_list(None)) == 2
    # PyMongo's async aggregate() is a coroutine; Motor's and mongomock-motor's return a cursor.
    cursor = jobs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
    groups = await (await cursor if inspect.isawaitable(cursor) else cursor).to_list(None)
    assert {g["_id"]: g["n"] for g in groups} == {"claimed": 1, "done": 2}
    assert (await async_db.command("ping"))["ok"] == 1.0
    await async_db.command("collMod", "jobs", validationAction="error")
    with pytest.raises(WriteError) as caught:
        await jobs.insert_one({"_id": 9})
    assert caught.value.code == 121


def test_mongomock_client_gives_isolated_servers() -> None:
    from nsn_store.testing import mongomock_client

    first, second = mongomock_client(), mongomock_client(clock=ManualClock())
    first["db"]["c"].insert_one({"_id": 1})
    assert second["db"]["c"].count_documents({}) == 0
    assert isinstance(first.clock, SystemClock)
    assert first["db"]["c"].find_one({"_id": 1}) == {"_id": 1}


def test_plugin_fixtures(nsn_db: Any, nsn_client: Any, nsn_clock: ManualClock) -> None:
    nsn_db["previews"].create_index("expiresAt", expireAfterSeconds=0)
    nsn_db["previews"].insert_one({"expiresAt": nsn_clock.now()})
    nsn_clock.advance(seconds=1)
    assert nsn_client.run_ttl_monitor() == 1


async def test_plugin_async_fixture(nsn_async_db: Any, nsn_db: Any) -> None:
    await nsn_async_db["c"].insert_one({"_id": 1})
    assert nsn_db["c"].find_one({"_id": 1}) == {"_id": 1}


def test_importing_the_plugin_does_not_import_the_embedded_database() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nsn_store.testing._plugin; "
        "print(any(m.startswith(('mongomock', 'nsn_store.embedded')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
