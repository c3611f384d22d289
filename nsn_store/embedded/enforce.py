"""The checks a server makes before it stores a document: validator, then unique indexes.

Both run on the post-image *before* it is stored, so a rejected write leaves
nothing behind and needs no rollback. ``bypass_document_validation`` is
carried in a context variable set by the collection's public methods, because
mongomock's internal call chain does not pass it down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from itertools import product
from typing import Any

from mongomock import helpers
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError, WriteError

from nsn_store.embedded.store import CollectionOptions, EmbeddedCollectionStore

logger = logging.getLogger(__name__)

DOCUMENT_VALIDATION_FAILURE = 121
DUPLICATE_KEY = 11000

_bypass: ContextVar[bool] = ContextVar("nsn_bypass_document_validation", default=False)


@contextmanager
def bypassing(enabled: bool) -> Iterator[None]:
    """Skip document validation inside the block when ``enabled`` (nested calls inherit)."""
    token = _bypass.set(bool(enabled) or _bypass.get())
    try:
        yield
    finally:
        _bypass.reset(token)


def check_validation(
    options: CollectionOptions, new: Mapping[str, Any], old: Mapping[str, Any] | None, ns: str
) -> None:
    """Apply validationLevel/validationAction to a post-image, as the server does.

    ``old`` is the stored document for an update, None for an insert (upserts
    included, which always take the strict path).
    """
    compiled = options.compiled
    if compiled is None or options.level == "off" or _bypass.get():
        return
    if compiled.matches(new):
        return
    if old is not None and options.level == "moderate" and not compiled.matches(old):
        return  # moderate: an update of an already invalid document is allowed
    info = compiled.error_info(new)
    if options.action == "warn":
        logger.warning(
            "Document would fail validation",
            extra={"namespace": ns, "document_id": new.get("_id"), "errInfo": info},
        )
        return
    if options.action == "errorAndLog":
        logger.error("Document failed validation", extra={"namespace": ns, "errInfo": info})
    message = "Document failed validation"
    details = {"index": 0, "code": DOCUMENT_VALIDATION_FAILURE, "errmsg": message, "errInfo": info}
    raise WriteError(message, DOCUMENT_VALIDATION_FAILURE, details)


def check_unique(store: EmbeddedCollectionStore, new: Mapping[str, Any], key: Any, ns: str) -> None:
    """Raise DuplicateKeyError if ``new`` (stored under ``key``) breaks a unique index."""
    for name, index in store.indexes.items():
        if not index.get("unique"):
            continue
        new_keys = index_keys(index, new)
        if not new_keys:
            continue
        for other_key, other in store._documents.items():
            if other_key != key and not new_keys.isdisjoint(index_keys(index, other)):
                raise duplicate_key_error(ns, name, index["key"], new)


def index_keys(index: Mapping[str, Any], doc: Mapping[str, Any]) -> frozenset[Any]:
    """Return the keys ``doc`` contributes to ``index`` (empty when it is not indexed)."""
    partial = index.get("partialFilterExpression")
    if partial is not None and not filter_applies(partial, doc):
        return frozenset()
    values = [_field_values(doc, field) for field, _ in index["key"]]
    if index.get("sparse") and all(v is _MISSING for v in values):
        return frozenset()
    # An array is multikey: each element is a key of its own.
    choices = [_elements(v) for v in values]
    return frozenset(product(*choices))


def duplicate_key_error(
    ns: str, name: str, key_pattern: list[tuple[str, Any]], doc: Mapping[str, Any]
) -> DuplicateKeyError:
    """Return the server's E11000 error for ``doc`` on index ``name``."""
    key_value = {field: _plain(_field_values(doc, field)) for field, _ in key_pattern}
    shown = ", ".join(f"{field}: {value!r}" for field, value in key_value.items())
    message = f"E11000 duplicate key error collection: {ns} index: {name} dup key: {{ {shown} }}"
    details = {
        "index": 0,
        "code": DUPLICATE_KEY,
        "errmsg": message,
        "keyPattern": dict(key_pattern),
        "keyValue": key_value,
    }
    return DuplicateKeyError(message, DUPLICATE_KEY, details)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _field_values(doc: Mapping[str, Any], field: str) -> Any:
    try:
        return helpers.get_value_by_dot(doc, field)
    except (KeyError, IndexError, TypeError):
        return _MISSING


def _plain(value: Any) -> Any:
    return None if value is _MISSING else value


def _elements(value: Any) -> list[Any]:
    if isinstance(value, list) and value:
        return [freeze(item) for item in value]
    return [freeze(_plain(value))]


def freeze(value: Any) -> Any:
    """Return a hashable key that is equal exactly when the BSON values are equal.

    Numbers compare by value (1 == 1.0), but booleans are not numbers, and a
    missing field is indexed as null.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, Mapping):
        return ("object", tuple((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(freeze(v) for v in value))
    if isinstance(value, datetime):
        return ("date", value.replace(tzinfo=None) if value.tzinfo is None else value)
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return (type(value).__name__, value)
