"""Decide whether a value or a whole document satisfies a parsed ``$jsonSchema``.

Semantics (MongoDB manual, $jsonSchema, "Omissions" and "Extensions":
https://www.mongodb.com/docs/manual/reference/operator/query/jsonSchema/):
restriction keywords apply only to values of their own type; a missing property
is checked only by ``required``;
arrays are never traversed by type checks; at the root, scalar and array
keywords are no-ops and ``enum`` compares the whole document with the object
members only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from nsn_store.jsonschema._bsontypes import (
    NUMERIC_ALIASES,
    as_mapping,
    bson_equal,
    classify,
    is_nan,
    number_value,
    to_decimal128,
)
from nsn_store.jsonschema._node import SchemaNode

__all__ = [
    "MISSING",
    "FieldChecks",
    "bound_ok",
    "dependency_ok",
    "disallowed_fields",
    "duplicate_item",
    "enum_ok",
    "field_checks",
    "lookup",
    "matches",
    "matches_root",
    "multiple_ok",
]

MISSING: Any = object()
#: Decimal128 has 34 significant digits; a quotient needing more signals, and fails.
_DECIMAL128 = Context(prec=34, traps=[InvalidOperation])


def matches(schema: SchemaNode, value: Any) -> bool:
    """Tell whether a present field value satisfies a nested schema."""
    alias = classify(value)
    if schema.types is not None and alias not in schema.types:
        return False
    # Each family's checks apply to its own values only, and only if it has keywords.
    if alias == "object":
        if schema.checks_objects and not _object_ok(schema, as_mapping(value)):
            return False
    elif alias == "array":
        if schema.checks_arrays and not _array_ok(schema, value, alias):
            return False
    elif alias == "string":
        if schema.checks_strings and not _scalar_ok(schema, value, alias):
            return False
    elif (
        alias in NUMERIC_ALIASES and schema.checks_numbers and not _scalar_ok(schema, value, alias)
    ):
        return False
    if schema.checks_logic and not _logical_ok(schema, value, matches):
        return False
    return not schema.encrypted or _is_encrypted(value)


def matches_root(schema: SchemaNode, document: Mapping[str, Any]) -> bool:
    """Tell whether a whole stored document satisfies a root schema."""
    if schema.always_false:
        return False
    return _object_ok(schema, document) and (
        not schema.checks_logic or _logical_ok(schema, document, matches_root)
    )


class FieldChecks:
    """A root schema split by top-level field, to re-check a document after a partial change.

    A document that satisfied the schema, then had only some top-level fields
    changed, satisfies it still when the checks of those fields pass and the
    document-wide ones (``required``, ``min/maxProperties``,
    ``dependencies``) do. Only root schemas without ``allOf``/``anyOf``/
    ``oneOf``/``not``/``enum`` split this way (:func:`field_checks`).
    """

    __slots__ = ("_by_field", "_schema")

    def __init__(self, schema: SchemaNode) -> None:
        self._schema = schema
        by_field: dict[str, list[tuple[str, SchemaNode]]] = {}
        for name, sub in (schema.properties or {}).items():
            # A dotted property reads the field of that exact name if there is one,
            # else the path under its first part: both may change it.
            for top in {name, name.split(".", 1)[0]}:
                by_field.setdefault(top, []).append((name, sub))
        self._by_field = by_field

    def still_matches(self, document: Mapping[str, Any], changed: Mapping[str, int | None]) -> bool:
        """Tell whether ``document`` satisfies the schema; it did before ``changed`` changed.

        ``changed`` maps each changed top-level field to None (changed as a
        whole) or to ``n``: an array that only gained elements, all among its
        last ``n`` (a ``$push``), the others being elements it held before.
        """
        schema = self._schema
        allowed = schema.has_allowed_properties
        for field_name, grown in changed.items():
            checks = self._by_field.get(field_name, ())
            value = document.get(field_name, MISSING)
            if grown is not None and len(checks) == 1 and checks[0][0] == field_name:
                verdict = _grown_ok(checks[0][1], value, grown)
                if verdict is False:
                    return False
                if verdict is True and not schema.pattern_properties:
                    continue  # a declared field: allowed whatever additionalProperties says
            for name, sub in checks:
                if not _property_ok(sub, lookup(document, name)):
                    return False
            if allowed and value is not MISSING and not _field_allowed(schema, field_name, value):
                return False
        return _document_rules_ok(schema, document)


def _grown_ok(schema: SchemaNode, value: Any, grown: int) -> bool | None:
    """Check an array that was valid and only gained elements among its last ``grown``.

    None when the whole value must be checked (not an array, positional
    ``items``, logic or encryption on the field).
    """
    if type(value) is not list or isinstance(schema.items, list) or schema.encrypted:
        return None
    if schema.checks_logic:
        return None
    if schema.types is not None and "array" not in schema.types:
        return False
    if not _array_rules_ok(schema, value):
        return False
    items = schema.items
    return items is None or all(matches(items, item) for item in value[-grown:] if grown)


def field_checks(schema: SchemaNode) -> FieldChecks | None:
    """Return ``schema`` split by top-level field, or None when its verdict is not per field."""
    if not schema.root or schema.always_false:
        return None
    logical = (schema.all_of, schema.any_of, schema.one_of, schema.not_, schema.enum)
    if any(part is not None for part in logical):
        return None
    return FieldChecks(schema)


def _is_encrypted(value: Any) -> bool:
    return classify(value) == "binData" and getattr(value, "subtype", 0) == 6


def _scalar_ok(schema: SchemaNode, value: Any, alias: str | None) -> bool:
    if alias == "string":
        return (
            (schema.pattern is None or schema.pattern.search(value) is not None)
            and (schema.max_length is None or len(value) <= schema.max_length)
            and (schema.min_length is None or len(value) >= schema.min_length)
        )
    if alias in NUMERIC_ALIASES:
        return (
            (schema.multiple_of is None or multiple_ok(value, schema.multiple_of))
            and (schema.maximum is None or bound_ok(schema, value, "maximum"))
            and (schema.minimum is None or bound_ok(schema, value, "minimum"))
        )
    return True


def multiple_ok(value: Any, divisor: Decimal) -> bool:
    """Tell whether ``value`` is a multiple of ``divisor`` in Decimal128 arithmetic."""
    try:
        remainder = _DECIMAL128.remainder(to_decimal128(value), divisor)
    except InvalidOperation:
        return False  # any signalling flag counts as a failure, like the server
    return not remainder.is_nan() and remainder.is_zero()


def bound_ok(schema: SchemaNode, value: Any, keyword: str) -> bool:
    """Check ``minimum``/``maximum`` (with their ``exclusive*`` flag) by numeric value."""
    bound = number_value(schema.raw[keyword])
    number = number_value(value)
    exclusive = (
        schema.raw.get("exclusiveMaximum" if keyword == "maximum" else "exclusiveMinimum") is True
    )
    if is_nan(number) or is_nan(bound):
        return not exclusive and is_nan(number) and is_nan(bound)  # NaN only equals NaN
    if keyword == "maximum":
        return bool(number < bound) if exclusive else bool(number <= bound)
    return bool(number > bound) if exclusive else bool(number >= bound)


def _array_ok(schema: SchemaNode, value: Any, alias: str | None) -> bool:
    if alias != "array":
        return True
    return _array_rules_ok(schema, value) and _items_ok(schema, value)


def _array_rules_ok(schema: SchemaNode, value: Sequence[Any]) -> bool:
    """Check the rules of an array as a whole: ``min/maxItems``, ``uniqueItems``."""
    return (
        (schema.min_items is None or len(value) >= schema.min_items)
        and (schema.max_items is None or len(value) <= schema.max_items)
        and (not schema.unique_items or duplicate_item(value) is MISSING)
    )


def duplicate_item(items: Sequence[Any]) -> Any:
    """Return the first element equal to an earlier one, or MISSING."""
    for index, item in enumerate(items):
        if any(bson_equal(item, earlier) for earlier in items[:index]):
            return item
    return MISSING


def _items_ok(schema: SchemaNode, value: Sequence[Any]) -> bool:
    if isinstance(schema.items, SchemaNode):
        return all(matches(schema.items, item) for item in value)
    if schema.items is None:
        return True  # additionalItems has no effect without a positional items list
    positional = schema.items
    if not all(matches(sub, item) for sub, item in zip(positional, value, strict=False)):
        return False
    extra = value[len(positional) :]
    if isinstance(schema.additional_items, SchemaNode):
        return all(matches(schema.additional_items, item) for item in extra)
    return schema.additional_items is not False or not extra


def lookup(document: Mapping[str, Any], path: str) -> Any:
    """Return the value at a (possibly dotted) property path, or MISSING."""
    if path in document or "." not in path:
        return document.get(path, MISSING)
    current: Any = document
    for part in path.split("."):
        if classify(current) != "object" or part not in current:
            return MISSING
        current = current[part]
    return current


def _object_ok(schema: SchemaNode, obj: Mapping[str, Any]) -> bool:
    for name, sub in (schema.properties or {}).items():  # a loop: this runs for every field
        value = obj.get(name, MISSING)
        if value is MISSING and "." in name:
            value = lookup(obj, name)
        if value is not MISSING and not matches(sub, value):
            return False
    return (
        not schema.has_allowed_properties or not disallowed_fields(schema, obj)
    ) and _document_rules_ok(schema, obj)


def _document_rules_ok(schema: SchemaNode, obj: Mapping[str, Any]) -> bool:
    """Check the rules of an object as a whole: ``required``, ``min/maxProperties``,
    ``dependencies``."""
    return (
        all(lookup(obj, name) is not MISSING for name in schema.required)
        and (schema.min_properties is None or len(obj) >= schema.min_properties)
        and (schema.max_properties is None or len(obj) <= schema.max_properties)
        and all(dependency_ok(schema, name, dep, obj) for name, dep in schema.dependencies)
    )


def _property_ok(sub: SchemaNode, value: Any) -> bool:
    return value is MISSING or matches(sub, value)


def disallowed_fields(schema: SchemaNode, obj: Mapping[str, Any]) -> list[str]:
    """Return the fields that break ``patternProperties``/``additionalProperties``."""
    return [name for name, value in obj.items() if not _field_allowed(schema, name, value)]


def _field_allowed(schema: SchemaNode, name: str, value: Any) -> bool:
    if not schema.pattern_properties and schema.properties and name in schema.properties:
        return True
    patterns = [sub for _, regex, sub in schema.pattern_properties if regex.search(name)]
    if patterns:
        return all(matches(sub, value) for sub in patterns)
    if name in (schema.properties or {}):
        return True
    return _additional_ok(schema.additional_properties, value)


def _additional_ok(additional: bool | SchemaNode | None, value: Any) -> bool:
    if isinstance(additional, SchemaNode):
        return matches(additional, value)
    return additional is not False


def dependency_ok(
    schema: SchemaNode, name: str, dependency: list[str] | SchemaNode, obj: Mapping[str, Any]
) -> bool:
    """Check one dependency: if ``name`` exists, its dependents exist or the object matches."""
    if lookup(obj, name) is MISSING:
        return True
    if isinstance(dependency, SchemaNode):
        return matches_root(dependency, obj) if schema.root else matches(dependency, obj)
    return all(lookup(obj, member) is not MISSING for member in dependency)


def _logical_ok(schema: SchemaNode, value: Any, check: Any) -> bool:
    return (
        (schema.all_of is None or all(check(sub, value) for sub in schema.all_of))
        and (schema.any_of is None or any(check(sub, value) for sub in schema.any_of))
        and (schema.one_of is None or sum(1 for sub in schema.one_of if check(sub, value)) == 1)
        and (schema.not_ is None or not check(schema.not_, value))
        and (schema.enum is None or enum_ok(schema, value))
    )


def enum_ok(schema: SchemaNode, value: Any) -> bool:
    """Check ``enum``: whole-value equality; at the root only object members count."""
    if type(value) is str and schema.enum_strings is not None and not schema.root:
        return value in schema.enum_strings  # BSON equality of strings is ==
    members = schema.enum or []
    if schema.root:
        members = [member for member in members if classify(member) == "object"]
    return any(bson_equal(value, member) for member in members)
