"""Explain why a document fails a ``$jsonSchema``, shaped like the server's ``errInfo``.

The entries, their keys and reason strings follow the server's
``doc_validation_error.cpp`` (MongoDB manual, Schema Validation:
https://www.mongodb.com/docs/manual/core/schema-validation/). Sibling entries come in the
server's keyword order: scalar keywords, array keywords, ``encrypt``, object
keywords, logical keywords, and the type check last. A missing property is
reported only by ``required``; a value of the wrong type gets the type entry
and no restriction entries, except the unguarded ones described in
``schema_errinfo_scalar``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nsn_store.jsonschema._bsontypes import as_mapping, classify
from nsn_store.jsonschema._errinfo_scalar import Entry, keyword_entry, scalar_entries, type_entry
from nsn_store.jsonschema._eval import (
    MISSING,
    dependency_ok,
    disallowed_fields,
    duplicate_item,
    enum_ok,
    lookup,
    matches,
    matches_root,
)
from nsn_store.jsonschema._node import SchemaNode

__all__ = ["explain_schema"]


def explain_schema(schema: SchemaNode, document: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``details`` document for a root schema the document fails."""
    if schema.always_false:
        return _always_false(schema)
    details: dict[str, Any] = {"operatorName": "$jsonSchema"}
    for key in ("title", "description"):
        if key in schema.raw:
            details[key] = schema.raw[key]
    details["schemaRulesNotSatisfied"] = root_entries(schema, document)
    return details


def _always_false(schema: SchemaNode) -> Entry:
    return {
        "operatorName": "$jsonSchema",
        "specifiedAs": {"$jsonSchema": dict(schema.raw)},
        "reason": "expression always evaluates to false",
    }


def root_entries(schema: SchemaNode, document: Mapping[str, Any]) -> list[Entry]:
    """List the failed rules of a root schema (the whole document)."""
    if schema.always_false:
        return [_always_false(schema)]
    return _object_entries(schema, document) + _logical_entries(schema, document)


def value_entries(schema: SchemaNode, value: Any) -> list[Entry]:
    """List the failed rules of a nested schema for a present value."""
    alias = classify(value)
    entries = scalar_entries(schema, value, alias) + _array_entries(schema, value, alias)
    if schema.encrypted and not (alias == "binData" and getattr(value, "subtype", 0) == 6):
        entries.append({"operatorName": "encrypt", "reason": "value was not encrypted"})
    if alias == "object":
        obj = as_mapping(value)
        # dependencies is not a restriction keyword: a stated type never disables it
        restricted = "object" not in schema.dropped
        entries += _object_entries(schema, obj) if restricted else _dependency_entries(schema, obj)
    entries += _logical_entries(schema, value)
    if schema.types is not None and alias not in schema.types:
        entries.append(type_entry(schema, value, alias))
    return entries


def _entries(schema: SchemaNode, value: Any) -> list[Entry]:
    return root_entries(schema, value) if schema.root else value_entries(schema, value)


def _matches(schema: SchemaNode, value: Any) -> bool:
    return matches_root(schema, value) if schema.root else matches(schema, value)


def _array_entries(schema: SchemaNode, value: Any, alias: str | None) -> list[Entry]:
    if alias != "array" or "array" in schema.dropped:
        return []
    entries = []
    length_reason = "array did not match specified length"
    if schema.min_items is not None and len(value) < schema.min_items:
        entries.append(
            keyword_entry(schema, "minItems", length_reason, value) | {"numberOfItems": len(value)}
        )
    if schema.max_items is not None and len(value) > schema.max_items:
        entries.append(
            keyword_entry(schema, "maxItems", length_reason, value) | {"numberOfItems": len(value)}
        )
    duplicate = duplicate_item(value) if schema.unique_items else MISSING
    if duplicate is not MISSING:
        entry = keyword_entry(schema, "uniqueItems", "found a duplicate item", value)
        entries.append(entry | {"duplicatedValue": duplicate})
    return entries + _items_entries(schema, value)


def _items_entries(schema: SchemaNode, value: Sequence[Any]) -> list[Entry]:
    if isinstance(schema.items, SchemaNode):
        return _all_items_entry(
            "items",
            schema.items,
            value,
            0,
            "At least one item did not match the sub-schema",
        )
    if schema.items is None:
        return []
    failing = [
        {"itemIndex": index, "details": value_entries(sub, item)}
        for index, (sub, item) in enumerate(zip(schema.items, value, strict=False))
        if not matches(sub, item)
    ]
    entries = [{"operatorName": "items", "details": failing}] if failing else []
    return entries + _additional_items_entries(
        schema, value[len(schema.items) :], len(schema.items)
    )


def _all_items_entry(
    keyword: str, sub: SchemaNode, items: Sequence[Any], start: int, reason: str
) -> list[Entry]:
    for offset, item in enumerate(items):
        if not matches(sub, item):
            details = value_entries(sub, item)
            return [
                {
                    "operatorName": keyword,
                    "reason": reason,
                    "itemIndex": start + offset,
                    "details": details,
                }
            ]
    return []


def _additional_items_entries(schema: SchemaNode, extra: Sequence[Any], start: int) -> list[Entry]:
    additional = schema.additional_items
    if isinstance(additional, SchemaNode):
        reason = "At least one additional item did not match the sub-schema"
        return _all_items_entry("additionalItems", additional, extra, start, reason)
    if additional is False and extra:
        entry = {
            "operatorName": "additionalItems",
            "specifiedAs": {"additionalItems": False},
        }
        return [entry | {"reason": "found additional items", "additionalItems": list(extra)}]
    return []


def _object_entries(schema: SchemaNode, obj: Mapping[str, Any]) -> list[Entry]:
    entries = _properties_entries(schema, obj) + _allowed_entries(schema, obj)
    missing = [name for name in schema.required if lookup(obj, name) is MISSING]
    if missing:
        required = {
            "operatorName": "required",
            "specifiedAs": {"required": schema.raw["required"]},
        }
        entries.append(required | {"missingProperties": missing})
    return entries + _count_entries(schema, obj) + _dependency_entries(schema, obj)


def _properties_entries(schema: SchemaNode, obj: Mapping[str, Any]) -> list[Entry]:
    failing = []
    for name, sub in (schema.properties or {}).items():
        value = lookup(obj, name)
        if value is MISSING or matches(sub, value):
            continue
        item: Entry = {"propertyName": name}
        item.update({key: sub.raw[key] for key in ("title", "description") if key in sub.raw})
        failing.append(item | {"details": value_entries(sub, value)})
    return [{"operatorName": "properties", "propertiesNotSatisfied": failing}] if failing else []


def _allowed_entries(schema: SchemaNode, obj: Mapping[str, Any]) -> list[Entry]:
    if not schema.has_allowed_properties:
        return []
    pattern_failures: list[Entry] = []
    additional: list[str] = []
    for name in disallowed_fields(schema, obj):
        matched = [
            (source, sub) for source, regex, sub in schema.pattern_properties if regex.search(name)
        ]
        if not matched:
            additional.append(name)
        for source, sub in matched:
            if not matches(sub, obj[name]):
                details = value_entries(sub, obj[name])
                pattern_failures.append(
                    {"propertyName": name, "regexMatched": source, "details": details}
                )
    entries = (
        [{"operatorName": "patternProperties", "details": pattern_failures}]
        if pattern_failures
        else []
    )
    return entries + _additional_entries(schema, obj, additional)


def _additional_entries(
    schema: SchemaNode, obj: Mapping[str, Any], names: list[str]
) -> list[Entry]:
    if not names:
        return []
    if not isinstance(schema.additional_properties, SchemaNode):
        entry = {
            "operatorName": "additionalProperties",
            "specifiedAs": {"additionalProperties": False},
        }
        return [entry | {"additionalProperties": names}]
    details = value_entries(schema.additional_properties, obj[names[0]])
    return [
        {
            "operatorName": "additionalProperties",
            "reason": "at least one additional property did not match the subschema",
            "failingProperty": names[0],
            "details": details,
        }
    ]


def _count_entries(schema: SchemaNode, obj: Mapping[str, Any]) -> list[Entry]:
    entries = []
    count = len(obj)
    reason = "specified number of properties was not satisfied"
    for keyword, bound in (
        ("minProperties", schema.min_properties),
        ("maxProperties", schema.max_properties),
    ):
        too_few = keyword == "minProperties" and bound is not None and count < bound
        too_many = keyword == "maxProperties" and bound is not None and count > bound
        if too_few or too_many:
            entry = {
                "operatorName": keyword,
                "specifiedAs": {keyword: schema.raw[keyword]},
                "reason": reason,
            }
            entries.append(entry | {"numberOfProperties": count})
    return entries


def _dependency_entries(schema: SchemaNode, obj: Mapping[str, Any]) -> list[Entry]:
    failing: list[Entry] = []
    for name, dependency in schema.dependencies:
        if dependency_ok(schema, name, dependency, obj):
            continue
        if isinstance(dependency, SchemaNode):
            failing.append({"conditionalProperty": name, "details": _entries(dependency, obj)})
        else:
            missing = [member for member in dependency if lookup(obj, member) is MISSING]
            failing.append({"conditionalProperty": name, "missingProperties": missing})
    return [{"operatorName": "dependencies", "failingDependencies": failing}] if failing else []


def _logical_entries(schema: SchemaNode, value: Any) -> list[Entry]:
    entries = []
    for keyword, subs in (("allOf", schema.all_of), ("anyOf", schema.any_of)):
        failing = _not_satisfied(subs or [], value)
        if failing and (keyword == "allOf" or len(failing) == len(subs or [])):
            entries.append({"operatorName": keyword, "schemasNotSatisfied": failing})
    entries += _one_of_entries(schema, value)
    if schema.not_ is not None and _matches(schema.not_, value):
        entries.append({"operatorName": "not", "reason": "child expression matched"})
    if schema.enum is not None and not enum_ok(schema, value):
        entries.append(keyword_entry(schema, "enum", "value was not found in enum", value))
    return entries


def _not_satisfied(subs: list[SchemaNode], value: Any) -> list[Entry]:
    return [
        {"index": index, "details": _entries(sub, value)}
        for index, sub in enumerate(subs)
        if not _matches(sub, value)
    ]


def _one_of_entries(schema: SchemaNode, value: Any) -> list[Entry]:
    if schema.one_of is None:
        return []
    matching = [index for index, sub in enumerate(schema.one_of) if _matches(sub, value)]
    if len(matching) == 1:
        return []
    if not matching:
        return [
            {
                "operatorName": "oneOf",
                "schemasNotSatisfied": _not_satisfied(schema.one_of, value),
            }
        ]
    return [
        {
            "operatorName": "oneOf",
            "reason": "more than one subschema matched",
            "matchingSchemaIndexes": matching,
        }
    ]
