"""Index-served reads: the embedded database against raw mongomock, as the data grows.

Usage: ``python benchmarks/bench_embedded_indexes.py [--sizes 1000,10000,50000,100000]
[--repeat 7]``

For each size N it stores N scheduled messages (all due), N contacts, N
message events and N counter shards, the same documents in an
``EmbeddedClient`` (schema, validators and indexes from ``init_schema``) and in
a raw ``mongomock.MongoClient`` (without indexes: mongomock never reads them,
and its unique checks scan on every insert), then times the library's own
calls on both, side by side:

- ``claim_due(limit=100)``: the scheduler's batch claim (due scan, claim, read back);
- contact by tenant and email (``find_one``, served by ``by_email``);
- message by tenant and idempotency key (unique partial index);
- ``ShardedCounter.count`` and ``ShardedCounter.add`` (an upsert on the unique shard key);
- ``Aggregates.rollup`` of one tenant's day (the server pipeline: $match, $group, $merge);
- ``find_one`` by ``_id`` (the reference: never a scan).

Each figure is the median of ``--repeat`` runs in milliseconds of this
process's CPU time (``--wall`` for wall-clock time); the last
columns are the ratio mongomock/embedded and, per operation, the growth
exponent k fitted to time ~ N^k over the sizes (0: flat, 1: linear). Goals
(issue 13): ``claim_due`` at the largest size within 2x of the smallest, and
indexed lookups under 1 ms at 100k. Timings on a shared machine are noisy:
read the ratios and exponents, not the absolute figures.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mongomock
from bson import ObjectId

from nsn_store.aggregates import _periods as periods
from nsn_store.aggregates._service import Aggregates
from nsn_store.clock import ManualClock
from nsn_store.counters import ShardedCounter
from nsn_store.embedded import EmbeddedClient
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import Scheduler

TENANTS = 100
METRICS = ("messages.sent", "messages.failed", "messages.scheduled", "messages.delivered")
EVENT_TYPES = ("scheduled", "sent", "delivered", "failed")
Operation = Callable[[int], Any]
# Raw mongomock has neither $dateTrunc nor $merge, which the rollup pipeline sends.
EMBEDDED_ONLY = ("Aggregates.rollup (a day)",)


def _database(kind: str) -> Any:
    if kind == "embedded":
        db = EmbeddedClient()["bench"]
        init_schema(db)
        return db
    # No indexes: mongomock never reads them, and its unique checks would scan the
    # collection on every insert, making the seeding quadratic.
    return mongomock.MongoClient(tz_aware=True)["bench"]


def seed(db: Any, size: int, clock: ManualClock) -> dict[str, Any]:
    """Store ``size`` documents in each of four collections; return what the calls look up."""
    rng = random.Random(size)
    now = clock.now()
    tenants = [ObjectId() for _ in range(TENANTS)]
    contacts, messages, events = [], [], []
    for i in range(size):
        tenant = tenants[i % TENANTS]
        contact = ObjectId()
        contacts.append(
            {
                "_id": contact,
                "tenantId": tenant,
                "firstName": "c",
                "email": f"c{i}@example.com",
                "phone": f"+1555{i:07d}",
                "createdAt": now,
                "updatedAt": now,
            }
        )
        send_at = now - timedelta(seconds=rng.randrange(1, 86_400))
        messages.append(
            u.new_message(tenant, contact, "sms", send_at, now, idempotency_key=f"k{i}")
        )
        events.append(
            {
                "tenantId": tenant,
                "eventType": EVENT_TYPES[i % 4],
                "createdAt": now - timedelta(seconds=rng.randrange(1, 30 * 86_400)),
            }
        )
    shards = [
        {
            "tenantId": tenants[i % TENANTS],
            "metric": METRICS[(i // TENANTS) % 4],
            "shard": i // (TENANTS * 4),
            "value": 1,
            "createdAt": now,
            "updatedAt": now,
        }
        for i in range(size)
    ]
    for name, docs in (
        ("contacts", contacts),
        (q.MESSAGES, messages),
        ("messageEvents", events),
        ("counters", shards),
    ):
        for start in range(0, len(docs), 5_000):
            db[name].insert_many(docs[start : start + 5_000], bypass_document_validation=True)
    return {
        "tenant": tenants[7],
        "email": contacts[size // 2]["email"],
        "key": f"k{size // 3}",
        "id": messages[size // 2]["_id"],
    }


def operations(db: Any, clock: ManualClock, seeded: dict[str, Any]) -> dict[str, Operation]:
    """Return the timed calls, each taking the repetition number."""
    scheduler = Scheduler(db, clock=clock)
    counter = ShardedCounter(db, clock=clock, rng=random.Random(3))
    aggregates = Aggregates(db, clock=clock)
    tenant, day = seeded["tenant"], clock.now() - timedelta(days=3)
    window = periods.period_window("day", day, day)
    return {
        "claim_due(limit=100)": lambda n: scheduler.claim_due(f"w{n}", now=clock.now(), limit=100),
        "contact by tenant+email": lambda n: db["contacts"].find_one(
            {"tenantId": tenant, "email": seeded["email"]}
        ),
        "message by idempotencyKey": lambda n: db[q.MESSAGES].find_one(
            {"tenantId": tenant, "idempotencyKey": seeded["key"]}
        ),
        "ShardedCounter.count": lambda n: counter.count(tenant, METRICS[0]),
        "ShardedCounter.add (upsert)": lambda n: counter.add(tenant, METRICS[1]),
        "rollup reads (a day)": lambda n: (
            list(db["messageEvents"].find(periods.event_match(tenant, window), {"eventType": 1})),
            list(db["aggregates"].find(periods.rows_filter(tenant, window))),
        ),
        "Aggregates.rollup (a day)": lambda n: aggregates.rollup(tenant, "day", start=day, end=day),
        "find_one by _id": lambda n: db[q.MESSAGES].find_one({"_id": seeded["id"]}),
    }


def measure(kind: str, size: int, repeat: int, clock_of: Callable[[], float]) -> dict[str, float]:
    """Return the median milliseconds of each operation on ``kind`` with ``size`` stored."""
    clock = ManualClock()
    db = _database(kind)
    ops = operations(db, clock, seed(db, size, clock))
    medians = {}
    for name, operation in ops.items():
        if kind == "mongomock" and name in EMBEDDED_ONLY:
            continue
        times = []
        for n in range(repeat):
            started = clock_of()
            operation(n)
            times.append((clock_of() - started) * 1000)
        medians[name] = statistics.median(times)
    return medians


def exponent(sizes: list[int], times: list[float]) -> float:
    """Return k of the least-squares fit log(time) = k log(size) + c."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(t, 1e-6)) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1000,10000,50000,100000",
        help="stored documents per collection, comma-separated",
    )
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (median)")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="time wall-clock (default: this process's CPU time, steadier on a "
        "shared machine; every operation is single-threaded)",
    )
    args = parser.parse_args(argv)
    clock_of = time.perf_counter if args.wall else time.process_time
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {"mongomock": {}, "embedded": {}}
    for size in sizes:
        for kind in results:
            results[kind][size] = measure(kind, size, args.repeat, clock_of)
            print(f"measured {kind} at {size:,}", file=sys.stderr, flush=True)
    names = list(results["embedded"][sizes[0]])
    print(f"{'operation':<28}{'stored':>8}{'mongomock ms':>14}{'embedded ms':>13}{'ratio':>9}")
    for name in names:
        raw_only = name not in EMBEDDED_ONLY
        for size in sizes:
            ours = results["embedded"][size][name]
            if raw_only:
                raw = results["mongomock"][size][name]
                print(f"{name:<28}{size:>8}{raw:>14.3f}{ours:>13.3f}{raw / ours:>8.1f}x")
            else:
                print(f"{name:<28}{size:>8}{'n/a':>14}{ours:>13.3f}")
        k_raw = (
            exponent(sizes, [results["mongomock"][s][name] for s in sizes]) if raw_only else None
        )
        k_ours = exponent(sizes, [results["embedded"][s][name] for s in sizes])
        growth = results["embedded"][sizes[-1]][name] / results["embedded"][sizes[0]][name]
        shown = f"{k_raw:>14.2f}" if k_raw is not None else f"{'':>14}"
        print(
            f"{'  growth N^k':<28}{'':>8}{shown}{k_ours:>13.2f}"
            f"   embedded {sizes[-1]:,}/{sizes[0]:,}: {growth:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
