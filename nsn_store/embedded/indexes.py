"""Index specifications checked as ``createIndexes`` checks them.

The conflict rules follow the server's (MongoDB manual, createIndexes, "Behavior":
https://www.mongodb.com/docs/manual/reference/command/createIndexes/):
the key pattern and the identifying options (``unique``, ``sparse``,
``partialFilterExpression``, ``collation``) decide whether two indexes are the
same index; other options (``expireAfterSeconds``, ``hidden``) only make them
"equivalent", which conflicts too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nsn_store.embedded._mongomock import create_index_list, gen_index_name
from nsn_store.embedded.options import fail

INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
CANNOT_CREATE_INDEX = 67
INVALID_OPTIONS = 72

ID_INDEX = {"key": [("_id", 1)]}
IDENTIFYING = ("unique", "sparse", "partialFilterExpression", "collation")
SUPPORTED = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")
IGNORED = ("name", "v", "ns", "background", "dropDups", "key")
PARTIAL_OPERATORS = ("$eq", "$exists", "$gt", "$gte", "$lt", "$lte", "$type", "$in")
MAX_TTL = 2147483647


def normalise(key_or_list: Any, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (name, index dict as stored) for a ``create_index`` call, or raise."""
    keys = [(str(field), direction) for field, direction in create_index_list(key_or_list)]
    if not keys:
        raise fail("Index keys cannot be empty.", CANNOT_CREATE_INDEX, "CannotCreateIndex")
    name = kwargs.pop("name", None) or gen_index_name(keys)
    kwargs.pop("background", None)
    _refuse_unsupported(keys, kwargs)
    spec: dict[str, Any] = {"key": keys}
    for option in SUPPORTED:
        value = kwargs.pop(option, None)
        if value is not None and value is not False:
            spec[option] = value
    if kwargs:
        raise fail(f"Unrecognized index option: {min(kwargs)}", INVALID_OPTIONS, "InvalidOptions")
    _check_ttl(spec)
    _check_partial(spec)
    return name, spec


def _refuse_unsupported(keys: list[tuple[str, Any]], kwargs: Mapping[str, Any]) -> None:
    if kwargs.get("hidden"):
        raise NotImplementedError("hidden indexes are not supported by the embedded database")
    if kwargs.get("collation") is not None:
        raise NotImplementedError("index collations are not supported by the embedded database")
    if any(direction == "text" for _, direction in keys):
        raise NotImplementedError("text indexes ($text) are not supported by the embedded database")


def _check_ttl(spec: Mapping[str, Any]) -> None:
    ttl = spec.get("expireAfterSeconds")
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or math.isnan(ttl):
        raise fail(
            "TTL index 'expireAfterSeconds' option must be numeric",
            CANNOT_CREATE_INDEX,
            "CannotCreateIndex",
        )
    if not 0 <= ttl <= MAX_TTL:
        raise fail(
            f"TTL index 'expireAfterSeconds' option must be within an acceptable range, "
            f"try a lower number (0 to {MAX_TTL})",
            CANNOT_CREATE_INDEX,
            "CannotCreateIndex",
        )
    if len(spec["key"]) > 1:
        raise fail(
            "TTL indexes are single-field indexes, compound indexes do not support TTL",
            CANNOT_CREATE_INDEX,
            "CannotCreateIndex",
        )
    if spec["key"][0][0] == "_id":
        raise fail(
            "The field 'expireAfterSeconds' is not valid for an _id index specification",
            INVALID_OPTIONS,
            "InvalidOptions",
        )


def _check_partial(spec: Mapping[str, Any]) -> None:
    partial = spec.get("partialFilterExpression")
    if partial is None:
        return
    if not isinstance(partial, Mapping):
        raise fail("partialFilterExpression must be an object", 14, "TypeMismatch")
    if spec.get("sparse"):
        raise fail(
            'cannot mix "partialFilterExpression" and "sparse" options',
            CANNOT_CREATE_INDEX,
            "CannotCreateIndex",
        )
    _check_partial_expression(partial)


def _check_partial_expression(expression: Mapping[str, Any]) -> None:
    for field, condition in expression.items():
        if field in ("$and", "$or"):
            for clause in condition:
                _check_partial_expression(clause)
        elif field.startswith("$"):
            _unsupported_partial(field)
        elif isinstance(condition, Mapping) and condition and next(iter(condition)).startswith("$"):
            for operator, value in condition.items():
                if operator not in PARTIAL_OPERATORS or (operator == "$exists" and not value):
                    _unsupported_partial("$not" if operator == "$exists" else operator)


def _unsupported_partial(operator: str) -> None:
    raise fail(
        f"Expression not supported in partial index: {operator}",
        CANNOT_CREATE_INDEX,
        "CannotCreateIndex",
    )


def check_conflicts(
    name: str, spec: Mapping[str, Any], existing: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Return True to create the index, False when an identical one exists; raise on conflict."""
    current = existing.get(name)
    if current is not None:
        if _identity(current) != _identity(spec):
            raise fail(
                "An existing index has the same name as the requested index. When index names "
                "are not specified, they are auto generated and can cause conflicts. Please "
                "refer to our documentation. Requested index: "
                f"{describe(name, spec)}, existing index: {describe(name, current)}",
                INDEX_KEY_SPECS_CONFLICT,
                "IndexKeySpecsConflict",
            )
        if _rest(current) != _rest(spec):
            raise fail(
                "An equivalent index already exists with the same name but different options. "
                f"Requested index: {describe(name, spec)}, "
                f"existing index: {describe(name, current)}",
                INDEX_OPTIONS_CONFLICT,
                "IndexOptionsConflict",
            )
        return False
    for other_name, other in existing.items():
        if _identity(other) != _identity(spec):
            continue
        if _rest(other) != _rest(spec):
            raise fail(
                "An equivalent index already exists with a different name and options. "
                f"Requested index: {describe(name, spec)}, "
                f"existing index: {describe(other_name, other)}",
                INDEX_OPTIONS_CONFLICT,
                "IndexOptionsConflict",
            )
        raise fail(
            f"Index already exists with a different name: {other_name}",
            INDEX_OPTIONS_CONFLICT,
            "IndexOptionsConflict",
        )
    return True


def _identity(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    key = tuple((field, _direction(direction)) for field, direction in spec["key"])
    return (
        key,
        bool(spec.get("unique")),
        bool(spec.get("sparse")),
        spec.get("partialFilterExpression"),
        spec.get("collation"),
    )


def _direction(direction: Any) -> Any:
    if isinstance(direction, float) and direction.is_integer():
        return int(direction)
    return direction


def _rest(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in IDENTIFYING and k not in IGNORED}


def describe(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return the index as ``listIndexes`` reports it: v, key (ordered), name, options."""
    document: dict[str, Any] = {"v": 2, "key": dict(spec["key"]), "name": name}
    for option in ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression"):
        if option in spec:
            document[option] = spec[option]
    return document


BAD_HINT = "hint provided does not correspond to an existing index"


class BadHint(ValueError):
    """A hint that names no index: a server's BadValue (2), raised as each command words it."""


def hinted_index(store_indexes: Mapping[str, Mapping[str, Any]], hint: Any) -> str | None:
    """Return the name of the index ``hint`` names (``$natural`` for natural order), or None.

    ``hint`` is an index name or key pattern (a document or a list of pairs,
    as PyMongo accepts it); raises :class:`BadHint` when no index matches and
    TypeError as PyMongo does for another type.
    """
    if hint is None:
        return None
    if isinstance(hint, str):
        if hint == "_id_" or hint in store_indexes:
            return hint
        raise BadHint(BAD_HINT)
    if isinstance(hint, Mapping):
        pairs = list(hint.items())
    elif isinstance(hint, (list, tuple)):
        pairs = [tuple(pair) for pair in hint]
    else:
        raise TypeError("hint must be an index name (str) or a key pattern (dict or list of pairs)")
    if len(pairs) == 1 and pairs[0][0] == "$natural":
        return "$natural"
    wanted = [(str(field), _direction(direction)) for field, direction in pairs]
    everything = {"_id_": ID_INDEX, **store_indexes}
    for name, spec in everything.items():
        if [(f, _direction(d)) for f, d in spec["key"]] == wanted:
            return name
    raise BadHint(BAD_HINT)
