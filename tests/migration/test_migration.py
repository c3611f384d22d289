"""init / plan / drop on a real database (embedded, and a server when configured)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _chain_kit import TOTAL_STEPS, fresh_steps

from nsn_store.migration._diff import CREATE_COLLECTION, CREATE_INDEX, UPDATE_VALIDATOR
from nsn_store.migration._results import MIGRATIONS
from nsn_store.migration._runner import drop_schema, init_schema, plan, schema_status, verify_schema
from nsn_store.schema._registry import MIGRATION_ID, SCHEMA, Schema
from nsn_store.schema._registry import MIGRATIONS as CHAIN

ALL_INDEXES = [(spec.name, index) for spec in SCHEMA for index in spec.indexes]


def test_plan_on_an_empty_database_lists_every_collection_then_its_indexes(db: Any) -> None:
    steps = plan(db)
    assert [(s.action, s.collection, s.index, s.migration) for s in steps] == fresh_steps()
    assert len(steps) == TOTAL_STEPS  # 39 of 0001, 7 of 0002, 1 of 0003
    assert db.list_collection_names() == []  # plan never writes


def test_init_creates_the_collections_in_plan_order(db: Any) -> None:
    result = init_schema(db)
    created = [s.collection for s in result.steps if s.action == CREATE_COLLECTION]
    assert created == list(SCHEMA.names)
    assert set(SCHEMA.names) <= set(db.list_collection_names())


@pytest.mark.parametrize(
    ("collection", "index"), ALL_INDEXES, ids=[f"{c}.{i.name}" for c, i in ALL_INDEXES]
)
def test_every_plan_index_exists_with_its_declared_key_and_options(
    db: Any, collection: str, index: Any
) -> None:
    init_schema(db)
    info = db[collection].index_information()[index.name]
    assert [(field, int(direction)) for field, direction in info["key"]] == list(index.keys)
    declared = index.options()
    assert bool(info.get("unique", False)) == declared.get("unique", False)
    assert info.get("expireAfterSeconds") == declared.get("expireAfterSeconds")
    assert info.get("partialFilterExpression") == declared.get("partialFilterExpression")


def test_init_applies_each_validator_with_its_level_and_action(db: Any) -> None:
    init_schema(db)
    for spec in SCHEMA:
        options = db[spec.name].options()
        assert options["validator"] == spec.validator, spec.name
        assert options.get("validationLevel", "strict") == spec.validation_level
        assert options.get("validationAction", "error") == spec.validation_action


def test_init_records_each_migration_step_by_step(db: Any, backend: str) -> None:
    result = init_schema(db)
    assert (result.migration_id, result.checksum) == (CHAIN.head.id, CHAIN.head.checksum)
    assert result.applied == [(m.id, m.checksum) for m in CHAIN]
    for migration in CHAIN:
        record = db[MIGRATIONS].find_one({"_id": migration.id})
        assert record["status"] == "applied"
        assert record["checksum"] == migration.checksum
        assert [(s["action"], s["collection"], s.get("index")) for s in record["steps"]] == [
            (s.action, s.collection, s.index) for s in result.steps if s.migration == migration.id
        ]
        assert record["startedAt"] <= record["appliedAt"]
        assert record["host"] == ("embedded" if backend == "embedded" else result.host)
    assert db[MIGRATIONS].find_one({"_id": "lock"}) is None  # released


def test_second_init_writes_nothing(db: Any) -> None:
    init_schema(db)
    records = list(db[MIGRATIONS].find())
    assert [record["_id"] for record in records] == list(CHAIN.ids)  # one per migration
    again = init_schema(db)
    assert again.steps == [] and again.applied == [] and again.status == "up-to-date"
    assert list(db[MIGRATIONS].find()) == records
    assert db[MIGRATIONS].find_one({"_id": MIGRATION_ID}) == records[0]


def test_partial_init_completes_what_is_missing(db: Any) -> None:
    tenants, users = SCHEMA["tenants"], SCHEMA["users"]
    db.create_collection(tenants.name, **tenants.create_options())
    db.create_collection(users.name)  # no validator yet
    db[users.name].create_index([("tenantId", 1)], name="by_tenantId")
    expected = plan(db)
    result = init_schema(db)
    assert result.steps == expected
    done = {(s.action, s.collection, s.index) for s in result.steps}
    assert (CREATE_COLLECTION, "tenants", None) not in done
    assert (UPDATE_VALIDATOR, "users", None) in done
    assert (CREATE_INDEX, "users", "by_tenantId") not in done
    assert (CREATE_INDEX, "tenants", "by_clerkOrgId") in done
    verify_schema(db)


def test_drop_removes_collections_in_reverse_order_and_the_record(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_schema(db)
    dropped: list[str] = []
    real_drop = db.drop_collection

    def spy(name: Any, *args: Any, **kwargs: Any) -> Any:
        dropped.append(name if isinstance(name, str) else name.name)
        return real_drop(name, *args, **kwargs)

    monkeypatch.setattr(db, "drop_collection", spy)
    result = drop_schema(db)
    schema_drops = [name for name in dropped if name in SCHEMA]
    assert schema_drops == list(reversed(SCHEMA.names)) == result.dropped
    assert result.record_cleared and result.absent == []
    assert not set(SCHEMA.names) & set(db.list_collection_names())
    assert MIGRATIONS not in db.list_collection_names()


def test_drop_on_a_partly_created_database_reports_what_was_absent(db: Any) -> None:
    db.create_collection("tenants")
    result = drop_schema(db)
    assert result.dropped == ["tenants"]
    assert result.absent == [name for name in reversed(SCHEMA.names) if name != "tenants"]
    assert not result.record_cleared


def test_a_smaller_schema_is_walked_the_same_way(db: Any) -> None:
    small = Schema([SCHEMA["tenants"], SCHEMA["counters"]])
    result = init_schema(db, schema=small)
    assert [s.collection for s in result.steps if s.action == CREATE_COLLECTION] == [
        "tenants",
        "counters",
    ]
    assert set(db.list_collection_names()) == {"tenants", "counters", MIGRATIONS}
    assert drop_schema(db, schema=small).dropped == ["counters", "tenants"]


def test_results_serialise_to_stable_json(db: Any) -> None:
    result = init_schema(db)
    data = json.loads(json.dumps(result.to_dict()))
    assert list(data) == ["migration", "checksum", "host", "status", "steps", "moderated"]
    assert list(data["steps"][0]) == ["action", "collection", "index", "detail", "migration"]
    assert list(drop_schema(db).to_dict()) == ["dropped", "absent", "record_cleared"]


WRITE_METHODS = frozenset(
    {
        "bulk_write",
        "command",
        "create_collection",
        "create_index",
        "create_indexes",
        "delete_many",
        "delete_one",
        "drop",
        "drop_collection",
        "drop_index",
        "find_one_and_delete",
        "find_one_and_replace",
        "find_one_and_update",
        "insert_many",
        "insert_one",
        "replace_one",
        "update_many",
        "update_one",
    }
)


class _WriteSpy:
    """Proxy a database or collection, recording every write method called through it."""

    def __init__(self, target: Any, calls: list[str]) -> None:
        self._target = target
        self._calls = calls

    def __getitem__(self, name: str) -> _WriteSpy:
        return _WriteSpy(self._target[name], self._calls)

    def __getattr__(self, name: str) -> Any:
        if name in WRITE_METHODS:
            self._calls.append(name)
        return getattr(self._target, name)


def test_reinit_status_verify_and_plan_call_no_write_method(db: Any) -> None:
    # The spy does see writes: a first init through it records them.
    seen: list[str] = []
    init_schema(_WriteSpy(db, seen))  # type: ignore[arg-type]
    assert {"create_collection", "create_index"} <= set(seen)
    calls: list[str] = []
    spy = _WriteSpy(db, calls)
    init_schema(spy)  # type: ignore[arg-type]
    plan(spy)  # type: ignore[arg-type]
    schema_status(spy)  # type: ignore[arg-type]
    verify_schema(spy)  # type: ignore[arg-type]
    assert calls == []
