"""AI previews: short-lived drafts streamed token by token, expired by TTL.

A preview is created ``pending`` with ``expiresAt = now + ttl``; tokens are
appended (``streaming``); it ends ``done`` or ``error``. The ``by_expiresAt``
TTL index (expireAfterSeconds 0) makes the server delete it after
``expiresAt``, but the TTL monitor only runs about once a minute, so every
read and write here also filters ``expiresAt > now``: nothing expired is ever
served or changed in that gap.

Tokens are appended with a pipeline update
(``$concat: [{$ifNull: ["$tokens", ""]}, {$literal: text}]``), which the
server applies atomically to the one document: concurrent appends are never
lost, unlike a read-modify-write. ``$literal`` keeps a chunk that starts with
``$`` from being read as a field path.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import (
    ConfigurationError,
    InvalidTransitionError,
    NotFoundError,
    translated,
)

COLLECTION = "aiPreviews"
OPEN_STATUSES = ("pending", "streaming")
DEFAULT_LIST_LIMIT = 100
#: Newest first; ``_id`` breaks ties between previews created in the same millisecond.
NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]


# ---------------------------------------------------------------- pure builders


def as_object_id(value: Any) -> Any:
    """Return ``value`` as an ObjectId when it is an ObjectId's hex string."""
    if isinstance(value, str) and ObjectId.is_valid(value):
        return ObjectId(value)
    return value


def expiry(now: datetime, ttl: timedelta | float) -> datetime:
    """Return ``now + ttl`` (seconds or a timedelta); refuse a ttl that is not positive."""
    delta = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if delta <= timedelta(0):
        raise ConfigurationError(f"a preview needs a positive ttl, got {ttl!r}")
    return now + delta


def preview_document(
    tenant_id: Any,
    prompt: str,
    now: datetime,
    ttl: timedelta | float,
    user_id: Any = None,
) -> dict[str, Any]:
    """Return a new pending preview (optional fields absent, never null)."""
    document: dict[str, Any] = {
        "tenantId": tenant_id,
        "prompt": prompt,
        "status": "pending",
        "expiresAt": expiry(now, ttl),
        "createdAt": now,
    }
    if user_id is not None:
        document["userId"] = user_id
    return document


def live_filter(
    tenant_id: Any, now: datetime, preview_id: Any = None
) -> dict[str, Any]:
    """Return the filter of the tenant's unexpired previews (or of one of them)."""
    query: dict[str, Any] = {"tenantId": tenant_id, "expiresAt": {"$gt": now}}
    if preview_id is not None:
        query["_id"] = as_object_id(preview_id)
    return query


def open_filter(tenant_id: Any, preview_id: Any, now: datetime) -> dict[str, Any]:
    """Return the filter of one unexpired preview that is still pending or streaming."""
    return {
        **live_filter(tenant_id, now, preview_id),
        "status": {"$in": list(OPEN_STATUSES)},
    }


def append_update(text: str, now: datetime) -> list[dict[str, Any]]:
    """Return the atomic pipeline update appending ``text`` to ``tokens``."""
    tokens = {"$concat": [{"$ifNull": ["$tokens", ""]}, {"$literal": text}]}
    return [{"$set": {"status": "streaming", "tokens": tokens, "updatedAt": now}}]


def finish_update(status: str, now: datetime) -> dict[str, Any]:
    """Return the update ending a preview as ``done`` or ``error``."""
    return {"$set": {"status": status, "updatedAt": now}}


def refusal(
    preview_id: Any, current: Mapping[str, Any] | None, action: str
) -> Exception:
    """Return the error for a change that matched nothing: gone/expired, or already finished."""
    if current is None:
        return NotFoundError(f"preview {preview_id} does not exist or has expired")
    return InvalidTransitionError(
        f"cannot {action} preview {preview_id}: it is {current['status']}"
    )


# ---------------------------------------------------------------- I/O twins


class _PreviewsBase:
    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or DEFAULT_CLOCK
        self._collection = db[COLLECTION]


class AIPreviews(_PreviewsBase):
    """Create, stream into, finish and read a tenant's AI previews."""

    def create(
        self,
        tenant_id: Any,
        prompt: str,
        *,
        ttl: timedelta | float,
        user_id: Any = None,
    ) -> dict[str, Any]:
        """Create a pending preview that expires ``ttl`` from now; return it."""
        document = preview_document(tenant_id, prompt, self.clock.now(), ttl, user_id)
        with translated(collection=COLLECTION):
            document["_id"] = self._collection.insert_one(document).inserted_id
        return document

    def append_tokens(
        self, tenant_id: Any, preview_id: Any, text: str
    ) -> dict[str, Any]:
        """Append streamed ``text`` atomically; return the preview."""
        now = self.clock.now()
        return self._change(
            tenant_id, preview_id, append_update(text, now), now, "append to"
        )

    def complete(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview done; return it."""
        now = self.clock.now()
        return self._change(
            tenant_id, preview_id, finish_update("done", now), now, "complete"
        )

    def fail(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview as failed (status error); return it."""
        now = self.clock.now()
        return self._change(
            tenant_id, preview_id, finish_update("error", now), now, "fail"
        )

    def get(self, tenant_id: Any, preview_id: Any) -> dict[str, Any] | None:
        """Return the tenant's preview, or None if it does not exist or has expired."""
        with translated(collection=COLLECTION):
            found: dict[str, Any] | None = self._collection.find_one(
                live_filter(tenant_id, self.clock.now(), preview_id)
            )
        return found

    def list(
        self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> builtins.list[dict[str, Any]]:
        """Return the tenant's unexpired previews, newest first."""
        query = live_filter(tenant_id, self.clock.now())
        with translated(collection=COLLECTION):
            cursor = self._collection.find(query).sort(NEWEST_FIRST)
            return builtins.list(cursor.limit(limit))

    def _change(
        self, tenant_id: Any, preview_id: Any, update: Any, now: datetime, action: str
    ) -> dict[str, Any]:
        with translated(collection=COLLECTION):
            changed: dict[str, Any] | None = self._collection.find_one_and_update(
                open_filter(tenant_id, preview_id, now),
                update,
                return_document=ReturnDocument.AFTER,
            )
            if changed is None:
                current = self._collection.find_one(
                    live_filter(tenant_id, now, preview_id)
                )
                raise refusal(preview_id, current, action)
        return changed


class AsyncAIPreviews(_PreviewsBase):
    """The asyncio twin of :class:`AIPreviews`."""

    async def create(
        self,
        tenant_id: Any,
        prompt: str,
        *,
        ttl: timedelta | float,
        user_id: Any = None,
    ) -> dict[str, Any]:
        """Create a pending preview that expires ``ttl`` from now; return it."""
        document = preview_document(tenant_id, prompt, self.clock.now(), ttl, user_id)
        with translated(collection=COLLECTION):
            document["_id"] = (await self._collection.insert_one(document)).inserted_id
        return document

    async def append_tokens(
        self, tenant_id: Any, preview_id: Any, text: str
    ) -> dict[str, Any]:
        """Append streamed ``text`` atomically; return the preview."""
        now = self.clock.now()
        return await self._change(
            tenant_id, preview_id, append_update(text, now), now, "append to"
        )

    async def complete(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview done; return it."""
        now = self.clock.now()
        return await self._change(
            tenant_id, preview_id, finish_update("done", now), now, "complete"
        )

    async def fail(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview as failed (status error); return it."""
        now = self.clock.now()
        return await self._change(
            tenant_id, preview_id, finish_update("error", now), now, "fail"
        )

    async def get(self, tenant_id: Any, preview_id: Any) -> dict[str, Any] | None:
        """Return the tenant's preview, or None if it does not exist or has expired."""
        with translated(collection=COLLECTION):
            found: dict[str, Any] | None = await self._collection.find_one(
                live_filter(tenant_id, self.clock.now(), preview_id)
            )
        return found

    async def list(
        self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> builtins.list[dict[str, Any]]:
        """Return the tenant's unexpired previews, newest first."""
        query = live_filter(tenant_id, self.clock.now())
        with translated(collection=COLLECTION):
            cursor = self._collection.find(query).sort(NEWEST_FIRST)
            found: builtins.list[dict[str, Any]] = await cursor.limit(limit).to_list(
                None
            )
        return found

    async def _change(
        self, tenant_id: Any, preview_id: Any, update: Any, now: datetime, action: str
    ) -> dict[str, Any]:
        with translated(collection=COLLECTION):
            changed: dict[str, Any] | None = await self._collection.find_one_and_update(
                open_filter(tenant_id, preview_id, now),
                update,
                return_document=ReturnDocument.AFTER,
            )
            if changed is None:
                current = await self._collection.find_one(
                    live_filter(tenant_id, now, preview_id)
                )
                raise refusal(preview_id, current, action)
        return changed
