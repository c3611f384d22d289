"""The scale-out plan: every shard key is compatible with every unique index."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from nsn_store.errors import ConfigurationError
from nsn_store.migration._sharding import (
    apply_shard_plan,
    check_shard_key,
    shard_commands,
    shard_plan,
)
from nsn_store.schema._registry import SCHEMA, IndexSpec

PLAN = shard_plan()
LARGE = ("contacts", "scheduledMessages", "messageEvents", "ragDocuments", "counters", "aggregates")
SMALL = ("tenants", "users", "workflows", "workflowSteps", "templates")


def _fields(keys: Any) -> list[str]:
    return [name for name, _ in keys]


def _pairs() -> list[Any]:
    pairs = []
    for choice in PLAN.sharded:
        for index in SCHEMA.get(choice.collection).indexes:
            if index.unique:
                pairs.append(pytest.param(choice, index, id=f"{choice.collection}-{index.name}"))
    return pairs


def test_plan_has_one_entry_per_collection_in_schema_order() -> None:
    assert [choice.collection for choice in PLAN.choices] == list(SCHEMA.names)
    assert all(choice.reason for choice in PLAN.choices)


@pytest.mark.parametrize("name", LARGE)
def test_large_collections_are_sharded_with_tenant_first(name: str) -> None:
    key = PLAN.get(name).key
    assert key is not None
    assert next(iter(key)) == "tenantId"


@pytest.mark.parametrize("name", SMALL)
def test_small_collections_stay_unsharded(name: str) -> None:
    assert PLAN.get(name).key is None
    assert PLAN.get(name).strategy == "unsharded"


@pytest.mark.parametrize(("choice", "index"), _pairs())
def test_every_unique_index_starts_with_the_planned_shard_key(
    choice: Any, index: IndexSpec
) -> None:
    key_fields = list(choice.key)
    assert _fields(index.keys)[: len(key_fields)] == key_fields


def test_the_check_covers_at_least_the_four_unique_indexes_of_sharded_collections() -> None:
    assert len(_pairs()) >= 4


@pytest.mark.parametrize(
    ("collection", "key", "index"),
    [
        pytest.param(
            "scheduledMessages",
            {"tenantId": 1, "_id": 1},
            "by_tenant_idempotencyKey",
            id="messages-tenant-id",
        ),
        pytest.param(
            "messageEvents",
            {"tenantId": 1, "createdAt": 1},
            "by_provider_message_event",
            id="events-tenant-createdAt",
        ),
        pytest.param("users", {"tenantId": 1}, "by_clerkUserId", id="users-tenant"),
        pytest.param("counters", {"metric": 1}, "by_tenant_metric_shard", id="counters-metric"),
        pytest.param(
            "aggregates",
            {"tenantId": 1, "metric": 1},
            "by_tenant_date_metric",
            id="aggregates-tenant-metric",
        ),
        pytest.param("tenants", {"name": "hashed"}, "by_clerkOrgId", id="tenants-hashed-name"),
    ],
)
def test_a_key_that_a_unique_index_would_violate_is_refused(
    collection: str, key: dict[str, Any], index: str
) -> None:
    with pytest.raises(ConfigurationError, match=index):
        check_shard_key(SCHEMA.get(collection), key)


def test_a_hashed_key_cannot_enforce_uniqueness() -> None:
    with pytest.raises(ConfigurationError, match="hashed"):
        check_shard_key(SCHEMA.get("counters"), {"tenantId": "hashed"}, unique=True)


def test_hashed_prefix_is_compared_by_field_name_as_the_server_does() -> None:
    # ShardKeyPattern::isUniqueIndexCompatible: {a: "hashed"} accepts a unique {a: 1, ...}.
    counters = SCHEMA.get("counters")
    assert check_shard_key(counters, {"tenantId": "hashed"}) is None  # accepted
    # The field names decide: a hashed key on another field is still refused.
    with pytest.raises(ConfigurationError, match="by_tenant_metric_shard"):
        check_shard_key(counters, {"metric": "hashed"})


def test_a_unique_index_starting_with_id_is_always_accepted() -> None:
    spec = SCHEMA.get("contacts")
    key = {"tenantId": 1, "_id": "hashed"}
    extra = IndexSpec("by_id_email", (("_id", 1), ("email", 1)), unique=True)
    assert check_shard_key(replace(spec, indexes=(*spec.indexes, extra)), key) is None
    # The same index led by another field than _id breaks the key.
    other = IndexSpec("by_email_id", (("email", 1), ("_id", 1)), unique=True)
    with pytest.raises(ConfigurationError, match="by_email_id"):
        check_shard_key(replace(spec, indexes=(*spec.indexes, other)), key)


def test_plan_refuses_a_schema_whose_unique_index_breaks_the_key() -> None:
    spec = SCHEMA.get("contacts")
    global_email = IndexSpec("by_email_global", (("email", 1),), unique=True)
    broken = [replace(spec, indexes=(*spec.indexes, global_email))]
    with pytest.raises(ConfigurationError, match="by_email_global"):
        shard_plan(broken)  # type: ignore[arg-type]


def test_commands_enable_sharding_then_index_and_shard_each_collection() -> None:
    commands = shard_commands("nsn", PLAN)
    assert commands[0] == {"enableSharding": "nsn"}
    shard = [c for c in commands if "shardCollection" in c]
    assert [c["shardCollection"] for c in shard] == [f"nsn.{c.collection}" for c in PLAN.sharded]
    contacts = next(c for c in shard if c["shardCollection"] == "nsn.contacts")
    assert contacts["key"] == {"tenantId": 1, "_id": "hashed"}
    first_index = next(i for i, c in enumerate(commands) if c.get("createIndexes") == "contacts")
    assert commands[first_index + 1]["shardCollection"] == "nsn.contacts"
    assert commands[first_index]["indexes"] == [
        {"name": "shardkey_tenantId_1__id_hashed", "key": {"tenantId": 1, "_id": "hashed"}}
    ]


@pytest.mark.parametrize(
    ("collection", "index"),
    [
        pytest.param("scheduledMessages", "by_tenantId", id="messages"),
        pytest.param("messageEvents", "by_tenantId", id="events"),
        pytest.param("counters", "by_tenant_metric_shard", id="counters"),
        pytest.param("aggregates", "by_tenant_date_metric", id="aggregates"),
        pytest.param("contacts", None, id="contacts-hashed-needs-its-own"),
    ],
)
def test_ranged_keys_reuse_a_declared_index_and_only_hashed_keys_add_one(
    collection: str, index: str | None
) -> None:
    assert PLAN.get(collection).index == index
    created = [c["createIndexes"] for c in shard_commands("nsn", PLAN) if "createIndexes" in c]
    assert (collection in created) is (index is None)


def test_dry_run_returns_commands_without_touching_the_database(db: Any) -> None:
    result = apply_shard_plan(db, PLAN, dry_run=True)
    assert result.applied is False
    assert result.commands[0] == {"enableSharding": db.name}
    assert db.list_collection_names() == []
    assert result.to_dict()["collections"][0]["collection"] == "tenants"


def test_applying_outside_a_sharded_cluster_is_a_clear_error(db: Any, backend: str) -> None:
    if backend == "server" and db.client.admin.command("hello").get("msg") == "isdbgrid":
        pytest.skip("the configured server is a mongos: applying would really shard")
    with pytest.raises(ConfigurationError, match=r"not a sharded cluster \(mongos\)"):
        apply_shard_plan(db, PLAN, dry_run=False)


# --- CLI -----------------------------------------------------------------------


def _cli() -> Any:
    import click

    from nsn_store.cli.ops import OPS_COMMANDS

    group = click.Group()
    for command in OPS_COMMANDS:
        group.add_command(command)
    return group


def test_shard_dry_run_prints_every_key_with_its_reason() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(_cli(), ["shard", "--dry-run", "--uri", "mongomock://shard/nsn"])
    assert result.exit_code == 0, result.output
    for choice in PLAN.choices:
        assert choice.collection in result.stdout and choice.reason in result.stdout
    assert "would run (dry run)" in result.stdout
    commands = result.stdout.split("would run (dry run)", 1)[1].splitlines()[1:]
    # Each command is JSON an operator can paste into mongosh.
    assert [
        json.loads(line)["shardCollection"] for line in commands if "shardCollection" in line
    ] == [f"nsn.{c.collection}" for c in PLAN.sharded]


def test_shard_dry_run_json_lists_commands_and_plan() -> None:
    import json

    from click.testing import CliRunner

    result = CliRunner().invoke(
        _cli(), ["shard", "--dry-run", "--json", "--uri", "mongomock://shard/nsn"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["applied"] is False and data["commands"][0] == {"enableSharding": "nsn"}
    assert [c["collection"] for c in data["collections"]] == list(SCHEMA.names)


def test_shard_without_dry_run_on_the_embedded_database_exits_2() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(_cli(), ["shard", "--uri", "mongomock://shard/nsn"])
    assert result.exit_code == 2
    assert "not a sharded cluster (mongos)" in result.stderr


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda db: shard_plan(5), "schema"),  # type: ignore[arg-type]
        (lambda db: shard_plan([1]), "schema"),  # type: ignore[list-item]
        (lambda db: apply_shard_plan(db, "plan"), "plan"),  # type: ignore[arg-type]
        (lambda db: apply_shard_plan(db, PLAN, dry_run="no"), "dry_run"),  # type: ignore[arg-type]
        (lambda db: apply_shard_plan(db, PLAN, database=5), "database"),  # type: ignore[arg-type]
        (lambda db: apply_shard_plan(db, PLAN, database="a.b"), "database"),
        (lambda db: apply_shard_plan(db, PLAN, database="x\0"), "database"),
        (lambda db: apply_shard_plan(db, PLAN, database="d" * 64), "database"),
        (lambda db: shard_commands("", PLAN), "database"),
        (lambda db: shard_commands("nsn", None), "plan"),  # type: ignore[arg-type]
        (lambda db: check_shard_key(None, {"tenantId": 1}), "spec"),  # type: ignore[arg-type]
        (lambda db: check_shard_key(SCHEMA.get("contacts"), ["tenantId"]), "key"),  # type: ignore[arg-type]
        (lambda db: check_shard_key(SCHEMA.get("contacts"), {"tenantId": 2.5}), "key"),
        (lambda db: check_shard_key(SCHEMA.get("contacts"), {"tenantId": True}), "key"),
    ],
    ids=[
        "plan-int",
        "plan-items",
        "apply-plan",
        "dry-run",
        "database-int",
        "database-dot",
        "database-nul",
        "database-long",
        "commands-empty",
        "commands-plan",
        "spec",
        "key-list",
        "key-float",
        "key-bool",
    ],
)
def test_bad_arguments_are_refused_by_name(db: Any, call: Any, argument: str) -> None:
    from nsn_store.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as caught:
        call(db)
    assert caught.value.argument == argument
    assert db.list_collection_names() == []
