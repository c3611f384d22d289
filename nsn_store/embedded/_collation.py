"""Collation on the embedded database: string comparison as a server's ICU does it, where exact.

A server compares strings under a collation (MongoDB manual, "Collation"):
``{locale: "en", strength: 2}`` makes ``"PING"`` equal ``"ping"``. The
embedded database implements the cases it can reproduce exactly and refuses
the rest with ``NotImplementedError`` naming what is missing, so a result is
never silently compared the binary way:

- locales: ``simple`` (binary comparison, as without a collation) and English
  (``en``, ``en_US``, ...), whose table is ICU's root collation;
- options: ``strength`` 1 to 5 and the other options at their defaults
  (``caseLevel``, ``numericOrdering``, ``backwards``: false; ``caseFirst``:
  off; ``alternate``: non-ignorable; ``normalization`` either way);
- equality (``$eq``, ``$ne``, ``$in``, ``$nin``, ``$all``, ``$elemMatch``,
  ``distinct``'s duplicates) compares collation keys: at strength 1 letters
  without case or accents, at 2 without case, from 3 up canonically
  equivalent text (:func:`key`);
- order (sorts, ``$gt``-style bounds, ``distinct``'s order) only between
  strings of ASCII letters, digits and spaces, where ICU's root order is
  alphabetical ignoring case (then lowercase first at strength 3 and up);
  other strings in an ordered comparison are refused;
- regular expressions and ``$expr`` (which a server evaluates with their own
  rules) are refused in a filter with a collation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bson.regex import Regex
from pymongo.collation import Collation as PyMongoCollation
from pymongo.errors import OperationFailure

BAD_VALUE = 2
MISSING_FIELD = 40414
UNKNOWN_FIELD = 40415
FIELDS = (
    "locale",
    "caseLevel",
    "caseFirst",
    "strength",
    "numericOrdering",
    "alternate",
    "maxVariable",
    "normalization",
    "backwards",
    "version",
)
DEFAULTS: dict[str, Any] = {
    "caseLevel": False,
    "caseFirst": "off",
    "numericOrdering": False,
    "alternate": "non-ignorable",
    "backwards": False,
}
ORDERABLE = re.compile(r"[A-Za-z0-9 ]*")
RANGE_OPERATORS = ("$gt", "$gte", "$lt", "$lte")


@dataclass(frozen=True)
class Collation:
    """A non-simple collation the embedded database implements (English, ICU root order)."""

    locale: str
    strength: int

    def key(self, text: str) -> str:
        """Return the string that is equal for exactly the strings this collation equates."""
        decomposed = unicodedata.normalize("NFD", text)
        if self.strength >= 3:
            return decomposed
        folded = unicodedata.normalize("NFD", decomposed.casefold())
        if self.strength == 2:
            return folded
        return "".join(c for c in folded if not unicodedata.combining(c))

    def order(self, text: str) -> str:
        """Return a string whose binary order is this collation's order of ``text``.

        Only ASCII letters, digits and spaces: there ICU's root order compares
        the letters ignoring case first, then (strength 3 and up) puts
        lowercase before uppercase.
        """
        if not ORDERABLE.fullmatch(text):
            raise NotImplementedError(
                f"ordering the string {text!r} under a collation is not supported by the "
                "embedded database (only ASCII letters, digits and spaces are ordered as ICU does)"
            )
        if self.strength < 3:
            return text.lower()
        return text.lower() + "\x00" + "".join("1" if c.isupper() else "0" for c in text)


def parse(value: Any) -> Collation | None:
    """Return the collation ``value`` asks for; None for binary comparison (none or simple).

    Raises TypeError as PyMongo does for a value of the wrong type,
    OperationFailure as a server does for an invalid document, and
    NotImplementedError for a valid collation the embedded database lacks.
    """
    if value is None:
        return None
    if isinstance(value, PyMongoCollation):
        value = value.document
    if not isinstance(value, Mapping):
        raise TypeError("collation must be a dict, an instance of collation.Collation, or None")
    for name in value:
        if name not in FIELDS:
            raise _fail(f"BSON field 'collation.{name}' is an unknown field.", UNKNOWN_FIELD)
    locale = value.get("locale")
    if locale is None:
        raise _fail("BSON field 'collation.locale' is missing but a required field", MISSING_FIELD)
    if not isinstance(locale, str):
        raise _fail("BSON field 'collation.locale' must be a string", 14)
    if locale == "simple":
        if len(value) > 1:
            raise _fail("If 'locale' is set to 'simple', then all other fields must be empty")
        return None
    strength = value.get("strength", 3)
    if isinstance(strength, bool) or strength not in (1, 2, 3, 4, 5):
        raise _fail("Field 'strength' must be an integer 1 through 5.")
    if locale.split("_")[0].split("@")[0] != "en":
        raise NotImplementedError(
            f"collation locale {locale!r} is not supported by the embedded database "
            "(only 'simple' and English)"
        )
    for name, default in DEFAULTS.items():
        if name in value and value[name] != default:
            raise NotImplementedError(
                f"collation option {name}={value[name]!r} is not supported by the embedded database"
            )
    return Collation(locale, int(strength))


def _fail(message: str, code: int = BAD_VALUE) -> OperationFailure:
    names = {BAD_VALUE: "BadValue", MISSING_FIELD: "Location40414", UNKNOWN_FIELD: "Location40415"}
    details = {"ok": 0.0, "errmsg": message, "code": code, "codeName": names.get(code, "")}
    return OperationFailure(message, code, details)


def folded(collation: Collation, value: Any) -> Any:
    """Return ``value`` with every string replaced by its collation key (documents, arrays)."""
    if isinstance(value, str) and type(value) is str:
        return collation.key(value)
    if isinstance(value, Mapping):
        return {k: folded(collation, v) for k, v in value.items()}
    if isinstance(value, list):
        return [folded(collation, v) for v in value]
    return value


COMPARED = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$all")
LOGICAL = ("$and", "$or", "$nor")
REFUSED = ("$regex", "$expr", "$where", "$text", "$jsonSchema")


def folded_filter(collation: Collation, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``spec`` with the strings it compares as collation keys (see :func:`folded`).

    Only compared values fold: ``$type`` names, ``$exists`` and the like stay.
    Raises NotImplementedError for a regular expression, ``$expr``,
    ``$jsonSchema`` or a string bound of a range.
    """
    result: dict[str, Any] = {}
    for key, value in spec.items():
        if key in LOGICAL and isinstance(value, list):
            result[key] = [
                folded_filter(collation, c) if isinstance(c, Mapping) else c for c in value
            ]
        elif key in REFUSED:
            raise _refused(key)
        elif str(key).startswith("$"):
            result[key] = value
        else:
            result[key] = _condition(collation, value)
    return result


def _condition(collation: Collation, condition: Any) -> Any:
    if not (
        isinstance(condition, Mapping)
        and condition
        and all(str(k).startswith("$") for k in condition)
    ):
        _refuse_regex(condition)
        return folded(collation, condition)
    result: dict[str, Any] = {}
    for operator, operand in condition.items():
        if operator in REFUSED:
            raise _refused(operator)
        _refuse_regex(operand)
        if operator in RANGE_OPERATORS and _has_string(operand):
            raise NotImplementedError(
                f"{operator} on a string with a collation is not supported by the embedded database"
            )
        if operator in COMPARED:
            result[operator] = folded(collation, operand)
        elif operator == "$elemMatch" and isinstance(operand, Mapping):
            plain = any(not str(k).startswith("$") or k in LOGICAL for k in operand)
            result[operator] = (
                folded_filter(collation, operand) if plain else _condition(collation, operand)
            )
        elif operator == "$not":
            result[operator] = _condition(collation, operand)
        else:
            result[operator] = operand
    return result


def _has_string(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, Mapping):
        return any(_has_string(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_string(v) for v in value)
    return False


def _refuse_regex(value: Any) -> None:
    if isinstance(value, (re.Pattern, Regex)) or (
        isinstance(value, list) and any(isinstance(v, (re.Pattern, Regex)) for v in value)
    ):
        raise _refused("a regular expression")


def _refused(what: str) -> NotImplementedError:
    return NotImplementedError(
        f"{what} in a filter with a collation is not supported by the embedded database"
    )


def sort_key(collation: Collation | None, value: Any) -> Any:
    """Return what a sort compares for ``value`` under ``collation`` (strings by ICU order)."""
    if collation is None:
        return value
    if isinstance(value, str):
        return collation.order(value)
    if isinstance(value, Mapping):
        return {k: sort_key(collation, v) for k, v in value.items()}
    if isinstance(value, list):
        return [sort_key(collation, v) for v in value]
    return value
