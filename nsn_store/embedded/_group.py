"""A native ``$group`` for the embedded database's aggregation, with mongomock's answers.

A ``$group`` whose ``_id`` and accumulators are built from what this module
can evaluate itself (constants, top-level field paths, documents of them,
``$dateTrunc`` with constant options; ``$sum``, ``$avg``, ``$min``, ``$max``,
``$first``, ``$last``, ``$push``, ``$addToSet``) runs here
(:func:`group_stage`); :func:`._pipeline.run_stages` sends any other
``$group``, and every other stage, to mongomock. mongomock evaluates each
``_id`` twice and sorts every document with its BSON comparator; here each
``_id`` is evaluated once and documents are bucketed by a hashable token of
their ``_id``, so only the distinct ids are sorted.
"""

from __future__ import annotations

import decimal
import itertools
import numbers
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeAlias

from bson import Decimal128, Int64, ObjectId

from nsn_store.embedded import _mongomock, _stages

#: A compiled expression: its value in a document, or :data:`_MISSING`.
Evaluate: TypeAlias = Callable[[dict[str, Any]], Any]
Accumulate: TypeAlias = Callable[[list[dict[str, Any]]], Any]
_MISSING: Final = object()


def group_stage(spec: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None:
    """Return ``{$group: spec}`` as a function of its input, or None to leave it to mongomock.

    The function gives mongomock's answer (``_handle_group_stage``): a falsy
    ``_id`` makes one group of every document (even of none) with ``_id``
    null; else the groups come in the BSON order of their ``_id``, documents
    in input order within each, and each output document holds the
    accumulators in spec order, then ``_id``. A missing field leaves its key
    out of an ``_id`` document (a missing ``_id`` expression is null) and its
    value out of an accumulator's values.
    """
    if type(spec) is not dict or "_id" not in spec:
        return None
    key = spec["_id"]
    key_of = _compile(key, ignore_missing=True) if key else None
    if key and key_of is None:
        return None
    accumulators = []
    for field, accumulator in spec.items():
        if field != "_id":
            compiled = _accumulator(accumulator)
            if compiled is None:
                return None
            accumulators.append((field, compiled))

    def run(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups = [(None, documents)] if key_of is None else _groups(key_of, documents)
        output = []
        for group_id, members in groups:
            row = {field: accumulate(members) for field, accumulate in accumulators}
            row["_id"] = group_id
            output.append(row)
        return output

    return run


def _compile(expression: Any, *, ignore_missing: bool) -> Evaluate | None:
    """Compile what mongomock's parser evaluates plainly; None for anything else.

    A string not starting with ``$`` and any scalar are themselves, ``$name``
    is a top-level field (:data:`_MISSING` when absent), a document is its
    fields' values (a missing one left out when ``ignore_missing``, else
    making the whole document missing), ``$dateTrunc`` needs constant options.
    """
    if isinstance(expression, str):
        name = expression[1:]
        if not expression.startswith("$"):
            return lambda document: expression
        if not name or "." in name or name.startswith("$"):
            return None
        return lambda document: document.get(name, _MISSING)
    if type(expression) is dict:
        return _compile_document(expression, ignore_missing)
    if isinstance(expression, (Mapping, list, tuple, set, frozenset)):
        return None
    return lambda document: expression


def _compile_document(expression: dict[Any, Any], ignore_missing: bool) -> Evaluate | None:
    if not all(isinstance(name, str) for name in expression):
        return None
    if any(name.startswith("$") for name in expression):
        return _compile_operator(expression, ignore_missing)
    parts = [
        (name, _compile(value, ignore_missing=ignore_missing)) for name, value in expression.items()
    ]
    compiled = [(name, part) for name, part in parts if part is not None]
    if len(compiled) != len(parts):
        return None

    def evaluate(document: dict[str, Any]) -> Any:
        result = {}
        for name, part in compiled:
            value = part(document)
            if value is _MISSING:
                if ignore_missing:
                    continue
                return _MISSING
            result[name] = value
        return result

    return evaluate


def _compile_operator(expression: dict[str, Any], ignore_missing: bool) -> Evaluate | None:
    """Compile ``$dateTrunc`` with constant options (its date read as mongomock reads it)."""
    if list(expression) != ["$dateTrunc"]:
        return None
    spec = expression["$dateTrunc"]
    truncation = _stages.date_truncation(spec)
    date_of = None if truncation is None else _compile(spec["date"], ignore_missing=ignore_missing)
    if truncation is None or date_of is None:
        return None
    return lambda document: truncation(_present(date_of(document)))


def _present(value: Any) -> Any:
    return None if value is _MISSING else value


# ------------------------------------------------------------ grouping


def _groups(
    key_of: Evaluate, documents: list[dict[str, Any]]
) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Return ``(_id, documents)`` of each group, in mongomock's order.

    mongomock sorts the documents by ``BsonComparable(_id)`` (a stable sort),
    then cuts runs of ``==`` ids. When every id is made of strings, numbers
    (not NaN), nulls, ObjectIds, datetimes (all aware or all naive) and
    documents of them, ``==`` and BSON equality agree, so documents with
    equal ids are one run, in input order: they are bucketed by a hashable
    stand-in of the id and only the distinct ids are sorted.
    """
    keys = [_present(key_of(document)) for document in documents]
    buckets = _buckets(keys, documents)
    if buckets is None:
        order = sorted(range(len(keys)), key=lambda i: _mongomock.BsonComparable(keys[i]))
        runs = itertools.groupby(order, key=lambda i: keys[i])
        return [(key, [documents[i] for i in run]) for key, run in runs]
    ranked = sorted(buckets.values(), key=lambda bucket: _mongomock.BsonComparable(bucket[0]))
    return [(key, members) for key, members in ranked]


def _buckets(
    keys: list[Any], documents: list[dict[str, Any]]
) -> dict[Any, tuple[Any, list[dict[str, Any]]]] | None:
    """Bucket ``documents`` by the stand-in of their key (first key kept), or None if unfit."""
    buckets: dict[Any, tuple[Any, list[dict[str, Any]]]] = {}
    awareness: set[bool] = set()
    try:
        for key, document in zip(keys, documents, strict=True):
            token = _token(key, awareness)
            bucket = buckets.get(token)
            if bucket is None:
                buckets[token] = (key, [document])
            else:
                bucket[1].append(document)
    except _Unfit:
        return None
    if len(awareness) > 1:  # naive and aware datetimes do not compare
        return None
    if len({_unordered(bucket[0]) for bucket in buckets.values()}) != len(buckets):
        return None  # documents equal but for their field order (unequal in BSON)
    return buckets


class _Unfit(Exception):
    """A key whose ``==`` may disagree with BSON equality."""


_SCALARS: Final = frozenset({str, int, Int64, ObjectId, type(None)})


def _token(value: Any, awareness: set[bool]) -> Any:
    """Return a hashable stand-in of ``value``, equal for equal keys; raise _Unfit if none."""
    kind = type(value)
    if kind in _SCALARS or (kind is float and value == value):
        return value
    if kind is datetime:
        awareness.add(value.tzinfo is not None)
        return value
    if kind is dict and all(type(name) is str for name in value):
        return tuple((name, _token(item, awareness)) for name, item in value.items())
    raise _Unfit


def _unordered(value: Any) -> Any:
    """Return a stand-in of ``value`` equal for documents that ``==`` calls equal."""
    if type(value) is dict:
        return tuple(sorted((name, _unordered(item)) for name, item in value.items()))
    return value


# ------------------------------------------------------------ accumulators


def _accumulator(spec: Any) -> Accumulate | None:
    """Compile ``{operator: expression}`` of one output field; None if not native."""
    if type(spec) is not dict or len(spec) != 1:
        return None
    ((operator, expression),) = spec.items()
    reduce = _REDUCERS.get(operator)
    value_of = _compile(expression, ignore_missing=False)
    if reduce is None or value_of is None:
        return None
    if operator == "$sum" and type(expression) is int:
        return lambda members: expression * len(members)

    def accumulate(members: list[dict[str, Any]]) -> Any:
        values = [value_of(member) for member in members]
        return reduce([value for value in values if value is not _MISSING])

    return accumulate


def _sum(values: list[Any]) -> Any:
    """mongomock's ``$sum``: numbers and Decimal128 (as Decimal) added, the rest ignored."""
    terms: list[Any] = []
    for value in values:
        if isinstance(value, numbers.Number):
            terms.append(value)
        elif isinstance(value, Decimal128):
            terms.append(value.to_decimal())
    total = sum(terms)
    return Decimal128(total) if isinstance(total, decimal.Decimal) else total


def _avg(values: list[Any]) -> Any:
    terms: list[Any] = [value for value in values if isinstance(value, numbers.Number)]
    return sum(terms) / float(len(terms)) if terms else None


def _min(values: list[Any]) -> Any:
    terms = [value for value in values if value is not None]
    return min(terms) if terms else None


def _max(values: list[Any]) -> Any:
    terms = [value for value in values if value is not None]
    return max(terms) if terms else None


def _add_to_set(values: list[Any]) -> list[Any]:
    """mongomock's ``$addToSet``: falsy values count as null, first occurrences kept."""
    result: list[Any] = []
    for value in values:
        element = value or None
        if element not in result:
            result.append(element)
    return result


#: mongomock's group operators (``_GROUPING_OPERATOR_MAP``, ``$push``, ``$addToSet``).
_REDUCERS: Final[dict[str, Callable[[list[Any]], Any]]] = {
    "$sum": _sum,
    "$avg": _avg,
    "$min": _min,
    "$max": _max,
    "$first": lambda values: values[0] if values else None,
    "$last": lambda values: values[-1] if values else None,
    "$push": lambda values: values,
    "$addToSet": _add_to_set,
}
