"""In-memory storage for the embedded database: one lock per server, options per collection.

mongomock keeps documents in per-collection ``OrderedDict``s guarded by a
reader/writer lock, and expires TTL documents whenever a collection is read.
Here a single re-entrant lock per server store guards every collection
operation instead (held by :mod:`nsn_store.embedded.collection`), so the
per-collection lock and the eager expiry are removed: documents expire only
when the TTL monitor runs, as on a server.

This is also the one place documents are stored, so it keeps every declared
index's ordered entries (:class:`~nsn_store.embedded._sorted_index.SortedIndex`)
in step with each store, replace and delete (TTL expiry included), and numbers
each document in insertion order, the natural order a scan returns. The
planner (:mod:`nsn_store.embedded._planner`) reads both. And it announces
each change to the change streams open on the collection or its database
(:mod:`nsn_store.embedded._changes`), only when one is open.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nsn_store.embedded import _mongomock, roundtrip
from nsn_store.embedded._changes import Subscription, next_change
from nsn_store.embedded._sorted_index import SortedIndex, unchanged, watched_fields
from nsn_store.embedded.keys import index_keys


def storage_key(doc_id: Any) -> Any:
    """Return the dict key a document is stored under (its ``_id``, hashable)."""
    return _mongomock.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


@dataclass
class CollectionOptions:
    """What ``create``/``collMod`` stored for a collection, and the compiled validator."""

    document: dict[str, Any] = field(default_factory=dict)  # as listCollections reports it
    compiled: Any = None  # CompiledValidator, or None when there is no validator

    @property
    def level(self) -> str:
        return str(self.document.get("validationLevel", "strict"))

    @property
    def action(self) -> str:
        return str(self.document.get("validationAction", "error"))


class EmbeddedCollectionStore(_mongomock.CollectionStore):
    """A collection's documents, indexes and options, without locking or eager expiry.

    Unique indexes keep a map from key to the documents holding it, updated on
    every store and delete, so a write checks uniqueness without a scan. Every
    index (but ``_id``'s, which is the document map itself) also keeps its
    ordered entries in ``sorted_indexes``; ``_seq`` numbers the stored keys in
    insertion order (a replaced document keeps its number, as it keeps its
    place in the map).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.options = CollectionOptions()
        self._unique: dict[str, dict[Any, set[Any]]] = {}
        self.sorted_indexes: dict[str, SortedIndex] = {}
        self.plans: dict[Any, Any] = {}  # the planner's cache, by query shape (see _planner)
        self._seq: dict[Any, int] = {}
        self.by_seq: dict[int, Any] = {}  # the storage key of each sequence number
        self._next_seq = 0
        self._raw: dict[Any, bytes] = {}  # the BSON of a stored document, when a write had it
        self._valid: dict[Any, Any] = {}  # the validator a stored document is known to satisfy
        # Change streams: this collection's, and its database's (set by the database store).
        self.watchers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self.database_watchers: weakref.WeakSet[Subscription] = weakref.WeakSet()

    def drop(self) -> None:
        super().drop()
        self.plans = {}
        self.options = CollectionOptions()
        self._unique = {}
        self.sorted_indexes = {}
        self._seq = {}
        self.by_seq = {}
        self._raw = {}
        self._valid = {}

    def create_index(self, index_name: str, index_dict: dict[str, Any]) -> None:
        super().create_index(index_name, index_dict)
        self.plans = {}
        self._unique.pop(index_name, None)
        if index_dict.get("unique"):
            entries: dict[Any, set[Any]] = {}
            for key, doc in self._documents.items():
                for value in index_keys(index_dict, doc):
                    entries.setdefault(value, set()).add(key)
            self._unique[index_name] = entries
        self.sorted_indexes.pop(index_name, None)
        if _orderable(index_dict):
            index = SortedIndex(index_name, index_dict)
            index.build((self._seq[key], doc) for key, doc in self._documents.items())
            self.sorted_indexes[index_name] = index

    def drop_index(self, index_name: str) -> None:
        super().drop_index(index_name)
        self.plans = {}
        self._unique.pop(index_name, None)
        self.sorted_indexes.pop(index_name, None)

    def drop_all_indexes(self) -> None:
        """Drop every index but ``_id``'s."""
        self.plans = {}
        self.indexes = {}
        self._ttl_indexes = {}
        self._unique = {}
        self.sorted_indexes = {}

    def unique_conflict(self, index_name: str, keys: frozenset[Any], own: Any) -> bool:
        """Tell whether another document than ``own`` holds one of ``keys`` in the index."""
        entries = self._unique.get(index_name, {})
        return any(entries.get(value, set()) - {own} for value in keys)

    def _track(self, key: Any, doc: Any, add: bool, names: list[str] | None = None) -> None:
        for name in self._unique if names is None else names:
            entries = self._unique[name]
            for value in index_keys(self.indexes[name], doc):
                holders = entries.setdefault(value, set())
                if add:
                    holders.add(key)
                else:
                    holders.discard(key)
                if not holders:
                    del entries[value]

    def get(self, key: Any) -> Any:
        """Return the stored document under ``key`` (its ``_id``), or None."""
        return self._documents.get(key)

    # The server lock is held by every caller, so plain dict access is safe here
    # and reads never delete anything (the TTL monitor does, when asked).
    def _remove_expired_documents(self) -> None:
        return None

    @property
    def is_empty(self) -> bool:
        return not self._documents

    def __contains__(self, key: Any) -> bool:
        return key in self._documents

    def __getitem__(self, key: Any) -> Any:
        return self._documents[key]

    def __setitem__(self, key: Any, val: Any) -> None:
        self.put(key, val)

    def put(
        self,
        key: Any,
        val: Any,
        *,
        replace: bool = False,
        raw: bytes | None = None,
        valid: Any = None,
    ) -> None:
        """Store ``val`` under ``key`` (a change stream sees a replacement if ``replace``).

        ``raw``: ``val``'s BSON, when the write has it (:meth:`raw`); ``valid``:
        the compiled validator ``val`` is known to satisfy (:meth:`satisfies`).
        """
        old = self._documents.get(key)
        if raw is None:
            self._raw.pop(key, None)
        else:
            self._raw[key] = raw
        if valid is None:
            self._valid.pop(key, None)
        else:
            self._valid[key] = valid
        # An update that leaves an index's fields alone leaves its entries alone.
        moved = [
            name
            for name in self._unique
            if old is None or not unchanged(self._watched(name), old, val)
        ]
        if old is not None:
            self._track(key, old, add=False, names=moved)
        self._documents[key] = val
        self._track(key, val, add=True, names=moved)
        seq = self._seq.get(key)
        if seq is None:
            seq = self._seq[key] = self._next_seq
            self.by_seq[seq] = key
            self._next_seq += 1
        for index in self.sorted_indexes.values():
            if old is None or not unchanged(index.watched, old, val):
                index.put(seq, val)
        if self.watchers or self.database_watchers:
            kind = "insert" if old is None else "replace" if replace else "update"
            self._announce(kind, old, val)

    def raw(self, key: Any) -> bytes:
        """Return the BSON of the document stored under ``key`` (encoded once, then kept)."""
        data = self._raw.get(key)
        if data is None:
            data = self._raw[key] = roundtrip.encode(self._documents[key])
        return data

    def raw_of(self, document: Any) -> bytes:
        """Return the BSON of ``document``: the kept one when it is the stored document."""
        key = storage_key(document["_id"])
        if self._documents.get(key) is document:
            return self.raw(key)
        return roundtrip.encode(document)

    def raw_documents(self) -> list[bytes]:
        """Return the BSON of every stored document, in natural order."""
        return [self.raw(key) for key in self._documents]

    def satisfies(self, key: Any, validator: Any) -> bool:
        """Tell whether the document under ``key`` is known to satisfy ``validator``."""
        return validator is not None and self._valid.get(key) is validator

    def _announce(self, kind: str, old: Any, new: Any) -> None:
        """Hand one change to every open change stream (the caller holds the server lock)."""
        change = next_change(kind, self.name, old, new)
        for subscription in [*self.watchers, *self.database_watchers]:
            subscription.publish(change)

    def watched(self, name: str) -> tuple[str, ...] | None:
        """Return the top-level fields index ``name``'s keys depend on (None: not that simple)."""
        return self._watched(name)

    def _watched(self, name: str) -> tuple[str, ...] | None:
        index = self.sorted_indexes.get(name)
        return index.watched if index is not None else watched_fields(self.indexes[name])

    def __delitem__(self, key: Any) -> None:
        old = self._documents[key]
        self._track(key, old, add=False)
        del self._documents[key]
        self._raw.pop(key, None)
        self._valid.pop(key, None)
        seq = self._seq.pop(key)
        del self.by_seq[seq]
        for index in self.sorted_indexes.values():
            index.remove(seq)
        if self.watchers or self.database_watchers:
            self._announce("delete", old, None)

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def documents(self) -> Iterator[Any]:
        yield from list(self._documents.values())


def _orderable(index: dict[str, Any]) -> bool:
    """Tell whether an index is a plain B-tree the planner may walk (not hashed, 2d, text)."""
    return all(
        isinstance(d, (int, float)) and not isinstance(d, bool) and d != 0 for _, d in index["key"]
    )


class EmbeddedDatabaseStore(_mongomock.DatabaseStore):
    """A database's collections, sharing the server's lock."""

    _collections: dict[str, EmbeddedCollectionStore]

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__()
        self.lock = lock
        self.watchers: weakref.WeakSet[Subscription] = weakref.WeakSet()  # database streams

    def __getitem__(self, col_name: str) -> EmbeddedCollectionStore:
        try:
            return self._collections[col_name]
        except KeyError:
            col = self._collections[col_name] = EmbeddedCollectionStore(col_name)
            col.database_watchers = self.watchers
            return col

    def rename(self, name: str, new_name: str) -> None:
        col = self._collections.pop(name, None) or EmbeddedCollectionStore(new_name)
        col.name = new_name
        col.database_watchers = self.watchers
        self._collections[new_name] = col

    def collection_stores(self) -> list[EmbeddedCollectionStore]:
        """Return the stores of the collections that exist."""
        return [col for col in self._collections.values() if col.is_created]


class EmbeddedServerStore(_mongomock.ServerStore):
    """A whole in-memory server: its databases and the one lock guarding them."""

    _databases: dict[str, EmbeddedDatabaseStore]

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.RLock()

    def __getitem__(self, db_name: str) -> EmbeddedDatabaseStore:
        with self.lock:
            try:
                return self._databases[db_name]
            except KeyError:
                db = self._databases[db_name] = EmbeddedDatabaseStore(self.lock)
                return db

    def database_stores(self) -> list[EmbeddedDatabaseStore]:
        """Return every database store (created or not)."""
        with self.lock:
            return list(self._databases.values())
