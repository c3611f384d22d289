"""End-to-end ``$jsonSchema`` conformance: the case tables through a real write path.

Each case runs on the embedded database and, when NSN_TEST_MONGODB_URI is set,
on a real server with the same expectations: ``create_collection`` with the
validator, then ``insert_one`` either stores the document or raises WriteError
121 (nothing stored); invalid validators fail ``create``/``collMod`` with the
server's code; ``$jsonSchema`` in a find filter selects exactly the valid
documents.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
from _jsonschema_cases import (
    ERRINFO_CASES,
    PARSE_ERROR_CASES,
    VALIDATION_CASES,
    VALIDATOR_CASES,
)
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure, WriteError
from test_jsonschema_engine import assert_subset

Db = Database[dict[str, Any]]
CONTEXT = "Parsing of collection validator failed"


def codes(spec: int | tuple[int, ...]) -> tuple[int, ...]:
    return (spec,) if isinstance(spec, int) else spec


def validated(db: Db, validator: Mapping[str, Any]) -> Collection[dict[str, Any]]:
    """Create a collection with ``validator`` (action error, level strict)."""
    return db.create_collection("validated", validator=dict(validator))


def without_annotations(expected: Any) -> Any:
    """Drop the ``title``/``description`` echoes that servers before 5.1 do not send."""
    if isinstance(expected, Mapping):
        return {
            key: without_annotations(value)
            for key, value in expected.items()
            if key not in ("title", "description")
        }
    if isinstance(expected, list):
        return [without_annotations(item) for item in expected]
    return expected


def check_insert(
    collection: Collection[dict[str, Any]], document: dict[str, Any], valid: bool
) -> None:
    inserted = copy.deepcopy(document)  # insert_one adds _id to the dict it is given
    if valid:
        collection.insert_one(inserted)
        assert collection.count_documents({}) == 1
        return
    with pytest.raises(WriteError) as caught:
        collection.insert_one(inserted)
    assert caught.value.code == 121
    info = (caught.value.details or {})["errInfo"]
    assert info["failingDocumentId"] == inserted["_id"]
    assert collection.count_documents({}) == 0


@pytest.mark.parametrize(
    ("schema", "document", "valid"),
    [pytest.param(*c[1:], id=c[0]) for c in VALIDATION_CASES],
)
def test_insert_obeys_the_json_schema(
    db: Db, schema: dict[str, Any], document: dict[str, Any], valid: bool
) -> None:
    check_insert(validated(db, {"$jsonSchema": schema}), document, valid)


@pytest.mark.parametrize(
    ("validator", "document", "valid"),
    [pytest.param(*c[1:], id=c[0]) for c in VALIDATOR_CASES],
)
def test_insert_obeys_schema_and_query_operators(
    db: Db, validator: dict[str, Any], document: dict[str, Any], valid: bool
) -> None:
    check_insert(validated(db, validator), document, valid)


@pytest.mark.parametrize(
    ("schema", "document", "valid"),
    [pytest.param(*c[1:], id=c[0]) for c in VALIDATION_CASES],
)
def test_find_with_json_schema_selects_the_valid_documents(
    db: Db, schema: dict[str, Any], document: dict[str, Any], valid: bool
) -> None:
    plain = db["plain"]
    plain.insert_one(copy.deepcopy(document))
    assert plain.count_documents({"$jsonSchema": schema}) == int(valid)
    assert len(list(plain.find({"$jsonSchema": schema}))) == int(valid)


@pytest.mark.parametrize(
    ("validator", "code"), [pytest.param(*c[1:], id=c[0]) for c in PARSE_ERROR_CASES]
)
def test_create_refuses_an_invalid_validator(
    db: Db, validator: dict[str, Any], code: int | tuple[int, ...]
) -> None:
    with pytest.raises(OperationFailure) as caught:
        db.create_collection("refused", validator=validator)
    assert not isinstance(caught.value, WriteError)
    assert caught.value.code in codes(code)
    if "$jsonSchema" in validator:
        assert CONTEXT in str((caught.value.details or {}).get("errmsg", ""))
    assert "refused" not in db.list_collection_names()


@pytest.mark.parametrize(
    ("validator", "code"), [pytest.param(*c[1:], id=c[0]) for c in PARSE_ERROR_CASES]
)
def test_collmod_refuses_an_invalid_validator(
    db: Db, validator: dict[str, Any], code: int | tuple[int, ...]
) -> None:
    db.create_collection("existing")
    with pytest.raises(OperationFailure) as caught:
        db.command("collMod", "existing", validator=validator)
    assert caught.value.code in codes(code)
    assert db["existing"].options() == {}  # the collMod changed nothing
    db["existing"].insert_one({"anything": 1})  # the old (absent) validator still rules
    assert db["existing"].count_documents({}) == 1


JSON_SCHEMA_PARSE_CASES = [c for c in PARSE_ERROR_CASES if set(c[1]) == {"$jsonSchema"}]


@pytest.mark.parametrize(
    ("validator", "code"),
    [pytest.param(*c[1:], id=c[0]) for c in JSON_SCHEMA_PARSE_CASES],
)
def test_find_refuses_an_invalid_json_schema_without_validator_context(
    db: Db, validator: dict[str, Any], code: int | tuple[int, ...]
) -> None:
    db["plain"].insert_one({"a": 1})
    with pytest.raises(OperationFailure) as caught:
        list(db["plain"].find(validator))
    assert caught.value.code in codes(code) + (224,) * ("encrypt" in str(validator))
    assert CONTEXT not in str((caught.value.details or {}).get("errmsg", ""))


@pytest.mark.parametrize(
    ("schema", "document", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in ERRINFO_CASES],
)
def test_write_error_carries_server_shaped_errinfo(
    db: Db,
    backend: str,
    schema: dict[str, Any],
    document: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    if backend == "server" and tuple(db.client.server_info()["versionArray"][:2]) < (5, 1):
        expected = without_annotations(expected)  # title/description are echoed since 5.1
    collection = validated(db, {"$jsonSchema": schema})
    inserted = copy.deepcopy(document)
    with pytest.raises(WriteError) as caught:
        collection.insert_one(inserted)
    info = (caught.value.details or {})["errInfo"]
    assert info["failingDocumentId"] == inserted["_id"]
    assert_subset(expected, info["details"])
