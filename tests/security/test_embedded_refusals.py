"""Issue 9, mechanism 9: the embedded database refuses what a server (and pymongo) refuses.

Each case runs on the embedded database and, when NSN_TEST_MONGODB_URI is set,
on a real server, expecting the same error there. A refused write leaves the
collection exactly as it was.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable
from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo import InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DocumentTooLarge, OperationFailure, WriteError

MAX_BSON = 16 * 1024 * 1024
# 7.0 refuses an update whose result is over 16 MiB with 17419; 8.0 reports the
# same message with BSONObjectTooLarge (10334).
UPDATE_TOO_LARGE = {17419, 10334}


def _snapshot(coll: Any) -> list[dict[str, Any]]:
    return list(coll.find({}, sort=[("_id", 1)]))


# --- 16 MiB ------------------------------------------------------------------


def test_an_insert_over_the_command_limit_is_refused_before_sending(db: Any) -> None:
    coll = db["big"]
    with pytest.raises(DocumentTooLarge, match="BSON document too large"):
        coll.insert_one({"x": "a" * 17_800_000})
    assert coll.count_documents({}) == 0


def test_a_document_just_over_16_mib_is_refused_by_the_server_with_bad_value(db: Any) -> None:
    coll = db["big"]
    with pytest.raises(WriteError) as caught:
        coll.insert_one({"_id": 1, "x": "a" * MAX_BSON})
    assert caught.value.code == 2
    assert "object to insert too large" in str(caught.value)
    with pytest.raises(BulkWriteError) as bulk:
        coll.insert_many([{"_id": 2, "x": "a" * MAX_BSON}, {"_id": 3}], ordered=True)
    assert [e["code"] for e in bulk.value.details["writeErrors"]] == [2]
    assert bulk.value.details["nInserted"] == 0
    assert coll.count_documents({}) == 0


def test_a_document_of_exactly_16_mib_is_stored(db: Any) -> None:
    coll = db["big"]
    filler = MAX_BSON - len(b"\x10_id\x00" + bytes(4)) - len(b"\x02x\x00" + bytes(4) + b"\x00") - 5
    coll.insert_one({"_id": 1, "x": "a" * filler})
    assert len(coll.find_one({"_id": 1})["x"]) == filler


GROWS = [
    ("update_one", lambda c: c.update_one({"_id": 1}, {"$set": {"b": "y" * 9_000_000}})),
    ("update_many", lambda c: c.update_many({}, {"$set": {"b": "y" * 9_000_000}})),
    ("push", lambda c: c.update_one({"_id": 1}, {"$push": {"list": "y" * 9_000_000}})),
    ("replace_one", lambda c: c.replace_one({"_id": 1}, {"a": "x" * MAX_BSON})),
]


@pytest.mark.parametrize("grow", [g for _, g in GROWS], ids=[n for n, _ in GROWS])
def test_an_update_that_grows_a_document_past_16_mib_is_refused(
    db: Any, grow: Callable[[Any], Any]
) -> None:
    coll = db["big"]
    coll.insert_one({"_id": 1, "a": "x" * 9_000_000, "list": []})
    before = _snapshot(coll)
    with pytest.raises(WriteError) as caught:
        grow(coll)
    assert caught.value.code in UPDATE_TOO_LARGE
    assert "Resulting document after update is larger than 16777216" in str(caught.value)
    assert _snapshot(coll) == before


def test_find_one_and_update_and_bulk_write_refuse_growth_past_16_mib(db: Any) -> None:
    coll = db["big"]
    coll.insert_one({"_id": 1, "a": "x" * 9_000_000})
    before = _snapshot(coll)
    with pytest.raises(OperationFailure) as caught:
        coll.find_one_and_update({"_id": 1}, {"$set": {"b": "y" * 9_000_000}})
    assert caught.value.code in UPDATE_TOO_LARGE
    assert not isinstance(caught.value, WriteError)
    assert "during findAndModify" in str(caught.value)
    with pytest.raises(BulkWriteError) as bulk:
        coll.bulk_write([UpdateOne({"_id": 1}, {"$set": {"b": "y" * 9_000_000}})])
    assert bulk.value.details["writeErrors"][0]["code"] in UPDATE_TOO_LARGE
    assert _snapshot(coll) == before


def test_an_upsert_that_would_insert_over_16_mib_is_refused(db: Any) -> None:
    coll = db["big"]
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": 1}, {"$set": {"a": "x" * MAX_BSON}}, upsert=True)
    assert caught.value.code == 17420
    assert "Document to upsert is larger than 16777216" in str(caught.value)
    assert coll.count_documents({}) == 0


def test_an_update_command_over_the_limit_is_refused_before_sending(db: Any) -> None:
    coll = db["big"]
    coll.insert_one({"_id": 1})
    with pytest.raises(DocumentTooLarge, match="command document too large"):
        coll.update_one({"_id": 1}, {"$set": {"a": "x" * 17_000_000}})
    assert _snapshot(coll) == [{"_id": 1}]


# --- values BSON cannot encode -----------------------------------------------

UNENCODABLE: list[tuple[str, Any, type[Exception], str]] = [
    (
        "Decimal",
        decimal.Decimal("1.5"),
        InvalidDocument,
        "cannot encode object: Decimal('1.5'), of type: <class 'decimal.Decimal'>",
    ),
    (
        "date",
        datetime.date(2026, 1, 5),
        InvalidDocument,
        "cannot encode object: datetime.date(2026, 1, 5), of type: <class 'datetime.date'>",
    ),
    ("set", {1}, InvalidDocument, "cannot encode object: {1}, of type: <class 'set'>"),
    ("int-over-64-bits", 2**64, OverflowError, "MongoDB can only handle up to 8-byte ints"),
]

WRITES: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("insert_one", lambda c, v: c.insert_one({"v": v})),
    ("insert_many", lambda c, v: c.insert_many([{"_id": 10}, {"v": v}])),
    ("replace_one", lambda c, v: c.replace_one({"_id": 1}, {"v": v})),
    ("update_one", lambda c, v: c.update_one({"_id": 1}, {"$set": {"v": v}})),
    ("update_no_match", lambda c, v: c.update_many({"_id": 99}, {"$set": {"v": v}})),
    ("upsert", lambda c, v: c.update_one({"_id": 2}, {"$set": {"v": v}}, upsert=True)),
    ("filter", lambda c, v: c.update_one({"v": v}, {"$set": {"w": 1}})),
    ("delete_filter", lambda c, v: c.delete_many({"v": v})),
    (
        "bulk_write",
        lambda c, v: c.bulk_write(
            [InsertOne({"_id": 10}), UpdateOne({"_id": 1}, {"$set": {"v": v}})]
        ),
    ),
    ("find_one_and_update", lambda c, v: c.find_one_and_update({"_id": 1}, {"$set": {"v": v}})),
    ("find_one_and_replace", lambda c, v: c.find_one_and_replace({"_id": 1}, {"v": v})),
    (
        "find_one_and_upsert",
        lambda c, v: c.find_one_and_update(
            {"_id": 3}, {"$set": {"v": v}}, upsert=True, return_document=ReturnDocument.AFTER
        ),
    ),
]


@pytest.mark.parametrize(
    ("kind", "value", "error", "message"), UNENCODABLE, ids=[u[0] for u in UNENCODABLE]
)
@pytest.mark.parametrize("write", [w for _, w in WRITES], ids=[n for n, _ in WRITES])
def test_a_value_bson_cannot_encode_raises_what_pymongo_raises_and_writes_nothing(
    db: Any,
    write: Callable[[Any, Any], Any],
    kind: str,
    value: Any,
    error: type[Exception],
    message: str,
) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "n": 1})
    before = _snapshot(coll)
    with pytest.raises(error) as caught:
        write(coll, value)
    assert message in str(caught.value)
    assert _snapshot(coll) == before


READS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("find", lambda c, v: list(c.find({"v": v}))),
    ("find_one", lambda c, v: c.find_one({"v": {"$in": [v]}})),
    ("count_documents", lambda c, v: c.count_documents({"v": v})),
    ("aggregate", lambda c, v: list(c.aggregate([{"$match": {"v": v}}]))),
]


@pytest.mark.parametrize("read", [r for _, r in READS], ids=[n for n, _ in READS])
def test_a_read_whose_filter_bson_cannot_encode_raises_what_pymongo_raises(
    db: Any, read: Callable[[Any, Any], Any]
) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "v": 1})
    with pytest.raises(InvalidDocument, match="cannot encode object: Decimal"):
        read(coll, decimal.Decimal(1))


def test_a_document_with_a_non_string_key_is_refused_as_pymongo_refuses_it(db: Any) -> None:
    with pytest.raises(InvalidDocument, match="documents must have only string keys, key was 1"):
        db["docs"].insert_one({1: "one"})
    assert db["docs"].count_documents({}) == 0


# --- arithmetic ----------------------------------------------------------------

ARITHMETIC = [
    ("inc-true", {"$inc": {"n": True}}, "Cannot increment with non-numeric argument: {n: true}"),
    ("inc-string", {"$inc": {"n": "2"}}, 'Cannot increment with non-numeric argument: {n: "2"}'),
    ("mul-false", {"$mul": {"n": False}}, "Cannot multiply with non-numeric argument: {n: false}"),
    ("mul-null", {"$mul": {"n": None}}, "Cannot multiply with non-numeric argument: {n: null}"),
]


@pytest.mark.parametrize(
    ("update", "message"), [(u, m) for _, u, m in ARITHMETIC], ids=[i for i, _, _ in ARITHMETIC]
)
def test_arithmetic_by_a_non_number_is_refused_with_type_mismatch(
    db: Any, update: dict[str, Any], message: str
) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "n": 1})
    before = _snapshot(coll)
    for filter in ({"_id": 1}, {"_id": 99}):  # refused when the update is parsed, match or not
        with pytest.raises(WriteError) as caught:
            coll.update_one(filter, update, upsert=True)
        assert (caught.value.code, caught.value.details["errmsg"]) == (14, message)
    with pytest.raises(OperationFailure) as command:
        coll.find_one_and_update({"_id": 1}, update)
    assert command.value.code == 14
    assert not isinstance(command.value, WriteError)  # findAndModify fails as a command
    with pytest.raises(BulkWriteError) as bulk:
        coll.bulk_write([UpdateOne({"_id": 1}, update)])
    assert bulk.value.details["writeErrors"][0]["code"] == 14
    assert _snapshot(coll) == before


@pytest.mark.parametrize("operator", ["$inc", "$mul"])
@pytest.mark.parametrize(
    "stored", [True, "text", None, [1]], ids=["bool", "string", "null", "array"]
)
def test_arithmetic_on_a_non_numeric_field_is_refused_with_type_mismatch(
    db: Any, operator: str, stored: Any
) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "n": stored})
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": 1}, {operator: {"n": 2}})
    assert caught.value.code == 14
    assert f"Cannot apply {operator} to a value of non-numeric type" in str(caught.value)
    assert coll.find_one({"_id": 1}) == {"_id": 1, "n": stored}


def test_mul_multiplies_and_creates_a_missing_field_as_zero(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "n": 3, "x": 1.5})
    coll.update_one({"_id": 1}, {"$mul": {"n": 2, "x": 2, "missing": 5}})
    assert coll.find_one({"_id": 1}) == {"_id": 1, "n": 6, "x": 3.0, "missing": 0}


# --- upserts whose filter pins a path twice -------------------------------------

CONFLICTS = [
    ("and-different", {"a": 1, "$and": [{"a": 2}]}, "path 'a' is matched twice"),
    ("and-same", {"a": 1, "$and": [{"a": 1}]}, "path 'a' is matched twice"),
    ("eq-in-and", {"a": {"$eq": 1}, "$and": [{"$and": [{"a": 3}]}]}, "path 'a' is matched twice"),
    ("prefix", {"a": {"b": 1}, "a.b": 1}, "both paths 'a' and 'a.b' are matched"),
]


@pytest.mark.parametrize(
    ("filter", "message"), [(f, m) for _, f, m in CONFLICTS], ids=[i for i, _, _ in CONFLICTS]
)
def test_an_upsert_whose_filter_pins_a_path_twice_is_refused_with_not_single_value_field(
    db: Any, filter: dict[str, Any], message: str
) -> None:
    coll = db["docs"]
    with pytest.raises(WriteError) as caught:
        coll.update_one(filter, {"$set": {"b": 1}}, upsert=True)
    assert caught.value.code == 54
    assert f"cannot infer query fields to set, {message}" in str(caught.value)
    with pytest.raises(OperationFailure) as command:
        coll.find_one_and_update(filter, {"$set": {"b": 1}}, upsert=True)
    assert command.value.code == 54
    assert not isinstance(command.value, WriteError)
    with pytest.raises(BulkWriteError) as bulk:
        coll.bulk_write([UpdateOne(filter, {"$set": {"b": 1}}, upsert=True)])
    assert bulk.value.details["writeErrors"][0]["code"] == 54
    assert coll.count_documents({}) == 0


def test_an_upsert_takes_the_equalities_inside_and(db: Any) -> None:
    coll = db["docs"]
    result = coll.update_one(
        {"$and": [{"a": 5}, {"b": {"$eq": "x"}}], "c": {"$gt": 1}}, {"$set": {"d": 1}}, upsert=True
    )
    assert coll.find_one({"_id": result.upserted_id}) == {
        "_id": result.upserted_id,
        "a": 5,
        "b": "x",
        "d": 1,
    }
