"""The document an upsert starts from: the filter's equalities, as a server extracts them.

A server seeds the inserted document with every equality of the filter, at the
top level and inside ``$and`` (``{a: v}``, ``{a: {$eq: v}}``, a one-element
``$in``), and refuses a filter that names one path twice or a path and its
prefix (NotSingleValueField, 54: "cannot infer query fields to set, path 'a'
is matched twice"), even when the values agree (server ``path_support.cpp``,
``addEqualitiesToDoc``). mongomock reads only the top level and accepts
``{a: 1, $and: [{a: 2}]}``, storing ``a: 1``. A replacement upsert takes only
``_id`` from the filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsn_store.embedded.roundtrip import executor_error

NOT_SINGLE_VALUE_FIELD = 54
_NONE = object()


def equalities(spec: Mapping[str, Any], *, only_id: bool = False) -> list[tuple[str, Any]]:
    """Return the (path, value) equalities of ``spec``; raise 54 for a path matched twice."""
    found: list[tuple[str, Any]] = []
    _collect(spec, found)
    if only_id:
        found = [(p, v) for p, v in found if p == "_id" or p.startswith("_id.")]
    for index, (path, _) in enumerate(found):
        for earlier, _ in found[:index]:
            _check_pair(earlier, path)
    return found


def _collect(spec: Mapping[str, Any], found: list[tuple[str, Any]]) -> None:
    for key, condition in spec.items():
        if key == "$and" and isinstance(condition, list):
            for clause in condition:
                if isinstance(clause, Mapping):
                    _collect(clause, found)
        elif not key.startswith("$"):
            value = _equality(condition)
            if value is not _NONE:
                found.append((key, value))


def _equality(condition: Any) -> Any:
    """Return the value ``condition`` pins a field to, or _NONE."""
    if not isinstance(condition, Mapping):
        return _NONE if _is_regex(condition) else condition
    if not any(isinstance(k, str) and k.startswith("$") for k in condition):
        return condition  # equality to an embedded document
    if "$eq" in condition:
        return condition["$eq"]
    values = condition.get("$in")
    if isinstance(values, list) and len(values) == 1 and not _is_regex(values[0]):
        return values[0]
    return _NONE


def _is_regex(value: Any) -> bool:
    return hasattr(value, "pattern") and hasattr(value, "flags")


def _check_pair(first: str, second: str) -> None:
    if first == second:
        raise _conflict(f"cannot infer query fields to set, path '{first}' is matched twice")
    shorter, longer = sorted((first, second), key=len)
    if longer.startswith(shorter + "."):
        raise _conflict(
            f"cannot infer query fields to set, both paths '{first}' and '{second}' are matched"
        )


def _conflict(reason: str) -> Exception:
    return executor_error(reason, NOT_SINGLE_VALUE_FIELD)


def seed(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return the document the equalities describe (dotted paths as embedded fields)."""
    document: dict[str, Any] = {}
    for path, value in fields:
        target = document
        *parents, last = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return document
