"""The worker: claims due messages, sends them through a sender, records the result.

:class:`Worker` runs ``concurrency`` sender threads fed by one claiming loop:

- **Claims sized to free slots**: the loop claims at most as many messages as
  there are idle senders (``batch_size`` at most), so nothing claimed waits
  long for a sender; claims are fair across tenants (see
  :meth:`~nsn_store.Scheduler.claim_due`).
- **Deliveries per batch**: contacts, templates and tenant provider configs
  are loaded for the whole batch in at most three round trips
  (:func:`~nsn_store.worker.load_deliveries`). Opted-out contacts are cancelled
  with an ``opted_out`` event, never sent; messages that cannot be sent
  (no address, missing variable) fail for good with the reason.
- **Wake-up that follows sendAt**: when nothing is due, the loop sleeps until
  the earliest ``sendAt`` of a scheduled message (one index-served query) or
  the poll cap, whichever is first; a change stream on a replica set wakes it
  early for new or rescheduled messages.
- **Heartbeats**: one write per heartbeat extends the leases of every message
  this worker holds; a send that outlives its lease is reported, and its late
  result is refused by the scheduler.
- **Graceful shutdown**: :meth:`stop`, SIGTERM or SIGINT stop claiming, hand
  claimed-but-unstarted messages straight back to ``scheduled`` without
  spending an attempt, and let in-flight sends finish within
  ``shutdown_timeout``; a second signal stops at once, handing back what it can.
- **Rate limits** (``rate_limits=``): each claimed batch reserves provider
  tokens once per bucket; what is over a limit is deferred, not failed.
- **Periodic jobs**: :meth:`run` runs them on a thread of their own
  (:meth:`run_jobs` runs what is due once); the ``workers`` registry entry is
  kept while the worker runs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

from nsn_store._flow import Flow
from nsn_store._flow import run as run_flow
from nsn_store.clock import Clock
from nsn_store.errors import InvalidTransitionError, NsnStoreError
from nsn_store.worker._delivery import Delivery, Refusal, load_deliveries
from nsn_store.worker._jobs import JobClaim, JobResult, PeriodicJob, error_text
from nsn_store.worker._policy import (
    WATCH_PIPELINE,
    Classified,
    WorkerBase,
    WorkerReport,
    classify,
    next_wake,
)

__all__ = ["Worker"]

log = logging.getLogger("nsn_store.worker")
T = TypeVar("T")


class Worker(WorkerBase):
    """Send due scheduled messages with ``sender`` on ``concurrency`` threads."""

    def _setup(self) -> None:
        # One lock, two conditions: senders wait on _work for a delivery; the claiming
        # loop, heartbeat and shutdown wait on _cond for held claims to change (and the
        # jobs loop for the stop).
        # A finished send then wakes the few threads that count held claims, not
        # every idle sender.
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._work = threading.Condition(lock)
        self._wake = threading.Event()
        self._pending: deque[Delivery] = deque()
        self._threads: list[threading.Thread] = []
        self._jobs_thread: threading.Thread | None = None
        self._closed = False

    def _scheduler(self, db: Any, clock: Clock | None) -> Any:
        from nsn_store.scheduler._service import Scheduler

        return Scheduler(db, clock=clock)

    # -- public --------------------------------------------------------------

    def run_once(self) -> WorkerReport:
        """Send everything due now, wait for the sends to finish, and return the report."""
        return self._run(once=True)

    def run(self) -> WorkerReport:
        """Send due messages until :meth:`stop` or a signal; return the report."""
        return self._run(once=False)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; hand unstarted claims back; let in-flight sends finish.

        ``timeout`` (seconds, default ``shutdown_timeout``) bounds the wait for
        in-flight sends once :meth:`run` notices the stop; it returns at once.
        """
        self._shutdown_within(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._work.notify_all()
        self._wake.set()

    def run_jobs(self) -> list[JobResult]:
        """Run every periodic job whose period is due now (missed ones back to back).

        Each period runs on one worker only (see :class:`~nsn_store.worker.PeriodicJobs`);
        returns the runs this call made, in order.
        """
        results: list[JobResult] = []
        for job in self.jobs:
            for _ in range(job.catch_up + 1):  # the catch-up runs and one takeover at most
                if self._stopping:
                    return results
                claim = self._claim_one(job)
                if claim is None:
                    break
                results.append(self._run_job(job, claim))
        return results

    def plan_sleep(self) -> timedelta:
        """Return how long an idle worker sleeps now: until the next sendAt or the poll cap."""
        next_due = self.scheduler.next_due_at(tenants=self.options.tenants)
        return next_wake(self.clock.now(), next_due, self.options.poll)

    # -- the claiming loop ----------------------------------------------------

    def _run(self, *, once: bool) -> WorkerReport:
        self.report.started_at = self.clock.now()
        restore = self._install_signals()
        self._quietly("register in the workers registry", self._registration())
        self._start_threads(watch=not once, jobs=not once)
        try:
            while not self._stopping:
                if self._claim_batch():
                    continue
                if once and self._idle():
                    break
                self._sleep(once)
        finally:
            self._shutdown()
            self._quietly("leave the workers registry", self._leave_registry())
            restore()
        self.report.finished_at = self.clock.now()
        return self.report

    def _flow(self, flow: Flow[T]) -> T:
        """Run one of the worker's own flows (its round trips count in ``trips``)."""
        return run_flow(self.db, flow, self.trips)

    def _quietly(self, what: str, flow: Flow[Any]) -> None:
        """Run a bookkeeping flow; a database error is logged, never fatal to sending."""
        try:
            self._flow(flow)
        except NsnStoreError as exc:
            log.warning("could not %s: %s", what, exc)

    def _free_slots(self) -> int:
        with self._cond:
            return self.options.concurrency - len(self._held)

    def _claim_batch(self) -> bool:
        """Claim for the free senders and queue the batch; return whether it won any."""
        free = min(self._free_slots(), self.options.batch_size)
        if free <= 0:
            with self._cond:  # every sender is busy: wait for one to finish
                self._cond.wait_for(
                    lambda: self._stopping or len(self._held) < self.options.concurrency,
                    timeout=1.0,
                )
            return True
        batch = self.scheduler.claim_due(
            self.worker_id, limit=free, lease=self.options.lease, tenants=self.options.tenants
        )
        if not batch:
            return False
        self.report.claimed_batch(len(batch))
        self.metrics.outcome("claimed", len(batch))
        now = self.clock.now()
        for message in batch:
            self.metrics.claim_lag(now, message["sendAt"])
        with self._cond:
            self._held.update({m["_id"]: m for m in batch})
        prepared = self._flow(load_deliveries(batch))
        deliveries = self._admit([item for item in prepared if not isinstance(item, Refusal)])
        with self._cond:
            self._pending.extend(deliveries)
            self._work.notify(len(deliveries))  # a sender per delivery (only senders wait)
        for item in prepared:
            if isinstance(item, Refusal):
                self._finish(item.message, self._refuse, item)
        return True

    def _admit(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Reserve rate-limit tokens for the batch; defer (hand back) what is over a limit."""
        if self.rate_limits is None or not deliveries:
            return deliveries
        try:
            admission = self._flow(self._admission(deliveries))
        except NsnStoreError:
            log.exception("could not reserve rate-limit tokens; handing the batch back")
            self._hand_back([d.message for d in deliveries])
            return []
        with self._cond:
            for delivery, _ in admission.deferred:
                self._held.pop(delivery.message_id, None)
            self._cond.notify_all()
        self._count_deferred(admission)
        return admission.admitted

    def _idle(self) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: not self._held or self._stopping)
            return not self._held

    def _sleep(self, once: bool) -> None:
        pause = timedelta(milliseconds=50) if once else self.plan_sleep()
        self._wake.wait(pause.total_seconds())
        self._wake.clear()

    # -- sending ----------------------------------------------------------------

    def _start_threads(self, *, watch: bool, jobs: bool) -> None:
        self._stopping = self._abort = self._closed = False
        targets: list[Callable[[], None]] = [self._send_loop] * self.options.concurrency
        targets.append(self._heartbeat_loop)
        if watch and self.watch:
            targets.append(self._watch_loop)
        self._threads = [
            threading.Thread(target=t, daemon=True, name=f"nsn-worker-{i}")
            for i, t in enumerate(targets)
        ]
        self._jobs_thread = None
        if jobs and len(self.jobs):
            self._jobs_thread = threading.Thread(
                target=self._jobs_loop, daemon=True, name="nsn-worker-jobs"
            )
            self._threads.append(self._jobs_thread)
        for thread in self._threads:
            thread.start()

    def _send_loop(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: self._pending or self._stopping)
                if not self._pending:
                    return  # stopping, and nothing left to start
                if self._stopping:
                    return  # stopping: what is pending is handed back by _shutdown
                delivery = self._pending.popleft()
                self.metrics.in_flight(len(self._held) - len(self._pending))
            self._finish(delivery.message, self._send, delivery)

    def _finish(self, message: Mapping[str, Any], step: Callable[[Any], None], item: Any) -> None:
        try:
            step(item)
        except InvalidTransitionError as exc:  # the lease was lost: someone else owns it
            log.warning(
                "message %s: %s",
                message["_id"],
                exc,
                extra={"message_id": str(message["_id"]), "tenant_id": str(message["tenantId"])},
            )
            self._count("lease_lost")
        except NsnStoreError:
            # The database could not record the outcome: keep nothing; the lease
            # expires and another attempt follows (the known at-least-once window).
            log.exception("message %s: could not record the outcome", message["_id"])
        finally:
            with self._cond:
                self._held.pop(message["_id"], None)
                self._cond.notify_all()

    def _send(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        try:
            result, error = self.sender(delivery), None
        except Exception as exc:  # any sender failure is an outcome, never a crash
            result, error = None, exc
        self.metrics.send_duration(time.perf_counter() - started)
        self._record(delivery.message, classify(result, error, delivery.message), delivery)

    def _record(
        self, message: Mapping[str, Any], outcome: Classified, delivery: Delivery | None
    ) -> None:
        extra = {"message_id": str(message["_id"]), "tenant_id": str(message["tenantId"])}
        if outcome.kind == "sent":
            self.scheduler.mark_sent(
                message,
                self.worker_id,
                provider_message_id=outcome.provider_message_id,
                provider=outcome.provider or (delivery.provider if delivery else None),
            )
            log.info("sent message %s", message["_id"], extra=extra)
            self._count("sent")
            return
        doc = self.scheduler.mark_failed(
            message,
            self.worker_id,
            outcome.error or "send failed",
            retry=outcome.kind == "transient",
        )
        kind = "retried" if doc["status"] == "scheduled" else "failed"
        log.info("message %s %s: %s", message["_id"], kind, outcome.error, extra=extra)
        self._count(kind)

    def _refuse(self, refusal: Refusal) -> None:
        if refusal.kind == "opted_out":
            self.scheduler.cancel_opted_out(refusal.message, self.worker_id)
            self._count("cancelled")
            return
        self._record(refusal.message, Classified("permanent", error=refusal.reason), None)

    # -- heartbeats and wake-ups --------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = self._heartbeat_seconds()
        while not self._wait_stopping(interval) and not self._closed:
            self._quietly("renew job leases and the registry entry", self._upkeep())
            with self._cond:
                held = list(self._held.values())
            if not held:
                continue
            try:
                kept = self.scheduler.extend_leases(held, self.worker_id, self.options.lease)
            except NsnStoreError:
                log.exception("heartbeat failed; leases may expire")
                continue
            for message in held:
                if message["_id"] not in kept:
                    log.warning(
                        "message %s outlived its lease; its result will be refused", message["_id"]
                    )

    def _wait_stopping(self, seconds: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping and not self._held, timeout=seconds)

    def _watch_loop(self) -> None:
        """Wake the claiming loop on new or rescheduled messages (a replica set, or embedded)."""
        try:
            with self.db["scheduledMessages"].watch(
                WATCH_PIPELINE, max_await_time_ms=1000
            ) as stream:
                while not self._stopping:
                    if stream.try_next() is not None:
                        self._wake.set()
        except Exception as exc:  # a standalone server has no change streams
            log.debug(
                "no change stream (%s): polling every %s", type(exc).__name__, self.options.poll
            )

    # -- periodic jobs ----------------------------------------------------------------

    def _jobs_loop(self) -> None:
        """Run due jobs, then sleep until a job's next period (or the poll cap, or a stop)."""
        while not self._stopping:
            try:
                self.run_jobs()
            except Exception:  # a job loop that dies would silently stop every job
                log.exception("periodic jobs: unexpected error; trying again later")
            pause = self._jobs_pause()
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, timeout=pause)

    def _claim_one(self, job: PeriodicJob) -> JobClaim | None:
        try:
            return self._flow(self._claim_job(job))
        except NsnStoreError as exc:
            log.warning("job %s: could not look for a due period: %s", job.name, exc)
            return None

    def _run_job(self, job: PeriodicJob, claim: JobClaim) -> JobResult:
        context = self._job_context(claim)
        error = None
        try:
            kind, func = job.runs_as(asynchronous=False)
            value = func(context)
            if kind == "flow":
                self._flow(value)
        except Exception as exc:  # a failing job is an outcome, recorded on its run
            log.exception("job %s, period %s raised", job.name, claim.period_start.isoformat())
            error = error_text(exc)
        try:
            recorded = self._flow(self._finish_job(claim, error))
        except NsnStoreError as exc:
            log.warning("job %s: could not record the run: %s", job.name, exc)
            recorded = False
        return self._job_done(claim, error, recorded)

    # -- shutdown -------------------------------------------------------------------

    def _shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            unstarted = [d.message for d in self._pending]
            self._pending.clear()
            self._cond.notify_all()
            self._work.notify_all()
        if unstarted:
            self._hand_back(unstarted)
        deadline = time.monotonic() + self.options.shutdown_timeout.total_seconds()
        with self._cond:
            while self._held and not self._abort:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "%d sends still running after the shutdown timeout", len(self._held)
                    )
                    break
                self._cond.wait(timeout=min(left, 0.1))
        if self._jobs_thread is not None and not self._abort:  # a running job gets the deadline
            self._jobs_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._closed = True
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=0.5)

    def _hand_back(self, messages: list[Mapping[str, Any]]) -> None:
        try:
            returned = self.scheduler.release(messages, self.worker_id)
        except NsnStoreError:
            log.exception("could not hand %d claims back; their leases will expire", len(messages))
            returned = 0
        with self._cond:
            for message in messages:
                self._held.pop(message["_id"], None)
            self._cond.notify_all()
        self.report.count("handed_back", returned)
        self.metrics.outcome("handed_back", returned)

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handle(signum: int, frame: FrameType | None) -> None:
            if self._stopping:
                self._abort = True  # a second signal: stop at once
                log.warning("second signal: stopping now")
            self.report.stopped_by = signal.Signals(signum).name
            self.stop()

        for sig in previous:
            signal.signal(sig, handle)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
