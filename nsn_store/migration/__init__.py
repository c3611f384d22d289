"""Apply, check and remove the schema: migration 0001, its lock, drift, data checks, sharding.

:func:`init_schema` creates the collections in the approved order under a
lease lock (:class:`MigrationLock`) and records the migration in
``nsn_migrations``; :func:`verify_schema` and :func:`schema_status` compare a
database with the registry; :func:`check_data` finds stored documents a
validator would refuse; :func:`shard_plan` turns the registry's shard keys into
``shardCollection`` commands.
"""

from nsn_store.migration._checkdata import CheckReport, check_data
from nsn_store.migration._diff import CollectionStatus, Step
from nsn_store.migration._lock import MigrationLock
from nsn_store.migration._results import MIGRATIONS, DropResult, MigrationResult, StatusReport
from nsn_store.migration._runner import (
    drop_schema,
    init_schema,
    plan,
    schema_status,
    verify_schema,
)
from nsn_store.migration._sharding import ShardKeyChoice, ShardPlan, ShardResult, shard_plan

__all__ = [
    "MIGRATIONS",
    "CheckReport",
    "CollectionStatus",
    "DropResult",
    "MigrationLock",
    "MigrationResult",
    "ShardKeyChoice",
    "ShardPlan",
    "ShardResult",
    "StatusReport",
    "Step",
    "check_data",
    "drop_schema",
    "init_schema",
    "plan",
    "schema_status",
    "shard_plan",
    "verify_schema",
]
