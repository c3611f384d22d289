"""Query filters: ``$jsonSchema`` support and ``_id`` lookups without a scan.

mongomock's matcher refuses ``$jsonSchema``. Rather than patching it, a filter
that contains ``$jsonSchema`` (at the top level or inside ``$and``/``$or``/
``$nor``, where the server allows it) is split: the schema clauses are
evaluated by the compiled ``$jsonSchema`` engine and the rest by mongomock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from bson import ObjectId
from bson.regex import Regex

from nsn_store.embedded import _variables
from nsn_store.embedded._collation import Collation, folded, folded_filter
from nsn_store.embedded._match import compile_simple
from nsn_store.embedded._mongomock import (
    NOTHING,
    ExpressionParser,
    filter_applies,
    register_parse_expression,
)

Matcher = Callable[[Mapping[str, Any]], bool]
LOGICAL = ("$and", "$or", "$nor")


class _FilterExpressionParser(ExpressionParser):
    """mongomock's expression parser, with absent fields *missing* as on a server.

    A server evaluates ``"$a"`` on a document without ``a`` as missing: ``$eq``
    with a present value is false, ``$ne`` true, and missing sorts before every
    value (null included). mongomock raises ``KeyError`` out of the filter
    instead. Used for a filter's ``$expr`` only; pipelines keep mongomock's own
    handling (its ``$ifNull`` relies on it).
    """

    def _parse_basic_expression(self, expression: Any) -> Any:
        try:
            return super()._parse_basic_expression(expression)
        except KeyError:
            return NOTHING

    def _handle_comparison_operator(self, operator: str, values: Any) -> Any:
        a, b = self.parse(values[0]), self.parse(values[1])
        if a is not NOTHING and b is not NOTHING:
            return super()._handle_comparison_operator(operator, [{"$literal": a}, {"$literal": b}])
        order = (a is not NOTHING) - (b is not NOTHING)  # missing sorts first
        outcomes = {
            "$eq": order == 0,
            "$ne": order != 0,
            "$lt": order < 0,
            "$lte": order <= 0,
            "$gt": order > 0,
            "$gte": order >= 0,
        }
        if operator not in outcomes:
            return super()._handle_comparison_operator(operator, values)
        return outcomes[operator]


def _filter_expression(expression: Any, doc_dict: Any, ignore_missing_keys: bool = False) -> Any:
    return _FilterExpressionParser(doc_dict, ignore_missing_keys=ignore_missing_keys).parse(
        expression
    )


# mongomock's filters evaluate $expr through the function registered here.
register_parse_expression(_filter_expression)


def compile_filter(
    spec: Mapping[str, Any],
    *,
    collation: Collation | None = None,
    let: Mapping[str, Any] | None = None,
) -> Matcher:
    """Return a predicate for ``spec`` (mongomock semantics plus ``$jsonSchema``).

    ``let`` binds ``$$name`` in the filter's ``$expr`` (:mod:`._variables`);
    under ``collation`` strings compare by their collation keys on both sides
    (:mod:`._collation`).
    """
    if let:
        spec = _variables.in_filter(spec, let)
    if collation is not None:
        inner = compile_filter(folded_filter(collation, spec))
        return lambda doc: inner(folded(collation, doc))
    if not _mentions_schema(spec):
        return _plain(spec)
    return _compile_clause(spec)


def _plain(spec: Mapping[str, Any]) -> Matcher:
    """Return mongomock's verdict on ``spec``: compiled when its shape allows (:mod:`._match`)."""
    compiled = compile_simple(spec)
    if compiled is not None:
        return compiled
    return lambda doc: filter_applies(spec, doc)


def _mentions_schema(spec: Any) -> bool:
    if not isinstance(spec, Mapping):
        return False
    if "$jsonSchema" in spec:
        return True
    for op in LOGICAL:  # loops, not any(...): this runs for every filter
        clauses = spec.get(op)
        if isinstance(clauses, list):
            for clause in clauses:
                if _mentions_schema(clause):
                    return True
    return False


def _compile_clause(spec: Mapping[str, Any]) -> Matcher:
    parts: list[Matcher] = []
    rest: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "$jsonSchema":
            parts.append(_schema_matcher(value))
        elif key in LOGICAL and _mentions_schema({key: value}):
            parts.append(_logical(key, [compile_filter(clause) for clause in value]))
        else:
            rest[key] = value
    if rest:
        parts.append(_plain(rest))
    return lambda doc: all(part(doc) for part in parts)


def _logical(operator: str, clauses: list[Matcher]) -> Matcher:
    if operator == "$and":
        return lambda doc: all(c(doc) for c in clauses)
    if operator == "$or":
        return lambda doc: any(c(doc) for c in clauses)
    return lambda doc: not any(c(doc) for c in clauses)


def _schema_matcher(schema: Any) -> Matcher:
    from nsn_store.embedded.validator import compile_validator

    compiled = compile_validator({"$jsonSchema": schema}, context="query")
    return compiled.matches


def id_candidates(spec: Mapping[str, Any]) -> list[Any] | None:
    """Return the ``_id`` values ``spec`` is restricted to, or None if it is not.

    Only exact equality or ``$in`` on scalar values qualifies (possibly inside a
    top-level ``$and``); the rest of the filter is still applied to the
    candidates, so this never changes a result, only avoids a scan.
    """
    if "_id" in spec:
        found = _id_values(spec["_id"])
        if found is not None:
            return found
    for clause in spec.get("$and", ()) if isinstance(spec.get("$and"), list) else ():
        if isinstance(clause, Mapping):
            found = id_candidates(clause)
            if found is not None:
                return found
    return None


def _id_values(condition: Any) -> list[Any] | None:
    if isinstance(condition, Mapping):
        if len(condition) != 1:
            return None
        operator, value = next(iter(condition.items()))
        if operator == "$eq":
            return [value] if _hashable_scalar(value) else None
        if operator == "$in" and isinstance(value, (list, tuple)):
            for member in value:
                if not _hashable_scalar(member):
                    return None
            return list(value)
        return None
    return [condition] if _hashable_scalar(condition) else None


_ID_TYPES = frozenset({ObjectId, str, int})  # the usual _id types: hashable scalars


def _hashable_scalar(value: Any) -> bool:
    if type(value) in _ID_TYPES:
        return True
    if isinstance(value, (Mapping, list, tuple, re.Pattern, Regex)):
        return False
    try:
        hash(value)
    except TypeError:
        return False
    return True
