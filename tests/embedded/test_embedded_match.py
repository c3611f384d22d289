"""The compiled matcher (``_match``) gives mongomock's verdict for every document and filter.

A differential property test: random documents (missing fields, nulls, booleans,
ints, longs, doubles with NaN, strings, ObjectIds, dates, arrays, sub-documents)
against random filters of the compiled shapes (scalar equality, ``$eq``,
``$ne``, ordered comparisons, ``$in``/``$nin``, ``$exists``, nested
``$and``/``$or``/``$nor``), compared with mongomock's ``filter_applies``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import Int64, ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from nsn_store.embedded import _mongomock
from nsn_store.embedded._api import simple_projection
from nsn_store.embedded._match import compile_simple
from nsn_store.embedded._mongomock import filter_applies
from nsn_store.testing import mongomock_client

EXAMPLES = int(os.environ.get("NSN_MATCH_EXAMPLES", "300"))
FIELDS = ["a", "b", "c"]
OIDS = [ObjectId("65a000000000000000000001"), ObjectId("65a000000000000000000002")]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-3, 3).map(Int64),
    st.sampled_from([0.0, 1.0, 1.5, -2.5, float("nan")]),
    st.sampled_from(["", "a", "b", "B"]),
    st.sampled_from(OIDS),
    st.sampled_from([datetime(2026, 1, 1), datetime(2026, 1, 2)]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), SCALARS, max_size=2),
)
DOCUMENTS = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)
OPERATORS = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), SCALARS),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(SCALARS, max_size=3)),
    st.tuples(st.just("$exists"), st.booleans()),
)
CONDITIONS = st.one_of(
    SCALARS, st.lists(OPERATORS, min_size=1, max_size=2).map(lambda ops: dict(ops))
)
FIELD_FILTERS = st.dictionaries(st.sampled_from(FIELDS), CONDITIONS, max_size=3)
FILTERS = st.recursive(
    FIELD_FILTERS,
    lambda inner: st.tuples(
        FIELD_FILTERS, st.sampled_from(["$and", "$or", "$nor"]), st.lists(inner, min_size=1)
    ).map(lambda t: {**t[0], t[1]: t[2]}),
    max_leaves=4,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(spec=FILTERS, documents=st.lists(DOCUMENTS, max_size=6))
def test_the_compiled_matcher_agrees_with_mongomock(
    spec: dict[str, Any], documents: list[dict[str, Any]]
) -> None:
    compiled = compile_simple(spec)
    assert compiled is not None, spec
    for doc in documents:
        assert compiled(doc) == filter_applies(spec, doc), (spec, doc)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"a": {"$regex": "^x"}}, id="regex"),
        pytest.param({"a.b": 1}, id="dotted"),
        pytest.param({"a": {"x": 1}}, id="sub-document"),
        pytest.param({"a": [1, 2]}, id="array"),
        pytest.param({"$expr": {"$eq": ["$a", 1]}}, id="expr"),
        pytest.param({"a": {"$elemMatch": {"$gt": 1}}}, id="elemMatch"),
        pytest.param({"a": {"$in": [{"x": 1}]}}, id="in-documents"),
        pytest.param({"$and": []}, id="empty-and"),
    ],
)
def test_other_shapes_are_left_to_mongomock(spec: dict[str, Any]) -> None:
    assert compile_simple(spec) is None


# --- the other fast paths: projections and datetime patching ------------------------

PROJECTIONS = st.one_of(
    st.dictionaries(st.sampled_from(["_id", *FIELDS]), st.sampled_from([0, 1]), max_size=3),
    st.tuples(st.sampled_from(FIELDS), st.sampled_from([0, 1]), st.sampled_from([0, 1])).map(
        lambda t: {t[0]: t[1], "_id": t[2]}
    ),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(document=DOCUMENTS, projection=PROJECTIONS)
def test_a_simple_projection_is_mongomocks_field_for_field_and_in_order(
    document: dict[str, Any], projection: dict[str, int]
) -> None:
    document = {"_id": 7, **document}
    collection = mongomock_client()["p"]["c"]
    try:
        expected = collection._copy_only_fields(document, dict(projection), dict)
    except ValueError:  # mongomock refuses a mixed projection
        assert simple_projection(document, projection) is None
        return
    found = simple_projection(document, projection)
    if found is None:  # {} (the whole document, as PyMongo 4 reads it) is left to mongomock
        assert projection == {}
        return
    assert list(found.items()) == list(expected.items())


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    value=st.recursive(
        st.one_of(
            SCALARS,
            st.datetimes(
                timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=5))])
            ),
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)
        ),
        max_leaves=6,
    )
)
def test_datetime_patching_is_mongomocks(value: Any) -> None:
    from mongomock import helpers

    ours = _mongomock.patch_datetime_awareness_in_document(value)
    theirs = helpers.patch_datetime_awareness_in_document(value)
    assert repr(ours) == repr(theirs)  # types and tzinfo too (and NaN, which == cannot)


UPDATE_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2))
UPDATES = st.dictionaries(
    st.sampled_from(["$set", "$unset", "$push", "$setOnInsert", "$inc"]),
    st.dictionaries(st.sampled_from(FIELDS), UPDATE_VALUES, min_size=1, max_size=2),
    min_size=1,
    max_size=3,
)
PUSHES = st.one_of(
    UPDATE_VALUES,
    st.fixed_dictionaries(
        {"$each": st.lists(SCALARS, max_size=3)}, optional={"$slice": st.integers(-3, 3)}
    ),
)


def _stored_after(document: dict[str, Any], update: dict[str, Any], fast: bool) -> Any:
    from nsn_store.embedded import arithmetic

    collection = mongomock_client()["u"]["c"]
    collection.insert_one(dict(document))
    real = arithmetic.top_level
    arithmetic.top_level = real if fast else (lambda update, document: False)  # type: ignore[assignment]
    try:
        collection.update_one({"_id": document["_id"]}, update)
        return ("ok", repr(collection.find_one()))
    except Exception as error:  # the same refusal either way
        return ("error", type(error).__name__)
    finally:
        arithmetic.top_level = real  # type: ignore[assignment]


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    document=DOCUMENTS,
    update=UPDATES,
    pushes=st.dictionaries(st.sampled_from(FIELDS), PUSHES, max_size=2),
)
def test_the_top_level_update_path_stores_what_the_general_path_stores(
    document: dict[str, Any], update: dict[str, Any], pushes: dict[str, Any]
) -> None:
    document = {"_id": 1, **document}
    if pushes:
        update = {**update, "$push": pushes}
    if "$inc" in update:  # only numbers can be incremented (both paths refuse the rest alike)
        update["$inc"] = {k: 1 for k in update["$inc"]}
    assert _stored_after(document, update, fast=True) == _stored_after(document, update, False)
