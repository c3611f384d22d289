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

Trust: every id (tenant, preview, user) passes the id gate
(:func:`nsn_store.arguments.as_object_id`) before any I/O, so an operator such
as ``{"$ne": None}`` can never select another tenant's previews. A preview of
another tenant and one that does not exist (or has expired) are refused with
the same :class:`~nsn_store.errors.NotFoundError` and message, so no error
reveals what another tenant owns; the same holds for ``create``'s ``user_id``,
which must name a user of the tenant (one ``find_one`` on ``users`` by
``{_id, tenantId}``).

Bounds, checked before any I/O (a bad value raises
:class:`~nsn_store.errors.InvalidArgumentError` naming the argument):
``ttl`` from :data:`MIN_TTL` (1 s) to :data:`MAX_TTL` (1 day), as a timedelta
or seconds; ``prompt`` 1-10,000 characters; an appended chunk at most
100,000 characters (the whole ``tokens`` field has the same limit, enforced by
the validator); ``list(limit=...)`` from 1 to :data:`MAX_LIST_LIMIT` (1,000).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store.arguments import (
    as_object_id,
    check_duration,
    check_limit,
    check_text,
    optional_object_id,
)
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import (
    InvalidTransitionError,
    NotFoundError,
    translated,
)

COLLECTION = "aiPreviews"
USERS = "users"
OPEN_STATUSES = ("pending", "streaming")
DEFAULT_LIST_LIMIT = 100
#: The most previews one ``list`` call returns.
MAX_LIST_LIMIT: Final = 1_000
#: The shortest and longest life a preview may be given.
MIN_TTL: Final = timedelta(seconds=1)
MAX_TTL: Final = timedelta(days=1)
#: The longest prompt (the model's ``Prompt``) and appended chunk (``Tokens``).
MAX_PROMPT: Final = 10_000
MAX_CHUNK: Final = 100_000
#: Newest first; ``_id`` breaks ties between previews created in the same millisecond.
NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]


# ---------------------------------------------------------------- pure builders


def expiry(now: datetime, ttl: timedelta | float) -> datetime:
    """Return ``now + ttl`` (seconds or a timedelta, from 1 s to 1 day); refuse any other ttl."""
    return now + check_duration(ttl, "ttl", minimum=MIN_TTL, maximum=MAX_TTL)


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
        "prompt": check_text(prompt, "prompt", maximum=MAX_PROMPT),
        "status": "pending",
        "expiresAt": expiry(now, ttl),
        "createdAt": now,
    }
    if user_id is not None:
        document["userId"] = user_id
    return document


def live_filter(tenant_id: Any, now: datetime, preview_id: Any = None) -> dict[str, Any]:
    """Return the filter of the tenant's unexpired previews (or of one of them)."""
    query: dict[str, Any] = {"tenantId": tenant_id, "expiresAt": {"$gt": now}}
    if preview_id is not None:
        query["_id"] = as_object_id(preview_id, "preview_id")
    return query


def open_filter(tenant_id: Any, preview_id: Any, now: datetime) -> dict[str, Any]:
    """Return the filter of one unexpired preview that is still pending or streaming."""
    return {
        **live_filter(tenant_id, now, preview_id),
        "status": {"$in": list(OPEN_STATUSES)},
    }


def user_filter(tenant_id: Any, user_id: ObjectId) -> dict[str, Any]:
    """Return the filter finding ``user_id`` among the tenant's users (served by ``_id``)."""
    return {"_id": user_id, "tenantId": tenant_id}


def user_refusal(user_id: ObjectId) -> NotFoundError:
    """Return the error for a user id that is missing or another tenant's (the same error)."""
    return NotFoundError(f"user {user_id} is not a user of this tenant")


def append_update(text: str, now: datetime) -> list[dict[str, Any]]:
    """Return the atomic pipeline update appending ``text`` to ``tokens``."""
    check_text(text, "text", maximum=MAX_CHUNK, allow_empty=True)
    tokens = {"$concat": [{"$ifNull": ["$tokens", ""]}, {"$literal": text}]}
    return [{"$set": {"status": "streaming", "tokens": tokens, "updatedAt": now}}]


def finish_update(status: str, now: datetime) -> dict[str, Any]:
    """Return the update ending a preview as ``done`` or ``error``."""
    return {"$set": {"status": status, "updatedAt": now}}


def refusal(preview_id: Any, current: Mapping[str, Any] | None, action: str) -> Exception:
    """Return the error for a change that matched nothing: gone/expired, or already finished.

    A preview of another tenant is never found by the tenant-scoped lookup, so
    it gets the same error and message as one that does not exist.
    """
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
        self._users = db[USERS]

    def _new(
        self, tenant_id: Any, prompt: Any, ttl: Any, user_id: Any
    ) -> tuple[dict[str, Any], ObjectId | None]:
        """Check create's arguments; return the new document and the user to check."""
        tenant = as_object_id(tenant_id, "tenant_id")
        user = optional_object_id(user_id, "user_id")
        document = preview_document(tenant, prompt, self.clock.now(), ttl, user)
        return document, user

    def _ids(self, tenant_id: Any, preview_id: Any) -> tuple[ObjectId, ObjectId]:
        return as_object_id(tenant_id, "tenant_id"), as_object_id(preview_id, "preview_id")

    def _list_filter(self, tenant_id: Any, limit: Any) -> tuple[dict[str, Any], int]:
        tenant = as_object_id(tenant_id, "tenant_id")
        limit = check_limit(limit, "limit", maximum=MAX_LIST_LIMIT)
        return live_filter(tenant, self.clock.now()), limit


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
        """Create a pending preview that expires ``ttl`` from now; return it.

        ``user_id``, when given, must be a user of the tenant: a missing user
        and another tenant's are refused alike (:class:`NotFoundError`).
        """
        document, user = self._new(tenant_id, prompt, ttl, user_id)
        with translated(collection=COLLECTION):
            if (
                user is not None
                and self._users.find_one(user_filter(document["tenantId"], user), {"_id": 1})
                is None
            ):
                raise user_refusal(user)
            document["_id"] = self._collection.insert_one(document).inserted_id
        return document

    def append_tokens(self, tenant_id: Any, preview_id: Any, text: str) -> dict[str, Any]:
        """Append streamed ``text`` (at most 100,000 characters) atomically; return the preview."""
        now = self.clock.now()
        return self._change(tenant_id, preview_id, append_update(text, now), now, "append to")

    def complete(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview done; return it."""
        now = self.clock.now()
        return self._change(tenant_id, preview_id, finish_update("done", now), now, "complete")

    def fail(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview as failed (status error); return it."""
        now = self.clock.now()
        return self._change(tenant_id, preview_id, finish_update("error", now), now, "fail")

    def get(self, tenant_id: Any, preview_id: Any) -> dict[str, Any] | None:
        """Return the tenant's preview, or None if it does not exist, has expired or is
        another tenant's."""
        tenant, preview = self._ids(tenant_id, preview_id)
        with translated(collection=COLLECTION):
            found: dict[str, Any] | None = self._collection.find_one(
                live_filter(tenant, self.clock.now(), preview)
            )
        return found

    def list(
        self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> builtins.list[dict[str, Any]]:
        """Return the tenant's unexpired previews, newest first (``limit`` 1-1,000)."""
        query, limit = self._list_filter(tenant_id, limit)
        with translated(collection=COLLECTION):
            cursor = self._collection.find(query).sort(NEWEST_FIRST)
            return builtins.list(cursor.limit(limit))

    def _change(
        self, tenant_id: Any, preview_id: Any, update: Any, now: datetime, action: str
    ) -> dict[str, Any]:
        tenant, preview = self._ids(tenant_id, preview_id)
        with translated(collection=COLLECTION):
            changed: dict[str, Any] | None = self._collection.find_one_and_update(
                open_filter(tenant, preview, now),
                update,
                return_document=ReturnDocument.AFTER,
            )
            if changed is None:
                current = self._collection.find_one(live_filter(tenant, now, preview))
                raise refusal(preview, current, action)
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
        """Create a pending preview that expires ``ttl`` from now; return it.

        ``user_id``, when given, must be a user of the tenant: a missing user
        and another tenant's are refused alike (:class:`NotFoundError`).
        """
        document, user = self._new(tenant_id, prompt, ttl, user_id)
        with translated(collection=COLLECTION):
            if (
                user is not None
                and await self._users.find_one(user_filter(document["tenantId"], user), {"_id": 1})
                is None
            ):
                raise user_refusal(user)
            document["_id"] = (await self._collection.insert_one(document)).inserted_id
        return document

    async def append_tokens(self, tenant_id: Any, preview_id: Any, text: str) -> dict[str, Any]:
        """Append streamed ``text`` (at most 100,000 characters) atomically; return the preview."""
        now = self.clock.now()
        return await self._change(tenant_id, preview_id, append_update(text, now), now, "append to")

    async def complete(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview done; return it."""
        now = self.clock.now()
        return await self._change(
            tenant_id, preview_id, finish_update("done", now), now, "complete"
        )

    async def fail(self, tenant_id: Any, preview_id: Any) -> dict[str, Any]:
        """Mark the preview as failed (status error); return it."""
        now = self.clock.now()
        return await self._change(tenant_id, preview_id, finish_update("error", now), now, "fail")

    async def get(self, tenant_id: Any, preview_id: Any) -> dict[str, Any] | None:
        """Return the tenant's preview, or None if it does not exist, has expired or is
        another tenant's."""
        tenant, preview = self._ids(tenant_id, preview_id)
        with translated(collection=COLLECTION):
            found: dict[str, Any] | None = await self._collection.find_one(
                live_filter(tenant, self.clock.now(), preview)
            )
        return found

    async def list(
        self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> builtins.list[dict[str, Any]]:
        """Return the tenant's unexpired previews, newest first (``limit`` 1-1,000)."""
        query, limit = self._list_filter(tenant_id, limit)
        with translated(collection=COLLECTION):
            cursor = self._collection.find(query).sort(NEWEST_FIRST)
            found: builtins.list[dict[str, Any]] = await cursor.limit(limit).to_list(None)
        return found

    async def _change(
        self, tenant_id: Any, preview_id: Any, update: Any, now: datetime, action: str
    ) -> dict[str, Any]:
        tenant, preview = self._ids(tenant_id, preview_id)
        with translated(collection=COLLECTION):
            changed: dict[str, Any] | None = await self._collection.find_one_and_update(
                open_filter(tenant, preview, now),
                update,
                return_document=ReturnDocument.AFTER,
            )
            if changed is None:
                current = await self._collection.find_one(live_filter(tenant, now, preview))
                raise refusal(preview, current, action)
        return changed
