"""The CRUD options of PyMongo's API on the embedded database, with a server's semantics.

Each behaviour test takes ``db`` (the embedded database, and a real server when
NSN_TEST_MONGODB_URI is set); what only the embedded database does (refusing a
feature it lacks with NotImplementedError, the 7.0 refusal of an update's
``sort``) is tested on ``embedded``, a fresh embedded database.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import DeleteOne, InsertOne, ReplaceOne, ReturnDocument, UpdateMany, UpdateOne
from pymongo.errors import OperationFailure, WriteError
from pymongo.write_concern import WriteConcern

from nsn_store.embedded import _planner
from nsn_store.testing import mongomock_client

CASELESS = {"locale": "en", "strength": 2}
ACCENTLESS = {"locale": "en_US", "strength": 1}


@pytest.fixture
def embedded() -> Any:
    """A fresh embedded database (for what only the embedded database does)."""
    client = mongomock_client()
    yield client["crud"]
    client.close()


def _ids(cursor: Any) -> list[Any]:
    return [doc["_id"] for doc in cursor]


# --- bulk_write validation -------------------------------------------------------


def test_a_bulk_update_without_an_operator_is_refused_and_nothing_is_written(db: Any) -> None:
    with pytest.raises(ValueError, match="update only works with \\$ operators"):
        db.c.bulk_write([InsertOne({"_id": 1}), UpdateOne({"_id": 1}, {"x": 5})])
    assert list(db.c.find()) == []


def test_a_bulk_replacement_with_an_operator_is_refused_and_nothing_is_written(db: Any) -> None:
    with pytest.raises(ValueError, match="replacement can not include \\$ operators"):
        db.c.bulk_write([InsertOne({"_id": 1}), ReplaceOne({"_id": 1}, {"$set": {"x": 5}})])
    assert list(db.c.find()) == []


def test_bulk_writes_take_hints_collations_and_array_filters(db: Any) -> None:
    db.c.insert_many([{"_id": 1, "x": "ping", "y": [1, 5]}, {"_id": 2, "x": "PONG", "y": [7]}])
    result = db.c.bulk_write(
        [
            UpdateOne({"x": "PING"}, {"$set": {"hit": True}}, collation=CASELESS),
            UpdateMany({}, {"$inc": {"y.$[big]": 10}}, array_filters=[{"big": {"$gt": 4}}]),
            DeleteOne({"_id": 2}, hint="_id_"),
        ]
    )
    assert (result.matched_count, result.modified_count, result.deleted_count) == (3, 3, 1)
    assert list(db.c.find()) == [{"_id": 1, "x": "ping", "y": [1, 15], "hit": True}]


# --- replacements and field names ------------------------------------------------


def test_a_replacement_keeps_the_matched_id_under_an_operator_filter(db: Any) -> None:
    db.c.insert_many([{"_id": 1, "x": 1}, {"_id": 2, "x": 2}])
    db.c.replace_one({"_id": {"$gt": 1}}, {"x": 9})
    found = db.c.find_one_and_replace(
        {"_id": {"$lt": 2}}, {"x": 8}, return_document=ReturnDocument.AFTER
    )
    assert found == {"_id": 1, "x": 8}
    assert list(db.c.find(sort=[("_id", 1)])) == [{"_id": 1, "x": 8}, {"_id": 2, "x": 9}]


def test_dollar_prefixed_and_dotted_field_names_are_stored_but_not_in_an_id(db: Any) -> None:
    db.c.insert_one({"_id": 1, "$a": 1, "b.c": 2, "d": {"$e": 3}})
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "$a": 1, "b.c": 2, "d": {"$e": 3}}
    with pytest.raises(WriteError) as caught:
        db.c.insert_one({"_id": {"$a": 1}})
    assert caught.value.code == 53
    assert db.c.count_documents({}) == 1


def test_a_pipeline_update_sets_a_dollar_field_with_set_field(db: Any) -> None:
    db.c.insert_one({"_id": 1, "foo": {}})
    stage = {"$setField": {"field": {"$literal": "$a"}, "value": 1, "input": "$$ROOT"}}
    db.c.update_one({"_id": 1}, [{"$replaceWith": stage}])
    assert db.c.find_one() == {"_id": 1, "foo": {}, "$a": 1}


def test_a_pipeline_update_that_drops_the_id_keeps_it(db: Any) -> None:
    db.c.insert_one({"_id": 1, "t": {"u": 2}})
    db.c.update_one({"_id": 1}, [{"$replaceRoot": {"newRoot": "$t"}}])
    assert db.c.find_one() == {"_id": 1, "u": 2}


# --- distinct --------------------------------------------------------------------


def test_distinct_is_in_bson_order_counts_equal_numbers_once_and_keeps_booleans_apart(
    db: Any,
) -> None:
    values = [3, "b", 1, True, 1.0, "a", None, [2, 3], {"k": 1}]
    db.c.insert_many([{"x": value} for value in values] + [{"y": 0}])
    found = db.c.distinct("x")
    assert found == [None, 1, 2, 3, "a", "b", {"k": 1}, True]
    assert type(found[1]) is int  # the first of 1 and 1.0 met


# --- collation -------------------------------------------------------------------


def test_a_collation_compares_strings_without_case_or_accents(db: Any) -> None:
    db.c.insert_many(
        [{"_id": 1, "x": "ping"}, {"_id": 2, "x": "Ping"}, {"_id": 3, "x": "píng"}, {"_id": 4}]
    )
    assert _ids(db.c.find({"x": "PING"}, collation=CASELESS).sort("_id", 1)) == [1, 2]
    assert _ids(db.c.find({"x": "PING"}, collation=ACCENTLESS).sort("_id", 1)) == [1, 2, 3]
    assert db.c.count_documents({"x": {"$in": ["PÍNG"]}}, collation=CASELESS) == 1
    assert db.c.distinct("x", collation=ACCENTLESS) == ["ping"]
    assert db.c.delete_many({"x": {"$ne": "ping"}}, collation=CASELESS).deleted_count == 2
    assert _ids(db.c.find().sort("_id", 1)) == [1, 2]


def test_a_collation_sorts_letters_alphabetically(db: Any) -> None:
    db.c.insert_many([{"x": "b"}, {"x": "C"}, {"x": "a"}])
    found = db.c.find({}, {"_id": 0}, collation=CASELESS).sort("x", 1)
    assert [doc["x"] for doc in found] == ["a", "b", "C"]
    assert [doc["x"] for doc in db.c.find({}, {"_id": 0}).sort("x", 1)] == ["C", "a", "b"]


def test_a_collation_applies_to_updates_and_find_and_modify(db: Any) -> None:
    db.c.insert_many([{"_id": 1, "x": "ping"}, {"_id": 2, "x": "pINg"}])
    assert (
        db.c.update_many({"x": "PING"}, {"$set": {"y": 1}}, collation=CASELESS).modified_count == 2
    )
    found = db.c.find_one_and_delete({"x": "PiNg"}, sort=[("_id", -1)], collation=CASELESS)
    assert found == {"_id": 2, "x": "pINg", "y": 1}


@pytest.mark.parametrize(
    ("collation", "spec", "sort"),
    [
        pytest.param({"locale": "fr"}, {}, None, id="another-locale"),
        pytest.param({"locale": "en", "numericOrdering": True}, {}, None, id="numeric-ordering"),
        pytest.param(CASELESS, {"x": {"$regex": "^p"}}, None, id="regex"),
        pytest.param(CASELESS, {"$expr": {"$eq": ["$x", "ping"]}}, None, id="expr"),
        pytest.param(CASELESS, {"x": {"$gt": "a"}}, None, id="string-range"),
        pytest.param(CASELESS, {}, [("x", 1)], id="sorting-accents"),
    ],
)
def test_a_collation_the_embedded_database_lacks_is_refused(
    embedded: Any, collation: dict[str, Any], spec: dict[str, Any], sort: Any
) -> None:
    embedded.c.insert_many([{"x": "pé"}, {"x": "pa"}])
    with pytest.raises(NotImplementedError):
        list(embedded.c.find(spec, sort=sort, collation=collation))


def test_an_invalid_collation_is_the_servers_error(db: Any) -> None:
    db.c.insert_one({"x": 1})
    with pytest.raises(OperationFailure):
        list(db.c.find({}, collation={"strength": 2}))
    with pytest.raises(TypeError):
        db.c.find({}, collation="en")


# --- let -------------------------------------------------------------------------


def test_let_variables_reach_filters_pipelines_and_updates(db: Any) -> None:
    db.c.insert_many([{"_id": 1, "x": 1}, {"_id": 2, "x": 2}])
    same = {"$expr": {"$eq": ["$x", "$$wanted"]}}
    assert _ids(db.c.find(same, let={"wanted": 2})) == [2]
    pipeline = [{"$match": same}, {"$project": {"_id": 0, "label": "$$label"}}]
    assert list(db.c.aggregate(pipeline, let={"wanted": 1, "label": "one"})) == [{"label": "one"}]
    db.c.update_one(same, [{"$set": {"y": "$$label"}}], let={"wanted": 1, "label": "set"})
    assert db.c.delete_one(same, let={"wanted": 2}).deleted_count == 1
    assert list(db.c.find()) == [{"_id": 1, "x": 1, "y": "set"}]


def test_a_let_name_that_is_not_a_user_variable_is_refused(db: Any) -> None:
    with pytest.raises(OperationFailure):
        list(db.c.find({}, let={"Upper": 1}))


# --- hint ------------------------------------------------------------------------


def test_a_hint_must_name_an_index(db: Any) -> None:
    db.c.insert_one({"_id": 1, "x": 1})
    with pytest.raises(OperationFailure) as caught:
        list(db.c.find({}).hint("no_such_index"))
    assert caught.value.code == 2
    with pytest.raises(WriteError) as written:
        db.c.update_one({}, {"$set": {"x": 2}}, hint={"x": 1})
    assert written.value.code == 2
    assert db.c.find_one() == {"_id": 1, "x": 1}


def test_a_hinted_sparse_index_returns_only_the_documents_it_holds(db: Any) -> None:
    db.c.create_index("x", sparse=True, name="x_sparse")
    db.c.insert_many([{"_id": 1, "x": 1}, {"_id": 2}])
    assert _ids(db.c.find({})) == [1, 2]
    assert _ids(db.c.find({}).hint("x_sparse")) == [1]
    assert db.c.count_documents({}, hint={"x": 1}) == 1
    assert db.c.delete_many({}, hint="x_sparse").deleted_count == 1


def test_a_hint_chooses_the_plan(embedded: Any) -> None:
    embedded.c.create_index([("a", 1)])
    embedded.c.create_index([("b", 1)])
    embedded.c.insert_many([{"a": i, "b": i} for i in range(10)])
    with embedded.client._store.lock:
        plan = _planner.choose(embedded.c._store, {"a": 1, "b": 1}, [], 0, "b_1")
    assert plan.index is not None and plan.index.name == "b_1"


# --- arrayFilters and $[] ---------------------------------------------------------


def test_array_filters_update_the_elements_they_match(db: Any) -> None:
    db.c.insert_one({"_id": 1, "y": [{"b": 3}, {"b": 1}, {"b": 5}]})
    result = db.c.update_one({}, {"$set": {"y.$[big].b": 0}}, array_filters=[{"big.b": {"$gt": 2}}])
    assert result.modified_count == 1
    assert db.c.find_one()["y"] == [{"b": 0}, {"b": 1}, {"b": 0}]
    db.c.update_one({}, {"$inc": {"y.$[].b": 1}})
    assert db.c.find_one()["y"] == [{"b": 1}, {"b": 2}, {"b": 1}]
    none = db.c.update_one({}, {"$set": {"y.$[i].b": 9}}, array_filters=[{"i.b": 99}])
    assert (none.matched_count, none.modified_count) == (1, 0)


@pytest.mark.parametrize(
    ("update", "filters", "code"),
    [
        pytest.param({"$set": {"y.$[i]": 1}}, [], 2, id="identifier-without-filter"),
        pytest.param({"$set": {"y.$[i]": 1}}, [{"i": 1}, {"j": 2}], 9, id="filter-not-used"),
        pytest.param({"$set": {"y.$[i]": 1}}, [{"i": 1}, {"i": 2}], 9, id="filter-twice"),
    ],
)
def test_array_filters_are_checked_as_a_server_parses_them(
    db: Any, update: dict[str, Any], filters: list[Any], code: int
) -> None:
    db.c.insert_one({"_id": 1, "y": [1]})
    with pytest.raises(WriteError) as caught:
        db.c.update_one({}, update, array_filters=filters)
    assert caught.value.code == code


# --- comment, w:0, sort on updates -----------------------------------------------


def test_comment_is_accepted_everywhere(db: Any) -> None:
    note = {"why": "audit"}
    db.c.insert_one({"_id": 1, "x": 1}, comment=note)
    assert _ids(db.c.find({}, comment=note)) == [1]
    assert db.c.distinct("x", comment="c") == [1]
    assert db.c.count_documents({}, comment="c") == 1
    assert db.c.estimated_document_count(comment="c") == 1
    db.c.update_one({}, {"$set": {"x": 2}}, comment="c")
    db.c.bulk_write([UpdateOne({}, {"$inc": {"x": 1}})], comment="c")
    assert list(db.c.aggregate([{"$project": {"x": 1}}], comment="c")) == [{"_id": 1, "x": 3}]
    assert db.c.delete_one({}, comment="c").deleted_count == 1


def test_an_unacknowledged_write_reports_nothing(embedded: Any) -> None:
    quiet = embedded.c.with_options(write_concern=WriteConcern(w=0))
    assert quiet.insert_one({"_id": 1}).acknowledged is False
    assert quiet.insert_one({"_id": 1}).acknowledged is False  # the duplicate key is not reported
    assert quiet.find_one_and_update({"_id": 1}, {"$set": {"x": 1}}) is None
    assert quiet.delete_many({"nothing": 1}).acknowledged is False
    assert list(embedded.c.find()) == [{"_id": 1, "x": 1}]


def test_sort_on_an_update_is_refused_as_a_7_0_server_refuses_it(embedded: Any) -> None:
    embedded.c.insert_many([{"_id": 1}, {"_id": 2}])
    with pytest.raises(OperationFailure) as caught:
        embedded.c.update_one({}, {"$set": {"x": 1}}, sort={"_id": -1})
    assert caught.value.code == 40415
    assert embedded.c.count_documents({"x": 1}) == 0


# --- the cursor ------------------------------------------------------------------


def test_a_cursor_reads_its_results_once_and_serves_them_in_order(
    embedded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded.c.insert_many([{"_id": i} for i in range(500)])
    calls = []
    real = _planner.find
    monkeypatch.setattr(_planner, "find", lambda *a, **k: calls.append(1) or real(*a, **k))
    cursor = embedded.c.find({}, skip=10, limit=300)
    assert [doc["_id"] for doc in cursor] == list(range(10, 310))
    assert len(calls) == 1


def test_a_tuple_in_a_filter_is_an_array_as_pymongo_sends_it(db: Any) -> None:
    coll = db["tuples"]
    coll.insert_many([{"_id": 1, "a": [1, 2]}, {"_id": 2, "a": 1}, {"_id": 3, "a": [[1, 2]]}])
    assert [d["_id"] for d in coll.find({"a": (1, 2)}, sort=[("_id", 1)])] == [1, 3]
    assert [d["_id"] for d in coll.find({"a": {"$eq": (1, 2)}})] == [1]
    assert coll.count_documents({"a": (1, 2)}) == 2


def test_an_update_that_changes_nothing_modifies_nothing_whatever_was_stored(db: Any) -> None:
    # A DBRef-shaped sub-document decodes to a DBRef, whose BSON orders its fields itself.
    coll = db["same"]
    coll.insert_one({"_id": 1, "x": 1, "r": {"$id": 1, "$ref": "c"}})
    assert coll.update_one({"_id": 1}, {"$set": {"x": 1}}).modified_count == 0
    assert coll.update_one({"_id": 1}, {"$set": {"x": 2}}).modified_count == 1


def test_a_push_of_each_in_any_mapping_validates_every_element(db: Any) -> None:
    from collections import OrderedDict

    schema = {"bsonType": "object", "properties": {"a": {"items": {"bsonType": "int"}}}}
    coll = db.create_collection("pushed", validator={"$jsonSchema": schema})
    coll.insert_one({"_id": 1, "a": [1]})
    coll.update_one({"_id": 1}, {"$set": {"b": 1}})  # now known valid: updates re-check parts
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": 1}, {"$push": {"a": OrderedDict([("$each", ["bad", 2])])}})
    assert caught.value.code == 121
    coll.update_one({"_id": 1}, {"$push": {"a": {"$each": [2, 3], "$slice": -3}}})
    assert coll.find_one({"_id": 1})["a"] == [1, 2, 3]


def test_a_string_that_only_mentions_now_is_a_literal_in_a_pipeline_update(db: Any) -> None:
    coll = db["mentions"]
    coll.insert_one({"_id": 1})
    coll.update_one({"_id": 1}, [{"$set": {"note": "sent at $$NOW"}}])
    assert coll.find_one({"_id": 1}) == {"_id": 1, "note": "sent at $$NOW"}


def test_now_in_a_pipeline_update_is_refused_by_name(embedded: Any) -> None:
    embedded["now"].insert_one({"_id": 1})
    with pytest.raises(NotImplementedError, match=r"\$\$NOW in a pipeline update"):
        embedded["now"].update_one({"_id": 1}, [{"$set": {"at": {"$add": ["$$NOW", 1]}}}])
