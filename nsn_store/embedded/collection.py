"""The embedded collection: mongomock's, made atomic, validating and server-like on indexes.

Every public operation (and every cursor materialisation) runs under the
server store's one re-entrant lock, applied in one place (:func:`_operation`)
to the names in ``LOCKED``. A ``find_one_and_update`` therefore finds and
modifies as one step, as on a server, and no reader sees a half-applied write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import mongomock
from mongomock.command_cursor import CommandCursor
from mongomock.results import BulkWriteResult
from pymongo.errors import InvalidOperation
from pymongo.operations import IndexModel

from nsn_store.embedded import _changes, _pipeline, _planner, bulk, indexes, roundtrip
from nsn_store.embedded._cursor import EmbeddedCursor
from nsn_store.embedded.enforce import bypassing, duplicate_key_error
from nsn_store.embedded.keys import index_keys
from nsn_store.embedded.options import fail
from nsn_store.embedded.store import EmbeddedCollectionStore
from nsn_store.embedded.writes import WritePaths, refuse_unsupported

F = TypeVar("F", bound=Callable[..., Any])

# mongomock's stubs present its classes as pymongo's; to the type checker our
# subclasses are subclasses of Any, which is what mongomock is at run time.
_Collection: Any = Any if TYPE_CHECKING else mongomock.Collection

INDEX_NOT_FOUND = 27

LOCKED = (
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "find_one",
    "find_one_and_delete",
    "find_one_and_replace",
    "find_one_and_update",
    "count_documents",
    "estimated_document_count",
    "distinct",
    "aggregate",
    "bulk_write",
    "create_index",
    "create_indexes",
    "drop_index",
    "drop_indexes",
    "drop",
    "list_indexes",
    "index_information",
    "options",
    "rename",
    "_get_dataset",
)


def _operation(method: F) -> F:
    """Run ``method`` under the server lock, honouring ``bypass_document_validation``."""

    @functools.wraps(method)
    def run(self: EmbeddedCollection, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("comment", None)  # a server only logs it
        bypass = bool(kwargs.get("bypass_document_validation"))
        with self._db_store.lock, bypassing(bypass):
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class EmbeddedCollection(WritePaths, _Collection):
    """A mongomock collection that enforces validators, unique indexes and atomicity."""

    # mongomock-motor patches collections to add keyPattern/keyValue to
    # duplicate-key errors; ours already carry them, so opt out of the patch.
    _patched_by_mongomock_motor = True

    @property
    def _store(self) -> EmbeddedCollectionStore:
        return self._db_store[self._name]  # type: ignore[no-any-return]

    def _get_dataset(
        self,
        spec: Any,
        sort: Any,
        fields: Any,
        as_class: Any,
        limit: int = 0,
        collation: Any = None,
    ) -> list[Any]:
        # Materialise inside the lock: a lazy generator would read outside it.
        roundtrip.check_encodable(None, spec or {})  # pymongo encodes the filter it sends
        found = _planner.find(self._store, spec, sort=sort, limit=limit, collation=collation)
        return [self._copy_only_fields(doc, fields, as_class) for doc in found]

    def find(self, *args: Any, **kwargs: Any) -> EmbeddedCursor:
        """Return a cursor that the indexes serve and that stops at its limit."""
        return EmbeddedCursor.adopt(super().find(*args, **kwargs))

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Return the first match or None (read as ``limit(1)``, as pymongo does)."""
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        return next(iter(self.find(filter, *args, **kwargs).limit(-1)), None)

    def count_documents(self, filter: Any, **kwargs: Any) -> int:
        """Count the documents matching ``filter`` (encoded first, as pymongo sends it)."""
        roundtrip.check_encodable(None, filter if isinstance(filter, Mapping) else {})
        return super().count_documents(filter, **kwargs)  # type: ignore[no-any-return]

    def aggregate(self, pipeline: Any, session: Any = None, **kwargs: Any) -> CommandCursor:
        """Run ``pipeline``; its leading ``$match``/``$sort``/``$skip``/``$limit`` use indexes."""
        roundtrip.check_encodable(None, pipeline)  # pymongo encodes the pipeline it sends
        return _pipeline.aggregate(self, pipeline, session, **kwargs)

    def watch(
        self,
        pipeline: Any = None,
        full_document: str | None = None,
        resume_after: Any = None,
        max_await_time_ms: int | None = None,
        batch_size: int | None = None,
        collation: Any = None,
        start_at_operation_time: Any = None,
        session: Any = None,
        start_after: Any = None,
        comment: Any = None,
        full_document_before_change: str | None = None,
        show_expanded_events: bool | None = None,
    ) -> _changes.EmbeddedChangeStream:
        """Open a change stream on this collection (see :mod:`._changes`; not resumable)."""
        arguments = dict(locals())
        return _changes.watch(
            self._db_store.lock,
            lambda: self._store.watchers,
            self.database.name,
            self.database.client.clock,
            self.codec_options.tz_aware,
            arguments,
        )

    def with_options(
        self,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> EmbeddedCollection:
        """Return this collection with other options (still an embedded collection)."""
        same = super().with_options(codec_options, read_preference, write_concern, read_concern)
        if same is self:
            return self
        return EmbeddedCollection(
            self.database,
            self.name,
            _db_store=self._db_store,
            write_concern=same.write_concern,
            read_concern=same.read_concern,
            read_preference=same.read_preference,
            codec_options=same.codec_options,
        )

    def options(self, session: Any = None) -> dict[str, Any]:
        """Return the collection's options as ``listCollections`` reports them."""
        refuse_unsupported(session=session)
        store = self._store
        return dict(store.options.document) if store.is_created else {}

    def bulk_write(
        self,
        requests: Iterable[Any],
        ordered: bool = True,
        bypass_document_validation: bool = False,
        session: Any = None,
        let: Any = None,
    ) -> BulkWriteResult:
        """Run a batch of writes with server semantics (see :mod:`.bulk`)."""
        refuse_unsupported(session=session, let=let)
        recorder = bulk.Recorder(self)
        for request in requests:
            request._add_to_bulk(recorder)
        if not recorder.operations:
            raise InvalidOperation("No operations to execute")
        return BulkWriteResult(bulk.execute(recorder, ordered=ordered), True)

    def create_index(
        self, key_or_list: Any, cache_for: int = 300, session: Any = None, **kwargs: Any
    ) -> str:
        """Create an index, with the server's conflict rules (85/86) and option checks."""
        refuse_unsupported(session=session)
        name, spec = indexes.normalise(key_or_list, dict(kwargs))
        existing = {"_id_": indexes.ID_INDEX, **self._store.indexes}
        if indexes.check_conflicts(name, spec, existing):
            if spec.get("unique"):
                self._check_existing_unique(name, spec)
            self._store.create_index(name, spec)
        return name

    def _check_existing_unique(self, name: str, spec: dict[str, Any]) -> None:
        seen: set[Any] = set()
        for doc in self._store._documents.values():
            keys = index_keys(spec, doc)
            if not seen.isdisjoint(keys):
                raise duplicate_key_error(self.full_name, name, spec["key"], doc)
            seen |= keys

    def create_indexes(
        self, models: Iterable[IndexModel], session: Any = None, **kwargs: Any
    ) -> list[str]:
        """Create each index of ``models`` (all their options, unlike mongomock)."""
        names = []
        for model in models:
            if not isinstance(model, IndexModel):
                raise TypeError(f"{model!r} is not an instance of pymongo.operations.IndexModel")
            document = dict(model.document)
            key = list(document.pop("key").items())
            names.append(self.create_index(key, session=session, **document))
        return names

    def drop_indexes(self, session: Any = None, **kwargs: Any) -> None:
        """Drop every index except ``_id``'s."""
        refuse_unsupported(session=session)
        self._store.drop_all_indexes()

    def drop_index(self, index_or_name: Any, session: Any = None, **kwargs: Any) -> None:
        """Drop one index by name or key; the ``_id`` index cannot be dropped."""
        refuse_unsupported(session=session)
        name = index_or_name
        if not isinstance(index_or_name, str):
            name = mongomock.helpers.gen_index_name(
                mongomock.helpers.create_index_list(index_or_name)
            )
        if name == "_id_":
            raise fail("cannot drop _id index", indexes.INVALID_OPTIONS, "InvalidOptions")
        if name not in self._store.indexes:
            raise fail(f"index not found with name [{name}]", INDEX_NOT_FOUND, "IndexNotFound")
        self._store.drop_index(name)

    def list_indexes(self, session: Any = None, **kwargs: Any) -> CommandCursor:
        """Return a cursor over the index documents: v, key (ordered), name, options."""
        refuse_unsupported(session=session)
        if not self._store.is_created:
            return CommandCursor([])
        everything = {"_id_": indexes.ID_INDEX, **self._store.indexes}
        return CommandCursor([indexes.describe(name, spec) for name, spec in everything.items()])

    def index_information(self, session: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Return ``{name: {key: [(field, direction)], v, options...}}`` like pymongo."""
        info = {}
        for document in self.list_indexes(session=session):
            name = document.pop("name")
            document["key"] = list(document["key"].items())
            info[name] = document
        return info


for _name in LOCKED:
    setattr(EmbeddedCollection, _name, _operation(getattr(EmbeddedCollection, _name)))
