"""``bulk_write`` with the server's ordered/unordered semantics and full write errors.

pymongo's request objects describe themselves to a "bulk" object through
``add_insert``/``add_update``/``add_replace``/``add_delete``; :class:`Recorder`
collects them and :func:`execute` runs them one by one through the
collection's own write paths, so validation, unique indexes and the lock apply
exactly as for single writes. Each write error keeps its ``errInfo`` or
``keyPattern``/``keyValue`` (mongomock keeps only code and message).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pymongo.common import (
    validate_is_document_type,
    validate_is_mapping,
    validate_ok_for_replace,
    validate_ok_for_update,
)
from pymongo.errors import BulkWriteError, WriteError

from nsn_store.embedded.roundtrip import check_encodable

Operation = tuple[str, Callable[[], dict[str, Any]], Any]


class Recorder:
    """Collect the operations of a ``bulk_write`` as callables on ``collection``.

    PyMongo's request objects call these methods with their options; each is
    checked as PyMongo's own bulk object checks it (an update without an
    operator, a replacement with one: ValueError, nothing written) and ``let``
    applies to every operation.
    """

    def __init__(self, collection: Any, let: Mapping[str, Any] | None = None) -> None:
        self.collection = collection
        self.let = let
        self.operations: list[Operation] = []
        self.uses_collation = False
        self.uses_array_filters = False

    def add_insert(self, document: Any) -> None:
        # Encoded now, as pymongo encodes a batch before sending it: an
        # unencodable operation raises InvalidDocument and nothing is written.
        validate_is_document_type("document", document)
        prepared = self.collection._prepare_insert(document)
        self.operations.append(("insert", lambda: self._insert(prepared), document))

    def add_update(
        self,
        selector: Any,
        update: Any,
        multi: bool = False,
        upsert: bool | None = None,
        collation: Any = None,
        array_filters: Any = None,
        hint: Any = None,
        sort: Any = None,
    ) -> None:
        validate_ok_for_update(update)
        self._encode(selector, update)
        self.uses_collation |= collation is not None
        self.uses_array_filters |= array_filters is not None
        run = functools.partial(
            self.collection._update, selector, update, upsert=bool(upsert), multi=multi,
            command=None, collation=collation, array_filters=array_filters, hint=hint,
            let=self.let, sort=sort,
        )  # fmt: skip
        op = {"q": selector, "u": update, "multi": multi, "upsert": bool(upsert)}
        self.operations.append(("update", run, _with_options(op, collation, array_filters, hint)))

    def add_replace(
        self,
        selector: Any,
        replacement: Any,
        upsert: bool | None = None,
        collation: Any = None,
        hint: Any = None,
        sort: Any = None,
    ) -> None:
        validate_ok_for_replace(replacement)
        self._encode(selector, replacement)
        self.uses_collation |= collation is not None
        run = functools.partial(
            self.collection._update, selector, replacement, upsert=bool(upsert), command=None,
            collation=collation, hint=hint, let=self.let, sort=sort,
        )  # fmt: skip
        op = {"q": selector, "u": replacement, "multi": False, "upsert": bool(upsert)}
        self.operations.append(("update", run, _with_options(op, collation, None, hint)))

    def add_delete(
        self, selector: Any, limit: int, collation: Any = None, hint: Any = None
    ) -> None:
        validate_is_mapping("filter", selector)
        self._encode(selector)
        self.uses_collation |= collation is not None
        run = functools.partial(
            self.collection._delete, selector, multi=not limit, collation=collation, hint=hint,
            let=self.let,
        )  # fmt: skip
        op = {"q": selector, "limit": limit}
        self.operations.append(("delete", run, _with_options(op, collation, None, hint)))

    def _encode(self, *parts: Any) -> None:
        check_encodable(None, *parts)

    def _insert(self, prepared: Any) -> dict[str, Any]:
        self.collection._insert_prepared(prepared)
        return {"n": 1}


def _with_options(op: dict[str, Any], collation: Any, array_filters: Any, hint: Any) -> Any:
    """Return the statement as PyMongo sends it, with the options it was given."""
    for name, value in (("collation", collation), ("arrayFilters", array_filters), ("hint", hint)):
        if value is not None:
            op[name] = value
    return op


def empty_result() -> dict[str, Any]:
    """Return a bulk result with nothing done yet, shaped as pymongo reports it."""
    return {
        "writeErrors": [],
        "writeConcernErrors": [],
        "nInserted": 0,
        "nUpserted": 0,
        "nMatched": 0,
        "nModified": 0,
        "nRemoved": 0,
        "upserted": [],
    }


def execute(recorder: Recorder, *, ordered: bool) -> dict[str, Any]:
    """Run the recorded operations; return the server-shaped result or raise BulkWriteError."""
    result = empty_result()
    for index, (kind, run, op) in enumerate(recorder.operations):
        try:
            outcome = run()
        except WriteError as error:
            result["writeErrors"].append(write_error(error, index, op))
            if ordered:
                break
            continue
        _count(result, kind, outcome, index)
    if result["writeErrors"]:
        raise BulkWriteError(result)
    return result


def _count(result: dict[str, Any], kind: str, outcome: dict[str, Any], index: int) -> None:
    if kind == "insert":
        result["nInserted"] += 1
    elif kind == "delete":
        result["nRemoved"] += outcome["n"]
    elif outcome.get("upserted") is not None:
        result["nUpserted"] += 1
        result["upserted"].append({"index": index, "_id": outcome["upserted"]})
    else:
        result["nMatched"] += outcome["n"]
        result["nModified"] += outcome["nModified"]


def write_error(error: WriteError, index: int, op: Any) -> dict[str, Any]:
    """Return the ``writeErrors`` entry for ``error`` raised by operation ``index``."""
    entry = dict(error.details or {"code": error.code, "errmsg": str(error)})
    entry["index"] = index
    entry.setdefault("code", error.code)
    entry.setdefault("errmsg", str(error))
    entry["op"] = op
    return entry
