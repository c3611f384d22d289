"""``$inc`` and ``$mul`` with the server's argument checks and numeric type rules.

mongomock adds Python values: ``$inc`` by ``True`` is applied (a bool is not a
number to a server), a string raises a raw ``TypeError``, ``Int64(5) + 1``
becomes a plain int that is then stored as int32, and ``$mul`` is missing. A
server (``arithmetic_node.cpp``, ``safe_num.cpp``) refuses a non-numeric
argument when it parses the update (TypeMismatch, 14, "Cannot increment with
non-numeric argument"), refuses a non-numeric target while applying it (14),
and keeps the widest type of the two operands: int < long < double < decimal,
an int result that overflows becoming a long, a long that overflows an error.

:func:`resolve` turns each plain-path ``$inc``/``$mul`` into a ``$set`` of the
value the server would compute for one document, so mongomock only sets it.
Positional paths (``$``, ``$[]``, ``$[id]``) stay with mongomock for ``$inc``
and are refused for ``$mul``.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Mapping
from typing import Any

from bson import Decimal128, Int64
from pymongo.errors import WriteError

from nsn_store.embedded.roundtrip import BAD_VALUE, executor_error
from nsn_store.jsonschema._bsontypes import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    classify,
    to_decimal128,
)

TYPE_MISMATCH = 14
OPERATORS = {"$inc": "increment", "$mul": "multiply"}
# What apply_top_level applies itself ($setOnInsert: nothing, the document exists).
TOP_LEVEL = frozenset({"$set", "$unset", "$push", "$setOnInsert", *OPERATORS})
_RANK = {"int": 0, "long": 1, "double": 2, "decimal": 3}
_DECIMAL = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN, Emin=-6143, Emax=6144)
_MISSING = object()
_UNREACHABLE = object()  # the path crosses a scalar or an array by name: mongomock's errors


def check_arguments(update: Any) -> None:
    """Refuse a non-numeric ``$inc``/``$mul`` argument before anything matches (code 14)."""
    if not _is_mapping(update) or ("$inc" not in update and "$mul" not in update):
        return
    for operator, verb in OPERATORS.items():
        fields = update.get(operator)
        if not _is_mapping(fields):
            continue
        for field, value in fields.items():
            if classify(value) not in _RANK:
                message = f"Cannot {verb} with non-numeric argument: {{{field}: {shell(value)}}}"
                raise WriteError(
                    message, TYPE_MISMATCH, {"index": 0, "code": TYPE_MISMATCH, "errmsg": message}
                )


def resolve(update: Any, document: Mapping[str, Any]) -> Any:
    """Return ``update`` with plain-path ``$inc``/``$mul`` computed into ``$set``.

    The results are computed for ``document`` (the document being updated).
    """
    if not _is_mapping(update) or ("$inc" not in update and "$mul" not in update):
        return update
    rewritten = dict(update)
    assigned = dict(rewritten.get("$set") or {})
    for operator in OPERATORS:
        fields = rewritten.pop(operator, None)
        if not fields:
            continue
        kept = {}
        for path, operand in fields.items():
            current = _UNREACHABLE if _positional(path) else _value_at(document, path)
            if current is _UNREACHABLE or path in assigned:
                if operator == "$mul" and current is _UNREACHABLE:
                    raise NotImplementedError(
                        f"$mul on the path {path!r} is not supported by the embedded database"
                    )
                kept[path] = operand  # left to mongomock, with its errors for conflicts
                continue
            assigned[path] = _apply(operator, current, operand, path, document)
        if kept:
            rewritten[operator] = kept
    if assigned:
        rewritten["$set"] = assigned
    return rewritten


def apply_top_level(update: Any, document: Mapping[str, Any], target: dict[str, Any]) -> bool:
    """Apply an update of ``$set``/``$unset``/``$inc``/``$mul``/``$push`` on top-level fields.

    ``target`` is a shallow copy of ``document`` (an existing document: a
    ``$setOnInsert`` does nothing). A ``$set`` field keeps its place or comes
    last, an ``$unset`` one goes; ``$push`` appends (``$each`` and ``$slice``
    as mongomock applies them) to a new list; the values are copied by the BSON
    round trip that follows. Returns False (touching nothing) for any other
    update (see :func:`top_level`), which then goes through :func:`resolve`
    and mongomock. This is the hot path of the scheduler's and counters' writes.
    """
    if not top_level(update, document):
        return False
    # The order mongomock applies them in: $inc/$mul as the $set resolve() makes of them.
    for operator, fields in resolve(update, document).items():
        for path, operand in fields.items():
            if operator == "$set":
                target[path] = operand
            elif operator == "$unset":
                target.pop(path, None)
            elif operator == "$push":
                target[path] = _pushed(document.get(path, _MISSING), operand)
    return True


def top_level(update: Any, document: Mapping[str, Any]) -> bool:
    """Tell whether :func:`apply_top_level` applies ``update`` to ``document``.

    Only top-level fields, each named once, by the operators of
    :data:`TOP_LEVEL`; a ``$push`` only onto an array (or a missing field)
    with no modifier but ``$each``/``$slice``. Anything else is mongomock's.
    """
    if (
        type(update) is not dict
        or not update
        or any(
            op not in TOP_LEVEL or type(fields) is not dict or not fields
            for op, fields in update.items()
        )
    ):
        return False
    paths = [path for fields in update.values() for path in fields]
    if len(set(paths)) != len(paths) or not all(_plain_path(p) for p in paths):
        return False
    pushes = update.get("$push", {})
    return all(_pushable(document.get(path, _MISSING), pushes[path]) for path in pushes)


def _pushable(current: Any, operand: Any) -> bool:
    """Tell whether :func:`_pushed` applies this ``$push`` exactly as mongomock would."""
    if current is not _MISSING and type(current) is not list:
        return False
    if not _is_mapping(operand) or not any(str(k).startswith("$") for k in operand):
        return True  # a value (a sub-document included) is appended as it is
    if set(operand) - {"$each", "$slice"} or "$each" not in operand:
        return False
    return isinstance(operand["$each"], list) and type(operand.get("$slice", 0)) is int


def appended(operand: Any) -> int:
    """Return how many elements a ``$push`` operand that :func:`top_level` accepts appends."""
    return len(operand["$each"]) if _pushes_each(operand) else 1


def _pushes_each(operand: Any) -> bool:
    return _is_mapping(operand) and "$each" in operand


def _pushed(current: Any, operand: Any) -> list[Any]:
    values = [] if current is _MISSING else list(current)
    if not _pushes_each(operand):
        return [*values, operand]
    values += operand["$each"]
    if "$slice" in operand:
        size = operand["$slice"]
        values = values[size:] if size < 0 else values[:size]
    return values


def _plain_path(path: Any) -> bool:
    return (
        type(path) is str
        and bool(path)
        and "." not in path
        and "$" not in path
        and ("\x00" not in path)
    )


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the exact check first: it is cheap


def _positional(path: str) -> bool:
    return "$" in path and any(part == "$" or part.startswith("$[") for part in path.split("."))


def _value_at(document: Any, path: str) -> Any:
    current = document
    for part in path.split("."):
        if _is_mapping(current):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit():
            current = current[int(part)] if int(part) < len(current) else _MISSING
        else:
            return _UNREACHABLE
        if current is _MISSING:
            return _MISSING
    return current


def _apply(
    operator: str, current: Any, operand: Any, path: str, document: Mapping[str, Any]
) -> Any:
    if current is _MISSING:
        return operand if operator == "$inc" else _zero_like(operand)
    kind = classify(current)
    if kind not in _RANK:
        raise executor_error(
            f"Cannot apply {operator} to a value of non-numeric type. "
            f"{{_id: {shell(document.get('_id'))}}} has the field '{path.split('.')[-1]}' "
            f"of non-numeric type {kind}",
            TYPE_MISMATCH,
        )
    result = _compute(operator, current, operand)
    if result is None:
        raise executor_error(
            f"Failed to apply {operator} operations to current value ({shell(current)}) "
            f"for document {{_id: {shell(document.get('_id'))}}}",
            BAD_VALUE,
        )
    return result


def _zero_like(operand: Any) -> Any:
    zeros: dict[str | None, Any] = {"int": 0, "long": Int64(0), "double": 0.0}
    return zeros.get(classify(operand), Decimal128("0"))


def _compute(operator: str, a: Any, b: Any) -> Any:
    """Return ``a op b`` in the wider BSON type, or None when a long overflows."""
    kind = max(classify(a), classify(b), key=lambda k: _RANK[str(k)])
    if kind == "decimal":
        x, y = to_decimal128(a), to_decimal128(b)
        value = _DECIMAL.add(x, y) if operator == "$inc" else _DECIMAL.multiply(x, y)
        return Decimal128(value)
    if kind == "double":
        return float(a) + float(b) if operator == "$inc" else float(a) * float(b)
    exact = int(a) + int(b) if operator == "$inc" else int(a) * int(b)
    if kind == "int" and INT32_MIN <= exact <= INT32_MAX:
        return exact
    if INT64_MIN <= exact <= INT64_MAX:
        return Int64(exact)  # an int that overflows becomes a long, as on a server
    return None


def shell(value: Any) -> str:
    """Return ``value`` roughly as the server prints a BSON value in an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Int64):
        return f"{int(value)}"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {shell(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list):
        return "[ " + ", ".join(shell(v) for v in value) + " ]" if value else "[]"
    return repr(value) if not isinstance(value, (int, float)) else str(value)
