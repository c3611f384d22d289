"""What both workers share: options, the report, wake-up times and send outcomes.

Pure: nothing here touches the database or a thread, so :class:`Worker`
(threads) and :class:`AsyncWorker` (asyncio tasks) make the same decisions.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from nsn_store._flow import Flow, TripCounter
from nsn_store.arguments import as_object_id, check_duration, check_limit, check_text
from nsn_store.errors import InvalidArgumentError
from nsn_store.worker import _registry as registry
from nsn_store.worker._delivery import Delivery
from nsn_store.worker._jobs import (
    JobClaim,
    JobContext,
    JobResult,
    PeriodicJob,
    PeriodicJobs,
    claim_period,
    extend_job_leases,
    finish_period,
)
from nsn_store.worker._ratelimit import Admission, RateLimits, admit
from nsn_store.worker._senders import PermanentSendError, SendResult, TransientSendError

__all__ = ["Outcome", "WorkerBase", "WorkerOptions", "WorkerReport", "classify", "next_wake"]

log = logging.getLogger("nsn_store.worker")

#: The change-stream events that may make a message due sooner: new or rescheduled ones.
WATCH_PIPELINE = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]

#: The longest a worker sleeps without looking for due messages (the poll cap).
DEFAULT_POLL = timedelta(seconds=5)
#: The shortest sleep between two looks when something is due "now" but none was won.
MIN_SLEEP = timedelta(milliseconds=20)
DEFAULT_LEASE = timedelta(seconds=60)
#: The longest the jobs loop sleeps between two looks at its jobs.
JOBS_LOOK = timedelta(minutes=1)
MAX_CONCURRENCY = 1024

Outcome = Literal["sent", "retried", "failed", "cancelled", "handed_back", "lease_lost", "deferred"]
#: The message outcomes a report counts, in the order it lists them.
OUTCOMES: tuple[str, ...] = (
    "sent",
    "retried",
    "failed",
    "cancelled",
    "handed_back",
    "lease_lost",
    "deferred",
)


def default_worker_id() -> str:
    """Return ``host:pid:thread`` — unique per process, readable in ``status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


@dataclass(frozen=True)
class WorkerOptions:
    """A worker's settings, checked once when it is built."""

    worker_id: str
    concurrency: int
    batch_size: int
    lease: timedelta
    heartbeat: timedelta
    poll: timedelta
    shutdown_timeout: timedelta
    tenants: tuple[Any, ...] | None

    @classmethod
    def build(
        cls,
        *,
        worker_id: str | None,
        concurrency: int,
        batch_size: int | None,
        lease: timedelta | float,
        heartbeat: timedelta | float | None,
        poll: timedelta | float,
        shutdown_timeout: timedelta | float,
        tenants: Any = None,
    ) -> WorkerOptions:
        """Check every option (naming the bad one) and derive the defaults."""
        lease = check_duration(
            lease, "lease", minimum=timedelta(seconds=1), maximum=timedelta(hours=1)
        )
        concurrency = check_limit(concurrency, "concurrency", maximum=MAX_CONCURRENCY)
        return cls(
            worker_id=check_text(worker_id or default_worker_id(), "worker_id", maximum=200),
            concurrency=concurrency,
            batch_size=check_limit(batch_size or concurrency, "batch_size", maximum=1000),
            lease=lease,
            heartbeat=check_duration(
                heartbeat if heartbeat is not None else lease / 3,
                "heartbeat",
                minimum=timedelta(milliseconds=100),
                maximum=lease / 2,
            ),
            poll=check_duration(
                poll, "poll", minimum=timedelta(milliseconds=50), maximum=timedelta(minutes=10)
            ),
            shutdown_timeout=check_duration(
                shutdown_timeout,
                "shutdown_timeout",
                minimum=timedelta(0),
                maximum=timedelta(hours=1),
            ),
            tenants=None if tenants is None else tuple(as_object_id(t, "tenants") for t in tenants),
        )


@dataclass
class WorkerReport:
    """What a worker did: counts per outcome, claims, and when it ran."""

    worker_id: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    claimed: int = 0
    claims: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    jobs: Counter[str] = field(default_factory=Counter)
    stopped_by: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: Outcome, n: int = 1) -> None:
        """Count ``n`` messages that ended a step as ``outcome``."""
        with self._lock:
            self.outcomes[outcome] += n

    def claimed_batch(self, n: int) -> None:
        """Count one claim that won ``n`` messages."""
        with self._lock:
            self.claims += 1
            self.claimed += n

    def job_ran(self, outcome: str) -> None:
        """Count one periodic job run that ended as ``outcome`` (succeeded or failed)."""
        with self._lock:
            self.jobs[outcome] += 1

    def __getattr__(self, name: str) -> int:
        if name in OUTCOMES:
            return self.outcomes[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values with stable keys."""
        return {
            "worker_id": self.worker_id,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "claims": self.claims,
            "claimed": self.claimed,
            **{name: self.outcomes[name] for name in OUTCOMES},
            "jobs": {name: self.jobs[name] for name in ("succeeded", "failed")},
            "stopped_by": self.stopped_by,
        }


def next_wake(now: datetime, next_due: datetime | None, poll: timedelta) -> timedelta:
    """Return how long to sleep: until the next ``sendAt`` or the poll cap, whichever is first."""
    if next_due is None:
        return poll
    return max(MIN_SLEEP, min(poll, next_due - now))


@dataclass(frozen=True)
class Classified:
    """A sender's outcome turned into what the worker records."""

    kind: Literal["sent", "transient", "permanent"]
    provider_message_id: str | None = None
    provider: str | None = None
    error: str | None = None


def classify(
    result: Any = None, error: BaseException | None = None, message: Mapping[str, Any] | None = None
) -> Classified:
    """Turn a sender's return value or exception into sent / transient / permanent."""
    if error is None:
        if isinstance(result, SendResult):
            return Classified("sent", result.provider_message_id, result.provider)
        if result is None or isinstance(result, str):
            return Classified("sent", result or None)
        return Classified(
            "transient",
            error=f"sender returned {type(result).__name__}, "
            "expected a provider message id or SendResult",
        )
    if isinstance(error, PermanentSendError):
        return Classified("permanent", error=str(error) or type(error).__name__)
    if not isinstance(error, TransientSendError):
        log.warning(
            "sender raised %s for message %s; retrying it as a transient failure",
            type(error).__name__,
            (message or {}).get("_id"),
            exc_info=error,
        )
    return Classified("transient", error=str(error) or type(error).__name__)


class WorkerBase:
    """What :class:`~nsn_store.worker.Worker` and its asyncio twin share: options and state.

    The two differ only in how they run (threads or tasks); their settings,
    report, metrics and the messages they hold are built here once, so both
    take exactly the same arguments. ``watch=False`` skips the change stream
    (the worker then wakes at the next ``sendAt`` or the poll cap only).

    ``rate_limits`` (a :class:`~nsn_store.worker.RateLimits`; default None:
    unlimited) makes each claimed batch reserve provider tokens and defer what
    is over the limits; ``jobs`` (a :class:`~nsn_store.worker.PeriodicJobs`;
    default: the built-in rollup and reconcile) are the periodic jobs
    :meth:`run` runs next to sending (``run_once`` does not; call ``run_jobs``).
    The worker also keeps its entry in the ``workers`` registry while it runs.
    """

    def __init__(
        self,
        db: Any,
        sender: Any,
        *,
        worker_id: str | None = None,
        concurrency: int = 8,
        batch_size: int | None = None,
        lease: timedelta | float = DEFAULT_LEASE,
        heartbeat: timedelta | float | None = None,
        poll: timedelta | float = DEFAULT_POLL,
        shutdown_timeout: timedelta | float = 30.0,
        clock: Any = None,
        tenants: Any = None,
        scheduler: Any = None,
        metrics: Any = None,
        watch: bool = True,
        rate_limits: RateLimits | None = None,
        jobs: PeriodicJobs | None = None,
    ) -> None:
        if not callable(sender):
            raise InvalidArgumentError(
                "sender must be a callable taking a Delivery", argument="sender"
            )
        self.options = WorkerOptions.build(
            worker_id=worker_id,
            concurrency=concurrency,
            batch_size=batch_size,
            lease=lease,
            heartbeat=heartbeat,
            poll=poll,
            shutdown_timeout=shutdown_timeout,
            tenants=tenants,
        )
        self.db = db
        self.sender = sender
        self.scheduler = scheduler or self._scheduler(db, clock)
        self.clock = self.scheduler.clock
        self.metrics = metrics or _default_metrics()
        self.report = WorkerReport(self.options.worker_id)
        self.watch = watch
        self.rate_limits = _checked_type(rate_limits, RateLimits, "rate_limits")
        self.jobs = _checked_type(jobs, PeriodicJobs, "jobs") or PeriodicJobs()
        #: round trips of the worker's own flows (deliveries, rate limits, jobs, registry)
        self.trips = TripCounter()
        self._job_claims: dict[str, JobClaim] = {}
        self._entry: dict[str, Any] | None = None
        self._held: dict[Any, Mapping[str, Any]] = {}
        self._stopping = False
        self._abort = False
        self._setup()

    def _scheduler(self, db: Any, clock: Any) -> Any:
        raise NotImplementedError

    def _setup(self) -> None:
        """Create the runtime's own state (threads' conditions, tasks' events)."""

    @property
    def worker_id(self) -> str:
        """Return the id this worker claims under."""
        return self.options.worker_id

    def _shutdown_within(self, timeout: float | None) -> None:
        if timeout is not None:
            self.options = replace(
                self.options, shutdown_timeout=timedelta(seconds=max(0.0, timeout))
            )

    def _count(self, outcome: Any) -> None:
        self.report.count(outcome)
        self.metrics.outcome(outcome)

    def _now(self) -> datetime:
        """Return the worker's time: its scheduler's clock, corrected by the server offset."""
        server = getattr(self.scheduler, "server_clock", None)
        if server is not None and getattr(self.scheduler, "server_time", False):
            now: datetime = server.now()
            return now
        clock_now: datetime = self.clock.now()
        return clock_now

    # -- rate limits (the flows run on either runner) -------------------------------

    def _admission(self, deliveries: list[Delivery]) -> Flow[Admission]:
        assert self.rate_limits is not None
        return admit(deliveries, self.rate_limits, self.worker_id, self._now())

    def _count_deferred(self, admission: Admission) -> None:
        """Count and log the deferred messages (they left the worker: not held any more)."""
        for delivery, until in admission.deferred:
            log.debug(
                "message %s over a rate limit: deferred to %s",
                delivery.message_id,
                until.isoformat(),
                extra={
                    "message_id": str(delivery.message_id),
                    "tenant_id": str(delivery.tenant_id),
                },
            )
        if admission.deferred:
            self.report.count("deferred", len(admission.deferred))
            self.metrics.outcome("deferred", len(admission.deferred))

    # -- the registry and heartbeats ------------------------------------------------

    def _registration(self) -> Flow[None]:
        self._entry = registry.worker_document(
            self._now(), self.options.concurrency, self.options.tenants
        )
        return registry.register(self.worker_id, self._entry)

    def _leave_registry(self) -> Flow[None]:
        self._entry = None
        return registry.deregister(self.worker_id)

    def _upkeep(self) -> Flow[None]:
        """One heartbeat's writes besides message leases: job leases and the registry."""
        now = self._now()
        claims = list(self._job_claims.values())
        yield from extend_job_leases(claims, self.worker_id, now, self.options.lease)
        if self._entry is not None:
            yield from registry.heartbeat(self.worker_id, self._entry, now)

    def _heartbeat_seconds(self) -> float:
        return min(self.options.heartbeat, registry.REGISTRY_HEARTBEAT).total_seconds()

    # -- periodic jobs ------------------------------------------------------------------

    def _claim_job(self, job: PeriodicJob) -> Flow[JobClaim | None]:
        return claim_period(job, self.worker_id, self._now(), self.options.lease)

    def _job_context(self, claim: JobClaim) -> JobContext:
        self._job_claims[claim.key] = claim
        return JobContext(
            job=claim.job,
            period_start=claim.period_start,
            period_end=claim.period_end,
            started_at=claim.started_at,
            worker_id=self.worker_id,
            db=self.db,
            clock=self.clock,
            previous=claim.previous,
            taken_over=claim.taken_over,
        )

    def _finish_job(self, claim: JobClaim, error: str | None) -> Flow[bool]:
        self._job_claims.pop(claim.key, None)
        return finish_period(claim, self.worker_id, self._now(), error)

    def _job_done(self, claim: JobClaim, error: str | None, recorded: bool) -> JobResult:
        outcome: Literal["succeeded", "failed"] = "succeeded" if error is None else "failed"
        if not recorded:
            log.warning(
                "job %s, period %s: the lease was lost before it finished; not recorded",
                claim.job,
                claim.period_start.isoformat(),
            )
        elif error is not None:
            log.error("job %s, period %s failed: %s", claim.job, claim.period_start, error)
        else:
            log.info("job %s, period %s succeeded", claim.job, claim.period_start.isoformat())
        self.report.job_ran(outcome)
        return JobResult(claim.job, claim.period_start, outcome, error, recorded, claim.taken_over)

    def _jobs_pause(self) -> float:
        """Return how long the jobs loop sleeps: until a job's next period, a minute at most.

        Periods start at known times, so an idle worker looks at its jobs once per
        period start (one ``find`` per job); the minute cap bounds how late it
        notices a crashed holder's lease ending.
        """
        now = self._now()
        upcoming = self.jobs.next_start(now)
        pause = JOBS_LOOK if upcoming is None else min(JOBS_LOOK, upcoming - now)
        return max(MIN_SLEEP, pause).total_seconds()


def _checked_type(value: Any, kind: type, argument: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise InvalidArgumentError(
            f"{argument} must be a {kind.__name__} or None", argument=argument
        )
    return value


def _default_metrics() -> Any:
    from nsn_store.worker._metrics import metrics

    return metrics()
