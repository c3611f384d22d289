"""Provider rate limits: token buckets in ``rateLimitBuckets``, shared by every worker process.

A :class:`RateLimit` is a token bucket: ``per_second`` tokens flow in, at
most ``burst`` are held. :class:`RateLimits` says which buckets a delivery
draws from, narrowest first:

1. its **sender**: the ``fromAddress`` of an SMS (Twilio counts message
   segments per number; the number's kind sets the default) or, for Resend,
   the **team** behind the tenant's ``credentialsRef`` (Resend counts API
   requests per team); overridable per address (``senders``) or reference
   (``teams``);
2. its **tenant** on the channel (``tenants={"sms": RateLimit(10)}``: every
   tenant gets its own bucket with that limit);
3. the **channel** across all tenants (``channels``).

:func:`admit` is the flow a worker runs once per claimed batch: for each
bucket the batch touches it makes ONE atomic ``find_one_and_update`` whose
update pipeline refills the bucket by the time elapsed since its last use and
takes, in claim order, as many messages as its tokens allow (``min(requested,
available)``, whole messages). A message over the limit is deferred: handed
back to ``scheduled`` with ``sendAt`` set to when the bucket will have its
tokens, its attempt not spent and nothing counted as a failure. Tokens taken
by a narrower bucket for a message a wider one refused are given back. Round
trips per batch: one per distinct bucket, plus one ``bulk_write`` for the
deferred messages and one for the give-backs, whatever the batch size.

Guarantee: in any window of ``W`` seconds a bucket grants at most
``burst + per_second * W`` tokens, so with the default ``burst=1`` no
one-second window ever holds more than ``per_second`` sends (for a whole
``per_second``). A message that costs more than ``burst`` tokens (a long SMS)
waits for a full bucket and then drives it negative: the next ones wait for the
debt to refill ("reserved ahead").

Time is the worker's clock (the scheduler's, corrected by the server offset),
passed into the pipeline as a literal date, so a ``ManualClock`` drives it in
tests. Every worker must use the same limits for a bucket: each reservation
writes its caller's ``capacity`` and ``refillPerSecond``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne

from nsn_store._flow import Flow, Op
from nsn_store.clock import to_bson_time
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError
from nsn_store.rendering import sms_info
from nsn_store.scheduler import _updates as u
from nsn_store.worker._delivery import Delivery

__all__ = [
    "BUCKETS",
    "RESEND_TEAM",
    "TWILIO",
    "Admission",
    "Bucket",
    "Grant",
    "RateLimit",
    "RateLimits",
    "admit",
    "message_cost",
    "reserve",
    "twilio_number_kind",
]

BUCKETS: Final = "rateLimitBuckets"
MESSAGES: Final = "scheduledMessages"
#: The largest rate or burst a bucket accepts (the collection's validator bound).
MAX_RATE: Final = 1_000_000.0
#: The longest bucket key (the collection's ``_id`` bound).
MAX_KEY: Final = 512

#: US and Canadian toll-free area codes (NANP 8XX).
TOLL_FREE_PREFIXES: Final = frozenset({"800", "833", "844", "855", "866", "877", "888"})

NumberKind = Literal["long_code", "toll_free", "short_code", "alphanumeric"]
Scope = Literal["sender", "team", "tenant", "channel"]


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``per_second`` tokens flow in, at most ``burst`` are held.

    ``burst`` (default 1) is how many tokens one claim may take at once after
    a quiet spell; with 1, sends are paced ``1 / per_second`` apart.
    """

    per_second: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        _check_number(self.per_second, "per_second", "above 0", lambda v: v > 0)
        _check_number(self.burst, "burst", "from 1", lambda v: v >= 1)
        object.__setattr__(self, "per_second", float(self.per_second))
        object.__setattr__(self, "burst", float(self.burst))


def _check_number(value: Any, argument: str, low: str, fits: Callable[[float], bool]) -> None:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not math.isfinite(value) or not fits(value) or value > MAX_RATE:
        raise InvalidArgumentError(
            f"{argument} must be a number {low} to {MAX_RATE:,.0f}", argument=argument
        )


#: Twilio's default throughput per sending number, in message segments per second
#: (https://help.twilio.com/articles/115002943027): a US/Canada long code 1, a
#: toll-free number 3, a short code 100; alphanumeric sender ids (other countries) 10.
TWILIO: Final[Mapping[NumberKind, RateLimit]] = {
    "long_code": RateLimit(1),
    "toll_free": RateLimit(3),
    "short_code": RateLimit(100),
    "alphanumeric": RateLimit(10),
}
#: Resend's default: 2 API requests per second per team, across all of its API keys
#: (https://resend.com/docs/api-reference/rate-limit).
RESEND_TEAM: Final = RateLimit(2)


def twilio_number_kind(address: str | None) -> NumberKind:
    """Return the kind of a Twilio sender: long code, toll-free, short code or alphanumeric.

    ``+1`` and an 8XX area code is toll-free; 3 to 8 bare digits a short code;
    other E.164 numbers (and no address: the sender's default number) long
    codes; anything with letters an alphanumeric sender id.
    """
    if not address:
        return "long_code"
    if address.startswith("+"):
        digits = address[1:]
        toll_free = digits.startswith("1") and digits[1:4] in TOLL_FREE_PREFIXES
        return "toll_free" if toll_free else "long_code"
    if address.isdigit() and 3 <= len(address) <= 8:
        return "short_code"
    return "long_code" if address.isdigit() else "alphanumeric"


def message_cost(delivery: Delivery, scope: Scope) -> float:
    """Return the tokens a delivery takes from a bucket of ``scope``.

    An SMS takes one token per segment from its sender's bucket (Twilio's
    limits count segments); every other bucket counts messages (Resend counts
    requests: one per email).
    """
    if scope == "sender" and delivery.channel == "sms":
        return float(sms_info(delivery.body).segments)
    return 1.0


@dataclass(frozen=True)
class Bucket:
    """One token bucket: its key (the document ``_id``), what it limits, and its limit."""

    key: str
    scope: Scope
    channel: str
    limit: RateLimit
    tenant_id: ObjectId | None = None
    sender: str | None = None


class RateLimits:
    """Which token buckets a delivery draws from (see the module docstring).

    ``providers`` applies the documented provider defaults (:data:`TWILIO` per
    sending number, :data:`RESEND_TEAM` per Resend ``credentialsRef``) to
    senders without an override; ``senders`` maps a sending address (a number
    or an email address) and ``teams`` a Resend ``credentialsRef`` to its own
    limit; ``tenants`` and ``channels`` map a channel ("sms", "email") to the
    limit of each tenant's bucket and of the channel's one bucket.
    """

    def __init__(
        self,
        *,
        providers: bool = True,
        senders: Mapping[str, RateLimit] | None = None,
        teams: Mapping[str, RateLimit] | None = None,
        tenants: Mapping[str, RateLimit] | None = None,
        channels: Mapping[str, RateLimit] | None = None,
    ) -> None:
        if not isinstance(providers, bool):
            raise InvalidArgumentError("providers must be True or False", argument="providers")
        self.providers = providers
        self.senders = _limits(senders, "senders", keys=None)
        self.teams = _limits(teams, "teams", keys=None)
        self.tenants = _limits(tenants, "tenants", keys=("sms", "email"))
        self.channels = _limits(channels, "channels", keys=("sms", "email"))

    def __repr__(self) -> str:
        return (
            f"RateLimits(providers={self.providers}, senders={len(self.senders)}, "
            f"teams={len(self.teams)}, tenants={self.tenants}, channels={self.channels})"
        )

    def buckets(self, delivery: Delivery) -> list[Bucket]:
        """Return the buckets ``delivery`` draws from, narrowest first."""
        found = [b for b in (self._sender(delivery), self._team(delivery)) if b is not None]
        channel = delivery.channel
        if channel in self.tenants:
            key = f"tenant:{delivery.tenant_id}|{channel}"
            found.append(Bucket(key, "tenant", channel, self.tenants[channel], delivery.tenant_id))
        if channel in self.channels:
            found.append(Bucket(f"channel|{channel}", "channel", channel, self.channels[channel]))
        return found

    def _sender(self, delivery: Delivery) -> Bucket | None:
        address = delivery.from_address
        limit = self.senders.get(address) if address else None
        twilio = delivery.channel == "sms" and delivery.provider == "twilio"
        if limit is None and self.providers and twilio:
            limit = TWILIO[twilio_number_kind(address)]
        if limit is None:
            return None
        key = f"sender|{delivery.channel}|{address or '-'}"
        return Bucket(key[:MAX_KEY], "sender", delivery.channel, limit, sender=address or None)

    def _team(self, delivery: Delivery) -> Bucket | None:
        if delivery.channel != "email" or delivery.provider != "resend":
            return None
        ref = delivery.credentials_ref or "-"
        limit = self.teams.get(ref) or (RESEND_TEAM if self.providers else None)
        if limit is None:
            return None
        return Bucket(f"team|email|{ref}"[:MAX_KEY], "team", "email", limit)


def _limits(
    value: Mapping[str, RateLimit] | None, argument: str, *, keys: tuple[str, ...] | None
) -> dict[str, RateLimit]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{argument} must map names to RateLimit", argument=argument)
    for key, limit in value.items():
        if not isinstance(key, str) or not key or (keys is not None and key not in keys):
            allowed = f"one of {keys}" if keys else "a non-empty string"
            raise InvalidArgumentError(f"{argument} keys must be {allowed}", argument=argument)
        if not isinstance(limit, RateLimit):
            raise InvalidArgumentError(
                f"{argument}[{key!r}] must be a RateLimit", argument=argument
            )
    return dict(value)


# ---------------------------------------------------------------- pure builders


def thresholds(costs: Sequence[float], capacity: float) -> tuple[list[float], list[float]]:
    """Return, per message in order, the tokens the bucket must hold for it, and the running cost.

    Message ``k`` passes when the bucket holds ``spent_before_k + min(cost_k,
    capacity)`` tokens (a message costlier than the bucket passes on a full
    bucket and leaves a debt); both lists increase strictly.
    """
    needs, sums, total = [], [], 0.0
    for cost in costs:
        needs.append(total + min(cost, capacity))
        total += cost
        sums.append(total)
    return needs, sums


def reserve_update(
    bucket: Bucket, now: datetime, needs: list[float], sums: list[float]
) -> list[dict[str, Any]]:
    """Return the update pipeline that refills ``bucket`` and takes what its tokens allow.

    One ``$set`` stage (no temporary fields, so the validator sees only the
    bucket's own): refilled = min(capacity, tokens + elapsed seconds x rate),
    granted = how many ``needs`` refilled covers, tokens = refilled - sums[granted-1].
    The bucket's clock never goes back: ``updatedAt`` is the later of the two.
    """
    capacity, rate = bucket.limit.burst, bucket.limit.per_second
    last = {"$ifNull": ["$updatedAt", now]}
    elapsed = {"$max": [0, {"$divide": [{"$subtract": [now, last]}, 1000]}]}
    held = {"$add": [{"$ifNull": ["$tokens", capacity]}, {"$multiply": [elapsed, rate]}]}
    refilled = {"$min": [capacity, held]}
    granted = {"$size": {"$filter": {"input": needs, "as": "n", "cond": {"$lte": ["$$n", "$$r"]}}}}
    spent = {
        "$let": {
            "vars": {"g": granted},
            "in": {
                "$cond": [
                    {"$eq": ["$$g", 0]},
                    0.0,
                    {"$arrayElemAt": [sums, {"$subtract": ["$$g", 1]}]},
                ]
            },
        }
    }
    fields: dict[str, Any] = {
        "tokens": {"$let": {"vars": {"r": refilled}, "in": {"$subtract": ["$$r", spent]}}},
        "capacity": capacity,
        "refillPerSecond": rate,
        "updatedAt": {"$max": [now, last]},
        "channel": bucket.channel,
    }
    if bucket.tenant_id is not None:
        fields["tenantId"] = bucket.tenant_id
    if bucket.sender is not None:
        fields["sender"] = bucket.sender
    return [{"$set": fields}]


def refilled_tokens(before: Mapping[str, Any] | None, limit: RateLimit, now: datetime) -> float:
    """Return the tokens the pipeline computed before taking (same float steps as the server)."""
    if before is None:
        return limit.burst
    last = before.get("updatedAt") or now
    elapsed_ms = (to_bson_time(now) - to_bson_time(last)) // timedelta(milliseconds=1)
    elapsed = max(0, elapsed_ms / 1000)
    return min(limit.burst, float(before.get("tokens", limit.burst)) + elapsed * limit.per_second)


def granted_count(needs: list[float], refilled: float) -> int:
    """Return how many messages ``refilled`` tokens let through (the pipeline's ``$filter``)."""
    return sum(1 for need in needs if need <= refilled)


def available_at(now: datetime, need: float, refilled: float, rate: float) -> datetime:
    """Return when the bucket will hold ``need`` tokens, rounded up to the next millisecond."""
    wait_ms = math.ceil(max(need - refilled, 0.0) / rate * 1000)
    return to_bson_time(now) + timedelta(milliseconds=max(wait_ms, 1))


def defer_update(now: datetime, until: datetime) -> dict[str, Any]:
    """Hand a claimed message back to ``scheduled`` at ``until``, its attempt not spent."""
    update = u.release_update(now)
    return {**update, "$set": {**update["$set"], "sendAt": until}}


# ---------------------------------------------------------------- the flow


@dataclass
class Admission:
    """What the rate limits let through a batch: the deliveries to send and those deferred."""

    admitted: list[Delivery] = field(default_factory=list)
    deferred: list[tuple[Delivery, datetime]] = field(default_factory=list)
    #: how many deferred messages the hand-back write found still held (normally all)
    handed_back: int = 0


def admit(
    deliveries: Sequence[Delivery], limits: RateLimits, worker_id: str, now: datetime
) -> Flow[Admission]:
    """Reserve tokens for a claimed batch and defer what is over the limits (see the module)."""
    if not deliveries:
        return Admission()
    worker = u.check_worker(worker_id)
    until: dict[int, datetime] = {}
    taken: dict[str, dict[int, float]] = {}
    for bucket, members in _by_bucket(deliveries, limits):
        live = [i for i in members if i not in until]
        if not live:
            continue
        costs = [message_cost(deliveries[i], bucket.scope) for i in live]
        grant = yield from reserve(bucket, costs, now)
        taken[bucket.key] = dict(zip(live[: grant.granted], costs[: grant.granted], strict=True))
        for position in range(grant.granted, len(live)):
            until[live[position]] = grant.available_at(position)
    yield from _give_back(taken, until)
    admission = Admission(
        admitted=[d for i, d in enumerate(deliveries) if i not in until],
        deferred=[(deliveries[i], when) for i, when in sorted(until.items())],
    )
    if admission.deferred:
        admission.handed_back = yield from _defer(admission.deferred, worker, now)
    return admission


def _by_bucket(
    deliveries: Sequence[Delivery], limits: RateLimits
) -> list[tuple[Bucket, list[int]]]:
    """Group message positions by bucket: every sender bucket first, then tenants, channels."""
    order: dict[str, tuple[Bucket, list[int]]] = {}
    for index, delivery in enumerate(deliveries):
        for bucket in limits.buckets(delivery):
            order.setdefault(bucket.key, (bucket, []))[1].append(index)
    rank = {"sender": 0, "team": 0, "tenant": 1, "channel": 2}
    return sorted(order.values(), key=lambda entry: rank[entry[0].scope])


@dataclass(frozen=True)
class Grant:
    """What one reservation took: how many messages (in order) and when the others fit."""

    bucket: Bucket
    now: datetime
    granted: int
    refilled: float
    needs: tuple[float, ...]

    def available_at(self, position: int) -> datetime:
        """Return when the bucket will hold the tokens message ``position`` needs."""
        return available_at(
            self.now, self.needs[position], self.refilled, self.bucket.limit.per_second
        )


def reserve(bucket: Bucket, costs: Sequence[float], now: datetime) -> Flow[Grant]:
    """Take tokens for messages costing ``costs``, in order, as far as they go (one round trip).

    The update pipeline refills the bucket by the time elapsed since its last
    use and takes the longest prefix its tokens cover; the document as it was
    before lets the caller compute the same numbers (see :func:`refilled_tokens`).
    """
    needs, sums = thresholds(costs, bucket.limit.burst)
    op = Op(
        "find_one_and_update",
        BUCKETS,
        ({"_id": bucket.key}, reserve_update(bucket, to_bson_time(now), needs, sums)),
        {"upsert": True, "return_document": ReturnDocument.BEFORE},
    )
    try:
        before = yield op
    except DuplicateKeyError:  # two first reservations raced to create the bucket
        before = yield op
    refilled = refilled_tokens(before, bucket.limit, now)
    return Grant(bucket, now, granted_count(needs, refilled), refilled, tuple(needs))


def _give_back(taken: Mapping[str, Mapping[int, float]], refused: Mapping[int, Any]) -> Flow[None]:
    """Return the tokens narrower buckets took for messages a wider bucket refused (one write)."""
    refunds = {
        key: sum(cost for index, cost in spent.items() if index in refused)
        for key, spent in taken.items()
    }
    requests = [
        UpdateOne({"_id": key}, {"$inc": {"tokens": amount}})
        for key, amount in refunds.items()
        if amount > 0
    ]
    if requests:
        yield Op("bulk_write", BUCKETS, (requests,), {"ordered": False})


def _defer(deferred: Iterable[tuple[Delivery, datetime]], worker: str, now: datetime) -> Flow[int]:
    """Hand the deferred messages back with their new ``sendAt`` in one ``bulk_write``."""
    requests = [
        UpdateOne(
            u.batch_filter([u.claim_ref(delivery.message)], worker, now),
            defer_update(now, when),
        )
        for delivery, when in deferred
    ]
    result = yield Op("bulk_write", MESSAGES, (requests,), {"ordered": False})
    return int(result.modified_count)
