"""RAG documents: a tenant's knowledge-base passages, listed and searched.

Search is a case-insensitive substring match (``$regex`` over ``text`` and
``title``, the query escaped with ``re.escape`` so user input is never a
pattern), always scoped to one tenant. It scans the tenant's documents through
``by_tenantId``; a real deployment would use Atlas Search (or a ``$text``
index) for ranking at scale, which mongomock cannot emulate. Embeddings are
arrays of doubles supplied by the caller: no model is downloaded or run here.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import ConfigurationError, translated

COLLECTION = "ragDocuments"
DEFAULT_LIMIT = 10
DEFAULT_LIST_LIMIT = 100
_NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]


# ---------------------------------------------------------------- pure builders


def as_embedding(values: Sequence[float]) -> builtins.list[float]:
    """Return ``values`` as doubles (BSON ``double``); refuse anything not a real number."""
    vector = builtins.list(values)
    if not vector or any(
        isinstance(v, bool) or not isinstance(v, int | float) for v in vector
    ):
        raise ConfigurationError("an embedding is a non-empty sequence of numbers")
    return [float(v) for v in vector]


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
    document: dict[str, Any] = {"tenantId": tenant_id, "text": text, "createdAt": now}
    if title is not None:
        document["title"] = title
    if metadata is not None:
        document["metadata"] = dict(metadata)
    if embedding is not None:
        document["embedding"] = as_embedding(embedding)
    return document


def search_filter(tenant_id: Any, query: str) -> dict[str, Any]:
    """Return the tenant-scoped, case-insensitive substring filter over text and title."""
    pattern = {"$regex": re.escape(query), "$options": "i"}
    return {"tenantId": tenant_id, "$or": [{"text": pattern}, {"title": pattern}]}


# ---------------------------------------------------------------- I/O twins


class _RagBase:
    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or DEFAULT_CLOCK
        self._collection = db[COLLECTION]


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
        document = rag_document(
            tenant_id,
            text,
            self.clock.now(),
            title=title,
            metadata=metadata,
            embedding=embedding,
        )
        with translated(collection=COLLECTION):
            document["_id"] = self._collection.insert_one(document).inserted_id
        return document

    def list(
        self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> builtins.list[dict]:
        """Return the tenant's documents, newest first."""
        with translated(collection=COLLECTION):
            cursor = self._collection.find({"tenantId": tenant_id}).sort(_NEWEST_FIRST)
            return builtins.list(cursor.limit(limit))

    def search(
        self, tenant_id: Any, query: str, *, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[dict]:
        """Return the tenant's documents whose text or title contains ``query`` (any case)."""
        with translated(collection=COLLECTION):
            cursor = self._collection.find(search_filter(tenant_id, query)).sort(
                _NEWEST_FIRST
            )
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
        document = rag_document(
            tenant_id,
            text,
            self.clock.now(),
            title=title,
            metadata=metadata,
            embedding=embedding,
        )
        with translated(collection=COLLECTION):
            document["_id"] = (await self._collection.insert_one(document)).inserted_id
        return document

    async def list(
        self, tenant_id: Any, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> builtins.list[dict]:
        """Return the tenant's documents, newest first."""
        with translated(collection=COLLECTION):
            cursor = self._collection.find({"tenantId": tenant_id}).sort(_NEWEST_FIRST)
            found: builtins.list[dict] = await cursor.limit(limit).to_list(None)
        return found

    async def search(
        self, tenant_id: Any, query: str, *, limit: int = DEFAULT_LIMIT
    ) -> builtins.list[dict]:
        """Return the tenant's documents whose text or title contains ``query`` (any case)."""
        with translated(collection=COLLECTION):
            cursor = self._collection.find(search_filter(tenant_id, query)).sort(
                _NEWEST_FIRST
            )
            found: builtins.list[dict] = await cursor.limit(limit).to_list(None)
        return found
