"""Periodic jobs: each period of each job runs once across every worker process.

A job runs every ``every`` (periods are aligned to 1970-01-01 UTC, so a daily
job's periods start at midnight UTC and an hourly one's on the hour). Its runs
are documents in ``jobRuns`` whose ``_id`` is ``"<job>|<period start>"``: a
worker takes a period by *inserting* that document, so when several try at
once the unique ``_id`` lets exactly one in. The documents of a job form a
chain: each one starts where the newest one ends, so every period belongs to
exactly one document, a run (``running``, then ``succeeded`` or ``failed``) or
a ``skipped`` range. What a worker does at each look (:func:`plan`, pure):

- **nothing** while the newest run is ``running`` under a live lease (runs of
  one job never overlap), or when the current period is already done;
- **take over** a ``running`` run whose lease (``leaseUntil``) has passed: its
  holder crashed, so the first worker to swap in its own id and lease (one
  atomic ``find_one_and_update`` on the old holder and lease) runs it again;
- otherwise **run** the next period, after recording as one ``skipped`` range
  the periods that came due while the previous run, started on time, was
  still running (an overrun makes the next periods skip, they do not pile up;
  after a late run, a catch-up or a takeover, they count as missed) and the missed
  periods beyond the catch-up bound: after downtime at most ``catch_up``
  periods run late, the newest ones, oldest first, back to back.

A holder renews its lease with each heartbeat (one ``update_many`` for every
run it holds); a finished run records its outcome only while it still holds
the lease. A run whose holder dies part way is run again by another worker:
periodic jobs are at least once per period on a crash and exactly once
otherwise, so write them to be safe to repeat (the built-in ones are).

Built-in jobs (:class:`PeriodicJobs`): the aggregates rollup, counter
reconcile, and retention (off by default).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Final, Literal

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store._flow import Flow, Op
from nsn_store.aggregates import Aggregates
from nsn_store.arguments import check_duration, check_limit, check_text
from nsn_store.clock import Clock, to_bson_time
from nsn_store.counters import ShardedCounter
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError
from nsn_store.masking import mask_text

__all__ = [
    "JOB_RUNS",
    "JobClaim",
    "JobContext",
    "JobResult",
    "PeriodicJob",
    "PeriodicJobs",
    "Plan",
    "claim_period",
    "extend_job_leases",
    "finish_period",
    "period_key",
    "period_start",
    "plan",
]

log = logging.getLogger("nsn_store.worker")

JOB_RUNS: Final = "jobRuns"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS: Final = timedelta(milliseconds=1)
MIN_EVERY: Final = timedelta(seconds=1)
MAX_EVERY: Final = timedelta(days=366)
#: The most missed periods a job may run late after downtime.
MAX_CATCH_UP: Final = 1000
#: The default catch-up bound of a registered job.
DEFAULT_CATCH_UP: Final = 3
#: The longest error text a failed run keeps (the collection's bound).
MAX_ERROR: Final = 2000
#: The youngest age retention accepts: older than any month the rollup recomputes.
MIN_RETENTION: Final = timedelta(days=35)

ROLLUP: Final = "aggregates.rollup"
RECONCILE: Final = "counters.reconcile"
RETENTION: Final = "retention"
#: Counter metrics the scheduler bumps, and the messages each one counts.
RECONCILED: Final[Mapping[str, Mapping[str, Any]]] = {
    "messages.scheduled": {},
    "messages.sent": {"status": "sent"},
    "messages.failed": {"status": "failed"},
    "messages.cancelled": {"status": "cancelled"},
}
FINISHED: Final = ("sent", "failed", "cancelled")


# ---------------------------------------------------------------- periods (pure)


def period_start(moment: datetime, every: timedelta) -> datetime:
    """Return the start of the period of length ``every`` holding ``moment`` (epoch-aligned)."""
    step = every // _MS
    offset = (to_bson_time(moment) - EPOCH) // _MS
    return EPOCH + timedelta(milliseconds=offset - offset % step)


def period_after(moment: datetime, every: timedelta) -> datetime:
    """Return the first period start at or after ``moment``."""
    start = period_start(moment, every)
    return start if start == to_bson_time(moment) else start + every


def period_key(job: str, start: datetime) -> str:
    """Return a run's ``_id``: ``"<job>|<period start as ISO-8601 UTC, milliseconds>"``."""
    start = to_bson_time(start)
    return f"{job}|{start:%Y-%m-%dT%H:%M:%S}.{start.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Plan:
    """What one look at a job decides: skip a range, run a period, take one over, or wait."""

    skip: tuple[datetime, datetime] | None = None
    run: datetime | None = None
    take_over: Mapping[str, Any] | None = None

    @property
    def waits(self) -> bool:
        """Return whether there is nothing to do now."""
        return self.skip is None and self.run is None and self.take_over is None


def plan(every: timedelta, catch_up: int, latest: Mapping[str, Any] | None, now: datetime) -> Plan:
    """Decide what to do for a job whose newest run document is ``latest`` (see the module)."""
    current = period_start(now, every)
    if latest is None:
        return Plan(run=current)  # a new job starts now: no history to catch up
    if latest["outcome"] == "running":
        if _aware(latest["leaseUntil"]) > now:
            return Plan()
        return Plan(take_over=latest)
    after = _aware(latest["periodEnd"])
    start = period_after(after, every)
    if _overran_into(latest, start):
        # The periods that came due while the previous run ran are skipped, not piled up.
        start = period_after(_aware(latest["finishedAt"]), every)
    start = max(start, current - (catch_up - 1) * every)  # the catch-up bound
    if start > current:
        return Plan(skip=(after, start)) if start > after else Plan()
    return Plan(skip=(after, start) if start > after else None, run=start)


def _overran_into(latest: Mapping[str, Any], start: datetime) -> bool:
    """Return whether the run ``latest`` was still running when period ``start`` came due."""
    started, finished = latest.get("startedAt"), latest.get("finishedAt")
    if latest["outcome"] == "skipped" or started is None or finished is None:
        return False
    return _aware(started) <= start < _aware(finished)


def _aware(value: datetime) -> datetime:
    return to_bson_time(value)


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobContext:
    """What a job's function gets: its period, the database, the clock and the previous run.

    ``previous`` is the job's newest run document before this one (None for a
    job's first run and for a run taken over from a crashed worker).
    """

    job: str
    period_start: datetime
    period_end: datetime
    started_at: datetime
    worker_id: str
    db: Any
    clock: Clock
    previous: Mapping[str, Any] | None = None
    taken_over: bool = False


JobFunction = Callable[[JobContext], Any]


@dataclass(frozen=True)
class PeriodicJob:
    """A job: its name, its period, its function and its catch-up bound.

    ``func`` is a plain function (the :class:`~nsn_store.Worker` calls it; the
    :class:`~nsn_store.AsyncWorker` runs it in a thread), a coroutine function
    (awaited by the AsyncWorker) or a generator function returning a flow of
    database calls (:mod:`nsn_store._flow`; run by either worker on its own
    database). ``async_func``, if given, is what the AsyncWorker runs instead.
    """

    name: str
    every: timedelta
    func: JobFunction
    catch_up: int = DEFAULT_CATCH_UP
    async_func: JobFunction | None = None

    def __post_init__(self) -> None:
        check_text(self.name, "name", maximum=200)
        if "|" in self.name:
            raise InvalidArgumentError("a job name must not contain '|'", argument="name")
        every = check_duration(self.every, "every", minimum=MIN_EVERY, maximum=MAX_EVERY)
        if every % _MS:
            raise InvalidArgumentError("every must be whole milliseconds", argument="every")
        object.__setattr__(self, "every", every)
        check_limit(self.catch_up, "catch_up", maximum=MAX_CATCH_UP)
        for name in ("func", "async_func"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise InvalidArgumentError(f"{name} must be callable", argument=name)

    def runs_as(self, asynchronous: bool) -> tuple[Literal["flow", "coroutine", "call"], Any]:
        """Return how a worker runs this job (a flow, a coroutine, or a plain call) and what."""
        func = (self.async_func or self.func) if asynchronous else self.func
        if inspect.isgeneratorfunction(func):
            return "flow", func
        if inspect.iscoroutinefunction(func):
            if not asynchronous:
                raise InvalidArgumentError(
                    f"job {self.name!r} is a coroutine function: run it with AsyncWorker",
                    argument="func",
                )
            return "coroutine", func
        return "call", func


_DEFAULT: Any = object()


class PeriodicJobs:
    """The jobs a worker runs: the built-in ones, and yours (``register`` or ``@jobs.job``).

    - ``rollup_every`` (default 5 minutes; None: off): the aggregates rollup of
      every tenant: day rows of the days since the previous run (today's during
      the day, yesterday's final ones after midnight UTC), and at the first run
      of each UTC day the week and month rows holding yesterday.
    - ``reconcile_every`` (default hourly; None: off): counter reconcile of the
      scheduler's message metrics that have counters, against the messages.
    - ``retention`` (default None: off): delete finished messages (sent, failed,
      cancelled) last changed, events created, and job runs ended longer ago
      than this age (at least 35 days), every ``retention_every`` (hourly).
      Retention deletes what reconcile counts, so with retention on,
      reconcile is off unless asked for explicitly (which is refused).
    """

    def __init__(
        self,
        *,
        rollup_every: timedelta | float | None = timedelta(minutes=5),
        reconcile_every: timedelta | float | None = _DEFAULT,
        retention: timedelta | float | None = None,
        retention_every: timedelta | float = timedelta(hours=1),
    ) -> None:
        self._jobs: dict[str, PeriodicJob] = {}
        if retention is not None and reconcile_every not in (_DEFAULT, None):
            raise InvalidArgumentError(
                "counter reconcile counts the messages retention deletes: "
                "pass reconcile_every=None with retention",
                argument="reconcile_every",
            )
        if reconcile_every is _DEFAULT:
            reconcile_every = None if retention is not None else timedelta(hours=1)
        if rollup_every is not None:
            self.register(ROLLUP, _rollup, every=rollup_every, catch_up=1)
        if reconcile_every is not None:
            self.register(RECONCILE, _reconcile, every=reconcile_every, catch_up=1)
        if retention is not None:
            age = check_duration(
                retention, "retention", minimum=MIN_RETENTION, maximum=timedelta(days=36_500)
            )
            self.register(RETENTION, _retention(age, self), every=retention_every, catch_up=1)

    @classmethod
    def none(cls) -> PeriodicJobs:
        """Return a set with no job at all (not even the built-in ones)."""
        return cls(rollup_every=None, reconcile_every=None)

    def register(
        self,
        name: str,
        func: JobFunction,
        *,
        every: timedelta | float,
        catch_up: int = DEFAULT_CATCH_UP,
        async_func: JobFunction | None = None,
    ) -> PeriodicJob:
        """Add a job running ``func(context)`` every ``every``; return it.

        ``catch_up`` (1 to 1000, default 3) bounds how many missed periods run
        late after downtime. Names are unique (1-200 characters, no ``|``).
        """
        job = PeriodicJob(name, every, func, catch_up, async_func)  # type: ignore[arg-type]
        if job.name in self._jobs:
            raise InvalidArgumentError(f"a job named {name!r} is registered", argument="name")
        self._jobs[job.name] = job
        return job

    def job(
        self, *, every: timedelta | float, name: str | None = None, catch_up: int = DEFAULT_CATCH_UP
    ) -> Callable[[JobFunction], JobFunction]:
        """Register the decorated function as a job (named after the function by default)."""

        def decorate(func: JobFunction) -> JobFunction:
            self.register(name or func.__name__, func, every=every, catch_up=catch_up)
            return func

        return decorate

    def __iter__(self) -> Iterator[PeriodicJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def __getitem__(self, name: str) -> PeriodicJob:
        return self._jobs[name]

    @property
    def names(self) -> list[str]:
        """Return the registered job names, in registration order."""
        return list(self._jobs)

    def next_start(self, now: datetime) -> datetime | None:
        """Return when the next period of any job starts (after ``now``)."""
        starts = [period_start(now, job.every) + job.every for job in self._jobs.values()]
        return min(starts, default=None)


# ---------------------------------------------------------------- the flows


@dataclass(frozen=True)
class JobClaim:
    """A period a worker holds: the run document's key, its period and lease."""

    job: str
    key: str
    period_start: datetime
    period_end: datetime
    started_at: datetime
    previous: Mapping[str, Any] | None = None
    taken_over: bool = False


@dataclass(frozen=True)
class JobResult:
    """How one run ended: its job and period, outcome, error, and whether it was recorded."""

    job: str
    period_start: datetime
    outcome: Literal["succeeded", "failed"]
    error: str | None = None
    recorded: bool = True
    taken_over: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values."""
        return {
            "job": self.job,
            "period_start": self.period_start.isoformat(),
            "outcome": self.outcome,
            "error": self.error,
            "recorded": self.recorded,
            "taken_over": self.taken_over,
        }


def latest_query(job: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return the find of a job's newest run document (served by ``job_1_periodStart_-1``)."""
    return ({"job": job},), {"sort": [("periodStart", -1)], "limit": 1}


def claim_period(
    job: PeriodicJob, worker_id: str, now: datetime, lease: timedelta
) -> Flow[JobClaim | None]:
    """Look at ``job`` once: take a period to run (or a crashed one over), or return None.

    One ``find`` of the newest run, then at most two writes: a skipped range
    and the run, each an insert whose ``_id`` only one worker can win.
    """
    args, kwargs = latest_query(job.name)
    found = yield Op("find", JOB_RUNS, args, kwargs)
    latest = found[0] if found else None
    decided = plan(job.every, job.catch_up, latest, now)
    if decided.take_over is not None:
        return (yield from _take_over(job, decided.take_over, worker_id, now, lease))
    if decided.skip is not None:
        first, end = decided.skip
        skipped = run_document(job.name, first, end, worker_id, now, now, outcome="skipped")
        if not (yield from _insert(skipped)):
            return None  # another worker recorded this stretch first; look again later
        log.info("job %s: skipped %s to %s", job.name, first.isoformat(), end.isoformat())
    if decided.run is None:
        return None
    end = decided.run + job.every
    document = run_document(job.name, decided.run, end, worker_id, now, now + lease)
    if not (yield from _insert(document)):
        return None
    return JobClaim(job.name, document["_id"], decided.run, end, now, latest)


def run_document(
    job: str,
    start: datetime,
    end: datetime,
    holder: str,
    now: datetime,
    lease_until: datetime,
    *,
    outcome: str = "running",
) -> dict[str, Any]:
    """Return a run (or, with ``outcome="skipped"``, a skipped range) document."""
    document: dict[str, Any] = {
        "_id": period_key(job, start),
        "job": job,
        "periodStart": to_bson_time(start),
        "periodEnd": to_bson_time(end),
        "holder": holder,
        "leaseUntil": to_bson_time(lease_until),
        "startedAt": to_bson_time(now),
        "outcome": outcome,
    }
    if outcome != "running":
        document["finishedAt"] = to_bson_time(now)
    return document


def _insert(document: Mapping[str, Any]) -> Flow[bool]:
    try:
        yield Op("insert_one", JOB_RUNS, (dict(document),))
    except DuplicateKeyError:
        return False
    return True


def _take_over(
    job: PeriodicJob, running: Mapping[str, Any], worker_id: str, now: datetime, lease: timedelta
) -> Flow[JobClaim | None]:
    """Swap a crashed holder's lease for ours (only if nobody renewed or took it since)."""
    guard = {
        "_id": running["_id"],
        "outcome": "running",
        "holder": running["holder"],
        "leaseUntil": running["leaseUntil"],
    }
    update = {
        "$set": {
            "holder": worker_id,
            "leaseUntil": to_bson_time(now + lease),
            "startedAt": to_bson_time(now),
        }
    }
    won = yield Op(
        "find_one_and_update",
        JOB_RUNS,
        (guard, update),
        {"return_document": ReturnDocument.AFTER},
    )
    if won is None:
        return None
    log.warning(
        "job %s: took over period %s from %s (its lease ended)",
        job.name,
        _aware(won["periodStart"]).isoformat(),
        running["holder"],
    )
    start, end = _aware(won["periodStart"]), _aware(won["periodEnd"])
    return JobClaim(job.name, won["_id"], start, end, now, None, taken_over=True)


def finish_period(claim: JobClaim, worker_id: str, now: datetime, error: str | None) -> Flow[bool]:
    """Record how a run ended, if this worker still holds it; return whether it did."""
    fields: dict[str, Any] = {
        "outcome": "succeeded" if error is None else "failed",
        "finishedAt": to_bson_time(now),
    }
    if error is not None:
        fields["error"] = error[:MAX_ERROR]
    result = yield Op(
        "update_one",
        JOB_RUNS,
        ({"_id": claim.key, "holder": worker_id, "outcome": "running"}, {"$set": fields}),
    )
    return bool(result.matched_count)


def extend_job_leases(
    claims: Sequence[JobClaim], worker_id: str, now: datetime, lease: timedelta
) -> Flow[None]:
    """Renew the lease of every run this worker holds, in one write."""
    if claims:
        yield Op(
            "update_many",
            JOB_RUNS,
            (
                {
                    "_id": {"$in": [c.key for c in claims]},
                    "holder": worker_id,
                    "outcome": "running",
                },
                {"$set": {"leaseUntil": to_bson_time(now + lease)}},
            ),
        )


def error_text(exc: BaseException) -> str:
    """Return what a failed run records: the exception's type and message, masked, bounded."""
    return mask_text(f"{type(exc).__name__}: {exc}")[:MAX_ERROR]


# ---------------------------------------------------------------- built-in jobs


def tenant_ids() -> Flow[list[ObjectId]]:
    """Return every tenant's id (one ``find``)."""
    found = yield Op("find", "tenants", ({}, {"_id": 1}))
    return [doc["_id"] for doc in found]


@dataclass(frozen=True)
class RollupCall:
    """One rollup call: the period kind and the window whose whole periods it recomputes."""

    period: str
    start: datetime
    end: datetime


def rollup_windows(context: JobContext) -> list[RollupCall]:
    """Return the rollups one run makes (pure).

    Day rows from the UTC day the previous run's period started in (so events
    written after that run are counted; yesterday's rows get their final count
    at the first run after midnight); with no previous run, from yesterday. At
    the first run of a UTC day, also the week and month rows holding yesterday.
    """
    previous = context.previous
    every = context.period_end - context.period_start
    if previous is None:
        anchor = context.period_start - timedelta(days=1)
    elif previous["outcome"] == "succeeded":
        anchor = _aware(previous["periodStart"])  # it ran at or after its period's start
    else:  # a failed run or a skipped range: go back to the run before it
        anchor = _aware(previous["periodStart"]) - every
    today = _midnight(context.period_start)
    first = min(_midnight(anchor), today)
    windows = [RollupCall("day", first, max(context.period_end, today + _MS))]
    if first < today:
        windows += [RollupCall(p, today - timedelta(days=1), today) for p in ("week", "month")]
    return windows


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(_aware(moment).date(), time(), tzinfo=timezone.utc)


def _rollup(context: JobContext) -> Flow[int]:
    """The aggregates rollup: every tenant, the windows of :func:`rollup_windows` (a flow)."""
    aggregates = Aggregates(context.db, clock=context.clock)
    tenants = yield from tenant_ids()
    for tenant in tenants:
        for call in rollup_windows(context):
            yield from aggregates.rollup_flow(tenant, call.period, start=call.start, end=call.end)
    return len(tenants)


def _reconcile(context: JobContext) -> Flow[int]:
    """Counter reconcile: each scheduler metric that has counters, against its messages."""
    counter = ShardedCounter(context.db, clock=context.clock)
    pairs = yield Op(
        "aggregate",
        "counters",
        (
            [
                {"$match": {"metric": {"$in": sorted(RECONCILED)}}},
                {"$group": {"_id": {"tenantId": "$tenantId", "metric": "$metric"}}},
            ],
        ),
    )
    repaired = 0
    for pair in sorted(pairs, key=lambda p: (str(p["_id"]["tenantId"]), p["_id"]["metric"])):
        tenant, metric = pair["_id"]["tenantId"], pair["_id"]["metric"]
        result = yield from counter.reconcile_flow(
            tenant, metric, source="scheduledMessages", filter=dict(RECONCILED[metric])
        )
        repaired += int(result.repaired)
    return repaired


@dataclass
class _Retention:
    """Retention: delete what finished longer than ``age`` ago, tenant by tenant."""

    age: timedelta
    jobs: PeriodicJobs = field(repr=False)

    def __call__(self, context: JobContext) -> Flow[int]:
        cutoff = to_bson_time(context.started_at - self.age)
        deleted = 0
        for tenant in (yield from tenant_ids()):
            finished = {"status": {"$in": list(FINISHED)}, "updatedAt": {"$lt": cutoff}}
            for collection, query in (
                ("scheduledMessages", finished),
                ("messageEvents", {"createdAt": {"$lt": cutoff}}),
            ):
                result = yield Op("delete_many", collection, ({"tenantId": tenant, **query},))
                deleted += result.deleted_count
        for job in self.jobs:
            # Keep the periods a look at the job may still read: only runs older than
            # the previous period go (a job's chain restarts safely at "now" without them).
            keep_from = min(cutoff, period_start(context.started_at, job.every) - job.every)
            result = yield Op(
                "delete_many",
                JOB_RUNS,
                (
                    {
                        "job": job.name,
                        "outcome": {"$ne": "running"},
                        "periodEnd": {"$lt": keep_from},
                    },
                ),
            )
            deleted += result.deleted_count
        return deleted


def _retention(age: timedelta, jobs: PeriodicJobs) -> JobFunction:
    retention = _Retention(age, jobs)

    def retention_job(context: JobContext) -> Flow[int]:
        return (yield from retention(context))

    return retention_job
