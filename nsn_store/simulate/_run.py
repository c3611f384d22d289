"""Run the NoShowNinja load scenario through the real scheduler code.

The original load script (tenants x messages spread over ten minutes, a cron
every minute, a pool of senders, 5% failures of which 80% succeed on retry)
never touched a database. This one seeds real documents and runs the real
workers (:class:`~nsn_store.Worker` threads or :class:`~nsn_store.AsyncWorker`
tasks) with the fake sender, sharded counters and a final rollup.

By default time is *virtual* (a :class:`SimulationClock` standing still): each
cron tick advances it by ``tick`` seconds, then every worker's ``run_once()``
drains what is due. Wall time measures the code (throughput); virtual time
measures the schedule (lag from ``sendAt`` to claim). With ``clock="wall"``
the clock runs in real time once the workers start and the workers wake at
the next ``sendAt`` by themselves, so the lag is the real claim lag. Whether a
send fails is the fake sender's hash of (seed, message key, attempt), so the
counts do not depend on thread interleaving or on the clock.
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

from nsn_store.clock import Clock
from nsn_store.simulate._report import (
    METRICS,
    START,
    Progress,
    SimulationConfig,
    SimulationReport,
    Tally,
    build_report,
)
from nsn_store.simulate._seed import build_seed, seed_database
from nsn_store.simulate._workers import OpenAsync, SimulationClock, Workers, check_async, drive

# The config and report, the seeding and the worker drivers live in their own
# modules; this one runs them in order, and every name stays importable from
# nsn_store.simulate.
__all__ = ["rollup", "run_simulation", "verify"]

T = TypeVar("T")


def run_simulation(
    db: Any,
    config: SimulationConfig | None = None,
    *,
    progress: Progress | None = None,
    open_async_db: OpenAsync | None = None,
) -> SimulationReport:
    """Seed a scenario on ``db``, run the workers through it and report what happened.

    ``open_async_db`` (required for the asyncio mode) returns the same database
    through an async driver: ``lambda: AsyncMongoClient(uri)[name]`` for a
    server, ``lambda: nsn_store.testing.async_client(db.client)[db.name]`` for
    the embedded database. It is called inside the run's event loop, and the
    run closes that client when it ends. Raises ConfigurationError when the
    asyncio mode has none.
    """
    from nsn_store.migration._runner import init_schema

    config = config or SimulationConfig()
    check_async(config, open_async_db)
    began = time.perf_counter()
    init_schema(db)  # writes nothing when the schema is already there
    clock = SimulationClock(START)
    counter, tenants, timings = _seed(db, config, clock)
    workers = Workers(config, clock, Tally(config.total, progress))
    timings["run"], ticks = _timed(lambda: drive(db, open_async_db, workers, counter))
    workers.tally.count("sender_calls", workers.sender.calls)
    found = verify(db, tenants, Counter(workers.deliveries()))
    timings["rollup"], rows = _timed(lambda: rollup(db, clock, tenants))
    virtual_seconds = (clock.now() - START).total_seconds()
    timings["wall"] = time.perf_counter() - began
    return build_report(
        config,
        workers.tally,
        found,
        ticks=ticks,
        virtual_seconds=virtual_seconds,
        timings=timings,
        aggregate_rows=rows,
        counters={m: sum(counter.count(t, m) for t in tenants) for m in METRICS},
    )


def _seed(
    db: Any, config: SimulationConfig, clock: Clock
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
    sent_events = Counter(
        d.get("scheduledMessageId")
        for d in db["messageEvents"].find({**where, "eventType": "sent"}, {"scheduledMessageId": 1})
    )
    doubles = {mid for mid, n in [*sent_events.items(), *deliveries.items()] if n > 1}
    return {
        "sent": statuses["sent"],
        "failed": statuses["failed"],
        "lost": sum(n for s, n in statuses.items() if s not in ("sent", "failed")),
        "duplicates": len(doubles),
    }


def rollup(db: Any, clock: Clock, tenants: list[ObjectId]) -> int:
    """Roll the run's events up into daily aggregates; return how many rows exist."""
    from nsn_store.aggregates._service import Aggregates

    aggregates = Aggregates(db, clock=clock)
    end = clock.now() + timedelta(milliseconds=1)
    for tenant in tenants:
        aggregates.rollup(tenant, "day", start=START, end=end)
    return int(db["aggregates"].count_documents({"tenantId": {"$in": tenants}}))


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result
