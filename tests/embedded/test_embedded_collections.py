"""Collection options: create, collMod and the read-back, with the server's codes."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import CollectionInvalid, OperationFailure

VALIDATOR = {"$jsonSchema": {"bsonType": "object", "required": ["name"]}}
OTHER = {"$jsonSchema": {"bsonType": "object", "required": ["title"]}}


def _options(db: Any, name: str) -> dict[str, Any]:
    [info] = list(db.list_collections(filter={"name": name}))
    return dict(info["options"])


def test_create_collection_reports_the_validator_exactly_as_given(db: Any) -> None:
    coll = db.create_collection("people", validator=VALIDATOR)
    assert _options(db, "people") == {"validator": VALIDATOR}
    assert coll.options() == {"validator": VALIDATOR}


def test_explicit_level_and_action_are_reported(db: Any) -> None:
    db.create_collection(
        "people", validator=VALIDATOR, validationLevel="moderate", validationAction="warn"
    )
    assert _options(db, "people") == {
        "validator": VALIDATOR,
        "validationLevel": "moderate",
        "validationAction": "warn",
    }


def test_collection_without_options_reports_none(db: Any) -> None:
    db.create_collection("plain")
    assert db["plain"].options() == {}
    assert "plain" in db.list_collection_names()


def test_existing_collection_is_refused(db: Any) -> None:
    db.create_collection("people")
    with pytest.raises(CollectionInvalid):
        db.create_collection("people", validator=VALIDATOR)
    with pytest.raises(OperationFailure) as caught:
        db.create_collection("people", validator=VALIDATOR, check_exists=False)
    assert caught.value.code == 48


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"validationLevel": "sometimes"}, 2),
        ({"validationAction": "shout"}, 2),
        ({"validationLevel": 1}, 14),
        ({"validator": {"$jsonSchema": {"bsonType": "thing"}}}, 2),
        ({"validator": {"$jsonSchema": {"bsonType": "object", "format": "email"}}}, 9),
    ],
    ids=[
        "unknown-level",
        "unknown-action",
        "level-not-a-string",
        "unknown-bson-type",
        "format-keyword",
    ],
)
def test_invalid_options_fail_at_create_time(db: Any, options: dict[str, Any], code: int) -> None:
    with pytest.raises(OperationFailure) as caught:
        db.create_collection("bad", **options)
    assert caught.value.code == code
    assert "bad" not in db.list_collection_names()


def test_coll_mod_replaces_the_validator_in_both_command_forms(db: Any) -> None:
    db.create_collection("people", validator=VALIDATOR)
    assert db.command("collMod", "people", validator=OTHER)["ok"] == 1.0
    assert _options(db, "people")["validator"] == OTHER
    db.command({"collMod": "people", "validator": VALIDATOR, "validationAction": "warn"})
    options = _options(db, "people")
    assert (options["validator"], options["validationAction"]) == (VALIDATOR, "warn")


def test_coll_mod_of_a_missing_collection_is_namespace_not_found(db: Any) -> None:
    with pytest.raises(OperationFailure) as caught:
        db.command("collMod", "ghost", validator=VALIDATOR)
    assert caught.value.code == 26


def test_coll_mod_with_an_invalid_validator_changes_nothing(db: Any) -> None:
    db.create_collection("people", validator=VALIDATOR)
    with pytest.raises(OperationFailure) as caught:
        db.command(
            "collMod",
            "people",
            validator={"$jsonSchema": {"bsonType": "thing"}},
            validationLevel="off",
        )
    assert caught.value.code == 2
    assert _options(db, "people") == {"validator": VALIDATOR}


def test_dropping_a_collection_forgets_its_options(db: Any) -> None:
    db.create_collection("people", validator=VALIDATOR)
    db.drop_collection("people")
    db.create_collection("people")
    db["people"].insert_one({"no": "name"})
    assert db["people"].options() == {}


def test_ping_and_other_commands_still_work(db: Any) -> None:
    assert db.command("ping")["ok"] == 1.0
    # ``create`` as a raw command behaves like create_collection, options included.
    assert db.command("create", "made", validator=VALIDATOR)["ok"] == 1.0
    assert _options(db, "made") == {"validator": VALIDATOR}
    with pytest.raises(OperationFailure) as caught:
        db.command("create", "made")
    assert caught.value.code == 48


def test_embedded_list_collections_shape(db: Any, backend: str) -> None:
    if backend != "embedded":
        pytest.skip("checks the embedded reply shape; a server adds uuid and more")
    db.create_collection("people", validator=VALIDATOR)
    [info] = list(db.list_collections())
    assert info["name"] == "people" and info["type"] == "collection"
    assert info["idIndex"] == {"v": 2, "key": {"_id": 1}, "name": "_id_"}
    assert [i["name"] for i in db.list_collections(nameOnly=True)] == ["people"]
