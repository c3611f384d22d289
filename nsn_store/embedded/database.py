"""The embedded database: collection options, ``collMod``, ``listCollections`` and commands.

mongomock refuses any ``create_collection`` option and implements neither
``collMod`` nor ``list_collections``. This module keeps each collection's
options in its store (see :mod:`.store`) and reports them as a server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import Int64
from pymongo.errors import CollectionInvalid

from nsn_store.clock import to_bson_time
from nsn_store.embedded import _changes, _mongomock, roundtrip
from nsn_store.embedded import options as opts
from nsn_store.embedded.collection import EmbeddedCollection
from nsn_store.embedded.indexes import MAX_TTL
from nsn_store.embedded.writes import refuse_unsupported

NAMESPACE_NOT_FOUND = 26
NAMESPACE_EXISTS = 48
INDEX_NOT_FOUND = 27
MAX_WIRE_VERSION = 21  # MongoDB 7.0
COLLMOD_FIELDS = ("validator", "validationLevel", "validationAction", "index")


class EmbeddedDatabase(_mongomock.Database):
    """A mongomock database whose collections carry validators and server-like options."""

    def __getitem__(self, name: str) -> EmbeddedCollection:
        """Return the collection ``name`` (``db[name]``, ``db.name``), as :meth:`get_collection`."""
        collection: EmbeddedCollection | None = self._collection_accesses.get(name)
        if collection is None:
            return self.get_collection(name)
        return collection

    def get_collection(
        self,
        name: str,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> EmbeddedCollection:
        """Return the collection ``name`` (an :class:`EmbeddedCollection`).

        With no options given, the one collection object this database keeps
        for ``name`` (built with the database's own options on first use):
        mongomock's path re-validates and compares the options on every call,
        which a load test paid for on every ``db[name]``. A collection object
        holds only its name and options (its data lives in the store), so
        sharing it is invisible; PyMongo returns equal objects too. Options
        that differ from the database's build a collection of their own (the
        database's read concern too, which mongomock's ``with_options`` leaves
        out of its comparison).
        """
        defaults = (
            codec_options is None
            and read_preference is None
            and write_concern is None
            and read_concern is None
        )
        cached: EmbeddedCollection | None = self._collection_accesses.get(name)
        if cached is None:
            self._ensure_valid_collection_name(name)
            cached = self._collection_accesses[name] = EmbeddedCollection(
                self,
                name=name,
                _db_store=self._store,
                read_preference=self.read_preference,
                codec_options=self._codec_options,
                read_concern=self.read_concern,
            )
        if defaults:
            return cached
        collection: EmbeddedCollection = super().get_collection(
            name, codec_options, read_preference, write_concern, read_concern
        )
        if read_concern is not None and read_concern != collection.read_concern:
            collection = EmbeddedCollection(
                self,
                name=name,
                _db_store=self._store,
                read_preference=collection.read_preference,
                codec_options=collection.codec_options,
                write_concern=collection.write_concern,
                read_concern=read_concern,
            )
        return collection

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
        """Open a change stream on every collection of this database (not resumable)."""
        arguments = dict(locals())
        return _changes.watch(
            self._store.lock,
            lambda: self._store.watchers,
            self.name,
            self._client.clock,
            self._codec_options.tz_aware,
            arguments,
        )

    def with_options(
        self,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> EmbeddedDatabase:
        """Return this database with other options (still an embedded database).

        Options not given are this database's. mongomock's ``with_options``
        (which validates them and refuses ``write_concern``) returns the same
        database unless the read preference changes, so a ``codec_options``
        or ``read_concern`` change alone was lost: here any change gives a
        database of its own, with its own collection objects, as PyMongo's
        ``Database.with_options`` does.
        """
        super().with_options(codec_options, read_preference, write_concern, read_concern)
        codec = codec_options or self._codec_options
        preference = read_preference or self.read_preference
        concern = read_concern or self.read_concern
        if (codec, preference, concern) == (
            self._codec_options,
            self.read_preference,
            self.read_concern,
        ):
            return self
        return EmbeddedDatabase(
            self._client,
            self.name,
            self._store,
            read_preference=preference,
            codec_options=codec,
            read_concern=concern,
        )

    def create_collection(
        self,
        name: str,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
        session: Any = None,
        check_exists: bool = True,
        **kwargs: Any,
    ) -> EmbeddedCollection:
        """Create ``name`` with validation options, as pymongo + a server do.

        Like pymongo, an existing collection raises CollectionInvalid when
        ``check_exists`` (the default); otherwise the server's NamespaceExists (48).
        """
        refuse_unsupported(session=session)
        self._ensure_valid_collection_name(name)
        opts.check_create_fields(kwargs)
        with self._store.lock:
            if self._store[name].is_created:
                if check_exists:
                    raise CollectionInvalid(f"collection {name} already exists")
                raise opts.fail(
                    f"Collection {self.name}.{name} already exists.",
                    NAMESPACE_EXISTS,
                    "NamespaceExists",
                )
            options = opts.build("create", kwargs)
            self._store.create_collection(name).options = options
        return self.get_collection(
            name, codec_options, read_preference, write_concern, read_concern
        )

    def drop_collection(self, name_or_collection: Any, session: Any = None, **kwargs: Any) -> None:
        """Drop a collection with its documents, indexes and options."""
        with self._store.lock:
            super().drop_collection(name_or_collection, session=session)

    def list_collections(
        self,
        session: Any = None,
        filter: Mapping[str, Any] | None = None,
        nameOnly: bool = False,
        **kwargs: Any,
    ) -> _mongomock.CommandCursorLike:
        """Return a cursor over collection infos shaped like ``listCollections``."""
        refuse_unsupported(session=session)
        with self._store.lock:
            infos = [self._info(name, nameOnly) for name in sorted(self._get_created_collections())]
        return _mongomock.command_cursor(
            [info for info in infos if _mongomock.filter_applies(filter or {}, info)]
        )

    def list_collection_names(
        self, session: Any = None, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[str]:
        """Return the names of the existing collections (optionally filtered)."""
        return [info["name"] for info in self.list_collections(session=session, filter=filter)]

    def _info(self, name: str, name_only: bool) -> dict[str, Any]:
        if name_only:
            return {"name": name, "type": "collection"}
        return {
            "name": name,
            "type": "collection",
            "options": dict(self._store[name].options.document),
            "info": {"readOnly": False},
            "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
        }

    def command(
        self,
        command: Any,
        value: Any = 1,
        check: bool = True,
        allowable_errors: Any = None,
        read_preference: Any = None,
        codec_options: Any = None,
        session: Any = None,
        comment: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run a command: ``collMod`` and ``create`` here, the rest through mongomock."""
        spec = {command: value, **kwargs} if isinstance(command, str) else {**command, **kwargs}
        name = next(iter(spec), "")
        if name.lower() == "collmod":
            return self._coll_mod(spec)
        if name.lower() in ("hello", "ismaster"):
            return self._hello(legacy=name.lower() == "ismaster")
        if name.lower() == "create":
            fields = {k: v for k, v in spec.items() if k != name}
            self.create_collection(spec[name], check_exists=False, **fields)
            return {"ok": 1.0}
        reply: dict[str, Any] = super().command(spec)
        return reply

    def _hello(self, *, legacy: bool) -> dict[str, Any]:
        """Answer ``hello``/``isMaster`` as a MongoDB 7.0 standalone does.

        ``localTime`` is the client's clock (at BSON's millisecond precision,
        aware only under ``tz_aware``), so code that measures its offset from
        the server's clock measures it from the embedded database's clock.
        """
        now = to_bson_time(self._client.clock.now())
        if not self.codec_options.tz_aware:
            now = now.replace(tzinfo=None)
        return {
            ("ismaster" if legacy else "isWritablePrimary"): True,
            "topologyVersion": {"processId": self._client._process_id, "counter": Int64(0)},
            "maxBsonObjectSize": roundtrip.MAX_BSON_SIZE,
            "maxMessageSizeBytes": roundtrip.MAX_MESSAGE_SIZE,
            "maxWriteBatchSize": roundtrip.MAX_WRITE_BATCH_SIZE,
            "localTime": now,
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": self._client._id,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }

    def _coll_mod(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        name = next(iter(spec.values()))
        fields = {k: v for i, (k, v) in enumerate(spec.items()) if i}
        for field in fields:
            if field not in COLLMOD_FIELDS:
                raise NotImplementedError(
                    f"collMod {field!r} is not supported by the embedded database"
                )
        with self._store.lock:
            store = self._store[name]
            if not store.is_created:
                raise opts.fail(
                    f"ns does not exist: {self.name}.{name}",
                    NAMESPACE_NOT_FOUND,
                    "NamespaceNotFound",
                )
            reply: dict[str, Any] = {}
            if "index" in fields:
                reply = _coll_mod_index(store, fields["index"], f"{self.name}.{name}")
            validation = {k: v for k, v in fields.items() if k != "index"}
            if validation:
                opts.apply_validation(store.options, "collMod", validation, from_collmod=True)
        return {**reply, "ok": 1.0}


def _coll_mod_index(store: Any, change: Mapping[str, Any], ns: str) -> dict[str, Any]:
    """Apply ``collMod: {index: {name|keyPattern, expireAfterSeconds}}`` (TTL changes only)."""
    if change.get("hidden") is not None:
        raise NotImplementedError("hidden indexes are not supported by the embedded database")
    name = change.get("name")
    if name is None:
        wanted = list(dict(change.get("keyPattern", {})).items())
        name = next((n for n, spec in store.indexes.items() if list(spec["key"]) == wanted), None)
    index = store.indexes.get(name)
    if index is None:
        raise opts.fail(f"cannot find index {change} for ns {ns}", INDEX_NOT_FOUND, "IndexNotFound")
    ttl = change.get("expireAfterSeconds")
    if ttl is None:
        return {}
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl <= MAX_TTL:
        raise opts.fail(
            "expireAfterSeconds must be a number between 0 and 2147483647",
            opts.BAD_VALUE,
            "BadValue",
        )
    if len(index["key"]) > 1:
        raise opts.fail(
            "TTL indexes are single-field indexes, compound indexes do not support TTL",
            67,
            "CannotCreateIndex",
        )
    old = index.get("expireAfterSeconds")
    index["expireAfterSeconds"] = ttl
    reply = {"expireAfterSeconds_new": ttl}
    if old is not None:
        reply["expireAfterSeconds_old"] = old
    return reply
