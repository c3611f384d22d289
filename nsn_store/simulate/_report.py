"""Describe a simulation: its config, what the workers saw, and the report (pure).

The failure model (:func:`send_fails`, the fake sender's own decision) and
the run's bound (:func:`max_ticks`, :func:`horizon`) are functions of the
config alone; :func:`build_report` turns what the
workers saw and what the database holds into a :class:`SimulationReport`
without rendering it (the CLI does that).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from bson import ObjectId

from nsn_store.errors import ConfigurationError

Progress = Callable[[int, int], None]
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
METRICS = ("messages.scheduled", "messages.sent", "messages.retried", "messages.failed")


@dataclass(frozen=True)
class SimulationConfig:
    """The scenario: sizes, timeline, workers, failure model and seed."""

    tenants: int = 20
    messages_per_tenant: int = 500
    spread: float = 600.0  # seconds over which sendAt is spread
    workers: int = 4
    mode: Literal["threads", "asyncio"] = "threads"  # Worker or AsyncWorker
    failure_rate: float = 0.05  # share of first attempts that fail
    retry_success_rate: float = 0.8  # share of retries that succeed
    seed: int = 42
    batch: int = 50  # claim_due limit
    lease: float = 120.0  # seconds
    tick: float = 60.0  # seconds between cron runs
    contacts_per_tenant: int = 10
    max_attempts: int = 5
    crashes: int = 0  # workers that claim a batch and die without marking it
    concurrency: int = 8  # senders per worker (threads or tasks)
    clock: Literal["virtual", "wall"] = "virtual"  # ManualClock ticks, or real time
    backoff: float = 30.0  # the scheduler's base backoff, seconds
    latency: float = 0.0  # the fake sender's latency per send, wall seconds

    def __post_init__(self) -> None:
        ones = (
            "tenants",
            "messages_per_tenant",
            "workers",
            "batch",
            "contacts_per_tenant",
            "max_attempts",
            "concurrency",
        )
        problems = [f"{name} must be at least 1" for name in ones if getattr(self, name) < 1]
        problems += [
            f"{name} must be positive" for name in ("lease", "tick") if getattr(self, name) <= 0
        ]
        problems += [
            f"{name} must be between 0 and 1"
            for name in ("failure_rate", "retry_success_rate")
            if not 0 <= getattr(self, name) <= 1
        ]
        problems += [
            f"{name} must not be negative"
            for name in ("spread", "crashes", "latency")
            if getattr(self, name) < 0
        ]
        if not 0.001 <= self.backoff <= 6 * 3600:
            problems.append("backoff must be from 0.001 to 21600 seconds")
        if self.clock not in ("virtual", "wall"):
            problems.append(f"clock must be 'virtual' or 'wall', not {self.clock!r}")
        if self.mode not in ("threads", "asyncio"):
            problems.append(f"mode must be 'threads' or 'asyncio', not {self.mode!r}")
        if problems:
            raise ConfigurationError("invalid simulation: " + "; ".join(problems))

    @property
    def total(self) -> int:
        return self.tenants * self.messages_per_tenant


@dataclass
class SimulationReport:
    """What a run did: counts, lag (virtual or wall seconds), wall-clock throughput."""

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
    handed_back: int = 0
    lease_lost: int = 0
    sender_calls: int = 0

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


@dataclass
class Tally:
    """What the workers saw (through their metrics hook), merged under a lock."""

    total: int
    progress: Progress | None
    lags: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[ObjectId] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> int:
        return self.outcomes["sent"] + self.outcomes["failed"]

    def count(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` messages with ``outcome``; report progress when one finished."""
        with self.lock:
            self.outcomes[outcome] += n
            if self.progress is not None and outcome in ("sent", "failed"):
                self.progress(self.done, self.total)

    def lag(self, claimed_at: datetime, send_at: datetime) -> None:
        """Record one claim lag (claim time minus ``sendAt``), in seconds."""
        with self.lock:
            self.lags.append((claimed_at - send_at).total_seconds())


def send_fails(seed: int, key: str, attempt: int, config: SimulationConfig) -> bool:
    """Decide whether attempt ``attempt`` of message ``key`` fails (deterministic).

    This is the fake sender's own decision (:meth:`FakeSender.fails`), so what
    the report predicts and what the workers meet are the same draw.
    """
    return bool(fake_sender(config, seed=seed).fails(key, attempt))


def fake_sender(
    config: SimulationConfig, *, seed: int | None = None, asynchronous: bool = False
) -> Any:
    """Return the run's fake sender: the config's rates, latency and seed.

    Messages are named by ``payload.sim`` (stable across runs) in the draws.
    """
    from nsn_store.worker._senders import AsyncFakeSender, FakeSender

    kind = AsyncFakeSender if asynchronous else FakeSender
    return kind(
        seed=config.seed if seed is None else seed,
        failure_rate=config.failure_rate,
        retry_failure_rate=1.0 - config.retry_success_rate,
        latency=config.latency,
        key=lambda d: d.payload.get("sim", d.message_id),
    )


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank ``q`` percentile (0..100) of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def horizon(config: SimulationConfig) -> float:
    """Return the seconds a run may need: the spread, every backoff step, a lease per crash."""
    backoff = sum(config.backoff * 2**k for k in range(config.max_attempts))
    return float(config.spread + backoff + config.lease * (config.crashes + 1))


def max_ticks(config: SimulationConfig) -> int:
    """Bound a virtual run: the :func:`horizon` in ticks, plus slack."""
    return int(horizon(config) / config.tick) + 10


def build_report(
    config: SimulationConfig,
    tally: Tally,
    found: Mapping[str, int],
    *,
    ticks: int,
    virtual_seconds: float,
    timings: Mapping[str, float],
    counters: dict[str, int],
    aggregate_rows: int,
) -> SimulationReport:
    """Build the report from the workers' tally, the database's counts and the timings.

    ``found`` is :func:`nsn_store.simulate.verify`'s result; ``timings`` holds
    the wall seconds of the ``seed``, ``run`` and ``rollup`` phases and the
    whole (``wall``).
    """
    return SimulationReport(
        config=config,
        total=config.total,
        sent=found["sent"],
        failed=found["failed"],
        retries=tally.outcomes["retried"],
        claims=tally.outcomes["claimed"],
        duplicates=found["duplicates"],
        lost=found["lost"],
        lag_p50=percentile(tally.lags, 50),
        lag_p95=percentile(tally.lags, 95),
        lag_max=max(tally.lags, default=0.0),
        ticks=ticks,
        virtual_seconds=virtual_seconds,
        seed_seconds=timings["seed"],
        run_seconds=timings["run"],
        rollup_seconds=timings["rollup"],
        wall_seconds=timings["wall"],
        counters=counters,
        aggregate_rows=aggregate_rows,
        crashed_claims=tally.outcomes["crashed_claims"],
        handed_back=tally.outcomes["handed_back"],
        lease_lost=tally.outcomes["lease_lost"],
        sender_calls=tally.outcomes["sender_calls"],
    )
