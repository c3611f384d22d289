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

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from bson import ObjectId
from pymongo import ReturnDocument

from nsn_store._flow import Flow, FlowHost, Op, TripCounter, asynchronous, sync
from nsn_store._types import Document, DocumentIn, IdLike
from nsn_store.arguments import (
    as_object_id,
    check_duration,
    check_limit,
    check_text,
    optional_object_id,
)
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import InvalidTransitionError, NotFoundError

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
    tenant_id: ObjectId,
    prompt: str,
    now: datetime,
    ttl: timedelta | float,
    user_id: ObjectId | None = None,
) -> Document:
    """Return a new pending preview (optional fields absent, never null)."""
    document: Document = {
        "tenantId": tenant_id,
        "prompt": check_text(prompt, "prompt", maximum=MAX_PROMPT),
        "status": "pending",
        "expiresAt": expiry(now, ttl),
        "createdAt": now,
    }
    if user_id is not None:
        document["userId"] = user_id
    return document


def live_filter(tenant_id: IdLike, now: datetime, preview_id: IdLike | None = None) -> Document:
    """Return the filter of the tenant's unexpired previews (or of one of them)."""
    query: Document = {"tenantId": tenant_id, "expiresAt": {"$gt": now}}
    if preview_id is not None:
        query["_id"] = as_object_id(preview_id, "preview_id")
    return query


def open_filter(tenant_id: ObjectId, preview_id: IdLike, now: datetime) -> Document:
    """Return the filter of one unexpired preview that is still pending or streaming."""
    return {
        **live_filter(tenant_id, now, preview_id),
        "status": {"$in": list(OPEN_STATUSES)},
    }


def user_filter(tenant_id: ObjectId, user_id: ObjectId) -> Document:
    """Return the filter finding ``user_id`` among the tenant's users (served by ``_id``)."""
    return {"_id": user_id, "tenantId": tenant_id}


def user_refusal(user_id: ObjectId) -> NotFoundError:
    """Return the error for a user id that is missing or another tenant's (the same error)."""
    return NotFoundError(f"user {user_id} is not a user of this tenant")


def append_update(text: str, now: datetime) -> list[Document]:
    """Return the atomic pipeline update appending ``text`` to ``tokens``."""
    check_text(text, "text", maximum=MAX_CHUNK, allow_empty=True)
    tokens = {"$concat": [{"$ifNull": ["$tokens", ""]}, {"$literal": text}]}
    return [{"$set": {"status": "streaming", "tokens": tokens, "updatedAt": now}}]


def finish_update(status: str, now: datetime) -> Document:
    """Return the update ending a preview as ``done`` or ``error``."""
    return {"$set": {"status": status, "updatedAt": now}}


def refusal(preview_id: IdLike, current: DocumentIn | None, action: str) -> Exception:
    """Return the error for a change that matched nothing: gone/expired, or already finished.

    A preview of another tenant is never found by the tenant-scoped lookup, so
    it gets the same error and message as one that does not exist.
    """
    if current is None:
        return NotFoundError(f"preview {preview_id} does not exist or has expired")
    return InvalidTransitionError(
        f"cannot {action} preview {preview_id}: it is {current['status']}"
    )


# ---------------------------------------------------------------- flows


class _PreviewFlows(FlowHost):
    """Every preview operation, written once as a flow; the classes below declare them.

    Each flow checks its arguments before its first database call.
    """

    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.trips = TripCounter()
        self.clock = clock or DEFAULT_CLOCK

    def _create(
        self,
        tenant_id: IdLike,
        prompt: str,
        *,
        ttl: timedelta | float,
        user_id: IdLike | None = None,
    ) -> Flow[Document]:
        """Create a pending preview that expires ``ttl`` from now; return it.

        ``user_id``, when given, must be a user of the tenant: a missing user
        and another tenant's are refused alike (:class:`NotFoundError`).
        """
        document, user = self._new(tenant_id, prompt, ttl, user_id)
        if user is not None:
            member = user_filter(document["tenantId"], user)
            found = yield Op("find_one", USERS, (member, {"_id": 1}))
            if found is None:
                raise user_refusal(user)
        inserted = yield Op("insert_one", COLLECTION, (document,))
        document["_id"] = inserted.inserted_id
        return document

    def _append_tokens(self, tenant_id: IdLike, preview_id: IdLike, text: str) -> Flow[Document]:
        """Append streamed ``text`` (at most 100,000 characters) atomically; return the preview."""
        now = self.clock.now()
        update = append_update(text, now)
        return (yield from self._change(tenant_id, preview_id, update, now, "append to"))

    def _complete(self, tenant_id: IdLike, preview_id: IdLike) -> Flow[Document]:
        """Mark the preview done; return it."""
        now = self.clock.now()
        update = finish_update("done", now)
        return (yield from self._change(tenant_id, preview_id, update, now, "complete"))

    def _fail(self, tenant_id: IdLike, preview_id: IdLike) -> Flow[Document]:
        """Mark the preview as failed (status error); return it."""
        now = self.clock.now()
        update = finish_update("error", now)
        return (yield from self._change(tenant_id, preview_id, update, now, "fail"))

    def _get(self, tenant_id: IdLike, preview_id: IdLike) -> Flow[Document | None]:
        """Return the tenant's preview, or None if it does not exist, has expired or is
        another tenant's."""
        tenant, preview = self._ids(tenant_id, preview_id)
        found: Document | None = yield Op(
            "find_one", COLLECTION, (live_filter(tenant, self.clock.now(), preview),)
        )
        return found

    def _list(self, tenant_id: IdLike, *, limit: int = DEFAULT_LIST_LIMIT) -> Flow[list[Document]]:
        """Return the tenant's unexpired previews, newest first (``limit`` 1-1,000)."""
        query, limit = self._list_filter(tenant_id, limit)
        found: list[Document] = yield Op(
            "find", COLLECTION, (query,), {"sort": NEWEST_FIRST, "limit": limit}
        )
        return found

    def _change(
        self,
        tenant_id: IdLike,
        preview_id: IdLike,
        update: DocumentIn | Sequence[DocumentIn],
        now: datetime,
        action: str,
    ) -> Flow[Document]:
        """Apply ``update`` to one open preview; tell a missing one from a finished one.

        One round trip when the change applies; a second read only to choose the error.
        """
        tenant, preview = self._ids(tenant_id, preview_id)
        changed: Document | None = yield Op(
            "find_one_and_update",
            COLLECTION,
            (open_filter(tenant, preview, now), update),
            {"return_document": ReturnDocument.AFTER},
        )
        if changed is None:
            current = yield Op("find_one", COLLECTION, (live_filter(tenant, now, preview),))
            raise refusal(preview, current, action)
        return changed

    # -- argument checks (before any I/O)

    def _new(
        self, tenant_id: IdLike, prompt: str, ttl: timedelta | float, user_id: IdLike | None
    ) -> tuple[Document, ObjectId | None]:
        """Check create's arguments; return the new document and the user to check."""
        tenant = as_object_id(tenant_id, "tenant_id")
        user = optional_object_id(user_id, "user_id")
        document = preview_document(tenant, prompt, self.clock.now(), ttl, user)
        return document, user

    def _ids(self, tenant_id: IdLike, preview_id: IdLike) -> tuple[ObjectId, ObjectId]:
        return as_object_id(tenant_id, "tenant_id"), as_object_id(preview_id, "preview_id")

    def _list_filter(self, tenant_id: IdLike, limit: int) -> tuple[Document, int]:
        tenant = as_object_id(tenant_id, "tenant_id")
        limit = check_limit(limit, "limit", maximum=MAX_LIST_LIMIT)
        return live_filter(tenant, self.clock.now()), limit


# ---------------------------------------------------------------- declarations


class AIPreviews(_PreviewFlows):
    """Create, stream into, finish and read a tenant's AI previews."""

    create = sync(_PreviewFlows._create)
    append_tokens = sync(_PreviewFlows._append_tokens)
    complete = sync(_PreviewFlows._complete)
    fail = sync(_PreviewFlows._fail)
    get = sync(_PreviewFlows._get)
    list = sync(_PreviewFlows._list)


class AsyncAIPreviews(_PreviewFlows):
    """The asyncio twin of :class:`AIPreviews`."""

    create = asynchronous(_PreviewFlows._create)
    append_tokens = asynchronous(_PreviewFlows._append_tokens)
    complete = asynchronous(_PreviewFlows._complete)
    fail = asynchronous(_PreviewFlows._fail)
    get = asynchronous(_PreviewFlows._get)
    list = asynchronous(_PreviewFlows._list)
