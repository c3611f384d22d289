"""Pure comparison of declared specs with reported state (no database)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsn_store.migration._diff import (
    CREATE_COLLECTION,
    CREATE_INDEX,
    INDEX_CONFLICT,
    UPDATE_VALIDATOR,
    CollectionState,
    collection_status,
    index_key,
    normalise_index,
    plan_collection,
)
from nsn_store.schema._registry import SCHEMA

CONTACTS = SCHEMA["contacts"]


def _server_indexes(spec: Any) -> list[dict[str, Any]]:
    """The index documents a server reports for ``spec``, with its bookkeeping fields."""
    docs: list[dict[str, Any]] = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
    for index in spec.indexes:
        docs.append({"v": 2, "background": False, "ns": "db.c", **index.document()})
    return docs


def _state(spec: Any, **changes: Any) -> CollectionState:
    base = {
        "name": spec.name,
        "exists": True,
        "options": spec.create_options(),
        "indexes": _server_indexes(spec),
    }
    return CollectionState(**{**base, **changes})


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        ({"key": {"a": 1}, "v": 2, "ns": "x.y", "background": True}, {"key": {"a": 1}}, True),
        ({"key": {"a": 1}, "unique": False}, {"key": {"a": 1}}, True),
        ({"key": {"a": 1.0}}, {"key": {"a": 1}}, True),
        ({"key": {"a": 1, "b": 1}}, {"key": {"b": 1, "a": 1}}, False),
        ({"key": {"a": 1, "b": -1}}, {"key": {"a": 1, "b": 1}}, False),
        ({"key": {"a": 1}, "unique": True}, {"key": {"a": 1}}, False),
        (
            {"key": {"a": 1}, "expireAfterSeconds": 0},
            {"key": {"a": 1}, "expireAfterSeconds": 60},
            False,
        ),
        (
            {"key": {"a": 1}, "partialFilterExpression": {"a": {"$exists": True}}},
            {"key": {"a": 1}},
            False,
        ),
    ],
    ids=[
        "bookkeeping-ignored",
        "absent-unique-is-false",
        "float-direction",
        "reordered-key",
        "direction",
        "unique",
        "ttl",
        "partial",
    ],
)
def test_normalise_index_compares_as_the_server_does(left: Any, right: Any, same: bool) -> None:
    assert (normalise_index(left) == normalise_index(right)) is same


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=2, max_size=4, unique=True))
def test_index_key_keeps_field_order(fields: list[str]) -> None:
    pairs = [(f, 1) for f in fields]
    assert index_key(dict(pairs)) == tuple(pairs) == index_key(pairs)


def test_plan_for_an_absent_collection_creates_it_then_its_indexes() -> None:
    steps = plan_collection(CONTACTS, CollectionState(CONTACTS.name))
    assert [(s.action, s.index) for s in steps] == [(CREATE_COLLECTION, None)] + [
        (CREATE_INDEX, index.name) for index in CONTACTS.indexes
    ]


def test_plan_for_a_matching_collection_is_empty() -> None:
    assert plan_collection(CONTACTS, _state(CONTACTS)) == []
    assert collection_status(CONTACTS, _state(CONTACTS)).matches


def test_plan_updates_a_changed_validator_and_names_the_change() -> None:
    state = _state(CONTACTS, options={**CONTACTS.create_options(), "validator": {}})
    [step] = plan_collection(CONTACTS, state)
    assert (step.action, step.detail["changes"]) == (UPDATE_VALIDATOR, ["validator"])


def test_absent_level_and_action_mean_the_defaults() -> None:
    state = _state(CONTACTS, options={"validator": CONTACTS.validator})
    assert plan_collection(CONTACTS, state) == []


def test_same_key_under_another_name_is_a_conflict() -> None:
    indexes = [doc for doc in _server_indexes(CONTACTS) if doc["name"] != "by_phone"]
    indexes.append({"v": 2, "key": {"tenantId": 1, "phone": 1}, "name": "tenantId_1_phone_1"})
    [step] = plan_collection(CONTACTS, _state(CONTACTS, indexes=indexes))
    assert (step.action, step.index) == (INDEX_CONFLICT, "by_phone")
    assert step.detail["existing_name"] == "tenantId_1_phone_1"
    status = collection_status(CONTACTS, _state(CONTACTS, indexes=indexes))
    assert (status.indexes_missing, status.indexes_extra) == (["by_phone"], ["tenantId_1_phone_1"])
