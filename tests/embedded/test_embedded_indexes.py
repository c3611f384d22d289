"""Indexes: conflict codes, duplicate keys, partial uniqueness and TTL expiry by the clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from nsn_store.clock import ManualClock


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        ({"keys": "a", "name": "a_1"}, {"keys": "a", "name": "a_1", "unique": True}, 86),
        ({"keys": "a", "name": "idx"}, {"keys": "b", "name": "idx"}, 86),
        (
            {"keys": [("a", 1), ("b", 1)], "name": "ab"},
            {"keys": [("b", 1), ("a", 1)], "name": "ab"},
            86,
        ),
        (
            {"keys": "t", "name": "ttl", "expireAfterSeconds": 60},
            {"keys": "t", "name": "ttl", "expireAfterSeconds": 120},
            85,
        ),
        ({"keys": "a", "name": "one"}, {"keys": "a", "name": "two"}, 85),
    ],
    ids=[
        "same-name-unique-differs",
        "same-name-other-key",
        "same-name-reordered-key",
        "same-name-ttl-differs",
        "same-key-other-name",
    ],
)
def test_conflicting_index_specs_fail_with_the_server_code(
    db: Any, first: dict[str, Any], second: dict[str, Any], code: int
) -> None:
    coll = db["things"]
    coll.create_index(first.pop("keys"), **first)
    with pytest.raises(OperationFailure) as caught:
        coll.create_index(second.pop("keys"), **second)
    assert caught.value.code == code


def test_identical_index_is_a_no_op(db: Any) -> None:
    coll = db["things"]
    assert coll.create_index("a", unique=True, name="by_a") == "by_a"
    assert coll.create_index("a", unique=True, name="by_a") == "by_a"
    assert [i["name"] for i in coll.list_indexes()] == ["_id_", "by_a"]


def test_same_key_with_another_identity_may_coexist_under_another_name(db: Any) -> None:
    coll = db["things"]
    coll.create_index("a", name="plain")
    coll.create_index("a", name="unique", unique=True)
    assert {i["name"] for i in coll.list_indexes()} == {"_id_", "plain", "unique"}


def test_list_indexes_reports_ordered_keys_and_options(db: Any) -> None:
    coll = db["things"]
    partial = {"k": {"$exists": True}}
    coll.create_indexes(
        [
            IndexModel(
                [("t", ASCENDING), ("k", DESCENDING)],
                name="tk",
                unique=True,
                partialFilterExpression=partial,
            ),
            IndexModel([("at", ASCENDING)], name="ttl", expireAfterSeconds=0),
        ]
    )
    found = {i["name"]: i for i in coll.list_indexes()}
    assert list(found["tk"]["key"].items()) == [("t", 1), ("k", -1)]
    assert (found["tk"]["unique"], found["tk"]["partialFilterExpression"]) == (True, partial)
    assert found["ttl"]["expireAfterSeconds"] == 0
    assert "unique" not in found["ttl"]
    assert found["_id_"]["key"] == {"_id": 1}


def test_duplicate_key_reports_key_pattern_and_value(db: Any) -> None:
    coll = db["users"]
    coll.create_index([("tenantId", 1), ("email", 1)], unique=True, name="by_email")
    coll.insert_one({"tenantId": "t1", "email": "a@x"})
    with pytest.raises(DuplicateKeyError) as caught:
        coll.insert_one({"tenantId": "t1", "email": "a@x"})
    assert caught.value.code == 11000
    assert caught.value.details["keyPattern"] == {"tenantId": 1, "email": 1}
    assert caught.value.details["keyValue"] == {"tenantId": "t1", "email": "a@x"}
    coll.insert_one({"tenantId": "t2", "email": "a@x"})  # another tenant is fine
    assert coll.count_documents({}) == 2


def test_duplicate_id_is_a_duplicate_key(db: Any) -> None:
    db["users"].insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError) as caught:
        db["users"].insert_one({"_id": 1})
    assert caught.value.details["keyValue"] == {"_id": 1}


def test_update_into_a_duplicate_is_rejected_and_changes_nothing(db: Any) -> None:
    coll = db["users"]
    coll.create_index("email", unique=True)
    coll.insert_many([{"_id": 1, "email": "a"}, {"_id": 2, "email": "b"}])
    with pytest.raises(DuplicateKeyError):
        coll.update_one({"_id": 2}, {"$set": {"email": "a"}})
    with pytest.raises(DuplicateKeyError):
        coll.find_one_and_update({"_id": 2}, {"$set": {"email": "a"}})
    assert coll.find_one({"_id": 2}) == {"_id": 2, "email": "b"}


def test_duplicate_keys_in_bulk_are_inside_bulk_write_error(db: Any) -> None:
    coll = db["users"]
    coll.create_index("email", unique=True)
    with pytest.raises(BulkWriteError) as caught:
        coll.bulk_write(
            [InsertOne({"email": "a"}), InsertOne({"email": "a"}), InsertOne({"email": "b"})],
            ordered=False,
        )
    [error] = caught.value.details["writeErrors"]
    assert (error["index"], error["code"], error["keyValue"]) == (1, 11000, {"email": "a"})
    assert coll.count_documents({}) == 2


def test_missing_field_counts_as_null_in_a_unique_index(db: Any) -> None:
    coll = db["users"]
    coll.create_index("email", unique=True)
    coll.insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError) as caught:
        coll.insert_one({"_id": 2, "email": None})
    assert caught.value.details["keyValue"] == {"email": None}
    assert [d["_id"] for d in coll.find()] == [1]


def test_unique_partial_index_only_constrains_matching_documents(db: Any) -> None:
    coll = db["messages"]
    coll.create_index(
        [("tenantId", 1), ("idempotencyKey", 1)],
        unique=True,
        name="by_tenant_idempotencyKey",
        partialFilterExpression={"idempotencyKey": {"$exists": True}},
    )
    coll.insert_many([{"tenantId": "t"}, {"tenantId": "t"}])  # no key: not indexed
    coll.insert_one({"tenantId": "t", "idempotencyKey": "k1"})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"tenantId": "t", "idempotencyKey": "k1"})
    assert coll.count_documents({}) == 3


def test_unique_index_build_fails_on_existing_duplicates(db: Any) -> None:
    coll = db["users"]
    coll.insert_many([{"email": "a"}, {"email": "a"}])
    with pytest.raises(DuplicateKeyError):
        coll.create_index("email", unique=True)
    assert [i["name"] for i in coll.list_indexes()] == ["_id_"]


@pytest.mark.parametrize(
    ("keys", "options"),
    [
        ([("a", 1), ("b", 1)], {"expireAfterSeconds": 60}),
        ("a", {"partialFilterExpression": {"a": {"$exists": False}}}),
        ("a", {"partialFilterExpression": {"a": {"$ne": 1}}}),
    ],
    ids=["compound-ttl", "partial-exists-false", "partial-ne"],
)
def test_unsupported_index_specs_fail_with_cannot_create_index(
    db: Any, keys: Any, options: dict[str, Any]
) -> None:
    with pytest.raises(OperationFailure) as caught:
        db["things"].create_index(keys, **options)
    assert caught.value.code == 67


def test_hidden_indexes_are_refused_clearly(db: Any, backend: str) -> None:
    if backend != "embedded":
        pytest.skip("embedded limitation: a server supports hidden indexes")
    with pytest.raises(NotImplementedError):
        db["things"].create_index("a", hidden=True)


def test_coll_mod_changes_the_ttl_of_an_index(db: Any) -> None:
    db["previews"].create_index("expiresAt", name="by_expiresAt", expireAfterSeconds=0)
    reply = db.command(
        "collMod", "previews", index={"name": "by_expiresAt", "expireAfterSeconds": 60}
    )
    assert reply["expireAfterSeconds_new"] == 60
    [ttl] = [i for i in db["previews"].list_indexes() if i["name"] == "by_expiresAt"]
    assert ttl["expireAfterSeconds"] == 60


def test_ttl_expiry_follows_the_clock_and_the_monitor(
    db: Any, clock: ManualClock, ttl_monitor: Any
) -> None:
    previews = db["previews"]
    previews.create_index("expiresAt", expireAfterSeconds=0)
    now = clock.now()
    previews.insert_many(
        [
            {"_id": "soon", "expiresAt": now + timedelta(minutes=5)},
            {"_id": "later", "expiresAt": now + timedelta(hours=2)},
            {"_id": "array", "expiresAt": [now + timedelta(hours=3), now + timedelta(minutes=1)]},
            {"_id": "not-a-date", "expiresAt": "2020-01-01"},
            {"_id": "missing"},
        ]
    )
    clock.advance(minutes=10)
    assert previews.count_documents({}) == 5  # reads never expire anything
    assert ttl_monitor() == 2
    assert sorted(d["_id"] for d in previews.find()) == ["later", "missing", "not-a-date"]
    clock.advance(days=365)
    assert ttl_monitor() == 1
    assert ttl_monitor() == 0


def test_ttl_after_seconds_counts_from_the_stored_date(
    db: Any, clock: ManualClock, ttl_monitor: Any
) -> None:
    sessions = db["sessions"]
    sessions.create_index("lastSeen", expireAfterSeconds=3600)
    sessions.insert_one({"_id": 1, "lastSeen": clock.now()})
    clock.advance(minutes=59)
    assert ttl_monitor() == 0
    clock.advance(minutes=1)
    assert ttl_monitor() == 1


def test_dates_come_back_aware_utc_at_millisecond_precision(db: Any) -> None:
    moment = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=timezone.utc)
    db["events"].insert_one({"_id": 1, "at": moment})
    stored = db["events"].find_one({"_id": 1})["at"]
    assert stored == moment.replace(microsecond=123000)
    assert stored.utcoffset() == timedelta(0)
    after = db["events"].find_one_and_update(
        {"_id": 1}, {"$set": {"n": 1}}, return_document=ReturnDocument.AFTER
    )
    assert after["at"].tzinfo is not None


def test_unique_keys_are_released_by_deletes_updates_and_index_drops(db: Any) -> None:
    coll = db["users"]
    coll.create_index("email", unique=True, name="by_email")
    coll.insert_one({"_id": 1, "email": "a"})
    coll.delete_one({"_id": 1})
    coll.insert_one({"_id": 2, "email": "a"})  # the deleted key is free again
    coll.update_one({"_id": 2}, {"$set": {"email": "b"}})
    coll.insert_one({"_id": 3, "email": "a"})  # so is the updated-away key
    coll.drop_index("by_email")
    coll.insert_one({"_id": 4, "email": "a"})  # no index, no constraint
    with pytest.raises(DuplicateKeyError):
        coll.create_index("email", unique=True)
    coll.drop_indexes()
    assert [i["name"] for i in coll.list_indexes()] == ["_id_"]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete"]), st.integers(0, 4), st.integers(0, 3)
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_unique_index_agrees_with_a_model_of_it(ops: list[tuple[str, int, int]]) -> None:
    """Embedded mechanics: the incremental unique-key map never drifts from the documents."""
    from nsn_store.testing import mongomock_client

    coll = mongomock_client()["p"]["c"]
    coll.create_index("k", unique=True)
    model: dict[int, int] = {}
    for op, doc_id, k in ops:
        exists = doc_id in model
        taken = k in [v for i, v in model.items() if i != doc_id]
        refused = (op == "insert" and (exists or taken)) or (op == "update" and exists and taken)
        try:
            _apply(coll, op, doc_id, k)
        except DuplicateKeyError:
            assert refused
            continue
        assert not refused
        if op == "delete":
            model.pop(doc_id, None)
        elif op == "insert" or exists:
            model[doc_id] = k
    assert {d["_id"]: d["k"] for d in coll.find()} == model


def _apply(coll: Any, op: str, doc_id: int, k: int) -> None:
    if op == "insert":
        coll.insert_one({"_id": doc_id, "k": k})
    elif op == "update":
        coll.update_one({"_id": doc_id}, {"$set": {"k": k}})
    else:
        coll.delete_one({"_id": doc_id})


# ---------------------------------------- the ordered entries the planner reads


def _served_by(coll: Any, query: dict[str, Any]) -> list[str]:
    plan = coll.find(query).explain()["queryPlanner"]["winningPlan"]
    names = []
    while plan:
        names.append(plan.get("indexName", plan["stage"]))
        plan = plan.get("inputStage")
    return names


def test_an_index_built_on_existing_documents_serves_them_and_a_dropped_one_does_not() -> None:
    from nsn_store.testing import mongomock_client

    coll = mongomock_client()["p"]["c"]
    coll.insert_many([{"_id": n, "k": n % 3} for n in range(9)])
    coll.create_index("k", name="by_k")
    assert "by_k" in _served_by(coll, {"k": 1})
    assert [d["_id"] for d in coll.find({"k": 1})] == [1, 4, 7]
    coll.drop_index("by_k")
    assert _served_by(coll, {"k": 1}) == ["COLLSCAN"]
    coll.create_index("k", name="by_k")
    coll.drop_indexes()
    assert _served_by(coll, {"k": 1}) == ["COLLSCAN"]
    assert coll.count_documents({"k": 1}) == 3


def test_the_entries_follow_updates_replacements_deletes_drops_and_ttl_expiry() -> None:
    from nsn_store.testing import mongomock_client

    clock = ManualClock(datetime(2026, 1, 1, tzinfo=timezone.utc))
    client = mongomock_client(clock=clock)
    coll = client["p"]["c"]
    coll.create_index("at", expireAfterSeconds=60, name="ttl")
    coll.create_index([("k", 1), ("at", -1)], name="k_at")
    start = clock.now()
    coll.insert_many([{"_id": n, "k": n % 2, "at": start + timedelta(minutes=n)} for n in range(6)])
    coll.update_one({"_id": 0}, {"$set": {"k": 1}})
    coll.replace_one({"_id": 1}, {"k": 0, "at": start})
    coll.delete_one({"_id": 2})
    assert [d["_id"] for d in coll.find({"k": 1}).sort("at", -1)] == [5, 3, 0]
    assert [d["_id"] for d in coll.find({"k": 0})] == [1, 4]
    clock.advance(timedelta(minutes=4))
    assert client.run_ttl_monitor() == 3  # 0, 1 (replaced to start) and 3 are past 60 s
    assert [d["_id"] for d in coll.find({"k": {"$in": [0, 1]}}).sort("at", 1)] == [4, 5]
    assert len(coll._store.sorted_indexes["k_at"].entries) == 2
    coll.drop()
    coll.insert_one({"_id": 9, "k": 1})
    assert _served_by(coll, {"k": 1}) == ["COLLSCAN"]


# -- the TTL monitor reads its index ---------------------------------------------------

_TTL_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
_ttl_values = st.one_of(
    st.integers(-5, 5).map(lambda m: _TTL_START + timedelta(minutes=m)),
    st.lists(st.integers(-5, 5).map(lambda m: _TTL_START + timedelta(minutes=m)), max_size=3),
    st.lists(
        st.one_of(
            st.integers(-5, 5).map(lambda m: _TTL_START + timedelta(minutes=m)),
            st.integers(-9, 9),
            st.none(),
        ),
        max_size=3,
    ),
    st.integers(-9, 9),
    st.text(max_size=2),
    st.none(),
    st.just({"nested": _TTL_START}),
)


def _scan_expired(docs: list[dict[str, Any]], cutoff: datetime) -> set[int]:
    """The monitor's rule read straight off the documents: the earliest date counts."""
    expired = set()
    for doc in docs:
        value = doc.get("at")
        dates = [
            v for v in (value if isinstance(value, list) else [value]) if isinstance(v, datetime)
        ]
        if dates and min(dates) <= cutoff:
            expired.add(doc["_id"])
    return expired


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.one_of(st.just(None), _ttl_values), max_size=25),
    direction=st.sampled_from([ASCENDING, DESCENDING]),
    minutes=st.integers(0, 8),
)
def test_the_ttl_monitor_expires_what_a_scan_would(
    values: list[Any], direction: int, minutes: int
) -> None:
    from nsn_store.testing import mongomock_client

    clock = ManualClock(_TTL_START)
    client = mongomock_client(clock=clock)
    coll = client["p"]["c"]
    coll.create_index([("at", direction)], expireAfterSeconds=120)
    docs = [
        {"_id": n} if value is None else {"_id": n, "at": value} for n, value in enumerate(values)
    ]
    if docs:
        coll.insert_many(docs)
    clock.advance(timedelta(minutes=minutes))
    expected = _scan_expired(docs, _TTL_START + timedelta(minutes=minutes - 2))
    assert client.run_ttl_monitor() == len(expected)
    assert {d["_id"] for d in coll.find()} == {d["_id"] for d in docs} - expected


def test_the_ttl_monitor_leaves_documents_outside_a_partial_index_alone() -> None:
    from nsn_store.testing import mongomock_client

    clock = ManualClock(_TTL_START)
    client = mongomock_client(clock=clock)
    coll = client["p"]["c"]
    coll.create_index("at", expireAfterSeconds=0, partialFilterExpression={"kind": "temp"})
    coll.insert_many(
        [{"_id": 1, "kind": "temp", "at": _TTL_START}, {"_id": 2, "kind": "keep", "at": _TTL_START}]
    )
    clock.advance(timedelta(seconds=1))
    assert client.run_ttl_monitor() == 1  # as on a server: the index holds only _id 1
    assert [d["_id"] for d in coll.find()] == [2]


def test_the_ttl_monitors_cost_follows_what_expires_not_the_collection_size() -> None:
    import time

    from nsn_store.testing import mongomock_client

    clock = ManualClock(_TTL_START)
    client = mongomock_client(clock=clock)
    coll = client["p"]["c"]
    coll.create_index("at", expireAfterSeconds=60)
    coll.insert_many(
        [{"_id": n, "at": _TTL_START + timedelta(hours=1 + n)} for n in range(20_000)]
        + [{"_id": -1, "at": _TTL_START}]
    )
    clock.advance(timedelta(minutes=2))
    started = time.perf_counter()
    assert client.run_ttl_monitor() == 1
    for _ in range(99):
        client.run_ttl_monitor()
    per_run = (time.perf_counter() - started) / 100
    assert per_run < 0.002  # measured 7-9 us at 1k-100k stored; the old scan: 27 ms at 20k
