"""A compiled matcher for the common filter shapes, exactly mongomock's semantics, 5-20x faster.

mongomock's ``filter_applies`` interprets the filter anew for every document
(set algebra, ``isinstance`` chains, candidate lists): most of the embedded
database's CPU. Most filters the library sends are conjunctions of top-level
fields compared with scalars. :func:`compile_simple` turns such a filter into
one closure per field, each the exact evaluation mongomock makes for a document
whose field is absent, holds a scalar (null, bool, int, long, double, string,
ObjectId, date) or an array (of scalars, for ordered comparisons); for a
document holding anything else there (a sub-document, binary, ...) the whole
filter falls back to mongomock, so the answer is always mongomock's.
Supported: equality to a scalar, ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``,
``$lte``, ``$in``, ``$nin`` (lists of scalars), ``$exists``,
``$and``/``$or``/``$nor`` of such filters, ``$comment``. Anything else returns
None (the caller uses mongomock).

mongomock's rules mirrored here (``mongomock/filtering.py``): equality is
Python ``==`` (so ``1`` matches ``True``) plus "null matches a missing field";
ordered comparisons are false across type brackets (null 5, numbers 10,
strings 15, ObjectId 35, booleans 40, dates 45; two nulls compare as equal);
``$in`` is Python ``in`` plus "a missing field matches a list holding null";
on an array, equality and the comparisons ask for one element, ``$ne`` and
``$nin`` for none (and plain equality to an ObjectId also finds its hex string).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bson import Int64, ObjectId

from nsn_store.embedded._mongomock import NOTHING, filter_applies

Matcher = Callable[[Mapping[str, Any]], bool]
#: A field's test: True/False for a scalar or absent value, None to defer to mongomock.
FieldTest = Callable[[Any], "bool | None"]

RANKS: dict[type, int] = {
    type(None): 5,
    int: 10,
    Int64: 10,
    float: 10,
    str: 15,
    ObjectId: 35,
    bool: 40,
    datetime: 45,
}
ORDERED = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
SUPPORTED = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", *ORDERED})
LOGICAL = ("$and", "$or", "$nor")


def _scalar(value: Any) -> bool:
    """Tell whether ``value`` is a scalar the compiled tests handle (as a query operand)."""
    return type(value) in RANKS


def compile_simple(spec: Mapping[str, Any]) -> Matcher | None:
    """Return a matcher equal to ``filter_applies(spec, doc)``, or None for another shape."""
    tests = _compile(spec)
    if tests is None:
        return None
    if not tests:
        return lambda doc: True
    fallback = dict(spec)

    def match(doc: Mapping[str, Any]) -> bool:
        for test in tests:
            verdict = test(doc)
            if verdict is None:
                return bool(filter_applies(fallback, doc))
            if not verdict:
                return False
        return True

    return match


DocTest = Callable[[Mapping[str, Any]], "bool | None"]


def _compile(spec: Any) -> list[DocTest] | None:
    if type(spec) is not dict:
        return None
    tests: list[DocTest] = []
    for key, condition in spec.items():
        if not isinstance(key, str):
            return None
        if key == "$comment":
            continue
        if key in LOGICAL:
            test = _logical(key, condition)
        elif key.startswith("$") or "." in key or not key:
            return None
        else:
            test = _field(key, condition)
        if test is None:
            return None
        tests.append(test)
    return tests


def _logical(operator_name: str, clauses: Any) -> DocTest | None:
    if type(clauses) is not list or not clauses:
        return None  # mongomock's own error for an empty or malformed list
    compiled = [_compile(clause) for clause in clauses]
    if any(c is None for c in compiled):
        return None
    groups: list[list[DocTest]] = [c for c in compiled if c is not None]

    def each(doc: Mapping[str, Any]) -> list[bool] | None:
        verdicts = []
        for group in groups:
            verdict: bool | None = True
            for test in group:
                verdict = test(doc)
                if not verdict:
                    break
            if verdict is None:
                return None
            verdicts.append(bool(verdict))
        return verdicts

    def combine(doc: Mapping[str, Any]) -> bool | None:
        verdicts = each(doc)
        if verdicts is None:
            return None
        if operator_name == "$and":
            return all(verdicts)
        if operator_name == "$or":
            return any(verdicts)
        return not any(verdicts)

    return combine


def _field(name: str, condition: Any) -> DocTest | None:
    if type(condition) is not dict:
        return _field_equal(name, condition) if _scalar(condition) else None
    tests = _condition(condition)
    if tests is None:
        return None
    on_value, on_list = tests

    def test(doc: Mapping[str, Any]) -> bool | None:
        value = doc.get(name, NOTHING)
        kind = type(value)
        if kind is list:
            return on_list(value)
        if value is not NOTHING and kind not in RANKS:
            return None  # a sub-document, binary, ...: mongomock's rules for those
        return on_value(value)

    return test


def _field_equal(name: str, query: Any) -> DocTest:
    """Return the test of plain equality to a scalar (mongomock's ``==``, ``in`` on an array).

    One closure, not one per case: the commonest condition, compiled for every query.
    """
    if query is None:
        return _field_null(name)
    if type(query) is ObjectId:
        return _field_object_id(name, query)

    def test(doc: Mapping[str, Any]) -> bool | None:
        value = doc.get(name, NOTHING)
        kind = type(value)
        if kind is list:
            return query in value
        if value is not NOTHING and kind not in RANKS:
            return None
        return bool(value == query)

    return test


def _field_null(name: str) -> DocTest:
    def test(doc: Mapping[str, Any]) -> bool | None:
        value = doc.get(name, NOTHING)
        kind = type(value)
        if kind is list:
            return None in value
        if value is NOTHING:
            return True
        if kind not in RANKS:
            return None
        return value is None  # == None for these types

    return test


def _field_object_id(name: str, query: ObjectId) -> DocTest:
    def test(doc: Mapping[str, Any]) -> bool | None:
        value = doc.get(name, NOTHING)
        kind = type(value)
        if kind is list:
            return query in value or str(query) in value  # mongomock matches the hex too
        if value is not NOTHING and kind not in RANKS:
            return None
        return bool(value == query)

    return test


ListTest = Callable[[list[Any]], "bool | None"]


def _condition(condition: dict[Any, Any]) -> tuple[FieldTest, ListTest] | None:
    """Return the tests of one field's operators: on a scalar or absent value, on an array."""
    if not condition:
        return None  # equality to an empty document
    for key in condition:  # a loop, not all(...): this runs for every condition compiled
        if not isinstance(key, str) or not key.startswith("$"):
            return None  # equality to a sub-document
    tests: list[tuple[FieldTest, ListTest]] = []
    for op, operand in condition.items():
        if op not in SUPPORTED:
            return None
        test = _operator(op, operand)
        if test is None:
            return None
        tests.append(test)
    if len(tests) == 1:
        return tests[0]
    on_values = [t[0] for t in tests]
    on_lists = [t[1] for t in tests]
    return (
        lambda value: all(test(value) for test in on_values),
        lambda values: _all_or_defer(on_lists, values),
    )


def _all_or_defer(tests: list[ListTest], values: list[Any]) -> bool | None:
    for test in tests:
        verdict = test(values)
        if not verdict:
            return verdict
    return True


def _equal(query: Any) -> FieldTest:
    if query is None:
        return lambda value: value is NOTHING or value == query
    return lambda value: bool(value == query)


def _operator(op: str, operand: Any) -> tuple[FieldTest, ListTest] | None:
    if op == "$exists":
        wanted = bool(operand)
        return (lambda value: (value is not NOTHING) == wanted), (lambda values: wanted)
    if op in ("$in", "$nin"):
        if type(operand) is not list:
            return None
        for member in operand:
            if type(member) not in RANKS:
                return None
        members = list(operand)
        has_null = None in members

        def among(value: Any) -> bool:
            return (value is NOTHING and has_null) or value in members

        def any_among(values: list[Any]) -> bool:
            return any(item in members for item in values)

        if op == "$in":
            return among, any_among
        return (lambda value: not among(value)), (lambda values: not any_among(values))
    if not _scalar(operand):
        return None
    if op == "$eq":
        return _equal(operand), (lambda values: any(item == operand for item in values))
    if op == "$ne":
        equal = _equal(operand)
        return (lambda value: not equal(value)), (
            lambda values: not any(item == operand for item in values)
        )
    return _ordered(ORDERED[op], operand)


def _ordered(compare: Callable[[Any, Any], bool], operand: Any) -> tuple[FieldTest, ListTest]:
    rank = RANKS[type(operand)]
    if rank == RANKS[type(None)]:
        same = compare(0, 0)

        def on_null(value: Any) -> bool:
            return value is not NOTHING and value is None and same

        return on_null, lambda values: _any_scalar(on_null, values)
    if type(operand) is float and math.isnan(operand):
        return (lambda value: False), (lambda values: _any_scalar(lambda v: False, values))

    def test(value: Any) -> bool:
        if value is NOTHING or RANKS[type(value)] != rank:
            return False
        return bool(compare(value, operand))

    return test, lambda values: _any_scalar(test, values)


def _any_scalar(test: FieldTest, values: list[Any]) -> bool | None:
    """Return whether an element passes ``test``; None (mongomock) if one is not a scalar."""
    if not all(type(item) in RANKS for item in values):
        return None
    return any(test(item) for item in values)
