"""Aggregation expressions mongomock 4.3 lacks that CRUD operations use.

- ``$getField``, ``$setField``, ``$unsetField`` (MongoDB 5.0; manual,
  "$setField"): read, add or remove a field by a name that may start with
  ``$`` or hold dots, which is how a pipeline update writes such field names.
  ``value: "$$REMOVE"`` removes the field, as on a server. A missing or null
  ``input`` gives null (``$getField`` on a missing field: missing); an input
  that is not a document is the server's error (codes 3041705, 4161105).
- ``$rand``: a double in [0, 1), a fresh one each time it is evaluated.

:func:`install` wraps mongomock's expression parser once (every parser,
filters' ``$expr`` included, inherits it), as :mod:`._stages` does for its own
operators; each wrapper handles its operators and hands the rest on.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from nsn_store.embedded import _mongomock
from nsn_store.embedded.options import fail

REMOVE = "$$REMOVE"
OPERATORS = ("$getField", "$setField", "$unsetField", "$rand")
_rng = random.SystemRandom()


def evaluate(parser: Any, operator: str, spec: Any) -> Any:
    """Evaluate one of :data:`OPERATORS` with ``parser`` (a mongomock ``_Parser``)."""
    if operator == "$rand":
        if spec != {}:
            raise fail("$rand does not currently accept arguments", 3040501, "Location3040501")
        return _rng.random()
    if operator == "$getField":
        return _get_field(parser, spec)
    if not isinstance(spec, Mapping):
        raise fail(
            f"{operator} only supports an object as its argument", 4161100, "Location4161100"
        )
    value = REMOVE if operator == "$unsetField" else spec.get("value", REMOVE)
    return _set_field(parser, operator, spec, value)


def _field_name(parser: Any, operator: str, spec: Mapping[str, Any]) -> str:
    if "field" not in spec:
        raise fail(f"{operator} requires 'field' to be specified", 4161102, "Location4161102")
    name = parser.parse(spec["field"])
    if not isinstance(name, str):
        raise fail(
            f"{operator} requires 'field' to evaluate to type String", 4161106, "Location4161106"
        )
    return name


def _input(parser: Any, spec: Mapping[str, Any], default: str) -> Any:
    try:
        return parser.parse(spec.get("input", default))
    except KeyError:
        return None  # a missing input


def _get_field(parser: Any, spec: Any) -> Any:
    if not isinstance(spec, Mapping) or "field" not in spec:
        spec = {"field": spec}
    name = _field_name(parser, "$getField", spec)
    source = _input(parser, spec, "$$CURRENT")
    if source is None:
        return None
    if not isinstance(source, Mapping):
        raise fail(
            "$getField requires 'input' to evaluate to type Object", 3041705, "Location3041705"
        )
    if name not in source:
        raise KeyError(name)  # missing, as mongomock's parser signals it
    return source[name]


def _set_field(parser: Any, operator: str, spec: Mapping[str, Any], value: Any) -> Any:
    name = _field_name(parser, operator, spec)
    if "input" not in spec:
        raise fail(f"{operator} requires 'input' to be specified", 4161103, "Location4161103")
    source = _input(parser, spec, "$$CURRENT")
    if source is None:
        return None
    if not isinstance(source, Mapping):
        raise fail(
            f"{operator} requires 'input' to evaluate to type Object", 4161105, "Location4161105"
        )
    result = dict(source)
    if value == REMOVE:
        result.pop(name, None)
        return result
    try:
        result[name] = parser.parse(value)
    except KeyError:
        result.pop(name, None)  # a missing value removes the field
    return result


_installed = False


def install() -> None:
    """Teach mongomock's expression parser :data:`OPERATORS` (once)."""
    global _installed
    if _installed:
        return
    parser_class = _mongomock.parser_class
    original_parse = parser_class.parse

    def parse(self: Any, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            operator = next(iter(expression))
            if operator in OPERATORS:
                return evaluate(self, operator, expression[operator])
        return original_parse(self, expression)

    parser_class.parse = parse
    _installed = True


install()
