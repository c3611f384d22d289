"""The write paths of the embedded collection, all ending in one choke point, ``_write``.

mongomock updates stored documents in place and rolls back on error; here an
update works on a copy of the one matched document and ``_write`` validates
the post-image (with the stored pre-image at hand for ``validationLevel:
moderate``), checks the unique indexes, and only then stores it. Nothing is
written by a rejected operation, and nothing copies the whole collection.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

from bson import BSON
from mongomock import ObjectId, helpers
from mongomock.collection import (
    _validate_data_fields,
    _validate_document_stages,
    validate_is_mapping,
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
from nsn_store.embedded import _planner, bulk
from nsn_store.embedded.enforce import (
    DUPLICATE_KEY,
    check_unique,
    check_validation,
    duplicate_key_error,
)

IMMUTABLE_FIELD = 66
UNSUPPORTED_ARGUMENTS = ("collation", "array_filters", "let", "session")
SERVER_TIME_VARIABLES = ("$$NOW", "$$CLUSTER_TIME")
CODE_NAMES = {121: "DocumentValidationFailure", 11000: "DuplicateKey", 66: "ImmutableField"}


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
    codec_options: Any
    _get_dataset: Any
    _copy_only_fields: Any
    _expand_dots: Any
    _discard_operators: Any
    _apply_update_pipeline: Any
    _apply_update_document: Any

    def _write(self, document: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        """Store ``document`` (replacing ``old``) after the server's checks; the one choke point."""
        store = self._store
        key = storage_key(document["_id"])
        check_validation(store.options, document, old, self.full_name)
        if old is None and key in store:
            raise duplicate_key_error(self.full_name, "_id_", [("_id", 1)], document)
        check_unique(store, document, key, self.full_name)
        store[key] = document

    def _iter_documents(self, filter: Mapping[str, Any], limit: int = 0) -> list[dict[str, Any]]:
        """Return the stored documents matching ``filter`` (at most ``limit``), index-served."""
        return _planner.find(self._store, filter, limit=limit)

    def _insert(self, data: Any, session: Any = None, ordered: bool = True) -> Any:
        refuse_unsupported(session=session)
        if not isinstance(data, Mapping):
            return self._insert_batch(list(data), ordered)
        if not all(isinstance(k, str) for k in data):
            raise ValueError("Document keys must be strings")
        _validate_data_fields(data)
        BSON.encode(data)
        if "_id" not in data:
            cast("dict[str, Any]", data)["_id"] = ObjectId()  # pymongo sets it on the caller's dict too
        self._write(helpers.patch_datetime_awareness_in_document(data), None)
        return data["_id"]

    def _insert_batch(self, documents: list[Any], ordered: bool) -> list[Any]:
        inserted: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, document in enumerate(documents):
            try:
                inserted.append(self._insert(document))
            except WriteError as error:
                errors.append(bulk.write_error(error, index, document))
                if ordered:
                    break
        if errors:
            result = bulk.empty_result()
            result.update(writeErrors=errors, nInserted=len(inserted))
            raise BulkWriteError(result)
        return inserted

    def _update(self, spec: Any, document: Any, upsert: bool = False, manipulate: bool = False,
                multi: bool = False, check_keys: bool = False, hint: Any = None,
                session: Any = None, collation: Any = None, let: Any = None,
                array_filters: Any = None, **kwargs: Any) -> dict[str, Any]:
        refuse_unsupported(session=session, collation=collation, let=let,
                           array_filters=array_filters)
        spec = helpers.patch_datetime_awareness_in_document(spec)
        document = helpers.patch_datetime_awareness_in_document(self._with_clock(document))
        validate_is_mapping("spec", spec)
        validate_list_or_mapping("document", document)
        if isinstance(document, list):
            _validate_document_stages(document)
            _refuse_server_time(document)
        matched = modified = 0
        for stored in self._iter_documents(spec, limit=0 if multi else 1):
            matched += 1
            modified += self._update_one_document(stored, spec, document)
            if not multi:
                break
        upserted = self._upsert(spec, document) if upsert and not matched else None
        return {
            "connectionId": self.database.client._id, "err": None, "n": matched or int(bool(upserted)),
            "nModified": modified, "ok": 1, "upserted": upserted, "updatedExisting": bool(matched),
        }

    def _update_one_document(self, stored: dict[str, Any], spec: Any, document: Any) -> int:
        new = copy.deepcopy(stored)
        self._apply_update(new, spec, document, was_insert=False)
        if new == stored:
            return 0
        if new.get("_id") != stored.get("_id"):
            raise WriteError(
                "After applying the update, the (immutable) field '_id' was found to have "
                f"been altered to _id: {new.get('_id')}", IMMUTABLE_FIELD,
            )
        self._write(new, stored)
        return 1

    def _upsert(self, spec: Mapping[str, Any], document: Any) -> Any:
        if spec.get("_id") is not None:
            doc_id = spec["_id"]
        elif not isinstance(document, list) and document.get("_id") is not None:
            doc_id = document["_id"]
        else:
            doc_id = ObjectId()
        seed, _ = self._discard_operators(self._expand_dots(dict(spec, _id=doc_id)))
        self._apply_update(seed, spec, document, was_insert=True)
        return self._insert(seed)

    def _apply_update(self, target: dict[str, Any], spec: Any, document: Any, *, was_insert: bool) -> None:
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

    def _delete(self, filter: Any, collation: Any = None, hint: Any = None, multi: bool = False,
                session: Any = None) -> dict[str, Any]:
        refuse_unsupported(collation=collation, session=session)
        filter = helpers.patch_datetime_awareness_in_document(filter)
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        doomed = self._iter_documents(filter, limit=0 if multi else 1)
        if not multi:
            doomed = doomed[:1]
        for doc in doomed:
            del self._store[storage_key(doc["_id"])]
        return {"connectionId": self.database.client._id, "n": len(doomed), "ok": 1.0, "err": None}

    def _find_and_modify(self, query: Any, projection: Any = None, update: Any = None,
                         upsert: bool = False, sort: Any = None,
                         return_document: Any = ReturnDocument.BEFORE, session: Any = None,
                         **kwargs: Any) -> Any:
        """Find one document (sorted), then update/replace/delete it by ``_id``: atomic under the lock."""
        remove = kwargs.pop("remove", False)
        kwargs.pop("bypass_document_validation", None)
        kwargs.pop("hint", None)  # no effect on the result
        refuse_unsupported(session=session, **kwargs)
        target = next(iter(self._get_dataset(query, sort, None, dict, limit=1)), None)
        if target is None and not upsert:
            return None
        if remove and target is not None:
            self._delete({"_id": target["_id"]})
            return self._present(target, projection)
        spec = {"_id": target["_id"]} if target is not None else query
        try:
            outcome = self._update(spec, update, upsert=upsert)
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


def command_error(error: WriteError) -> OperationFailure:
    """Return ``error`` as findAndModify reports it: a command error, not a write error.

    pymongo raises OperationFailure (DuplicateKeyError for 11000) whose details
    are the whole server reply, errInfo or keyPattern/keyValue included.
    """
    reply = {k: v for k, v in (error.details or {}).items() if k != "index"}
    reply = {"ok": 0.0, "errmsg": str(reply.get("errmsg", error)), "code": error.code,
             "codeName": CODE_NAMES.get(error.code or 0, "UnknownError"), **reply}
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
