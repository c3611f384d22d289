"""Drive a simulation's senders through the scheduler, on threads or asyncio tasks.

One generator (:meth:`Workers.work`) yields a worker's scheduler calls; the
thread driver runs them on :class:`~nsn_store.scheduler.Scheduler`, the
asyncio driver awaits them on :class:`~nsn_store.scheduler.AsyncScheduler`,
so both modes follow the same steps.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from nsn_store.clock import ManualClock
from nsn_store.simulate_report import SimulationConfig, Tally, max_ticks, send_fails

logger = logging.getLogger(__name__)

SEND_ERROR = "simulated provider error"


@dataclass(frozen=True)
class Call:
    """One scheduler method call of a worker."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


class Workers:
    """The sender pool: drains what is due at each tick through one scheduler."""

    def __init__(self, config: SimulationConfig, clock: ManualClock, tally: Tally) -> None:
        self.config, self.clock, self.tally = config, clock, tally
        self.lease = timedelta(seconds=config.lease)
        self.crashed = 0

    def fails(self, message: Mapping[str, Any]) -> bool:
        key = str((message.get("payload") or {}).get("sim", message["_id"]))
        return send_fails(self.config.seed, key, message["attempts"], self.config)

    def crash(self, scheduler: Any) -> None:
        """Let a doomed worker claim a batch and vanish; only its lease expiry frees it."""
        if self.crashed < self.config.crashes:
            got = scheduler.claim_due(f"crashed-{self.crashed}", limit=self.config.batch,
                                      lease=self.lease)
            self.crashed += bool(got)
            self.tally.outcomes["crashed_claims"] += len(got)

    def work(self, worker: str) -> Generator[Call, Any, None]:
        """Yield one worker's scheduler calls for a tick; both drivers run it.

        An empty claim ends the worker's tick: either nothing is due or a
        faster worker took the candidates (and that one keeps draining).
        """
        claim = Call("claim_due", (worker,), {"limit": self.config.batch, "lease": self.lease})
        while batch := (yield claim):
            results = []
            for message in batch:
                if self.fails(message):
                    doc = yield Call("mark_failed", (message, worker, SEND_ERROR))
                    results.append("failed" if doc["status"] == "failed" else "retried")
                else:
                    yield Call("mark_sent", (message, worker))
                    results.append("sent")
            self.tally.record(self.clock.now(), batch, results)

    def drain(self, scheduler: Any, worker: str) -> None:
        flow, result = self.work(worker), None
        with suppress(StopIteration):
            while True:
                call = flow.send(result)
                result = getattr(scheduler, call.method)(*call.args, **call.kwargs)

    async def drain_async(self, scheduler: Any, worker: str) -> None:
        flow, result = self.work(worker), None
        with suppress(StopIteration):
            while True:
                call = flow.send(result)
                result = await getattr(scheduler, call.method)(*call.args, **call.kwargs)

    def finished(self, ticks: int) -> bool:
        if self.tally.done >= self.config.total:
            return True
        if ticks >= max_ticks(self.config):
            logger.error("simulation stopped after %d ticks with %d of %d messages finished",
                         ticks, self.tally.done, self.config.total)
            return True
        return False


def drive_threads(workers: Workers, scheduler: Any) -> int:
    """Tick the clock and let ``config.workers`` threads drain each tick; return the ticks."""
    names = [f"worker-{k}" for k in range(workers.config.workers)]
    ticks = 0
    with ThreadPoolExecutor(len(names), thread_name_prefix="nsn-sim") as pool:
        while not workers.finished(ticks):
            workers.clock.advance(seconds=workers.config.tick)
            ticks += 1
            workers.crash(scheduler)
            for future in [pool.submit(workers.drain, scheduler, name) for name in names]:
                future.result()
    return ticks


async def drive_asyncio(workers: Workers, scheduler: Any, crasher: Any) -> int:
    """Tick the clock and let ``config.workers`` asyncio tasks drain each tick."""
    names = [f"task-{k}" for k in range(workers.config.workers)]
    ticks = 0
    while not workers.finished(ticks):
        workers.clock.advance(seconds=workers.config.tick)
        ticks += 1
        workers.crash(crasher)
        await asyncio.gather(*(workers.drain_async(scheduler, name) for name in names))
    return ticks


def drive(db: Any, async_db: Any, workers: Workers, counter: Any) -> int:
    """Run the workers in ``config.mode`` until every message is finished; return the ticks.

    The sync scheduler also serves the asyncio mode as the crashing worker.
    """
    from nsn_store.scheduler import Scheduler

    config = workers.config
    # Time is virtual here, not the server's: the scheduler must not correct it.
    sync = Scheduler(db, clock=workers.clock, counter=counter, max_attempts=config.max_attempts,
                     rng=random.Random(config.seed), server_time=False)
    if config.mode == "threads":
        return drive_threads(workers, sync)
    return asyncio.run(_drive_async(db, async_db, workers, sync))


async def _drive_async(db: Any, async_db: Any, workers: Workers, crasher: Any) -> int:
    from nsn_store.counters import AsyncShardedCounter
    from nsn_store.scheduler import AsyncScheduler

    config, clock = workers.config, workers.clock
    adb = async_db if async_db is not None else _async_twin(db)  # opened inside the loop
    counter = AsyncShardedCounter(adb, clock=clock, rng=random.Random(config.seed + 2))
    scheduler = AsyncScheduler(adb, clock=clock, counter=counter,
                               max_attempts=config.max_attempts, rng=random.Random(config.seed),
                               server_time=False)
    try:
        return await drive_asyncio(workers, scheduler, crasher)
    finally:
        if async_db is None and not _is_mongomock(db.client):
            await adb.client.close()


def _async_twin(db: Any) -> Any:
    """Open ``db`` through an async driver: mongomock-motor or PyMongo's AsyncMongoClient."""
    if _is_mongomock(db.client):
        from nsn_store.testing import async_client

        return async_client(db.client)[db.name]
    from pymongo import AsyncMongoClient

    kwargs = dict(getattr(db.client, "_init_kwargs", {}))
    kwargs.pop("connect", None)
    return AsyncMongoClient(**kwargs)[db.name]


def _is_mongomock(client: Any) -> bool:
    return any(cls.__module__.startswith("mongomock") for cls in type(client).__mro__)
