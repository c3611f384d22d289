"""The worker runtime: from due message to delivered send (sync threads and asyncio tasks).

``Worker(db, sender).run()`` claims due scheduled messages, loads their
deliveries in a constant number of round trips, sends them on
``concurrency`` threads, heartbeats their leases and records each result;
``AsyncWorker`` is its asyncio twin. Both honour provider rate limits
(:class:`RateLimits`), run periodic jobs (:class:`PeriodicJobs`) and keep an
entry in the ``workers`` registry (:func:`list_workers`). See the README's
"Running workers", "Rate limits" and "Periodic jobs".
"""

from nsn_store.worker._async import AsyncWorker
from nsn_store.worker._delivery import Delivery, Refusal, load_deliveries
from nsn_store.worker._jobs import JobContext, JobResult, PeriodicJob, PeriodicJobs
from nsn_store.worker._metrics import Metrics, serve_metrics
from nsn_store.worker._policy import WorkerOptions, WorkerReport, next_wake
from nsn_store.worker._ratelimit import RESEND_TEAM, TWILIO, RateLimit, RateLimits
from nsn_store.worker._registry import LiveWorker, list_workers, list_workers_async
from nsn_store.worker._senders import (
    AsyncFakeSender,
    AsyncLogSender,
    FakeSender,
    LogSender,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from nsn_store.worker._worker import Worker

__all__ = [
    "RESEND_TEAM",
    "TWILIO",
    "AsyncFakeSender",
    "AsyncLogSender",
    "AsyncWorker",
    "Delivery",
    "FakeSender",
    "JobContext",
    "JobResult",
    "LiveWorker",
    "LogSender",
    "Metrics",
    "PeriodicJob",
    "PeriodicJobs",
    "PermanentSendError",
    "RateLimit",
    "RateLimits",
    "Refusal",
    "SendError",
    "SendResult",
    "TransientSendError",
    "Worker",
    "WorkerOptions",
    "WorkerReport",
    "list_workers",
    "list_workers_async",
    "load_deliveries",
    "next_wake",
    "serve_metrics",
]
