"""The collections and the migration chain: one declaration each (validator, indexes, shard key).

:data:`MIGRATIONS` is the ordered chain of :class:`Migration` declarations;
:data:`SCHEMA` is its head, the registry every other part reads: the migration
runner creates what it declares, ``nsn-store export`` writes it to
``collections/``, the embedded database enforces it and the shard plan reads
its shard keys. The validators are generated from the pydantic models
(:mod:`._models`) by :func:`validator_for`.
"""

from nsn_store.schema._export import check as check_export
from nsn_store.schema._export import render as render_export
from nsn_store.schema._export import write as write_export
from nsn_store.schema._registry import (
    MIGRATION_ID,
    MIGRATIONS,
    SCHEMA,
    CollectionSpec,
    IndexSpec,
    Migration,
    Migrations,
    Schema,
    UnknownCollectionError,
    UnknownMigrationError,
    checksum,
)
from nsn_store.schema._validators import validator_for

__all__ = [
    "MIGRATIONS",
    "MIGRATION_ID",
    "SCHEMA",
    "CollectionSpec",
    "IndexSpec",
    "Migration",
    "Migrations",
    "Schema",
    "UnknownCollectionError",
    "UnknownMigrationError",
    "check_export",
    "checksum",
    "render_export",
    "validator_for",
    "write_export",
]
