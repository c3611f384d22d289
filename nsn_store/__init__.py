"""nsn-store: NoShowNinja's MongoDB data layer.

Public names are imported lazily (PEP 562), so ``import nsn_store`` stays
cheap and never imports click or the embedded database unless they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time __getattr__ imports on first use
    from nsn_store.aggregates import Aggregates, AsyncAggregates
    from nsn_store.clock import Clock, ManualClock, SystemClock
    from nsn_store.connection import connect, mask_uri
    from nsn_store.counters import AsyncShardedCounter, ShardedCounter
    from nsn_store.directory import (
        AsyncContacts,
        AsyncInbound,
        AsyncTemplates,
        AsyncTenants,
        AsyncWorkflows,
        Contacts,
        Inbound,
        Templates,
        Tenants,
        Workflows,
    )
    from nsn_store.errors import (
        ConfigurationError,
        ConnectionFailedError,
        DatabaseLockedError,
        DocumentValidationError,
        DriftError,
        DuplicateKeyError,
        ExistingDataError,
        IndexConflictError,
        InvalidArgumentError,
        InvalidIdError,
        InvalidTransitionError,
        LeaseLostError,
        MigrationLockedError,
        NotFoundError,
        NsnStoreError,
        SchemaError,
        ServerError,
        TenantIsolationError,
    )
    from nsn_store.migration import (
        check_data,
        downgrade,
        drop_schema,
        history,
        init_schema,
        plan,
        schema_status,
        shard_plan,
        upgrade,
        verify_schema,
    )
    from nsn_store.previews import AIPreviews, AsyncAIPreviews
    from nsn_store.rag import AsyncRagDocuments, RagDocuments
    from nsn_store.scheduler import AsyncScheduler, Scheduler
    from nsn_store.schema import MIGRATIONS, SCHEMA, CollectionSpec, IndexSpec
    from nsn_store.simulate import run_simulation
    from nsn_store.tenancy import AsyncTenantScope, TenantScope
    from nsn_store.worker import (
        AsyncWorker,
        Delivery,
        FakeSender,
        LogSender,
        PermanentSendError,
        SendResult,
        TransientSendError,
        Worker,
        WorkerReport,
    )

__version__ = "0.1.0"

# name -> module that defines it; the one list of public names.
_EXPORTS: dict[str, str] = {
    "AIPreviews": "previews",
    "Aggregates": "aggregates",
    "AsyncAIPreviews": "previews",
    "AsyncAggregates": "aggregates",
    "AsyncContacts": "directory",
    "AsyncInbound": "directory",
    "AsyncRagDocuments": "rag",
    "AsyncScheduler": "scheduler",
    "AsyncShardedCounter": "counters",
    "AsyncTemplates": "directory",
    "AsyncTenants": "directory",
    "AsyncWorker": "worker",
    "AsyncWorkflows": "directory",
    "Clock": "clock",
    "CollectionSpec": "schema",
    "ConfigurationError": "errors",
    "ConnectionFailedError": "errors",
    "Contacts": "directory",
    "DatabaseLockedError": "errors",
    "Delivery": "worker",
    "DocumentValidationError": "errors",
    "DriftError": "errors",
    "DuplicateKeyError": "errors",
    "ExistingDataError": "errors",
    "FakeSender": "worker",
    "Inbound": "directory",
    "IndexConflictError": "errors",
    "IndexSpec": "schema",
    "InvalidArgumentError": "errors",
    "InvalidIdError": "errors",
    "InvalidTransitionError": "errors",
    "LeaseLostError": "errors",
    "LogSender": "worker",
    "MIGRATIONS": "schema",
    "ManualClock": "clock",
    "MigrationLockedError": "errors",
    "NotFoundError": "errors",
    "NsnStoreError": "errors",
    "PermanentSendError": "worker",
    "RagDocuments": "rag",
    "SCHEMA": "schema",
    "Scheduler": "scheduler",
    "SchemaError": "errors",
    "SendResult": "worker",
    "ServerError": "errors",
    "ShardedCounter": "counters",
    "SystemClock": "clock",
    "Templates": "directory",
    "TenantIsolationError": "errors",
    "TenantScope": "tenancy",
    "AsyncTenantScope": "tenancy",
    "Tenants": "directory",
    "TransientSendError": "worker",
    "Worker": "worker",
    "WorkerReport": "worker",
    "Workflows": "directory",
    "check_data": "migration",
    "connect": "connection",
    "downgrade": "migration",
    "drop_schema": "migration",
    "history": "migration",
    "init_schema": "migration",
    "mask_uri": "connection",
    "plan": "migration",
    "run_simulation": "simulate",
    "schema_status": "migration",
    "shard_plan": "migration",
    "upgrade": "migration",
    "verify_schema": "migration",
}

# Literal, so type checkers and linters see it; test_package checks it matches _EXPORTS.
__all__ = [
    "MIGRATIONS",
    "SCHEMA",
    "AIPreviews",
    "Aggregates",
    "AsyncAIPreviews",
    "AsyncAggregates",
    "AsyncContacts",
    "AsyncInbound",
    "AsyncRagDocuments",
    "AsyncScheduler",
    "AsyncShardedCounter",
    "AsyncTemplates",
    "AsyncTenantScope",
    "AsyncTenants",
    "AsyncWorker",
    "AsyncWorkflows",
    "Clock",
    "CollectionSpec",
    "ConfigurationError",
    "ConnectionFailedError",
    "Contacts",
    "DatabaseLockedError",
    "Delivery",
    "DocumentValidationError",
    "DriftError",
    "DuplicateKeyError",
    "ExistingDataError",
    "FakeSender",
    "Inbound",
    "IndexConflictError",
    "IndexSpec",
    "InvalidArgumentError",
    "InvalidIdError",
    "InvalidTransitionError",
    "LeaseLostError",
    "LogSender",
    "ManualClock",
    "MigrationLockedError",
    "NotFoundError",
    "NsnStoreError",
    "PermanentSendError",
    "RagDocuments",
    "Scheduler",
    "SchemaError",
    "SendResult",
    "ServerError",
    "ShardedCounter",
    "SystemClock",
    "Templates",
    "TenantIsolationError",
    "TenantScope",
    "Tenants",
    "TransientSendError",
    "Worker",
    "WorkerReport",
    "Workflows",
    "check_data",
    "connect",
    "downgrade",
    "drop_schema",
    "history",
    "init_schema",
    "mask_uri",
    "plan",
    "run_simulation",
    "schema_status",
    "shard_plan",
    "upgrade",
    "verify_schema",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nsn_store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nsn_store.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
