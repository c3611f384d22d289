"""The embedded database: collection options, ``collMod``, ``listCollections`` and commands.

mongomock refuses any ``create_collection`` option and implements neither
``collMod`` nor ``list_collections``. This module keeps each collection's
options in its store (see :mod:`.store`) and reports them as a server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import Int64
from pymongo import common
from pymongo.errors import CollectionInvalid, ConfigurationError, OperationFailure

from nsn_store.clock import to_bson_time
from nsn_store.embedded import (
    _changes,
    _collation,
    _mongomock,
    _pipeline,
    _stages,
    _variables,
    roundtrip,
)
from nsn_store.embedded import options as opts
from nsn_store.embedded._api import check_collated_pipeline
from nsn_store.embedded.collection import EmbeddedCollection
from nsn_store.embedded.enforce import bypassing
from nsn_store.embedded.indexes import MAX_TTL
from nsn_store.embedded.writes import refuse_server_time, refuse_unsupported
from nsn_store.jsonschema._bsontypes import bson_type

NAMESPACE_NOT_FOUND = 26
NAMESPACE_EXISTS = 48
INDEX_NOT_FOUND = 27
MAX_WIRE_VERSION = 21  # MongoDB 7.0
COLLMOD_FIELDS = ("validator", "validationLevel", "validationAction", "index")

# A database-level aggregate ({aggregate: 1}) as a 7.0 server parses and runs it.
TYPE_MISMATCH = 14
INVALID_NAMESPACE = 73
UNDEFINED_VARIABLE = 17276
STAGE_NOT_ONE_FIELD = 40323
UNRECOGNIZED_STAGE = 40324
NOT_AN_OBJECT = 40228  # $replaceRoot's newRoot, which $documents ends with
ONLY_LAST = 40601
ONLY_FIRST = 40602
NOT_AN_ARRAY = 5858203  # the strict $unwind that $documents runs
#: The stages a 7.0 server knows (MongoDB manual, "Aggregation Stages"); any
#: other name fails to parse (40324) before the namespace is checked.
STAGE_NAMES = frozenset(
    {
        "$addFields", "$bucket", "$bucketAuto", "$changeStream", "$changeStreamSplitLargeEvent",
        "$collStats", "$count", "$currentOp", "$densify", "$documents", "$facet", "$fill",
        "$geoNear", "$graphLookup", "$group", "$indexStats", "$limit", "$listLocalSessions",
        "$listSampledQueries", "$listSearchIndexes", "$listSessions", "$lookup", "$match",
        "$merge", "$out", "$planCacheStats", "$project", "$redact", "$replaceRoot",
        "$replaceWith", "$sample", "$search", "$searchMeta", "$set", "$setWindowFields",
        "$shardedDataDistribution", "$skip", "$sort", "$sortByCount", "$unionWith", "$unset",
        "$unwind", "$vectorSearch",
    }
)  # fmt: skip
#: The other stages a server runs without a collection: they report the
#: server's own state (operations, sessions, sampled queries, shards) or open
#: a change stream, which the embedded database does not keep or serve here.
SERVER_STATE_STAGES = (
    "$changeStream",
    "$currentOp",
    "$listLocalSessions",
    "$listSampledQueries",
    "$shardedDataDistribution",
)
#: Variables a server defines that mongomock does not: refused, not read as missing.
UNSUPPORTED_SYSTEM_VARIABLES = ("NOW", "CLUSTER_TIME", "USER_ROLES", "SEARCH_META")
_MISSING = _mongomock.NOTHING


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
            cached = self._collection_accesses[name] = self._new_collection(
                name,
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
            collection = self._new_collection(
                name,
                read_preference=collection.read_preference,
                codec_options=collection.codec_options,
                write_concern=collection.write_concern,
                read_concern=read_concern,
            )
        return collection

    def _new_collection(self, name: str, **options: Any) -> EmbeddedCollection:
        """Return a new collection object on this database's store with ``options``."""
        return EmbeddedCollection(self, name=name, _db_store=self._store, **options)

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

    def aggregate(
        self, pipeline: Any, session: Any = None, **kwargs: Any
    ) -> _mongomock.CommandCursorLike:
        """Run a database-level pipeline (``{aggregate: 1}``) whose first stage is ``$documents``.

        ``$documents`` evaluates its expression against an empty document into
        the array of objects the rest of the pipeline reads (MongoDB manual,
        https://www.mongodb.com/docs/manual/reference/operator/aggregation/documents/);
        the rest runs as a collection's aggregate runs it, a final ``$merge``
        or ``$out`` included (the cursor is then empty; both honour
        ``bypassDocumentValidation``). ``let`` binds ``$$name``; a
        ``collation`` refuses stages that compare strings.

        Fails as a 7.0 server does: 73 for an empty pipeline or a first stage
        that needs a collection, 40324 for an unknown stage, 40602 for
        ``$documents`` after the first stage, 5858203 when its value is not an
        array and 40228 when an element is not an object. The other stages a
        server runs without a collection (``$currentOp``,
        ``$listLocalSessions``, ``$changeStream``...) raise NotImplementedError
        naming the stage, as do ``session``, ``hint``, ``$$NOW`` and
        ``$$CLUSTER_TIME``.
        """
        stages = _aggregate_arguments(pipeline, kwargs)
        refuse_unsupported(session=session, hint=kwargs.get("hint"))
        roundtrip.check_encodable("aggregate", {"pipeline": stages})
        _check_database_pipeline(stages)
        stages = _variables.in_pipeline(stages, _variables.check(kwargs.get("let")))
        rest, merge_spec = _stages.split_merge(stages[1:])
        if _collation.parse(kwargs.get("collation")) is not None:
            check_collated_pipeline(rest)
        bypass = bool(kwargs.get("bypassDocumentValidation"))
        with self._store.lock, bypassing(bypass):
            merge = None if merge_spec is None else _stages.merge_stage(self, merge_spec)
            aware = bool(self.codec_options.tz_aware)
            documents = [roundtrip.copy(d, aware=aware) for d in _documents(stages[0])]
            output = _pipeline.run_stages(documents, self, rest)
            if merge is not None:
                merge.write(output)
            elif not (rest and "$out" in rest[-1]):
                return _mongomock.command_cursor(output)
        return _mongomock.command_cursor([])

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


# ------------------------------------------------------- database aggregate


def _aggregate_arguments(pipeline: Any, options: Mapping[str, Any]) -> list[Any]:
    """Check ``Database.aggregate``'s arguments as PyMongo does before sending the command."""
    if "explain" in options:
        raise ConfigurationError(
            "The explain option is not supported. Use Database.command instead."
        )
    for name in ("aggregate", "pipeline"):
        if name in options:
            raise ConfigurationError(
                f"The {name} option cannot be specified as a keyword argument."
            )
    stages: list[Any] = common.validate_list("pipeline", pipeline)
    common.validate_non_negative_integer_or_none("batchSize", options.get("batchSize"))
    return stages


def _check_database_pipeline(stages: list[Any]) -> None:
    """Check ``stages`` as a server parses ``{aggregate: 1}``: names, the first stage, the rest."""
    _check_stage_names(stages)
    if not stages:
        raise _fail("{aggregate: 1} is not valid for an empty pipeline.", INVALID_NAMESPACE)
    first = next(iter(stages[0]))
    if first in SERVER_STATE_STAGES:
        raise NotImplementedError(
            f"{first} (a database aggregate reading the server's own state) is not supported by "
            "the embedded database; only $documents starts a database aggregate here"
        )
    if first != "$documents":
        raise _fail(
            f"{{aggregate: 1}} is not valid for '{first}'; a collection is required.",
            INVALID_NAMESPACE,
        )
    for stage in stages[1:]:
        name = next(iter(stage))
        if name == "$documents" or name in SERVER_STATE_STAGES:
            raise _fail(f"{name} is only valid as the first stage in a pipeline", ONLY_FIRST)
        if name == "$out" and stage is not stages[-1]:
            raise _fail("$out can only be the final stage in the pipeline", ONLY_LAST)
    refuse_server_time(stages, "a database aggregate")


def _check_stage_names(stages: list[Any]) -> None:
    """Refuse a stage that is not an object of one field naming a known stage."""
    for stage in stages:
        if not isinstance(stage, Mapping):
            raise _fail("Each element of the 'pipeline' array must be an object", TYPE_MISMATCH)
        if len(stage) != 1:
            raise _fail(
                "A pipeline stage specification object must contain exactly one field.",
                STAGE_NOT_ONE_FIELD,
            )
        name = next(iter(stage))
        if name not in STAGE_NAMES:
            raise _fail(f"Unrecognized pipeline stage name: '{name}'", UNRECOGNIZED_STAGE)


def _documents(stage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the documents ``{$documents: value}`` produces, in stored form.

    A server runs ``$documents`` as ``$project`` of the value into a field of
    an empty document, a strict ``$unwind`` of that field and a
    ``$replaceRoot`` on each element (server ``document_source_documents.cpp``),
    so the value is read as an expression against ``{}``: field paths are
    missing, an array's elements are evaluated, and the result must be an
    array (5858203) of objects (40228). An object that is not an operator
    expression would be read as a projection there: refused.
    """
    value = roundtrip.to_stored({"v": stage["$documents"]})[0]["v"]
    if isinstance(value, Mapping) and not _is_operator(value):
        raise NotImplementedError(
            "$documents with an object that is not an expression (a server reads it as a "
            "$project specification) is not supported by the embedded database; pass an array"
        )
    produced = _evaluate(_mongomock.ExpressionParser({}, ignore_missing_keys=True), value)
    if type(produced) is not list:
        raise _fail("an array is expected", NOT_AN_ARRAY)
    documents: list[dict[str, Any]] = []
    for item in produced:
        if not isinstance(item, dict):
            raise _fail(
                "'newRoot' expression must evaluate to an object, but resulting value was: "
                f"{item!r}. Type of resulting value: '{_type_name(item)}'.",
                NOT_AN_OBJECT,
            )
        documents.append(roundtrip.to_stored(item)[0])
    return documents


def _evaluate(parser: Any, expression: Any) -> Any:
    """Evaluate ``expression`` against the parser's document; ``_MISSING`` for missing.

    mongomock leaves an array literal's elements unevaluated; here each element
    is evaluated (missing ones are null, as in a server's array expression) and
    an object's fields too (missing ones are left out).
    """
    if type(expression) is list:
        return [None if (v := _evaluate(parser, e)) is _MISSING else v for e in expression]
    if isinstance(expression, Mapping) and not _is_operator(expression):
        evaluated = {key: _evaluate(parser, item) for key, item in expression.items()}
        return {key: item for key, item in evaluated.items() if item is not _MISSING}
    if isinstance(expression, str) and expression.startswith("$$"):
        _check_variable(expression[2:].partition(".")[0])
    try:
        value = parser.parse(expression)
    except KeyError:  # mongomock's missing field
        return _MISSING
    return value


def _check_variable(name: str) -> None:
    """Refuse a variable neither the document's nor bound (``let`` ones are literals by now)."""
    if name in ("ROOT", "CURRENT", "REMOVE"):
        return
    if name in UNSUPPORTED_SYSTEM_VARIABLES:
        raise NotImplementedError(f"$${name} is not supported by the embedded database")
    raise _fail(f"Use of undefined variable: {name}", UNDEFINED_VARIABLE)


def _is_operator(expression: Mapping[str, Any]) -> bool:
    return any(isinstance(key, str) and key.startswith("$") for key in expression)


def _type_name(value: Any) -> str:
    try:
        return bson_type(value)
    except TypeError:
        return type(value).__name__


def _fail(message: str, code: int) -> OperationFailure:
    names = {TYPE_MISMATCH: "TypeMismatch", INVALID_NAMESPACE: "InvalidNamespace"}
    return opts.fail(message, code, names.get(code, f"Location{code}"))
