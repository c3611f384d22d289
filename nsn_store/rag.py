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

from nsn_store._flow import Flow, FlowHost, Op, TripCounter, asynchronous, sync
from nsn_store._types import Document, DocumentIn, IdLike
from nsn_store.arguments import as_object_id, check_limit, check_text
from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.errors import InvalidArgumentError

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


def check_metadata(metadata: Any) -> Document:
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
    tenant_id: ObjectId,
    text: str,
    now: datetime,
    *,
    title: str | None = None,
    metadata: DocumentIn | None = None,
    embedding: Sequence[float] | None = None,
) -> Document:
    """Return a new RAG document (optional fields absent, never null)."""
    document: Document = {
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


def tenant_filter(tenant_id: ObjectId) -> Document:
    """Return the filter of every document of the tenant (served by ``by_tenantId``)."""
    return {"tenantId": tenant_id}


def search_filter(tenant_id: ObjectId, query: str) -> Document:
    """Return the tenant-scoped, case-insensitive substring filter over text and title."""
    check_text(query, "query", maximum=MAX_QUERY)
    pattern = {"$regex": re.escape(query), "$options": "i"}
    return {"tenantId": tenant_id, "$or": [{"text": pattern}, {"title": pattern}]}


# ---------------------------------------------------------------- flows


class _RagFlows(FlowHost):
    """Every RAG operation, written once as a flow; the classes below declare them.

    Each flow checks its arguments before its first database call.
    """

    def __init__(self, db: Any, *, clock: Clock | None = None) -> None:
        self.db = db
        self.trips = TripCounter()
        self.clock = clock or DEFAULT_CLOCK

    def _add(
        self,
        tenant_id: IdLike,
        text: str,
        *,
        title: str | None = None,
        metadata: DocumentIn | None = None,
        embedding: Sequence[float] | None = None,
    ) -> Flow[Document]:
        """Store a passage (with an optional caller-supplied embedding); return it."""
        tenant = as_object_id(tenant_id, "tenant_id")
        document = rag_document(
            tenant, text, self.clock.now(), title=title, metadata=metadata, embedding=embedding
        )
        inserted = yield Op("insert_one", COLLECTION, (document,))
        document["_id"] = inserted.inserted_id
        return document

    def _list(self, tenant_id: IdLike, *, limit: int = DEFAULT_LIST_LIMIT) -> Flow[list[Document]]:
        """Return the tenant's documents, newest first (``limit`` 1-1,000)."""
        tenant, limit = self._listing(tenant_id, limit)
        found: list[Document] = yield _newest(tenant_filter(tenant), limit)
        return found

    def _search(
        self, tenant_id: IdLike, query: str, *, limit: int = DEFAULT_LIMIT
    ) -> Flow[list[Document]]:
        """Return the tenant's documents whose text or title contains ``query`` (any case).

        ``query`` is 1-1,000 characters, ``limit`` 1-1,000.
        """
        tenant, limit = self._listing(tenant_id, limit)
        found: list[Document] = yield _newest(search_filter(tenant, query), limit)
        return found

    def _listing(self, tenant_id: IdLike, limit: int) -> tuple[ObjectId, int]:
        """Check the tenant and the limit (before any I/O)."""
        tenant = as_object_id(tenant_id, "tenant_id")
        return tenant, check_limit(limit, "limit", maximum=MAX_LIST_LIMIT)


def _newest(query: DocumentIn, limit: int) -> Op:
    """Return the find of the newest ``limit`` documents matching ``query`` (one call)."""
    return Op("find", COLLECTION, (query,), {"sort": _NEWEST_FIRST, "limit": limit})


# ---------------------------------------------------------------- declarations


class RagDocuments(_RagFlows):
    """Add, list and search a tenant's RAG documents."""

    add = sync(_RagFlows._add)
    list = sync(_RagFlows._list)
    search = sync(_RagFlows._search)


class AsyncRagDocuments(_RagFlows):
    """The asyncio twin of :class:`RagDocuments`."""

    add = asynchronous(_RagFlows._add)
    list = asynchronous(_RagFlows._list)
    search = asynchronous(_RagFlows._search)
