"""Benchmark: 8 concurrent writers on one metric, sharded counter vs one document.

Run: ``python benchmarks/bench_counters.py`` (embedded database). With
``NSN_TEST_MONGODB_URI`` set it also runs on that server, in a throw-away
database. Both variants use the same code path (``ShardedCounter.add``: one
upsert with ``$inc``); the single-document counter is ``ShardedCounter(db,
shards=1)``, so the only difference is how many documents the writers share.
The script prints adds per second for each and the ratio sharded/single, and
checks that both counts are exact.

What to expect:
- Embedded database: one store-wide lock serialises every operation (and the
  GIL serialises the Python that runs it), so there is no per-document
  contention for sharding to remove. Worse, a filter other than ``_id`` is
  answered by scanning the collection in Python, so an add costs time in
  proportion to the documents in ``counters``: 16 shard documents make each
  add slower than one document does. Measured here (2 noisy cores): 0.4-0.75x
  across runs; a single writer's adds/s fall from ~4,500-10,000 with one
  document in ``counters`` to ~900-1,500 with 151. This is an artefact of the
  emulator, not of sharding.
- Real server: every ``$inc`` on the single document takes that document's
  write lock; eight writers queue on it (and retry on write conflicts under
  WiredTiger), while sixteen shards let them proceed in parallel. The ratio
  grows with writer count and server cores.
- Keyed adds (``add(..., once=key)``, what the scheduler sends for every
  transition): the same single upsert, plus a ``$ne`` test on the shard's
  ``applied`` list (at most 256 keys) and a ``$push`` with ``$slice``. A
  repeated key costs two round trips (the upsert's insert hits the unique
  shard key, retried once) and changes nothing. The script prints keyed
  adds/s and refused repeats/s next to plain adds and checks both counts.
- Round trips, counted by the flow runner (``counter.trips``), not timed: a
  plain or keyed add is one call (a little more when first adds race to
  insert a shard and one retries), a refused repeat two. These are exact on
  any machine, so they are what to compare across changes.
Timings are indicative only on a noisy machine: compare ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsn_store.counters import ShardedCounter
from nsn_store.migration._runner import init_schema

METRIC = "messages.sent"


def hammer(
    counter: ShardedCounter,
    writers: int,
    adds: int,
    *,
    keys: list[list[str]] | None = None,
    tenant: ObjectId | None = None,
    expected: int | None = None,
) -> float:
    """Run ``writers`` threads of ``adds`` adds each on one metric; return adds per second.

    With ``keys`` writer ``w`` makes keyed adds, one per key of ``keys[w]``
    (``adds`` is then ignored); ``expected`` is the count to check afterwards.
    """
    tenant = tenant or ObjectId()
    plan = keys or [[""] * adds for _ in range(writers)]
    start = threading.Barrier(writers + 1)

    def work(writer: int) -> None:
        start.wait()
        for once in plan[writer]:
            counter.add(tenant, METRIC, once=once or None)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    made = sum(len(p) for p in plan)
    total = counter.count(tenant, METRIC)
    want = made if expected is None else expected
    assert total == want, (total, want)
    return made / elapsed


def remembered(db: Any, tenant: ObjectId, writers: int) -> list[list[str]]:
    """Return the keys the shards still hold, dealt out to ``writers`` lists."""
    held = [k for d in db.counters.find({"tenantId": tenant}) for k in d.get("applied", [])]
    return [held[w::writers] for w in range(writers)]


def compare(db: Any, label: str, writers: int, adds: int, shards: int) -> None:
    """Measure every variant on ``db`` (emptied between runs); print ops/s and the ratios."""
    single = hammer(ShardedCounter(db, shards=1, rng=random.Random(1)), writers, adds)
    db.counters.delete_many({})
    sharded = hammer(ShardedCounter(db, shards=shards, rng=random.Random(1)), writers, adds)
    print(f"\n{label}: {writers} writer threads x {adds:,} adds on one metric")
    print(f"  single document   {single:10,.0f} adds/s")
    print(f"  {shards:>2} shards         {sharded:10,.0f} adds/s")
    print(f"  ratio sharded/single: {sharded / single:.2f}x")
    db.counters.delete_many({})
    counter, tenant = ShardedCounter(db, shards=shards), ObjectId()
    unique = [[f"w{w}:{i}" for i in range(adds)] for w in range(writers)]
    trips = counter.trips
    assert trips is not None
    keyed = hammer(counter, writers, adds, keys=unique, tenant=tenant)
    keyed_trips = (trips.count - 1) / (writers * adds)  # less hammer's one count()
    again = remembered(db, tenant, writers)
    held, seen = sum(len(k) for k in again), trips.count
    repeats = hammer(counter, writers, adds, keys=again, tenant=tenant, expected=writers * adds)
    repeat_trips = (trips.count - seen - 1) / held
    print(f"  {shards:>2} shards, keyed {keyed:10,.0f} adds/s ({keyed / sharded:.2f}x plain)")
    print(f"  repeated keys     {repeats:10,.0f} refused/s (count unchanged)")
    print(f"  keys remembered   {held:10,} of {writers * adds:,} (at most {shards} x 256)")
    print(f"  round trips       {keyed_trips:10.3f} per keyed add, {repeat_trips:.3f} per repeat")


@contextmanager
def server_database(uri: str) -> Iterator[Any]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True, maxPoolSize=64)
    name = f"nsn_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--adds", type=int, default=1_000, help="adds per writer")
    parser.add_argument("--shards", type=int, default=16)
    args = parser.parse_args()

    from nsn_store.testing import mongomock_client

    db = mongomock_client()["bench"]
    init_schema(db)
    compare(db, "embedded database", args.writers, args.adds, args.shards)
    uri = os.environ.get("NSN_TEST_MONGODB_URI")
    if not uri:
        print("\nNSN_TEST_MONGODB_URI is not set: the server run was skipped")
        return
    with server_database(uri) as real:
        init_schema(real)
        compare(real, "server", args.writers, args.adds * 5, args.shards)


if __name__ == "__main__":
    main()
