"""Parse the object keywords and the logical keywords of one ``$jsonSchema`` object.

Property, pattern-property, additional-property and item subschemas describe
*field values*, so they are parsed as nested schemas; ``allOf``/``anyOf``/
``oneOf``/``not`` and schema ``dependencies`` apply to the *same* value, so
they keep the root flag of their parent (at the root they describe the whole
document, where for example ``type: "string"`` matches nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nsn_store.jsonschema._bsontypes import bson_equal, classify
from nsn_store.jsonschema._checks import (
    BAD_VALUE,
    FAILED_TO_PARSE,
    TYPE_MISMATCH,
    SchemaParseError,
    compile_pattern,
    is_array,
    is_object,
    non_negative_integer,
    type_name,
)
from nsn_store.jsonschema._node import SchemaNode

__all__ = ["SubParser", "parse_logical", "parse_object"]

#: ``sub(schema, root)`` parses a subschema with the caller's options.
SubParser = Callable[[Mapping[str, Any], bool], SchemaNode]


def parse_object(schema: Mapping[str, Any], node: SchemaNode, sub: SubParser) -> None:
    """Parse required, properties, pattern/additional properties, counts and dependencies."""
    if "required" in schema:
        node.required = _parse_required(schema["required"])
    if "properties" in schema:
        node.properties = _parse_properties(schema["properties"], sub)
    if "patternProperties" in schema:
        node.pattern_properties = _parse_pattern_properties(schema["patternProperties"], sub)
    if "additionalProperties" in schema:
        node.additional_properties = _parse_additional(schema["additionalProperties"], sub)
    if "minProperties" in schema:
        node.min_properties = non_negative_integer("minProperties", schema["minProperties"])
    if "maxProperties" in schema:
        node.max_properties = non_negative_integer("maxProperties", schema["maxProperties"])
    if "dependencies" in schema:
        node.dependencies = _parse_dependencies(schema["dependencies"], node.root, sub)


def _parse_required(value: Any) -> tuple[str, ...]:
    if not is_array(value):
        raise SchemaParseError(
            TYPE_MISMATCH,
            "$jsonSchema keyword 'required' must be an array, "
            f"but found an element of type {type_name(value)}",
        )
    names: list[str] = []
    for name in value:
        if not isinstance(name, str):
            raise SchemaParseError(
                TYPE_MISMATCH,
                "$jsonSchema keyword 'required' must be an array of strings, "
                f"but found an element of type: {type_name(name)}",
            )
        if name in names:
            raise SchemaParseError(
                FAILED_TO_PARSE,
                "$jsonSchema keyword 'required' array cannot contain duplicate values",
            )
        names.append(name)
    if not names:
        raise SchemaParseError(
            FAILED_TO_PARSE, "$jsonSchema keyword 'required' cannot be an empty array"
        )
    return tuple(sorted(names))  # the server checks (and reports) them in sorted order


def _parse_properties(value: Any, sub: SubParser) -> dict[str, SchemaNode]:
    if not is_object(value):
        raise SchemaParseError(TYPE_MISMATCH, "$jsonSchema keyword 'properties' must be an object")
    parsed: dict[str, SchemaNode] = {}
    for name, subschema in value.items():
        if not is_object(subschema):
            raise SchemaParseError(
                TYPE_MISMATCH,
                f"Nested schema for $jsonSchema property '{name}' must be an object",
            )
        parsed[name] = sub(subschema, False)
    return parsed


def _parse_pattern_properties(value: Any, sub: SubParser) -> list[tuple[str, Any, SchemaNode]]:
    if not is_object(value):
        raise SchemaParseError(
            TYPE_MISMATCH, "$jsonSchema keyword 'patternProperties' must be an object"
        )
    parsed = []
    for source, subschema in value.items():
        if not is_object(subschema):
            raise SchemaParseError(
                TYPE_MISMATCH,
                "$jsonSchema keyword 'patternProperties' has "
                f"property '{source}' which is not an object",
            )
        nested = sub(subschema, False)
        regex = compile_pattern(source, code=BAD_VALUE, message="Invalid regular expression")
        parsed.append((source, regex, nested))
    return parsed


def _parse_additional(value: Any, sub: SubParser) -> bool | SchemaNode:
    if isinstance(value, bool):
        return value
    if not is_object(value):
        raise SchemaParseError(
            TYPE_MISMATCH,
            "$jsonSchema keyword 'additionalProperties' must be an object or a boolean",
        )
    return sub(value, False)


def _parse_dependencies(
    value: Any, root: bool, sub: SubParser
) -> list[tuple[str, list[str] | SchemaNode]]:
    if not is_object(value):
        raise SchemaParseError(
            TYPE_MISMATCH, "$jsonSchema keyword 'dependencies' must be an object"
        )
    parsed: list[tuple[str, list[str] | SchemaNode]] = []
    for name, dependency in value.items():
        if is_object(dependency):
            parsed.append((name, sub(dependency, root)))
        elif is_array(dependency):
            parsed.append((name, _property_dependency(name, dependency)))
        elif not (name in ("title", "description") and isinstance(dependency, str)):
            raise SchemaParseError(
                TYPE_MISMATCH,
                f"property '{name}' in $jsonSchema keyword "
                "'dependencies' must be either an object or an array",
            )
    return parsed


def _property_dependency(name: str, members: Any) -> list[str]:
    where = "in $jsonSchema keyword 'dependencies'"
    if not members:
        raise SchemaParseError(
            FAILED_TO_PARSE, f"property '{name}' {where} cannot be an empty array"
        )
    names: list[str] = []
    for member in members:
        if not isinstance(member, str):
            raise SchemaParseError(
                TYPE_MISMATCH,
                f"array '{name}' {where} can only contain strings, "
                f"but found element of type: {type_name(member)}",
            )
        if member in names:
            raise SchemaParseError(
                FAILED_TO_PARSE,
                f"array '{name}' {where} contains duplicate element: {member}",
            )
        names.append(member)
    return names


def parse_logical(schema: Mapping[str, Any], node: SchemaNode, sub: SubParser) -> None:
    """Parse allOf, anyOf, oneOf, not and enum, in the server's order."""
    node.all_of = _parse_list("allOf", schema, node.root, sub)
    node.any_of = _parse_list("anyOf", schema, node.root, sub)
    node.one_of = _parse_list("oneOf", schema, node.root, sub)
    if "not" in schema:
        value = schema["not"]
        if not is_object(value):
            raise SchemaParseError(
                TYPE_MISMATCH,
                "$jsonSchema keyword 'not' must be an object, "
                f"but found an element of type {type_name(value)}",
            )
        node.not_ = sub(value, node.root)
    if "enum" in schema:
        node.enum = _parse_enum(schema["enum"])
        strings = [member for member in node.enum if classify(member) == "string"]
        if all(type(member) is str for member in strings):
            node.enum_strings = frozenset(strings)  # a string is equal only to these


def _parse_list(
    keyword: str, schema: Mapping[str, Any], root: bool, sub: SubParser
) -> list[SchemaNode] | None:
    if keyword not in schema:
        return None
    value = schema[keyword]
    if not is_array(value):
        raise SchemaParseError(TYPE_MISMATCH, f"$jsonSchema keyword '{keyword}' must be an array")
    if not value:
        raise SchemaParseError(
            BAD_VALUE, f"$jsonSchema keyword '{keyword}' must be a non-empty array"
        )
    parsed = []
    for element in value:
        if not is_object(element):
            raise SchemaParseError(
                TYPE_MISMATCH,
                f"$jsonSchema keyword '{keyword}' must be an array of objects, "
                f"but found an element of type {type_name(element)}",
            )
        parsed.append(sub(element, root))
    return parsed


def _parse_enum(value: Any) -> list[Any]:
    if not is_array(value):
        raise SchemaParseError(
            TYPE_MISMATCH,
            "$jsonSchema keyword 'enum' must be an array, "
            f"but found an element of type {type_name(value)}",
        )
    if not value:
        raise SchemaParseError(
            FAILED_TO_PARSE, "$jsonSchema keyword 'enum' cannot be an empty array"
        )
    members: list[Any] = []
    for member in value:
        if classify(member) is None:
            raise SchemaParseError(BAD_VALUE, f"cannot encode enum member {member!r} as BSON")
        if any(bson_equal(member, seen) for seen in members):
            raise SchemaParseError(
                FAILED_TO_PARSE,
                "$jsonSchema keyword 'enum' array cannot contain duplicate values.",
            )
        members.append(member)
    return members
