"""Index keys of a document, as hashable values equal exactly when BSON values are equal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from itertools import product
from typing import Any

from nsn_store.embedded._match import compile_simple
from nsn_store.embedded._mongomock import filter_applies, get_value_by_dot


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def index_keys(index: Mapping[str, Any], doc: Mapping[str, Any]) -> frozenset[Any]:
    """Return the keys ``doc`` contributes to ``index`` (empty when it is not indexed)."""
    partial = index.get("partialFilterExpression")
    if partial is not None and not _inside(partial, doc):
        return frozenset()
    values = [field_value(doc, field) for field, _ in index["key"]]
    if index.get("sparse") and all(v is MISSING for v in values):
        return frozenset()
    # An array is multikey: each element is a key of its own.
    return frozenset(product(*(_elements(v) for v in values)))


_compiled: dict[int, tuple[Mapping[str, Any], Callable[[Mapping[str, Any]], bool]]] = {}


def _inside(partial: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Tell whether ``doc`` matches a partial filter (compiled once per index specification)."""
    cached = _compiled.get(id(partial))
    if cached is None or cached[0] is not partial:
        matcher = compile_simple(partial)
        if matcher is None:
            return bool(filter_applies(partial, doc))
        if len(_compiled) > 1024:
            _compiled.clear()
        cached = _compiled[id(partial)] = (partial, matcher)
    return cached[1](doc)


def field_value(doc: Mapping[str, Any], field: str) -> Any:
    """Return the value at dotted ``field``, or MISSING."""
    try:
        return get_value_by_dot(doc, field)
    except (KeyError, IndexError, TypeError):
        return MISSING


def plain(value: Any) -> Any:
    """Return ``value`` with MISSING as None (a missing field is indexed as null)."""
    return None if value is MISSING else value


def _elements(value: Any) -> list[Any]:
    if isinstance(value, list) and value:
        return [freeze(item) for item in value]
    return [freeze(plain(value))]


def freeze(value: Any) -> Any:
    """Return a hashable key that is equal exactly when the BSON values are equal.

    Numbers compare by value (1 == 1.0), but booleans are not numbers.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, Mapping):
        return ("object", tuple((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(freeze(v) for v in value))
    if isinstance(value, datetime) and value.tzinfo is not None:
        return ("datetime", value.astimezone(timezone.utc).replace(tzinfo=None))
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return (type(value).__name__, value)
