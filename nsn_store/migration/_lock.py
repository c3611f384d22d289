"""A fenced, lease-based lock in ``nsn_migrations`` so two migration runs cannot interleave.

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

Every database call of the lock is a flow (:mod:`nsn_store._flow`): taking,
renewing, fencing, reading and releasing it are written once, in
:class:`LockFlows`, and run by the sync runner for :class:`MigrationLock` and
by the async runner for :class:`AsyncMigrationLock`, which also translate
driver errors. Only the waiting differs. The sync lock renews from a thread
(:class:`LeaseRenewer`); the async lock renews from a task on its own event
loop, since a Motor or PyMongo async collection is bound to the loop that made
it and no thread can drive it. Either is stopped in a ``finally``.
:class:`LeaseSchedule` holds the "is a renewal due" logic for both. A fence is
a flow too (:meth:`LockFlows.fence_flow`), so a migration's own flow fences
its steps with ``yield from``.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from nsn_store._flow import Flow, Op, run, run_async
from nsn_store.arguments import check_duration, check_text
from nsn_store.clock import Clock
from nsn_store.errors import (
    DuplicateKeyError,
    InvalidArgumentError,
    MigrationLockedError,
    NsnStoreError,
)

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


class LockFlows:
    """The lock's state and its database calls, each a flow (one call per op).

    ``timeout`` is how many seconds acquiring waits for a held lock; ``lease``
    how long the lock stays ours without a renewal (a timedelta or seconds);
    ``poll`` the seconds between attempts and between the renewer's wake-ups.
    Bad values raise :class:`InvalidArgumentError` naming them.
    """

    def __init__(
        self,
        collection: Any,
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
        # The flows address the collection by name on its database (sync or async).
        self.db: Any = collection.database
        self.name: str = collection.name
        self.clock = clock
        self.token: str | None = None
        #: Set by the background renewer when it finds the lock taken over.
        self.renewal_error: MigrationLockedError | None = None

    def take_flow(self, token: str) -> Flow[bool]:
        """Take the lock if it is free or stale; True when taken (one upsert)."""
        now = self.clock.now()
        update = take_lock_update(self.holder, now, self.lease, token)
        try:
            yield Op("update_one", self.name, (free_lock_filter(now), update), {"upsert": True})
        except DuplicateKeyError:  # a live lock: the upsert tried a second _id "lock"
            return False
        return True

    def renew_flow(self) -> Flow[None]:
        """Extend the lease if this acquisition still holds the lock, atomically; else raise."""
        if self.token is None:
            raise MigrationLockedError(
                f"{self.holder} does not hold the migration lock", holder=None
            )
        now = self.clock.now()
        renewal = {"$set": {"renewedAt": now, "expiresAt": now + self.lease}}
        result = yield Op("update_one", self.name, (held_lock_filter(self.token), renewal))
        if result.matched_count == 0:
            raise (yield from self.lost_error_flow())

    def fence_flow(self) -> Flow[None]:
        """Renew the lease, failing if another run took the lock over: before each write.

        Raises :class:`MigrationLockedError` naming the run that holds the lock now.
        """
        if self.renewal_error is not None:
            raise self.renewal_error
        yield from self.renew_flow()

    def release_flow(self) -> Flow[None]:
        """Give the lock back if still ours; never raise, so the caller's error stays."""
        if self.token is None:
            return
        token, self.token = self.token, None
        try:
            yield Op("delete_one", self.name, (held_lock_filter(token),))
        except NsnStoreError as exc:
            log.warning("could not release the migration lock (expires by itself): %s", exc)

    def current_flow(self) -> Flow[dict[str, Any]]:
        """Return the lock document as it is now ({} when absent or unreadable)."""
        try:
            document = yield Op("find_one", self.name, ({"_id": LOCK_ID},))
        except NsnStoreError:
            return {}
        return dict(document or {})

    def lost_error_flow(self) -> Flow[MigrationLockedError]:
        current = yield from self.current_flow()
        holder = current.get("holder")
        now_held = (
            f"it is now held by {holder} (taken at {current.get('acquiredAt')})"
            if holder
            else "it is no longer held"
        )
        return MigrationLockedError(
            f"{self.holder} lost the migration lock: its lease ended and {now_held}; "
            "stopped before writing anything more (run the command again when that run is done)",
            holder=holder,
        )

    def locked_error_flow(self) -> Flow[MigrationLockedError]:
        current = yield from self.current_flow()
        holder = current.get("holder", "unknown")
        return MigrationLockedError(
            f"another migration run holds the lock: {holder} (taken at "
            f"{current.get('acquiredAt')}, lease until {current.get('expiresAt')}); "
            f"gave up after {self.timeout:g} s",
            holder=holder,
        )

    def _taken(self, token: str) -> None:
        self.token = token
        self.renewal_error = None
        log.info("migration lock taken by %s", self.holder)


class MigrationLock(LockFlows):
    """Hold the migration lock for a ``with`` block, renewing it from a thread meanwhile.

    ``collection`` is the sync ``nsn_migrations`` collection; see :class:`LockFlows`
    for the other arguments.
    """

    def __init__(
        self,
        collection: Any,
        *,
        clock: Clock,
        timeout: float,
        lease: timedelta | float = DEFAULT_LEASE,
        poll: float = 0.05,
        holder: str | None = None,
    ) -> None:
        super().__init__(
            collection, clock=clock, timeout=timeout, lease=lease, poll=poll, holder=holder
        )
        self._renewer: LeaseRenewer | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise MigrationLockedError."""
        deadline = time.monotonic() + self.timeout
        token = new_token()
        while not run(self.db, self.take_flow(token)):
            if time.monotonic() >= deadline:
                raise run(self.db, self.locked_error_flow())
            time.sleep(self.poll)
        self._taken(token)

    def fence(self) -> None:
        """Renew the lease if this acquisition still holds the lock, atomically; else raise.

        Call it immediately before each write the lock protects. Raises
        :class:`MigrationLockedError` naming the run that holds the lock now.
        """
        if self._renewer is not None and self._renewer.error is not None:
            raise self._renewer.error
        run(self.db, self.fence_flow())

    #: The name ``init`` used before the fence existed.
    refresh = fence

    def fence_flow(self) -> Flow[None]:
        if self._renewer is not None and self._renewer.error is not None:
            self.renewal_error = self._renewer.error
        return super().fence_flow()

    def release(self) -> None:
        """Stop renewing and give the lock back; never raise, so the caller's error stays."""
        self._stop_renewer()
        run(self.db, self.release_flow())

    def _start_renewer(self) -> None:
        self._renewer = LeaseRenewer(
            lambda: run(self.db, self.renew_flow()),
            clock=self.clock,
            interval=self.lease / 3,
            poll=self.poll,
        )
        self._renewer.start()

    def _stop_renewer(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.stop()

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


class AsyncMigrationLock(LockFlows):
    """Hold the migration lock for an ``async with`` block, renewing it from a task meanwhile.

    ``collection`` is the async ``nsn_migrations`` collection (PyMongo async,
    Motor, the embedded async client); see :class:`LockFlows` for the rest.
    """

    def __init__(
        self,
        collection: Any,
        *,
        clock: Clock,
        timeout: float,
        lease: timedelta | float = DEFAULT_LEASE,
        poll: float = 0.05,
        holder: str | None = None,
    ) -> None:
        super().__init__(
            collection, clock=clock, timeout=timeout, lease=lease, poll=poll, holder=holder
        )
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise MigrationLockedError."""
        deadline = time.monotonic() + self.timeout
        token = new_token()
        while not await run_async(self.db, self.take_flow(token)):
            if time.monotonic() >= deadline:
                raise await run_async(self.db, self.locked_error_flow())
            await asyncio.sleep(self.poll)
        self._taken(token)

    async def fence(self) -> None:
        """Renew the lease if this acquisition still holds the lock, atomically; else raise."""
        await run_async(self.db, self.fence_flow())

    refresh = fence

    async def release(self) -> None:
        """Stop renewing and give the lock back; never raise, so the caller's error stays."""
        await self._stop_renewer()
        await run_async(self.db, self.release_flow())

    async def _renew_in_background(self) -> None:
        schedule = LeaseSchedule(self.clock, self.lease / 3)
        while True:
            await asyncio.sleep(self.poll)
            if not schedule.due():
                continue
            try:
                await run_async(self.db, self.renew_flow())
            except MigrationLockedError as exc:
                self.renewal_error = exc
                return
            except NsnStoreError as exc:
                log.warning("could not renew the migration lease (will retry): %s", exc)
                continue
            schedule.mark()

    async def _stop_renewer(self) -> None:
        task, self._renewer = self._renewer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> AsyncMigrationLock:
        await self.acquire()
        self._renewer = asyncio.ensure_future(self._renew_in_background())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


def check_lock_timeout(value: Any, argument: str = "lock_timeout") -> float:
    """Return ``value`` as seconds to wait for the lock: 0 (try once) to one day."""
    return check_duration(
        value, argument, minimum=timedelta(0), maximum=MAX_TIMEOUT
    ).total_seconds()
