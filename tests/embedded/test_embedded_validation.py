"""Validators are enforced on every write path, as a server enforces them.

Each case runs on the embedded database and, when configured, on a real
server with the same expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymongo import (
    DeleteOne,
    InsertOne,
    ReplaceOne,
    ReturnDocument,
    UpdateMany,
    UpdateOne,
)
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure, WriteError

SCHEMA = {
    "bsonType": "object",
    "required": ["name", "qty"],
    "properties": {
        "name": {"bsonType": "string", "minLength": 1},
        "qty": {"bsonType": "int", "minimum": 0},
    },
}
VALIDATOR = {"$jsonSchema": SCHEMA}


@pytest.fixture
def items(db: Any) -> Collection[dict[str, Any]]:
    """A validated collection holding one valid document, ``_id`` 1."""
    collection = db.create_collection("items", validator=VALIDATOR)
    collection.insert_one({"_id": 1, "name": "apple", "qty": 3})
    return collection  # type: ignore[no-any-return]


Write = Callable[[Collection[dict[str, Any]]], Any]

INVALID_WRITES: dict[str, Write] = {
    "insert_one": lambda c: c.insert_one({"_id": 2, "name": "pear", "qty": "three"}),
    "replace_one": lambda c: c.replace_one({"_id": 1}, {"name": "apple"}),
    "update_one": lambda c: c.update_one({"_id": 1}, {"$set": {"qty": -1}}),
    "update_many": lambda c: c.update_many({}, {"$unset": {"name": ""}}),
    "update_one-upsert": lambda c: c.update_one({"_id": 7}, {"$set": {"name": "x"}}, upsert=True),
    "replace_one-upsert": lambda c: c.replace_one({"_id": 7}, {"qty": 1}, upsert=True),
    "update_one-pipeline": lambda c: c.update_one({"_id": 1}, [{"$set": {"qty": "many"}}]),
}


@pytest.mark.parametrize("write", INVALID_WRITES.values(), ids=INVALID_WRITES.keys())
def test_single_write_of_an_invalid_document_fails_with_121_and_writes_nothing(
    items: Collection[dict[str, Any]], write: Write
) -> None:
    with pytest.raises(WriteError) as caught:
        write(items)
    assert caught.value.code == 121
    assert caught.value.details["errInfo"]["details"]["operatorName"] == "$jsonSchema"
    assert list(items.find()) == [{"_id": 1, "name": "apple", "qty": 3}]


FIND_AND_MODIFY: dict[str, Write] = {
    "find_one_and_update": lambda c: c.find_one_and_update({"_id": 1}, {"$set": {"name": ""}}),
    "find_one_and_replace": lambda c: c.find_one_and_replace({"_id": 1}, {"name": "apple"}),
    "find_one_and_update-upsert": lambda c: c.find_one_and_update(
        {"_id": 9}, {"$set": {"qty": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    ),
}


@pytest.mark.parametrize("write", FIND_AND_MODIFY.values(), ids=FIND_AND_MODIFY.keys())
def test_find_and_modify_of_an_invalid_document_fails_with_121_and_writes_nothing(
    items: Collection[dict[str, Any]], write: Write
) -> None:
    # findAndModify is a command: pymongo raises OperationFailure, errInfo in details.
    with pytest.raises(OperationFailure) as caught:
        write(items)
    assert caught.value.code == 121
    assert "schemaRulesNotSatisfied" in caught.value.details["errInfo"]["details"]
    assert list(items.find()) == [{"_id": 1, "name": "apple", "qty": 3}]


def test_errinfo_names_the_failing_document_and_each_unsatisfied_rule(
    items: Collection[dict[str, Any]],
) -> None:
    with pytest.raises(WriteError) as caught:
        items.insert_one({"_id": "bad", "name": "", "extra": True})
    info = caught.value.details["errInfo"]
    assert info["failingDocumentId"] == "bad"
    rules = {rule["operatorName"]: rule for rule in info["details"]["schemaRulesNotSatisfied"]}
    assert rules["required"]["missingProperties"] == ["qty"]
    failing = rules["properties"]["propertiesNotSatisfied"]
    assert [p["propertyName"] for p in failing] == ["name"]
    assert failing[0]["details"][0]["operatorName"] == "minLength"


def test_valid_writes_pass_through_every_path(items: Collection[dict[str, Any]]) -> None:
    items.insert_one({"_id": 2, "name": "pear", "qty": 1})
    items.insert_many([{"_id": 3, "name": "fig", "qty": 0}])
    items.update_one({"_id": 1}, {"$inc": {"qty": 1}})
    items.replace_one({"_id": 2}, {"name": "pear", "qty": 5})
    items.update_one({"_id": 4}, {"$set": {"name": "kiwi", "qty": 2}}, upsert=True)
    items.find_one_and_update({"_id": 3}, {"$set": {"qty": 9}})
    assert {d["_id"]: d["qty"] for d in items.find()} == {1: 4, 2: 5, 3: 9, 4: 2}


@pytest.mark.parametrize(
    ("ordered", "inserted", "failed_indexes"),
    [(True, [10], [1]), (False, [10, 12], [1, 3])],
    ids=["ordered-stops-at-first-error", "unordered-continues"],
)
def test_insert_many_reports_each_invalid_document_in_bulk_write_error(
    items: Collection[dict[str, Any]], ordered: bool, inserted: list[int], failed_indexes: list[int]
) -> None:
    batch = [
        {"_id": 10, "name": "a", "qty": 1},
        {"_id": 11, "name": "b"},
        {"_id": 12, "name": "c", "qty": 2},
        {"_id": 13, "qty": 3},
    ]
    with pytest.raises(BulkWriteError) as caught:
        items.insert_many(batch, ordered=ordered)
    errors = caught.value.details["writeErrors"]
    assert [e["index"] for e in errors] == failed_indexes
    assert {e["code"] for e in errors} == {121}
    assert all("errInfo" in e for e in errors)
    assert caught.value.details["nInserted"] == len(inserted)
    assert sorted(d["_id"] for d in items.find({"_id": {"$ne": 1}})) == inserted


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_bulk_write_keeps_earlier_writes_and_reports_the_invalid_ones(
    items: Collection[dict[str, Any]], ordered: bool
) -> None:
    requests = [
        InsertOne({"_id": 2, "name": "pear", "qty": 1}),
        UpdateOne({"_id": 1}, {"$set": {"qty": "lots"}}),
        UpdateMany({}, {"$inc": {"qty": 1}}),
        ReplaceOne({"_id": 5}, {"name": "plum", "qty": 1}, upsert=True),
        DeleteOne({"_id": 2}),
    ]
    with pytest.raises(BulkWriteError) as caught:
        items.bulk_write(requests, ordered=ordered)
    details = caught.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 121)]
    assert details["nInserted"] == 1
    expected = {1: 3, 2: 1} if ordered else {1: 4, 5: 1}
    assert {d["_id"]: d["qty"] for d in items.find()} == expected
    if ordered:  # stopped at the invalid update: nothing after it ran
        assert (details["upserted"], details["nRemoved"], details["nModified"]) == ([], 0, 0)
    else:
        assert details["upserted"] == [{"index": 3, "_id": 5}]
        assert details["nRemoved"] == 1


def test_bulk_write_result_counts_a_fully_valid_batch(items: Collection[dict[str, Any]]) -> None:
    result = items.bulk_write(
        [
            InsertOne({"_id": 2, "name": "pear", "qty": 1}),
            UpdateOne({"_id": 1}, {"$inc": {"qty": 1}}),
            UpdateOne({"_id": 3}, {"$set": {"name": "fig", "qty": 0}}, upsert=True),
            DeleteOne({"_id": 2}),
        ]
    )
    assert (result.inserted_count, result.matched_count, result.modified_count) == (1, 1, 1)
    assert (result.upserted_ids, result.deleted_count) == ({2: 3}, 1)


def test_bypass_document_validation_accepts_invalid_documents(
    items: Collection[dict[str, Any]],
) -> None:
    items.insert_one({"_id": 2, "name": 5}, bypass_document_validation=True)
    items.update_one({"_id": 1}, {"$set": {"qty": -5}}, bypass_document_validation=True)
    items.insert_many([{"_id": 3}], bypass_document_validation=True)
    items.bulk_write([InsertOne({"_id": 4})], bypass_document_validation=True)
    assert items.count_documents({}) == 4
    assert items.find_one({"_id": 1}) == {"_id": 1, "name": "apple", "qty": -5}
    with pytest.raises(WriteError) as caught:
        items.insert_one({"_id": 5})  # the bypass does not outlive the call
    assert caught.value.code == 121


def test_validation_action_warn_accepts_and_logs(
    db: Any, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    warned = db.create_collection("warned", validator=VALIDATOR, validationAction="warn")
    warned.insert_one({"_id": 1, "name": 7})
    assert warned.find_one({"_id": 1}) == {"_id": 1, "name": 7}
    if backend == "embedded":  # a server writes its log on its own side
        assert "Document would fail validation" in caplog.text


def test_validation_level_off_accepts_everything(db: Any) -> None:
    off = db.create_collection("off", validator=VALIDATOR, validationLevel="off")
    off.insert_one({"_id": 1})
    off.update_one({"_id": 1}, {"$set": {"qty": "x"}})
    assert off.find_one() == {"_id": 1, "qty": "x"}


def test_validation_level_moderate_lets_invalid_documents_stay_invalid(db: Any) -> None:
    coll = db.create_collection("moderate")
    coll.insert_many([{"_id": "legacy", "name": 1}, {"_id": "good", "name": "ok", "qty": 1}])
    db.command("collMod", "moderate", validator=VALIDATOR, validationLevel="moderate")
    coll.update_one({"_id": "legacy"}, {"$set": {"note": "bad to bad is ok"}})
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": "good"}, {"$set": {"qty": -1}})  # good to bad is not
    assert caught.value.code == 121
    with pytest.raises(WriteError) as refused:
        coll.insert_one({"_id": "new"})  # inserts always take the strict path
    assert refused.value.code == 121
    assert coll.find_one({"_id": "good"})["qty"] == 1
    assert coll.find_one({"_id": "legacy"})["note"] == "bad to bad is ok"


def test_strict_level_rejects_updates_of_already_invalid_documents(db: Any) -> None:
    coll = db.create_collection("strict")
    coll.insert_one({"_id": "legacy", "name": 1})
    db.command({"collMod": "strict", "validator": VALIDATOR})
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": "legacy"}, {"$set": {"note": "x"}})
    assert caught.value.code == 121
    assert coll.find_one({"_id": "legacy"}) == {"_id": "legacy", "name": 1}


def test_an_update_after_collmod_checks_the_whole_document_again(db: Any) -> None:
    # The embedded database re-checks only the changed fields of a document known
    # valid; a new validator must not inherit that knowledge.
    coll = db.create_collection("tightened", validator=VALIDATOR)
    coll.insert_one({"_id": 1, "name": "apple", "qty": 3})
    coll.update_one({"_id": 1}, {"$set": {"qty": 4}})
    longer = {**SCHEMA, "properties": {**SCHEMA["properties"], "name": {"minLength": 10}}}
    db.command("collMod", "tightened", validator={"$jsonSchema": longer})
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": 1}, {"$set": {"qty": 5}})  # only qty changes; name now fails
    assert caught.value.code == 121
    assert coll.find_one({"_id": 1})["qty"] == 4


def test_an_update_after_a_bypassed_write_checks_the_whole_document(
    items: Collection[dict[str, Any]],
) -> None:
    items.update_one({"_id": 1}, {"$set": {"qty": 4}})
    items.update_one({"_id": 1}, {"$set": {"name": 7}}, bypass_document_validation=True)
    with pytest.raises(WriteError) as caught:
        items.update_one({"_id": 1}, {"$set": {"qty": 5}})  # strict: the bypassed name fails
    assert caught.value.code == 121
    assert items.find_one({"_id": 1}) == {"_id": 1, "name": 7, "qty": 4}


def test_an_update_of_one_field_is_checked_against_the_rules_of_the_others(
    items: Collection[dict[str, Any]],
) -> None:
    with pytest.raises(WriteError):
        items.update_one({"_id": 1}, {"$unset": {"name": ""}})  # required elsewhere
    with pytest.raises(WriteError):
        items.update_one({"_id": 1}, {"$set": {"qty": -1}, "$inc": {"other": 1}})
    items.update_one({"_id": 1}, {"$inc": {"qty": 1}, "$set": {"extra": [1]}})
    assert items.find_one({"_id": 1}) == {"_id": 1, "name": "apple", "qty": 4, "extra": [1]}


def test_adding_a_validator_does_not_check_existing_documents(db: Any) -> None:
    coll = db.create_collection("existing")
    coll.insert_one({"_id": 1})
    db.command("collMod", "existing", validator=VALIDATOR)
    assert coll.count_documents({}) == 1
    coll.delete_one({"_id": 1})  # deletes are never validated
    assert coll.count_documents({}) == 0


def test_empty_validator_removes_validation(db: Any) -> None:
    coll = db.create_collection("relaxed", validator=VALIDATOR)
    with pytest.raises(WriteError):
        coll.insert_one({"_id": 0, "anything": True})  # refused while the validator is set
    db.command("collMod", "relaxed", validator={})
    coll.insert_one({"_id": 1, "anything": True})
    assert [d["_id"] for d in coll.find()] == [1]


def test_json_schema_works_in_query_filters(items: Collection[dict[str, Any]]) -> None:
    items.insert_one({"_id": 2, "name": "odd"}, bypass_document_validation=True)
    items.insert_one({"_id": 3, "name": "pear", "qty": 2})
    assert [d["_id"] for d in items.find(VALIDATOR).sort("_id", 1)] == [1, 3]
    assert [d["_id"] for d in items.find({"$nor": [VALIDATOR]})] == [2]
    assert items.count_documents({"$jsonSchema": SCHEMA, "qty": {"$gt": 2}}) == 1
    result = items.update_many({"$nor": [VALIDATOR]}, {"$set": {"qty": 0}})
    assert result.modified_count == 1
    assert items.count_documents({"$nor": [VALIDATOR]}) == 0
