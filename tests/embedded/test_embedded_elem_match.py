"""``$elemMatch`` served by an index gives exactly what a collection scan gives.

The planner reads ``{p: {$elemMatch: {c: ..., f: ...}}}`` as bounds on the
index fields ``p.c`` and ``p.f``, compounded (MongoDB manual, "Compound Bounds
for Multikey Index": https://www.mongodb.com/docs/manual/core/multikey-index-bounds/).
Property tests store random documents whose ``p`` is missing, a scalar, a
document or an array of documents, scalars, arrays of scalars and arrays of
documents (an array in an array: mongomock's ``$elemMatch`` looks into it, the
index path does not), under indexes on those dotted paths (compound, descending,
sparse, partial), and compare ``find`` (sorted, limited) and ``count_documents``
with a raw mongomock collection (a scan), before and after updates; the index
built incrementally must equal one built afresh (its ``nested`` counts too).

Runtime: ``EXAMPLES`` (80) examples per shape, 8 shapes: about 6 s of CPU.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import mongomock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import PyMongoError

from nsn_store.embedded import EmbeddedClient
from nsn_store.embedded._sorted_index import SortedIndex

EXAMPLES = int(os.environ.get("NSN_PLANNER_EXAMPLES", "80"))
POOL = [None, 0, 1, 1.0, True, False, "a", "b", "", datetime(2026, 1, 1), datetime(2026, 1, 2)]
# Mostly a few values, so that queries match often; the whole pool (1 == 1.0 == True...) too.
FEW = st.sampled_from(["a", "b", 1, None])
scalars = st.one_of(FEW, FEW, FEW, st.sampled_from(POOL), st.integers(-2, 2))
leaf = st.one_of(scalars, scalars, st.lists(scalars, max_size=2))
deeper = st.fixed_dictionaries({}, optional={"t": leaf})
deepest = st.one_of(
    deeper, st.lists(st.one_of(deeper, deeper, scalars, st.lists(deeper)), max_size=2)
)
items = st.one_of(
    st.fixed_dictionaries({"c": leaf, "f": leaf}, optional={"s": deepest}),
    st.fixed_dictionaries({}, optional={"c": leaf, "f": leaf, "s": deepest}),
)
inner = st.lists(items, min_size=1, max_size=2)  # an array in the array
element = st.one_of(items, items, inner, scalars, st.lists(scalars, max_size=2))
documents = st.fixed_dictionaries(
    {"p": st.one_of(st.lists(element, max_size=3), st.lists(element, max_size=3), items, scalars)},
    optional={"x": scalars},
)

SHAPES: dict[str, tuple[list[tuple[str, int]], dict[str, Any]]] = {
    "compound": ([("p.c", 1), ("p.f", 1)], {}),
    "compound-descending": ([("p.c", 1), ("p.f", -1)], {}),
    "second-field": ([("p.f", 1)], {}),
    "deeper": ([("p.s.t", 1), ("p.c", 1)], {}),
    "after-a-top-level-field": ([("x", 1), ("p.c", 1)], {}),
    "then-a-top-level-field": ([("p.c", 1), ("x", -1)], {}),
    "sparse": ([("p.c", 1)], {"sparse": True}),
    "partial": ([("p.c", 1), ("p.f", 1)], {"partialFilterExpression": {"x": {"$exists": True}}}),
}
SUB_FIELDS = ["c", "f", "s.t"]


def field_conditions(scalar: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        scalar,
        scalar,
        scalar,
        st.fixed_dictionaries({"$eq": scalar}),
        st.fixed_dictionaries({"$in": st.lists(scalar, max_size=3)}),
        st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), scalar, min_size=1),
        st.fixed_dictionaries({"$ne": scalar}),
        st.fixed_dictionaries({"$exists": st.booleans()}),
        st.fixed_dictionaries({"$nin": st.lists(scalar, max_size=2)}),
    )


@st.composite
def element_queries(draw: Any, scalar: st.SearchStrategy[Any]) -> dict[str, Any]:
    """An ``$elemMatch`` query: fields with conditions, maybe in ``$and``, maybe another shape."""
    fields = draw(
        st.dictionaries(
            st.sampled_from(SUB_FIELDS), field_conditions(scalar), min_size=1, max_size=3
        )
    )
    kind = draw(st.sampled_from(["fields", "fields", "fields", "and", "or", "operators"]))
    if kind == "and" and fields:
        return {"$and": [{name: condition} for name, condition in fields.items()]}
    if kind == "or" and fields:  # not read by the planner: a scan
        return {"$or": [{name: condition} for name, condition in fields.items()]}
    if kind == "operators":  # an array of scalars' $elemMatch: not read either
        operators: dict[str, Any] = draw(
            st.dictionaries(st.sampled_from(["$gt", "$lte", "$eq"]), scalar, min_size=1)
        )
        return operators
    found: dict[str, Any] = fields
    return found


def _stored_items(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the documents in each ``p`` array, and in the arrays held in it."""
    found = []
    for doc in docs:
        value = doc.get("p")
        for element in value if isinstance(value, list) else []:
            inner = element if isinstance(element, list) else [element]
            found += [item for item in inner if isinstance(item, dict) and item]
    return found


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    docs = draw(st.lists(documents, max_size=14))
    scalar = scalars
    query = draw(element_queries(scalar))
    stored = _stored_items(docs)
    if stored and draw(st.sampled_from([True, True, False])):  # a stored element's values
        item = draw(st.sampled_from(stored))
        names = draw(st.lists(st.sampled_from(sorted(item)), min_size=1, unique=True))
        query = {}
        for name in names:
            value = item[name]
            if name == "s":
                value = value.get("t") if isinstance(value, dict) else None
            if isinstance(value, dict):
                continue
            value = value[0] if isinstance(value, list) and value else value
            key = "s.t" if name == "s" else name
            query[key] = draw(st.sampled_from([value, {"$in": [value, "b"]}, {"$gte": value}]))
        query = query or {"c": "a"}
    spec: dict[str, Any] = {"p": {"$elemMatch": query}}
    if draw(st.integers(0, 4)) == 0:  # an $elemMatch on a dotted path (through p's array)
        spec = {"p.s": {"$elemMatch": {"t": draw(field_conditions(scalar))}}}
    extra = draw(st.sampled_from(["none", "none", "x", "dotted", "and", "more-operators"]))
    if extra == "x":
        spec["x"] = draw(field_conditions(scalar))
    elif extra == "dotted":
        spec["p.c"] = draw(field_conditions(scalar))
    elif extra == "and":
        other = draw(st.one_of(st.just(query), element_queries(scalar)))
        spec = {"$and": [spec, {"p": {"$elemMatch": other}}]}
    elif extra == "more-operators":
        spec[next(iter(spec))]["$exists"] = True
    sort = draw(st.sampled_from([None, [("x", 1)], [("p.c", -1)], [("x", -1), ("p.f", 1)]]))
    updates = draw(st.lists(st.tuples(st.integers(0, 13), documents), max_size=3))
    return {
        "documents": docs,
        "filter": spec,
        "sort": sort,
        "limit": draw(st.integers(0, 3)),
        "updates": updates,
    }


def _ids(collection: Any, call: str, *args: Any, **kwargs: Any) -> Any:
    try:
        result = getattr(collection, call)(*args, **kwargs)
    except (PyMongoError, NotImplementedError, TypeError) as error:
        return type(error).__name__
    return result if isinstance(result, int) else [doc["_id"] for doc in result]


def _same_index(collection: Any) -> None:
    store = collection._store
    for index in store.sorted_indexes.values():
        fresh = SortedIndex(index.name, index.spec)
        fresh.build((store._seq[key], doc) for key, doc in store._documents.items())
        assert list(index.entries) == list(fresh.entries)
        assert (index.multikey, index.complex, index.nested) == (
            fresh.multikey,
            fresh.complex,
            fresh.nested,
        )


@pytest.mark.parametrize(("key", "options"), list(SHAPES.values()), ids=list(SHAPES))
def test_elem_match_served_by_an_index_equals_a_scan(
    key: list[tuple[str, int]], options: dict[str, Any]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases())
    def check(case: dict[str, Any]) -> None:
        ours = EmbeddedClient()["t"]["c"]
        ours.create_index(key, name="shape", **options)
        raw: Any = mongomock.MongoClient()["t"]["c"]
        for number, document in enumerate(case["documents"]):
            ours.insert_one({"_id": number, **document})
            raw.insert_one({"_id": number, **document})
        spec, window = case["filter"], {"sort": case["sort"], "limit": case["limit"]}
        for number, document in [(None, None), *case["updates"]]:
            if number is not None:
                ours.replace_one({"_id": number}, {"_id": number, **document})
                raw.replace_one({"_id": number}, {"_id": number, **document})
                _same_index(ours)
            assert _ids(ours, "find", spec, **window) == _ids(raw, "find", spec, **window), spec
            assert _ids(ours, "find", spec) == _ids(raw, "find", spec), spec
            assert _ids(ours, "count_documents", spec) == _ids(raw, "count_documents", spec)

    check()


# ------------------------------------------------------------ chosen plans


def _scan(collection: Any, spec: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    explained = collection.find(spec).explain()
    stage = explained["queryPlanner"]["winningPlan"]
    while "inputStage" in stage and stage["stage"] != "IXSCAN":
        stage = stage["inputStage"]
    return stage["stage"], stage.get("indexBounds", {}), explained["executionStats"]


@pytest.fixture
def senders() -> Any:
    coll = EmbeddedClient()["t"]["tenants"]
    coll.create_index([("configs.channel", 1), ("configs.address", 1)], name="by_address")
    coll.insert_many(
        [
            {
                "_id": n,
                "configs": [
                    {"channel": "sms", "address": f"+1{n:03d}"},
                    {"channel": "email", "address": f"t{n}@example.com"},
                ],
            }
            for n in range(40)
        ]
    )
    return coll


def test_the_fields_of_one_elem_match_compound_their_bounds(senders: Any) -> None:
    spec = {"configs": {"$elemMatch": {"channel": "sms", "address": "+1007"}}}
    stage, bounds, stats = _scan(senders, spec)
    assert stage == "IXSCAN"
    assert bounds == {
        "configs.channel": ["['sms', 'sms']"],
        "configs.address": ["['+1007', '+1007']"],
    }
    assert (stats["nReturned"], stats["totalKeysExamined"], stats["totalDocsExamined"]) == (1, 1, 1)


def test_an_elem_match_with_and_and_a_range_is_bounded(senders: Any) -> None:
    # A multikey field keeps one side of a range (after "t38@..."): t3@, t39, t4..t9 of 40.
    address = {"$gt": "t38@example.com", "$lte": "t39@example.com"}
    spec = {"configs": {"$elemMatch": {"$and": [{"channel": "email"}, {"address": address}]}}}
    stage, bounds, stats = _scan(senders, spec)
    assert stage == "IXSCAN" and bounds["configs.channel"] == ["['email', 'email']"]
    assert (stats["nReturned"], stats["totalDocsExamined"]) == (1, 8)


def test_an_array_in_the_array_turns_the_bounds_off(senders: Any) -> None:
    # mongomock's $elemMatch matches the inner array's documents; the index path skips them.
    senders.insert_one({"_id": "nested", "configs": [[{"channel": "sms", "address": "+1007"}]]})
    spec = {"configs": {"$elemMatch": {"channel": "sms", "address": "+1007"}}}
    assert _scan(senders, spec)[0] == "COLLSCAN"
    assert [doc["_id"] for doc in senders.find(spec)] == [7, "nested"]
    senders.delete_one({"_id": "nested"})
    assert _scan(senders, spec)[0] == "IXSCAN"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"$or": [{"channel": "sms"}, {"address": "+1007"}]}, id="or"),
        pytest.param({"channel": {"$regex": "^s"}}, id="regex"),
        pytest.param({"channel": {"$elemMatch": {"$eq": "sms"}}}, id="nested-elem-match"),
    ],
)
def test_other_elem_match_queries_are_left_to_a_scan(senders: Any, query: dict[str, Any]) -> None:
    spec = {"configs": {"$elemMatch": query}}
    assert _scan(senders, spec)[0] == "COLLSCAN"
    assert _ids(senders, "find", spec) == [
        doc["_id"] for doc in senders.find({}) if _raw_matches(spec, doc)
    ]


@pytest.mark.parametrize(
    "options",
    [{"sparse": True}, {"partialFilterExpression": {"p.c": {"$exists": True}}}],
    ids=["sparse", "partial"],
)
def test_a_sparse_or_partial_index_takes_no_elem_match_bounds(options: dict[str, Any]) -> None:
    # The second document matches through the array in its array, and the path p.c
    # reaches nothing in it: such an index does not hold it (nor count it as nested).
    coll = EmbeddedClient()["t"]["c"]
    coll.create_index([("p.c", 1)], name="shape", **options)
    coll.insert_many([{"p": [{"c": 1}]}, {"p": [[{"c": 1}]]}])
    assert _scan(coll, {"p": {"$elemMatch": {"c": 1}}})[0] == "COLLSCAN"
    assert coll.count_documents({"p": {"$elemMatch": {"c": 1}}}) == 2


def test_a_position_in_the_path_takes_no_elem_match_bounds() -> None:
    # mongomock reads p.0.c as the first element's c, and {"0.c": ...} in an element as
    # its field "0": the two differ, so the index on p.0.c is not bounded by it.
    coll = EmbeddedClient()["t"]["c"]
    coll.create_index([("p.0.c", 1)], name="position")
    coll.insert_many([{"p": [{"0": {"c": 1}}]}, {"p": [{"c": 1}]}])
    spec = {"p": {"$elemMatch": {"0.c": 1}}}
    assert _scan(coll, spec)[0] == "COLLSCAN"
    assert coll.count_documents(spec) == 1


def _raw_matches(spec: dict[str, Any], doc: dict[str, Any]) -> bool:
    from nsn_store.embedded._mongomock import filter_applies

    return filter_applies(spec, doc)
