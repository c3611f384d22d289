"""``Database.aggregate``: pipelines that start with ``$documents``, as a 7.0 server runs them.

``$documents`` is the one collectionless first stage the embedded database
runs (MongoDB manual,
https://www.mongodb.com/docs/manual/reference/operator/aggregation/documents/);
the rest of the pipeline runs as a collection's aggregate runs it. The
behaviour tests take ``db`` and so also run against a real server when
``NSN_TEST_MONGODB_URI`` is set; the refusals are the embedded database's own.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo.errors import ConfigurationError, OperationFailure

from nsn_store.testing import async_client, mongomock_client

NOT_AN_ARRAY = (5858203, 40228)  # the server's own test accepts either (jstests documents.js)


def _code(db: Any, pipeline: list[Any], **kwargs: Any) -> int | None:
    with pytest.raises(OperationFailure) as caught:
        list(db.aggregate(pipeline, **kwargs))
    return caught.value.code


def test_a_literal_array_feeds_the_rest_of_the_pipeline(db: Any) -> None:
    docs = db.aggregate([{"$documents": [{"x": 10}, {"x": 2}, {"x": 5}]}, {"$sort": {"x": 1}}])
    assert list(docs) == [{"x": 2}, {"x": 5}, {"x": 10}]
    assert list(db.aggregate([{"$documents": [{"a": [1, 2, 3]}]}])) == [{"a": [1, 2, 3]}]
    assert list(db.aggregate([{"$documents": []}])) == []


def test_the_value_is_an_expression_evaluated_against_no_document(db: Any) -> None:
    mapped = {"$map": {"input": [0, 1, 2], "in": {"x": "$$this"}}}
    assert list(db.aggregate([{"$documents": mapped}])) == [{"x": 0}, {"x": 1}, {"x": 2}]
    computed = [{"a": {"$add": [1, 2]}, "gone": "$missing", "list": ["$missing", 1]}]
    assert list(db.aggregate([{"$documents": computed}])) == [{"a": 3, "list": [None, 1]}]
    literal = {"$literal": [{"$notAnOperator": 1}]}
    assert list(db.aggregate([{"$documents": literal}])) == [{"$notAnOperator": 1}]


def test_let_variables_are_read_in_the_value(db: Any) -> None:
    rows = [{"a": 1}, {"a": 2}]
    assert list(db.aggregate([{"$documents": "$$rows"}], let={"rows": rows})) == rows
    spelled = db.aggregate([{"$documents": [{"n": "$$n"}]}], let={"n": 7})
    assert list(spelled) == [{"n": 7}]


def test_values_come_back_as_a_server_round_trip_gives_them(db: Any) -> None:
    when = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=timezone.utc)
    [doc] = db.aggregate([{"$documents": [{"at": when, "big": 2**40, "pair": (1, 2)}]}])
    assert doc == {"at": when.replace(microsecond=123000), "big": 2**40, "pair": [1, 2]}
    assert type(doc["big"]).__name__ == "Int64"


def test_the_output_can_be_grouped_joined_and_written(db: Any) -> None:
    db.people.insert_many([{"_id": 1, "name": "Ada"}, {"_id": 2, "name": "Bo"}])
    grouped = db.aggregate(
        [{"$documents": [{"a": 1}, {"a": 2}]}, {"$group": {"_id": None, "s": {"$sum": "$a"}}}]
    )
    assert [dict(d) for d in grouped] == [{"_id": None, "s": 3}]
    joined = db.aggregate(
        [
            {"$documents": [{"who": 2}]},
            {"$lookup": {"from": "people", "localField": "who", "foreignField": "_id", "as": "p"}},
        ]
    )
    assert list(joined) == [{"who": 2, "p": [{"_id": 2, "name": "Bo"}]}]
    merged = db.aggregate([{"$documents": [{"_id": 3, "name": "Cy"}]}, {"$merge": "people"}])
    assert list(merged) == []
    assert db.people.count_documents({}) == 3
    assert list(db.aggregate([{"$documents": [{"_id": 9}]}, {"$out": "copied"}])) == []
    assert list(db.copied.find()) == [{"_id": 9}]


def test_a_merge_is_validated_like_any_write(db: Any) -> None:
    schema = {"$jsonSchema": {"required": ["name"]}}
    db.create_collection("people", validator=schema)
    assert _code(db, [{"$documents": [{"_id": 1}]}, {"$merge": "people"}]) == 121
    assert db.people.count_documents({}) == 0
    bypassed = [{"$documents": [{"_id": 1}]}, {"$merge": "people"}]
    assert list(db.aggregate(bypassed, bypassDocumentValidation=True)) == []
    assert db.people.count_documents({}) == 1


def test_a_value_that_is_not_an_array_of_objects_fails(db: Any) -> None:
    assert _code(db, [{"$documents": "string"}]) in NOT_AN_ARRAY
    assert _code(db, [{"$documents": "$field"}]) in NOT_AN_ARRAY
    assert _code(db, [{"$documents": "$$ROOT"}]) in NOT_AN_ARRAY
    assert _code(db, [{"$documents": [1, 2, 3]}]) == 40228
    assert _code(db, [{"$documents": [{"a": 1}, 2]}]) == 40228
    assert _code(db, [{"$documents": ["$missing"]}]) == 40228


def test_a_pipeline_that_needs_a_collection_fails_as_on_a_server(db: Any) -> None:
    assert _code(db, []) == 73
    assert _code(db, [{"$match": {}}]) == 73
    assert _code(db, [{"$project": {"a": 1}}, {"$documents": [{"a": 1}]}]) == 73
    assert _code(db, [{"$documents": []}, {"$documents": []}]) == 40602
    assert _code(db, [{"$documents": []}, {"$notAStage": 1}]) == 40324
    assert _code(db, [{"$documents": []}, {"$out": "a"}, {"$limit": 1}]) == 40601
    assert _code(db, [{"$documents": []}, {"$merge": "a"}, {"$limit": 1}]) == 40601
    assert _code(db, [{"$documents": [{"a": "$$undefined"}]}]) == 17276


def test_pymongo_s_own_checks_come_first(db: Any) -> None:
    with pytest.raises(TypeError):
        db.aggregate({"$documents": []})
    with pytest.raises(ConfigurationError):
        db.aggregate([{"$documents": []}], explain=True)


def test_stages_reading_the_server_s_state_are_refused_by_name() -> None:
    db = mongomock_client().admin
    for stage in ("$currentOp", "$listLocalSessions", "$changeStream", "$listSampledQueries"):
        with pytest.raises(NotImplementedError, match=stage.replace("$", r"\$")):
            db.aggregate([{stage: {}}, {"$limit": 1}])


def test_what_mongomock_would_answer_wrongly_is_refused() -> None:
    db = mongomock_client().app
    for pipeline in (
        [{"$documents": [{"t": "$$NOW"}]}],
        [{"$documents": [{}]}, {"$set": {"t": "$$CLUSTER_TIME"}}],
        [{"$documents": {"a": 1}}],  # a server reads a plain object as a projection
    ):
        with pytest.raises(NotImplementedError):
            db.aggregate(pipeline)
    with pytest.raises(NotImplementedError, match="session"):
        db.aggregate([{"$documents": []}], session=object())


async def test_the_async_face_awaits_a_cursor() -> None:
    database = async_client(mongomock_client())["app"]
    cursor = await database.aggregate([{"$documents": [{"a": 1}, {"a": 2}]}, {"$skip": 1}])
    assert await cursor.to_list() == [{"a": 2}]


# ------------------------------------------------ differential: a collection's aggregate

SCALARS = st.one_of(
    st.integers(-5, 5), st.sampled_from(["a", "b", "B", ""]), st.none(), st.booleans()
)
VALUES = st.one_of(SCALARS, st.lists(st.integers(-3, 3), max_size=3))
ROWS = st.lists(st.fixed_dictionaries({}, optional={"a": VALUES, "b": SCALARS}), max_size=8).map(
    lambda rows: [{"_id": i, **row} for i, row in enumerate(rows)]
)
STAGES = st.sampled_from(
    [
        {"$match": {"a": {"$gt": 0}}},
        {"$match": {"b": {"$in": ["a", None]}}},
        {"$sort": {"a": 1, "_id": -1}},
        {"$skip": 1},
        {"$limit": 3},
        {"$project": {"a": 1}},
        {"$addFields": {"c": {"$ifNull": ["$b", "none"]}}},
        {"$unwind": "$a"},
        {"$group": {"_id": "$b", "n": {"$sum": 1}}},
        {"$count": "n"},
    ]
)


@settings(max_examples=150, deadline=None)
@given(rows=ROWS, stages=st.lists(STAGES, max_size=4))
def test_documents_answer_as_the_same_rows_in_a_collection(
    rows: list[dict[str, Any]], stages: list[dict[str, Any]]
) -> None:
    db = mongomock_client().app
    if rows:
        db.rows.insert_many([dict(row) for row in rows])
    from_collection = list(db.rows.aggregate(stages))
    from_documents = list(db.aggregate([{"$documents": rows}, *stages]))
    if any("$group" in stage for stage in stages):  # no order without a $sort after it
        from_collection.sort(key=repr)
        from_documents.sort(key=repr)
    assert from_documents == from_collection
