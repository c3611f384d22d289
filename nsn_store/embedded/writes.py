"""The write paths of the embedded collection, all ending in one choke point, ``_write``.

mongomock updates stored documents in place and rolls back on error; here an
update works on a copy of the one matched document and ``_write`` validates
the post-image (with the stored pre-image at hand for ``validationLevel:
moderate``), checks the unique indexes, and only then stores it. Nothing is
written by a rejected operation, and nothing copies the whole collection.

Every document reaches ``_write`` in stored form: encoded to BSON and decoded
back (:mod:`.roundtrip`), so what is stored is what a server stores, within
its 16 MiB limit. Filters and updates are encoded first, as pymongo encodes a
command, so an unencodable value fails the same way whether or not anything
matches. ``$inc``/``$mul`` follow the server's rules (:mod:`.arithmetic`) and
an upsert starts from the filter's equalities (:mod:`.upsert`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, cast

from bson import Binary, ObjectId
from bson.regex import Regex
from pymongo import ReturnDocument
from pymongo.common import validate_is_document_type, validate_is_mapping, validate_list_or_mapping
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    WriteError,
)

from nsn_store.clock import to_bson_time
from nsn_store.embedded import (
    _array_filters,
    _collation,
    _mongomock,
    _planner,
    _variables,
    arithmetic,
    bulk,
    roundtrip,
)
from nsn_store.embedded import upsert as upsert_fields
from nsn_store.embedded._collation import Collation
from nsn_store.embedded.enforce import (
    DUPLICATE_KEY,
    check_unique,
    check_validation,
    duplicate_key_error,
)
from nsn_store.embedded.indexes import BadHint, hinted_index
from nsn_store.embedded.query import compile_filter
from nsn_store.embedded.store import storage_key

BAD_VALUE = 2
FAILED_TO_PARSE = 9
DOLLAR_PREFIXED = 52
INVALID_ID = 53
IMMUTABLE_FIELD = 66
UNKNOWN_FIELD = 40415
UPDATE_OPERATORS = frozenset(
    {
        "$set", "$unset", "$inc", "$mul", "$rename", "$setOnInsert", "$min", "$max",
        "$currentDate", "$push", "$pull", "$pullAll", "$pop", "$addToSet", "$bit",
    }
)  # fmt: skip
UNSUPPORTED_ARGUMENTS = ("session",)
SERVER_TIME_VARIABLES = ("$$NOW", "$$CLUSTER_TIME")
CODE_NAMES = {
    2: "BadValue",
    9: "FailedToParse",
    14: "TypeMismatch",
    52: "DollarPrefixedFieldName",
    53: "InvalidIdField",
    54: "NotSingleValueField",
    66: "ImmutableField",
    121: "DocumentValidationFailure",
    11000: "DuplicateKey",
    17419: "Location17419",
    17420: "Location17420",
}


def refuse_unsupported(**arguments: Any) -> None:
    """Raise NotImplementedError for arguments mongomock would silently mishandle."""
    for name, value in arguments.items():
        if value:
            raise NotImplementedError(f"{name!r} is not supported by the embedded database")


class WritePaths:
    """Insert, update, delete and find-and-modify for :class:`EmbeddedCollection`."""

    # Provided by mongomock's Collection, which comes after this class in the MRO.
    _store: Any
    database: Any
    full_name: str
    name: str
    codec_options: Any
    _get_dataset: Any
    _copy_only_fields: Any
    _shown: Any
    _expand_dots: Any
    _discard_operators: Any
    _apply_update_pipeline: Any
    _apply_update_document: Any

    def _write(
        self,
        document: dict[str, Any],
        old: Mapping[str, Any] | None,
        *,
        replace: bool = False,
        raw: bytes | None = None,
        changed: Mapping[str, int | None] | None = None,
    ) -> None:
        """Store ``document`` (in place of ``old``) after the server's checks; the one choke point.

        ``document`` is already in stored form (:func:`.roundtrip.to_stored`),
        ``raw`` its BSON when the caller has it; ``replace`` tells change
        streams a replacement, not an update, made it. ``changed``: the only
        top-level fields an update changed, when it knows them; if ``old`` was
        known to satisfy the validator, only those are validated again.
        """
        store = self._store
        key = storage_key(document["_id"])
        validator = store.options.compiled
        known = old is not None and changed is not None and store.satisfies(key, validator)
        valid = check_validation(
            store.options, document, old, self.full_name, changed=changed if known else None
        )
        if old is None and key in store:
            raise duplicate_key_error(self.full_name, "_id_", [("_id", 1)], document)
        check_unique(store, document, key, self.full_name, old)
        store.put(key, document, replace=replace, raw=raw, valid=validator if valid else None)

    def _iter_documents(
        self,
        filter: Mapping[str, Any],
        limit: int = 0,
        *,
        collation: Collation | None = None,
        let: Mapping[str, Any] | None = None,
        hint: str | None = None,
        sort: Any = None,
    ) -> list[dict[str, Any]]:
        """Return the stored documents matching ``filter`` (at most ``limit``), index-served."""
        return _planner.find(
            self._store, filter, sort=sort, limit=limit, collation=collation, let=let, hint=hint
        )

    def _hint(self, hint: Any, *, command: str) -> str | None:
        """Return the index ``hint`` names; a hint naming none fails as ``command`` reports it."""
        try:
            return hinted_index(self._store.indexes, hint)
        except BadHint as error:
            if command == "find":
                raise OperationFailure(
                    f"error processing query: ns={self.full_name} planner returned error :: "
                    f"caused by :: {error}",
                    BAD_VALUE,
                    {"ok": 0.0, "errmsg": str(error), "code": BAD_VALUE, "codeName": "BadValue"},
                ) from None
            raise WriteError(
                str(error), BAD_VALUE, {"index": 0, "code": BAD_VALUE, "errmsg": str(error)}
            ) from None

    def _insert(self, data: Any, session: Any = None, ordered: bool = True) -> Any:
        refuse_unsupported(session=session)
        if not isinstance(data, Mapping):
            return self._insert_batch(list(data), ordered)
        prepared = self._prepare_insert(data)
        roundtrip.check_command_size("insert", len(prepared[1]) + self._insert_overhead())
        return self._insert_prepared(prepared)

    def _prepare_insert(self, data: Any) -> tuple[dict[str, Any], bytes]:
        """Give ``data`` an ``_id`` and encode it as pymongo does; return (document, BSON)."""
        validate_is_document_type("document", data)
        if "_id" not in data:
            cast("dict[str, Any]", data)["_id"] = (
                ObjectId()
            )  # pymongo sets it on the caller's dict too
        encoded = roundtrip.encode(data)
        return data, encoded

    def _insert_prepared(self, prepared: tuple[dict[str, Any], bytes]) -> Any:
        """Store a document from :meth:`_prepare_insert` (16 MiB and the server's checks)."""
        data, encoded = prepared
        _check_id(data["_id"])
        roundtrip.check_insert_size(len(encoded))
        stored = roundtrip.decode(encoded)
        filled = roundtrip.fill_empty_timestamps(stored)
        kept = encoded if not filled and roundtrip.canonical(data, encoded) else None
        self._write(stored, None, raw=kept)
        return data["_id"]

    def _insert_overhead(self) -> int:
        """Return the bytes an insert command adds around its document (as pymongo sends it)."""
        return _insert_overhead(self.name, self.database.name)

    def _insert_batch(self, documents: list[Any], ordered: bool) -> list[Any]:
        # pymongo encodes a batch before sending it: an unencodable document writes nothing.
        prepared = [self._prepare_insert(document) for document in documents]
        inserted: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(prepared):
            try:
                inserted.append(self._insert_prepared(item))
            except WriteError as error:
                errors.append(bulk.write_error(error, index, item[0]))
                if ordered:
                    break
        if errors:
            result = bulk.empty_result()
            result.update(writeErrors=errors, nInserted=len(inserted))
            raise BulkWriteError(result)
        return inserted

    def _update(
        self,
        spec: Any,
        document: Any,
        upsert: bool = False,
        manipulate: bool = False,
        multi: bool = False,
        check_keys: bool = False,
        hint: Any = None,
        session: Any = None,
        collation: Any = None,
        let: Any = None,
        array_filters: Any = None,
        command: str | None = "update",
        sort: Any = None,
        found: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Update (or upsert) documents; ``command`` names the client-side size check, if any.

        ``collation``, ``let``, ``hint`` and ``array_filters`` are PyMongo's
        arguments, checked here as PyMongo and a server check them. ``found``:
        the documents ``spec`` selects, already read under the same lock (by
        findAndModify), so they are not looked up again.
        """
        refuse_unsupported(session=session)
        refuse_update_sort(sort)
        validate_is_mapping("spec", spec)
        validate_list_or_mapping("document", document)
        if command is not None:
            roundtrip.check_encodable(command, spec, document)
        parsed = _collation.parse(collation)
        variables = _variables.check(let)
        index = self._hint(hint, command="update")
        spec = _mongomock.patched_filter(spec)
        document = _mongomock.patch_datetime_awareness_in_document(self._with_clock(document))
        if isinstance(document, list):
            document = _pipeline_update(document, variables, array_filters)
        else:
            _check_update_document(document)
        arithmetic.check_arguments(document)
        matchers = _array_filters.parse(
            array_filters, lambda f: compile_filter(f, collation=parsed)
        )
        positional = _array_filters.positional(document)
        if positional or matchers:
            _array_filters.check(document, matchers)
        change = _Change(document, matchers if positional else None)
        matched = modified = 0
        if found is None:
            found = self._iter_documents(
                spec, 0 if multi else 1, collation=parsed, let=variables, hint=index
            )
        for stored in found:
            matched += 1
            modified += self._update_one_document(stored, spec, change)
            if not multi:
                break
        upserted = self._upsert(spec, change) if upsert and not matched else None
        return {
            "connectionId": self.database.client._id,
            "err": None,
            "n": matched or int(bool(upserted)),
            "nModified": modified,
            "ok": 1,
            "upserted": upserted,
            "updatedExisting": bool(matched),
        }

    def _update_one_document(self, stored: dict[str, Any], spec: Any, change: _Change) -> int:
        before = self._store.raw_of(stored)
        document = change.for_document(stored)
        changed: dict[str, int | None] | None = None  # the top-level fields changed, if known
        if change.replacement:
            new = _replaced(stored, document)
        elif not document:
            return 0  # positional paths that match no element change nothing
        elif arithmetic.top_level(document, stored):
            new = dict(stored)  # only top-level fields are replaced: a shallow copy will do
            arithmetic.apply_top_level(document, stored, new)
            changed = _changed_fields(document)
        else:
            new = roundtrip.decode(before)  # a deep copy (mongomock updates in place)
            self._apply_update(new, spec, arithmetic.resolve(document, stored), was_insert=False)
        if isinstance(document, list) and "_id" not in new:
            new = {"_id": stored["_id"], **new}  # a pipeline's result keeps the _id
        after = roundtrip.encode(new)
        if after == before:  # a server compares the BSON: 1 -> 1.0 is a change
            return 0
        if new.get("_id") != stored.get("_id"):
            raise _immutable_id(new.get("_id"))
        roundtrip.check_update_size(len(after), upsert=False)
        kept = after if roundtrip.canonical(new, after) else None
        self._write(
            roundtrip.decode(after), stored, replace=change.replacement, raw=kept, changed=changed
        )
        return 1

    def _upsert(self, spec: Mapping[str, Any], change: _Change) -> Any:
        fields = upsert_fields.equalities(spec, only_id=change.replacement)
        seed = upsert_fields.seed(fields)
        document = change.document
        if "_id" not in seed:
            own = document.get("_id") if change.replacement else None
            seed["_id"] = ObjectId() if own is None else own
        document = change.for_document(seed)
        if change.replacement:
            seed = _replaced(seed, document)
        elif document:
            identity = seed["_id"]
            self._apply_update(seed, spec, arithmetic.resolve(document, seed), was_insert=True)
            if isinstance(document, list) and "_id" not in seed:
                seed = {"_id": identity, **seed}
        encoded = roundtrip.encode(seed)
        roundtrip.check_update_size(len(encoded), upsert=True)
        stored = roundtrip.decode(encoded)
        filled = roundtrip.fill_empty_timestamps(stored)
        kept = encoded if not filled and roundtrip.canonical(seed, encoded) else None
        self._write(stored, None, raw=kept)
        return seed["_id"]

    def _apply_update(
        self, target: dict[str, Any], spec: Any, document: Any, *, was_insert: bool
    ) -> None:
        if isinstance(document, list):
            self._apply_update_pipeline(target, document, None)
        else:
            self._apply_update_document(target, spec, document, was_insert)

    def _with_clock(self, document: Any) -> Any:
        """Turn ``$currentDate`` into ``$set`` of the client's clock time (no wall clock)."""
        if not isinstance(document, Mapping) or "$currentDate" not in document:
            return document
        now = to_bson_time(self.database.client.clock.now())
        rewritten = {k: v for k, v in document.items() if k != "$currentDate"}
        kept, dates = {}, {}
        for field, kind in document["$currentDate"].items():
            if kind is True or kind == {"$type": "date"}:
                dates[field] = now
            else:
                kept[field] = kind  # timestamps stay with mongomock
        if dates:
            rewritten["$set"] = {**document.get("$set", {}), **dates}
        if kept:
            rewritten["$currentDate"] = kept
        return rewritten

    def _delete(
        self,
        filter: Any,
        collation: Any = None,
        hint: Any = None,
        multi: bool = False,
        session: Any = None,
        let: Any = None,
    ) -> dict[str, Any]:
        refuse_unsupported(session=session)
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        roundtrip.check_encodable("delete", filter)
        parsed = _collation.parse(collation)
        variables = _variables.check(let)
        index = self._hint(hint, command="delete")
        filter = _mongomock.patched_filter(filter)
        doomed = self._iter_documents(
            filter, 0 if multi else 1, collation=parsed, let=variables, hint=index
        )
        if not multi:
            doomed = doomed[:1]
        for doc in doomed:
            del self._store[storage_key(doc["_id"])]
        return {"connectionId": self.database.client._id, "n": len(doomed), "ok": 1.0, "err": None}

    def _find_and_modify(
        self,
        query: Any,
        projection: Any = None,
        update: Any = None,
        upsert: bool = False,
        sort: Any = None,
        return_document: Any = ReturnDocument.BEFORE,
        session: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Find one document (sorted), then update/replace/delete it by ``_id``, atomically."""
        remove = kwargs.pop("remove", False)
        kwargs.pop("bypass_document_validation", None)
        kwargs.pop("bypassDocumentValidation", None)
        collation, let = kwargs.pop("collation", None), kwargs.pop("let", None)
        hint, array_filters = kwargs.pop("hint", None), kwargs.pop("array_filters", None)
        new = kwargs.pop("new", False)
        refuse_unsupported(session=session, **kwargs)
        roundtrip.check_encodable(
            "findAndModify", query or {}, update or {}, sort or {}, projection or {}
        )
        parsed, variables = _collation.parse(collation), _variables.check(let)
        try:
            arithmetic.check_arguments(update)
            index = self._hint(hint, command="findAndModify")
        except WriteError as error:
            raise command_error(error) from None
        found = self._iter_documents(
            query, 1, collation=parsed, let=variables, hint=index, sort=sort
        )
        target = found[0] if found else None
        if target is None and not upsert:
            return None
        if remove and target is not None:
            self._delete({"_id": target["_id"]})
            return self._present(target, projection)
        spec = {"_id": target["_id"]} if target is not None else query
        try:
            outcome = self._update(
                spec,
                update,
                upsert=upsert,
                command=None,
                let=let,
                array_filters=array_filters,
                collation=collation if target is None else None,
                found=None if target is None else [target],
            )
        except WriteError as error:
            raise command_error(error) from None
        if return_document is ReturnDocument.AFTER or new:
            doc_id = target["_id"] if target is not None else outcome["upserted"]
            return self._present(self._store.get(storage_key(doc_id)), projection)
        return self._present(target, projection)

    def _present(self, document: Any, projection: Any) -> Any:
        """Return ``document`` as a read returns it: projected copy, aware datetimes."""
        if document is None:
            return None
        return self._shown(document, projection, bool(self.codec_options.tz_aware))


class _Change:
    """An update's change: an update document, a pipeline or a replacement, checked once."""

    def __init__(self, document: Any, matchers: Mapping[str, Any] | None) -> None:
        self.document = document
        self.matchers = matchers  # arrayFilters, when the update has $[] or $[id] paths
        self.replacement = not isinstance(document, list) and not _is_operators(document)

    def for_document(self, target: Mapping[str, Any]) -> Any:
        """Return the change for ``target``: positional paths made concrete."""
        if self.matchers is None:
            return self.document
        return _array_filters.expand(self.document, target, self.matchers)


def _check_id(value: Any) -> None:
    """Refuse an ``_id`` a server cannot store (InvalidIdField, 53); other field names are free.

    Since MongoDB 5.0 field names may start with ``$`` or hold dots, except
    inside ``_id``, which can be neither an array nor a regular expression.
    """
    reason = None
    if isinstance(value, list):
        reason = "The '_id' value cannot be of type array"
    elif isinstance(value, (re.Pattern, Regex)):
        reason = "can't use a regex for _id"
    elif isinstance(value, Mapping):
        dollar = next((k for k in value if isinstance(k, str) and k.startswith("$")), None)
        if dollar is not None:
            reason = (
                f"_id fields may not contain '$'-prefixed fields: {dollar} is not valid for "
                "storage."
            )
    if reason is not None:
        raise WriteError(reason, INVALID_ID, {"index": 0, "code": INVALID_ID, "errmsg": reason})


def _is_operators(document: Mapping[str, Any]) -> bool:
    return any(isinstance(k, str) and k.startswith("$") for k in document)


def _replaced(target: Mapping[str, Any], replacement: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``replacement`` as it replaces ``target``: ``target``'s ``_id`` first.

    The ``_id`` comes from the document replaced, never from the filter (an
    operator ``_id`` filter such as ``{$gt: 1}`` is not a value); a
    replacement naming another ``_id`` fails as on a server (66).
    """
    for key in replacement:
        if isinstance(key, str) and key.startswith("$"):
            message = (
                f"The dollar ($) prefixed field '{key}' in '{key}' is not allowed in the context "
                "of an update's replacement document. Consider using an aggregation pipeline "
                "with $replaceWith."
            )
            raise WriteError(
                message, DOLLAR_PREFIXED, {"index": 0, "code": DOLLAR_PREFIXED, "errmsg": message}
            )
    new: dict[str, Any] = {"_id": target["_id"]} if "_id" in target else {}
    if "_id" in replacement and "_id" in target and replacement["_id"] != target["_id"]:
        raise _immutable_id(replacement["_id"])
    new.update((k, v) for k, v in replacement.items() if k != "_id")
    return new


def _immutable_id(value: Any) -> WriteError:
    message = (
        "After applying the update, the (immutable) field '_id' was found to have "
        f"been altered to _id: {value}"
    )
    return WriteError(
        message, IMMUTABLE_FIELD, {"index": 0, "code": IMMUTABLE_FIELD, "errmsg": message}
    )


def _check_update_document(document: Mapping[str, Any]) -> None:
    """Refuse what a server refuses when it parses an update document (FailedToParse, 9)."""
    if not _is_operators(document):
        return
    for key in document:
        if key not in UPDATE_OPERATORS:
            message = (
                f"Unknown modifier: {key}. Expected a valid update modifier or pipeline-style "
                "update specified as an array"
            )
            raise WriteError(
                message, FAILED_TO_PARSE, {"index": 0, "code": FAILED_TO_PARSE, "errmsg": message}
            )


def _pipeline_update(
    stages: list[Any], variables: Mapping[str, Any] | None, array_filters: Any
) -> list[Any]:
    """Return a pipeline update ready for mongomock: checked, ``let`` bound, ``$replaceWith``
    spelled as the ``$replaceRoot`` it is an alias of."""
    if array_filters is not None:
        message = "arrayFilters may not be specified for pipeline-style updates"
        raise WriteError(
            message, FAILED_TO_PARSE, {"index": 0, "code": FAILED_TO_PARSE, "errmsg": message}
        )
    stages = [
        {"$replaceRoot": {"newRoot": stage["$replaceWith"]}}
        if isinstance(stage, Mapping) and list(stage) == ["$replaceWith"]
        else stage
        for stage in stages
    ]
    _mongomock.validate_document_stages(stages)
    refuse_server_time(stages)
    return list(_variables.in_pipeline(stages, variables))


def refuse_update_sort(sort: Any) -> None:
    """Refuse ``sort`` on an update or replace, as the emulated 7.0 server does (8.0 added it)."""
    if sort is not None:
        message = "BSON field 'update.updates.sort' is an unknown field."
        raise OperationFailure(
            message,
            UNKNOWN_FIELD,
            {"ok": 0.0, "errmsg": message, "code": UNKNOWN_FIELD, "codeName": "Location40415"},
        )


@functools.lru_cache(maxsize=256)
def _insert_overhead(collection: str, database: str) -> int:
    command = {
        "insert": collection,
        "ordered": True,
        "lsid": {"id": Binary(bytes(16), 4)},
        "$db": database,
    }
    return len(roundtrip.encode(command)) + len(b"\x01documents\x00") + 4


def command_error(error: WriteError) -> OperationFailure:
    """Return ``error`` as findAndModify reports it: a command error, not a write error.

    pymongo raises OperationFailure (DuplicateKeyError for 11000) whose details
    are the whole server reply, errInfo or keyPattern/keyValue included.
    """
    reply = {k: v for k, v in (error.details or {}).items() if k != "index"}
    message = roundtrip.for_find_and_modify(str(reply.get("errmsg", error)))
    reply = {**reply, "errmsg": message}
    reply = {
        "ok": 0.0,
        "errmsg": message,
        "code": error.code,
        "codeName": CODE_NAMES.get(error.code or 0, "UnknownError"),
        **reply,
    }
    kind = DuplicateKeyError if error.code == DUPLICATE_KEY else OperationFailure
    return kind(reply["errmsg"], error.code, reply)


def refuse_server_time(pipeline: Any, where: str = "a pipeline update") -> None:
    """Refuse ``$$NOW``/``$$CLUSTER_TIME``: mongomock evaluates them wrongly or not at all.

    A reference is a string value naming the variable (or a path under it); a
    literal that merely contains the text is not one.
    """
    variable = _server_time_reference(pipeline)
    if variable is not None:
        raise NotImplementedError(
            f"{variable} in {where} is not supported by the embedded database; "
            "pass the time from your Clock as a literal value instead"
        )


def _server_time_reference(value: Any) -> str | None:
    if isinstance(value, str):
        for variable in SERVER_TIME_VARIABLES:
            if value == variable or value.startswith(variable + "."):
                return variable
        return None
    if isinstance(value, Mapping):
        items: Any = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return None
    for item in items:
        found = _server_time_reference(item)
        if found is not None:
            return found
    return None


def _changed_fields(update: Mapping[str, Any]) -> dict[str, int | None]:
    """Return the top-level fields a top-level update changes (:func:`.arithmetic.top_level`).

    Each maps to None, or for a ``$push`` to how many elements it appends: the
    array keeps only elements it held or was given (``$each``/``$slice``).
    """
    changed: dict[str, int | None] = {}
    for operator, fields in update.items():
        for path, operand in fields.items():
            changed[path] = arithmetic.appended(operand) if operator == "$push" else None
    return changed
