"""Parse a ``$jsonSchema`` document into a checked tree, with the server's parse errors.

The checks, their order, codes and messages follow the server's JSON Schema
parser (MongoDB manual, $jsonSchema:
https://www.mongodb.com/docs/manual/reference/operator/query/jsonSchema/, and the server's
``json_schema_parser.cpp``): unknown keywords first (in document
order), then ``title``/``description``, the type keywords, the scalar
keywords, the array keywords, encryption, the object keywords and finally the
logical keywords. Each nested schema is parsed the same way, so the first
error met in that order is the one reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsn_store.jsonschema._bsontypes import (
    BSON_ALIASES,
    JSON_TYPE_ALIASES,
    NUMERIC_ALIASES,
    classify,
    to_decimal128,
)
from nsn_store.jsonschema._checks import (
    BAD_VALUE,
    FAILED_TO_PARSE,
    QUERY_FEATURE_NOT_ALLOWED,
    TYPE_MISMATCH,
    SchemaParseError,
    compile_pattern,
    is_array,
    is_object,
    non_negative_integer,
    require_bool,
    type_name,
)
from nsn_store.jsonschema._node import FAMILY, KEYWORDS, UNSUPPORTED, SchemaNode
from nsn_store.jsonschema._parse_object import SubParser, parse_logical, parse_object

__all__ = ["parse_schema"]


def parse_schema(
    schema: Mapping[str, Any], *, root: bool = True, allow_encrypt: bool = True
) -> SchemaNode:
    """Parse and check one ``$jsonSchema`` object; raise SchemaParseError like the server."""
    _check_keywords(schema)
    _check_metadata(schema)
    node = SchemaNode(raw=schema, root=root)
    _parse_types(schema, node)
    _parse_scalar(schema, node)
    _parse_array(schema, node, allow_encrypt)
    _parse_encrypt(schema, node, allow_encrypt)
    parse_object(schema, node, _subparser(allow_encrypt))
    parse_logical(schema, node, _subparser(allow_encrypt))
    return node


def _subparser(allow_encrypt: bool) -> SubParser:
    def parse(schema: Mapping[str, Any], root: bool) -> SchemaNode:
        return parse_schema(schema, root=root, allow_encrypt=allow_encrypt)

    return parse


def _check_keywords(schema: Mapping[str, Any]) -> None:
    for key in schema:
        if key in KEYWORDS:
            continue
        if key in UNSUPPORTED:
            raise SchemaParseError(
                FAILED_TO_PARSE,
                f"$jsonSchema keyword '{key}' is not currently supported",
            )
        raise SchemaParseError(FAILED_TO_PARSE, f"Unknown $jsonSchema keyword: {key}")


def _check_metadata(schema: Mapping[str, Any]) -> None:
    for key in ("description", "title"):
        if key in schema and not isinstance(schema[key], str):
            raise SchemaParseError(
                TYPE_MISMATCH, f"$jsonSchema keyword '{key}' must be of type string"
            )


def _parse_types(schema: Mapping[str, Any], node: SchemaNode) -> None:
    has_type, has_bson = "type" in schema, "bsonType" in schema
    if has_type and has_bson:
        raise SchemaParseError(
            FAILED_TO_PARSE,
            "Cannot specify both $jsonSchema keywords 'type' and 'bsonType'",
        )
    for keyword in ("type", "bsonType"):
        if keyword in schema and "encrypt" in schema:
            raise SchemaParseError(
                FAILED_TO_PARSE,
                f"$jsonSchema keyword 'encrypt' cannot be used in conjunction with '{keyword}', "
                "'encrypt' implies type 'bsonType::BinData'",
            )
    if has_type or has_bson:
        keyword = "type" if has_type else "bsonType"
        names = _type_names(keyword, schema[keyword])
        node.type_keyword = keyword
        node.types = frozenset().union(*(_resolve_alias(keyword, name) for name in names))
        if len(names) == 1:
            family = FAMILY.get(next(iter(node.types)) if names[0] != "number" else "int")
            node.dropped = frozenset({"number", "string", "array", "object"} - {family})


def _type_names(keyword: str, value: Any) -> list[str]:
    if not isinstance(value, str) and not is_array(value):
        message = "must be either a string or an array of strings"
        raise SchemaParseError(TYPE_MISMATCH, f"$jsonSchema keyword '{keyword}' {message}")
    seen: list[str] = []
    for name in [value] if isinstance(value, str) else value:
        _check_type_name(keyword, name, seen)
        seen.append(name)
    if not seen:
        message = "must name at least one type"
        raise SchemaParseError(FAILED_TO_PARSE, f"$jsonSchema keyword '{keyword}' {message}")
    return seen


def _check_type_name(keyword: str, name: Any, seen: list[str]) -> None:
    if not isinstance(name, str):
        message = "array elements must be strings"
        raise SchemaParseError(TYPE_MISMATCH, f"$jsonSchema keyword '{keyword}' {message}")
    if name == "integer":
        message = "$jsonSchema type 'integer' is not currently supported."
        raise SchemaParseError(FAILED_TO_PARSE, message)
    if name in seen:
        message = f"has duplicate value: {name}"
        raise SchemaParseError(FAILED_TO_PARSE, f"$jsonSchema keyword '{keyword}' {message}")


def _resolve_alias(keyword: str, name: str) -> frozenset[str]:
    alias = JSON_TYPE_ALIASES.get(name) if keyword == "type" else name
    if alias == "number":
        return NUMERIC_ALIASES
    if alias is None or alias not in BSON_ALIASES:
        raise SchemaParseError(BAD_VALUE, f"Unknown type name alias: {name}")
    return frozenset({alias})


def _number_keyword(schema: Mapping[str, Any], keyword: str) -> Any:
    value = schema[keyword]
    if classify(value) not in NUMERIC_ALIASES:
        raise SchemaParseError(TYPE_MISMATCH, f"$jsonSchema keyword '{keyword}' must be a number")
    return value


def _parse_scalar(schema: Mapping[str, Any], node: SchemaNode) -> None:
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str) or classify(schema["pattern"]) != "string":
            raise SchemaParseError(TYPE_MISMATCH, "$jsonSchema keyword 'pattern' must be a string")
        if not node.root:  # the server never compiles a root pattern: it is a no-op
            node.pattern = compile_pattern(
                schema["pattern"], code=51091, message="Regular expression is invalid"
            )
    if "maxLength" in schema:
        node.max_length = non_negative_integer("maxLength", schema["maxLength"])
    if "minLength" in schema:
        node.min_length = non_negative_integer("minLength", schema["minLength"])
    if "multipleOf" in schema:
        divisor = to_decimal128(_number_keyword(schema, "multipleOf"))
        if divisor.is_signed() or divisor.is_zero():
            raise SchemaParseError(
                FAILED_TO_PARSE,
                "$jsonSchema keyword 'multipleOf' must have a positive value",
            )
        node.multiple_of = divisor
    node.maximum = _bound(schema, "maximum", "exclusiveMaximum")
    node.minimum = _bound(schema, "minimum", "exclusiveMinimum")


def _bound(schema: Mapping[str, Any], keyword: str, exclusive: str) -> Any:
    if keyword not in schema:
        if exclusive in schema:
            raise SchemaParseError(
                FAILED_TO_PARSE,
                f"$jsonSchema keyword '{keyword}' must be a present if {exclusive} is present",
            )
        return None
    if exclusive in schema:
        require_bool(exclusive, schema[exclusive])
    return _number_keyword(schema, keyword)


def _parse_array(schema: Mapping[str, Any], node: SchemaNode, allow_encrypt: bool) -> None:
    if "minItems" in schema:
        node.min_items = non_negative_integer("minItems", schema["minItems"])
    if "maxItems" in schema:
        node.max_items = non_negative_integer("maxItems", schema["maxItems"])
    if "uniqueItems" in schema:
        node.unique_items = require_bool("uniqueItems", schema["uniqueItems"])
    if "items" in schema:
        node.items = _parse_items(schema["items"], allow_encrypt)
    if "additionalItems" in schema:
        value = schema["additionalItems"]
        if isinstance(value, bool):
            node.additional_items = value
        elif is_object(value):
            node.additional_items = _nested(value, allow_encrypt)
        else:
            raise SchemaParseError(
                TYPE_MISMATCH,
                "$jsonSchema keyword 'additionalItems' must be either an object or a boolean, "
                f"but got a {type_name(value)}",
            )


def _parse_items(value: Any, allow_encrypt: bool) -> SchemaNode | list[SchemaNode]:
    if is_object(value):
        return _nested(value, allow_encrypt)
    if not is_array(value):
        raise SchemaParseError(
            TYPE_MISMATCH,
            f"$jsonSchema keyword 'items' must be an array or an object, not {type_name(value)}",
        )
    for element in value:
        if not is_object(element):
            raise SchemaParseError(
                TYPE_MISMATCH,
                "$jsonSchema keyword 'items' requires that each element of the array is an object, "
                f"but found a {type_name(element)}",
            )
    return [_nested(element, allow_encrypt) for element in value]


def _nested(schema: Mapping[str, Any], allow_encrypt: bool) -> SchemaNode:
    return parse_schema(schema, root=False, allow_encrypt=allow_encrypt)


def _parse_encrypt(schema: Mapping[str, Any], node: SchemaNode, allow_encrypt: bool) -> None:
    present = [key for key in ("encrypt", "encryptMetadata") if key in schema]
    if not present:
        return
    if not allow_encrypt:
        raise SchemaParseError(
            QUERY_FEATURE_NOT_ALLOWED,
            "Encryption-related validator keywords are not allowed in this context",
        )
    if len(present) == 2:
        raise SchemaParseError(
            FAILED_TO_PARSE,
            "Cannot specify both $jsonSchema keywords 'encrypt' and 'encryptMetadata'",
        )
    value = schema[present[0]]
    if not is_object(value):
        raise SchemaParseError(
            TYPE_MISMATCH, f"$jsonSchema keyword '{present[0]}' must be an object "
        )
    if present[0] == "encryptMetadata" and not value:
        raise SchemaParseError(
            FAILED_TO_PARSE,
            "$jsonSchema keyword 'encryptMetadata' cannot be an empty object ",
        )
    node.encrypted = present[0] == "encrypt"
