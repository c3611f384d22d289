"""Parse-time checks and the error they raise, shared by the ``$jsonSchema`` parser.

Codes come from the server's ``error_codes.yml``; messages follow the server's
parser closely enough to recognise, but callers should match on the code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from nsn_store.jsonschema._bsontypes import INT64_MAX, NUMERIC_ALIASES, classify, number_value

__all__ = [
    "BAD_VALUE",
    "FAILED_TO_PARSE",
    "QUERY_FEATURE_NOT_ALLOWED",
    "TYPE_MISMATCH",
    "SchemaParseError",
    "compile_pattern",
    "is_array",
    "is_object",
    "non_negative_integer",
    "require_bool",
    "type_name",
]

BAD_VALUE = 2
FAILED_TO_PARSE = 9
TYPE_MISMATCH = 14
QUERY_FEATURE_NOT_ALLOWED = 224

#: Server code names, for the ``codeName`` field of the error reply.
CODE_NAMES: Mapping[int, str] = {
    BAD_VALUE: "BadValue",
    FAILED_TO_PARSE: "FailedToParse",
    TYPE_MISMATCH: "TypeMismatch",
    QUERY_FEATURE_NOT_ALLOWED: "QueryFeatureNotAllowed",
    51091: "Location51091",
}


class SchemaParseError(Exception):
    """A validator or ``$jsonSchema`` the server would refuse; carries its code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_object(value: Any) -> bool:
    """Tell whether ``value`` is a BSON object (embedded document)."""
    return classify(value) == "object"


def is_array(value: Any) -> bool:
    """Tell whether ``value`` is a BSON array."""
    return isinstance(value, (list, tuple))


def type_name(value: Any) -> str:
    """Name the BSON type of ``value`` the way server messages do."""
    return classify(value) or type(value).__name__


def require_bool(keyword: str, value: Any) -> bool:
    """Return ``value`` if it is a boolean; TypeMismatch otherwise (``1`` is not a bool)."""
    if not isinstance(value, bool):
        raise SchemaParseError(TYPE_MISMATCH, f"$jsonSchema keyword '{keyword}' must be a boolean")
    return value


def non_negative_integer(keyword: str, value: Any) -> int:
    """Check a length or count keyword: an integral, non-negative number within a long."""
    shown = f"{keyword}: {value!r}"
    if classify(value) not in NUMERIC_ALIASES:
        raise SchemaParseError(FAILED_TO_PARSE, f"Expected a number in: {shown}")
    number: int | float | Decimal = number_value(value)
    if isinstance(number, (float, Decimal)):
        if math.isnan(number):
            raise SchemaParseError(
                FAILED_TO_PARSE, f"Expected an integer, but found NaN in: {shown}"
            )
        if not math.isfinite(number) or number != int(number):
            raise SchemaParseError(FAILED_TO_PARSE, f"Expected an integer: {shown}")
        if abs(int(number)) > INT64_MAX:
            raise SchemaParseError(
                FAILED_TO_PARSE, f"Cannot represent as a 64-bit integer: {shown}"
            )
    if number < 0:
        raise SchemaParseError(FAILED_TO_PARSE, f"Expected a non-negative number in: {shown}")
    return int(number)


def compile_pattern(source: str, *, code: int, message: str) -> re.Pattern[str]:
    """Compile a server regex as Python's closest analogue (ASCII ``\\w``, no flags)."""
    try:
        return re.compile(source, re.ASCII)
    except re.error as exc:
        raise SchemaParseError(code, f"{message}: {exc}") from None
