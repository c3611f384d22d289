"""The worker runtime: from due message to delivered send (sync threads and asyncio tasks).

``Worker(db, sender).run()`` claims due scheduled messages, loads their
deliveries in a constant number of round trips, sends them on
``concurrency`` threads, heartbeats their leases and records each result;
``AsyncWorker`` is its asyncio twin. See the README's "Running workers".
"""

from nsn_store.worker._async import AsyncWorker
from nsn_store.worker._delivery import Delivery, Refusal, load_deliveries
from nsn_store.worker._metrics import Metrics, serve_metrics
from nsn_store.worker._policy import WorkerOptions, WorkerReport, next_wake
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
    "AsyncFakeSender",
    "AsyncLogSender",
    "AsyncWorker",
    "Delivery",
    "FakeSender",
    "LogSender",
    "Metrics",
    "PermanentSendError",
    "Refusal",
    "SendError",
    "SendResult",
    "TransientSendError",
    "Worker",
    "WorkerOptions",
    "WorkerReport",
    "load_deliveries",
    "next_wake",
    "serve_metrics",
]
