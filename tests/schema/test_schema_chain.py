"""The migration chain as declared: ids, order, checksums, what each migration changes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from _chain_kit import STEPS, TOTAL_STEPS, steps_after, steps_until

from nsn_store.errors import ConfigurationError, InvalidArgumentError
from nsn_store.schema import _export as export
from nsn_store.schema import _models as models
from nsn_store.schema._registry import (
    INITIAL_SCHEMA,
    MIGRATIONS,
    SCHEMA,
    Migration,
    Migrations,
    UnknownMigrationError,
    checksum,
)

#: The checksums recorded by databases at each migration: a released migration never changes.
RELEASED = {
    "0001_initial_schema": "206d036ce09afa5d4b10d9fdc420d973e2f84e8bec554b1a37e93fa82fab5ee0",
    "0002_worker_state": "4c5be41b13c76ef18a099c18711f211b173ceaf5b93f6967d251d48ba8271a22",
    "0003_inbound_address": "3164241b1d2e4dc300dd6af0123719edb38701df078d91aeb95f8b78199f3c38",
}


def test_the_chain_is_0001_0002_then_0003() -> None:
    assert MIGRATIONS.ids == ("0001_initial_schema", "0002_worker_state", "0003_inbound_address")
    assert MIGRATIONS.head is MIGRATIONS[-1] and MIGRATIONS.head.id == "0003_inbound_address"


@pytest.mark.parametrize("migration", list(MIGRATIONS), ids=MIGRATIONS.ids)
def test_a_released_migration_keeps_its_checksum(migration: Migration) -> None:
    assert migration.checksum == RELEASED[migration.id]


def test_every_migration_has_a_pinned_checksum() -> None:
    assert list(RELEASED) == list(MIGRATIONS.ids)


def test_the_step_counts_other_tests_compute_are_those_of_the_released_migrations() -> None:
    # 0001: 12 collections and 27 indexes; 0002: 3 collections, 3 indexes, one collMod
    # of workflowSteps; 0003: one index on tenants.
    assert STEPS == {"0001_initial_schema": 39, "0002_worker_state": 7, "0003_inbound_address": 1}
    assert TOTAL_STEPS == 47 and steps_after("0001") == 8 and steps_until("0002") == 46


def test_0001_checksum_is_that_of_its_twelve_collections() -> None:
    # Databases initialised before the chain existed recorded checksum(SCHEMA) of 0001.
    assert MIGRATIONS[0].checksum == checksum(INITIAL_SCHEMA)
    assert MIGRATIONS.schema("0001_initial_schema").names == INITIAL_SCHEMA.names


def test_0002_creates_the_worker_state_and_revises_workflow_steps() -> None:
    worker_state = MIGRATIONS.get("0002")
    created = [spec.name for spec in worker_state.creates]
    assert created == ["rateLimitBuckets", "jobRuns", "workers"]
    assert [spec.name for spec in worker_state.revises] == ["workflowSteps"]
    before, after = INITIAL_SCHEMA["workflowSteps"], SCHEMA["workflowSteps"]
    assert after.indexes == before.indexes and after.shard_key == before.shard_key
    old, new = (s.validator["$jsonSchema"]["properties"] for s in (before, after))
    assert set(new) - set(old) == {"anchorOffsetSeconds"}
    assert {k: v for k, v in new.items() if k != "anchorOffsetSeconds"} == old
    assert new["anchorOffsetSeconds"]["minimum"] == -31_622_400
    assert new["anchorOffsetSeconds"]["maximum"] == 31_622_400
    assert "anchorOffsetSeconds" not in after.validator["$jsonSchema"]["required"]


def test_0003_adds_by_providerAddress_to_tenants_and_changes_nothing_else() -> None:
    inbound = MIGRATIONS.get("0003")
    assert inbound.creates == () and [spec.name for spec in inbound.revises] == ["tenants"]
    before, after = MIGRATIONS.schema("0002")["tenants"], SCHEMA["tenants"]
    assert inbound.spec("tenants") is after
    assert after.indexes[: len(before.indexes)] == before.indexes
    (added,) = after.indexes[len(before.indexes) :]
    assert added.document() == {
        "name": "by_providerAddress",
        "key": {"providerConfigs.channel": 1, "providerConfigs.fromAddress": 1},
    }  # non-unique, no partial filter: tenants without providerConfigs index as nulls
    assert dataclasses.replace(after, indexes=before.indexes) == before
    unchanged = [spec.name for spec in SCHEMA if spec.name != "tenants"]
    assert all(SCHEMA[name] is MIGRATIONS.schema("0002")[name] for name in unchanged)


CONTRACT_FIELDS = {
    "rateLimitBuckets": {
        "tenantId": "objectId",
        "channel": "string",
        "sender": "string",
        "tokens": "double",
        "capacity": "double",
        "refillPerSecond": "double",
        "updatedAt": "date",
    },
    "jobRuns": {
        "job": "string",
        "periodStart": "date",
        "periodEnd": "date",
        "holder": "string",
        "leaseUntil": "date",
        "startedAt": "date",
        "finishedAt": "date",
        "outcome": "string",
        "error": "string",
    },
    "workers": {
        "host": "string",
        "pid": ["int", "long"],
        "version": "string",
        "startedAt": "date",
        "heartbeatAt": "date",
        "concurrency": ["int", "long"],
        "tenants": "array",
    },
}
CONTRACT_OPTIONAL = {
    "rateLimitBuckets": {"tenantId", "sender"},
    "jobRuns": {"finishedAt", "error"},
    "workers": {"tenants"},
}
CONTRACT_INDEXES = {
    "rateLimitBuckets": [{"name": "tenantId_1", "key": {"tenantId": 1}}],
    "jobRuns": [{"name": "job_1_periodStart_-1", "key": {"job": 1, "periodStart": -1}}],
    "workers": [{"name": "heartbeatAt_1", "key": {"heartbeatAt": 1}, "expireAfterSeconds": 86_400}],
}


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_0002_collections_follow_the_contract(name: str) -> None:
    spec = SCHEMA[name]
    root = spec.validator["$jsonSchema"]
    fields = {k: v["bsonType"] for k, v in root["properties"].items() if k != "_id"}
    assert fields == CONTRACT_FIELDS[name]
    assert root["properties"]["_id"]["bsonType"] == "string"
    assert set(root["required"]) == set(fields) - CONTRACT_OPTIONAL[name]
    assert root["additionalProperties"] is False
    assert (spec.validation_level, spec.validation_action) == ("strict", "error")
    assert [index.document() for index in spec.indexes] == CONTRACT_INDEXES[name]
    assert spec.shard_key.key is None and not spec.tenant_owned


def test_0002_enumerations_follow_the_contract() -> None:
    properties = {spec.name: spec.validator["$jsonSchema"]["properties"] for spec in SCHEMA}
    assert properties["rateLimitBuckets"]["channel"]["enum"] == ["sms", "email"]
    assert properties["jobRuns"]["outcome"]["enum"] == ["running", "succeeded", "failed", "skipped"]
    assert properties["rateLimitBuckets"]["_id"]["maxLength"] == 512
    assert properties["workers"]["_id"]["maxLength"] == 200
    assert properties["jobRuns"]["error"]["maxLength"] == 2000
    assert properties["workers"]["concurrency"]["minimum"] == 1


def test_the_head_is_the_chain_folded() -> None:
    assert MIGRATIONS.schema() is SCHEMA is MIGRATIONS.schema("head")
    assert len(MIGRATIONS.schema("base")) == 0
    assert tuple(spec.model for spec in SCHEMA) == models.MODELS


def test_export_of_0001_is_the_twelve_files_0001_wrote() -> None:
    files = export.render(MIGRATIONS.schema("0001"))
    assert list(files) == [f"{n:02d}-{name}.json" for n, name in enumerate(INITIAL_SCHEMA.names, 1)]
    steps = json.loads(files["05-workflowSteps.json"])
    assert "anchorOffsetSeconds" not in steps["validator"]["$jsonSchema"]["properties"]
    worker_state = export.render(MIGRATIONS.schema("0002"))
    assert [name for name in files if files[name] != worker_state[name]] == [
        "05-workflowSteps.json"
    ]


def test_export_of_0003_differs_from_0002_in_tenants_only() -> None:
    worker_state, head = export.render(MIGRATIONS.schema("0002")), export.render()
    assert list(head) == list(worker_state)
    assert [name for name in head if head[name] != worker_state[name]] == ["01-tenants.json"]
    old, new = (json.loads(files["01-tenants.json"]) for files in (worker_state, head))
    assert new["indexes"][:-1] == old["indexes"]
    assert new["indexes"][-1]["name"] == "by_providerAddress"
    assert {k: v for k, v in new.items() if k != "indexes"} == {
        k: v for k, v in old.items() if k != "indexes"
    }


@pytest.mark.parametrize(
    ("target", "position"),
    [
        (None, len(MIGRATIONS)),
        ("head", len(MIGRATIONS)),
        ("base", 0),
        ("0001_initial_schema", 1),
        ("0001", 1),
        ("0002", 2),
        ("0002_worker", 2),
        ("0003", 3),
        ("0003_inbound_address", 3),
    ],
)
def test_a_target_is_an_id_a_unique_prefix_base_or_head(target: str | None, position: int) -> None:
    assert MIGRATIONS.position(target) == position


@pytest.mark.parametrize("target", ["0004", "000", "", "1", 2, "0001_initial_schema_x"])
def test_an_unknown_target_is_an_invalid_argument(target: Any) -> None:
    with pytest.raises(UnknownMigrationError) as caught:
        MIGRATIONS.position(target)
    assert isinstance(caught.value, InvalidArgumentError)
    assert caught.value.argument == "target"
    assert "0001_initial_schema" in str(caught.value)


def _with_id(migration: Migration, id_: str) -> Migration:
    return dataclasses.replace(migration, id=id_)


@pytest.mark.parametrize(
    ("chain", "problem"),
    [
        (lambda: [], "at least one"),
        (lambda: [_with_id(MIGRATIONS[0], "1_initial")], "NNNN_slug"),
        (lambda: [_with_id(MIGRATIONS[0], "0002_initial")], "number 1"),
        (lambda: [MIGRATIONS[0], _with_id(MIGRATIONS[0], "0002_again")], "duplicate"),
        (lambda: [_with_id(MIGRATIONS[1], "0001_worker_state")], "revises undeclared"),
    ],
    ids=["empty", "bad-id", "misnumbered", "created-twice", "revises-nothing"],
)
def test_a_broken_chain_is_refused_when_declared(chain: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        Migrations(chain())


def test_a_migration_names_what_it_touches() -> None:
    worker_state = MIGRATIONS[1]
    assert worker_state.collections == ("rateLimitBuckets", "jobRuns", "workers", "workflowSteps")
    assert worker_state.spec("workflowSteps") is SCHEMA["workflowSteps"]
    with pytest.raises(ConfigurationError, match="does not touch"):
        worker_state.spec("tenants")


def test_the_readme_lists_every_migration_with_its_checksum() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    chapter = readme.split("\n## Migrations\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in chapter.splitlines() if line.startswith("| `0")]
    assert [row.split("`")[1] for row in rows] == list(MIGRATIONS.ids)
    for row, migration in zip(rows, MIGRATIONS, strict=True):
        assert row.rstrip(" |").endswith(f"checksum `{migration.checksum[:12]}`"), row
