"""The embedded planner: index-served reads give exactly what a collection scan gives.

Property tests (hypothesis) store random documents (missing fields, nulls,
mixed types, arrays, sub-documents, NaN) in an embedded collection carrying one
index shape, and the same documents in a raw mongomock collection with no
index (a scan, with mongomock's own matcher and sort). For random filters,
sorts, skips and limits, ``find`` and ``count_documents`` must agree, and so
must the document that ``update_one``/``delete_one`` pick and the state after
them and after TTL expiry. The shapes are every index declared by the twelve
collections of ``nsn_store.schema.SCHEMA``, plus descending, partial, sparse
and dotted ones.

Runtime: ``EXAMPLES`` (40) examples per shape, 35 shapes: 1,400 examples, about
12 s of CPU in all; ``NSN_PLANNER_EXAMPLES`` raises the count for a deeper local run.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import DuplicateKeyError, PyMongoError

from nsn_store.clock import ManualClock
from nsn_store.embedded import EmbeddedClient
from nsn_store.embedded._sorted_index import SortedIndex
from nsn_store.schema._registry import SCHEMA

EXAMPLES = int(os.environ.get("NSN_PLANNER_EXAMPLES", "40"))  # raise it locally to dig deeper
OIDS = [ObjectId("65a000000000000000000001"), ObjectId("65a000000000000000000002")]
DATES = [datetime(2026, 1, 1), datetime(2026, 1, 2), datetime(2026, 1, 3)]

# (id, key, options): every declared shape, then the ones the schema does not use.
SHAPES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    (f"{spec.name}.{index.name}", list(index.keys), index.options())
    for spec in SCHEMA
    for index in spec.indexes
] + [
    ("descending", [("a", -1)], {}),
    ("mixed-directions", [("a", 1), ("b", -1)], {}),
    ("all-descending", [("a", -1), ("b", -1), ("c", -1)], {}),
    (
        "partial-exists",
        [("a", 1), ("b", -1)],
        {"partialFilterExpression": {"b": {"$exists": True}}},
    ),
    ("partial-range", [("a", 1)], {"partialFilterExpression": {"a": {"$gt": 0}}}),
    (
        "partial-unique",
        [("a", 1), ("b", 1)],
        {"unique": True, "partialFilterExpression": {"b": {"$exists": True}}},
    ),
    ("sparse", [("b", 1)], {"sparse": True}),
    ("dotted", [("d.e", 1), ("a", -1)], {}),
    ("ttl", [("c", 1)], {"expireAfterSeconds": 3600}),
]

# A small pool, so that filters hit stored values often (1, 1.0 and True collide in
# mongomock's matcher; an ObjectId matches its hex string inside an array).
POOL = [
    None,
    0,
    1,
    1.0,
    2,
    -0.0,
    0.5,
    True,
    False,
    "",
    "a",
    "b",
    str(OIDS[0]),
    *OIDS,
    *DATES,
    math.inf,
]
# No NaN in the random values: the reference, raw mongomock, matches NaN only by
# object identity (a server matches NaN to NaN), and the BSON round trip of stored
# documents breaks identity, so the two disagree for reasons that are not the
# planner's. NaN has its own named cases below.
scalars = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(POOL),
    st.floats(allow_nan=False, width=32),
    st.integers(-3, 3),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.fixed_dictionaries({"e": scalars}),
    st.lists(st.fixed_dictionaries({"e": scalars}), max_size=2),
    st.lists(st.lists(scalars, max_size=2), max_size=2),
)


def conditions(scalar: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's condition: equality, ``$in``, ranges, and operators the planner ignores."""
    ranged = st.one_of(scalar, st.sampled_from(DATES))
    return st.one_of(
        scalar,
        st.fixed_dictionaries({"$eq": scalar}),
        st.fixed_dictionaries({"$in": st.lists(scalar, max_size=3)}),
        st.dictionaries(
            st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ranged, min_size=1, max_size=2
        ),
        st.fixed_dictionaries({"$gte": ranged, "$ne": scalar}),
        st.fixed_dictionaries({"$exists": st.booleans()}),
        st.fixed_dictionaries({"$nin": st.lists(scalar, max_size=2)}),
    )


def _flat(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for element in value for item in _flat(element)]
    if isinstance(value, dict):
        return [item for element in value.values() for item in _flat(element)]
    return [value]


@st.composite
def cases(draw: Any, names: list[str]) -> dict[str, Any]:
    """Documents, a filter, a sort, skip and limit over the shape's field names."""
    fields = st.sampled_from(names)
    documents = draw(st.lists(st.dictionaries(fields, values, max_size=len(names)), max_size=18))
    stored = [v for doc in documents for value in doc.values() for v in _flat(value)]
    # Half the filter values are stored ones, so that filters match something.
    scalar = st.one_of(st.sampled_from(stored), scalars) if stored else scalars
    terms = draw(st.dictionaries(fields, conditions(scalar), max_size=3))
    if terms and draw(st.booleans()):
        spec: dict[str, Any] = {"$and": [{k: v} for k, v in terms.items()]}
    else:
        spec = terms
    sort = draw(
        st.lists(
            st.tuples(fields, st.sampled_from([1, -1])), max_size=2, unique_by=lambda pair: pair[0]
        )
    )
    return {
        "documents": documents,
        "filter": spec,
        "sort": sort,
        "skip": draw(st.integers(0, 2)),
        "limit": draw(st.integers(0, 4)),
        "update": draw(st.fixed_dictionaries({"field": fields, "value": values})),
    }


def _names(key: list[tuple[str, int]], options: dict[str, Any]) -> list[str]:
    names = [name for name, _ in key]
    for name in options.get("partialFilterExpression", {}):
        if name not in names:
            names.append(name)
    return names


def _load(
    key: list[tuple[str, int]],
    options: dict[str, Any],
    documents: list[dict[str, Any]],
    clock: ManualClock,
) -> tuple[Any, Any]:
    """Return (embedded collection with the index, raw mongomock collection) with the same docs."""
    ours = EmbeddedClient(clock=clock)["t"]["c"]
    ours.create_index(key, name="shape", **options)
    raw = mongomock.MongoClient()["t"]["c"]
    for number, document in enumerate(documents):
        try:
            ours.insert_one({"_id": number, **document})
        except DuplicateKeyError:
            continue
        raw.insert_one({"_id": number, **document})
    return ours, raw


def _ids(collection: Any, call: str, *args: Any, **kwargs: Any) -> Any:
    """Return the result's ids (or count), or the name of the error it raised."""
    try:
        result = getattr(collection, call)(*args, **kwargs)
    except (PyMongoError, NotImplementedError, TypeError) as error:
        return type(error).__name__
    if isinstance(result, int):
        return result
    return [doc["_id"] for doc in result]


def _same_state(ours: Any, raw: Any) -> None:
    assert _ids(ours, "find", {}) == _ids(raw, "find", {})
    assert _key(list(ours.find({}, {"_id": 1}))) == _key(list(raw.find({}, {"_id": 1})))
    store = ours._store
    for index in store.sorted_indexes.values():
        fresh = SortedIndex(index.name, index.spec)
        fresh.build((store._seq[k], doc) for k, doc in store._documents.items())
        assert list(index.entries) == list(fresh.entries)
        assert (index.multikey, index.complex) == (fresh.multikey, fresh.complex)


def _key(documents: list[dict[str, Any]]) -> list[Any]:
    return [doc["_id"] for doc in documents]


def _nan_safe(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize(("key", "options"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_index_served_results_equal_a_scan(
    key: list[tuple[str, int]], options: dict[str, Any]
) -> None:
    names = _names(key, options)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases(names))
    def check(case: dict[str, Any]) -> None:
        clock = ManualClock(datetime(2026, 1, 1, 12))
        ours, raw = _load(key, options, case["documents"], clock)
        spec, sort = case["filter"], case["sort"] or None
        window = {"skip": case["skip"], "limit": case["limit"]}
        assert _ids(ours, "find", spec, sort=sort, **window) == _ids(
            raw, "find", spec, sort=sort, **window
        )
        assert _ids(ours, "count_documents", spec) == _ids(raw, "count_documents", spec)
        first = _ids(ours, "find", spec, limit=1)
        assert first == _ids(raw, "find", spec)[:1] or isinstance(first, str)
        update = {"$set": {case["update"]["field"]: case["update"]["value"]}}
        try:
            ours.update_one(spec, update)
        except DuplicateKeyError:
            pass
        except (PyMongoError, NotImplementedError, TypeError):
            return
        else:
            raw.update_one(spec, update)
        _same_state(ours, raw)
        assert _ids(ours, "find", spec, sort=sort, **window) == _ids(
            raw, "find", spec, sort=sort, **window
        )
        ours.delete_one(spec)
        raw.delete_one(spec)
        _same_state(ours, raw)
        if options.get("expireAfterSeconds") is not None:
            clock.advance(timedelta(days=2))
            ours.database.client.run_ttl_monitor()
            raw.delete_many({"_id": {"$nin": _ids(ours, "find", {})}})
            _same_state(ours, raw)

    check()


# ------------------------------------------------- edge cases, named one by one

NAN = math.nan
EDGES: list[
    tuple[
        str,
        list[tuple[str, int]],
        dict[str, Any],
        list[Any],
        list[dict[str, Any]],
        list[tuple[str, int]] | None,
        int,
    ]
] = [
    # (id, index key, index options, values of "a" (or documents), filters, sort, limit)
    (
        "bool-matches-number",
        [("a", 1)],
        {},
        [True, 1, 1.0, 0, False, [True], 2],
        [{"a": 1}, {"a": True}, {"a": {"$in": [0]}}, {"a": 1.0}, {"a": {"$eq": False}}],
        None,
        0,
    ),
    (
        "objectid-matches-its-hex-in-an-array",
        [("a", 1)],
        {},
        [[str(OIDS[0])], OIDS[0], str(OIDS[0]), [OIDS[0]]],
        [{"a": OIDS[0]}],
        None,
        0,
    ),
    (
        "nan-matches-no-range",
        [("a", 1)],
        {},
        [NAN, 1, [NAN, 2], -1.5],
        [{"a": {"$gt": 0}}, {"a": {"$lt": 5}}, {"a": {"$gte": -2, "$lte": 1}}],
        [("a", 1)],
        2,
    ),
    (
        "missing-null-and-empty-arrays",
        [("a", 1)],
        {},
        [None, [], [None], "x", {"missing": 1}],
        [{"a": None}, {"a": {"$in": [None]}}, {"a": {"$exists": False}}],
        [("a", -1)],
        0,
    ),
    (
        "range-on-a-multikey-field",
        [("a", 1)],
        {},
        [[1, 10], [4], 7, [2, 3]],
        [{"a": {"$gt": 5, "$lt": 3}}, {"a": {"$gte": 4, "$lte": 4}}],
        [("a", 1)],
        0,
    ),
    (
        "ties-keep-natural-order",
        [("a", 1), ("b", 1)],
        {},
        [1, 1, 0, 1, 0, 1, 1],
        [{"a": {"$gte": 0}}, {}],
        [("a", -1)],
        3,
    ),
    (
        "mixed-types-sort",
        [("a", 1)],
        {},
        [None, 1, "a", OIDS[1], True, DATES[0], 0.5, "B", False],
        [{}, {"a": {"$exists": True}}],
        [("a", 1)],
        4,
    ),
    (
        "descending-range",
        [("a", -1)],
        {},
        [1, 2, 3, 4, 2.5, "x", None],
        [{"a": {"$gt": 1, "$lte": 3}}, {"a": {"$lt": 3}}],
        [("a", -1)],
        2,
    ),
    (
        "sparse-never-serves-null",
        [("a", 1)],
        {"sparse": True},
        [None, 1, [], "x"],
        [{"a": None}, {"a": 1}, {"a": {"$ne": 1}}],
        [("a", 1)],
        0,
    ),
    (
        "partial-serves-only-inside",
        [("a", 1)],
        {"partialFilterExpression": {"a": {"$gt": 1}}},
        [0, 1, 2, 3, None],
        [{"a": 2}, {"a": 0}, {"a": {"$gt": 1}}],
        [("a", 1)],
        0,
    ),
]
EDGE_DOCUMENTS: list[
    tuple[
        str,
        list[tuple[str, int]],
        list[dict[str, Any]],
        list[dict[str, Any]],
        list[tuple[str, int]] | None,
        int,
    ]
] = [
    (
        "dotted-through-arrays",
        [("d.e", 1)],
        [{"d": [{"e": 1}, {"f": 2}]}, {"d": {"e": 1}}, {"d": 5}, {"d": [{"e": [1, 2]}]}, {}],
        [{"d.e": 1}, {"d.e": None}, {"d.e": {"$gte": 2}}],
        None,
        0,
    ),
    (
        "in-on-the-prefix-merges-the-sort",
        [("a", 1), ("b", 1)],
        [{"a": n % 3, "b": (7 * n) % 5} for n in range(20)],
        [{"a": {"$in": [0, 2]}}, {"a": {"$in": [0, 2]}, "b": {"$gte": 2}}],
        [("b", 1)],
        5,
    ),
    (
        "sort-on-the-prefix-and-next",
        [("a", 1), ("b", -1)],
        [{"a": n % 2, "b": n % 4} for n in range(12)],
        [{"a": 1}, {}],
        [("a", 1), ("b", -1)],
        4,
    ),
]


def _edge_cases() -> list[Any]:
    rows = [
        pytest.param(
            key,
            options,
            [{"a": v} if not isinstance(v, dict) else v for v in vals],
            filters,
            sort,
            limit,
            id=name,
        )
        for name, key, options, vals, filters, sort, limit in EDGES
    ]
    rows += [
        pytest.param(key, {}, docs, filters, sort, limit, id=name)
        for name, key, docs, filters, sort, limit in EDGE_DOCUMENTS
    ]
    return rows


@pytest.mark.parametrize(("key", "options", "documents", "filters", "sort", "limit"), _edge_cases())
def test_edge_cases_equal_a_scan(
    key: list[tuple[str, int]],
    options: dict[str, Any],
    documents: list[dict[str, Any]],
    filters: list[dict[str, Any]],
    sort: list[tuple[str, int]] | None,
    limit: int,
) -> None:
    ours, raw = _load(key, options, documents, ManualClock(datetime(2026, 1, 1)))
    for spec in filters:
        for window in ({}, {"sort": sort, "limit": limit}):
            assert _ids(ours, "find", spec, **window) == _ids(raw, "find", spec, **window), spec
        assert _ids(ours, "count_documents", spec) == _ids(raw, "count_documents", spec)


# ------------------------------------------------------------ chosen plans


def _plan(cursor: Any) -> tuple[list[str], list[str]]:
    plan = cursor.explain()["queryPlanner"]["winningPlan"]
    stages = []
    while plan:
        stages.append(plan)
        plan = plan.get("inputStage")
    return [s["stage"] for s in stages], [s["indexName"] for s in stages if "indexName" in s]


@pytest.fixture
def messages() -> Any:
    coll = EmbeddedClient()["t"]["m"]
    coll.create_index([("status", 1), ("sendAt", 1)], name="by_sendAt")
    coll.create_index([("status", 1), ("lockedUntil", 1)], name="by_status")
    coll.create_index([("tags", 1)], name="by_tags")
    coll.create_index(
        [("key", 1)], name="by_key", unique=True, partialFilterExpression={"key": {"$exists": True}}
    )
    coll.insert_many(
        [
            {
                "_id": n,
                "status": ["scheduled", "sent"][n % 2],
                "sendAt": DATES[n % 3],
                "tags": [n % 4, "x"],
                "key": f"k{n}",
            }
            for n in range(60)
        ]
    )
    return coll


def test_a_served_sort_stops_at_the_limit(messages: Any) -> None:
    query = {"status": "scheduled", "sendAt": {"$lte": DATES[1]}}
    cursor = messages.find(query).sort("sendAt", 1).limit(5)
    stages, indexes = _plan(cursor)
    assert stages == ["LIMIT", "FETCH", "IXSCAN"] and indexes == ["by_sendAt"]
    stats = cursor.explain()["executionStats"]
    assert stats["nReturned"] == 5 and stats["totalKeysExamined"] <= 10


def test_a_descending_sort_walks_the_index_backwards(messages: Any) -> None:
    explained = messages.find({"status": "sent"}).sort("sendAt", -1).limit(3).explain()
    scan = explained["queryPlanner"]["winningPlan"]["inputStage"]["inputStage"]
    assert (scan["indexName"], scan["direction"]) == ("by_sendAt", "backward")
    assert scan["keyPattern"] == {"status": 1, "sendAt": 1}


def test_a_sort_on_a_multikey_field_is_sorted_in_memory(messages: Any) -> None:
    stages, indexes = _plan(messages.find({"tags": 1}).sort("tags", 1))
    assert stages[0] == "SORT" and indexes == ["by_tags"]


def test_no_usable_index_is_a_collection_scan(messages: Any) -> None:
    assert _plan(messages.find({"other": 1})) == (["COLLSCAN"], [])
    # A partial index serves only filters that stay inside it.
    assert _plan(messages.find({"key": {"$in": ["k1", None]}})) == (["COLLSCAN"], [])
    assert _plan(messages.find({"key": "k1"})) == (["FETCH", "IXSCAN"], ["by_key"])


def test_an_id_lookup_is_idhack(messages: Any) -> None:
    assert _plan(messages.find({"_id": 3})) == (["IDHACK"], [])


def test_a_collation_is_never_served_by_an_index(messages: Any) -> None:
    # Index keys compare binary; only the "simple" collation (binary) can use them.
    cursor = messages.find({"status": "sent"}, collation={"locale": "en", "strength": 2})
    assert _plan(cursor) == (["COLLSCAN"], [])
    simple = messages.find({"status": "sent"}, collation={"locale": "simple"})
    assert _plan(simple)[0] != ["COLLSCAN"]


def test_a_pipeline_front_is_served_by_the_index(messages: Any) -> None:
    pipeline = [
        {"$match": {"status": "scheduled"}},
        {"$sort": {"sendAt": -1}},
        {"$limit": 4},
        {"$project": {"sendAt": 1}},
    ]
    ours = list(messages.aggregate(pipeline))
    everything = [d for d in messages.find({}) if d["status"] == "scheduled"]
    expected = sorted(everything, key=lambda d: d["sendAt"], reverse=True)[:4]
    assert [d["_id"] for d in ours] == [d["_id"] for d in expected]
    assert set(ours[0]) == {"_id", "sendAt"}


def test_a_unique_key_upsert_reads_one_index_entry() -> None:
    coll = EmbeddedClient()["t"]["counters"]
    coll.create_index([("tenantId", 1), ("metric", 1), ("shard", 1)], unique=True, name="u")
    for shard in range(200):
        coll.update_one(
            {"tenantId": "t", "metric": "m", "shard": shard}, {"$inc": {"count": 1}}, upsert=True
        )
    query = {"tenantId": "t", "metric": "m", "shard": 7}
    stats = coll.find(query).explain()["executionStats"]
    assert (stats["totalKeysExamined"], stats["totalDocsExamined"]) == (1, 1)


def test_a_walk_seeks_past_keys_outside_the_later_fields_bounds() -> None:
    # The scheduler's fairness probe: the first tenant after one, with a due message.
    # Each tenant holds sent and future messages only, but the last: the walk must
    # seek past them (a few keys per tenant), not read them all, and find what a scan finds.
    coll = EmbeddedClient()["t"]["probe"]
    coll.create_index([("t", 1), ("s", 1), ("d", 1)], name="by_t")
    now, docs = datetime(2026, 1, 1, tzinfo=timezone.utc), []
    for t in range(50):
        docs += [{"t": t, "s": "sent", "d": now - timedelta(seconds=k)} for k in range(30)]
        docs += [{"t": t, "s": "scheduled", "d": now + timedelta(seconds=k + 1)} for k in range(9)]
        docs.append({"t": t, "s": "processing", "d": now})
    docs.append({"t": 49, "s": "scheduled", "d": now - timedelta(seconds=5)})
    coll.insert_many(docs)
    spec = {"t": {"$gt": 0}, "s": "scheduled", "d": {"$lte": now}}
    cursor = coll.find(spec).sort([("t", 1), ("s", 1), ("d", 1)]).limit(1)
    assert [(d["t"], d["d"]) for d in cursor.clone()] == [(49, now - timedelta(seconds=5))]
    stats = cursor.explain()["executionStats"]
    assert stats["totalKeysExamined"] <= 3 * 50  # not the 2,000 keys of those tenants
    assert stats["totalDocsExamined"] == 1
