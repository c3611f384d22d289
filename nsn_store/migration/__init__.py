"""Walk the migration chain: upgrade, downgrade, history, status, verify, data checks, sharding.

:func:`upgrade` (and :func:`init_schema`, an upgrade to the newest migration)
applies the migrations of :data:`nsn_store.schema.MIGRATIONS` in order under a
lease lock (:class:`MigrationLock`), recording each one in ``nsn_migrations``
(:data:`RECORDS`); :func:`downgrade` undoes the newer ones; :func:`history`
lists what a database recorded; :func:`verify_schema` and :func:`schema_status`
compare a database with the schema; :func:`check_data` finds stored documents a
validator would refuse; :func:`shard_plan` turns the registry's shard keys into
``shardCollection`` commands. Every function that touches a database also
works on an async one (it then returns a coroutine).
"""

from nsn_store.migration._checkdata import CheckReport, check_data
from nsn_store.migration._diff import CollectionStatus, Step
from nsn_store.migration._lock import AsyncMigrationLock, MigrationLock
from nsn_store.migration._results import (
    RECORDS,
    DowngradeResult,
    DropResult,
    History,
    HistoryEntry,
    MigrationResult,
    StatusReport,
)
from nsn_store.migration._runner import (
    downgrade,
    downgrade_plan,
    drop_schema,
    history,
    init_schema,
    plan,
    schema_status,
    upgrade,
    verify_schema,
)
from nsn_store.migration._sharding import ShardKeyChoice, ShardPlan, ShardResult, shard_plan

__all__ = [
    "RECORDS",
    "AsyncMigrationLock",
    "CheckReport",
    "CollectionStatus",
    "DowngradeResult",
    "DropResult",
    "History",
    "HistoryEntry",
    "MigrationLock",
    "MigrationResult",
    "ShardKeyChoice",
    "ShardPlan",
    "ShardResult",
    "StatusReport",
    "Step",
    "check_data",
    "downgrade",
    "downgrade_plan",
    "drop_schema",
    "history",
    "init_schema",
    "plan",
    "schema_status",
    "shard_plan",
    "upgrade",
    "verify_schema",
]
