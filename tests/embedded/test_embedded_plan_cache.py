"""The planner's fast paths give exactly what a scan gives, query after query on one store.

``test_embedded_planner`` loads a fresh collection per example, so its plan
cache starts empty each time. Here one collection serves many queries of one
shape (the same fields and operators, other values: what the scheduler sends)
with writes in between that move entries and turn fields multikey or complex,
so cached plans are reused, re-checked and replaced; every answer is compared
with a raw mongomock collection (a scan with mongomock's matcher and sort).
Also: the ``_id`` order of an ``$in`` lookup, sorted in C for one id type, is
the BSON order mongomock's comparison gives.

Runtime: ``EXAMPLES`` (100) examples per index shape, 5 shapes: about 4 s of CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import PyMongoError

from nsn_store.embedded import EmbeddedClient, _mongomock, _planner

EXAMPLES = int(os.environ.get("NSN_PLANNER_EXAMPLES", "100"))
FIELDS = ["a", "b", "c"]
OIDS = [ObjectId("65a000000000000000000001"), ObjectId("65a000000000000000000002")]
DATES = [datetime(2026, 1, 1), datetime(2026, 1, 2), datetime(2026, 1, 3)]
POOL = [None, 0, 1, 1.0, 2, 0.5, True, False, "", "a", "b", str(OIDS[0]), *OIDS, *DATES]
scalars = st.one_of(st.sampled_from(POOL), st.integers(-2, 2))
stored_values = st.one_of(
    scalars,
    scalars,
    st.lists(scalars, max_size=2),
    st.fixed_dictionaries({"e": scalars}),
)

SHAPES = {
    "compound": [("a", 1), ("b", 1), ("c", 1)],
    "mixed-directions": [("a", 1), ("b", -1)],
    "descending": [("b", -1), ("c", -1)],
    "single": [("c", 1)],
    "pair": [("b", 1), ("a", 1)],
}
#: A condition's kind, and how to build it from a value (or two, or a list).
KINDS: dict[str, Callable[[list[Any]], Any]] = {
    "equal": lambda v: v[0],
    "$eq": lambda v: {"$eq": v[0]},
    "$in": lambda v: {"$in": list(v)},
    "$gt": lambda v: {"$gt": v[0]},
    "$gte": lambda v: {"$gte": v[0]},
    "$lt": lambda v: {"$lt": v[0]},
    "$lte": lambda v: {"$lte": v[0]},
    "between": lambda v: {"$gte": v[0], "$lte": v[-1]},
    "$ne": lambda v: {"$ne": v[0]},
}


@st.composite
def sessions(draw: Any) -> dict[str, Any]:
    """Documents, one query shape (fields, kinds, sort, limit) and a run of values and writes."""
    documents = draw(st.lists(st.dictionaries(st.sampled_from(FIELDS), stored_values), max_size=20))
    shape = draw(
        st.dictionaries(
            st.sampled_from(FIELDS), st.sampled_from(sorted(KINDS)), min_size=1, max_size=3
        )
    )
    sort = draw(
        st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from([1, -1])), max_size=2).map(
            lambda pairs: list(dict(pairs).items())
        )
    )
    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("query"), st.lists(scalars, min_size=1, max_size=3)),
                st.tuples(
                    st.just("write"),
                    st.tuples(st.integers(0, 19), st.sampled_from(FIELDS), stored_values),
                ),
            ),
            min_size=1,
            max_size=12,
        )
    )
    return {
        "documents": documents,
        "shape": shape,
        "sort": sort,
        "limit": draw(st.sampled_from([0, 1, 3])),
        "steps": steps,
    }


def _ids(collection: Any, spec: dict[str, Any], sort: Any, limit: int) -> Any:
    try:
        return [doc["_id"] for doc in collection.find(spec, sort=sort or None, limit=limit)]
    except (PyMongoError, NotImplementedError, TypeError) as error:
        return type(error).__name__


@pytest.mark.parametrize("key", list(SHAPES.values()), ids=list(SHAPES))
def test_cached_plans_answer_as_a_scan_query_after_query(key: list[tuple[str, int]]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(session=sessions())
    def check(session: dict[str, Any]) -> None:
        ours = EmbeddedClient()["t"]["c"]
        ours.create_index(key, name="shape")
        raw: Any = mongomock.MongoClient()["t"]["c"]
        for number, document in enumerate(session["documents"]):
            ours.insert_one({"_id": number, **document})
            raw.insert_one({"_id": number, **document})
        sort, limit = session["sort"], session["limit"]
        for step, argument in session["steps"]:
            if step == "write":
                number, name, value = argument
                ours.update_one({"_id": number}, {"$set": {name: value}})
                raw.update_one({"_id": number}, {"$set": {name: value}})
                continue
            spec = {name: KINDS[kind](argument) for name, kind in session["shape"].items()}
            assert _ids(ours, spec, sort, limit) == _ids(raw, spec, sort, limit), spec

    check()


def test_a_shape_reuses_its_cached_plan() -> None:
    ours = EmbeddedClient()["t"]["c"]
    ours.create_index([("a", 1), ("b", 1)], name="ab")
    ours.insert_many([{"a": n % 5, "b": n} for n in range(50)])
    store = ours._store
    for n in range(5):
        found = [doc["b"] for doc in ours.find({"a": n, "b": {"$gte": 3}})]
        assert found == [b for b in range(50) if b % 5 == n and b >= 3]
    assert len(store.plans) == 1
    (cached,) = store.plans.values()
    assert (cached.name, cached.uses) == ("ab", 4)


id_values = st.one_of(
    st.sampled_from(
        [*OIDS, ObjectId("00000000000000000000ffff"), ObjectId("ff0000000000000000000000")]
    ),
    st.text(max_size=3),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([1.5, True, None, DATES[0]]),
)


@settings(max_examples=300, deadline=None)
@given(
    ids=st.one_of(
        st.lists(st.binary(min_size=12, max_size=12).map(ObjectId), max_size=6),
        st.lists(st.text(max_size=3), max_size=6),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6),
        st.lists(id_values, max_size=6),
    )
)
def test_ids_come_in_bson_order(ids: list[Any]) -> None:
    found = [{"_id": value} for value in dict.fromkeys(ids)]
    expected = sorted(found, key=lambda doc: _mongomock.BsonComparable(doc["_id"]))
    if found:
        _planner._in_id_order(found)
    assert [doc["_id"] for doc in found] == [doc["_id"] for doc in expected]
