"""check_data / find_violations: existing documents a validator would reject."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import click
import pytest
from bson import ObjectId
from click.testing import CliRunner

from nsn_store.errors import ConfigurationError
from nsn_store.migration._checkdata import (
    check_data,
    failing_rules,
    find_violations,
    violation_filter,
)
from nsn_store.schema._registry import SCHEMA

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
TENANT = ObjectId()


def _valid(n: int) -> dict[str, Any]:
    return {"_id": ObjectId(), "tenantId": TENANT, "phone": f"+1555000{n:04d}", "createdAt": NOW}


def _invalid() -> list[tuple[dict[str, Any], str]]:
    """Invalid contacts, each with a rule its report must name (in _id order)."""
    return [
        (
            {"_id": ObjectId(), "phone": "+15550001111", "createdAt": NOW},
            "$: required (missing tenantId)",
        ),
        ({**_valid(1), "_id": ObjectId(), "phone": "555-1234"}, "phone: pattern"),
        (
            {**_valid(2), "_id": ObjectId(), "nickname": "Bob"},
            "$: additionalProperties (unexpected nickname)",
        ),
        ({**_valid(3), "_id": ObjectId(), "optedOut": "yes"}, "optedOut: bsonType"),
    ]


@pytest.fixture
def contacts(db: Any) -> tuple[list[ObjectId], list[str]]:
    """Three valid and four invalid contacts in a collection without a validator."""
    bad = _invalid()
    db["contacts"].insert_many([_valid(n) for n in range(3)] + [doc for doc, _ in bad])
    return [doc["_id"] for doc, _ in bad], [rule for _, rule in bad]


def test_counts_every_failing_document_and_explains_a_sample(db: Any, contacts: Any) -> None:
    ids, rules = contacts
    report = check_data(db, collections=["contacts"], sample=5)
    [result] = report.results
    assert result.count == 4
    assert [s.id for s in result.samples] == ids
    for sample, rule in zip(result.samples, rules, strict=True):
        assert rule in sample.rules
    assert report.failing == 4 and not report.clean


def test_sample_limits_how_many_documents_are_fetched(db: Any, contacts: Any) -> None:
    ids, _ = contacts
    result = find_violations(db["contacts"], SCHEMA.get("contacts").validator, sample=2)
    assert result.count == 4
    assert [s.id for s in result.samples] == ids[:2]


def test_sample_zero_counts_without_fetching(db: Any, contacts: Any) -> None:
    result = find_violations(db["contacts"], SCHEMA.get("contacts").validator, sample=0)
    assert (result.count, result.samples) == (4, [])


def test_documents_failing_several_rules_list_each(db: Any) -> None:
    db["contacts"].insert_one({"phone": 5551234, "createdAt": "yesterday", "extra": 1})
    [sample] = find_violations(db["contacts"], SCHEMA.get("contacts").validator).samples
    assert "$: required (missing tenantId)" in sample.rules
    assert "phone: bsonType" in sample.rules
    assert "createdAt: bsonType" in sample.rules
    assert "$: additionalProperties (unexpected extra)" in sample.rules


def test_valid_data_is_clean(db: Any) -> None:
    db["contacts"].insert_many([_valid(n) for n in range(3)])
    report = check_data(db)
    assert report.clean and report.failing == 0
    contacts = next(r for r in report.results if r.collection == "contacts")
    assert contacts.exists and contacts.samples == []


def test_collections_not_created_yet_are_reported_as_such(db: Any) -> None:
    report = check_data(db, collections=["tenants", "aggregates"])
    assert [(r.collection, r.exists, r.count) for r in report.results] == [
        ("tenants", False, 0),
        ("aggregates", False, 0),
    ]


def test_documents_written_past_a_validator_are_found(db: Any) -> None:
    from nsn_store.migration._runner import init_schema

    init_schema(db)
    bad = {"tenantId": TENANT, "name": "", "createdAt": NOW}  # minLength 1
    db["workflows"].insert_one(bad, bypass_document_validation=True)
    result = check_data(db, collections=["workflows"]).results[0]
    assert result.count == 1
    assert result.samples[0].rules == ["name: minLength"]


def test_unknown_collection_names_the_problem_and_the_valid_names(db: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_data(db, collections=["contacts", "patients"])
    message = str(caught.value)
    assert "patients" in message
    assert all(name in message for name in SCHEMA.names)


def test_report_is_json_ready(db: Any, contacts: Any) -> None:
    data = json.loads(json.dumps(check_data(db, collections=["contacts"]).to_dict()))
    assert data["failing"] == 4 and data["clean"] is False
    assert data["collections"][0]["samples"][0]["id"] == str(contacts[0][0])


def test_violation_filter_negates_the_validator() -> None:
    validator = {"$jsonSchema": {"required": ["a"]}}
    assert violation_filter(validator) == {"$nor": [validator]}


@pytest.mark.parametrize(
    ("details", "rules"),
    [
        pytest.param(None, [], id="valid"),
        pytest.param(
            {
                "operatorName": "$jsonSchema",
                "schemaRulesNotSatisfied": [
                    {
                        "operatorName": "properties",
                        "propertiesNotSatisfied": [
                            {
                                "propertyName": "meta",
                                "details": [
                                    {
                                        "operatorName": "properties",
                                        "propertiesNotSatisfied": [
                                            {
                                                "propertyName": "age",
                                                "details": [{"operatorName": "minimum"}],
                                            }
                                        ],
                                    }
                                ],
                            }
                        ],
                    },
                ],
            },
            ["meta.age: minimum"],
            id="nested-property",
        ),
        pytest.param(
            {
                "operatorName": "$jsonSchema",
                "schemaRulesNotSatisfied": [
                    {
                        "operatorName": "properties",
                        "propertiesNotSatisfied": [
                            {
                                "propertyName": "tags",
                                "details": [
                                    {
                                        "operatorName": "items",
                                        "itemIndex": 2,
                                        "details": [{"operatorName": "bsonType"}],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            },
            ["tags[2]: bsonType"],
            id="array-item",
        ),
    ],
)
def test_failing_rules_flatten_err_info(details: Any, rules: list[str]) -> None:
    assert failing_rules(details) == rules


# --- CLI ---------------------------------------------------------------------


def _cli() -> click.Group:
    from nsn_store.cli.ops import OPS_COMMANDS

    group = click.Group()
    for command in OPS_COMMANDS:
        group.add_command(command)
    return group


@pytest.fixture
def embedded_uri() -> str:
    return f"mongomock://checkdata-{uuid.uuid4().hex[:8]}/nsn"


def _seed(uri: str, documents: list[dict[str, Any]]) -> None:
    from nsn_store.connection import connect

    connect(uri)["contacts"].insert_many(documents)


@pytest.mark.parametrize(
    ("invalid", "code"),
    [pytest.param(False, 0, id="clean"), pytest.param(True, 1, id="violations")],
)
def test_check_data_exit_code_tells_clean_from_violations(
    embedded_uri: str, invalid: bool, code: int
) -> None:
    _seed(embedded_uri, [_valid(0)] + ([_invalid()[0][0]] if invalid else []))
    result = CliRunner().invoke(_cli(), ["check-data", "--uri", embedded_uri, "--json"])
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["failing"] == int(invalid)


def test_check_data_text_names_ids_and_rules(embedded_uri: str) -> None:
    doc, rule = _invalid()[1]
    _seed(embedded_uri, [doc])
    result = CliRunner().invoke(
        _cli(), ["check-data", "--uri", embedded_uri, "--collection", "contacts"]
    )
    assert result.exit_code == 1
    assert str(doc["_id"]) in result.stdout and rule in result.stdout


def test_check_data_unknown_collection_exits_2(embedded_uri: str) -> None:
    result = CliRunner().invoke(
        _cli(), ["check-data", "--uri", embedded_uri, "--collection", "patients"]
    )
    assert result.exit_code == 2
    assert "patients" in result.stderr and "contacts" in result.stderr


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"sample": -1}, "sample"),
        ({"sample": 1.5}, "sample"),
        ({"sample": True}, "sample"),
        ({"sample": None}, "sample"),
        ({"sample": 10**20}, "sample"),
        ({"collections": "contacts"}, "collections"),  # one string is not a list of names
        ({"collections": 5}, "collections"),
        ({"collections": [1]}, "collections"),
        ({"collections": [{"$ne": None}]}, "collections"),
        ({"schema": ["contacts"]}, "schema"),
    ],
)
def test_check_data_refuses_bad_arguments_by_name(
    db: Any, kwargs: dict[str, Any], argument: str
) -> None:
    from nsn_store.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as caught:
        check_data(db, **kwargs)
    assert caught.value.argument == argument


def test_find_violations_refuses_a_validator_that_is_not_a_mapping(db: Any) -> None:
    from nsn_store.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as caught:
        find_violations(db["contacts"], None)  # type: ignore[arg-type]
    assert caught.value.argument == "validator"
