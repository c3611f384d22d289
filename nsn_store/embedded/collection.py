"""The embedded collection: mongomock's, made atomic, validating and server-like on indexes.

Every public operation (and every cursor materialisation) runs under the
server store's one re-entrant lock, applied in one place (:func:`_operation`)
to the names in ``LOCKED``. A ``find_one_and_update`` therefore finds and
modifies as one step, as on a server, and no reader sees a half-applied write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from pymongo.operations import IndexModel

from nsn_store.embedded import (
    _changes,
    _collation,
    _expressions,
    _mongomock,
    _pipeline,
    _variables,
    indexes,
    roundtrip,
)
from nsn_store.embedded._api import CrudApi, check_collated_pipeline
from nsn_store.embedded.enforce import bypassing, duplicate_key_error
from nsn_store.embedded.keys import index_keys
from nsn_store.embedded.options import fail
from nsn_store.embedded.store import EmbeddedCollectionStore
from nsn_store.embedded.writes import WritePaths, refuse_unsupported

F = TypeVar("F", bound=Callable[..., Any])

_expressions.install()  # $getField, $setField, $unsetField, $rand in every expression

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
        bypass = bool(
            kwargs.get("bypass_document_validation") or kwargs.get("bypassDocumentValidation")
        )
        if not bypass:  # bypassing(False) keeps what an enclosing call set: skip it
            with self._db_store.lock:
                return method(self, *args, **kwargs)
        with self._db_store.lock, bypassing(bypass):
            return method(self, *args, **kwargs)

    return cast("F", run)


class EmbeddedCollection(CrudApi, WritePaths, _mongomock.Collection):
    """A mongomock collection that enforces validators, unique indexes and atomicity."""

    # mongomock-motor patches collections to add keyPattern/keyValue to
    # duplicate-key errors; ours already carry them, so opt out of the patch.
    _patched_by_mongomock_motor = True

    @property
    def _store(self) -> EmbeddedCollectionStore:
        store: EmbeddedCollectionStore = self._db_store[self._name]
        return store

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Return the first match or None (read as ``limit(1)``, as pymongo does)."""
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        return next(iter(self.find(filter, *args, **kwargs).limit(-1)), None)

    def aggregate(
        self,
        pipeline: Any,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
        **kwargs: Any,
    ) -> _mongomock.CommandCursorLike:
        """Run ``pipeline``; its leading ``$match``/``$sort``/``$skip``/``$limit`` use indexes.

        ``let`` binds ``$$name`` in every expression; a ``collation`` applies
        to the leading stages and refuses later stages that compare strings.
        """  # fmt: skip
        roundtrip.check_encodable(None, pipeline)  # pymongo encodes the pipeline it sends
        refuse_unsupported(session=session)
        pipeline = _variables.in_pipeline(pipeline, _variables.check(let))
        if _collation.parse(kwargs.get("collation")) is not None:
            check_collated_pipeline(_pipeline.split(pipeline)[-1])
        index = self._hint(kwargs.pop("hint", None), command="find")
        spec = self._store.indexes.get(index or "")
        if spec is not None and (spec.get("sparse") or spec.get("partialFilterExpression")):
            raise NotImplementedError(
                "aggregate with a hint on a sparse or partial index is not supported by the "
                "embedded database"
            )
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
        same: _mongomock.Collection = super().with_options(
            codec_options, read_preference, write_concern, read_concern
        )
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

    def create_index(
        self, keys: Any, session: Any = None, comment: Any = None, **kwargs: Any
    ) -> str:
        """Create an index, with the server's conflict rules (85/86) and option checks."""
        refuse_unsupported(session=session)
        kwargs.pop("cache_for", None)  # PyMongo 3's argument, kept for old callers
        name, spec = indexes.normalise(keys, dict(kwargs))
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
            name = _mongomock.gen_index_name(_mongomock.create_index_list(index_or_name))
        if name == "_id_":
            raise fail("cannot drop _id index", indexes.INVALID_OPTIONS, "InvalidOptions")
        if name not in self._store.indexes:
            raise fail(f"index not found with name [{name}]", INDEX_NOT_FOUND, "IndexNotFound")
        self._store.drop_index(name)

    def list_indexes(self, session: Any = None, **kwargs: Any) -> _mongomock.CommandCursorLike:
        """Return a cursor over the index documents: v, key (ordered), name, options."""
        refuse_unsupported(session=session)
        if not self._store.is_created:
            return _mongomock.command_cursor([])
        everything = {"_id_": indexes.ID_INDEX, **self._store.indexes}
        return _mongomock.command_cursor(
            [indexes.describe(name, spec) for name, spec in everything.items()]
        )

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
