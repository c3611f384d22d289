"""RAG documents: a tenant's knowledge-base passages, listed and searched.

Search is a case-insensitive substring match (``$regex`` over ``text`` and
``title``, the query escaped with ``re.escape`` so user input is never a
pattern), always scoped to one tenant. It scans the tenant's documents through
``by_tenantId``; a real deployment would use Atlas Search (or a ``$text``
index) for ranking at scale, which mongomock cannot emulate. Embeddings are
arrays of doubles supplied by the caller: no model is downloaded or run here.

Trust: the tenant id passes the id gate
(:func:`nsn_store.arguments.as_object_id`) before any I/O, so ``{"$ne": None}``
can never read another tenant's passages. Bounds, checked before any I/O (a
bad value raises :class:`~nsn_store.errors.InvalidArgumentError` naming the
argument): ``text`` 1-100,000 characters and ``title`` at most 500 (the
model's ``Text`` and ``Title``); ``metadata`` a mapping BSON can encode; an
embedding 1 to :data:`MAX_EMBEDDING` (8,192) finite real numbers (NaN and
infinities are refused: they poison every similarity computed from them);
``search``'s query 1 to :data:`MAX_QUERY` (1,000) characters; ``limit`` from 1
to :data:`MAX_LIST_LIMIT` (1,000) for both ``list`` and ``search``.
"""

from __future__ import annotations

import builtins
import itertools
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import bson
from bson import ObjectId
from bson.errors import BSONError

from nsn_store.arguments import as_object_id, check_limit, check_text
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import InvalidArgumentError, translated

COLLECTION = "ragDocuments"
DEFAULT_LIMIT = 10
DEFAULT_LIST_LIMIT = 100
#: The most documents one ``list`` or ``search`` call returns.
MAX_LIST_LIMIT: Final = 1_000
#: The longest passage, title and search query.
MAX_TEXT: Final = 100_000
MAX_TITLE: Final = 500
MAX_QUERY: Final = 1_000
#: The most numbers an embedding holds (the model's bound).
MAX_EMBEDDING: Final = 8_192
_NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]


# ---------------------------------------------------------------- pure builders


def as_embedding(values: Sequence[float]) -> builtins.list[float]:
    """Return ``values`` as doubles (BSON ``double``).

    Refuses (by name, ``embedding``) anything but 1 to 8,192 finite real
    numbers: strings, bools, NaN, infinities, ints too large for a double.
    """
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise _embedding_error("must be a sequence of numbers")
    vector = builtins.list(itertools.islice(values, MAX_EMBEDDING + 1))
    if not vector:
        raise _embedding_error("must not be empty")
    if len(vector) > MAX_EMBEDDING:
        raise _embedding_error(f"must hold at most {MAX_EMBEDDING} numbers")
    return [_as_double(v) for v in vector]


def _as_double(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _embedding_error("must hold only real numbers")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _embedding_error("must hold only finite numbers (no NaN or infinity)")
    return number


def _embedding_error(problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"embedding {problem}", argument="embedding")


def check_metadata(metadata: Any) -> dict[str, Any]:
    """Return ``metadata`` as a dict if it is a mapping BSON can encode."""
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError("metadata must be a mapping", argument="metadata")
    document = dict(metadata)
    try:
        bson.encode({"metadata": document})
    except (BSONError, TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(
            "metadata holds a value BSON cannot encode", argument="metadata"
        ) from None
    return document


def rag_document(
    tenant_id: Any,
    text: str,
    now: datetime,
    *,
    title: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    embedding: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Return a new RAG document (optional fields absent, never null)."""
    document: dict[str, Any] = {
        "tenantId": tenant_id,
        "text": check_text(text, "text", maximum=MAX_TEXT),
        "createdAt": now,
    }
    if title is not None:
        document["title"] = check_text(title, "title", maximum=MAX_TITLE, allow_empty=True)
    if metadata is not None:
        document["metadata"] = check_metadata(metadata)
    if embedding is not None:
        document["embedding"] = as_embedding(embedding)
    return document


def search_filter(tenant_id: Any, query: str) -> dict[str, Any]:
    """Return the tenant-scoped, case-insensitive substring filter over text and title."""
    check_text(query, "query", maximum=MAX_QUERY)
    pattern = {"$regex": re.escape(query), "$options": "i"}
    return {"tenantId": tenant_id, "$or": [{"text": pattern}, {"title": pattern}]}


# ---------------------------------------------------------------- I/O twins


class _RagBase:
    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or DEFAULT_CLOCK
        self._collection = db[COLLECTION]

    def _new(self, tenant_id: Any, text: Any, **optional: Any) -> dict[str, Any]:
        """Check add's arguments (before any I/O); return the new document."""
        tenant = as_object_id(tenant_id, "tenant_id")
        return rag_document(tenant, text, self.clock.now(), **optional)

    def _listing(self, tenant_id: Any, limit: Any) -> tuple[ObjectId, int]:
        tenant = as_object_id(tenant_id, "tenant_id")
        return tenant, check_limit(limit, "limit", maximum=MAX_LIST_LIMIT)

    def _search(self, tenant_id: Any, query: Any, limit: Any) -> tuple[dict[str, Any], int]:
        tenant, limit = self._listing(tenant_id, limit)
        return search_filter(tenant, query), limit


class RagDocuments(_RagBase):
    """Add, list and search a tenant's RAG documents."""

    def add(
        self,
        tenant_id: Any,
        text: str,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Store a passage (with an optional caller-supplied embedding); return it."""
        document = self._new(tenant_id, text, title=title, metadata=metadata, embedding=embedding)
        with translated(collection=COLLECTION):
            document["_id"] = self._collection.insert_one(document).inserted_id
        return document

    def list(self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT) -> builtins.list[dict]:
        """Return the tenant's documents, newest first (``limit`` 1-1,000)."""
        tenant, limit = self._listing(tenant_id, limit)
        with translated(collection=COLLECTION):
            cursor = self._collection.find({"tenantId": tenant}).sort(_NEWEST_FIRST)
            return builtins.list(cursor.limit(limit))

    def search(
        self, tenant_id: Any, query: str, *, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[dict]:
        """Return the tenant's documents whose text or title contains ``query`` (any case).

        ``query`` is 1-1,000 characters, ``limit`` 1-1,000.
        """
        found_by, limit = self._search(tenant_id, query, limit)
        with translated(collection=COLLECTION):
            cursor = self._collection.find(found_by).sort(_NEWEST_FIRST)
            return builtins.list(cursor.limit(limit))


class AsyncRagDocuments(_RagBase):
    """The asyncio twin of :class:`RagDocuments`."""

    async def add(
        self,
        tenant_id: Any,
        text: str,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Store a passage (with an optional caller-supplied embedding); return it."""
        document = self._new(tenant_id, text, title=title, metadata=metadata, embedding=embedding)
        with translated(collection=COLLECTION):
            document["_id"] = (await self._collection.insert_one(document)).inserted_id
        return document

    async def list(self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT) -> builtins.list[dict]:
        """Return the tenant's documents, newest first (``limit`` 1-1,000)."""
        tenant, limit = self._listing(tenant_id, limit)
        with translated(collection=COLLECTION):
            cursor = self._collection.find({"tenantId": tenant}).sort(_NEWEST_FIRST)
            found: builtins.list[dict] = await cursor.limit(limit).to_list(None)
        return found

    async def search(
        self, tenant_id: Any, query: str, *, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[dict]:
        """Return the tenant's documents whose text or title contains ``query`` (any case).

        ``query`` is 1-1,000 characters, ``limit`` 1-1,000.
        """
        found_by, limit = self._search(tenant_id, query, limit)
        with translated(collection=COLLECTION):
            cursor = self._collection.find(found_by).sort(_NEWEST_FIRST)
            found: builtins.list[dict] = await cursor.limit(limit).to_list(None)
        return found
