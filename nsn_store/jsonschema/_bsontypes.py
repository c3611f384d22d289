"""Classify Python values as BSON types and compare them the way MongoDB does.

mongomock stores raw Python objects, so the embedded database must decide the
BSON type of a value from its Python type, exactly as pymongo's encoder would
(MongoDB manual, BSON Types: https://www.mongodb.com/docs/manual/reference/bson-types/):
``bool`` before ``int`` (a bool is never a number), ``int`` as int32 or long by
range, ``bson.Int64`` always long,
``bson.Code`` before ``str``. Equality follows the server's unordered-field
comparator used by ``enum`` and ``uniqueItems`` (the server's
``UnorderedFieldsBSONObjComparator``): numbers compare
by value across int/long/double/decimal, object field order is ignored (at
every depth), arrays are ordered, strings compare binary.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bson import (
    Binary,
    Code,
    DBRef,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)
from bson.datetime_ms import DatetimeMS

__all__ = [
    "BSON_ALIASES",
    "JSON_TYPE_ALIASES",
    "NUMERIC_ALIASES",
    "as_mapping",
    "bson_equal",
    "bson_type",
    "classify",
    "is_number",
    "number_value",
    "to_decimal128",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: The ``$type`` string aliases accepted by ``bsonType`` (``number`` is handled apart).
BSON_ALIASES: frozenset[str] = frozenset(
    {
        "double", "string", "object", "array", "binData", "undefined", "objectId",
        "bool", "date", "null", "regex", "dbPointer", "javascript", "symbol",
        "javascriptWithScope", "int", "timestamp", "long", "decimal", "minKey", "maxKey",
    }
)  # fmt: skip

#: The JSON type names accepted by ``type``, mapped to BSON aliases.
JSON_TYPE_ALIASES: Mapping[str, str] = {
    "object": "object",
    "array": "array",
    "boolean": "bool",
    "string": "string",
    "null": "null",
    "number": "number",
}

#: The BSON aliases the pseudo-alias ``number`` stands for.
NUMERIC_ALIASES: frozenset[str] = frozenset({"int", "long", "double", "decimal"})

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _classify_int(value: int) -> str | None:
    if INT32_MIN <= value <= INT32_MAX:
        return "int"
    if INT64_MIN <= value <= INT64_MAX:
        return "long"
    return None  # pymongo raises OverflowError: the value can never be stored


# Order matters: the first matching Python type wins, as in pymongo's encoder.
_SIMPLE: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "bool"),
    (Int64, "long"),
    (float, "double"),
    (Decimal128, "decimal"),
    (ObjectId, "objectId"),
    ((_dt.datetime, DatetimeMS), "date"),
    ((Regex, re.Pattern), "regex"),
    ((Binary, bytes), "binData"),
    (Timestamp, "timestamp"),
    (MinKey, "minKey"),
    (MaxKey, "maxKey"),
    (DBRef, "object"),
    (Mapping, "object"),
    ((list, tuple), "array"),
)


#: Exact Python types with a fixed alias: a dict lookup before the isinstance walk.
_EXACT: dict[type, str] = {
    type(None): "null", bool: "bool", float: "double", str: "string", dict: "object",
    list: "array", tuple: "array", Int64: "long", Decimal128: "decimal", ObjectId: "objectId",
    _dt.datetime: "date", bytes: "binData", Binary: "binData", Regex: "regex",
    Timestamp: "timestamp",
}  # fmt: skip


def classify(value: Any) -> str | None:
    """Return the BSON alias of ``value``, or None when pymongo could not encode it."""
    alias = _EXACT.get(type(value))
    if alias is not None:
        return alias
    if type(value) is int:
        return _classify_int(value)
    if value is None:
        return "null"
    if isinstance(value, Code):  # a str subclass: must be tested before str
        return "javascript" if value.scope is None else "javascriptWithScope"
    if isinstance(value, str):
        return "string"
    for kind, alias in _SIMPLE:
        if isinstance(value, kind):
            return alias
    if isinstance(value, int):
        return _classify_int(value)
    return None


def as_mapping(value: Any) -> Mapping[str, Any]:
    """Return an object value as a mapping (a DBRef is stored as its document)."""
    return value.as_doc() if isinstance(value, DBRef) else value


def bson_type(value: Any) -> str:
    """Return the BSON type alias (``"int"``, ``"long"``, ``"bool"``...) of a Python value.

    Raises TypeError for values pymongo cannot encode (``decimal.Decimal``,
    ``datetime.date``, native ``uuid.UUID``, ints beyond 64 bits...).
    """
    alias = classify(value)
    if alias is None:
        raise TypeError(f"{type(value).__name__} value {value!r} has no BSON type")
    return alias


def is_number(value: Any) -> bool:
    """Tell whether ``value`` is a BSON number (int, long, double or decimal)."""
    return classify(value) in NUMERIC_ALIASES


def number_value(value: Any) -> int | float | Decimal:
    """Return a Python number with the exact value of a BSON number."""
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, (int, float)):
        return value
    raise TypeError(f"{value!r} is not a BSON number")


def to_decimal128(value: Any) -> Decimal:
    """Convert a BSON number to Decimal as the server converts it to Decimal128."""
    number = number_value(value)
    if isinstance(number, float):
        # The server converts a double to Decimal128 at 15 significant digits.
        return Decimal(format(number, ".15g")) if math.isfinite(number) else Decimal(str(number))
    return Decimal(number)


def is_nan(value: float | Decimal) -> bool:
    """Tell whether a number from :func:`number_value` is NaN."""
    return isinstance(value, (float, Decimal)) and math.isnan(value)


def _numbers_equal(a: Any, b: Any) -> bool:
    x, y = number_value(a), number_value(b)
    if is_nan(x) or is_nan(y):
        return is_nan(x) and is_nan(y)  # the server orders NaN equal to NaN
    return bool(x == y)


def date_millis(value: _dt.datetime | DatetimeMS) -> int:
    """Return the UTC milliseconds since the epoch that pymongo would store."""
    if isinstance(value, DatetimeMS):
        return int(value)
    aware = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
    return (aware - _EPOCH) // _dt.timedelta(milliseconds=1)


def _regex_parts(value: Regex[Any] | re.Pattern[Any]) -> tuple[Any, int]:
    regex = Regex.from_native(value) if isinstance(value, re.Pattern) else value
    flags = regex.flags
    if isinstance(flags, str):
        flags = Regex(regex.pattern, flags).flags
    return regex.pattern, int(flags)


def _binary_parts(value: bytes) -> tuple[int, bytes]:
    subtype = value.subtype if isinstance(value, Binary) else 0
    return subtype, bytes(value)


def _objects_equal(a: Any, b: Any) -> bool:
    a, b = as_mapping(a), as_mapping(b)
    if len(a) != len(b) or set(a) != set(b):
        return False
    return all(bson_equal(a[key], b[key]) for key in a)


def _same_type_equal(alias: str, a: Any, b: Any) -> bool:
    if alias == "object":
        return _objects_equal(a, b)
    if alias == "array":
        return len(a) == len(b) and all(bson_equal(x, y) for x, y in zip(a, b, strict=False))
    if alias == "date":
        return date_millis(a) == date_millis(b)
    if alias == "regex":
        return _regex_parts(a) == _regex_parts(b)
    if alias == "binData":
        return _binary_parts(a) == _binary_parts(b)
    if alias in ("null", "minKey", "maxKey"):
        return True
    return bool(a == b)


def bson_equal(a: Any, b: Any) -> bool:
    """Compare two values as whole BSON values, as ``enum`` and ``uniqueItems`` do.

    Numbers compare by value across types (``1 == 1.0 == Int64(1)``), objects
    ignore field order, arrays are ordered, ``True`` is not ``1``, and values of
    different BSON types are never equal.
    """
    alias_a, alias_b = classify(a), classify(b)
    if alias_a in NUMERIC_ALIASES and alias_b in NUMERIC_ALIASES:
        return _numbers_equal(a, b)
    if alias_a != alias_b or alias_a is None:
        return False
    return _same_type_equal(alias_a, a, b)
