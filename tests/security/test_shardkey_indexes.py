"""Issue 9 ("Also"): ``verify`` accepts an index beyond the schema only when it is
exactly the one the shard plan creates; any other ``shardkey_*`` index is drift.

A unique ``shardkey_email`` on contacts would make one tenant's address block
every other tenant's insert of it, so a name prefix must not hide it.
"""

from __future__ import annotations

from typing import Any

import pytest

from nsn_store.errors import DriftError
from nsn_store.migration._runner import init_schema, schema_status, verify_schema
from nsn_store.migration._sharding import shard_commands, shard_key_index, shard_plan
from nsn_store.schema._registry import SCHEMA

PLAN = shard_plan()


def _plan_indexes() -> list[tuple[str, dict[str, Any]]]:
    """The indexes ``nsn-store shard`` creates: (collection, index document)."""
    return [
        (command["createIndexes"], index)
        for command in shard_commands("nsn", PLAN)
        if "createIndexes" in command
        for index in command["indexes"]
    ]


def _create(db: Any, collection: str, name: str, key: dict[str, Any], **options: Any) -> None:
    db[collection].create_index(list(key.items()), name=name, **options)


def _drift(db: Any) -> list[str]:
    with pytest.raises(DriftError) as caught:
        verify_schema(db)
    assert schema_status(db).differences() == caught.value.differences
    return list(caught.value.differences)


def test_the_exact_plan_indexes_are_accepted(db: Any) -> None:
    init_schema(db)
    created = _plan_indexes()
    assert {collection for collection, _ in created} == {"contacts", "ragDocuments"}
    for collection, index in created:
        _create(db, collection, index["name"], index["key"])
    report = verify_schema(db)
    assert report.matches
    assert all(status.indexes_extra == [] for status in report.collections)


def test_a_unique_shardkey_email_is_drift(db: Any) -> None:
    init_schema(db)
    _create(db, "contacts", "shardkey_email", {"email": 1}, unique=True)
    assert _drift(db) == ["contacts: unexpected index shardkey_email"]


def test_a_shardkey_index_on_another_key_is_drift(db: Any) -> None:
    init_schema(db)
    _create(db, "ragDocuments", "shardkey_tenantId_-1", {"tenantId": -1})
    assert _drift(db) == ["ragDocuments: unexpected index shardkey_tenantId_-1"]


def test_the_plan_index_name_with_another_key_is_drift(db: Any) -> None:
    init_schema(db)
    expected = shard_key_index(SCHEMA["contacts"])
    assert expected is not None
    # Ranged instead of hashed: one big tenant's contacts land in one chunk.
    _create(db, "contacts", expected["name"], {"tenantId": 1, "_id": 1})
    [line] = _drift(db)
    assert line.startswith(f"contacts: index {expected['name']} differs")
    assert "found {tenantId: 1, _id: 1}" in line


def test_the_plan_index_with_extra_options_is_drift(db: Any) -> None:
    init_schema(db)
    expected = shard_key_index(SCHEMA["ragDocuments"])
    assert expected is not None
    _create(db, "ragDocuments", expected["name"], expected["key"], sparse=True)
    [line] = _drift(db)
    assert line.startswith(f"ragDocuments: index {expected['name']} differs")
    assert "sparse=True" in line


def test_a_shardkey_index_where_the_plan_creates_none_is_drift(db: Any) -> None:
    init_schema(db)
    # counters' shard key {tenantId, metric} is served by a declared index: shard adds none.
    assert shard_key_index(SCHEMA["counters"]) is None
    _create(db, "counters", "shardkey_tenantId_1_metric_1", {"tenantId": 1, "metric": 1})
    assert _drift(db) == ["counters: unexpected index shardkey_tenantId_1_metric_1"]
