"""The registry of live workers: one ``workers`` document per running worker.

A worker upserts its document when it starts (host, pid, version,
concurrency, the tenants it serves), refreshes ``heartbeatAt`` with each
heartbeat, and deletes it when it stops cleanly. A worker that dies keeps its
document until :func:`list_workers` stops counting it as live (no heartbeat
for ``stale_after``, default 3 minutes) and the collection's TTL index
removes it (a day after its last heartbeat). Several workers started with the
same ``worker_id`` share one document: the next heartbeat of any of them
brings it back if another's clean stop removed it.

Every write is one round trip, written once as a flow (:mod:`nsn_store._flow`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bson import ObjectId

from nsn_store._flow import Flow, Op, run, run_async
from nsn_store.arguments import check_duration
from nsn_store.clock import DEFAULT_CLOCK, Clock, to_bson_time

__all__ = [
    "DEFAULT_STALE_AFTER",
    "WORKERS",
    "LiveWorker",
    "deregister",
    "heartbeat",
    "list_workers",
    "list_workers_async",
    "live_workers",
    "register",
    "worker_document",
]

WORKERS: Final = "workers"
#: A worker that has not heartbeated for this long is not listed as live.
DEFAULT_STALE_AFTER: Final = timedelta(minutes=3)
#: The longest a worker goes between two registry heartbeats, whatever its lease.
REGISTRY_HEARTBEAT: Final = timedelta(seconds=60)


def worker_document(
    now: datetime, concurrency: int, tenants: Sequence[ObjectId] | None
) -> dict[str, Any]:
    """Return a worker's registry document (without its ``_id``)."""
    from nsn_store import __version__

    document: dict[str, Any] = {
        "host": socket.gethostname()[:255] or "unknown",
        "pid": os.getpid(),
        "version": __version__,
        "startedAt": to_bson_time(now),
        "heartbeatAt": to_bson_time(now),
        "concurrency": concurrency,
    }
    if tenants is not None:
        document["tenants"] = list(tenants)
    return document


def register(worker_id: str, document: dict[str, Any]) -> Flow[None]:
    """Upsert the worker's document (one round trip)."""
    yield Op("replace_one", WORKERS, ({"_id": worker_id}, document), {"upsert": True})


def heartbeat(worker_id: str, document: dict[str, Any], now: datetime) -> Flow[None]:
    """Refresh ``heartbeatAt``; bring the document back if it is gone (one trip, two then)."""
    result = yield Op(
        "update_one", WORKERS, ({"_id": worker_id}, {"$set": {"heartbeatAt": to_bson_time(now)}})
    )
    if result.matched_count == 0:
        yield from register(worker_id, {**document, "heartbeatAt": to_bson_time(now)})


def deregister(worker_id: str) -> Flow[None]:
    """Delete the worker's document at a clean stop (one round trip)."""
    yield Op("delete_one", WORKERS, ({"_id": worker_id},))


@dataclass(frozen=True)
class LiveWorker:
    """A worker that heartbeated lately, as its registry document describes it."""

    worker_id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    concurrency: int
    tenants: tuple[ObjectId, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the worker as JSON-ready values (what ``status --json`` can print)."""
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "concurrency": self.concurrency,
            "tenants": None if self.tenants is None else [str(t) for t in self.tenants],
        }


def live_workers(now: datetime, stale_after: timedelta | float) -> Flow[list[LiveWorker]]:
    """Return the workers that heartbeated within ``stale_after`` of ``now``, by id (one find)."""
    stale_after = check_duration(
        stale_after, "stale_after", minimum=timedelta(seconds=1), maximum=timedelta(days=1)
    )
    since = to_bson_time(now) - stale_after
    found = yield Op("find", WORKERS, ({"heartbeatAt": {"$gte": since}},), {"sort": [("_id", 1)]})
    return [_live(doc) for doc in found]


def _live(doc: dict[str, Any]) -> LiveWorker:
    tenants = doc.get("tenants")
    return LiveWorker(
        worker_id=str(doc["_id"]),
        host=str(doc.get("host", "")),
        pid=int(doc.get("pid", 0)),
        version=str(doc.get("version", "")),
        started_at=to_bson_time(doc["startedAt"]),
        heartbeat_at=to_bson_time(doc["heartbeatAt"]),
        concurrency=int(doc.get("concurrency", 1)),
        tenants=None if tenants is None else tuple(tenants),
    )


def list_workers(
    db: Any, *, clock: Clock | None = None, stale_after: timedelta | float = DEFAULT_STALE_AFTER
) -> list[LiveWorker]:
    """Return the live workers of ``db`` (heartbeat within ``stale_after``), sorted by id."""
    now = (clock or DEFAULT_CLOCK).now()
    return run(db, live_workers(now, stale_after))


async def list_workers_async(
    db: Any, *, clock: Clock | None = None, stale_after: timedelta | float = DEFAULT_STALE_AFTER
) -> list[LiveWorker]:
    """The asyncio twin of :func:`list_workers` (an async database)."""
    now = (clock or DEFAULT_CLOCK).now()
    return await run_async(db, live_workers(now, stale_after))
