"""Sharded counters: usage metrics that many workers bump at once.

One document per metric serialises every writer on that document (on a real
server each ``$inc`` takes the document's write lock; under contention writers
queue or retry on write conflicts). A sharded counter spreads one metric over N
documents ``{tenantId, metric, shard}`` in ``counters`` (unique index
``by_tenant_metric_shard``): an add is one upsert with ``$inc`` on one shard, a
count sums the shards in one round trip. This mirrors Convex's sharded-counter
component (16 shards by default).

Estimate error bound: with ``T`` unit adds spread uniformly at random over
``N`` shards, the sum of a random subset of ``s`` shards is Binomial(T, s/N),
so ``estimate = sum * N / s`` is unbiased with relative standard error
``sqrt((N/s - 1) / T)``. For N=16, s=8, T=10,000 that is 1%; the tests assert
the estimate is within 5% (five standard errors) with a fixed seed. Sticky
shards (``key=``) or uneven ``n`` make the shards uneven and the error larger;
``rebalance`` evens them out again.

Concurrency: ``rebalance`` reads the shards once, then applies per-shard
deltas with ``$inc`` in one unordered ``bulk_write``. An add that lands
between the read and the write is kept (``$inc`` composes with it); two
rebalances at once keep the total (each set of deltas sums to zero) but may
leave the shards uneven. The bulk is not a transaction: if the connection
drops halfway, part of the deltas is applied and the total is off by that
part; ``reconcile`` against the source documents repairs it. ``reconcile``
counts the source, then reads the shards, and repairs with the same delta
write, so it never loses concurrent adds, but an add whose source document
and counter bump straddle its two reads is counted once too often or too
rarely: run it when writers are quiet, or accept that in-flight error.

Other operations can bump a counter in their own bulk writes with the pure
:func:`counter_update` (``(filter, update)`` of the upsert).
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError as PyMongoDuplicateKeyError

from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import ConfigurationError, translated

log = logging.getLogger(__name__)

COLLECTION = "counters"
DEFAULT_SHARDS = 16


@dataclass(frozen=True)
class ReconcileResult:
    """The outcome of comparing a counter with a count of its source documents."""

    before: int
    actual: int
    repaired: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- pure builders


def shard_for_key(key: str, shards: int) -> int:
    """Return the sticky shard of ``key`` (stable across processes, unlike hash())."""
    return zlib.crc32(key.encode("utf-8")) % shards


def pick_shard(shards: int, rng: random.Random, key: str | None = None) -> int:
    """Return the shard an add goes to: sticky for a key, else uniformly random."""
    if key is not None:
        return shard_for_key(key, shards)
    return rng.randrange(shards)


def pick_sample(shards: int, sample: int, rng: random.Random) -> list[int]:
    """Return ``sample`` distinct shards chosen at random (all of them if sample >= shards)."""
    if sample < 1:
        raise ConfigurationError(f"estimate needs sample >= 1, got {sample}")
    return sorted(rng.sample(range(shards), min(sample, shards)))


def counter_filter(
    tenant_id: Any, metric: str, shard: int | None = None
) -> dict[str, Any]:
    """Return the filter for one shard, or for every shard of the metric."""
    query: dict[str, Any] = {"tenantId": tenant_id, "metric": metric}
    if shard is not None:
        query["shard"] = shard
    return query


def counter_update(
    tenant_id: Any, metric: str, shard: int, n: int, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(filter, update)`` of an upsert adding ``n`` to one shard.

    The filter is equality on the unique key, so a server retries a racing
    upsert's duplicate-key error itself and the inserted shard gets
    tenantId/metric/shard from the filter.
    """
    update = {
        "$inc": {"value": n},
        "$set": {"updatedAt": now},
        "$setOnInsert": {"createdAt": now},
    }
    return counter_filter(tenant_id, metric, shard), update


def even_targets(total: int, shards: int) -> list[int]:
    """Split ``total`` over ``shards`` as evenly as integers allow (first ones get the rest)."""
    base, rest = divmod(total, shards)
    return [base + (1 if i < rest else 0) for i in range(shards)]


def rebalance_deltas(
    current: Mapping[int, int], shards: int, total: int
) -> dict[int, int]:
    """Return the non-zero ``$inc`` per shard that turns ``current`` into an even ``total``.

    Shards outside ``0..shards-1`` (left by a larger shard count) are emptied.
    Deltas rather than absolute values: adds that land between the read and the
    write are kept, because ``$inc`` composes with them.
    """
    targets = dict(enumerate(even_targets(total, shards)))
    deltas = {
        s: targets.get(s, 0) - current.get(s, 0) for s in set(targets) | set(current)
    }
    return {s: d for s, d in sorted(deltas.items()) if d != 0}


def delta_requests(
    tenant_id: Any, metric: str, deltas: Mapping[int, int], now: datetime
) -> list[UpdateOne]:
    """Return the bulk upserts applying ``deltas``."""
    return [
        UpdateOne(*counter_update(tenant_id, metric, shard, n, now), upsert=True)
        for shard, n in deltas.items()
    ]


def shard_values(docs: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    """Return ``{shard: value}`` from shard documents."""
    return {int(d["shard"]): int(d.get("value", 0)) for d in docs}


def source_filter(tenant_id: Any, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the filter counting a counter's source documents (tenantId always wins)."""
    return {**dict(extra or {}), "tenantId": tenant_id}


# ---------------------------------------------------------------- shared config


class _CounterBase:
    """Configuration shared by the sync and async counters."""

    def __init__(
        self,
        db: Any,
        shards: int = DEFAULT_SHARDS,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        shards_for: Mapping[str, int] | None = None,
    ) -> None:
        for count in [shards, *(shards_for or {}).values()]:
            if count < 1:
                raise ConfigurationError(
                    f"a counter needs at least one shard, got {count}"
                )
        self.db = db
        self.shards = shards
        self.shards_for = dict(shards_for or {})
        self.clock = clock or DEFAULT_CLOCK
        self.rng = rng or random.Random()
        self._collection = db[COLLECTION]

    def shard_count(self, metric: str) -> int:
        """Return how many shards ``metric`` uses."""
        return self.shards_for.get(metric, self.shards)

    def _add_args(
        self, tenant_id: Any, metric: str, n: int, key: str | None
    ) -> tuple[Any, Any]:
        shard = pick_shard(self.shard_count(metric), self.rng, key)
        return counter_update(tenant_id, metric, shard, n, self.clock.now())

    def _sample_filter(
        self, tenant_id: Any, metric: str, sample: int
    ) -> tuple[dict, float]:
        shards = self.shard_count(metric)
        chosen = pick_sample(shards, sample, self.rng)
        query = counter_filter(tenant_id, metric)
        query["shard"] = {"$in": chosen}
        return query, shards / len(chosen)


_PROJECTION = {"_id": 0, "shard": 1, "value": 1}


class ShardedCounter(_CounterBase):
    """A per-tenant counter spread over N shard documents in ``counters``."""

    def add(
        self, tenant_id: Any, metric: str, n: int = 1, *, key: str | None = None
    ) -> None:
        """Add ``n`` with one upsert on a random shard (or ``key``'s sticky shard)."""
        query, update = self._add_args(tenant_id, metric, n, key)
        with translated(collection=COLLECTION):
            try:
                self._collection.update_one(query, update, upsert=True)
            except PyMongoDuplicateKeyError:
                # Two first adds raced to insert the shard; the second now matches it.
                self._collection.update_one(query, update, upsert=True)

    def count(self, tenant_id: Any, metric: str) -> int:
        """Return the exact total: one query summing every shard."""
        return sum(self._shards(tenant_id, metric).values())

    def estimate(self, tenant_id: Any, metric: str, *, sample: int = 4) -> int:
        """Return an estimate from ``sample`` random shards, scaled by N/sample."""
        query, scale = self._sample_filter(tenant_id, metric, sample)
        with translated(collection=COLLECTION):
            docs = self._collection.find(query, _PROJECTION)
            return round(sum(shard_values(docs).values()) * scale)

    def reset(self, tenant_id: Any, metric: str) -> None:
        """Set the counter to zero by deleting its shards."""
        with translated(collection=COLLECTION):
            self._collection.delete_many(counter_filter(tenant_id, metric))

    def rebalance(self, tenant_id: Any, metric: str) -> None:
        """Even the shards out without changing the total (concurrent adds survive)."""
        current = self._shards(tenant_id, metric)
        self._apply(tenant_id, metric, current, sum(current.values()))

    def reconcile(
        self,
        tenant_id: Any,
        metric: str,
        *,
        source: str,
        filter: Mapping[str, Any] | None = None,
    ) -> ReconcileResult:
        """Compare with the count of ``source`` documents; repair the counter if it differs."""
        with translated(collection=source):
            actual = self.db[source].count_documents(source_filter(tenant_id, filter))
        current = self._shards(tenant_id, metric)
        before = sum(current.values())
        if before != actual:
            log.info(
                "counter %s of tenant %s was %d, source has %d: repairing",
                metric,
                tenant_id,
                before,
                actual,
            )
            self._apply(tenant_id, metric, current, actual)
        return ReconcileResult(before=before, actual=actual, repaired=before != actual)

    def _shards(self, tenant_id: Any, metric: str) -> dict[int, int]:
        with translated(collection=COLLECTION):
            docs = self._collection.find(counter_filter(tenant_id, metric), _PROJECTION)
            return shard_values(docs)

    def _apply(
        self, tenant_id: Any, metric: str, current: dict[int, int], total: int
    ) -> None:
        deltas = rebalance_deltas(current, self.shard_count(metric), total)
        if deltas:
            with translated(collection=COLLECTION):
                requests = delta_requests(tenant_id, metric, deltas, self.clock.now())
                self._collection.bulk_write(requests, ordered=False)


class AsyncShardedCounter(_CounterBase):
    """The asyncio twin of :class:`ShardedCounter` (PyMongo async, Motor, mongomock-motor)."""

    async def add(
        self, tenant_id: Any, metric: str, n: int = 1, *, key: str | None = None
    ) -> None:
        """Add ``n`` with one upsert on a random shard (or ``key``'s sticky shard)."""
        query, update = self._add_args(tenant_id, metric, n, key)
        with translated(collection=COLLECTION):
            try:
                await self._collection.update_one(query, update, upsert=True)
            except PyMongoDuplicateKeyError:
                await self._collection.update_one(query, update, upsert=True)

    async def count(self, tenant_id: Any, metric: str) -> int:
        """Return the exact total: one query summing every shard."""
        return sum((await self._shards(tenant_id, metric)).values())

    async def estimate(self, tenant_id: Any, metric: str, *, sample: int = 4) -> int:
        """Return an estimate from ``sample`` random shards, scaled by N/sample."""
        query, scale = self._sample_filter(tenant_id, metric, sample)
        with translated(collection=COLLECTION):
            docs = await self._collection.find(query, _PROJECTION).to_list(None)
            return round(sum(shard_values(docs).values()) * scale)

    async def reset(self, tenant_id: Any, metric: str) -> None:
        """Set the counter to zero by deleting its shards."""
        with translated(collection=COLLECTION):
            await self._collection.delete_many(counter_filter(tenant_id, metric))

    async def rebalance(self, tenant_id: Any, metric: str) -> None:
        """Even the shards out without changing the total (concurrent adds survive)."""
        current = await self._shards(tenant_id, metric)
        await self._apply(tenant_id, metric, current, sum(current.values()))

    async def reconcile(
        self,
        tenant_id: Any,
        metric: str,
        *,
        source: str,
        filter: Mapping[str, Any] | None = None,
    ) -> ReconcileResult:
        """Compare with the count of ``source`` documents; repair the counter if it differs."""
        with translated(collection=source):
            actual = await self.db[source].count_documents(
                source_filter(tenant_id, filter)
            )
        current = await self._shards(tenant_id, metric)
        before = sum(current.values())
        if before != actual:
            log.info(
                "counter %s of tenant %s was %d, source has %d: repairing",
                metric,
                tenant_id,
                before,
                actual,
            )
            await self._apply(tenant_id, metric, current, actual)
        return ReconcileResult(before=before, actual=actual, repaired=before != actual)

    async def _shards(self, tenant_id: Any, metric: str) -> dict[int, int]:
        with translated(collection=COLLECTION):
            cursor = self._collection.find(
                counter_filter(tenant_id, metric), _PROJECTION
            )
            return shard_values(await cursor.to_list(None))

    async def _apply(
        self, tenant_id: Any, metric: str, current: dict[int, int], total: int
    ) -> None:
        deltas = rebalance_deltas(current, self.shard_count(metric), total)
        if deltas:
            with translated(collection=COLLECTION):
                requests = delta_requests(tenant_id, metric, deltas, self.clock.now())
                await self._collection.bulk_write(requests, ordered=False)
