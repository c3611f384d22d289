"""Senders: what a worker calls to hand one delivery to a provider.

A sender is a callable that takes a :class:`~nsn_store.worker.Delivery` and
returns the provider's message id (a string), a :class:`SendResult`, or None
when the provider gives no id. For :class:`~nsn_store.worker.AsyncWorker` it
is a coroutine function. Raising :class:`TransientSendError` retries the
message with the scheduler's backoff; :class:`PermanentSendError` fails it for
good; any other exception counts as transient and is logged with the message
id (a bug in a sender must not drop messages).

Two senders ship: :class:`LogSender` logs the rendered message (for trying it
out) and :class:`FakeSender` fails at a seeded rate after a seeded latency
(for tests, benchmarks and ``simulate``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsn_store.errors import NsnStoreError

if TYPE_CHECKING:
    from nsn_store.worker._delivery import Delivery

__all__ = [
    "AsyncSender",
    "FakeSender",
    "LogSender",
    "PermanentSendError",
    "SendResult",
    "Sender",
    "TransientSendError",
]

log = logging.getLogger("nsn_store.worker")


class SendError(NsnStoreError):
    """A sender could not hand a delivery to its provider."""


class TransientSendError(SendError):
    """The provider may accept a later attempt (timeout, 5xx, rate limited)."""


class PermanentSendError(SendError):
    """The provider will never accept it (invalid number, unsubscribed, bad template)."""


@dataclass(frozen=True)
class SendResult:
    """What a sender may return instead of a bare provider message id."""

    provider_message_id: str | None = None
    provider: str | None = None


Outcome = str | SendResult | None
Sender = Callable[["Delivery"], Outcome]
AsyncSender = Callable[["Delivery"], Awaitable[Outcome]]


class LogSender:
    """Log each rendered message at INFO and report it sent (for trying nsn-store out)."""

    def __call__(self, delivery: Delivery) -> SendResult:
        log.info(
            "send %s to %s from %s: %s",
            delivery.channel,
            delivery.to,
            delivery.from_address or "-",
            delivery.body,
            extra={"message_id": str(delivery.message_id), "tenant_id": str(delivery.tenant_id)},
        )
        return SendResult(provider_message_id=f"log-{delivery.idempotency_key}")


class FakeSender:
    """A provider stand-in: fails a seeded share of attempts after a seeded latency.

    Whether an attempt fails depends only on ``seed``, the message id and the
    attempt number, so runs are reproducible whatever the scheduling order.
    ``failure_rate`` applies to first attempts and ``retry_failure_rate`` to
    later ones; failures are transient unless ``permanent_rate`` says otherwise.
    ``sent`` counts the calls that succeeded, per message id, so a test can
    check that nothing was sent twice. ``key`` names a message in the draws
    (default: its id); ``simulate`` passes a name that is stable across runs,
    so the same seed fails the same attempts in every run.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        failure_rate: float = 0.0,
        retry_failure_rate: float | None = None,
        permanent_rate: float = 0.0,
        latency: float = 0.0,
        jitter: float = 0.0,
        key: Callable[[Delivery], Any] | None = None,
    ) -> None:
        for name, rate in (
            ("failure_rate", failure_rate),
            ("permanent_rate", permanent_rate),
            ("retry_failure_rate", retry_failure_rate or 0.0),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be from 0 to 1, not {rate}")
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        self.seed = seed
        self.failure_rate = failure_rate
        self.retry_failure_rate = failure_rate if retry_failure_rate is None else retry_failure_rate
        self.permanent_rate = permanent_rate
        self.latency = latency
        self.jitter = jitter
        self.key = key or (lambda delivery: delivery.message_id)
        self.sent: dict[Any, int] = {}
        self.calls = 0
        self._lock = threading.Lock()  # sender threads share the counts

    def _draw(self, delivery: Delivery, salt: str) -> float:
        return _draw(self.seed, self.key(delivery), delivery.attempt, salt)

    def fails(self, key: Any, attempt: int) -> bool:
        """Return whether attempt ``attempt`` of the message named ``key`` fails (pure)."""
        rate = self.failure_rate if attempt <= 1 else self.retry_failure_rate
        return _draw(self.seed, key, attempt, "fail") < rate

    def delay(self, delivery: Delivery) -> float:
        """Return how long this attempt takes, in seconds."""
        return self.latency + self.jitter * self._draw(delivery, "latency")

    def outcome(self, delivery: Delivery) -> SendResult:
        """Decide this attempt: raise the failure it meets, or return its result."""
        with self._lock:
            self.calls += 1
        if self.fails(self.key(delivery), delivery.attempt):
            if self._draw(delivery, "permanent") < self.permanent_rate:
                raise PermanentSendError("fake provider refused the message for good")
            raise TransientSendError("fake provider error")
        with self._lock:
            self.sent[delivery.message_id] = self.sent.get(delivery.message_id, 0) + 1
        return SendResult(provider_message_id=f"fake-{delivery.idempotency_key}")

    def __call__(self, delivery: Delivery) -> SendResult:
        if (pause := self.delay(delivery)) > 0:
            time.sleep(pause)
        return self.outcome(delivery)


def _draw(seed: int, key: Any, attempt: int, salt: str) -> float:
    """Return a uniform draw in [0, 1) fixed by its inputs (no process-seeded hash)."""
    text = f"{seed}:{key}:{attempt}:{salt}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class AsyncFakeSender(FakeSender):
    """The asyncio twin of :class:`FakeSender` (its latency is an ``asyncio.sleep``)."""

    async def __call__(self, delivery: Delivery) -> SendResult:  # type: ignore[override]
        if (pause := self.delay(delivery)) > 0:
            await asyncio.sleep(pause)
        return self.outcome(delivery)


class AsyncLogSender(LogSender):
    """The asyncio twin of :class:`LogSender`."""

    async def __call__(self, delivery: Delivery) -> SendResult:  # type: ignore[override]
        return LogSender.__call__(self, delivery)
