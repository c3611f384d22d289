"""The PyMongo-shaped CRUD methods of the embedded collection.

Each method has PyMongo's signature and makes PyMongo's client-side checks
(``TypeError``/``ValueError`` for a wrong argument, ``ConfigurationError`` for
an option an unacknowledged write cannot carry), then runs the write paths of
:mod:`.writes` or the planner, as a driver sends a command and a server runs
it. ``collation`` (:mod:`._collation`), ``let`` (:mod:`._variables`), ``hint``
(the planner walks the named index), ``arrayFilters``
(:mod:`._array_filters`) and ``comment`` (logged by a server, ignored here)
are honoured everywhere PyMongo takes them.

Under an unacknowledged write concern (``w: 0``) a write returns a result with
``acknowledged`` False (``find_one_and_*``: None) and, as with a server,
never reports the server's errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymongo import ReturnDocument
from pymongo.common import (
    validate_is_document_type,
    validate_is_mapping,
    validate_ok_for_replace,
    validate_ok_for_update,
)
from pymongo.errors import ConfigurationError, InvalidOperation, OperationFailure
from pymongo.results import (
    BulkWriteResult,
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)
from pymongo.write_concern import validate_boolean

from nsn_store.embedded import _collation, _mongomock, _planner, _variables, bulk, roundtrip
from nsn_store.embedded._cursor import EmbeddedCursor
from nsn_store.embedded.keys import freeze

# find's parameters after the filter, in PyMongo's order (it accepts them positionally).
FIND_PARAMETERS = (
    "projection",
    "skip",
    "limit",
    "no_cursor_timeout",
    "cursor_type",
    "sort",
    "allow_partial_results",
    "oplog_replay",
    "batch_size",
    "collation",
    "hint",
    "max_scan",
    "max_time_ms",
    "max",
    "min",
    "return_key",
    "show_record_id",
    "snapshot",
    "comment",
    "session",
    "allow_disk_use",
    "let",
)
# find options the embedded database cannot honour: refused rather than ignored.
FIND_REFUSED = ("max", "min", "return_key", "show_record_id", "cursor_type", "session")
FIND_IGNORED = (
    "no_cursor_timeout",
    "allow_partial_results",
    "oplog_replay",
    "max_scan",
    "max_time_ms",
    "snapshot",
    "allow_disk_use",
    "comment",
)
# Aggregation stages after which a collation would change results the embedded
# database computes the binary way.
COLLATION_SAFE_STAGES = frozenset(
    {"$project", "$addFields", "$set", "$unset", "$skip", "$limit", "$count", "$out"}
)
COLLATION_SENSITIVE = frozenset(
    {
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$cmp", "$in", "$indexOfArray",
        "$setEquals", "$setUnion", "$setIntersection", "$setDifference", "$setIsSubset",
        "$max", "$min", "$strcasecmp", "$regexMatch", "$regexFind", "$regexFindAll",
        "$sortArray", "$switch", "$cond", "$filter",
    }
)  # fmt: skip


class CrudApi:
    """PyMongo's CRUD surface for :class:`~nsn_store.embedded.collection.EmbeddedCollection`."""

    # Provided by the write paths and mongomock's Collection, later in the MRO.
    _store: Any
    _db_store: Any
    write_concern: Any
    full_name: str
    _insert: Callable[..., Any]
    _update: Callable[..., dict[str, Any]]
    _delete: Callable[..., dict[str, Any]]
    _find_and_modify: Callable[..., Any]
    _hint: Callable[..., str | None]
    _copy_only_fields: Callable[..., Any]
    codec_options: Any

    # ------------------------------------------------------------------ reads

    def find(self, *args: Any, **kwargs: Any) -> EmbeddedCursor:
        """Return a cursor over the matches of ``filter`` (PyMongo's arguments, in its order)."""
        arguments = _find_arguments(args, kwargs)
        for name in FIND_REFUSED:
            if arguments.get(name):
                raise NotImplementedError(
                    f"find option {name!r} is not supported by the embedded database"
                )
        spec = arguments.pop("filter", None)
        spec = {} if spec is None else spec
        validate_is_mapping("filter", spec)
        skip, limit = arguments.get("skip", 0), arguments.get("limit", 0)
        if not isinstance(skip, int) or isinstance(skip, bool):
            raise TypeError("skip must be an instance of int")
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError("limit must be an instance of int")
        if skip < 0:
            raise ValueError("skip must be >= 0")
        return EmbeddedCursor(
            self,
            spec,
            _sort_list(arguments.get("sort")),
            arguments.get("projection"),
            skip,
            limit,
            collation=arguments.get("collation"),
            hint=arguments.get("hint"),
            let=arguments.get("let"),
            comment=arguments.get("comment"),
            batch_size=arguments.get("batch_size") or 0,
        )

    def _get_dataset(
        self,
        spec: Any,
        sort: Any,
        fields: Any,
        as_class: Any,
        limit: int = 0,
        collation: Any = None,
        hint: Any = None,
        let: Any = None,
        aware: bool = False,
    ) -> list[Any]:
        """Return copies of the matches (projected; ``aware``: tz-aware datetimes)."""
        # Materialise inside the lock: a lazy generator would read outside it.
        roundtrip.check_encodable(None, spec or {})  # pymongo encodes the filter it sends
        found = _planner.find(
            self._store,
            spec or {},
            sort=sort,
            limit=limit,
            collation=_collation.parse(collation),
            let=_variables.check(let),
            hint=self._hint(hint, command="find"),
        )
        return [self._shown(doc, fields, aware) for doc in found]

    def _shown(self, document: Any, projection: Any, aware: bool) -> Any:
        """Return ``document`` as a read returns it: a projected copy, aware datetimes if asked."""
        if projection is None:
            return roundtrip.copy(document, aware=aware)
        projected = simple_projection(document, projection)
        if projected is not None:
            return roundtrip.copy(projected, aware=aware)
        shown = self._copy_only_fields(document, projection, dict)
        return _mongomock.make_datetime_timezone_aware_in_document(shown) if aware else shown

    def count_documents(
        self, filter: Any, session: Any = None, comment: Any = None, **kwargs: Any
    ) -> int:
        """Count the documents matching ``filter`` (``skip``, ``limit``, ``hint``, collation)."""
        validate_is_mapping("filter", filter)
        roundtrip.check_encodable(None, filter)
        _refuse_session(session)
        skip, limit = kwargs.pop("skip", 0), kwargs.pop("limit", 0)
        collation, hint = kwargs.pop("collation", None), kwargs.pop("hint", None)
        kwargs.pop("maxTimeMS", None)
        _refuse_unknown("count_documents", kwargs)
        for name, value in (("skip", skip), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _bad_value(f"the {name} must be a non-negative integer, got {value!r}")
        found = self._get_dataset(
            filter, None, {"_id": 1}, dict, limit=skip + limit if limit else 0,
            collation=collation, hint=hint,
        )  # fmt: skip
        return max(len(found) - int(skip), 0)

    def estimated_document_count(self, comment: Any = None, **kwargs: Any) -> int:
        """Return the number of documents in the collection (from its metadata, on a server)."""
        kwargs.pop("maxTimeMS", None)
        _refuse_unknown("estimated_document_count", kwargs)
        return len(self._store)

    def distinct(
        self,
        key: str,
        filter: Mapping[str, Any] | None = None,
        session: Any = None,
        comment: Any = None,
        hint: Any = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Return the distinct values of ``key``, sorted and compared as a server does.

        Array values contribute their elements; values equal in BSON (``1``,
        ``1.0``, ``Int64(1)``, but not ``True``) count once (the first one met);
        the result is in BSON order, strings under ``collation`` if given.
        """
        if not isinstance(key, str):
            raise TypeError(f"key must be an instance of str, not {type(key)}")
        _refuse_session(session)
        collation = kwargs.pop("collation", None)
        kwargs.pop("maxTimeMS", None)
        _refuse_unknown("distinct", kwargs)
        spec = {} if filter is None else filter
        validate_is_mapping("filter", spec)
        parsed = _collation.parse(collation)
        aware = bool(self.codec_options.tz_aware)
        found = self._get_dataset(
            spec, None, None, dict, collation=collation, hint=hint, aware=aware
        )
        return distinct_values(found, key, parsed)

    # ------------------------------------------------------------------ writes

    def insert_one(
        self,
        document: Any,
        bypass_document_validation: bool | None = None,
        session: Any = None,
        comment: Any = None,
    ) -> InsertOneResult:
        """Insert ``document`` (given an ``_id`` if it has none, as PyMongo does)."""
        validate_is_document_type("document", document)
        if not self.write_concern.acknowledged:
            _unacknowledged_check(bypass=bypass_document_validation)
            _quietly(lambda: self._insert(document, session))
            return InsertOneResult(document.get("_id"), False)
        return InsertOneResult(self._insert(document, session), True)

    def insert_many(
        self,
        documents: Iterable[Any],
        ordered: bool = True,
        bypass_document_validation: bool | None = None,
        session: Any = None,
        comment: Any = None,
    ) -> InsertManyResult:
        """Insert ``documents`` in order (ordered: stopping at the first error)."""
        if not isinstance(documents, Iterable) or isinstance(documents, Mapping) or not documents:
            raise TypeError("documents must be a non-empty list")
        batch = list(documents)
        if not batch:
            raise TypeError("documents must be a non-empty list")
        for document in batch:
            validate_is_document_type("document", document)
        if not self.write_concern.acknowledged:
            _unacknowledged_check(bypass=bypass_document_validation)
            _quietly(lambda: self._insert(batch, session, ordered=ordered))
            return InsertManyResult([d.get("_id") for d in batch], False)
        return InsertManyResult(self._insert(batch, session, ordered=ordered), True)

    def update_one(
        self,
        filter: Mapping[str, Any],
        update: Any,
        upsert: bool = False,
        bypass_document_validation: bool | None = None,
        collation: Any = None,
        array_filters: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        sort: Any = None,
        comment: Any = None,
    ) -> UpdateResult:
        """Update the first document matching ``filter`` (an operator document or a pipeline)."""
        validate_is_mapping("filter", filter)
        validate_boolean("upsert", upsert)
        validate_ok_for_update(update)
        return self._updated(
            lambda: self._update(
                filter, update, upsert=upsert, hint=hint, session=session, collation=collation,
                array_filters=array_filters, let=let, sort=sort,
            ),
            collation=collation, array_filters=array_filters, bypass=bypass_document_validation,
        )  # fmt: skip

    def update_many(
        self,
        filter: Mapping[str, Any],
        update: Any,
        upsert: bool = False,
        array_filters: Any = None,
        bypass_document_validation: bool | None = None,
        collation: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
    ) -> UpdateResult:
        """Update every document matching ``filter``."""
        validate_is_mapping("filter", filter)
        validate_boolean("upsert", upsert)
        validate_ok_for_update(update)
        return self._updated(
            lambda: self._update(
                filter, update, upsert=upsert, multi=True, hint=hint, session=session,
                collation=collation, array_filters=array_filters, let=let,
            ),
            collation=collation, array_filters=array_filters, bypass=bypass_document_validation,
        )  # fmt: skip

    def replace_one(
        self,
        filter: Mapping[str, Any],
        replacement: Mapping[str, Any],
        upsert: bool = False,
        bypass_document_validation: bool | None = None,
        collation: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        sort: Any = None,
        comment: Any = None,
    ) -> UpdateResult:
        """Replace the first document matching ``filter`` (it keeps its ``_id``)."""
        validate_is_mapping("filter", filter)
        validate_boolean("upsert", upsert)
        validate_ok_for_replace(replacement)
        return self._updated(
            lambda: self._update(
                filter, replacement, upsert=upsert, hint=hint, session=session,
                collation=collation, let=let, sort=sort,
            ),
            collation=collation, bypass=bypass_document_validation,
        )  # fmt: skip

    def _updated(
        self,
        write: Callable[[], dict[str, Any]],
        *,
        collation: Any = None,
        array_filters: Any = None,
        bypass: bool | None = None,
    ) -> UpdateResult:
        if not self.write_concern.acknowledged:
            _unacknowledged_check(collation=collation, array_filters=array_filters, bypass=bypass)
            _quietly(write)
            return UpdateResult({}, False)
        return UpdateResult(write(), True)

    def delete_one(
        self,
        filter: Mapping[str, Any],
        collation: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
    ) -> DeleteResult:
        """Delete the first document matching ``filter``."""
        return self._deleted(filter, collation, hint, session, let, multi=False)

    def delete_many(
        self,
        filter: Mapping[str, Any],
        collation: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
    ) -> DeleteResult:
        """Delete every document matching ``filter``."""
        return self._deleted(filter, collation, hint, session, let, multi=True)

    def _deleted(
        self, filter: Any, collation: Any, hint: Any, session: Any, let: Any, *, multi: bool
    ) -> DeleteResult:
        validate_is_mapping("filter", filter)

        def write() -> dict[str, Any]:
            return self._delete(
                filter, collation=collation, hint=hint, multi=multi, session=session, let=let
            )

        if not self.write_concern.acknowledged:
            _unacknowledged_check(collation=collation)
            _quietly(write)
            return DeleteResult({}, False)
        return DeleteResult(write(), True)

    def find_one_and_delete(
        self,
        filter: Mapping[str, Any],
        projection: Any = None,
        sort: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Delete the first document matching ``filter`` (after ``sort``) and return it."""
        validate_is_mapping("filter", filter)
        return self._modified(
            filter, projection, None, False, sort, ReturnDocument.BEFORE, hint, session, let,
            remove=True, **kwargs,
        )  # fmt: skip

    def find_one_and_replace(
        self,
        filter: Mapping[str, Any],
        replacement: Mapping[str, Any],
        projection: Any = None,
        sort: Any = None,
        upsert: bool = False,
        return_document: bool = ReturnDocument.BEFORE,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Replace the first document matching ``filter``; return it before or after."""
        validate_is_mapping("filter", filter)
        validate_ok_for_replace(replacement)
        return self._modified(
            filter, projection, replacement, upsert, sort, return_document, hint, session, let,
            **kwargs,
        )  # fmt: skip

    def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Any,
        projection: Any = None,
        sort: Any = None,
        upsert: bool = False,
        return_document: bool = ReturnDocument.BEFORE,
        array_filters: Any = None,
        hint: Any = None,
        session: Any = None,
        let: Any = None,
        comment: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Update the first document matching ``filter``; return it before or after."""
        validate_is_mapping("filter", filter)
        validate_ok_for_update(update)
        return self._modified(
            filter, projection, update, upsert, sort, return_document, hint, session, let,
            array_filters=array_filters, **kwargs,
        )  # fmt: skip

    def _modified(
        self,
        filter: Any,
        projection: Any,
        update: Any,
        upsert: bool,
        sort: Any,
        return_document: Any,
        hint: Any,
        session: Any,
        let: Any,
        **kwargs: Any,
    ) -> Any:
        validate_boolean("upsert", upsert)
        if not isinstance(return_document, bool):
            raise ValueError(
                "return_document must be ReturnDocument.BEFORE or ReturnDocument.AFTER"
            )
        kwargs.pop("maxTimeMS", None)
        if isinstance(projection, (list, tuple)):
            projection = dict.fromkeys(projection, 1)

        def write() -> Any:
            return self._find_and_modify(
                filter, projection, update, upsert, _sort_list(sort), return_document,
                session=session, hint=hint, let=let, **kwargs,
            )  # fmt: skip

        if not self.write_concern.acknowledged:
            _unacknowledged_check(
                collation=kwargs.get("collation"),
                array_filters=kwargs.get("array_filters"),
                bypass=kwargs.get("bypassDocumentValidation"),
            )
            _quietly(write)
            return None
        return write()

    def bulk_write(
        self,
        requests: Iterable[Any],
        ordered: bool = True,
        bypass_document_validation: bool | None = None,
        session: Any = None,
        comment: Any = None,
        let: Any = None,
    ) -> BulkWriteResult:
        """Run a batch of writes with server semantics (see :mod:`.bulk`)."""
        _refuse_session(session)
        validate_boolean("ordered", ordered)
        if not isinstance(requests, list):
            raise TypeError(f"requests must be a list, not {type(requests)}")
        recorder = bulk.Recorder(self, let=_variables.check(let))
        for request in requests:
            try:
                request._add_to_bulk(recorder)
            except AttributeError:
                raise TypeError(f"{request!r} is not a valid request") from None
        if not recorder.operations:
            raise InvalidOperation("No operations to execute")
        if not self.write_concern.acknowledged:
            _unacknowledged_check(
                collation=recorder.uses_collation,
                array_filters=recorder.uses_array_filters,
                bypass=bypass_document_validation,
            )
            _quietly(lambda: bulk.execute(recorder, ordered=ordered))
            return BulkWriteResult({}, False)
        return BulkWriteResult(bulk.execute(recorder, ordered=ordered), True)


def _find_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = ("filter", *FIND_PARAMETERS)
    if len(args) > len(names):
        raise TypeError(f"find() takes at most {len(names)} positional arguments")
    arguments = dict(zip(names, args, strict=False))
    for name, value in kwargs.items():
        if name not in names:
            raise TypeError(f"find() got an unexpected keyword argument {name!r}")
        if name in arguments:
            raise TypeError(f"find() got multiple values for argument {name!r}")
        arguments[name] = value
    return arguments


def _sort_list(sort: Any) -> Any:
    """Return ``sort`` as PyMongo sends it: a list of (key, direction) (a dict keeps its order)."""
    if isinstance(sort, Mapping):
        return list(sort.items())
    return sort


def _refuse_session(session: Any) -> None:
    if session:
        raise NotImplementedError("'session' is not supported by the embedded database")


def _refuse_unknown(command: str, options: Mapping[str, Any]) -> None:
    for name in options:
        message = f"BSON field '{command}.{name}' is an unknown field."
        details = {"ok": 0.0, "errmsg": message, "code": 40415, "codeName": "Location40415"}
        raise OperationFailure(message, 40415, details)


def _bad_value(message: str) -> OperationFailure:
    return OperationFailure(
        message, 2, {"ok": 0.0, "errmsg": message, "code": 2, "codeName": "BadValue"}
    )


def _unacknowledged_check(
    *, collation: Any = None, array_filters: Any = None, bypass: Any = None
) -> None:
    """Refuse what PyMongo refuses in an unacknowledged write."""
    if collation:
        raise ConfigurationError("Collation is unsupported for unacknowledged writes.")
    if array_filters:
        raise ConfigurationError("arrayFilters is unsupported for unacknowledged writes.")
    if bypass:
        raise OperationFailure(
            "Cannot set bypass_document_validation with unacknowledged write concern"
        )


def _quietly(write: Callable[[], Any]) -> None:
    """Run an unacknowledged write: a server's error (write or command) never reaches the client."""
    with contextlib.suppress(OperationFailure):
        write()


def distinct_values(documents: list[Any], key: str, collation: Any) -> list[Any]:
    """Return the distinct values of ``key`` in ``documents``, deduplicated and sorted."""
    seen: dict[Any, Any] = {}
    for document in documents:
        for value in _mongomock.iter_key_candidates(key, document):
            if value is _mongomock.NOTHING:
                continue
            for item in value if isinstance(value, list) else [value]:
                token = freeze(item)
                if collation is not None and type(item) is str:
                    token = ("str", collation.key(item))
                seen.setdefault(token, item)
    values = list(seen.values())
    return sorted(
        values, key=lambda v: _mongomock.BsonComparable(_collation.sort_key(collation, v))
    )


def simple_projection(document: Mapping[str, Any], projection: Any) -> dict[str, Any] | None:
    """Return ``document`` under a projection of top-level fields, as mongomock projects it.

    Only a dict of plain field names set to 0/1 (``_id`` apart, as mongomock
    reads it); the values are not copied (the caller copies). Included fields
    come in document order and ``_id`` after them, excluded fields are left
    out in place, as mongomock's ``_copy_only_fields`` does. None for any other
    projection (dotted paths, operators, mixed), which mongomock handles.
    """
    if type(projection) is not dict or not projection:
        return None
    rest = {}
    for name, flag in projection.items():
        if type(name) is not str or "." in name or name.startswith("$") or flag not in (0, 1):
            return None
        if name != "_id":
            rest[name] = flag
    keep = projection.get("_id", 1)
    if len(set(rest.values())) > 1:
        return None  # mongomock's own error for a mixed projection
    if rest and next(iter(rest.values())):
        shown = {k: v for k, v in document.items() if k in rest and k != "_id"}
        if keep != 0 and "_id" in document:
            shown["_id"] = document["_id"]
        return shown
    if not rest and keep == 1:
        return {"_id": document["_id"]} if "_id" in document else {}
    shown = {k: v for k, v in document.items() if k not in rest}
    if keep == 0:
        shown.pop("_id", None)
    return shown


def check_collated_pipeline(stages: list[Any]) -> None:
    """Refuse stages after a pipeline's front whose string comparisons a collation would change."""
    for stage in stages:
        name = next(iter(stage), "") if isinstance(stage, Mapping) else ""
        if name not in COLLATION_SAFE_STAGES or _compares(stage):
            raise NotImplementedError(
                f"aggregate with a collation and a {name or 'malformed'} stage after the leading "
                "$match/$sort/$skip/$limit is not supported by the embedded database"
            )


def _compares(expression: Any) -> bool:
    if isinstance(expression, Mapping):
        return any(k in COLLATION_SENSITIVE or _compares(v) for k, v in expression.items())
    if isinstance(expression, list):
        return any(_compares(v) for v in expression)
    return False
