"""``let``: variables a command defines for its expressions (``$$name``), as a server binds them.

``find``, ``aggregate``, the updates, deletes, ``findAndModify`` and
``bulk_write`` take ``let`` (MongoDB manual, "let option"): each name becomes a
variable that ``$expr`` in the filter and the expressions of a pipeline (an
aggregation or a pipeline update) read as ``$$name``. mongomock ignores it.
Here the names and values are checked as a server checks them and every
reference is replaced by ``{$literal: value}`` before mongomock evaluates the
expression, so ``$$name`` means the bound value wherever an expression reads
it, and a string ``"$$name"`` outside an expression stays a string.

A value that is an expression is evaluated once, against no document, as a
server evaluates it. Refused with NotImplementedError: an inner
``$let``/``$map``/``$filter``/``$reduce``/``$lookup`` that rebinds a ``let``
name (the inner binding would have to shadow it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pymongo.common import validate_is_mapping
from pymongo.errors import OperationFailure

from nsn_store.embedded import _mongomock

FAILED_TO_PARSE = 9
UNDEFINED_VARIABLE = 17276
USER_NAME = re.compile(r"[a-z\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*")
LOGICAL = ("$and", "$or", "$nor")
BINDERS = ("$let", "$map", "$filter", "$reduce", "$lookup")
# Pipeline stages whose body is a filter (only its $expr holds expressions).
FILTER_STAGES = ("$match",)


def check(let: Any) -> dict[str, Any] | None:
    """Return the variables ``let`` binds (None for no ``let``), or raise as a server does."""
    if let is None:
        return None
    validate_is_mapping("let", let)  # PyMongo's client-side check
    variables: dict[str, Any] = {}
    for name, value in let.items():
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            message = f"'{name}' starts with an invalid character for a user variable name"
            details = {"ok": 0.0, "errmsg": message, "code": FAILED_TO_PARSE}
            raise OperationFailure(
                message, FAILED_TO_PARSE, {**details, "codeName": "FailedToParse"}
            )
        variables[name] = _constant(name, value)
    return variables


def _constant(name: str, value: Any) -> Any:
    """Evaluate a ``let`` value once, against no document, as a server does."""
    if not _is_expression(value):
        return value
    try:
        return _mongomock.ExpressionParser({}, ignore_missing_keys=False).parse(value)
    except KeyError:
        message = f"let variable {name!r} reads a field: Use of undefined variable: CURRENT"
        raise OperationFailure(
            message, UNDEFINED_VARIABLE, {"ok": 0.0, "errmsg": message, "code": UNDEFINED_VARIABLE}
        ) from None


def _is_expression(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("$")
    if isinstance(value, Mapping):
        return any(str(k).startswith("$") for k in value) or any(
            _is_expression(v) for v in value.values()
        )
    if isinstance(value, list):
        return any(_is_expression(v) for v in value)
    return False


def in_filter(spec: Mapping[str, Any], variables: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return ``spec`` with ``$$name`` bound inside its ``$expr`` clauses."""
    if not variables:
        return spec
    bound: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "$expr":
            bound[key] = in_expression(value, variables)
        elif key in LOGICAL and isinstance(value, list):
            bound[key] = [
                in_filter(clause, variables) if isinstance(clause, Mapping) else clause
                for clause in value
            ]
        else:
            bound[key] = value
    return bound


def in_pipeline(stages: Any, variables: Mapping[str, Any] | None) -> Any:
    """Return the pipeline ``stages`` with ``$$name`` bound in every expression."""
    if not variables or not isinstance(stages, list):
        return stages
    bound = []
    for stage in stages:
        if isinstance(stage, Mapping) and len(stage) == 1:
            name, body = next(iter(stage.items()))
            if name in FILTER_STAGES and isinstance(body, Mapping):
                bound.append({name: in_filter(body, variables)})
                continue
        bound.append(in_expression(stage, variables))
    return bound


def in_expression(expression: Any, variables: Mapping[str, Any]) -> Any:
    """Return ``expression`` with each ``$$name`` (or ``$$name.path``) as a ``$literal``."""
    if isinstance(expression, str):
        return _reference(expression, variables)
    if isinstance(expression, list):
        return [in_expression(item, variables) for item in expression]
    if not isinstance(expression, Mapping):
        return expression
    if list(expression) == ["$literal"]:
        return expression
    for binder in BINDERS:
        if binder in expression:
            _refuse_shadowing(binder, expression[binder], variables)
    return {key: in_expression(value, variables) for key, value in expression.items()}


def _reference(text: str, variables: Mapping[str, Any]) -> Any:
    if not text.startswith("$$"):
        return text
    name, _, path = text[2:].partition(".")
    if name not in variables:
        return text
    value = variables[name]
    for part in path.split(".") if path else ():
        value = value.get(part) if isinstance(value, Mapping) else None
    return {"$literal": value}


def _refuse_shadowing(binder: str, body: Any, variables: Mapping[str, Any]) -> None:
    if not isinstance(body, Mapping):
        return
    names = set(body.get("vars") or {}) | set(body.get("let") or {})
    for key in ("as",):
        if isinstance(body.get(key), str):
            names.add(body[key])
    if binder == "$reduce":
        names |= {"this", "value"}
    if binder in ("$map", "$filter") and "as" not in body:
        names.add("this")
    shadowed = sorted(names & set(variables))
    if shadowed:
        raise NotImplementedError(
            f"{binder} rebinding the let variable {shadowed[0]!r} is not supported by the "
            "embedded database"
        )
