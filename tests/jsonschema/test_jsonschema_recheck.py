"""Re-checking only the changed fields of a document known valid gives the full verdict.

The embedded database validates an update of a document that satisfied the
validator by checking only the top-level fields the update changed, plus the
document-wide rules (``CompiledValidator.still_matches``). For random root
schemas, valid documents and changes of random fields, that verdict must be
exactly the one a whole-document check gives.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from nsn_store.embedded.validator import compile_validator

FIELDS = ["a", "b", "c", "d"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "x", "long text"]),
    st.lists(st.integers(-2, 2), max_size=3),
    st.fixed_dictionaries({}, optional={"x": st.integers(-2, 2), "y": st.just("s")}),
)
LEAF_SCHEMAS = st.fixed_dictionaries(
    {},
    optional={
        "bsonType": st.sampled_from(["int", "string", "array", "object", "null", "bool"]),
        "minimum": st.integers(-2, 2),
        "maxLength": st.integers(0, 4),
        "maxItems": st.integers(0, 2),
        "minItems": st.integers(1, 2),
        "uniqueItems": st.booleans(),
        "items": st.sampled_from([{"minimum": 0}, {"bsonType": "int"}, [{"minimum": 1}]]),
        "required": st.just(["x"]),
    },
)
PROPERTY_NAMES = st.sampled_from([*FIELDS, "a.x", "b.y"])
ROOT_SCHEMAS = st.fixed_dictionaries(
    {"bsonType": st.just("object")},
    optional={
        "properties": st.dictionaries(PROPERTY_NAMES, LEAF_SCHEMAS, max_size=4),
        "required": st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True),
        "additionalProperties": st.booleans() | LEAF_SCHEMAS,
        "patternProperties": st.just({"^[cd]$": {"bsonType": ["int", "null"]}}),
        "minProperties": st.integers(0, 4),
        "maxProperties": st.integers(1, 5),
        "dependencies": st.sampled_from([{"a": ["b"]}, {"c": {"required": ["d"]}}]),
        "anyOf": st.just([{"required": ["a"]}, {"required": ["b"]}]),  # not split: whole check
        "not": st.just({"required": ["d"]}),
    },
)
DOCUMENTS = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4)
MISSING = object()
PUSHES = st.tuples(
    st.just("$push"), st.lists(st.integers(-3, 3) | st.just("s"), max_size=3), st.integers(-3, 3)
)
CHANGES = st.dictionaries(st.sampled_from(FIELDS), VALUES | st.just(MISSING) | PUSHES, min_size=1)


@settings(max_examples=1500, deadline=None)
@given(ROOT_SCHEMAS, DOCUMENTS, CHANGES)
@example(  # a dotted property is decided by the field its path starts with
    {"bsonType": "object", "properties": {"a.x": {"minimum": 1}}}, {"a": {"x": 1}}, {"a": {"x": -1}}
)
@example(  # a push is checked on what it appends
    {"bsonType": "object", "properties": {"a": {"items": {"minimum": 0}, "maxItems": 3}}},
    {"a": [1, 2]},
    {"a": ("$push", [-1], 0)},
)
@example(  # and on the array's own rules
    {"bsonType": "object", "properties": {"a": {"items": {"minimum": 0}, "maxItems": 3}}},
    {"a": [1, 2]},
    {"a": ("$push", [5, 6], 0)},
)
def test_rechecking_the_changed_fields_gives_the_whole_documents_verdict(
    schema: dict[str, Any], old: dict[str, Any], changes: dict[str, Any]
) -> None:
    validator = compile_validator({"$jsonSchema": schema})
    before = {"_id": 1, **old}
    assume(validator.matches(before))
    after = dict(before)
    changed: dict[str, int | None] = {}
    for field, value in changes.items():
        changed[field] = None
        if value is MISSING:
            after.pop(field, None)
        elif isinstance(value, tuple):  # ("$push", values, slice): as $each/$slice append
            _, values, keep = value
            current = after.get(field, [])
            assume(isinstance(current, list))
            grown = [*current, *values]  # $slice: negative keeps the end, positive the start
            after[field] = grown if not keep else grown[keep:] if keep < 0 else grown[:keep]
            changed[field] = len(values)
        else:
            after[field] = value
    assert validator.still_matches(after, changed) is validator.matches(after)


def test_a_validator_with_query_operators_checks_them_whole() -> None:
    validator = compile_validator(
        {"$jsonSchema": {"properties": {"a": {"bsonType": "int"}}}, "b": {"$gt": 1}}
    )
    assert validator.matches({"_id": 1, "a": 1, "b": 2})
    assert not validator.still_matches({"_id": 1, "a": 1, "b": 0}, {"a": None})  # b is unchanged
