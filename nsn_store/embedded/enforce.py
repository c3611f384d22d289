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
from typing import Any

from pymongo.errors import DuplicateKeyError, WriteError

from nsn_store.embedded._sorted_index import unchanged
from nsn_store.embedded.keys import field_value, index_keys, plain
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
    options: CollectionOptions,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    ns: str,
    *,
    changed: Mapping[str, int | None] | None = None,
) -> bool:
    """Apply validationLevel/validationAction to a post-image, as the server does.

    ``old`` is the stored document for an update, None for an insert (upserts
    included, which always take the strict path). ``changed``: the top-level
    fields an update changed (see ``CompiledValidator.still_matches``), given
    only when ``old`` is known to satisfy the validator; then only what those
    fields decide is checked again (the verdict is the same). Return whether
    ``new`` is known to satisfy the validator: False when there is none, it
    was not checked (level ``off``, bypassed) or it failed and was allowed
    (``moderate``, ``warn``).
    """
    compiled = options.compiled
    if compiled is None or options.level == "off" or _bypass.get():
        return False
    if compiled.matches(new) if changed is None else compiled.still_matches(new, changed):
        return True
    if old is not None and options.level == "moderate" and not compiled.matches(old):
        return False  # moderate: an update of an already invalid document is allowed
    info = compiled.error_info(new)
    if options.action == "warn":
        logger.warning(
            "Document would fail validation",
            extra={"namespace": ns, "document_id": new.get("_id"), "errInfo": info},
        )
        return False
    if options.action == "errorAndLog":
        logger.error("Document failed validation", extra={"namespace": ns, "errInfo": info})
    message = "Document failed validation"
    details = {"index": 0, "code": DOCUMENT_VALIDATION_FAILURE, "errmsg": message, "errInfo": info}
    raise WriteError(message, DOCUMENT_VALIDATION_FAILURE, details)


def check_unique(
    store: EmbeddedCollectionStore,
    new: Mapping[str, Any],
    key: Any,
    ns: str,
    old: Mapping[str, Any] | None = None,
) -> None:
    """Raise DuplicateKeyError if ``new`` (stored under ``key``) breaks a unique index.

    An update that leaves an index's fields as they were (``old``) keeps the
    keys the document already held there, so that index needs no check.
    """
    for name, index in store.indexes.items():
        if not index.get("unique"):
            continue
        if old is not None and unchanged(store.watched(name), old, new):
            continue
        if store.unique_conflict(name, index_keys(index, new), key):
            raise duplicate_key_error(ns, name, index["key"], new)


def duplicate_key_error(
    ns: str, name: str, key_pattern: list[tuple[str, Any]], doc: Mapping[str, Any]
) -> DuplicateKeyError:
    """Return the server's E11000 error for ``doc`` on index ``name``."""
    key_value = {field: plain(field_value(doc, field)) for field, _ in key_pattern}
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
