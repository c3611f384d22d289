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

import asyncio
import hashlib
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from bson import ObjectId

from nsn_store.clock import ManualClock
from nsn_store.errors import ConfigurationError
from nsn_store.scheduling import DEFAULT_BASE_BACKOFF

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SimulationConfig:
    """The scenario: sizes, timeline, workers, failure model and seed."""

    tenants: int = 20
    messages_per_tenant: int = 500
    spread: float = 600.0  # seconds over which sendAt is spread
    workers: int = 4
    mode: Literal["threads", "asyncio"] = "threads"
    failure_rate: float = 0.05  # share of first attempts that fail
    retry_success_rate: float = 0.8  # share of retries that succeed
    seed: int = 42
    batch: int = 50  # claim_due limit
    lease: float = 120.0  # seconds
    tick: float = 60.0  # seconds between cron runs
    contacts_per_tenant: int = 10
    max_attempts: int = 5
    crashes: int = 0  # workers that claim a batch and die without marking it

    def __post_init__(self) -> None:
        ones = ("tenants", "messages_per_tenant", "workers", "batch", "contacts_per_tenant",
                "max_attempts")
        problems = [f"{name} must be at least 1" for name in ones if getattr(self, name) < 1]
        problems += [f"{name} must be positive" for name in ("lease", "tick")
                     if getattr(self, name) <= 0]
        problems += [f"{name} must be between 0 and 1" for name in
                     ("failure_rate", "retry_success_rate") if not 0 <= getattr(self, name) <= 1]
        problems += [f"{name} must not be negative" for name in ("spread", "crashes")
                     if getattr(self, name) < 0]
        if self.mode not in ("threads", "asyncio"):
            problems.append(f"mode must be 'threads' or 'asyncio', not {self.mode!r}")
        if problems:
            raise ConfigurationError("invalid simulation: " + "; ".join(problems))

    @property
    def total(self) -> int:
        return self.tenants * self.messages_per_tenant


@dataclass
class SimulationReport:
    """What a run did: counts, lag in virtual seconds, wall-clock throughput."""

    config: SimulationConfig
    total: int
    sent: int
    failed: int
    retries: int
    claims: int
    duplicates: int
    lost: int
    lag_p50: float
    lag_p95: float
    lag_max: float
    ticks: int
    virtual_seconds: float
    seed_seconds: float
    run_seconds: float
    rollup_seconds: float
    wall_seconds: float
    counters: dict[str, int] = field(default_factory=dict)
    aggregate_rows: int = 0
    crashed_claims: int = 0

    @property
    def throughput(self) -> float:
        """Finished messages (sent or failed for good) per wall second of the worker phase."""
        return (self.sent + self.failed) / self.run_seconds if self.run_seconds else 0.0

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.lost == 0 and self.sent + self.failed == self.total

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = asdict(self.config)
        data["throughput"] = round(self.throughput, 1)
        data["ok"] = self.ok
        return data


# --- pure helpers ------------------------------------------------------------


def send_fails(seed: int, key: str, attempt: int, config: SimulationConfig) -> bool:
    """Decide whether attempt ``attempt`` of message ``key`` fails (deterministic)."""
    digest = hashlib.blake2b(f"{seed}:{key}:{attempt}".encode(), digest_size=8).digest()
    draw = int.from_bytes(digest, "big") / 2**64
    if attempt <= 1:
        return draw < config.failure_rate
    return draw >= config.retry_success_rate


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank ``q`` percentile (0..100) of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def max_ticks(config: SimulationConfig) -> int:
    """Bound the run: the spread, every backoff step, a lost lease per crash, plus slack."""
    base = DEFAULT_BASE_BACKOFF.total_seconds()
    backoff = sum(base * 2 ** k for k in range(config.max_attempts))
    horizon = config.spread + backoff + config.lease * (config.crashes + 1)
    return int(horizon / config.tick) + 10


Documents = dict[str, list[dict[str, Any]]]


def build_seed(config: SimulationConfig, run: str, now: datetime) -> Documents:
    """Build every document of the run, by collection, from ``random.Random(config.seed)``."""
    rng = random.Random(config.seed)
    docs: Documents = {name: [] for name in SEEDED}
    for t in range(config.tenants):
        for name, batch in _tenant_documents(config, rng, run, t, now).items():
            docs[name].extend(batch)
    return docs


SEEDED = ("tenants", "contacts", "templates", "workflows", "workflowSteps", "scheduledMessages")


def _tenant_documents(config: SimulationConfig, rng: random.Random, run: str, t: int,
                      now: datetime) -> Documents:
    from nsn_store.scheduling import new_message

    tid = ObjectId()
    tenant = {"_id": tid, "name": f"Simulated clinic {t}", "plan": "simulation",
              "clerkOrgId": f"sim_{run}_{t}", "createdAt": now}
    contacts: list[dict[str, Any]] = [
        {"_id": ObjectId(), "tenantId": tid, "firstName": f"Patient{c}", "lastName": f"Clinic{t}",
         "phone": f"+1555{t:03d}{c:04d}", "email": f"patient{c}@clinic{t}.example",
         "createdAt": now}
        for c in range(config.contacts_per_tenant)]
    templates = [
        {"_id": ObjectId(), "tenantId": tid, "name": "Reminder SMS", "channel": "sms",
         "body": "Hi {{firstName}}, see you tomorrow at {{time}}.", "createdAt": now},
        {"_id": ObjectId(), "tenantId": tid, "name": "Reminder email", "channel": "email",
         "subject": "Your appointment", "body": "Dear {{firstName}}, see you at {{time}}.",
         "createdAt": now},
    ]
    workflow = {"_id": ObjectId(), "tenantId": tid, "name": "Appointment reminders",
                "createdAt": now}
    steps: list[dict[str, Any]] = [
        {"_id": ObjectId(), "workflowId": workflow["_id"], "tenantId": tid, "order": i,
         "channel": tpl["channel"], "delaySeconds": delay, "templateId": tpl["_id"],
         "useAi": False, "createdAt": now}
        for i, (tpl, delay) in enumerate(zip(templates, (0, 3600)))]
    messages = []
    for m in range(config.messages_per_tenant):
        step, contact = rng.choice(steps), rng.choice(contacts)
        send_at = now + timedelta(seconds=rng.uniform(0, config.spread))
        # payload.sim is the message's stable name: the failure draw hashes it.
        messages.append(new_message(tid, contact["_id"], step["channel"], send_at, now,
                                    payload={"sim": f"{t}:{m}"}, workflow_step_id=step["_id"],
                                    template_id=step["templateId"]))
    return {"tenants": [tenant], "contacts": contacts, "templates": templates,
            "workflows": [workflow], "workflowSteps": steps, "scheduledMessages": messages}


def seed_database(db: Any, docs: Documents, counter: Any, now: datetime) -> None:
    """Insert the seeded documents with their ``queued`` events and scheduled counts.

    This writes what ``Scheduler.schedule`` writes, built by the same builders,
    but in batches: seeding 50,000 messages one call at a time would dominate the
    run and is not what the simulation measures.
    """
    from nsn_store.scheduling import new_event

    for name in SEEDED:
        for chunk in _chunks(docs[name], 1000):
            db[name].insert_many(chunk)
            if name == "scheduledMessages":
                db["messageEvents"].insert_many(
                    [new_event(m["tenantId"], "queued", now, message_id=m["_id"]) for m in chunk])
    per_tenant = Counter(m["tenantId"] for m in docs["scheduledMessages"])
    for tenant_id, count in per_tenant.items():
        counter.add(tenant_id, "messages.scheduled", count)


# --- the run -----------------------------------------------------------------


@dataclass
class _Tally:
    """What the workers saw, merged under a lock."""

    total: int
    progress: Progress | None
    lags: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[ObjectId] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> int:
        return self.outcomes["sent"] + self.outcomes["failed"]

    def record(self, now: datetime, batch: list[Mapping[str, Any]], results: list[str]) -> None:
        """Merge one claimed batch: its lags, outcomes and deliveries."""
        with self.lock:
            self.lags.extend((now - m["sendAt"]).total_seconds() for m in batch)
            self.outcomes.update(results)
            self.outcomes["claims"] += len(batch)
            self.deliveries.update(m["_id"] for m, r in zip(batch, results) if r == "sent")
            if self.progress is not None and {"sent", "failed"} & set(results):
                self.progress(self.done, self.total)


@dataclass(frozen=True)
class Call:
    """One scheduler method call of a worker."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


class _Workers:
    """The sender pool: drains what is due at each tick through one scheduler."""

    def __init__(self, config: SimulationConfig, clock: ManualClock, tally: _Tally) -> None:
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
                    doc = yield Call("mark_failed", (message["_id"], worker, SEND_ERROR))
                    results.append("failed" if doc["status"] == "failed" else "retried")
                else:
                    yield Call("mark_sent", (message["_id"], worker))
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


SEND_ERROR = "simulated provider error"


def drive_threads(workers: _Workers, scheduler: Any) -> int:
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


async def drive_asyncio(workers: _Workers, scheduler: Any, crasher: Any) -> int:
    """Tick the clock and let ``config.workers`` asyncio tasks drain each tick."""
    names = [f"task-{k}" for k in range(workers.config.workers)]
    ticks = 0
    while not workers.finished(ticks):
        workers.clock.advance(seconds=workers.config.tick)
        ticks += 1
        workers.crash(crasher)
        await asyncio.gather(*(workers.drain_async(scheduler, name) for name in names))
    return ticks


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


METRICS = ("messages.scheduled", "messages.sent", "messages.retried", "messages.failed")


def run_simulation(
    db: Any, config: SimulationConfig | None = None, *, progress: Progress | None = None,
    async_db: Any = None,
) -> SimulationReport:
    """Seed a scenario on ``db``, drive workers through it and report what happened.

    ``async_db`` (asyncio mode) is the same database through an async driver;
    by default it is derived from ``db`` (mongomock-motor over the embedded
    store, PyMongo's ``AsyncMongoClient`` for a server).
    """
    from nsn_store.counters import ShardedCounter
    from nsn_store.migration import init_schema

    config = config or SimulationConfig()
    began = time.perf_counter()
    init_schema(db)  # writes nothing when the schema is already there
    clock = ManualClock(START)
    counter = ShardedCounter(db, clock=clock, rng=random.Random(config.seed + 1))
    docs = build_seed(config, uuid.uuid4().hex[:8], clock.now())
    tenants = [t["_id"] for t in docs["tenants"]]
    seed_seconds = _timed(lambda: seed_database(db, docs, counter, clock.now()))
    tally = _Tally(config.total, progress)
    workers = _Workers(config, clock, tally)
    start = time.perf_counter()
    ticks = _drive(db, async_db, workers, counter)
    run_seconds = time.perf_counter() - start
    found = verify(db, tenants, tally.deliveries)
    rows: list[int] = []
    rollup_seconds = _timed(lambda: rows.append(rollup(db, clock, tenants)))
    return SimulationReport(
        config=config, total=config.total, sent=found["sent"], failed=found["failed"],
        retries=tally.outcomes["retried"], claims=tally.outcomes["claims"],
        duplicates=found["duplicates"], lost=found["lost"],
        lag_p50=percentile(tally.lags, 50), lag_p95=percentile(tally.lags, 95),
        lag_max=max(tally.lags, default=0.0), ticks=ticks,
        virtual_seconds=(clock.now() - START).total_seconds(), seed_seconds=seed_seconds,
        run_seconds=run_seconds, rollup_seconds=rollup_seconds,
        wall_seconds=time.perf_counter() - began,
        counters={m: sum(counter.count(t, m) for t in tenants) for m in METRICS},
        aggregate_rows=rows[0], crashed_claims=tally.outcomes["crashed_claims"],
    )


def _drive(db: Any, async_db: Any, workers: _Workers, counter: Any) -> int:
    from nsn_store.scheduler import Scheduler

    config = workers.config
    sync = Scheduler(db, clock=workers.clock, counter=counter, max_attempts=config.max_attempts,
                     rng=random.Random(config.seed))
    if config.mode == "threads":
        return drive_threads(workers, sync)
    return asyncio.run(_drive_async(db, async_db, workers, sync))


async def _drive_async(db: Any, async_db: Any, workers: _Workers, crasher: Any) -> int:
    from nsn_store.counters import AsyncShardedCounter
    from nsn_store.scheduler import AsyncScheduler

    config, clock = workers.config, workers.clock
    adb = async_db if async_db is not None else _async_twin(db)  # opened inside the loop
    counter = AsyncShardedCounter(adb, clock=clock, rng=random.Random(config.seed + 2))
    scheduler = AsyncScheduler(adb, clock=clock, counter=counter,
                               max_attempts=config.max_attempts, rng=random.Random(config.seed))
    try:
        return await drive_asyncio(workers, scheduler, crasher)
    finally:
        if async_db is None and not _is_mongomock(db.client):
            await adb.client.close()


def _timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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
