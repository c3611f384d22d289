"""The twelve collections: one declaration each (validator, indexes, shard key).

:data:`SCHEMA` is the registry every other part reads: the migration runner
creates what it declares, ``nsn-store export`` writes it to ``collections/``,
the embedded database enforces it and the shard plan reads its shard keys.
The validators are generated from the pydantic models (:mod:`._models`) by
:func:`validator_for`.
"""

from nsn_store.schema._export import check as check_export
from nsn_store.schema._export import render as render_export
from nsn_store.schema._export import write as write_export
from nsn_store.schema._registry import (
    MIGRATION_ID,
    SCHEMA,
    CollectionSpec,
    IndexSpec,
    Schema,
    ShardKey,
    UnknownCollectionError,
    checksum,
)
from nsn_store.schema._validators import validator_for

__all__ = [
    "MIGRATION_ID",
    "SCHEMA",
    "CollectionSpec",
    "IndexSpec",
    "Schema",
    "ShardKey",
    "UnknownCollectionError",
    "check_export",
    "checksum",
    "render_export",
    "validator_for",
    "write_export",
]
