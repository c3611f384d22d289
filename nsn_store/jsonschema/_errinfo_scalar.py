"""Explain failed scalar rules (strings, numbers) and type checks, as the server does.

A restriction keyword normally applies only to values of its own type. When
the same subschema states a single type of that family (``{type: "string",
minLength: 4}``) the server keeps the restriction unguarded, so a value of
another type fails it too: it is reported with reason "type did not match"
and the types the keyword expects, before the type entry itself (server unit
tests MinLengthNonString, PatternNonString, MultipleOfNonNumeric).
"""

from __future__ import annotations

from typing import Any

from nsn_store.jsonschema._bsontypes import NUMERIC_ALIASES
from nsn_store.jsonschema._eval import bound_ok, multiple_ok
from nsn_store.jsonschema._node import SchemaNode

__all__ = ["Entry", "keyword_entry", "scalar_entries", "type_entry"]

Entry = dict[str, Any]

#: The types each unguarded string/number keyword accepts, as the server lists them.
_EXPECTED: dict[str, tuple[str, Any]] = {
    "pattern": ("expectedTypes", ["regex", "string", "symbol"]),
    "maxLength": ("expectedType", "string"),
    "minLength": ("expectedType", "string"),
    "multipleOf": ("expectedTypes", ["decimal", "double", "int", "long"]),
}


def stated_family(schema: SchemaNode) -> str | None:
    """Return the value family of a single stated type (``"string"``, ``"number"``...)."""
    families = {"number", "string", "array", "object"} - schema.dropped
    return next(iter(families)) if schema.dropped and len(families) == 1 else None


def type_entry(schema: SchemaNode, value: Any, alias: str | None) -> Entry:
    keyword = schema.type_keyword or "bsonType"
    return {
        "operatorName": keyword,
        "specifiedAs": {keyword: schema.raw[keyword]},
        "reason": "type did not match",
        "consideredValue": value,
        "consideredType": alias,
    }


def keyword_entry(schema: SchemaNode, keyword: str, reason: str, value: Any) -> Entry:
    return {
        "operatorName": keyword,
        "specifiedAs": {keyword: schema.raw[keyword]},
        "reason": reason,
        "consideredValue": value,
    }


def scalar_entries(schema: SchemaNode, value: Any, alias: str | None) -> list[Entry]:
    if alias == "string" and "string" not in schema.dropped:
        return _string_entries(schema, value)
    if alias in NUMERIC_ALIASES and "number" not in schema.dropped:
        return _number_entries(schema, value)
    return _unguarded_entries(schema, value, alias)


def _unguarded_entries(schema: SchemaNode, value: Any, alias: str | None) -> list[Entry]:
    family = stated_family(schema)
    keywords = {
        "string": ("pattern", "maxLength", "minLength"),
        "number": ("multipleOf",),
    }
    entries = []
    for keyword in keywords.get(family or "", ()):
        if keyword in schema.raw:
            key, expected = _EXPECTED[keyword]
            entry = keyword_entry(schema, keyword, "type did not match", value)
            entries.append(entry | {"consideredType": alias, key: expected})
    return entries


def _string_entries(schema: SchemaNode, value: str) -> list[Entry]:
    entries = []
    if schema.pattern is not None and schema.pattern.search(value) is None:
        entries.append(keyword_entry(schema, "pattern", "regular expression did not match", value))
    length_reason = "specified string length was not satisfied"
    if schema.max_length is not None and len(value) > schema.max_length:
        entries.append(keyword_entry(schema, "maxLength", length_reason, value))
    if schema.min_length is not None and len(value) < schema.min_length:
        entries.append(keyword_entry(schema, "minLength", length_reason, value))
    return entries


def _number_entries(schema: SchemaNode, value: Any) -> list[Entry]:
    entries = []
    if schema.multiple_of is not None and not multiple_ok(value, schema.multiple_of):
        reason = "considered value is not a multiple of the specified value"
        entries.append(keyword_entry(schema, "multipleOf", reason, value))
    for keyword, exclusive in (
        ("maximum", "exclusiveMaximum"),
        ("minimum", "exclusiveMinimum"),
    ):
        if keyword in schema.raw and not bound_ok(schema, value, keyword):
            entry = keyword_entry(schema, keyword, "comparison failed", value)
            if exclusive in schema.raw:
                entry["specifiedAs"][exclusive] = schema.raw[exclusive]
            entries.append(entry)
    return entries
