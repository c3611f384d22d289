"""A lease-based lock in ``nsn_migrations`` so two ``init`` runs cannot interleave.

The lock is one document, ``{_id: "lock", holder, acquiredAt, expiresAt}``. It is
taken with a single upsert whose filter matches only an *expired* lock: when a
live lock exists the upsert tries to insert a second ``_id: "lock"`` and the
server answers with a duplicate-key error, so exactly one contender wins
without any read-then-write race. The holder extends the lease after each step,
so a crashed run blocks others for at most one lease, after which its lock is
stale and the next run takes it over.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from pymongo import errors as pymongo_errors
from pymongo.collection import Collection

from nsn_store.clock import Clock
from nsn_store.errors import MigrationLockedError, translate

log = logging.getLogger(__name__)

LOCK_ID = "lock"
DEFAULT_LEASE = timedelta(seconds=60)


def new_holder_id() -> str:
    """Return an id naming this process, unique per run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_lock_update(holder: str, now: datetime, lease: timedelta) -> dict[str, Any]:
    """Return the update that records ``holder`` as the lock owner until ``now + lease``."""
    return {"$set": {"holder": holder, "acquiredAt": now, "expiresAt": now + lease}}


def free_lock_filter(now: datetime) -> dict[str, Any]:
    """Match the lock document only when it is stale (its lease ended by ``now``)."""
    return {"_id": LOCK_ID, "expiresAt": {"$lte": now}}


class MigrationLock:
    """Hold the migration lock for the duration of a ``with`` block."""

    def __init__(
        self,
        collection: Collection[Any],
        *,
        clock: Clock,
        timeout: float,
        lease: timedelta = DEFAULT_LEASE,
        poll: float = 0.05,
        holder: str | None = None,
    ) -> None:
        self.collection = collection
        self.clock = clock
        self.timeout = timeout
        self.lease = lease
        self.poll = poll
        self.holder = holder or new_holder_id()

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise MigrationLockedError."""
        deadline = time.monotonic() + self.timeout
        while not self._try_take():
            if time.monotonic() >= deadline:
                raise self._locked_error()
            time.sleep(self.poll)
        log.info("migration lock taken by %s", self.holder)

    def refresh(self) -> None:
        """Extend the lease; raise MigrationLockedError if another run took it over."""
        expires = self.clock.now() + self.lease
        try:
            result = self.collection.update_one(
                {"_id": LOCK_ID, "holder": self.holder}, {"$set": {"expiresAt": expires}}
            )
        except pymongo_errors.PyMongoError as exc:
            raise translate(exc, collection=self.collection.name) from exc
        if result.matched_count == 0:
            raise MigrationLockedError(
                f"lost the migration lock (held by {self.holder}) after its lease expired",
                holder=self.holder,
            )

    def release(self) -> None:
        """Give the lock back; never raise, so the caller's own error stays visible."""
        try:
            self.collection.delete_one({"_id": LOCK_ID, "holder": self.holder})
        except pymongo_errors.PyMongoError as exc:
            log.warning("could not release the migration lock (expires by itself): %s", exc)

    def _try_take(self) -> bool:
        now = self.clock.now()
        try:
            self.collection.update_one(
                free_lock_filter(now), take_lock_update(self.holder, now, self.lease), upsert=True
            )
        except pymongo_errors.DuplicateKeyError:
            return False
        except pymongo_errors.PyMongoError as exc:
            raise translate(exc, collection=self.collection.name) from exc
        return True

    def _locked_error(self) -> MigrationLockedError:
        current = self.collection.find_one({"_id": LOCK_ID}) or {}
        holder = current.get("holder", "unknown")
        return MigrationLockedError(
            f"another migration run holds the lock: {holder} (taken at "
            f"{current.get('acquiredAt')}, lease until {current.get('expiresAt')}); "
            f"gave up after {self.timeout:g} s",
            holder=holder,
        )

    def __enter__(self) -> MigrationLock:  # noqa: PYI034 - Self needs Python 3.11
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
