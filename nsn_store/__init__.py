"""nsn-store: NoShowNinja's MongoDB data layer.

Public names are imported lazily (PEP 562), so ``import nsn_store`` stays
cheap and never imports click or the embedded database unless they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; the one list of public names.
_EXPORTS: dict[str, str] = {
    "AIPreviews": "previews",
    "AsyncAIPreviews": "previews",
    "AsyncAggregates": "aggregates",
    "AsyncScheduler": "scheduler",
    "AsyncShardedCounter": "counters",
    "AsyncWorker": "worker",
    "DatabaseLockedError": "errors",
    "Delivery": "worker",
    "FakeSender": "worker",
    "InvalidArgumentError": "errors",
    "InvalidIdError": "errors",
    "LogSender": "worker",
    "PermanentSendError": "worker",
    "SendResult": "worker",
    "TransientSendError": "worker",
    "Worker": "worker",
    "WorkerReport": "worker",
    "Aggregates": "aggregates",
    "Clock": "clock",
    "CollectionSpec": "schema",
    "ConfigurationError": "errors",
    "ConnectionFailedError": "errors",
    "DocumentValidationError": "errors",
    "DriftError": "errors",
    "DuplicateKeyError": "errors",
    "ExistingDataError": "errors",
    "IndexConflictError": "errors",
    "IndexSpec": "schema",
    "InvalidTransitionError": "errors",
    "LeaseLostError": "errors",
    "ManualClock": "clock",
    "MigrationLockedError": "errors",
    "NotFoundError": "errors",
    "NsnStoreError": "errors",
    "RagDocuments": "rag",
    "SCHEMA": "schema",
    "Scheduler": "scheduler",
    "SchemaError": "errors",
    "ServerError": "errors",
    "ShardedCounter": "counters",
    "SystemClock": "clock",
    "TenantIsolationError": "errors",
    "TenantScope": "tenancy",
    "check_data": "checkdata",
    "connect": "connection",
    "drop_schema": "migration",
    "init_schema": "migration",
    "mask_uri": "connection",
    "plan": "migration",
    "run_simulation": "simulate",
    "schema_status": "migration",
    "shard_plan": "sharding",
    "verify_schema": "migration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nsn_store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nsn_store.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
