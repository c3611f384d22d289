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
from collections.abc import Callable
from typing import Any

from pymongo.errors import BulkWriteError, WriteError

from nsn_store.embedded.roundtrip import check_encodable

Operation = tuple[str, Callable[[], dict[str, Any]], Any]


class Recorder:
    """Collect the operations of a ``bulk_write`` as callables on ``collection``."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.operations: list[Operation] = []

    def add_insert(self, document: Any) -> None:
        # Encoded now, as pymongo encodes a batch before sending it: an
        # unencodable operation raises InvalidDocument and nothing is written.
        prepared = self.collection._prepare_insert(document)
        self.operations.append(("insert", lambda: self._insert(prepared), document))

    def add_update(
        self, selector: Any, update: Any, multi: bool = False, upsert: bool = False, **options: Any
    ) -> None:
        _refuse(options)
        self._encode(selector, update)
        run = functools.partial(
            self.collection._update, selector, update, upsert=upsert, multi=multi, command=None
        )
        self.operations.append(
            ("update", run, {"q": selector, "u": update, "multi": multi, "upsert": upsert})
        )

    def add_replace(
        self, selector: Any, replacement: Any, upsert: bool = False, **options: Any
    ) -> None:
        _refuse(options)
        self._encode(selector, replacement)
        run = functools.partial(
            self.collection._update, selector, replacement, upsert=upsert, command=None
        )
        self.operations.append(
            ("update", run, {"q": selector, "u": replacement, "multi": False, "upsert": upsert})
        )

    def add_delete(self, selector: Any, limit: int, **options: Any) -> None:
        _refuse(options)
        self._encode(selector)
        run = functools.partial(self.collection._delete, selector, multi=not limit)
        self.operations.append(("delete", run, {"q": selector, "limit": limit}))

    def _encode(self, *parts: Any) -> None:
        check_encodable(None, *parts)

    def _insert(self, prepared: Any) -> dict[str, Any]:
        self.collection._insert_prepared(prepared)
        return {"n": 1}


def _refuse(options: dict[str, Any]) -> None:
    for name, value in options.items():
        if value:
            raise NotImplementedError(
                f"bulk_write option {name!r} is not supported by the embedded database"
            )


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
