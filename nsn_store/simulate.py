"""Run the NoShowNinja load scenario through the real scheduler code.

The original load script (tenants x messages spread over ten minutes, a cron
every minute, a pool of senders, 5% failures of which 80% succeed on retry)
never touched a database. This one seeds real documents and drives workers
through ``claim_due`` / ``mark_sent`` / ``mark_failed`` with sharded counters
and a final rollup.

Time is *virtual* (a :class:`ManualClock`): each cron tick advances it by
``tick`` seconds, then the workers drain what is due while it stands still.
Wall time measures the code (throughput); virtual time measures the schedule
(lag from ``sendAt`` to claim). Whether a send fails is a hash of (seed,
message key, attempt), so the counts do not depend on thread interleaving.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from bson import ObjectId

from nsn_store.clock import ManualClock
from nsn_store.simulate_report import (
    METRICS,
    START,
    Progress,
    SimulationConfig,
    SimulationReport,
    Tally,
    build_report,
    max_ticks,
    percentile,
    send_fails,
)
from nsn_store.simulate_seed import SEEDED, Documents, build_seed, seed_database
from nsn_store.simulate_workers import (
    SEND_ERROR,
    Call,
    Workers,
    drive,
    drive_asyncio,
    drive_threads,
)

# The config and report, the seeding and the worker drivers live in their own
# modules; this one runs them in order, and every name stays importable from
# nsn_store.simulate.
__all__ = [
    "METRICS",
    "SEEDED",
    "SEND_ERROR",
    "START",
    "Call",
    "Documents",
    "Progress",
    "SimulationConfig",
    "SimulationReport",
    "Tally",
    "Workers",
    "build_report",
    "build_seed",
    "drive",
    "drive_asyncio",
    "drive_threads",
    "max_ticks",
    "percentile",
    "rollup",
    "run_simulation",
    "seed_database",
    "send_fails",
    "verify",
]

T = TypeVar("T")


def run_simulation(
    db: Any, config: SimulationConfig | None = None, *, progress: Progress | None = None,
    async_db: Any = None,
) -> SimulationReport:
    """Seed a scenario on ``db``, drive workers through it and report what happened.

    ``async_db`` (asyncio mode) is the same database through an async driver;
    by default it is derived from ``db`` (mongomock-motor over the embedded
    store, PyMongo's ``AsyncMongoClient`` for a server).
    """
    from nsn_store.migration import init_schema

    config = config or SimulationConfig()
    began = time.perf_counter()
    init_schema(db)  # writes nothing when the schema is already there
    clock = ManualClock(START)
    counter, tenants, timings = _seed(db, config, clock)
    workers = Workers(config, clock, Tally(config.total, progress))
    timings["run"], ticks = _timed(lambda: drive(db, async_db, workers, counter))
    found = verify(db, tenants, workers.tally.deliveries)
    timings["rollup"], rows = _timed(lambda: rollup(db, clock, tenants))
    virtual_seconds = (clock.now() - START).total_seconds()
    timings["wall"] = time.perf_counter() - began
    return build_report(
        config, workers.tally, found, ticks=ticks, virtual_seconds=virtual_seconds,
        timings=timings, aggregate_rows=rows,
        counters={m: sum(counter.count(t, m) for t in tenants) for m in METRICS},
    )


def _seed(
    db: Any, config: SimulationConfig, clock: ManualClock
) -> tuple[Any, list[ObjectId], dict[str, float]]:
    """Seed the run; return its counter, its tenants' ids and ``{"seed": seconds}``."""
    from nsn_store.counters import ShardedCounter

    counter = ShardedCounter(db, clock=clock, rng=random.Random(config.seed + 1))
    docs = build_seed(config, uuid.uuid4().hex[:8], clock.now())
    seconds, _ = _timed(lambda: seed_database(db, docs, counter, clock.now()))
    return counter, [t["_id"] for t in docs["tenants"]], {"seed": seconds}


def verify(db: Any, tenants: list[ObjectId], deliveries: Counter[ObjectId]) -> dict[str, int]:
    """Count final statuses and double sends for the run's tenants, from the database."""
    where = {"tenantId": {"$in": tenants}}
    statuses = Counter(d["status"] for d in db["scheduledMessages"].find(where, {"status": 1}))
    sent_events = Counter(d.get("scheduledMessageId") for d in db["messageEvents"].find(
        {**where, "eventType": "sent"}, {"scheduledMessageId": 1}))
    doubles = {mid for mid, n in [*sent_events.items(), *deliveries.items()] if n > 1}
    return {"sent": statuses["sent"], "failed": statuses["failed"],
            "lost": sum(n for s, n in statuses.items() if s not in ("sent", "failed")),
            "duplicates": len(doubles)}


def rollup(db: Any, clock: ManualClock, tenants: list[ObjectId]) -> int:
    """Roll the run's events up into daily aggregates; return how many rows exist."""
    from nsn_store.aggregates import Aggregates

    aggregates = Aggregates(db, clock=clock)
    end = clock.now() + timedelta(milliseconds=1)
    for tenant in tenants:
        aggregates.rollup(tenant, "day", start=START, end=end)
    return int(db["aggregates"].count_documents({"tenantId": {"$in": tenants}}))


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result
