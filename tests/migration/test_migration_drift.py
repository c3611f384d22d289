"""status / verify: every kind of drift is found and named; nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nsn_store.errors import DriftError, IndexConflictError
from nsn_store.migration._results import MIGRATIONS
from nsn_store.migration._runner import init_schema, plan, schema_status, verify_schema
from nsn_store.migration._sharding import shard_commands, shard_plan
from nsn_store.schema._models import Tenant
from nsn_store.schema._registry import MIGRATION_ID, SCHEMA


def _change_validator(db: Any) -> None:
    db.command("collMod", "tenants", validator={"$jsonSchema": {"bsonType": "object"}})


def _change_level(db: Any) -> None:
    db.command("collMod", "users", validator=SCHEMA["users"].validator, validationLevel="moderate")


def _drop_index(db: Any) -> None:
    db.users.drop_index("by_clerkUserId")


def _reorder_compound_key(db: Any) -> None:
    db.contacts.drop_index("by_phone")
    db.contacts.create_index([("phone", 1), ("tenantId", 1)], name="by_phone")


def _remove_unique(db: Any) -> None:
    db.tenants.drop_index("by_clerkOrgId")
    db.tenants.create_index([("clerkOrgId", 1)], name="by_clerkOrgId")


def _add_index(db: Any) -> None:
    db.templates.create_index([("updatedAt", 1)], name="by_updatedAt")


def _drop_collection(db: Any) -> None:
    db.drop_collection("ragDocuments")


def _rename_index(db: Any) -> None:
    db.workflows.drop_index("by_tenantId")
    db.workflows.create_index([("tenantId", 1)], name="tenantId_1")


DRIFTS: list[tuple[str, Callable[[Any], None], list[str], bool]] = [
    # id, mutation, differences verify reports, is it an index conflict init refuses
    ("changed-validator", _change_validator, ["tenants: validator differs"], False),
    ("changed-level", _change_level, ["users: validationLevel/validationAction differ"], False),
    ("missing-index", _drop_index, ["users: index by_clerkUserId missing"], False),
    (
        "reordered-compound-key",
        _reorder_compound_key,
        [
            "contacts: index by_phone differs (expected {tenantId: 1, phone: 1}, found "
            + "{phone: 1, tenantId: 1})"
        ],
        True,
    ),
    (
        "unique-removed",
        _remove_unique,
        [
            "tenants: index by_clerkOrgId differs (expected {clerkOrgId: 1} unique=True, found "
            + "{clerkOrgId: 1})"
        ],
        True,
    ),
    ("extra-index", _add_index, ["templates: unexpected index by_updatedAt"], False),
    ("missing-collection", _drop_collection, ["ragDocuments: collection missing"], False),
    (
        "same-key-other-name",
        _rename_index,
        ["workflows: index by_tenantId missing", "workflows: unexpected index tenantId_1"],
        True,
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [d[1:3] for d in DRIFTS], ids=[d[0] for d in DRIFTS]
)
def test_verify_names_every_difference(
    db: Any, mutate: Callable[[Any], None], expected: list[str]
) -> None:
    init_schema(db)
    mutate(db)
    with pytest.raises(DriftError) as caught:
        verify_schema(db)
    assert caught.value.differences == expected
    assert schema_status(db).differences() == expected


@pytest.mark.parametrize(
    ("mutate", "differences", "conflict"), [d[1:] for d in DRIFTS], ids=[d[0] for d in DRIFTS]
)
def test_init_repairs_drift_or_refuses_a_conflicting_index(
    db: Any, mutate: Callable[[Any], None], differences: list[str], conflict: bool
) -> None:
    init_schema(db)
    mutate(db)
    record = db[MIGRATIONS].find_one({"_id": MIGRATION_ID})
    if conflict:
        assert any(step.is_conflict for step in plan(db))
        with pytest.raises(IndexConflictError):
            init_schema(db)
        assert db[MIGRATIONS].find_one({"_id": MIGRATION_ID}) == record  # nothing written
        assert schema_status(db).differences() == differences  # and nothing repaired
        return
    init_schema(db)
    # init never drops, so an extra index stays: everything else is repaired.
    assert schema_status(db).differences() == [
        line for line in differences if "unexpected index" in line
    ]


def test_a_collmod_is_reported_as_a_step(db: Any) -> None:
    init_schema(db)
    _change_validator(db)
    steps = init_schema(db).steps
    assert [(s.action, s.collection, s.detail["changes"]) for s in steps] == [
        ("update_validator", "tenants", ["validator"])
    ]


def test_several_drifts_are_all_listed(db: Any) -> None:
    init_schema(db)
    for _, mutate, _, _ in DRIFTS:
        mutate(db)
    with pytest.raises(DriftError) as caught:
        verify_schema(db)
    expected = [line for _, _, lines, _ in DRIFTS for line in lines]
    assert sorted(caught.value.differences) == sorted(expected)


def test_status_on_an_empty_database_reports_everything_missing_and_writes_nothing(
    db: Any,
) -> None:
    report = schema_status(db)
    assert [s.name for s in report.collections] == list(SCHEMA.names)
    assert not any(s.exists for s in report.collections)
    assert report.record is None
    assert f"migration {MIGRATION_ID} is not recorded in {MIGRATIONS}" in report.differences()
    assert db.list_collection_names() == []


def test_status_counts_documents_and_sees_other_collections(db: Any, clock: Any) -> None:
    init_schema(db)
    tenant = Tenant(name="Acme", clerkOrgId="org_1", createdAt=clock.now())
    db.tenants.insert_one(tenant.to_document())
    db.scratch.insert_one({"_id": 1})
    report = schema_status(db)
    assert report.matches and report.extra_collections == ["scratch"]
    assert {s.name: s.count for s in report.collections if s.count} == {"tenants": 1}


def test_verify_reports_a_stale_checksum(db: Any) -> None:
    init_schema(db)
    db[MIGRATIONS].update_one({"_id": MIGRATION_ID}, {"$set": {"checksum": "0" * 64}})
    with pytest.raises(DriftError, match="recorded with checksum 000000000000"):
        verify_schema(db)


def test_the_index_backing_the_shard_key_is_not_drift(db: Any) -> None:
    """`nsn-store shard` creates the index for a hashed key; verify must not flag it."""
    init_schema(db)
    created = []
    for command in shard_commands(db.name, shard_plan()):
        if "createIndexes" in command:
            for index in command["indexes"]:
                db[command["createIndexes"]].create_index(
                    list(index["key"].items()), name=index["name"]
                )
                created.append((command["createIndexes"], index["name"]))
    # The plan's hashed keys really added indexes, so "no drift" below is meaningful.
    assert {collection for collection, _ in created} == {"contacts", "ragDocuments"}
    for collection, name in created:
        assert name in db[collection].index_information()
    db.templates.create_index("updatedAt", name="by_updatedAt")  # not the shard plan's
    report = schema_status(db)
    extras = {status.name: status.indexes_extra for status in report.collections}
    assert extras["contacts"] == [] and extras["ragDocuments"] == []
    assert extras["templates"] == ["by_updatedAt"]
