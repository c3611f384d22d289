"""Case tables for the ``$jsonSchema`` engine, shared by the unit and conformance suites.

Every expectation is what a real MongoDB server (5.0+) does, taken from
the MongoDB manual and the server's own jstests; none is read off our
engine. Documents are what a test passes to ``insert_one``: the driver adds an
``_id`` first when there is none, so schemas that close the top-level object
list ``_id`` and property counts include it.

- VALIDATION_CASES: (id, schema, document, valid)
- VALIDATOR_CASES: (id, validator, document, valid), validators that mix
  ``$jsonSchema`` with query operators
- PARSE_ERROR_CASES: (id, validator, expected code)
- ERRINFO_CASES: (id, schema, document, expected subset of errInfo ``details``)
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from bson import (
    Binary,
    Code,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)

Case = tuple[str, dict[str, Any], dict[str, Any], bool]

#: (id, Python value, BSON alias per the manual's BSON Types table).
VALUE_SAMPLES: list[tuple[str, Any, str]] = [
    ("int_5", 5, "int"),
    ("int_min", -(2**31), "int"),
    ("int_max", 2**31 - 1, "int"),
    ("int_over_int32", 2**31, "long"),
    ("int_under_int32", -(2**31) - 1, "long"),
    ("Int64_small", Int64(5), "long"),
    ("float", 5.0, "double"),
    ("float_frac", 2.5, "double"),
    ("float_inf", math.inf, "double"),
    ("Decimal128", Decimal128("5"), "decimal"),
    ("bool_true", True, "bool"),
    ("bool_false", False, "bool"),
    ("str", "text", "string"),
    ("str_empty", "", "string"),
    ("none", None, "null"),
    ("dict", {"a": 1}, "object"),
    ("dict_empty", {}, "object"),
    ("list", [1, "a"], "array"),
    ("list_empty", [], "array"),
    ("ObjectId", ObjectId("65a0c0ffee0000000000beef"), "objectId"),
    ("datetime", dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc), "date"),
    ("Regex", Regex("^a", "i"), "regex"),
    ("re_Pattern", re.compile("^b"), "regex"),
    ("Binary", Binary(b"\x00\x01", 0), "binData"),
    ("bytes", b"raw", "binData"),
    ("Binary_uuid_subtype", Binary(b"0123456789abcdef", 4), "binData"),
    ("Timestamp", Timestamp(1_700_000_000, 1), "timestamp"),
    ("Code", Code("function () {}"), "javascript"),
    ("Code_with_scope", Code("function () {}", {"x": 1}), "javascriptWithScope"),
    ("MinKey", MinKey(), "minKey"),
    ("MaxKey", MaxKey(), "maxKey"),
]

BSON_TYPE_ALIASES = [
    "double", "string", "object", "array", "binData", "undefined", "objectId", "bool",
    "date", "null", "regex", "dbPointer", "javascript", "symbol", "javascriptWithScope",
    "int", "timestamp", "long", "decimal", "minKey", "maxKey", "number",
]  # fmt: skip
JSON_TYPE_ALIASES = {
    "object": "object", "array": "array", "boolean": "bool", "string": "string",
    "null": "null", "number": "number",
}  # fmt: skip
NUMERIC = {"int", "long", "double", "decimal"}


def _type_matches(wanted: str, actual: str) -> bool:
    return wanted == actual or (wanted == "number" and actual in NUMERIC)


def _type_matrix() -> list[Case]:
    cases: list[Case] = []
    for alias in BSON_TYPE_ALIASES:
        for vid, value, actual in VALUE_SAMPLES:
            schema = {"properties": {"f": {"bsonType": alias}}}
            cases.append(
                (
                    f"bsonType-{alias}-{vid}",
                    schema,
                    {"f": value},
                    _type_matches(alias, actual),
                )
            )
    for name, alias in JSON_TYPE_ALIASES.items():
        for vid, value, actual in VALUE_SAMPLES:
            schema = {"properties": {"f": {"type": name}}}
            cases.append(
                (
                    f"type-{name}-{vid}",
                    schema,
                    {"f": value},
                    _type_matches(alias, actual),
                )
            )
    return cases


def _field(keywords: dict[str, Any]) -> dict[str, Any]:
    """A schema applying ``keywords`` to the field ``f``."""
    return {"properties": {"f": keywords}}


def _family(prefix: str, keywords: dict[str, Any], rows: list[tuple[str, Any, bool]]) -> list[Case]:
    """Cases for one keyword set applied to the field ``f``; MISSING omits the field."""
    return [
        (
            f"{prefix}-{vid}",
            _field(keywords),
            {} if value is MISSING else {"f": value},
            valid,
        )
        for vid, value, valid in rows
    ]


MISSING = object()
NAN = math.nan

TYPE_SEMANTICS: list[Case] = [
    ("type-missing-field-passes", _field({"bsonType": "string"}), {}, True),
    ("type-null-fails-string", _field({"bsonType": "string"}), {"f": None}, False),
    ("type-nullable-accepts-null", _field({"bsonType": ["null", "string"]}), {"f": None}, True),
    ("type-array-not-traversed-bsonType", _field({"bsonType": "string"}), {"f": ["a"]}, False),
    ("type-array-not-traversed-type-list", _field({"type": ["number", "string"]}), {"f": ["str", 1]}, False),
    ("type-number-not-array-of-numbers", _field({"type": "number"}), {"f": [1, 2]}, False),
    ("type-list-second-alias", _field({"bsonType": ["int", "string"]}), {"f": "x"}, True),
    ("type-list-no-alias", _field({"bsonType": ["int", "string"]}), {"f": 1.5}, False),
    ("type-int-rejects-integral-double", _field({"bsonType": "int"}), {"f": 3.0}, False),
    ("type-long-rejects-int32", _field({"bsonType": "long"}), {"f": 3}, False),
    ("type-double-rejects-int32", _field({"bsonType": ["double"]}), {"f": 3}, False),
    ("root-bsonType-object", {"bsonType": "object"}, {"a": 1}, True),
    ("root-type-object-list", {"type": ["object", "string"]}, {"a": 1}, True),
    ("root-type-string-matches-nothing", {"type": "string"}, {"a": 1}, False),
    ("root-bsonType-long-matches-nothing", {"bsonType": "long"}, {}, False),
    ("root-bsonType-objectId-matches-nothing", {"bsonType": "objectId"}, {}, False),
    ("nested-object-type", _field({"bsonType": "object", "required": ["g"]}), {"f": {"g": 1}}, True),
    ("type-and-bsonType-in-different-subschemas", {"properties": {"f": {"type": "string"}, "g": {"bsonType": "int"}}}, {"f": "a", "g": 1}, True),
]  # fmt: skip

NUMBER_CASES: list[Case] = (
    _family("minimum", {"minimum": 5}, [
        ("int-equal", 5, True), ("int-below", 4, False), ("double-above", 5.5, True),
        ("double-below", 4.999, False), ("Int64-above", Int64(2**40), True), ("long-below", -(2**40), False),
        ("Decimal128-equal", Decimal128("5.0"), True), ("Decimal128-below", Decimal128("4.99"), False),
        ("string-ignored", "1", True), ("bool-ignored", False, True), ("null-ignored", None, True),
        ("array-ignored", [1], True), ("object-ignored", {"x": 1}, True), ("missing", MISSING, True),
        ("date-not-a-number", dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), True),
        ("nan-fails", NAN, False), ("minus-inf-fails", -math.inf, False), ("inf-passes", math.inf, True),
    ])
    + _family("maximum", {"maximum": 10}, [
        ("equal", 10, True), ("above", 11, False), ("double-above", 10.0001, False),
        ("Decimal128-above", Decimal128("10.5"), False), ("Int64-below", Int64(-3), True),
        ("inf-fails", math.inf, False), ("string-ignored", "99", True), ("nan-fails", NAN, False),
    ])
    + _family("exclusiveMinimum", {"minimum": 5, "exclusiveMinimum": True}, [
        ("equal-fails", 5, False), ("equal-double-fails", 5.0, False), ("above", 5.0001, True),
    ])
    + _family("exclusiveMinimum-false", {"minimum": 5, "exclusiveMinimum": False}, [("equal", 5, True)])
    + _family("exclusiveMaximum", {"maximum": 10, "exclusiveMaximum": True}, [
        ("equal-fails", 10, False), ("equal-long-fails", Int64(10), False), ("below", 9, True),
    ])
    + _family("exclusiveMaximum-false", {"maximum": 10, "exclusiveMaximum": False}, [("equal", 10, True)])
    + _family("minimum-double-bound", {"minimum": 0.5}, [("int-0", 0, False), ("int-1", 1, True)])
    + _family("multipleOf", {"multipleOf": 5}, [
        ("int-yes", 10, True), ("int-no", 7, False), ("zero", 0, True), ("negative-yes", -15, True),
        ("double-yes", 20.0, True), ("double-no", 20.5, False), ("Int64-yes", Int64(2**40 * 5), True),
        ("Decimal128-yes", Decimal128("25"), True), ("Decimal128-no", Decimal128("25.1"), False),
        ("string-ignored", "7", True), ("nan-fails", NAN, False), ("inf-fails", math.inf, False),
    ])
    + _family("multipleOf-fraction", {"multipleOf": 2.5}, [("7.5", 7.5, True), ("5", 5, True), ("6", 6, False)])
    + _family("multipleOf-decimal-arith", {"multipleOf": 0.5}, [("0.75", 0.75, False), ("1.5", 1.5, True)])
    + _family("multipleOf-decimal-divisor", {"multipleOf": Decimal128("0.1")}, [
        ("Decimal128-yes", Decimal128("0.3"), True), ("Decimal128-no", Decimal128("0.35"), False),
    ])
    + _family("number-keywords-dropped-for-string-type", {"bsonType": "string", "minimum": 5}, [
        ("string", "x", True), ("number-fails-type", 3, False),
    ])
)  # fmt: skip

STRING_CASES: list[Case] = (
    _family("minLength", {"minLength": 2}, [
        ("equal", "ab", True), ("shorter", "a", False), ("empty", "", False),
        ("two-code-points", "e\u0301", True), ("one-astral-code-point", "\U0001f600", False),
        ("number-ignored", 1, True), ("array-ignored", ["a"], True), ("missing", MISSING, True),
    ])
    + _family("maxLength", {"maxLength": 3}, [
        ("equal", "abc", True), ("longer", "abcd", False), ("accents-are-code-points", "ñññ", True),
        ("astral-counts-one", "a\U0001f600b", True), ("combining-counts-two", "ae\u0301b", False),
        ("null-ignored", None, True), ("object-ignored", {"a": "toolong"}, True),
    ])
    + _family("maxLength-integral-double", {"maxLength": 2.0}, [("ok", "ab", True), ("long", "abc", False)])
    + _family("maxLength-zero", {"maxLength": 0}, [("empty", "", True), ("one", "a", False)])
    + _family("pattern-unanchored", {"pattern": "ing"}, [
        ("inside", "string", True), ("absent", "strong", False), ("number-ignored", 5, True),
    ])
    + _family("pattern-anchored", {"pattern": "^a.c$"}, [
        ("match", "abc", True), ("prefix-only", "abcd", False), ("case-sensitive", "ABC", False),
    ])
    + _family("pattern-digits", {"pattern": "^[0-9]{3}-[0-9]{4}$"}, [("ok", "555-1234", True), ("bad", "5551234", False)])
    + _family("pattern-alternation", {"pattern": "^(sms|email)$"}, [("sms", "sms", True), ("fax", "fax", False)])
    + _family("pattern-regex-value-ignored", {"pattern": "^a"}, [("Regex", Regex("^b"), True)])
    + _family("string-keywords-dropped-for-int-type", {"bsonType": "int", "minLength": 10}, [("int", 5, True)])
    + _family("combined-string", {"bsonType": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"}, [
        ("ok", "abc", True), ("upper", "ABC", False), ("empty", "", False), ("long", "abcdef", False),
    ])
)  # fmt: skip

ENUM_CASES: list[Case] = (
    _family("enum-numbers", {"enum": [1, 2]}, [
        ("int", 1, True), ("double", 1.0, True), ("Int64", Int64(2), True), ("Decimal128", Decimal128("1"), True),
        ("other", 3, False), ("bool-is-not-1", True, False), ("string-is-not-1", "1", False),
        ("array-not-traversed", [1], False), ("missing", MISSING, True),
    ])
    + _family("enum-null", {"enum": [None, "x"]}, [("null", None, True), ("x", "x", True), ("missing", MISSING, True)])
    + _family("enum-strings", {"enum": ["abc"]}, [("same", "abc", True), ("case", "ABC", False)])
    + _family("enum-arrays", {"enum": [[1, 2]]}, [
        ("same", [1, 2], True), ("order-matters", [2, 1], False), ("by-value", [1.0, Int64(2)], True),
    ])
    + _family("enum-objects", {"enum": [{"a": 1, "b": {"c": 2, "d": 3}}]}, [
        ("same", {"a": 1, "b": {"c": 2, "d": 3}}, True), ("field-order-ignored", {"b": {"d": 3, "c": 2}, "a": 1}, True),
        ("extra-field", {"a": 1, "b": {"c": 2, "d": 3}, "e": 4}, False), ("missing-field", {"a": 1}, False),
    ])
    + _family("enum-bools", {"enum": [True]}, [("true", True, True), ("one", 1, False), ("false", False, False)])
    + [
        ("enum-root-object-member", {"enum": [{"_id": 1, "a": 1}, 5]}, {"_id": 1, "a": 1}, True),
        ("enum-root-field-order", {"enum": [{"a": 1, "_id": 2}]}, {"_id": 2, "a": 1}, True),
        ("enum-root-no-match", {"enum": [{"_id": 1, "a": 1}]}, {"_id": 1, "a": 2}, False),
        ("enum-root-no-object-members", {"enum": [1, "a"]}, {"_id": 1}, False),
    ]
)  # fmt: skip

OBJECT_CASES: list[Case] = [
    ("required-present", {"required": ["a"]}, {"a": 1}, True),
    ("required-null-satisfies", {"required": ["a"]}, {"a": None}, True),
    ("required-missing", {"required": ["a"]}, {"b": 1}, False),
    ("required-several-missing-one", {"required": ["a", "b"]}, {"a": 1}, False),
    ("required-not-in-subdocument", {"required": ["a"]}, {"b": {"a": 1}}, False),
    ("required-id-added-by-driver", {"required": ["_id"]}, {}, True),
    ("required-nested-parent-missing", _field({"required": ["g"]}), {}, True),
    ("required-nested-parent-not-object", _field({"required": ["g"]}), {"f": 1}, True),
    ("required-nested-empty-object", _field({"required": ["g"]}), {"f": {}}, False),
    ("required-nested-null", _field({"required": ["g"]}), {"f": {"g": None}}, True),
    ("required-with-properties-present", {"required": ["a"], "properties": {"a": {"bsonType": "int"}}}, {"a": 1}, True),
    ("required-with-properties-wrong", {"required": ["a"], "properties": {"a": {"bsonType": "int"}}}, {"a": "1"}, False),
    ("required-with-properties-missing", {"required": ["a"], "properties": {"a": {"bsonType": "int"}}}, {}, False),
    ("properties-missing-field-ok", {"properties": {"a": {"bsonType": "int"}}}, {}, True),
    ("properties-nested-non-object-ignored", _field({"properties": {"g": {"type": "string"}}}), {"f": 5}, True),
    ("properties-nested-array-ignored", _field({"properties": {"g": {"type": "string"}}}), {"f": [{"g": 1}]}, True),
    ("properties-nested-wrong", _field({"properties": {"g": {"type": "string"}}}), {"f": {"g": 1}}, False),
    ("properties-nested-ok", _field({"properties": {"g": {"type": "string"}}}), {"f": {"g": "x"}}, True),
    ("properties-deep", {"properties": {"a": {"properties": {"b": {"properties": {"c": {"enum": [1]}}}}}}}, {"a": {"b": {"c": 2}}}, False),
    ("additionalProperties-false-with-id", {"properties": {"_id": {}, "a": {}}, "additionalProperties": False}, {"a": 1}, True),
    ("additionalProperties-false-extra", {"properties": {"_id": {}, "a": {}}, "additionalProperties": False}, {"a": 1, "b": 2}, False),
    ("additionalProperties-false-forgets-id", {"properties": {"a": {}}, "additionalProperties": False}, {"a": 1}, False),
    ("additionalProperties-true", {"properties": {"a": {}}, "additionalProperties": True}, {"a": 1, "b": 2}, True),
    ("additionalProperties-schema-ok", {"properties": {"_id": {}}, "additionalProperties": {"bsonType": "int"}}, {"x": 1, "y": 2}, True),
    ("additionalProperties-schema-bad", {"properties": {"_id": {}}, "additionalProperties": {"bsonType": "int"}}, {"x": 1, "y": "2"}, False),
    ("additionalProperties-nested-non-object", _field({"additionalProperties": False}), {"f": 5}, True),
    ("additionalProperties-nested-empty", _field({"additionalProperties": False}), {"f": {}}, True),
    ("additionalProperties-nested-extra", _field({"additionalProperties": False}), {"f": {"x": 1}}, False),
    ("patternProperties-match-ok", {"patternProperties": {"^x": {"bsonType": "string"}}}, {"xa": "s"}, True),
    ("patternProperties-match-bad", {"patternProperties": {"^x": {"bsonType": "string"}}}, {"xa": 1}, False),
    ("patternProperties-no-match", {"patternProperties": {"^x": {"bsonType": "string"}}}, {"ax": 1}, True),
    ("patternProperties-unanchored", {"patternProperties": {"x": {"bsonType": "string"}}}, {"ax": 1}, False),
    ("patternProperties-all-matching-apply", {"patternProperties": {"a": {"bsonType": "string"}, "b": {"minLength": 3}}}, {"ab": "xy"}, False),
    ("patternProperties-closed-ok", {"patternProperties": {"^_id$": {}, "^s_": {"bsonType": "string"}}, "additionalProperties": False}, {"s_a": "x"}, True),
    ("patternProperties-closed-extra", {"patternProperties": {"^_id$": {}, "^s_": {"bsonType": "string"}}, "additionalProperties": False}, {"s_a": "x", "b": 1}, False),
    ("patternProperties-over-properties", {"properties": {"_id": {}, "xa": {"bsonType": "string"}}, "patternProperties": {"^x": {"minLength": 3}}, "additionalProperties": False}, {"xa": "ab"}, False),
    ("patternProperties-and-additional-schema", {"patternProperties": {"^n_": {"bsonType": "int"}}, "additionalProperties": {"bsonType": ["string", "objectId"]}}, {"n_a": 1, "s": "x"}, True),
    ("minProperties-counts-id", {"minProperties": 2}, {"a": 1}, True),
    ("minProperties-only-id", {"minProperties": 2}, {}, False),
    ("maxProperties-only-id", {"maxProperties": 1}, {}, True),
    ("maxProperties-counts-id", {"maxProperties": 1}, {"a": 1}, False),
    ("minProperties-nested-empty", _field({"minProperties": 1}), {"f": {}}, False),
    ("minProperties-nested-non-object", _field({"minProperties": 1}), {"f": 5}, True),
    ("maxProperties-nested", _field({"maxProperties": 1}), {"f": {"a": 1, "b": 2}}, False),
    ("dependencies-property-missing", {"dependencies": {"a": ["b"]}}, {"a": 1}, False),
    ("dependencies-property-ok", {"dependencies": {"a": ["b", "c"]}}, {"a": 1, "b": 2, "c": None}, True),
    ("dependencies-property-partial", {"dependencies": {"a": ["b", "c"]}}, {"a": 1, "b": 2}, False),
    ("dependencies-property-no-trigger", {"dependencies": {"a": ["b"]}}, {"b": 1}, True),
    ("dependencies-property-empty-doc", {"dependencies": {"a": ["b"]}}, {}, True),
    ("dependencies-schema-fails", {"dependencies": {"a": {"required": ["c"]}}}, {"a": 1}, False),
    ("dependencies-schema-ok", {"dependencies": {"a": {"required": ["c"]}}}, {"a": 1, "c": 1}, True),
    ("dependencies-schema-no-trigger", {"dependencies": {"a": {"required": ["c"]}}}, {"c": 1}, True),
    ("dependencies-schema-properties", {"dependencies": {"a": {"properties": {"b": {"bsonType": "int"}}}}}, {"a": 1, "b": "x"}, False),
    ("dependencies-schema-properties-no-trigger", {"dependencies": {"a": {"properties": {"b": {"bsonType": "int"}}}}}, {"b": "x"}, True),
    ("dependencies-nested-non-object", _field({"dependencies": {"a": ["b"]}}), {"f": 5}, True),
    ("dependencies-nested-fails", _field({"dependencies": {"a": ["b"]}}), {"f": {"a": 1}}, False),
    ("dependencies-with-annotations", {"dependencies": {"title": "t", "a": ["b"]}}, {"a": 1, "b": 1}, True),
]  # fmt: skip

ARRAY_CASES: list[Case] = (
    _family("items-schema", {"items": {"bsonType": "int"}}, [
        ("all-ok", [1, 2], True), ("one-bad", [1, "a"], False), ("empty", [], True),
        ("string-ignored", "x", True), ("object-ignored", {"0": "a"}, True),
    ])
    + _family("items-list", {"items": [{"bsonType": "int"}, {"bsonType": "string"}]}, [
        ("ok", [1, "a"], True), ("shorter", [1], True), ("first-bad", ["a"], False),
        ("extra-allowed", [1, "a", 3.5], True), ("second-bad", [1, 2], False),
    ])
    + _family("additionalItems-false", {"items": [{"bsonType": "int"}, {"bsonType": "string"}], "additionalItems": False}, [
        ("exact", [1, "a"], True), ("extra", [1, "a", 3], False), ("shorter", [1], True),
    ])
    + _family("additionalItems-schema", {"items": [{}], "additionalItems": {"bsonType": "bool"}}, [
        ("ok", [1, True, False], True), ("bad", [1, True, 1], False), ("only-positional", ["x"], True),
    ])
    + _family("additionalItems-ignored-with-items-schema", {"items": {"bsonType": "int"}, "additionalItems": False}, [
        ("many", [1, 2, 3], True),
    ])
    + _family("additionalItems-alone-ignored", {"additionalItems": False}, [("array", [1, 2], True)])
    + _family("minItems", {"minItems": 2}, [
        ("short", [1], False), ("ok", [1, 2], True), ("string-ignored", "a", True), ("null-ignored", None, True),
    ])
    + _family("maxItems", {"maxItems": 1}, [
        ("long", [1, 2], False), ("ok", [1], True), ("nested-counts-one", [[1, 2, 3]], True), ("empty", [], True),
    ])
    + _family("uniqueItems", {"uniqueItems": True}, [
        ("distinct", [1, 2], True), ("dup-int", [1, 1], False), ("dup-across-numeric-types", [1, 1.0], False),
        ("dup-Int64-int", [Int64(1), 1], False), ("dup-Decimal128", [Decimal128("2"), 2.0], False),
        ("dup-objects-field-order", [{"x": 1, "y": 1}, {"y": 1, "x": 1}], False),
        ("case-differs", ["foo", "FOO"], True), ("arrays-ordered", [[1, 2], [2, 1]], True),
        ("bool-vs-int", [True, 1], True), ("dup-null", [None, None], False), ("empty", [], True),
        ("string-ignored", "foo", True), ("object-ignored", {"a": 1}, True),
    ])
    + _family("uniqueItems-false", {"uniqueItems": False}, [("dups", [1, 1], True)])
    + _family("array-keywords-dropped-for-string-type", {"bsonType": "string", "minItems": 3}, [("string", "x", True)])
    + [
        ("root-items-no-op", {"items": {"bsonType": "int"}, "minItems": 5, "uniqueItems": True}, {"a": "x"}, True),
        ("root-scalar-no-op", {"minimum": 100, "maxLength": 0, "pattern": "^z", "multipleOf": 7}, {"a": 1}, True),
        ("items-of-objects", _field({"items": {"bsonType": "object", "required": ["id"]}}), {"f": [{"id": 1}, {}]}, False),
    ]
)  # fmt: skip

LOGICAL_CASES: list[Case] = (
    _family("allOf", {"allOf": [{"bsonType": "int"}, {"minimum": 5}]}, [
        ("both", 6, True), ("second-fails", 4, False), ("first-fails", 6.5, False), ("missing", MISSING, True),
    ])
    + _family("anyOf", {"anyOf": [{"bsonType": "string"}, {"bsonType": "int"}]}, [
        ("string", "x", True), ("int", 1, True), ("double", 1.5, False),
    ])
    + _family("oneOf", {"oneOf": [{"minimum": 5}, {"maximum": 10}]}, [
        ("both-match", 7, False), ("only-max", 3, True), ("only-min", 12, True), ("non-number-matches-both", "x", False),
    ])
    + _family("oneOf-types", {"oneOf": [{"bsonType": "string"}, {"bsonType": "number"}]}, [
        ("string", "x", True), ("bool", True, False),
    ])
    + _family("not", {"not": {"bsonType": "string"}}, [("string", "x", False), ("int", 1, True), ("missing", MISSING, True)])
    + _family("not-enum", {"not": {"enum": ["admin"]}}, [("admin", "admin", False), ("user", "user", True)])
    + [
        ("root-allOf-ok", {"allOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": 1, "b": 1}, True),
        ("root-allOf-fails", {"allOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": 1}, False),
        ("root-anyOf-ok", {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"b": 1}, True),
        ("root-anyOf-fails", {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"c": 1}, False),
        ("root-oneOf-both", {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": 1, "b": 1}, False),
        ("root-oneOf-one", {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": 1}, True),
        ("root-not-required", {"not": {"required": ["secret"]}}, {"a": 1}, True),
        ("root-not-required-fails", {"not": {"required": ["secret"]}}, {"secret": 1}, False),
        ("root-allOf-non-object-type", {"allOf": [{"type": "string"}]}, {"a": 1}, False),
        ("root-not-non-object-type", {"not": {"type": "string"}}, {"a": 1}, True),
        ("root-anyOf-properties", {"anyOf": [{"properties": {"kind": {"enum": ["a"]}}, "required": ["x"]}, {"properties": {"kind": {"enum": ["b"]}}, "required": ["y"]}]}, {"kind": "b", "y": 1}, True),
    ]
)  # fmt: skip

METADATA_CASES: list[Case] = [
    ("title-description-no-effect", {"title": "t", "description": "d", "properties": {"f": {"title": "x", "description": "y"}}}, {"f": 1}, True),
    ("empty-schema", {}, {"anything": [1, {"x": None}]}, True),
    ("empty-property-schema", _field({}), {"f": MinKey()}, True),
]  # fmt: skip

MODEL_LIKE_CASES: list[Case] = [
    (
        f"model-like-{cid}",
        {
            "bsonType": "object",
            "required": ["_id", "tenantId", "channel", "status", "sendAt", "attempts"],
            "additionalProperties": False,
            "properties": {
                "_id": {"bsonType": "objectId"},
                "tenantId": {"bsonType": "string", "minLength": 1},
                "channel": {"enum": ["sms", "email"]},
                "status": {"bsonType": "string", "enum": ["scheduled", "sent"]},
                "sendAt": {"bsonType": "date"},
                "attempts": {"bsonType": ["int", "long"], "minimum": 0},
                "payload": {"bsonType": "object"},
                "error": {"bsonType": "string", "maxLength": 20},
            },
        },
        {"_id": ObjectId("65a0c0ffee0000000000cafe"), "tenantId": "t1", "channel": "sms", "status": "scheduled",
         "sendAt": dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc), "attempts": 0} | extra,
        valid,
    )
    for cid, extra, valid in [
        ("valid", {}, True),
        ("with-payload", {"payload": {"body": "hi"}}, True),
        ("extra-field", {"note": "x"}, False),
        ("bad-channel", {"channel": "fax"}, False),
        ("negative-attempts", {"attempts": -1}, False),
        ("long-attempts", {"attempts": Int64(3)}, True),
        ("double-attempts", {"attempts": 3.0}, False),
        ("empty-tenant", {"tenantId": ""}, False),
        ("string-date", {"sendAt": "2026-01-05"}, False),
        ("null-error", {"error": None}, False),
        ("long-error", {"error": "x" * 21}, False),
        ("null-payload", {"payload": None}, False),
    ]
]  # fmt: skip

VALIDATION_CASES: list[Case] = (
    _type_matrix() + TYPE_SEMANTICS + NUMBER_CASES + STRING_CASES + ENUM_CASES + OBJECT_CASES
    + ARRAY_CASES + LOGICAL_CASES + METADATA_CASES + MODEL_LIKE_CASES
)  # fmt: skip

#: Case counts per keyword family, for the report and a sanity test.
FAMILY_COUNTS: dict[str, int] = {
    "types (matrix)": len(_type_matrix()),
    "types (semantics)": len(TYPE_SEMANTICS),
    "numbers": len(NUMBER_CASES),
    "strings": len(STRING_CASES),
    "enum": len(ENUM_CASES),
    "objects": len(OBJECT_CASES),
    "arrays": len(ARRAY_CASES),
    "logical": len(LOGICAL_CASES),
    "metadata": len(METADATA_CASES),
    "model-like": len(MODEL_LIKE_CASES),
}

VALIDATOR_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("schema-and-operator-ok", {"$jsonSchema": {"required": ["a"]}, "a": {"$gt": 5}}, {"a": 6}, True),
    ("schema-and-operator-op-fails", {"$jsonSchema": {"required": ["a"]}, "a": {"$gt": 5}}, {"a": 4}, False),
    ("schema-and-operator-schema-fails", {"$jsonSchema": {"required": ["b"]}, "a": {"$gt": 5}}, {"a": 6}, False),
    ("and-of-schema-and-exists", {"$and": [{"$jsonSchema": {"properties": {"a": {"bsonType": "int"}}}}, {"b": {"$exists": True}}]}, {"a": 1, "b": 1}, True),
    ("and-of-schema-and-exists-fails", {"$and": [{"$jsonSchema": {"properties": {"a": {"bsonType": "int"}}}}, {"b": {"$exists": True}}]}, {"a": 1}, False),
    ("or-of-schemas", {"$or": [{"$jsonSchema": {"required": ["a"]}}, {"$jsonSchema": {"required": ["b"]}}]}, {"b": 1}, True),
    ("or-of-schemas-fails", {"$or": [{"$jsonSchema": {"required": ["a"]}}, {"$jsonSchema": {"required": ["b"]}}]}, {"c": 1}, False),
    ("nor-of-schema", {"$nor": [{"$jsonSchema": {"required": ["secret"]}}]}, {"secret": 1}, False),
    ("plain-equality", {"status": {"$in": ["a", "b"]}}, {"status": "a"}, True),
    ("plain-equality-fails", {"status": {"$in": ["a", "b"]}}, {"status": "c"}, False),
    ("plain-type-operator", {"n": {"$type": "int"}}, {"n": 1.5}, False),
    ("alwaysTrue-with-schema", {"$alwaysTrue": 1, "$jsonSchema": {"required": ["a"]}}, {"a": 1}, True),
    ("alwaysFalse", {"$alwaysFalse": 1}, {"a": 1}, False),
    ("comment-is-ignored", {"$comment": "why", "$jsonSchema": {"required": ["a"]}}, {"a": 1}, True),
    ("expr-compares-fields", {"$expr": {"$lt": ["$start", "$end"]}}, {"start": 1, "end": 2}, True),
    ("expr-compares-fields-fails", {"$expr": {"$lt": ["$start", "$end"]}}, {"start": 3, "end": 2}, False),
]  # fmt: skip

CodeSpec = int | tuple[int, ...]

PARSE_ERROR_CASES: list[tuple[str, dict[str, Any], CodeSpec]] = (
    [(f"unsupported-{kw}", {"$jsonSchema": {kw: v}}, (9, 40415)) for kw, v in [
        ("$ref", "#/definitions/a"), ("$schema", "http://json-schema.org/draft-04/schema#"),
        ("default", 1), ("definitions", {}), ("format", "email"), ("id", "x"),
    ]]
    + [(f"unknown-{kw}", {"$jsonSchema": {kw: v}}, 9) for kw, v in [
        ("const", 1), ("contains", {}), ("propertyNames", {}), ("if", {}), ("then", {}), ("else", {}),
        ("examples", []), ("$comment", "c"), ("$id", "x"), ("invalid", 1), ("require", ["a"]),
        ("exclusive_maximum", True), ("BsonType", "int"),
    ]]
    + [
        ("unknown-nested-in-properties", {"$jsonSchema": {"properties": {"a": {"const": 1}}}}, 9),
        ("unsupported-nested-in-items", {"$jsonSchema": {"properties": {"a": {"items": {"format": "date"}}}}}, (9, 40415)),
        ("type-and-bsonType", {"$jsonSchema": {"type": "object", "bsonType": "object"}}, 9),
        ("type-and-bsonType-nested", {"$jsonSchema": {"properties": {"a": {"type": "string", "bsonType": "string"}}}}, 9),
        ("type-integer", {"$jsonSchema": {"properties": {"a": {"type": "integer"}}}}, 9),
        ("type-integer-in-array", {"$jsonSchema": {"properties": {"a": {"type": ["integer", "string"]}}}}, 9),
        ("type-duplicate", {"$jsonSchema": {"properties": {"a": {"type": ["string", "string"]}}}}, 9),
        ("type-empty-array", {"$jsonSchema": {"properties": {"a": {"bsonType": []}}}}, 9),
        ("type-number-code", {"$jsonSchema": {"properties": {"a": {"type": 1}}}}, 14),
        ("bsonType-number-code", {"$jsonSchema": {"properties": {"a": {"bsonType": 16}}}}, 14),
        ("bsonType-number-code-in-array", {"$jsonSchema": {"properties": {"a": {"bsonType": ["int", 2]}}}}, 14),
        ("bsonType-object-value", {"$jsonSchema": {"properties": {"a": {"bsonType": {}}}}}, 14),
        ("title-not-string", {"$jsonSchema": {"title": 1}}, 14),
        ("description-not-string", {"$jsonSchema": {"properties": {"a": {"description": ["d"]}}}}, 14),
        ("enum-not-array", {"$jsonSchema": {"properties": {"a": {"enum": "a"}}}}, 14),
        ("enum-object", {"$jsonSchema": {"properties": {"a": {"enum": {"a": 1}}}}}, 14),
        ("enum-empty", {"$jsonSchema": {"properties": {"a": {"enum": []}}}}, 9),
        ("enum-duplicate", {"$jsonSchema": {"properties": {"a": {"enum": [1, 1]}}}}, 9),
        ("enum-duplicate-numeric-types", {"$jsonSchema": {"properties": {"a": {"enum": [1, 1.0]}}}}, 9),
        ("enum-duplicate-Int64", {"$jsonSchema": {"properties": {"a": {"enum": [Int64(7), 7]}}}}, 9),
        ("enum-duplicate-field-order", {"$jsonSchema": {"properties": {"a": {"enum": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}}}}, 9),
        ("enum-duplicate-at-root", {"$jsonSchema": {"enum": [{"a": 1}, {"a": 1}]}}, 9),
        ("required-not-array", {"$jsonSchema": {"required": "a"}}, 14),
        ("required-non-string", {"$jsonSchema": {"required": ["a", 1]}}, 14),
        ("required-duplicate", {"$jsonSchema": {"required": ["a", "a"]}}, 9),
        ("required-empty", {"$jsonSchema": {"required": []}}, 9),
        ("required-empty-nested", {"$jsonSchema": {"properties": {"a": {"required": []}}}}, 9),
        ("allOf-object", {"$jsonSchema": {"allOf": {}}}, 14),
        ("allOf-string", {"$jsonSchema": {"allOf": "x"}}, 14),
        ("allOf-empty", {"$jsonSchema": {"allOf": []}}, 2),
        ("anyOf-empty", {"$jsonSchema": {"anyOf": []}}, 2),
        ("oneOf-empty", {"$jsonSchema": {"oneOf": []}}, 2),
        ("allOf-non-object-element", {"$jsonSchema": {"allOf": [1]}}, 14),
        ("anyOf-non-object-element", {"$jsonSchema": {"anyOf": [{}, "x"]}}, 14),
        ("oneOf-not-array", {"$jsonSchema": {"oneOf": {"type": "string"}}}, 14),
        ("allOf-invalid-subschema", {"$jsonSchema": {"allOf": [{"type": "integer"}]}}, 9),
        ("not-array", {"$jsonSchema": {"not": []}}, 14),
        ("not-string", {"$jsonSchema": {"not": "x"}}, 14),
        ("properties-not-object", {"$jsonSchema": {"properties": "x"}}, 14),
        ("properties-value-number", {"$jsonSchema": {"properties": {"a": 1}}}, 14),
        ("properties-value-string", {"$jsonSchema": {"properties": {"a": "string"}}}, 14),
        ("exclusiveMaximum-without-maximum", {"$jsonSchema": {"properties": {"a": {"exclusiveMaximum": True}}}}, 9),
        ("exclusiveMinimum-without-minimum", {"$jsonSchema": {"properties": {"a": {"exclusiveMinimum": False}}}}, 9),
        ("exclusiveMaximum-number", {"$jsonSchema": {"properties": {"a": {"maximum": 5, "exclusiveMaximum": 1}}}}, 14),
        ("exclusiveMinimum-string", {"$jsonSchema": {"properties": {"a": {"minimum": 5, "exclusiveMinimum": "true"}}}}, 14),
        ("maximum-string", {"$jsonSchema": {"properties": {"a": {"maximum": "5"}}}}, 14),
        ("minimum-null", {"$jsonSchema": {"properties": {"a": {"minimum": None}}}}, 14),
        ("minimum-bool", {"$jsonSchema": {"properties": {"a": {"minimum": True}}}}, 14),
        ("multipleOf-zero", {"$jsonSchema": {"properties": {"a": {"multipleOf": 0}}}}, 9),
        ("multipleOf-zero-double", {"$jsonSchema": {"properties": {"a": {"multipleOf": 0.0}}}}, 9),
        ("multipleOf-negative", {"$jsonSchema": {"properties": {"a": {"multipleOf": -1}}}}, 9),
        ("multipleOf-string", {"$jsonSchema": {"properties": {"a": {"multipleOf": "2"}}}}, 14),
        ("multipleOf-negative-at-root", {"$jsonSchema": {"multipleOf": -2}}, 9),
    ]
    + [(f"{kw}-{vid}", {"$jsonSchema": {"properties": {"a": {kw: v}}}}, 9) for kw in (
        "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    ) for vid, v in [("negative", -1), ("string", "0"), ("object", {}), ("fraction", 1.5), ("nan", math.nan), ("bool", True)]]
    + [
        ("minProperties-negative-at-root", {"$jsonSchema": {"minProperties": -1}}, 9),
        ("maxLength-negative-at-root", {"$jsonSchema": {"maxLength": -1}}, 9),
        ("pattern-number", {"$jsonSchema": {"properties": {"a": {"pattern": 1}}}}, 14),
        ("pattern-regex-object", {"$jsonSchema": {"properties": {"a": {"pattern": Regex("^a")}}}}, 14),
        ("pattern-invalid-regex", {"$jsonSchema": {"properties": {"a": {"pattern": "("}}}}, 51091),
        ("uniqueItems-int", {"$jsonSchema": {"properties": {"a": {"uniqueItems": 1}}}}, 14),
        ("uniqueItems-double", {"$jsonSchema": {"properties": {"a": {"uniqueItems": 1.0}}}}, 14),
        ("uniqueItems-string", {"$jsonSchema": {"properties": {"a": {"uniqueItems": "true"}}}}, 14),
        ("additionalProperties-string", {"$jsonSchema": {"additionalProperties": "x"}}, 14),
        ("additionalProperties-number", {"$jsonSchema": {"additionalProperties": 1}}, 14),
        ("additionalProperties-invalid-subschema", {"$jsonSchema": {"additionalProperties": {"type": "int"}}}, 2),
        ("additionalItems-string", {"$jsonSchema": {"properties": {"a": {"additionalItems": "x"}}}}, 14),
        ("additionalItems-array", {"$jsonSchema": {"properties": {"a": {"items": [], "additionalItems": []}}}}, 14),
        ("items-string", {"$jsonSchema": {"properties": {"a": {"items": "x"}}}}, 14),
        ("items-number", {"$jsonSchema": {"properties": {"a": {"items": 1}}}}, 14),
        ("items-array-of-numbers", {"$jsonSchema": {"properties": {"a": {"items": [{}, 1]}}}}, 14),
        ("patternProperties-string", {"$jsonSchema": {"patternProperties": "x"}}, 14),
        ("patternProperties-value-number", {"$jsonSchema": {"patternProperties": {"^a": 1}}}, 14),
        ("dependencies-string", {"$jsonSchema": {"dependencies": "x"}}, 14),
        ("dependencies-value-string", {"$jsonSchema": {"dependencies": {"a": "b"}}}, 14),
        ("dependencies-value-number", {"$jsonSchema": {"dependencies": {"a": 1}}}, 14),
        ("dependencies-empty-array", {"$jsonSchema": {"dependencies": {"a": []}}}, 9),
        ("dependencies-duplicate", {"$jsonSchema": {"dependencies": {"a": ["b", "b"]}}}, 9),
        ("dependencies-non-string-member", {"$jsonSchema": {"dependencies": {"a": [1]}}}, 14),
        ("dependencies-invalid-subschema", {"$jsonSchema": {"dependencies": {"a": {"bsonType": "boolean"}}}}, 2),
        ("jsonSchema-not-object", {"$jsonSchema": "x"}, 14),
        ("jsonSchema-array", {"$jsonSchema": [{"required": ["a"]}]}, 14),
        ("where", {"$where": "this.a == 1"}, 2),
        ("text", {"$text": {"$search": "x"}}, 2),
        ("near", {"loc": {"$near": [0, 0]}}, 2),
        ("nearSphere", {"loc": {"$nearSphere": [0, 0]}}, 2),
        ("unknown-top-level-operator", {"$foo": 1}, 2),
        ("unknown-field-operator", {"a": {"$foo": 1}}, 2),
        ("and-empty", {"$and": []}, 2),
        ("invalid-schema-inside-and", {"$and": [{"$jsonSchema": {"required": []}}]}, 9),
        ("encrypt-with-bsonType", {"$jsonSchema": {"properties": {"ssn": {"encrypt": {}, "bsonType": "binData"}}}}, 9),
        ("encrypt-and-encryptMetadata", {"$jsonSchema": {"properties": {"ssn": {"encrypt": {}, "encryptMetadata": {"algorithm": "AEAD_AES_256_CBC_HMAC_SHA_512-Random"}}}}}, (9, 224)),
    ]
    + [(f"bad-alias-{kw}-{name}", {"$jsonSchema": {"properties": {"a": {kw: name}}}}, 2) for kw, name in [
        ("bsonType", "boolean"), ("bsonType", "Int"), ("bsonType", "String"), ("bsonType", "uuid"),
        ("type", "bool"), ("type", "int"), ("type", "date"), ("type", "double"), ("type", "objectId"),
        ("type", "long"), ("type", "decimal"), ("type", "binData"), ("type", "regex"), ("type", "timestamp"),
        ("type", "minKey"), ("type", "Object"),
    ]]
)  # fmt: skip

ERRINFO_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "bsonType-mismatch",
        {"properties": {"name": {"bsonType": "string"}}},
        {"name": 42},
        {"operatorName": "$jsonSchema", "schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [
            {"propertyName": "name", "details": [{"operatorName": "bsonType", "specifiedAs": {"bsonType": "string"},
             "reason": "type did not match", "consideredValue": 42, "consideredType": "int"}]}]}]},
    ),
    (
        "type-mismatch-long",
        {"properties": {"n": {"type": "string"}}},
        {"n": Int64(1)},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [
            {"propertyName": "n", "details": [{"operatorName": "type", "specifiedAs": {"type": "string"},
             "reason": "type did not match", "consideredType": "long"}]}]}]},
    ),
    (
        "required-missing",
        {"required": ["b", "a", "c"]},
        {"c": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "required", "specifiedAs": {"required": ["b", "a", "c"]},
                                      "missingProperties": ["a", "b"]}]},
    ),
    (
        "title-and-description",
        {"title": "Tenant", "description": "a tenant", "required": ["name"]},
        {},
        {"operatorName": "$jsonSchema", "title": "Tenant", "description": "a tenant"},
    ),
    (
        "properties-before-required",
        {"required": ["a"], "properties": {"b": {"bsonType": "int"}}},
        {"b": "x"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties"}, {"operatorName": "required", "missingProperties": ["a"]}]},
    ),
    (
        "property-title-description-echoed",
        {"properties": {"b": {"bsonType": "int", "description": "must be an int"}}},
        {"b": "x"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [
            {"propertyName": "b", "description": "must be an int"}]}]},
    ),
    (
        "minimum",
        {"properties": {"n": {"minimum": 5}}},
        {"n": 3},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "n", "details": [
            {"operatorName": "minimum", "specifiedAs": {"minimum": 5}, "reason": "comparison failed", "consideredValue": 3}]}]}]},
    ),
    (
        "maximum",
        {"properties": {"n": {"maximum": 5}}},
        {"n": 6.5},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "n", "details": [
            {"operatorName": "maximum", "reason": "comparison failed", "consideredValue": 6.5}]}]}]},
    ),
    (
        "wrong-type-only-type-reported",
        {"properties": {"n": {"bsonType": "int", "minimum": 5}}},
        {"n": "x"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "n", "details": [
            {"operatorName": "bsonType", "reason": "type did not match"}]}]}]},
    ),
    (
        "minLength",
        {"properties": {"s": {"minLength": 3}}},
        {"s": "ab"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "s", "details": [
            {"operatorName": "minLength", "specifiedAs": {"minLength": 3}, "reason": "specified string length was not satisfied",
             "consideredValue": "ab"}]}]}]},
    ),
    (
        "maxLength",
        {"properties": {"s": {"maxLength": 1}}},
        {"s": "ab"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "s", "details": [
            {"operatorName": "maxLength", "reason": "specified string length was not satisfied"}]}]}]},
    ),
    (
        "pattern",
        {"properties": {"s": {"pattern": "^a"}}},
        {"s": "ba"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "s", "details": [
            {"operatorName": "pattern", "specifiedAs": {"pattern": "^a"}, "reason": "regular expression did not match",
             "consideredValue": "ba"}]}]}]},
    ),
    (
        "multipleOf",
        {"properties": {"n": {"multipleOf": 2}}},
        {"n": 3},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "n", "details": [
            {"operatorName": "multipleOf", "specifiedAs": {"multipleOf": 2},
             "reason": "considered value is not a multiple of the specified value", "consideredValue": 3}]}]}]},
    ),
    (
        "enum",
        {"properties": {"c": {"enum": ["sms", "email"]}}},
        {"c": "fax"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "c", "details": [
            {"operatorName": "enum", "specifiedAs": {"enum": ["sms", "email"]}, "reason": "value was not found in enum",
             "consideredValue": "fax"}]}]}]},
    ),
    (
        "minItems",
        {"properties": {"a": {"minItems": 2}}},
        {"a": [1]},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "minItems", "specifiedAs": {"minItems": 2}, "reason": "array did not match specified length",
             "consideredValue": [1], "numberOfItems": 1}]}]}]},
    ),
    (
        "uniqueItems",
        {"properties": {"a": {"uniqueItems": True}}},
        {"a": [1, 2, 1]},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "uniqueItems", "specifiedAs": {"uniqueItems": True}, "reason": "found a duplicate item",
             "consideredValue": [1, 2, 1], "duplicatedValue": 1}]}]}]},
    ),
    (
        "items-schema",
        {"properties": {"a": {"items": {"bsonType": "int"}}}},
        {"a": [1, "x"]},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "items", "reason": "At least one item did not match the sub-schema", "itemIndex": 1}]}]}]},
    ),
    (
        "additionalProperties-false",
        {"properties": {"_id": {}, "a": {}}, "additionalProperties": False},
        {"a": 1, "b": 2},
        {"schemaRulesNotSatisfied": [{"operatorName": "additionalProperties", "specifiedAs": {"additionalProperties": False},
                                      "additionalProperties": ["b"]}]},
    ),
    (
        "minProperties",
        {"minProperties": 3},
        {"_id": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "minProperties", "specifiedAs": {"minProperties": 3},
                                      "reason": "specified number of properties was not satisfied", "numberOfProperties": 1}]},
    ),
    (
        "dependencies-property",
        {"dependencies": {"a": ["b"]}},
        {"a": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "dependencies", "failingDependencies": [
            {"conditionalProperty": "a", "missingProperties": ["b"]}]}]},
    ),
    (
        "not",
        {"not": {"required": ["secret"]}},
        {"secret": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "not", "reason": "child expression matched"}]},
    ),
    (
        "oneOf-more-than-one",
        {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"a": 1, "b": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "oneOf", "reason": "more than one subschema matched",
                                      "matchingSchemaIndexes": [0, 1]}]},
    ),
    (
        "anyOf-none",
        {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"c": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "anyOf", "schemasNotSatisfied": [{"index": 0}, {"index": 1}]}]},
    ),
    (
        "allOf-second",
        {"allOf": [{"required": ["c"]}, {"required": ["b"]}]},
        {"c": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "allOf", "schemasNotSatisfied": [{"index": 1}]}]},
    ),
    # The following mirror the server's unit tests (doc_validation_error_json_schema_test.cpp).
    (
        "server-MinLengthNonString",
        {"properties": {"a": {"type": "string", "minLength": 4}}},
        {"a": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "minLength", "specifiedAs": {"minLength": 4}, "reason": "type did not match",
             "consideredType": "int", "expectedType": "string", "consideredValue": 1},
            {"operatorName": "type", "specifiedAs": {"type": "string"}, "reason": "type did not match",
             "consideredValue": 1, "consideredType": "int"}]}]}]},
    ),
    (
        "server-PatternNonString",
        {"properties": {"a": {"type": "string", "pattern": "^S"}}},
        {"a": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "pattern", "reason": "type did not match", "consideredType": "int",
             "expectedTypes": ["regex", "string", "symbol"]},
            {"operatorName": "type", "consideredType": "int"}]}]}]},
    ),
    (
        "server-MultipleOfNonNumeric",
        {"properties": {"a": {"type": "number", "multipleOf": 2.1}}},
        {"a": "foo"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "multipleOf", "reason": "type did not match", "consideredType": "string",
             "expectedTypes": ["decimal", "double", "int", "long"]},
            {"operatorName": "type", "consideredType": "string"}]}]}]},
    ),
    (
        "server-BasicMultipleOf",
        {"properties": {"a": {"type": "number", "multipleOf": 2.1}}},
        {"a": 1.1},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "multipleOf", "specifiedAs": {"multipleOf": 2.1},
             "reason": "considered value is not a multiple of the specified value", "consideredValue": 1.1}]}]}]},
    ),
    (
        "server-NestedPropertiesMultipleFailingClauses",
        {"properties": {"a": {"properties": {"b": {"minimum": 10, "maximum": -10}}}}},
        {"a": {"b": 5}},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "b", "details": [
                {"operatorName": "maximum", "specifiedAs": {"maximum": -10}, "reason": "comparison failed", "consideredValue": 5},
                {"operatorName": "minimum", "specifiedAs": {"minimum": 10}, "reason": "comparison failed", "consideredValue": 5},
            ]}]}]}]}]},
    ),
    (
        "server-ExclusiveMinimum",
        {"properties": {"a": {"minimum": 1, "exclusiveMinimum": True}}},
        {"a": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "minimum", "specifiedAs": {"minimum": 1, "exclusiveMinimum": True},
             "reason": "comparison failed", "consideredValue": 1}]}]}]},
    ),
    (
        "server-NoTopLevelObjectTypeRejectsAllDocuments",
        {"type": "number", "properties": {"a": {"properties": {"b": {"minimum": 1}}}}},
        {"a": {"b": 1}},
        {"operatorName": "$jsonSchema", "reason": "expression always evaluates to false",
         "specifiedAs": {"$jsonSchema": {"type": "number", "properties": {"a": {"properties": {"b": {"minimum": 1}}}}}}},
    ),
    (
        "server-TypeRestrictionContradictsSpecifiedType",
        {"type": "object", "properties": {"a": {"type": "string", "minimum": 5}}},
        {"a": 6},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "type", "specifiedAs": {"type": "string"}, "reason": "type did not match",
             "consideredValue": 6, "consideredType": "int"}]}]}]},
    ),
    (
        "server-PropertiesObjectTypeMismatch",
        {"properties": {"a": {"type": "object", "properties": {"b": {"minimum": 10}}}}},
        {"a": "eleven"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "type", "consideredType": "string"}]}]}]},
    ),
    (
        "server-TopLevelEnum",
        {"enum": [{"a": 1, "b": 1}, {"a": 0, "b": {"c": [1, 2, 3]}}]},
        {"a": 0, "b": 1, "_id": 1},
        {"schemaRulesNotSatisfied": [{"operatorName": "enum", "reason": "value was not found in enum",
                                      "consideredValue": {"a": 0, "b": 1, "_id": 1}}]},
    ),
    (
        "server-OneOfAllFailingClauses",
        {"properties": {"a": {"oneOf": [{"minimum": 4}, {"maximum": 1}, {"bsonType": "int"}]}}},
        {"a": 2.1},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "oneOf", "schemasNotSatisfied": [
                {"index": 0, "details": [{"operatorName": "minimum", "consideredValue": 2.1}]},
                {"index": 1, "details": [{"operatorName": "maximum", "consideredValue": 2.1}]},
                {"index": 2, "details": [{"operatorName": "bsonType", "consideredType": "double"}]},
            ]}]}]}]},
    ),
    (
        "server-NestedAnyOf",
        {"properties": {"a": {"anyOf": [{"type": "string"}, {"maximum": 3}]}}},
        {"a": 4},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "anyOf", "schemasNotSatisfied": [
                {"index": 0, "details": [{"operatorName": "type", "consideredType": "int"}]},
                {"index": 1, "details": [{"operatorName": "maximum", "consideredValue": 4}]},
            ]}]}]}]},
    ),
    (
        "server-CombineLogicalKeywords",
        {"properties": {"a": {"allOf": [{"bsonType": "int"}, {"oneOf": [{"minimum": 1}, {"enum": [6, 7, 8]}]}]}}},
        {"a": 0},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "allOf", "schemasNotSatisfied": [{"index": 1, "details": [
                {"operatorName": "oneOf", "schemasNotSatisfied": [
                    {"index": 0, "details": [{"operatorName": "minimum", "specifiedAs": {"minimum": 1}}]},
                    {"index": 1, "details": [{"operatorName": "enum", "specifiedAs": {"enum": [6, 7, 8]}}]},
                ]}]}]}]}]}]},
    ),
    (
        "server-NotOverEmptySchema",
        {"not": {}},
        {},
        {"schemaRulesNotSatisfied": [{"operatorName": "not", "reason": "child expression matched"}]},
    ),
    (
        "server-NotUnderProperties",
        {"properties": {"a": {"not": {}}}},
        {"a": "foo"},
        {"schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [{"propertyName": "a", "details": [
            {"operatorName": "not", "reason": "child expression matched"}]}]}]},
    ),
]  # fmt: skip
