"""Worker benchmark: claim lag and idle cost against fixed polls, and throughput.

On the embedded database with the wall clock. Messages come due at a steady
rate for ``--seconds`` (default 60): each is scheduled ahead with ``sendAt``
spread evenly over the run, as appointment reminders are. Three loops drain
them, side by side:

- ``nsn_store.Worker`` (sleeps until the next ``sendAt`` or its poll cap);
- a fixed 5 s poll loop (the common default of job queues);
- a 60 s cron (the original plan's).

Printed: claim lag (claim time minus ``sendAt``) p50/p99 per loop and the
ratios against the worker, idle queries per second per worker (no message due),
and throughput with the fake sender (10 ms latency) at concurrency 1, 8 and 32.

    python benchmarks/bench_worker.py [--seconds 60] [--rate 20] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import timedelta
from typing import Any

from bson import ObjectId

from nsn_store.clock import SystemClock
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler._service import Scheduler
from nsn_store.testing import mongomock_client
from nsn_store.worker._senders import FakeSender
from nsn_store.worker._worker import Worker


def fresh_db() -> Any:
    client = mongomock_client(clock=SystemClock())
    db = client["bench"]
    init_schema(db)
    return db


def seed(db: Any, clock: SystemClock, count: int, seconds: float, lead: float) -> Scheduler:
    """Schedule ``count`` messages due evenly from ``lead`` s to ``lead + seconds`` s from now."""
    scheduler = Scheduler(db, clock=clock)
    tenants = [ObjectId() for _ in range(10)]
    contacts = [
        db.contacts.insert_one(
            {"tenantId": t, "phone": "+15550100", "createdAt": clock.now()}
        ).inserted_id
        for t in tenants
    ]
    start = clock.now() + timedelta(seconds=lead)
    for i in range(count):
        scheduler.schedule(
            tenants[i % 10],
            contacts[i % 10],
            "sms",
            start + timedelta(seconds=seconds * i / count),
            payload={"body": "reminder"},
        )
    return scheduler


class LagSender(FakeSender):
    """The fake sender, noting each message's claim lag as it is sent."""

    def __init__(self, clock: SystemClock) -> None:
        super().__init__()
        self.clock = clock
        self.lags: list[float] = []

    def __call__(self, delivery: Any) -> Any:
        self.lags.append((self.clock.now() - delivery.message["sendAt"]).total_seconds())
        return super().__call__(delivery)


def run_worker(seconds: float, rate: float) -> dict[str, float]:
    clock = SystemClock()
    db = fresh_db()
    count = int(seconds * rate)
    scheduler = seed(db, clock, count, seconds, lead=2.0)
    sender = LagSender(clock)
    worker = Worker(db, sender, scheduler=scheduler, concurrency=8, poll=5, watch=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    deadline = time.monotonic() + seconds + 4
    while len(sender.lags) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.stop()
    runner.join()
    return summary(sender.lags, count)


def run_fixed(seconds: float, rate: float, interval: float) -> dict[str, float]:
    """A loop that claims everything due every ``interval`` seconds (a poll or a cron)."""
    clock = SystemClock()
    db = fresh_db()
    count = int(seconds * rate)
    scheduler = seed(db, clock, count, seconds, lead=2.0)
    lags: list[float] = []
    deadline = time.monotonic() + seconds + 2 + interval + 1
    next_tick = time.monotonic() + interval
    while len(lags) < count and time.monotonic() < deadline:
        time.sleep(max(0.0, next_tick - time.monotonic()))
        next_tick += interval
        while batch := scheduler.claim_due("fixed", limit=100):
            now = clock.now()
            for message in batch:
                lags.append((now - message["sendAt"]).total_seconds())
                scheduler.mark_sent(message, "fixed")
    return summary(lags, count)


def summary(lags: list[float], count: int) -> dict[str, float]:
    ordered = sorted(max(0.0, lag) for lag in lags)
    if not ordered:
        return {"sent": 0, "expected": count, "p50": float("nan"), "p99": float("nan")}
    return {
        "sent": len(ordered),
        "expected": count,
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def idle_queries_per_second(seconds: float) -> float:
    """Round trips per second of a worker with nothing to do (one scheduled far ahead)."""
    clock = SystemClock()
    db = fresh_db()
    scheduler = seed(db, clock, 1, 1, lead=3600.0)
    worker = Worker(db, FakeSender(), scheduler=scheduler, concurrency=4, poll=5, watch=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    time.sleep(0.5)
    before, started = scheduler.round_trips, time.monotonic()
    time.sleep(seconds)
    trips = scheduler.round_trips - before
    elapsed = time.monotonic() - started
    worker.stop()
    runner.join()
    return trips / elapsed


def throughput(concurrency: int, messages: int, latency: float) -> float:
    clock = SystemClock()
    db = fresh_db()
    scheduler = seed(db, clock, messages, 0.001, lead=-1.0)
    worker = Worker(
        db, FakeSender(latency=latency), scheduler=scheduler, concurrency=concurrency, watch=False
    )
    started = time.perf_counter()
    report = worker.run_once()
    elapsed = time.perf_counter() - started
    assert report.sent == messages, report.to_dict()
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="messages due per second")
    parser.add_argument("--quick", action="store_true", help="10 s runs, smaller batches")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    print(f"claim lag, {seconds:g} s of messages due at {args.rate:g}/s (embedded, wall clock)")
    results = {
        "worker (next sendAt, 5 s cap)": run_worker(seconds, args.rate),
        "fixed 5 s poll": run_fixed(seconds, args.rate, 5.0),
        "60 s cron": run_fixed(seconds, args.rate, 60.0),
    }
    base = results["worker (next sendAt, 5 s cap)"]
    print(f"{'loop':32} {'sent':>11} {'p50 s':>8} {'p99 s':>8} {'p50 x':>9} {'p99 x':>9}")
    for name, r in results.items():
        ratio50 = r["p50"] / base["p50"] if base["p50"] > 0 else float("inf")
        ratio99 = r["p99"] / base["p99"] if base["p99"] > 0 else float("inf")
        print(
            f"{name:32} {r['sent']:>5.0f}/{r['expected']:<5.0f} {r['p50']:8.3f} "
            f"{r['p99']:8.3f} {ratio50:9.1f} {ratio99:9.1f}"
        )
    idle = idle_queries_per_second(5.0 if args.quick else 15.0)
    fixed_idle = 2 / 5.0  # a 5 s poll's claim costs two queries (due and expired leases)
    print(
        f"idle queries per second per worker: {idle:.2f} "
        f"(a fixed 5 s poll: {fixed_idle:.2f}; ratio {idle / fixed_idle:.2f})"
    )
    messages = 300 if args.quick else 2000
    print(f"throughput, fake sender with 10 ms latency, {messages} messages due:")
    rates = {c: throughput(c, messages, 0.01) for c in (1, 8, 32)}
    for c, rate in rates.items():
        print(
            f"  concurrency {c:>2}: {rate:8.0f} messages/s ({rate / rates[1]:.1f}x concurrency 1)"
        )


if __name__ == "__main__":
    main()
