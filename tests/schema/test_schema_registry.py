"""The schema registry: plan order, index names and keys, options, checksum."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nsn_store.errors import ConfigurationError
from nsn_store.schema import _models as models
from nsn_store.schema._registry import (
    INITIAL_SCHEMA,
    MIGRATION_ID,
    SCHEMA,
    CollectionSpec,
    IndexSpec,
    Schema,
    checksum,
)
from nsn_store.schema._validators import validator_for

#: the approved plan for migration 0001 (its "Table Creation Order").
PLAN_ORDER = (
    "tenants",
    "users",
    "contacts",
    "workflows",
    "workflowSteps",
    "templates",
    "scheduledMessages",
    "messageEvents",
    "aiPreviews",
    "ragDocuments",
    "counters",
    "aggregates",
)

#: The contract's index table: (collection, index) -> ordered key fields.
PLAN_INDEXES: dict[tuple[str, str], tuple[str, ...]] = {
    ("tenants", "by_clerkOrgId"): ("clerkOrgId",),
    ("users", "by_tenantId"): ("tenantId",),
    ("users", "by_clerkUserId"): ("clerkUserId",),
    ("contacts", "by_tenantId"): ("tenantId",),
    ("contacts", "by_phone"): ("tenantId", "phone"),
    ("contacts", "by_email"): ("tenantId", "email"),
    ("workflows", "by_tenantId"): ("tenantId",),
    ("workflowSteps", "by_workflowId"): ("workflowId", "order"),
    ("workflowSteps", "by_tenantId"): ("tenantId",),
    ("templates", "by_tenantId"): ("tenantId",),
    ("templates", "by_channel"): ("tenantId", "channel"),
    ("scheduledMessages", "by_tenantId"): ("tenantId", "status", "sendAt"),
    ("scheduledMessages", "by_sendAt"): ("status", "sendAt"),
    ("scheduledMessages", "by_status"): ("status", "lockedUntil"),
    ("scheduledMessages", "by_contactId"): ("tenantId", "contactId", "sendAt"),
    ("messageEvents", "by_scheduledMessageId"): ("tenantId", "scheduledMessageId", "createdAt"),
    ("messageEvents", "by_tenantId"): ("tenantId", "createdAt"),
    ("messageEvents", "by_eventType"): ("tenantId", "eventType", "createdAt"),
    ("aiPreviews", "by_tenantId"): ("tenantId",),
    ("aiPreviews", "by_expiresAt"): ("expiresAt",),
    ("ragDocuments", "by_tenantId"): ("tenantId",),
    ("counters", "by_tenant_metric_shard"): ("tenantId", "metric", "shard"),
    ("aggregates", "by_tenant_date_metric"): ("tenantId", "date", "metric", "period"),
    ("aggregates", "by_tenant_period"): ("tenantId", "period", "date"),
}
#: Additions to plan 0001 (documented in the README).
ADDITIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("scheduledMessages", "by_tenant_idempotencyKey"): ("tenantId", "idempotencyKey"),
    ("scheduledMessages", "by_status_updatedAt"): ("status", "updatedAt"),
    ("messageEvents", "by_provider_message_event"): (
        "tenantId",
        "provider",
        "providerMessageId",
        "eventType",
    ),
}
UNIQUE = {
    ("tenants", "by_clerkOrgId"),
    ("users", "by_clerkUserId"),
    ("counters", "by_tenant_metric_shard"),
    ("aggregates", "by_tenant_date_metric"),
    ("scheduledMessages", "by_tenant_idempotencyKey"),
    ("messageEvents", "by_provider_message_event"),
}
#: Migration 0002's collections and indexes (the contract shared with the worker).
WORKER_STATE_ORDER = ("rateLimitBuckets", "jobRuns", "workers")
WORKER_STATE_INDEXES: dict[tuple[str, str], tuple[str, ...]] = {
    ("rateLimitBuckets", "tenantId_1"): ("tenantId",),
    ("jobRuns", "job_1_periodStart_-1"): ("job", "periodStart"),
    ("workers", "heartbeatAt_1"): ("heartbeatAt",),
}
#: Migration 0003's index: the tenant that receives at an address (multikey, not unique).
INBOUND_ADDRESS_INDEXES: dict[tuple[str, str], tuple[str, ...]] = {
    ("tenants", "by_providerAddress"): ("providerConfigs.channel", "providerConfigs.fromAddress"),
}
ALL_INDEXES = {**PLAN_INDEXES, **ADDITIONS, **WORKER_STATE_INDEXES, **INBOUND_ADDRESS_INDEXES}


def _declared() -> dict[tuple[str, str], IndexSpec]:
    return {(spec.name, index.name): index for spec in SCHEMA for index in spec.indexes}


def test_collections_are_in_plan_order() -> None:
    assert INITIAL_SCHEMA.names == PLAN_ORDER
    assert SCHEMA.names == PLAN_ORDER + WORKER_STATE_ORDER  # 0002 appends its collections
    assert [spec.name for spec in reversed(SCHEMA)] == list(reversed(SCHEMA.names))
    assert MIGRATION_ID == "0001_initial_schema"


@pytest.mark.parametrize(("where", "fields"), PLAN_INDEXES.items(), ids=lambda v: "-".join(v))
def test_every_plan_index_is_declared_with_its_key(
    where: tuple[str, str], fields: tuple[str, ...]
) -> None:
    index = _declared()[where]
    assert index.keys == tuple((field, 1) for field in fields)  # ordered pairs


def test_no_index_beyond_the_plan_and_its_documented_additions() -> None:
    assert {where: tuple(f for f, _ in i.keys) for where, i in _declared().items()} == ALL_INDEXES


@pytest.mark.parametrize("where", sorted(ALL_INDEXES), ids=lambda v: "-".join(v))
def test_uniqueness_is_as_declared(where: tuple[str, str]) -> None:
    assert _declared()[where].unique is (where in UNIQUE)


def test_preview_expiry_is_a_ttl_index_and_the_only_one() -> None:
    ttl = {
        where: i.expire_after_seconds
        for where, i in _declared().items()
        if i.expire_after_seconds is not None
    }
    assert ttl == {("aiPreviews", "by_expiresAt"): 0, ("workers", "heartbeatAt_1"): 86_400}


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (("scheduledMessages", "by_tenant_idempotencyKey"), "idempotencyKey"),
        (("messageEvents", "by_provider_message_event"), "providerMessageId"),
    ],
    ids=["idempotency", "webhook"],
)
def test_optional_unique_keys_are_partial(where: tuple[str, str], field: str) -> None:
    # Without the partial filter every document lacking the field would collide on null.
    index = _declared()[where]
    assert index.options()["partialFilterExpression"] == {field: {"$exists": True}}


def test_due_scan_index_follows_esr() -> None:
    # status=scheduled (equality), then sendAt serves the sort and the range.
    assert SCHEMA["scheduledMessages"].index("by_sendAt").keys == (("status", 1), ("sendAt", 1))


def test_unique_tenant_data_indexes_start_with_tenant_id() -> None:
    # On a sharded cluster a unique index must start with the shard key (tenantId).
    global_identities = {("tenants", "by_clerkOrgId"), ("users", "by_clerkUserId")}
    for where in UNIQUE - global_identities:
        assert _declared()[where].keys[0] == ("tenantId", 1), where


def _is_declared_field(spec: CollectionSpec, path: str) -> bool:
    """Whether the validator declares ``path`` (a dotted path enters arrays' items)."""
    node: dict[str, Any] = spec.validator["$jsonSchema"]
    for part in path.split("."):
        node = node.get("items", node)  # an array of subdocuments: its elements' fields
        if part not in node.get("properties", {}):
            return False
        node = node["properties"][part]
    return True


@pytest.mark.parametrize("spec", list(SCHEMA), ids=SCHEMA.names)
def test_index_fields_exist_in_the_model(spec: CollectionSpec) -> None:
    for index in spec.indexes:
        top = {field.split(".")[0] for field, _ in index.keys}
        assert top <= set(spec.model.model_fields), index.name
        assert all(_is_declared_field(spec, field) for field, _ in index.keys), index.name


@pytest.mark.parametrize("spec", list(SCHEMA), ids=SCHEMA.names)
def test_spec_carries_its_model_validator_and_options(spec: CollectionSpec) -> None:
    assert spec.model.collection_name == spec.name  # type: ignore[attr-defined]
    assert spec.validator == validator_for(spec.model)
    assert spec.create_options() == {
        "validator": spec.validator,
        "validationLevel": "strict",
        "validationAction": "error",
    }


def test_models_match_the_registry_one_to_one() -> None:
    assert tuple(spec.model for spec in SCHEMA) == models.MODELS


def test_index_document_and_index_model_keep_key_order() -> None:
    index = SCHEMA["messageEvents"].index("by_provider_message_event")
    document = index.document()
    assert list(document) == ["name", "key", "unique", "partialFilterExpression"]
    assert list(document["key"].items()) == list(index.keys)
    created = index.to_index_model().document
    assert list(created["key"].items()) == list(index.keys)
    assert created["name"] == index.name and created["unique"] is True
    ttl = SCHEMA["aiPreviews"].index("by_expiresAt").to_index_model().document
    assert ttl["expireAfterSeconds"] == 0


def test_plain_index_has_no_options() -> None:
    index = SCHEMA["users"].index("by_tenantId")
    assert index.options() == {}
    assert index.document() == {"name": "by_tenantId", "key": {"tenantId": 1}}


def test_lookup_by_name_and_position() -> None:
    assert SCHEMA["tenants"] is SCHEMA[0] is SCHEMA.get("tenants")
    assert "counters" in SCHEMA and "nope" not in SCHEMA
    assert len(INITIAL_SCHEMA) == 12 and len(SCHEMA) == 15


@pytest.mark.parametrize(
    "lookup", [lambda: SCHEMA.get("Tenants"), lambda: SCHEMA["nope"]], ids=["get", "getitem"]
)
def test_unknown_collection_is_a_configuration_error(lookup: Any) -> None:
    with pytest.raises(ConfigurationError, match="unknown collection"):
        lookup()


def test_unknown_index_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        SCHEMA["users"].index("by_nothing")


def test_duplicate_collection_names_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Schema([SCHEMA[0], SCHEMA[0]])


def test_checksum_is_stable_hex() -> None:
    assert checksum() == checksum(SCHEMA) == checksum(Schema(list(SCHEMA)))
    assert re.fullmatch(r"[0-9a-f]{64}", checksum())
    # Stable means a later process (another hash seed) computes the recorded value again.
    script = "from nsn_store.schema import checksum; print(checksum())"
    for hash_seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert other.stdout.strip() == checksum()


def _replace_spec(position: int, **changes: Any) -> Schema:
    specs = list(SCHEMA)
    specs[position] = dataclasses.replace(specs[position], **changes)
    return Schema(specs)


def _reordered_key() -> Schema:
    spec = SCHEMA["contacts"]
    flipped = dataclasses.replace(spec.indexes[1], keys=tuple(reversed(spec.indexes[1].keys)))
    return _replace_spec(2, indexes=(spec.indexes[0], flipped, *spec.indexes[2:]))


def _changed_validator() -> Schema:
    validator = validator_for(models.Tenant)
    validator["$jsonSchema"]["properties"]["name"]["maxLength"] = 100
    return _replace_spec(0, validator=validator)


@pytest.mark.parametrize(
    "changed",
    [
        lambda: _replace_spec(0, validation_level="moderate"),
        _reordered_key,
        _changed_validator,
        lambda: _replace_spec(
            10, indexes=(dataclasses.replace(SCHEMA[10].indexes[0], unique=False),)
        ),
        lambda: Schema(reversed(list(SCHEMA))),
    ],
    ids=["validation-level", "reordered-compound-key", "validator", "index-option", "order"],
)
def test_checksum_changes_when_a_spec_changes(changed: Any) -> None:
    assert checksum(changed()) != checksum()


def test_checksum_ignores_dict_key_order_of_the_validator() -> None:
    root = SCHEMA[0].validator["$jsonSchema"]
    shuffled = {"$jsonSchema": dict(reversed(list(root.items())))}
    assert checksum(_replace_spec(0, validator=shuffled)) == checksum()
