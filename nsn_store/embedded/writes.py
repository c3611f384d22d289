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
from collections.abc import Mapping
from typing import Any, cast

from bson import Binary
from mongomock import ObjectId, helpers
from mongomock.collection import (
    _validate_data_fields,
    _validate_document_stages,
    validate_is_mapping,
    validate_is_mutable_mapping,
    validate_list_or_mapping,
)
from pymongo import ReturnDocument
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    WriteError,
)

from nsn_store.clock import to_bson_time
from nsn_store.embedded import _planner, arithmetic, bulk, roundtrip
from nsn_store.embedded import upsert as upsert_fields
from nsn_store.embedded.enforce import (
    DUPLICATE_KEY,
    check_unique,
    check_validation,
    duplicate_key_error,
)

IMMUTABLE_FIELD = 66
UNSUPPORTED_ARGUMENTS = ("collation", "array_filters", "let", "session")
SERVER_TIME_VARIABLES = ("$$NOW", "$$CLUSTER_TIME")
CODE_NAMES = {
    2: "BadValue",
    14: "TypeMismatch",
    54: "NotSingleValueField",
    66: "ImmutableField",
    121: "DocumentValidationFailure",
    11000: "DuplicateKey",
    17419: "Location17419",
    17420: "Location17420",
}


def storage_key(doc_id: Any) -> Any:
    """Return the dict key mongomock stores a document under."""
    return helpers.hashdict(doc_id) if isinstance(doc_id, dict) else doc_id


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
    _expand_dots: Any
    _discard_operators: Any
    _apply_update_pipeline: Any
    _apply_update_document: Any

    def _write(
        self, document: dict[str, Any], old: Mapping[str, Any] | None, *, replace: bool = False
    ) -> None:
        """Store ``document`` (in place of ``old``) after the server's checks; the one choke point.

        ``document`` is already in stored form (:func:`.roundtrip.to_stored`);
        ``replace`` tells change streams a replacement, not an update, made it.
        """
        store = self._store
        key = storage_key(document["_id"])
        check_validation(store.options, document, old, self.full_name)
        if old is None and key in store:
            raise duplicate_key_error(self.full_name, "_id_", [("_id", 1)], document)
        check_unique(store, document, key, self.full_name)
        store.put(key, document, replace=replace)

    def _iter_documents(self, filter: Mapping[str, Any], limit: int = 0) -> list[dict[str, Any]]:
        """Return the stored documents matching ``filter`` (at most ``limit``), index-served."""
        return _planner.find(self._store, filter, limit=limit)

    def _insert(self, data: Any, session: Any = None, ordered: bool = True) -> Any:
        refuse_unsupported(session=session)
        if not isinstance(data, Mapping):
            return self._insert_batch(list(data), ordered)
        prepared = self._prepare_insert(data)
        roundtrip.check_command_size("insert", len(prepared[1]) + self._insert_overhead())
        return self._insert_prepared(prepared)

    def _prepare_insert(self, data: Any) -> tuple[dict[str, Any], bytes]:
        """Give ``data`` an ``_id`` and encode it as pymongo does; return (document, BSON)."""
        validate_is_mutable_mapping("document", data)
        if "_id" not in data:
            cast("dict[str, Any]", data)["_id"] = (
                ObjectId()
            )  # pymongo sets it on the caller's dict too
        encoded = roundtrip.encode(data)
        _validate_data_fields(data)
        return data, encoded

    def _insert_prepared(self, prepared: tuple[dict[str, Any], bytes]) -> Any:
        """Store a document from :meth:`_prepare_insert` (16 MiB and the server's checks)."""
        data, encoded = prepared
        roundtrip.check_insert_size(len(encoded))
        stored = roundtrip.fill_empty_timestamps(roundtrip.decode(encoded))
        self._write(stored, None)
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
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Update (or upsert) documents; ``command`` names the client-side size check, if any."""
        refuse_unsupported(
            session=session, collation=collation, let=let, array_filters=array_filters
        )
        validate_is_mapping("spec", spec)
        validate_list_or_mapping("document", document)
        if command is not None:
            roundtrip.check_encodable(command, spec, document)
        spec = helpers.patch_datetime_awareness_in_document(spec)
        document = helpers.patch_datetime_awareness_in_document(self._with_clock(document))
        if isinstance(document, list):
            _validate_document_stages(document)
            _refuse_server_time(document)
        arithmetic.check_arguments(document)
        matched = modified = 0
        for stored in self._iter_documents(spec, limit=0 if multi else 1):
            matched += 1
            modified += self._update_one_document(stored, spec, document)
            if not multi:
                break
        upserted = self._upsert(spec, document) if upsert and not matched else None
        return {
            "connectionId": self.database.client._id,
            "err": None,
            "n": matched or int(bool(upserted)),
            "nModified": modified,
            "ok": 1,
            "upserted": upserted,
            "updatedExisting": bool(matched),
        }

    def _update_one_document(self, stored: dict[str, Any], spec: Any, document: Any) -> int:
        before = roundtrip.encode(stored)
        new = roundtrip.decode(before)  # a deep copy, faster than deepcopy
        if not arithmetic.apply_top_level(document, stored, new):
            self._apply_update(new, spec, arithmetic.resolve(document, stored), was_insert=False)
        after = roundtrip.encode(new)
        if after == before:  # a server compares the BSON: 1 -> 1.0 is a change
            return 0
        if new.get("_id") != stored.get("_id"):
            raise WriteError(
                "After applying the update, the (immutable) field '_id' was found to have "
                f"been altered to _id: {new.get('_id')}",
                IMMUTABLE_FIELD,
            )
        roundtrip.check_update_size(len(after), upsert=False)
        replace = not isinstance(document, list) and not any(
            isinstance(k, str) and k.startswith("$") for k in document
        )
        self._write(roundtrip.decode(after), stored, replace=replace)
        return 1

    def _upsert(self, spec: Mapping[str, Any], document: Any) -> Any:
        replacement = not isinstance(document, list) and not any(
            isinstance(k, str) and k.startswith("$") for k in document
        )
        fields = upsert_fields.equalities(spec, only_id=replacement)
        seed = upsert_fields.seed(fields)
        if "_id" not in seed:
            own = document.get("_id") if replacement else None
            seed["_id"] = ObjectId() if own is None else own
        self._apply_update(seed, spec, arithmetic.resolve(document, seed), was_insert=True)
        encoded = roundtrip.encode(seed)
        roundtrip.check_update_size(len(encoded), upsert=True)
        self._write(roundtrip.fill_empty_timestamps(roundtrip.decode(encoded)), None)
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
    ) -> dict[str, Any]:
        refuse_unsupported(collation=collation, session=session)
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        roundtrip.check_encodable("delete", filter)
        filter = helpers.patch_datetime_awareness_in_document(filter)
        doomed = self._iter_documents(filter, limit=0 if multi else 1)
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
        kwargs.pop("hint", None)  # no effect on the result
        refuse_unsupported(session=session, **kwargs)
        roundtrip.check_encodable(
            "findAndModify", query or {}, update or {}, sort or {}, projection or {}
        )
        try:
            arithmetic.check_arguments(update)
        except WriteError as error:
            raise command_error(error) from None
        target = next(iter(self._get_dataset(query, sort, None, dict, limit=1)), None)
        if target is None and not upsert:
            return None
        if remove and target is not None:
            self._delete({"_id": target["_id"]})
            return self._present(target, projection)
        spec = {"_id": target["_id"]} if target is not None else query
        try:
            outcome = self._update(spec, update, upsert=upsert, command=None)
        except WriteError as error:
            raise command_error(error) from None
        if return_document is ReturnDocument.AFTER or kwargs.get("new"):
            doc_id = target["_id"] if target is not None else outcome["upserted"]
            return self._present(self._store.get(storage_key(doc_id)), projection)
        return self._present(target, projection)

    def _present(self, document: Any, projection: Any) -> Any:
        """Return ``document`` as a read returns it: projected copy, aware datetimes."""
        if document is None:
            return None
        shown = self._copy_only_fields(document, projection, dict)
        if self.codec_options.tz_aware:
            shown = helpers.make_datetime_timezone_aware_in_document(shown)
        return shown


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


def _refuse_server_time(pipeline: Any) -> None:
    """Refuse ``$$NOW``/``$$CLUSTER_TIME``: mongomock evaluates them wrongly or not at all."""
    text = repr(pipeline)
    for variable in SERVER_TIME_VARIABLES:
        if variable in text:
            raise NotImplementedError(
                f"{variable} in a pipeline update is not supported by the embedded database; "
                "pass the time from your Clock as a literal value instead"
            )
