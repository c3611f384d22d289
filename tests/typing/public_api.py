"""What a type checker sees at nsn-store's front door (type-checked by CI: ``mypy --strict``).

Each ``assert_type`` fails the type check if a public name degrades to ``Any``
(for example a lazy export a checker cannot follow) or a method's result
changes type. At run time ``assert_type`` does nothing, and pytest imports this
file (tests/test_typing.py) so it stays importable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.database import Database
from typing_extensions import assert_type

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.counters import ShardedCounter
from nsn_store.migration import MigrationResult, StatusReport
from nsn_store.scheduler import AsyncScheduler, Scheduler
from nsn_store.tenancy import TenantScope
from nsn_store.worker import Worker, WorkerReport

Document = dict[str, Any]


def front_door(db: Database[Document], async_db: Any, when: datetime) -> None:
    """Every line names the real type: none of these is ``Any``."""
    assert_type(nsn_store.Scheduler, type[Scheduler])
    assert_type(nsn_store.AsyncScheduler, type[AsyncScheduler])
    assert_type(nsn_store.ShardedCounter, type[ShardedCounter])
    assert_type(nsn_store.TenantScope, type[TenantScope])
    assert_type(nsn_store.Worker, type[Worker])
    assert_type(nsn_store.ManualClock, type[ManualClock])
    assert_type(nsn_store.connect("mongomock://localhost/nsn"), Database[Document])
    assert_type(nsn_store.init_schema(db), MigrationResult)
    assert_type(nsn_store.schema_status(db), StatusReport)

    scheduler = nsn_store.Scheduler(db)
    assert_type(scheduler.claim_due("worker-1", limit=10), list[Document])
    assert_type(scheduler.next_due_at(), datetime | None)

    counter = nsn_store.ShardedCounter(db)
    assert_type(counter.add("0" * 24, "messages.sent"), bool)

    worker = nsn_store.Worker(db, sender=nsn_store.LogSender())
    assert_type(worker.run_once(), WorkerReport)


async def async_front_door(async_db: Any) -> None:
    """The async twins' methods are coroutines of the same results."""
    scheduler = nsn_store.AsyncScheduler(async_db)
    assert_type(await scheduler.claim_due("worker-1", limit=10), list[Document])
