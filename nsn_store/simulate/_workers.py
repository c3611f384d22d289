"""Drive a simulation through the real workers: ``Worker`` threads or ``AsyncWorker`` tasks.

``config.workers`` workers (distinct worker ids, as separate processes would
be) share one scheduler and one fake sender (:func:`fake_sender`); what they
do reaches the tally through their metrics hook (:class:`SimulationMetrics`).

Two clocks:

- **virtual** (default): a :class:`SimulationClock` standing still at a tick;
  each tick advances it by ``config.tick`` seconds, then every worker's
  ``run_once()`` drains what is due (all workers at once), like a cron.
- **wall**: the same clock runs in real time from the moment the workers
  start; every worker's ``run()`` wakes at the next ``sendAt`` by itself, and
  the run stops once every message is finished (or the :func:`horizon` passed).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from nsn_store.clock import ManualClock, to_bson_time
from nsn_store.errors import InvalidArgumentError
from nsn_store.simulate._report import SimulationConfig, Tally, fake_sender, horizon, max_ticks
from nsn_store.worker._metrics import Metrics

logger = logging.getLogger(__name__)

#: Opens the run's database through an async driver (called inside the run's event loop).
OpenAsync = Callable[[], Any]

SEND_ERROR = "fake provider error"  # what the fake sender's transient failures say
_WATCH_EVERY = 0.05  # wall seconds between two looks of the wall-clock run's monitor


class SimulationClock(ManualClock):
    """A ManualClock that can be switched to run in real time from where it stands."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._since: float | None = None

    def run_in_real_time(self) -> None:
        """From now on, ``now()`` moves with the system's monotonic clock."""
        self._since = time.monotonic()

    def now(self) -> datetime:
        standing = super().now()
        if self._since is None:
            return standing
        return to_bson_time(standing + timedelta(seconds=time.monotonic() - self._since))


class SimulationMetrics(Metrics):
    """The workers' metrics hook: outcomes and claim lags go to the tally."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def outcome(self, outcome: str, n: int = 1) -> None:
        self.tally.count(outcome, n)

    def claim_lag(self, claimed_at: datetime, send_at: datetime) -> None:
        self.tally.lag(claimed_at, send_at)


class Workers:
    """The run's workers, their shared sender and clock, and the crashing ones."""

    def __init__(self, config: SimulationConfig, clock: SimulationClock, tally: Tally) -> None:
        self.config, self.clock, self.tally = config, clock, tally
        self.lease = timedelta(seconds=config.lease)
        self.metrics = SimulationMetrics(tally)
        self.sender = fake_sender(config, asynchronous=config.mode == "asyncio")
        self.crashed = 0

    def build(self, kind: Any, scheduler: Any, db: Any) -> list[Any]:
        """Return ``config.workers`` workers of ``kind`` (Worker or AsyncWorker)."""
        c = self.config
        options: dict[str, Any] = {"watch": False} if self.config.mode == "threads" else {}
        return [
            kind(
                db,
                self.sender,
                worker_id=f"worker-{k}",
                concurrency=c.concurrency,
                batch_size=c.batch,
                lease=self.lease,
                scheduler=scheduler,
                metrics=self.metrics,
                **options,
            )
            for k in range(c.workers)
        ]

    def crash(self, scheduler: Any) -> None:
        """Let a doomed worker claim a batch and vanish; only its lease expiry frees it."""
        if self.crashed < self.config.crashes:
            got = scheduler.claim_due(
                f"crashed-{self.crashed}", limit=self.config.batch, lease=self.lease
            )
            self.crashed += bool(got)
            self.tally.count("crashed_claims", len(got))

    def deliveries(self) -> dict[Any, int]:
        """Return how often the fake sender delivered each message id."""
        with self.sender._lock:
            return dict(self.sender.sent)

    def finished(self, ticks: int) -> bool:
        if self.tally.done >= self.config.total:
            return True
        if ticks >= max_ticks(self.config):
            logger.error(
                "simulation stopped after %d ticks with %d of %d messages finished",
                ticks,
                self.tally.done,
                self.config.total,
            )
            return True
        return False

    def deadline(self) -> float:
        """Return the monotonic time after which a wall-clock run gives up."""
        return time.monotonic() + horizon(self.config) + 30.0

    def interrupted(self, workers: list[Any]) -> bool:
        """Return whether a signal stopped a worker (then the run stops too)."""
        return any(w.report.stopped_by for w in workers)


def drive_threads(sim: Workers, workers: list[Any], crasher: Any) -> int:
    """Tick the clock and let every worker's ``run_once()`` drain the tick; return the ticks."""
    ticks = 0
    with ThreadPoolExecutor(len(workers), thread_name_prefix="nsn-sim") as pool:
        while not sim.finished(ticks):
            sim.clock.advance(seconds=sim.config.tick)
            ticks += 1
            sim.crash(crasher)
            for future in [pool.submit(w.run_once) for w in workers]:
                future.result()
    return ticks


def run_threads_wall(sim: Workers, workers: list[Any], crasher: Any) -> int:
    """Run every worker until every message is finished, in real time; return 0 ticks."""
    threads = [
        threading.Thread(target=w.run, name=f"nsn-sim-{w.worker_id}", daemon=True) for w in workers
    ]
    sim.clock.run_in_real_time()
    for thread in threads:
        thread.start()
    deadline = sim.deadline()
    try:
        while sim.tally.done < sim.config.total and time.monotonic() < deadline:
            sim.crash(crasher)
            time.sleep(_WATCH_EVERY)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join()
    return 0


async def drive_asyncio(sim: Workers, workers: list[Any], crasher: Any) -> int:
    """Tick the clock and let every AsyncWorker's ``run_once()`` drain the tick."""
    ticks = 0
    while not sim.finished(ticks) and not sim.interrupted(workers):
        sim.clock.advance(seconds=sim.config.tick)
        ticks += 1
        sim.crash(crasher)
        await asyncio.gather(*(w.run_once() for w in workers))
    return ticks


async def run_asyncio_wall(sim: Workers, workers: list[Any], crasher: Any) -> int:
    """Run every AsyncWorker until every message is finished, in real time; return 0 ticks."""
    sim.clock.run_in_real_time()
    tasks = [asyncio.create_task(w.run()) for w in workers]
    deadline = sim.deadline()
    try:
        while (
            sim.tally.done < sim.config.total
            and time.monotonic() < deadline
            and not sim.interrupted(workers)
        ):
            sim.crash(crasher)
            await asyncio.sleep(_WATCH_EVERY)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
    return 0


def drive(db: Any, open_async_db: OpenAsync | None, sim: Workers, counter: Any) -> int:
    """Run the workers in ``config.mode`` until every message is finished; return the ticks.

    The sync scheduler also serves the asyncio mode as the crashing worker.
    ``open_async_db`` (required for the asyncio mode) opens ``db`` through an
    async driver, inside the run's event loop.
    """
    from nsn_store.scheduler._service import Scheduler
    from nsn_store.worker._worker import Worker

    config = sim.config
    sync = Scheduler(db, **_scheduler_options(sim, counter))
    if config.mode == "asyncio":
        return asyncio.run(_drive_async(check_async(config, open_async_db), sim, sync))
    workers = sim.build(Worker, sync, db)
    run = drive_threads if config.clock == "virtual" else run_threads_wall
    return run(sim, workers, sync)


def check_async(config: SimulationConfig, open_async_db: OpenAsync | None) -> OpenAsync:
    """Return ``open_async_db``; refuse its absence in the asyncio mode (before any I/O)."""
    if open_async_db is None and config.mode == "asyncio":
        raise InvalidArgumentError(
            "the asyncio mode needs open_async_db: a function returning the same database "
            "through an async driver (AsyncMongoClient, Motor, nsn_store.testing.async_client)",
            argument="open_async_db",
        )
    return open_async_db or (lambda: None)


def _scheduler_options(sim: Workers, counter: Any) -> dict[str, Any]:
    # The run's clock, not the server's: the scheduler must not correct it.
    config = sim.config
    return {
        "clock": sim.clock,
        "counter": counter,
        "max_attempts": config.max_attempts,
        "rng": random.Random(config.seed),
        "server_time": False,
        "base_backoff": timedelta(seconds=config.backoff),
    }


async def _drive_async(open_async_db: OpenAsync, sim: Workers, crasher: Any) -> int:
    from nsn_store.counters import AsyncShardedCounter
    from nsn_store.scheduler._service import AsyncScheduler
    from nsn_store.worker._async import AsyncWorker

    config = sim.config
    adb = open_async_db()  # inside the loop: PyMongo's async client binds to the loop it runs in
    counter = AsyncShardedCounter(adb, clock=sim.clock, rng=random.Random(config.seed + 2))
    scheduler = AsyncScheduler(adb, **_scheduler_options(sim, counter))
    workers = sim.build(AsyncWorker, scheduler, adb)
    try:
        if config.clock == "virtual":
            return await drive_asyncio(sim, workers, crasher)
        return await run_asyncio_wall(sim, workers, crasher)
    finally:
        closing = adb.client.close()  # a coroutine (PyMongo, the embedded client) or None (Motor)
        if inspect.isawaitable(closing):
            await closing
