"""Clocks: the single source of "now" for workers, leases, TTL and tests.

Code never calls ``datetime.now()`` directly; it asks a clock. Production uses
:class:`SystemClock`; tests use :class:`ManualClock` and move time explicitly,
and the embedded database's TTL monitor reads the same clock, so ``sendAt``,
leases and ``expiresAt`` behave deterministically.

Every clock returns timezone-aware UTC datetimes truncated to milliseconds,
because BSON dates store milliseconds: a value read back from the database
then compares equal to the value that was written.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable


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
