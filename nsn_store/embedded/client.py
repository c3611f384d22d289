"""The embedded client: a mongomock client over a schema-aware, thread-safe store.

``EmbeddedClient`` is what ``nsn_store.connect("mongomock://...")`` and
``nsn_store.testing.mongomock_client()`` return. It differs from
``mongomock.MongoClient`` in what a test can rely on: validators enforced,
server error codes, atomic single-document operations, ``_id`` lookups without
scans, and TTL expiry driven by a :class:`~nsn_store.clock.Clock` when the TTL
monitor runs (never on reads).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId

from nsn_store.clock import DEFAULT_CLOCK, Clock
from nsn_store.embedded import _mongomock
from nsn_store.embedded.database import EmbeddedDatabase
from nsn_store.embedded.store import EmbeddedCollectionStore, EmbeddedServerStore

logger = logging.getLogger(__name__)


class EmbeddedClient(_mongomock.MongoClient):
    """An in-memory MongoDB stand-in that behaves like a server where tests need it to."""

    def __init__(
        self,
        host: Any = "localhost",
        port: Any = None,
        *,
        clock: Clock | None = None,
        tz_aware: bool = True,
        _store: EmbeddedServerStore | None = None,
        **kwargs: Any,
    ) -> None:
        if _store is not None and not isinstance(_store, EmbeddedServerStore):
            raise TypeError("_store must come from another EmbeddedClient (client._store)")
        super().__init__(
            host, port, tz_aware=tz_aware, _store=_store or EmbeddedServerStore(), **kwargs
        )
        self.clock: Clock = clock or DEFAULT_CLOCK
        self._process_id = ObjectId()  # hello's topologyVersion.processId

    def __repr__(self) -> str:
        return f"EmbeddedClient({self.host!r}, clock={self.clock!r})"

    def get_database(
        self,
        name: str | None = None,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> EmbeddedDatabase:
        """Return the database ``name`` (an :class:`EmbeddedDatabase`)."""
        if name is None:
            default: EmbeddedDatabase = self.get_default_database(
                codec_options=codec_options,
                read_preference=read_preference,
                write_concern=write_concern,
                read_concern=read_concern,
            )
            return default
        with self._store.lock:
            database: EmbeddedDatabase | None = self._database_accesses.get(name)
            if database is None:
                database = self._database_accesses[name] = EmbeddedDatabase(
                    self,
                    name,
                    _store=self._store[name],
                    read_preference=read_preference or self.read_preference,
                    codec_options=codec_options or self._codec_options,
                    read_concern=read_concern,
                )
        return database

    def run_ttl_monitor(self) -> int:
        """Delete every document past a TTL index's expiry by ``clock.now()``; return how many.

        Follows the server's monitor: single-field TTL indexes only; the field
        must hold a date or an array of dates (the earliest counts); other
        values and missing fields never expire, nor do documents outside a
        partial index. Like the server's, it reads each TTL index's range of
        dates up to the cutoff, so its cost follows what expires, not the
        collection's size.
        """
        now = _naive_utc(self.clock.now())
        removed = 0
        with self._store.lock:
            for database in self._store.database_stores():
                for collection in database.collection_stores():
                    removed += _expire(collection, now)
        if removed:
            logger.debug("TTL monitor removed %d expired documents", removed)
        return removed


def _expire(collection: EmbeddedCollectionStore, now: datetime) -> int:
    """Delete the expired documents of one collection, found by range in each TTL index."""
    doomed: set[Any] = set()
    for name, index in collection.indexes.items():
        seconds = index.get("expireAfterSeconds")
        if seconds is None or len(index["key"]) != 1:
            continue
        cutoff = now - timedelta(seconds=seconds)
        ordered = collection.sorted_indexes.get(name)
        if ordered is not None:
            doomed.update(collection.by_seq[seq] for seq in ordered.dated_until(cutoff))
            continue
        field = index["key"][0][0]  # not an ordered index: read every document
        for key, doc in collection._documents.items():
            moment = _earliest_date(doc, field)
            if moment is not None and moment <= cutoff:
                doomed.add(key)
    for key in doomed:
        del collection[key]
    return len(doomed)


def _earliest_date(doc: Any, field: str) -> datetime | None:
    try:
        value = _mongomock.get_value_by_dot(doc, field)
    except (KeyError, IndexError, TypeError):
        return None
    values = value if isinstance(value, list) else [value]
    dates = [_naive_utc(v) for v in values if isinstance(v, datetime)]
    return min(dates, default=None)


def _naive_utc(moment: datetime) -> datetime:
    """Return ``moment`` as naive UTC, the form mongomock stores dates in."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)
