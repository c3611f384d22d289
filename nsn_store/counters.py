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
:func:`counter_update` (``(filter, update)`` of the upsert), or compose the
add itself into their own flow with ``yield from counter.add_flow(...)`` (see
:mod:`nsn_store._flow`), so a service writes its change and its counter bump
as one flow, run sync or async by the same runner.

Keyed adds (``add(..., once="<key>")``) apply at most once per key, so a caller
may repeat an add whose reply was lost. The shard is chosen from the key
(crc32, so a retry from any process hits the same shard); the upsert's filter
adds ``applied: {$ne: key}`` and its update pushes the key onto the shard's
``applied`` list, trimmed to the last :data:`~nsn_store.schema._models.APPLIED_WINDOW`
(256) keys. When the shard already holds the key, the filter matches nothing
and the upsert's insert hits the unique ``by_tenant_metric_shard`` index: that
duplicate-key error (after the one retry that also covers two first adds
racing to insert the shard) means "already applied", and ``add`` returns
False. The guarantee is bounded: a key is remembered while it is among its
shard's last 256 keyed adds. With 16 shards a retry is safe for about the last
4,000 keyed adds of that metric and tenant (the keys spread evenly over the
shards); a retry that comes later than that counts again.

What keeps and what forgets the keys: ``rebalance`` and ``reconcile`` only
``$inc`` values (they never set, replace or delete a shard, and never touch
``applied``), so every key stays on the shard its retry will be checked
against, and a retry after a rebalance or a repair still counts once.
``reset`` deletes the shards and with them the keys: a retry of an add made
before the reset counts again, in the new count. Changing a metric's shard
count (``shards`` / ``shards_for``) moves a key's shard, so a retry of an add
made before the change may count twice; change shard counts only while no
keyed add is being retried.

Bounds, all checked before any I/O (each bad value raises
:class:`~nsn_store.errors.InvalidArgumentError` naming the argument): ids go
through :func:`~nsn_store.arguments.as_object_id`; ``metric``, ``key`` and
``once`` are 1-200 characters (the model's ``Identifier``); ``n`` is an int
(not a bool or float) within a signed 64-bit integer; a counter has 1 to
:data:`MAX_SHARDS` shards; ``estimate(sample=...)`` takes 1 to
:data:`MAX_SHARDS` (more than the metric's shards reads them all).
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError as PyMongoDuplicateKeyError

from nsn_store._flow import Flow, FlowHost, Op, TripCounter, asynchronous, sync
from nsn_store._types import Document, DocumentIn, IdLike
from nsn_store.arguments import as_object_id, check_limit, check_text
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError
from nsn_store.schema._models import APPLIED_WINDOW

log = logging.getLogger(__name__)

COLLECTION = "counters"
DEFAULT_SHARDS = 16
#: The most shards one metric may use (and the largest ``estimate`` sample).
MAX_SHARDS: Final = 1024
#: The longest metric name, ``key`` or ``once`` (the model's ``Identifier``).
MAX_NAME: Final = 200
#: ``n`` must fit the signed 64-bit integer BSON stores.
_INT64: Final = 2**63
#: Index whose duplicate-key error tells a keyed add that its key was applied.
SHARD_INDEX: Final = "by_tenant_metric_shard"
SHARD_KEY_FIELDS: Final = ("tenantId", "metric", "shard")


@dataclass(frozen=True)
class ReconcileResult:
    """The outcome of comparing a counter with a count of its source documents."""

    before: int
    actual: int
    repaired: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- argument checks


def check_metric(metric: Any) -> str:
    """Return ``metric`` if it is a name of 1-200 characters; refuse it by name otherwise."""
    return check_text(metric, "metric", maximum=MAX_NAME)


def check_amount(n: Any) -> int:
    """Return ``n`` if it is an int (not a bool or float) a BSON long can hold."""
    if type(n) is not int:
        raise InvalidArgumentError(
            f"n must be a whole number, not a value of type {type(n).__name__}",
            argument="n",
        )
    if not -_INT64 <= n < _INT64:
        raise InvalidArgumentError("n must fit a signed 64-bit integer", argument="n")
    return n


def check_shards(count: Any, argument: str = "shards") -> int:
    """Return a shard count if it is an int from 1 to :data:`MAX_SHARDS`."""
    return check_limit(count, argument, maximum=MAX_SHARDS)


def is_shard_duplicate(exc: DuplicateKeyError | PyMongoDuplicateKeyError) -> bool:
    """Return True if ``exc`` is a duplicate of the shard's unique key (not of ``_id``).

    ``exc`` is the translated error a flow receives, or the driver's own: both
    carry the server's reply as ``details``.
    """
    details = exc.details or {}
    pattern = details.get("keyPattern")
    if isinstance(pattern, Mapping):
        return tuple(pattern) == SHARD_KEY_FIELDS
    return SHARD_INDEX in str(details.get("errmsg", exc))


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
    check_limit(sample, "sample", maximum=MAX_SHARDS)
    return sorted(rng.sample(range(shards), min(sample, shards)))


def counter_filter(tenant_id: ObjectId, metric: str, shard: int | None = None) -> Document:
    """Return the filter for one shard, or for every shard of the metric."""
    query: Document = {"tenantId": tenant_id, "metric": metric}
    if shard is not None:
        query["shard"] = shard
    return query


def counter_update(
    tenant_id: ObjectId,
    metric: str,
    shard: int,
    n: int,
    now: datetime,
    *,
    once: str | None = None,
) -> tuple[Document, Document]:
    """Return ``(filter, update)`` of an upsert adding ``n`` to one shard.

    The filter is equality on the unique key, so a server retries a racing
    upsert's duplicate-key error itself and the inserted shard gets
    tenantId/metric/shard from the filter. With ``once`` (a keyed add, whose
    ``shard`` must be ``shard_for_key(once, N)``) the filter also requires the
    key to be absent from ``applied`` and the update pushes it, keeping the
    last :data:`APPLIED_WINDOW`; a shard that holds the key then matches
    nothing, and the upsert's insert fails on the unique key instead.
    """
    query = counter_filter(tenant_id, metric, shard)
    update: Document = {
        "$inc": {"value": n},
        "$set": {"updatedAt": now},
        "$setOnInsert": {"createdAt": now},
    }
    if once is not None:
        query["applied"] = {"$ne": once}
        update["$push"] = {"applied": {"$each": [once], "$slice": -APPLIED_WINDOW}}
    return query, update


def even_targets(total: int, shards: int) -> list[int]:
    """Split ``total`` over ``shards`` as evenly as integers allow (first ones get the rest)."""
    base, rest = divmod(total, shards)
    return [base + (1 if i < rest else 0) for i in range(shards)]


def rebalance_deltas(current: Mapping[int, int], shards: int, total: int) -> dict[int, int]:
    """Return the non-zero ``$inc`` per shard that turns ``current`` into an even ``total``.

    Shards outside ``0..shards-1`` (left by a larger shard count) are emptied.
    Deltas rather than absolute values: adds that land between the read and the
    write are kept, because ``$inc`` composes with them.
    """
    targets = dict(enumerate(even_targets(total, shards)))
    deltas = {s: targets.get(s, 0) - current.get(s, 0) for s in set(targets) | set(current)}
    return {s: d for s, d in sorted(deltas.items()) if d != 0}


def delta_requests(
    tenant_id: ObjectId, metric: str, deltas: Mapping[int, int], now: datetime
) -> list[UpdateOne]:
    """Return the bulk upserts applying ``deltas``.

    They only ``$inc`` ``value`` (no ``once``), so every shard keeps its
    ``applied`` keys and a keyed add retried afterwards still counts once.
    """
    return [
        UpdateOne(*counter_update(tenant_id, metric, shard, n, now), upsert=True)
        for shard, n in deltas.items()
    ]


def shard_values(docs: Iterable[DocumentIn]) -> dict[int, int]:
    """Return ``{shard: value}`` from shard documents."""
    return {int(d["shard"]): int(d.get("value", 0)) for d in docs}


def source_filter(tenant_id: ObjectId, extra: DocumentIn | None) -> Document:
    """Return the filter counting a counter's source documents (tenantId always wins)."""
    return {**dict(extra or {}), "tenantId": tenant_id}


# ---------------------------------------------------------------- flows


_PROJECTION = {"_id": 0, "shard": 1, "value": 1}


class _CounterFlows(FlowHost):
    """Every counter operation, written once as a flow; the classes below declare them.

    Each flow checks its arguments before its first database call, so a bad
    value is refused before any I/O on either runner.
    """

    def __init__(
        self,
        db: Any,
        shards: int = DEFAULT_SHARDS,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        shards_for: Mapping[str, int] | None = None,
    ) -> None:
        check_shards(shards)
        if shards_for is not None and not isinstance(shards_for, Mapping):
            raise InvalidArgumentError(
                "shards_for must map metric names to shard counts",
                argument="shards_for",
            )
        for metric, count in (shards_for or {}).items():
            check_metric(metric)
            check_shards(count, f"shards_for[{metric!r}]")
        self.db = db
        self.trips = TripCounter()
        self.shards = shards
        self.shards_for = dict(shards_for or {})
        self.clock = clock or DEFAULT_CLOCK
        self.rng = rng or random.Random()

    def shard_count(self, metric: str) -> int:
        """Return how many shards ``metric`` uses."""
        return self.shards_for.get(metric, self.shards)

    def add_flow(
        self,
        tenant_id: IdLike,
        metric: str,
        n: int = 1,
        *,
        key: str | None = None,
        once: str | None = None,
    ) -> Flow[bool]:
        """The flow behind add, for services that compose it (yield from counter.add_flow(...)).

        Same arguments and result as ``add``; its one or two calls run on the
        composing flow's runner and database, and count as that service's trips.
        """
        return self._add(tenant_id, metric, n, key=key, once=once)

    def reconcile_flow(
        self, tenant_id: IdLike, metric: str, *, source: str, filter: DocumentIn | None = None
    ) -> Flow[ReconcileResult]:
        """The flow behind reconcile, for services that compose it (the worker's reconcile job)."""
        return self._reconcile(tenant_id, metric, source=source, filter=filter)

    def _add(
        self,
        tenant_id: IdLike,
        metric: str,
        n: int = 1,
        *,
        key: str | None = None,
        once: str | None = None,
    ) -> Flow[bool]:
        """Add ``n`` with one upsert; return whether it applied.

        The shard is random, or ``key``'s sticky shard. With ``once`` the add
        is keyed: it lands on ``once``'s shard and applies at most once while
        the key is among that shard's last 256 keyed adds, so a call repeated
        after a lost reply returns False instead of counting twice. An
        unkeyed add always returns True.
        """
        query, update = self._add_args(tenant_id, metric, n, key, once)
        upsert = Op("update_one", COLLECTION, (query, update), {"upsert": True})
        try:
            yield upsert
        except DuplicateKeyError:
            # Two first adds raced to insert the shard (the second now matches
            # it), or a keyed add's shard already holds its key.
            try:
                yield upsert
            except DuplicateKeyError as exc:
                if once is not None and is_shard_duplicate(exc):
                    return False
                raise
        return True

    def _count(self, tenant_id: IdLike, metric: str) -> Flow[int]:
        """Return the exact total: one query summing every shard."""
        tenant, name = self._checked(tenant_id, metric)
        return sum((yield from self._shards(tenant, name)).values())

    def _estimate(self, tenant_id: IdLike, metric: str, *, sample: int = 4) -> Flow[int]:
        """Return an estimate from ``sample`` (1-1024) random shards, scaled by N/sample."""
        query, scale = self._sample_filter(tenant_id, metric, sample)
        docs = yield Op("find", COLLECTION, (query, _PROJECTION))
        return round(sum(shard_values(docs).values()) * scale)

    def _reset(self, tenant_id: IdLike, metric: str) -> Flow[None]:
        """Set the counter to zero by deleting its shards (and their keyed-add keys)."""
        tenant, name = self._checked(tenant_id, metric)
        yield Op("delete_many", COLLECTION, (counter_filter(tenant, name),))

    def _rebalance(self, tenant_id: IdLike, metric: str) -> Flow[None]:
        """Even the shards out without changing the total (concurrent adds survive).

        Only values move: each shard keeps its ``applied`` keys.
        """
        tenant, name = self._checked(tenant_id, metric)
        current = yield from self._shards(tenant, name)
        yield from self._apply(tenant, name, current, sum(current.values()))

    def _reconcile(
        self,
        tenant_id: IdLike,
        metric: str,
        *,
        source: str,
        filter: DocumentIn | None = None,
    ) -> Flow[ReconcileResult]:
        """Compare with the count of ``source`` documents; repair the counter if it differs.

        Three round trips at most: count the source, read the shards, and (only
        when they differ) one bulk of ``$inc`` deltas, safe to repeat.
        """
        tenant, name, counted = self._source_args(tenant_id, metric, source, filter)
        actual: int = yield Op("count_documents", source, (counted,))
        current = yield from self._shards(tenant, name)
        before = sum(current.values())
        if before != actual:
            log.info(
                "counter %s of tenant %s was %d, source has %d: repairing",
                name,
                tenant,
                before,
                actual,
            )
            yield from self._apply(tenant, name, current, actual)
        return ReconcileResult(before=before, actual=actual, repaired=before != actual)

    def _shards(self, tenant_id: ObjectId, metric: str) -> Flow[dict[int, int]]:
        """Read ``{shard: value}`` of one metric (one query on the shard key)."""
        docs = yield Op("find", COLLECTION, (counter_filter(tenant_id, metric), _PROJECTION))
        return shard_values(docs)

    def _apply(
        self, tenant_id: ObjectId, metric: str, current: Mapping[int, int], total: int
    ) -> Flow[None]:
        """Move the shards from ``current`` to an even ``total`` with one bulk of deltas."""
        deltas = rebalance_deltas(current, self.shard_count(metric), total)
        if deltas:
            requests = delta_requests(tenant_id, metric, deltas, self.clock.now())
            yield Op("bulk_write", COLLECTION, (requests,), {"ordered": False})

    # -- argument checks (before any I/O)

    def _add_args(
        self, tenant_id: IdLike, metric: str, n: int, key: str | None, once: str | None
    ) -> tuple[Document, Document]:
        """Check an add's arguments; return its upsert."""
        tenant, name = self._checked(tenant_id, metric)
        check_amount(n)
        if key is not None and once is not None:
            raise InvalidArgumentError(
                "pass key or once, not both (a keyed add's shard comes from once)",
                argument="key",
            )
        if key is not None:
            check_text(key, "key", maximum=MAX_NAME)
        if once is not None:
            check_text(once, "once", maximum=MAX_NAME)
        shard = pick_shard(self.shard_count(name), self.rng, once or key)
        return counter_update(tenant, name, shard, n, self.clock.now(), once=once)

    def _checked(self, tenant_id: IdLike, metric: str) -> tuple[ObjectId, str]:
        return as_object_id(tenant_id, "tenant_id"), check_metric(metric)

    def _sample_filter(self, tenant_id: IdLike, metric: str, sample: int) -> tuple[Document, float]:
        tenant, name = self._checked(tenant_id, metric)
        shards = self.shard_count(name)
        chosen = pick_sample(shards, sample, self.rng)
        query = counter_filter(tenant, name)
        query["shard"] = {"$in": chosen}
        return query, shards / len(chosen)

    def _source_args(
        self, tenant_id: IdLike, metric: str, source: str, filter: DocumentIn | None
    ) -> tuple[ObjectId, str, Document]:
        """Check reconcile's arguments; return (tenant, metric, source filter)."""
        tenant, name = self._checked(tenant_id, metric)
        check_text(source, "source", maximum=MAX_NAME)
        if filter is not None and not isinstance(filter, Mapping):
            raise InvalidArgumentError(
                "filter must be a mapping (a query document) or None", argument="filter"
            )
        return tenant, name, source_filter(tenant, filter)


# ---------------------------------------------------------------- declarations


class ShardedCounter(_CounterFlows):
    """A per-tenant counter spread over N shard documents in ``counters``."""

    add = sync(_CounterFlows._add)
    count = sync(_CounterFlows._count)
    estimate = sync(_CounterFlows._estimate)
    reset = sync(_CounterFlows._reset)
    rebalance = sync(_CounterFlows._rebalance)
    reconcile = sync(_CounterFlows._reconcile)


class AsyncShardedCounter(_CounterFlows):
    """The asyncio twin of :class:`ShardedCounter` (PyMongo async, Motor, the embedded client)."""

    add = asynchronous(_CounterFlows._add)
    count = asynchronous(_CounterFlows._count)
    estimate = asynchronous(_CounterFlows._estimate)
    reset = asynchronous(_CounterFlows._reset)
    rebalance = asynchronous(_CounterFlows._rebalance)
    reconcile = asynchronous(_CounterFlows._reconcile)
