"""Clocks: the single source of "now" for workers, leases, TTL and tests.

Code never calls ``datetime.now()`` directly; it asks a clock. Production uses
:class:`SystemClock`; tests use :class:`ManualClock` and move time explicitly,
and the embedded database's TTL monitor reads the same clock, so ``sendAt``,
leases and ``expiresAt`` behave deterministically.

Workers on several machines must agree on "now", or a worker whose clock runs
ahead takes over leases that are still live. :class:`ServerClock` corrects a
local clock by its offset from the database server's clock, measured from the
server's ``hello`` reply (``localTime``) and refreshed periodically; the
scheduler judges due-ness and lease expiry by it.

Every clock returns timezone-aware UTC datetimes truncated to milliseconds,
because BSON dates store milliseconds: a value read back from the database
then compares equal to the value that was written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)


def to_bson_time(value: datetime) -> datetime:
    """Return ``value`` as aware UTC truncated to milliseconds (BSON precision).

    A naive datetime is taken as UTC, as pymongo does when it encodes one.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` returning an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC, at millisecond precision."""

    def now(self) -> datetime:
        return to_bson_time(datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; safe to share between threads."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = to_bson_time(start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; return the new now."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError(f"a clock cannot go backwards (advance by {step})")
        with self._lock:
            self._now = to_bson_time(self._now + step)
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (which may be earlier, to model clock skew)."""
        with self._lock:
            self._now = to_bson_time(moment)

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


DEFAULT_CLOCK: Clock = SystemClock()

#: How often (seconds of real, monotonic time) a :class:`ServerClock` re-measures its offset.
OFFSET_REFRESH = 60.0


def server_offset(before: datetime, server_time: datetime, after: datetime) -> timedelta:
    """Return how far the server's clock is ahead of ours (negative if behind).

    ``before`` and ``after`` are our clock's readings around the round trip
    that returned ``server_time``; the server read its clock, on average, half
    way through, so the error is at most half the round trip.
    """
    midpoint = before + (after - before) / 2
    return to_bson_time(server_time) - midpoint


class ServerClock:
    """``base`` corrected by its offset from the database server's clock.

    :meth:`stale` says when the offset should be (re)measured: never measured
    yet, or measured more than ``refresh`` seconds of monotonic time ago;
    :meth:`update` records a measurement. With a :class:`ManualClock` shared
    by the embedded database and the scheduler the offset is exactly zero.
    Safe to share between threads (a measurement replaces the offset whole).
    """

    def __init__(
        self,
        base: Clock,
        *,
        refresh: float = OFFSET_REFRESH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.refresh = refresh
        self._monotonic = monotonic
        self._offset = timedelta(0)
        self._measured: float | None = None

    @property
    def offset(self) -> timedelta:
        """Return the last measured offset (zero before the first measurement)."""
        return self._offset

    def now(self) -> datetime:
        return to_bson_time(self.base.now() + self._offset)

    def stale(self) -> bool:
        """Return whether the offset needs measuring."""
        measured = self._measured
        return measured is None or self._monotonic() - measured >= self.refresh

    def update(self, before: datetime, server_time: Any, after: datetime) -> timedelta:
        """Record the offset from one ``hello`` round trip; keep the last if there is no time."""
        if isinstance(server_time, datetime):
            self._offset = server_offset(before, server_time, after)
        else:  # every MongoDB server sends localTime; say so once per refresh if one does not
            log.warning("the server's hello reply has no localTime: using the local clock")
        self._measured = self._monotonic()
        return self._offset

    def __repr__(self) -> str:
        return f"ServerClock({self.base!r}, offset={self._offset})"
