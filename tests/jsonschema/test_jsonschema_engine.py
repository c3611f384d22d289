"""Pure tests of the ``$jsonSchema`` engine: every case table, plus properties.

No database here: ``compile_validator`` is called directly, after adding the
``_id`` the driver would add on insert. The same tables run end to end in
test_jsonschema_conformance.py.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
from _jsonschema_cases import (
    ERRINFO_CASES,
    FAMILY_COUNTS,
    PARSE_ERROR_CASES,
    VALIDATION_CASES,
    VALIDATOR_CASES,
    VALUE_SAMPLES,
)
from bson import Binary, Code, DBRef, Decimal128, Int64, ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo.errors import OperationFailure

from nsn_store.embedded.validator import compile_validator
from nsn_store.jsonschema._bsontypes import bson_equal, bson_type

PREFIX = "Parsing of collection validator failed :: caused by :: "
DRIVER_ID = ObjectId("65a0c0ffee00000000000001")


def as_inserted(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return the document as the server sees it: with the driver-assigned ``_id``."""
    inserted = copy.deepcopy(dict(document))
    inserted.setdefault("_id", DRIVER_ID)
    return inserted


def first_code(spec: int | tuple[int, ...]) -> int:
    return spec if isinstance(spec, int) else spec[0]


def assert_subset(expected: Any, actual: Any, where: str = "details") -> None:
    """Assert that every key of ``expected`` is in ``actual`` with a matching value."""
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: missing {key!r} in {actual!r}"
            assert_subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
            assert_subset(want, got, f"{where}[{index}]")
    else:
        assert bson_equal(expected, actual) and type(expected) is type(actual), (
            f"{where}: {actual!r}"
        )


@pytest.mark.parametrize(
    ("schema", "document", "valid"),
    [pytest.param(*c[1:], id=c[0]) for c in VALIDATION_CASES],
)
def test_schema_accepts_exactly_the_valid_documents(
    schema: dict[str, Any], document: dict[str, Any], valid: bool
) -> None:
    compiled = compile_validator({"$jsonSchema": schema})
    inserted = as_inserted(document)
    assert compiled.matches(inserted) is valid
    details = compiled.explain(inserted)
    assert (details is None) is valid
    if details is not None:
        assert details["operatorName"] == "$jsonSchema"
        assert_explained(details)


def assert_explained(entry: Any) -> None:
    """Assert that a failure explanation never contains an empty list of reasons."""
    if isinstance(entry, Mapping):
        for key in (
            "schemaRulesNotSatisfied",
            "propertiesNotSatisfied",
            "details",
            "schemasNotSatisfied",
        ):
            if key in entry:
                assert entry[key], f"empty {key} in {entry!r}"
        for value in entry.values():
            assert_explained(value)
    elif isinstance(entry, list):
        for item in entry:
            assert_explained(item)


@pytest.mark.parametrize(
    ("validator", "document", "valid"),
    [pytest.param(*c[1:], id=c[0]) for c in VALIDATOR_CASES],
)
def test_validator_ands_schema_with_query_operators(
    validator: dict[str, Any], document: dict[str, Any], valid: bool
) -> None:
    compiled = compile_validator(validator)
    assert compiled.matches(as_inserted(document)) is valid
    assert (compiled.explain(as_inserted(document)) is None) is valid


@pytest.mark.parametrize(
    ("validator", "code"), [pytest.param(*c[1:], id=c[0]) for c in PARSE_ERROR_CASES]
)
def test_invalid_validator_raises_the_server_code(
    validator: dict[str, Any], code: int | tuple[int, ...]
) -> None:
    with pytest.raises(OperationFailure) as caught:
        compile_validator(validator)
    assert caught.value.code == first_code(code)
    details = caught.value.details or {}
    assert details["errmsg"].startswith(PREFIX)
    assert details["code"] == first_code(code) and details["ok"] == 0 and details["codeName"]


def test_query_context_has_no_validator_prefix() -> None:
    with pytest.raises(OperationFailure) as caught:
        compile_validator({"$jsonSchema": {"format": "email"}}, context="query")
    assert (caught.value.details or {})[
        "errmsg"
    ] == "$jsonSchema keyword 'format' is not currently supported"


def test_query_context_allows_where() -> None:
    # A query may use $where; a collection validator may not (code 2, BadValue).
    assert compile_validator({"$where": "true"}, context="query") is not None
    with pytest.raises(OperationFailure, match=r"\$where is not allowed") as caught:
        compile_validator({"$where": "true"})
    assert caught.value.code == 2


def test_encryption_keywords_can_be_refused() -> None:
    schema = {"$jsonSchema": {"properties": {"ssn": {"encrypt": {}}}}}
    allowed = compile_validator(schema)  # accepted by default, and enforced
    assert allowed.matches({"_id": 1, "ssn": Binary(b"\x01", 6)})
    assert not allowed.matches({"_id": 1, "ssn": "123-45-6789"})
    with pytest.raises(OperationFailure) as caught:
        compile_validator(schema, allow_encrypt=False)
    assert caught.value.code == 224


def test_encrypt_accepts_only_binary_subtype_6() -> None:
    compiled = compile_validator({"$jsonSchema": {"properties": {"ssn": {"encrypt": {}}}}})
    assert compiled.matches({"_id": 1, "ssn": Binary(b"\x01", 6)})
    assert not compiled.matches({"_id": 1, "ssn": "123-45-6789"})


def test_root_pattern_is_never_compiled() -> None:
    # The root is always an object, so a root ``pattern`` never applies: no parse error,
    # and every document passes (the same regex one level down is refused).
    compiled = compile_validator({"$jsonSchema": {"pattern": "("}})
    assert compiled.matches({"_id": 1, "s": "anything"})
    assert compiled.explain({"_id": 1}) is None
    with pytest.raises(OperationFailure):
        compile_validator({"$jsonSchema": {"properties": {"s": {"pattern": "("}}}})


def test_invalid_pattern_properties_regex_is_bad_value() -> None:
    with pytest.raises(OperationFailure) as caught:
        compile_validator({"$jsonSchema": {"patternProperties": {"(": {}}}})
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("schema", "document", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in ERRINFO_CASES],
)
def test_errinfo_details_match_the_server_shape(
    schema: dict[str, Any], document: dict[str, Any], expected: dict[str, Any]
) -> None:
    details = compile_validator({"$jsonSchema": schema}).explain(as_inserted(document))
    assert_subset(expected, details)


def test_error_info_names_the_failing_document() -> None:
    info = compile_validator({"$jsonSchema": {"required": ["a"]}}).error_info({"_id": 7})
    assert info["failingDocumentId"] == 7
    assert info["details"]["schemaRulesNotSatisfied"][0]["missingProperties"] == ["a"]


def test_missing_required_property_reports_only_required() -> None:
    schema = {"required": ["n"], "properties": {"n": {"bsonType": "int", "minimum": 5}}}
    details = compile_validator({"$jsonSchema": schema}).explain({"_id": 1})
    assert [entry["operatorName"] for entry in details["schemaRulesNotSatisfied"]] == ["required"]


def test_sibling_errors_follow_the_server_keyword_order() -> None:
    schema = {
        "bsonType": "string",
        "enum": ["aaaa"],
        "minLength": 3,
        "pattern": "^a",
        "maxLength": 4,
    }
    details = compile_validator({"$jsonSchema": {"properties": {"s": schema}}}).explain(
        {"_id": 1, "s": "bbbbbb"}
    )
    entries = details["schemaRulesNotSatisfied"][0]["propertiesNotSatisfied"][0]["details"]
    assert [entry["operatorName"] for entry in entries] == [
        "pattern",
        "maxLength",
        "enum",
    ]


def test_combined_validator_explains_each_failing_clause() -> None:
    compiled = compile_validator({"$jsonSchema": {"required": ["a"]}, "b": {"$gt": 1}})
    details = compiled.explain({"_id": 1, "b": 0})
    assert details["operatorName"] == "$and"
    assert [clause["index"] for clause in details["clausesNotSatisfied"]] == [0, 1]


def test_case_tables_cover_every_keyword_family() -> None:
    assert len(VALIDATION_CASES) >= 700 and len(PARSE_ERROR_CASES) >= 130
    assert all(count > 0 for count in FAMILY_COUNTS.values())
    keywords = {key for _, schema, _, _ in VALIDATION_CASES for key in _keywords(schema)}
    keywords |= {
        key
        for _, validator, _ in PARSE_ERROR_CASES
        for key in _keywords(validator.get("$jsonSchema"))
    }
    assert keywords >= {
        "additionalItems", "additionalProperties", "allOf", "anyOf", "bsonType",
        "dependencies", "description", "enum", "exclusiveMaximum", "exclusiveMinimum", "items",
        "maxItems", "maxLength", "maxProperties", "maximum", "minItems", "minLength",
        "minProperties", "minimum", "multipleOf",
        "not", "oneOf", "pattern", "patternProperties", "properties", "required", "title", "type",
        "uniqueItems", "encrypt", "encryptMetadata",
    }  # fmt: skip


def _keywords(schema: Any) -> set[str]:
    if isinstance(schema, Mapping):
        found = set(schema)
        for value in schema.values():
            found |= _keywords(value)
        return found
    if isinstance(schema, list):
        return set().union(*(_keywords(item) for item in schema)) if schema else set()
    return set()


@pytest.mark.parametrize(
    ("value", "alias"), [pytest.param(v, a, id=i) for i, v, a in VALUE_SAMPLES]
)
def test_bson_type_follows_the_driver_encoder(value: Any, alias: str) -> None:
    assert bson_type(value) == alias


def test_code_with_scope_is_its_own_type() -> None:
    assert bson_type(Code("f", {"x": 1})) == "javascriptWithScope"


@pytest.mark.parametrize(
    "value",
    [2**64, __import__("decimal").Decimal("1"), __import__("uuid").uuid4(), object()],
)
def test_unencodable_values_have_no_bson_type(value: Any) -> None:
    with pytest.raises(TypeError):
        bson_type(value)


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int32_range_classifies_as_int(value: int) -> None:
    assert bson_type(value) == "int"


@given(
    st.one_of(
        st.integers(min_value=-(2**63), max_value=-(2**31) - 1),
        st.integers(min_value=2**31, max_value=2**63 - 1),
    )
)
def test_int64_outside_int32_classifies_as_long(value: int) -> None:
    assert bson_type(value) == "long"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_Int64_is_long_whatever_its_value(value: int) -> None:
    assert bson_type(Int64(value)) == "long"


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_numbers_are_equal_by_value_across_types(value: int) -> None:
    forms = [value, float(value), Int64(value), Decimal128(str(value))]
    assert all(bson_equal(a, b) for a in forms for b in forms)
    assert not bson_equal(value, str(value))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.integers(min_value=-100, max_value=100).map(Int64),
)
BSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@given(BSON_VALUES, BSON_VALUES)
def test_bson_equality_is_symmetric(a: Any, b: Any) -> None:
    assert bson_equal(a, b) is bson_equal(b, a)
    assert bson_equal(a, a)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@given(
    st.dictionaries(st.text(max_size=3), BSON_VALUES, min_size=1, max_size=4),
    st.randoms(),
)
def test_field_order_never_matters_for_enum_of_objects(
    member: dict[str, Any], rng: random.Random
) -> None:
    compiled = compile_validator({"$jsonSchema": {"properties": {"f": {"enum": [member]}}}})
    assert compiled.matches({"_id": 1, "f": _shuffled(member, rng)})


# Differential oracle: on these generic keywords, with JSON-like values (no
# floats, no BSON-only types), MongoDB and draft 4 agree; the library decides.
GENERIC_KEYWORDS = st.fixed_dictionaries(
    {},
    optional={
        "minLength": st.integers(0, 4),
        "maxLength": st.integers(0, 4),
        "pattern": st.sampled_from(["a", "^b", "c$", "[0-9]"]),
        "minItems": st.integers(0, 3),
        "maxItems": st.integers(0, 3),
        "minimum": st.integers(-5, 5),
        "maximum": st.integers(-5, 5),
        "required": st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True),
        "minProperties": st.integers(0, 3),
        "maxProperties": st.integers(0, 3),
        "dependencies": st.dictionaries(
            st.sampled_from("abc"),
            st.lists(st.sampled_from("abc"), min_size=1, max_size=2, unique=True),
            max_size=2,
        ),
        "additionalProperties": st.booleans(),
        "items": st.just({"minimum": 0}),
    },
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(alphabet="abc019", max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from("abcd"), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(GENERIC_KEYWORDS, JSON_VALUES)
def test_generic_keywords_agree_with_the_jsonschema_library(
    keywords: dict[str, Any], value: Any
) -> None:
    schema = {"properties": {"f": keywords}}
    expected = jsonschema.Draft4Validator(schema).is_valid({"f": value})
    compiled = compile_validator({"$jsonSchema": schema})
    assert compiled.matches({"f": value}) is expected
    details = compiled.explain({"f": value})
    assert (details is None) is expected
    if details is not None:
        assert_explained(details)


def test_dbref_is_validated_as_its_document() -> None:
    schema = {"properties": {"r": {"bsonType": "object", "required": ["$ref", "$id"]}}}
    compiled = compile_validator({"$jsonSchema": schema})
    assert compiled.matches({"_id": 1, "r": DBRef("contacts", 1)})
    assert not compiled.matches({"_id": 1, "r": {"$ref": "contacts"}})


def test_query_operator_the_emulator_lacks_is_not_a_silent_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nsn_store.embedded.validator as validator_module

    def unsupported(query: Any, document: Any) -> bool:
        raise NotImplementedError("$expr operator not supported by mongomock")

    monkeypatch.setattr(validator_module, "filter_applies", unsupported)
    with pytest.raises(NotImplementedError):
        compile_validator({"$expr": {"$eq": ["$a", "$b"]}}).matches({"_id": 1})


def test_nor_explains_the_clauses_that_matched() -> None:
    compiled = compile_validator({"$nor": [{"$jsonSchema": {"required": ["secret"]}}]})
    details = compiled.explain({"_id": 1, "secret": 1})
    assert details == {
        "operatorName": "$nor",
        "clausesSatisfied": [
            {
                "index": 0,
                "details": {"operatorName": "$jsonSchema", "reason": "schema matched"},
            }
        ],
    }
