"""The asyncio twin of :class:`~nsn_store.worker.Worker`: sender tasks instead of threads.

Same options, same decisions (:mod:`nsn_store.worker._policy`), same delivery
flow, same shutdown contract; the sender is a coroutine function and the
scheduler an :class:`~nsn_store.AsyncScheduler`. ``await worker.run()`` until
``worker.stop()`` (or SIGTERM/SIGINT when run by :func:`asyncio.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from nsn_store._flow import Flow
from nsn_store._flow import run_async as run_flow
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

__all__ = ["AsyncWorker"]

log = logging.getLogger("nsn_store.worker")
T = TypeVar("T")


class AsyncWorker(WorkerBase):
    """Send due scheduled messages with an async ``sender`` on ``concurrency`` tasks."""

    def _setup(self) -> None:
        self._pending: deque[Delivery] = deque()
        self._changed: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs_task: asyncio.Task[None] | None = None

    def _scheduler(self, db: Any, clock: Clock | None) -> Any:
        from nsn_store.scheduler._service import AsyncScheduler

        return AsyncScheduler(db, clock=clock)

    async def run_once(self) -> WorkerReport:
        """Send everything due now, wait for the sends to finish, and return the report."""
        return await self._run(once=True)

    async def run(self) -> WorkerReport:
        """Send due messages until :meth:`stop` or a signal; return the report."""
        return await self._run(once=False)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; hand unstarted claims back; let in-flight sends finish."""
        self._shutdown_within(timeout)
        self._stopping = True
        self._poke()

    async def run_jobs(self) -> list[JobResult]:
        """Run every periodic job whose period is due now (missed ones back to back).

        Each period runs on one worker only (see :class:`~nsn_store.worker.PeriodicJobs`);
        returns the runs this call made, in order.
        """
        results: list[JobResult] = []
        for job in self.jobs:
            for _ in range(job.catch_up + 1):  # the catch-up runs and one takeover at most
                if self._stopping:
                    return results
                claim = await self._claim_one(job)
                if claim is None:
                    break
                results.append(await self._run_job(job, claim))
        return results

    async def plan_sleep(self) -> timedelta:
        """Return how long an idle worker sleeps now: until the next sendAt or the poll cap."""
        next_due = await self.scheduler.next_due_at(tenants=self.options.tenants)
        return next_wake(self.clock.now(), next_due, self.options.poll)

    # -- the claiming loop ----------------------------------------------------

    async def _run(self, *, once: bool) -> WorkerReport:
        self.report.started_at = self.clock.now()
        self._changed = asyncio.Event()
        self._stopping = self._abort = False
        restore = self._install_signals()
        await self._quietly("register in the workers registry", self._registration())
        self._tasks = [
            asyncio.create_task(self._send_loop()) for _ in range(self.options.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))
        if self.watch and not once:
            self._tasks.append(asyncio.create_task(self._watch_loop()))
        self._jobs_task = None
        if not once and len(self.jobs):
            self._jobs_task = asyncio.create_task(self._jobs_loop())
            self._tasks.append(self._jobs_task)
        try:
            while not self._stopping:
                if await self._claim_batch():
                    continue
                if once and await self._idle():
                    break
                await self._sleep(once)
        finally:
            await self._shutdown()
            await self._quietly("leave the workers registry", self._leave_registry())
            restore()
        self.report.finished_at = self.clock.now()
        return self.report

    async def _flow(self, flow: Flow[T]) -> T:
        """Run one of the worker's own flows (its round trips count in ``trips``)."""
        return await run_flow(self.db, flow, self.trips)

    async def _quietly(self, what: str, flow: Flow[Any]) -> None:
        """Run a bookkeeping flow; a database error is logged, never fatal to sending."""
        try:
            await self._flow(flow)
        except NsnStoreError as exc:
            log.warning("could not %s: %s", what, exc)

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _wait_change(self, seconds: float) -> None:
        assert self._changed is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=seconds)
        self._changed.clear()

    async def _claim_batch(self) -> bool:
        free = min(self.options.concurrency - len(self._held), self.options.batch_size)
        if free <= 0:
            await self._wait_change(1.0)
            return True
        batch = await self.scheduler.claim_due(
            self.worker_id, limit=free, lease=self.options.lease, tenants=self.options.tenants
        )
        if not batch:
            return False
        self.report.claimed_batch(len(batch))
        self.metrics.outcome("claimed", len(batch))
        now = self.clock.now()
        for message in batch:
            self.metrics.claim_lag(now, message["sendAt"])
        self._held.update({m["_id"]: m for m in batch})
        prepared = await self._flow(load_deliveries(batch))
        for delivery in await self._admit([d for d in prepared if not isinstance(d, Refusal)]):
            self._pending.append(delivery)
        for item in prepared:
            if isinstance(item, Refusal):
                await self._finish(item.message, self._refuse, item)
        self._poke()
        return True

    async def _admit(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Reserve rate-limit tokens for the batch; defer (hand back) what is over a limit."""
        if self.rate_limits is None or not deliveries:
            return deliveries
        try:
            admission = await self._flow(self._admission(deliveries))
        except NsnStoreError:
            log.exception("could not reserve rate-limit tokens; handing the batch back")
            await self._hand_back([d.message for d in deliveries])
            return []
        for delivery, _ in admission.deferred:
            self._held.pop(delivery.message_id, None)
        self._count_deferred(admission)
        return admission.admitted

    async def _idle(self) -> bool:
        while self._held and not self._stopping:
            await self._wait_change(0.1)
        return not self._held

    async def _sleep(self, once: bool) -> None:
        pause = timedelta(milliseconds=50) if once else await self.plan_sleep()
        await self._wait_change(pause.total_seconds())

    # -- sending ----------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            while not self._pending and not self._stopping:
                await self._wait_change(0.1)
            if self._stopping or not self._pending:
                return  # what is pending is handed back by _shutdown
            delivery = self._pending.popleft()
            self.metrics.in_flight(len(self._held) - len(self._pending))
            await self._finish(delivery.message, self._send, delivery)

    async def _finish(
        self, message: Mapping[str, Any], step: Callable[[Any], Any], item: Any
    ) -> None:
        try:
            await step(item)
        except InvalidTransitionError as exc:
            log.warning(
                "message %s: %s",
                message["_id"],
                exc,
                extra={"message_id": str(message["_id"]), "tenant_id": str(message["tenantId"])},
            )
            self._count("lease_lost")
        except NsnStoreError:
            log.exception("message %s: could not record the outcome", message["_id"])
        finally:
            self._held.pop(message["_id"], None)
            self._poke()

    async def _send(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        try:
            result, error = await self.sender(delivery), None
        except Exception as exc:  # any sender failure is an outcome, never a crash
            result, error = None, exc
        self.metrics.send_duration(time.perf_counter() - started)
        await self._record(delivery.message, classify(result, error, delivery.message), delivery)

    async def _record(
        self, message: Mapping[str, Any], outcome: Classified, delivery: Delivery | None
    ) -> None:
        extra = {"message_id": str(message["_id"]), "tenant_id": str(message["tenantId"])}
        if outcome.kind == "sent":
            await self.scheduler.mark_sent(
                message,
                self.worker_id,
                provider_message_id=outcome.provider_message_id,
                provider=outcome.provider or (delivery.provider if delivery else None),
            )
            log.info("sent message %s", message["_id"], extra=extra)
            self._count("sent")
            return
        doc = await self.scheduler.mark_failed(
            message,
            self.worker_id,
            outcome.error or "send failed",
            retry=outcome.kind == "transient",
        )
        kind = "retried" if doc["status"] == "scheduled" else "failed"
        log.info("message %s %s: %s", message["_id"], kind, outcome.error, extra=extra)
        self._count(kind)

    async def _refuse(self, refusal: Refusal) -> None:
        if refusal.kind == "opted_out":
            await self.scheduler.cancel_opted_out(refusal.message, self.worker_id)
            self._count("cancelled")
            return
        await self._record(refusal.message, Classified("permanent", error=refusal.reason), None)

    async def _watch_loop(self) -> None:
        """Wake the claiming loop on new or rescheduled messages (a replica set, or embedded)."""
        try:
            stream = self.db["scheduledMessages"].watch(WATCH_PIPELINE, max_await_time_ms=1000)
            if inspect.isawaitable(stream):  # PyMongo's async watch is awaited; Motor's is not
                stream = await stream
            async with stream:
                while not self._stopping:
                    if await stream.try_next() is not None:
                        self._poke()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a standalone server has no change streams
            log.debug(
                "no change stream (%s): polling every %s", type(exc).__name__, self.options.poll
            )

    async def _heartbeat_loop(self) -> None:
        interval = self._heartbeat_seconds()
        while True:
            await asyncio.sleep(interval)
            await self._quietly("renew job leases and the registry entry", self._upkeep())
            held = list(self._held.values())
            if not held:
                if self._stopping:
                    return
                continue
            try:
                kept = await self.scheduler.extend_leases(held, self.worker_id, self.options.lease)
            except NsnStoreError:
                log.exception("heartbeat failed; leases may expire")
                continue
            for message in held:
                if message["_id"] not in kept:
                    log.warning(
                        "message %s outlived its lease; its result will be refused", message["_id"]
                    )

    # -- periodic jobs ----------------------------------------------------------------

    async def _jobs_loop(self) -> None:
        """Run due jobs, then sleep until a job's next period (or the poll cap, or a stop)."""
        while not self._stopping:
            try:
                await self.run_jobs()
            except asyncio.CancelledError:
                raise
            except Exception:  # a job loop that dies would silently stop every job
                log.exception("periodic jobs: unexpected error; trying again later")
            deadline = time.monotonic() + self._jobs_pause()
            while not self._stopping and time.monotonic() < deadline:
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def _claim_one(self, job: PeriodicJob) -> JobClaim | None:
        try:
            return await self._flow(self._claim_job(job))
        except NsnStoreError as exc:
            log.warning("job %s: could not look for a due period: %s", job.name, exc)
            return None

    async def _run_job(self, job: PeriodicJob, claim: JobClaim) -> JobResult:
        context = self._job_context(claim)
        error = None
        try:
            kind, func = job.runs_as(asynchronous=True)
            if kind == "flow":
                await self._flow(func(context))
            elif kind == "coroutine":
                await func(context)
            else:  # a plain function runs in a thread, so it cannot stall the sends
                await asyncio.to_thread(func, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing job is an outcome, recorded on its run
            log.exception("job %s, period %s raised", job.name, claim.period_start.isoformat())
            error = error_text(exc)
        try:
            recorded = await self._flow(self._finish_job(claim, error))
        except NsnStoreError as exc:
            log.warning("job %s: could not record the run: %s", job.name, exc)
            recorded = False
        return self._job_done(claim, error, recorded)

    # -- shutdown -------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self._stopping = True
        unstarted = [d.message for d in self._pending]
        self._pending.clear()
        self._poke()
        if unstarted:
            await self._hand_back(unstarted)
        deadline = time.monotonic() + self.options.shutdown_timeout.total_seconds()
        while self._held and not self._abort and time.monotonic() < deadline:
            await self._wait_change(min(0.1, max(0.0, deadline - time.monotonic())))
        if self._held:
            log.warning("%d sends still running after the shutdown timeout", len(self._held))
        if self._jobs_task is not None and not self._abort:  # a running job gets the deadline
            left = max(0.0, deadline - time.monotonic())
            await asyncio.wait({self._jobs_task}, timeout=left)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _hand_back(self, messages: list[Mapping[str, Any]]) -> None:
        try:
            returned = await self.scheduler.release(messages, self.worker_id)
        except NsnStoreError:
            log.exception("could not hand %d claims back; their leases will expire", len(messages))
            returned = 0
        for message in messages:
            self._held.pop(message["_id"], None)
        self.report.count("handed_back", returned)
        self.metrics.outcome("handed_back", returned)

    def _install_signals(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or a loop without signal support

        def restore() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)

        return restore

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            self._abort = True
            log.warning("second signal: stopping now")
        self.report.stopped_by = sig.name
        self.stop()
