"""Benchmark: batch claim (Scheduler.claim_due) against one find_one_and_update per message.

Run: ``python benchmarks/bench_claim.py`` (embedded database: 10,000 stored,
500 due). With ``NSN_TEST_MONGODB_URI`` set it also runs on that server with
100,000 stored and 10,000 due, in a throw-away database. Both methods claim
the same due messages from identical data, oldest first; the script prints
wall time, the speed ratio and database round trips per claimed message
(PyMongo command monitoring on a server, collection calls on the embedded
database). Timings are indicative only on a noisy machine: compare ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient, ReturnDocument, monitoring

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsn_store.clock import ManualClock
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.scheduler._service import Scheduler

LEASE = timedelta(minutes=5)
IGNORED_COMMANDS = {"endSessions", "hello", "isMaster", "ismaster", "ping"}


class CommandCounter(monitoring.CommandListener):
    """Count the commands a client sends (its database round trips)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in IGNORED_COMMANDS:
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass
class Run:
    name: str
    claimed: int
    seconds: float
    round_trips: int

    @property
    def per_message(self) -> float:
        return self.round_trips / max(self.claimed, 1)


def seed(db: Any, stored: int, due: int, now: datetime, rng: random.Random) -> None:
    """Store ``stored`` messages of which ``due`` are due at ``now`` (the rest later or done)."""
    tenants = [ObjectId() for _ in range(20)]
    contacts = [
        db[q.CONTACTS].insert_one({"tenantId": t, "createdAt": now}).inserted_id for t in tenants
    ]
    docs = []
    for i in range(stored):
        k = rng.randrange(len(tenants))
        if i < due:
            send_at = now - timedelta(seconds=rng.randrange(1, 86_400))
        else:
            send_at = now + timedelta(seconds=rng.randrange(1, 30 * 86_400))
        docs.append(u.new_message(tenants[k], contacts[k], "sms", send_at, now))
    rng.shuffle(docs)
    for start in range(0, len(docs), 5_000):
        db[q.MESSAGES].insert_many(docs[start : start + 5_000])


Trips = Callable[[], int] | None  # the server's command count, or None: count calls here


def claim_batches(db: Any, now: datetime, limit: int, trips: Trips) -> Run:
    sched = Scheduler(db, clock=ManualClock(now))
    before, claimed = trips() if trips else 0, 0
    started = time.perf_counter()
    while batch := sched.claim_due("bench", limit=limit, lease=LEASE):
        claimed += len(batch)
    elapsed = time.perf_counter() - started
    counted = trips() - before if trips else sched.round_trips
    return Run(f"claim_due(limit={limit})", claimed, elapsed, counted)


def claim_one_by_one(db: Any, now: datetime, trips: Trips) -> Run:
    query = q.due_query(now)
    update = u.claim_update("bench", now, u.lease_end(now, LEASE))
    collection, calls, claimed = db[q.MESSAGES], 0, 0
    before = trips() if trips else 0
    started = time.perf_counter()
    while True:
        calls += 1
        doc = collection.find_one_and_update(
            query.filter, update, sort=query.sort, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            break
        claimed += 1
    elapsed = time.perf_counter() - started
    counted = trips() - before if trips else calls
    return Run("find_one_and_update x N", claimed, elapsed, counted)


def report(label: str, batch: Run, single: Run) -> None:
    print(f"\n{label}")
    for run in (batch, single):
        print(
            f"  {run.name:<26} claimed {run.claimed:>6} in {run.seconds:8.3f} s, "
            f"{run.round_trips:>6} round trips = {run.per_message:.4f} per message"
        )
    print(f"  speed ratio (one-by-one time / batch time): {single.seconds / batch.seconds:.1f}x")
    print(f"  round-trip ratio: {single.round_trips / max(batch.round_trips, 1):.1f}x fewer")


def embedded(stored: int, due: int, limit: int) -> None:
    from nsn_store.testing import mongomock_client

    now = ManualClock().now()
    runs = []
    for method in ("batch", "single"):
        db = mongomock_client()["bench"]
        init_schema(db)
        seed(db, stored, due, now, random.Random(1))
        runs.append(
            claim_batches(db, now, limit, None)
            if method == "batch"
            else claim_one_by_one(db, now, None)
        )
    assert runs[0].claimed == runs[1].claimed == due, runs
    report(f"embedded database: {stored:,} stored, {due:,} due (collection calls)", *runs)


def server(uri: str, stored: int, due: int, limit: int) -> None:
    counter = CommandCounter()
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True, event_listeners=[counter])
    now = ManualClock().now()
    runs = []
    try:
        for method in ("batch", "single"):
            name = f"nsn_bench_{uuid.uuid4().hex[:8]}"
            db = client[name]
            try:
                init_schema(db)
                seed(db, stored, due, now, random.Random(1))

                def trips() -> int:
                    return counter.count

                runs.append(
                    claim_batches(db, now, limit, trips)
                    if method == "batch"
                    else claim_one_by_one(db, now, trips)
                )
            finally:
                client.drop_database(name)
    finally:
        client.close()
    assert runs[0].claimed == runs[1].claimed == due, runs
    report(f"server: {stored:,} stored, {due:,} due (command monitoring)", *runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="batch size for claim_due")
    parser.add_argument("--stored", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=500)
    args = parser.parse_args()
    embedded(args.stored, args.due, args.limit)
    uri = os.environ.get("NSN_TEST_MONGODB_URI")
    if uri:
        server(uri, 100_000, 10_000, args.limit)
    else:
        print("\nNSN_TEST_MONGODB_URI is not set: the 100,000 / 10,000 server run was skipped")


if __name__ == "__main__":
    main()
