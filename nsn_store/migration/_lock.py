"""A fenced, lease-based lock in ``nsn_migrations`` so two ``init`` runs cannot interleave.

The lock is one document, ``{_id: "lock", holder, token, acquiredAt,
renewedAt, expiresAt}``. It is taken with a single upsert whose filter matches
only an *expired* lock: when a live lock exists the upsert tries to insert a
second ``_id: "lock"`` and the server answers with a duplicate-key error, so
exactly one contender wins without any read-then-write race.

Each acquisition writes a fresh random ``token`` (the fencing token); the
``holder`` names the process for people. The token is random, not a counter:
the document is deleted on release, so a counter would restart from one, and
no comparison needs an order. Every check asks the server whether the lock
document still carries *this* token, in the same update that renews it; DDL
cannot carry a token, so a higher-wins rule would protect nothing more.

While the lock is held a :class:`LeaseRenewer` thread extends the lease every
third of it, *during* a step too, so a step longer than the lease (a large
index build, the data check) does not let another run in. A run that dies
stops renewing, and the next run takes the lock over once the lease has ended.

What fencing guarantees, and what it cannot (MongoDB has no transaction that
spans DDL, so a step's ``createIndexes`` and the lock check are two operations):

* :meth:`MigrationLock.fence` renews the lease with an update filtered on this
  acquisition's token. The server evaluates the filter and the write as one
  operation: either the lock is still ours and is extended by a full lease, or
  it was taken over and nothing is written. A run calls it immediately before
  each step's DDL, and stops with :class:`MigrationLockedError` naming the new
  holder when it fails.
* The window that remains: the fence and the DDL after it are two
  operations. A successful fence leaves a full lease on the lock, so another
  run can take it over before the DDL lands only if this run stalls (a paused
  process, a lost server) for a whole lease (60 s by default) between the two,
  or less when the other run's clock is ahead of this one's: leases are
  written and judged by each run's own clock. Then one DDL of the old run may
  land after the new run planned its steps. When both runs declare the same
  schema that step is idempotent (``createIndexes`` of an identical index is a
  no-op; a repeated ``create`` makes the new run fail, and its rerun finish);
  when they declare different schemas it can undo one change of the new run,
  which ``verify`` reports and the next ``init`` repairs. The old run writes no
  record entry for it: its next fence fails.
* Writes to the migration *record* are fenced atomically: the record carries
  the token of the run that owns it and each update filters on it (see
  :mod:`nsn_store.migration`).

The renewer here is a thread, for the synchronous driver (``init_schema`` is
synchronous only). An asyncio runner would renew from a task on its own event
loop instead: a Motor or PyMongo async collection is bound to the loop that
made it, so no thread can drive it, and a blocking call in the loop would stall
the renewal it needs. That task must be cancelled in a ``finally``, as the
thread is stopped here. :class:`LeaseSchedule` holds the "is a renewal due"
logic for both, and :class:`LeaseRenewer` takes any ``renew`` callable, so only
the waiting differs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from pymongo import errors as pymongo_errors
from pymongo.collection import Collection

from nsn_store.arguments import check_duration, check_text
from nsn_store.clock import Clock
from nsn_store.errors import InvalidArgumentError, MigrationLockedError, NsnStoreError, translate

log = logging.getLogger(__name__)

LOCK_ID = "lock"
DEFAULT_LEASE = timedelta(seconds=60)
#: A lease this short could end between two renewals on a loaded machine.
MIN_LEASE = timedelta(seconds=1)
MAX_LEASE = timedelta(days=1)
#: How long ``acquire`` may wait; longer is a stuck deployment, not patience.
MAX_TIMEOUT = timedelta(days=1)
MIN_POLL = timedelta(milliseconds=1)
MAX_HOLDER = 200
#: Every thread this module starts is named with this prefix.
RENEWER_THREAD = "nsn-migration-lease"


def new_holder_id() -> str:
    """Return an id naming this process, unique per run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def new_token() -> str:
    """Return a fresh fencing token, unique per acquisition."""
    return uuid.uuid4().hex


def take_lock_update(
    holder: str, now: datetime, lease: timedelta, token: str | None = None
) -> dict[str, Any]:
    """Return the update that records ``holder`` as the lock owner until ``now + lease``."""
    fields: dict[str, Any] = {
        "holder": holder,
        "acquiredAt": now,
        "renewedAt": now,
        "expiresAt": now + lease,
    }
    if token is not None:
        fields["token"] = token
    return {"$set": fields}


def free_lock_filter(now: datetime) -> dict[str, Any]:
    """Match the lock document only when it is stale (its lease ended by ``now``)."""
    return {"_id": LOCK_ID, "expiresAt": {"$lte": now}}


def held_lock_filter(token: str) -> dict[str, Any]:
    """Match the lock document only while the acquisition with ``token`` holds it."""
    return {"_id": LOCK_ID, "token": token}


class LeaseSchedule:
    """When a lease is due for renewal: every ``interval`` of ``clock`` time.

    Due-ness is judged by ``clock`` (the clock the lease is written in), and
    also by the monotonic clock, so a frozen or stepped test clock and the wall
    clock both get renewals on time. Shared by the thread below and by any
    asyncio renewer (which would wait with ``asyncio.wait_for(stop.wait(), poll)``
    and await an async ``renew``, since an async collection is bound to its loop).
    """

    def __init__(self, clock: Clock, interval: timedelta) -> None:
        self.clock = clock
        self.interval = interval
        self.mark()

    def mark(self) -> None:
        """Note that the lease was just renewed."""
        self._last_clock = self.clock.now()
        self._last_monotonic = time.monotonic()

    def due(self) -> bool:
        elapsed = self.clock.now() - self._last_clock
        real = time.monotonic() - self._last_monotonic
        return elapsed >= self.interval or real >= self.interval.total_seconds()


class LeaseRenewer:
    """Call ``renew`` from a daemon thread whenever its :class:`LeaseSchedule` is due.

    ``renew`` raising :class:`MigrationLockedError` means the lock is gone: the
    thread records it in :attr:`error` and ends. Any other
    :class:`NsnStoreError` (a lost connection) is logged and retried at the next
    wake-up, since the lease may still be ours. :meth:`stop` ends and joins the
    thread; it is safe to call twice and from a ``finally``.
    """

    def __init__(
        self,
        renew: Callable[[], None],
        *,
        clock: Clock,
        interval: timedelta,
        poll: float = 0.05,
        name: str = RENEWER_THREAD,
    ) -> None:
        self._renew = renew
        self._schedule = LeaseSchedule(clock, interval)
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: MigrationLockedError | None = None
        self.renewals = 0

    def start(self) -> None:
        self._schedule.mark()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop renewing and wait (up to ``timeout`` s) for the thread to end."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():  # a renewal stuck on the network; it is a daemon
                log.warning("migration lease renewer still finishing a renewal")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            if not self._schedule.due():
                continue
            try:
                self._renew()
            except MigrationLockedError as exc:
                self.error = exc
                return
            except NsnStoreError as exc:
                log.warning("could not renew the migration lease (will retry): %s", exc)
                continue
            except Exception as exc:  # never die silently with the lock held
                log.exception("migration lease renewer failed")
                self.error = MigrationLockedError(f"the lease renewer failed: {exc!r}")
                return
            self._schedule.mark()
            self.renewals += 1

    def __enter__(self) -> LeaseRenewer:  # Self needs Python 3.11
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MigrationLock:
    """Hold the migration lock for the duration of a ``with`` block, renewing it meanwhile.

    ``timeout`` is how many seconds :meth:`acquire` waits for a held lock;
    ``lease`` how long the lock stays ours without a renewal (a timedelta or
    seconds); ``poll`` the seconds between attempts and between the renewer's
    wake-ups. Bad values raise :class:`InvalidArgumentError` naming them.
    """

    def __init__(
        self,
        collection: Collection[Any],
        *,
        clock: Clock,
        timeout: float,
        lease: timedelta | float = DEFAULT_LEASE,
        poll: float = 0.05,
        holder: str | None = None,
    ) -> None:
        if not isinstance(clock, Clock):
            raise InvalidArgumentError("clock must have a now() method", argument="clock")
        self.timeout = check_lock_timeout(timeout, "timeout")
        self.lease = check_duration(lease, "lease", minimum=MIN_LEASE, maximum=MAX_LEASE)
        self.poll = check_duration(
            poll, "poll", minimum=MIN_POLL, maximum=self.lease / 3
        ).total_seconds()
        self.holder = (
            new_holder_id() if holder is None else check_text(holder, "holder", maximum=MAX_HOLDER)
        )
        self.collection = collection
        self.clock = clock
        self.token: str | None = None
        self._renewer: LeaseRenewer | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise MigrationLockedError."""
        deadline = time.monotonic() + self.timeout
        token = new_token()
        while not self._try_take(token):
            if time.monotonic() >= deadline:
                raise self._locked_error()
            time.sleep(self.poll)
        self.token = token
        log.info("migration lock taken by %s", self.holder)

    def fence(self) -> None:
        """Renew the lease if this acquisition still holds the lock, atomically; else raise.

        Call it immediately before each write the lock protects. Raises
        :class:`MigrationLockedError` naming the run that holds the lock now.
        """
        if self._renewer is not None and self._renewer.error is not None:
            raise self._renewer.error
        self._renew()

    #: The name ``init`` used before the fence existed.
    refresh = fence

    def release(self) -> None:
        """Stop renewing and give the lock back; never raise, so the caller's error stays."""
        self._stop_renewer()
        if self.token is None:
            return
        try:
            self.collection.delete_one(held_lock_filter(self.token))
        except pymongo_errors.PyMongoError as exc:
            log.warning("could not release the migration lock (expires by itself): %s", exc)
        self.token = None

    def _renew(self) -> None:
        if self.token is None:
            raise MigrationLockedError(
                f"{self.holder} does not hold the migration lock", holder=None
            )
        now = self.clock.now()
        try:
            result = self.collection.update_one(
                held_lock_filter(self.token),
                {"$set": {"renewedAt": now, "expiresAt": now + self.lease}},
            )
        except pymongo_errors.PyMongoError as exc:
            raise translate(exc, collection=self.collection.name) from exc
        if result.matched_count == 0:
            raise self._lost_error()

    def _start_renewer(self) -> None:
        self._renewer = LeaseRenewer(
            self._renew, clock=self.clock, interval=self.lease / 3, poll=self.poll
        )
        self._renewer.start()

    def _stop_renewer(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.stop()

    def _try_take(self, token: str) -> bool:
        now = self.clock.now()
        try:
            self.collection.update_one(
                free_lock_filter(now),
                take_lock_update(self.holder, now, self.lease, token),
                upsert=True,
            )
        except pymongo_errors.DuplicateKeyError:
            return False
        except pymongo_errors.PyMongoError as exc:
            raise translate(exc, collection=self.collection.name) from exc
        return True

    def _current(self) -> dict[str, Any]:
        try:
            document = self.collection.find_one({"_id": LOCK_ID})
        except pymongo_errors.PyMongoError:
            return {}
        return dict(document or {})

    def _lost_error(self) -> MigrationLockedError:
        current = self._current()
        holder = current.get("holder")
        now_held = (
            f"it is now held by {holder} (taken at {current.get('acquiredAt')})"
            if holder
            else "it is no longer held"
        )
        return MigrationLockedError(
            f"{self.holder} lost the migration lock: its lease ended and {now_held}; "
            "stopped before writing anything more (run init again when that run is done)",
            holder=holder,
        )

    def _locked_error(self) -> MigrationLockedError:
        current = self._current()
        holder = current.get("holder", "unknown")
        return MigrationLockedError(
            f"another migration run holds the lock: {holder} (taken at "
            f"{current.get('acquiredAt')}, lease until {current.get('expiresAt')}); "
            f"gave up after {self.timeout:g} s",
            holder=holder,
        )

    def __enter__(self) -> MigrationLock:  # Self needs Python 3.11
        self.acquire()
        try:
            self._start_renewer()
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def check_lock_timeout(value: Any, argument: str = "lock_timeout") -> float:
    """Return ``value`` as seconds to wait for the lock: 0 (try once) to one day."""
    return check_duration(
        value, argument, minimum=timedelta(0), maximum=MAX_TIMEOUT
    ).total_seconds()
