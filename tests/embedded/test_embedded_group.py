"""The native ``$group`` of the embedded database gives mongomock's answers, to the last detail.

:func:`nsn_store.embedded._group.group_stage` runs the ``$group`` stages it
can evaluate itself (the aggregates rollup's among them) instead of
mongomock's ``_handle_group_stage``. The property tests feed both the same
random documents and specs and compare the output exactly: group order, key
order inside each document, missing versus null, the type of every number, and
the error when mongomock raises one. The example tests pin the cases a random
search finds rarely and the specs left to mongomock.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime, timezone
from typing import Any

import pytest
from bson import Decimal128, Int64, ObjectId, Timestamp
from bson.son import SON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsn_store.aggregates._periods import rollup_pipeline, truncate_expression
from nsn_store.embedded import _group, _mongomock, _pipeline
from nsn_store.testing import mongomock_client

FIELDS = ("a", "b", "c", "d")
OIDS = [ObjectId(f"{n:024x}") for n in range(3)]
DAYS = [datetime(2026, 1, d, h) for d in (4, 5, 6) for h in (0, 13)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-3, 3).map(Int64),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, math.nan, math.inf]),
    st.builds(float, st.just("nan")),  # a new NaN object each time
    st.sampled_from(["", "x", "y", "$x"]),
    st.sampled_from(OIDS),
    st.sampled_from(DAYS),
    st.sampled_from(DAYS).map(lambda d: d.replace(tzinfo=timezone.utc)),
    st.sampled_from([Decimal128("1.5"), Decimal128("0")]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(FIELDS), inner, max_size=2),
    ),
    max_leaves=4,
)
documents = st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4), max_size=12)
#: Documents whose fields hold what a rollup's events hold (and nulls, and gaps).
event_documents = st.lists(
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(
            st.none(),
            st.sampled_from(["sent", "queued", "failed"]),
            st.sampled_from(DAYS).map(lambda d: d.replace(tzinfo=timezone.utc)),
            st.integers(0, 2),
        ),
        max_size=4,
    ),
    max_size=30,
)

field_paths = st.sampled_from([f"${name}" for name in FIELDS])
constants = st.one_of(st.none(), st.integers(-2, 2), st.sampled_from(["k", 1.5, True, OIDS[0]]))
truncations = st.builds(
    lambda date, unit, extra: {"$dateTrunc": {"date": date, "unit": unit, **extra}},
    st.one_of(field_paths, st.sampled_from([DAYS[0], None])),
    st.sampled_from(["day", "week", "month"]),
    st.fixed_dictionaries(
        {},
        optional={
            "timezone": st.sampled_from(["UTC", "+00:00", "Etc/UTC"]),
            "startOfWeek": st.sampled_from(["monday", "SUN", "fri"]),
            "binSize": st.just(1),
        },
    ),
)
expressions = st.recursive(
    st.one_of(field_paths, constants, truncations),
    lambda inner: st.dictionaries(st.sampled_from(["k", "m", "n"]), inner, min_size=1, max_size=3),
    max_leaves=5,
)
accumulators = st.dictionaries(
    st.sampled_from(["s", "t", "u"]),
    st.builds(
        lambda operator, argument: {operator: argument},
        st.sampled_from(["$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$addToSet"]),
        expressions,
    ),
    max_size=3,
)
group_specs = st.builds(
    lambda key, fields, first: {"_id": key, **fields} if first else {**fields, "_id": key},
    st.one_of(
        field_paths,
        st.dictionaries(
            st.sampled_from(["k", "m"]), st.one_of(field_paths, truncations), min_size=1
        ),
        expressions,
        st.sampled_from([None, 0, "", False, {}]),
    ),
    accumulators,
    st.booleans(),
)


def exact(value: Any) -> Any:
    """Return ``value`` spelled out so that ``==`` also compares types, key order and NaN."""
    if isinstance(value, dict):
        return ("dict", [(name, exact(item)) for name, item in value.items()])
    if isinstance(value, list):
        return ("list", [exact(item) for item in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, datetime):
        return ("datetime", value, value.tzinfo is None)
    return (type(value).__name__, value)


def outcome(run: Any) -> Any:
    """Return what ``run()`` gives, spelled out, or the type and text of its error."""
    try:
        return ("ok", exact(list(run())))
    except Exception as error:  # the error itself is compared
        return ("error", type(error).__name__, str(error))


def mongomock_group(docs: list[Any], spec: Any) -> Any:
    return outcome(
        lambda: _mongomock.process_pipeline(copy.deepcopy(docs), None, [{"$group": spec}], None)
    )


def native_group(docs: list[Any], spec: Any) -> Any:
    group = _group.group_stage(spec)
    assert group is not None, spec
    return outcome(lambda: group(copy.deepcopy(docs)))


# ---------------------------------------------------------------- differential


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(docs=documents, spec=group_specs)
def test_native_group_gives_mongomocks_answer_on_any_documents(
    docs: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    assert native_group(docs, spec) == mongomock_group(docs, spec)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(docs=event_documents, spec=group_specs)
def test_native_group_gives_mongomocks_answer_on_event_like_documents(
    docs: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    """Fewer types, so most runs group (rather than fail) and ids repeat."""
    assert native_group(docs, spec) == mongomock_group(docs, spec)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(docs=event_documents, period=st.sampled_from(["day", "week", "month"]))
def test_the_rollup_group_gives_mongomocks_answer(docs: list[dict[str, Any]], period: str) -> None:
    truncation = truncate_expression(period)
    truncation["$dateTrunc"]["date"] = "$b"
    spec = {"_id": {"metric": "$a", "date": truncation}, "value": {"$sum": 1}}
    assert native_group(docs, spec) == mongomock_group(docs, spec)


# ---------------------------------------------------------------- examples

NAN = float("nan")
MIXED_DATES = [{"a": DAYS[0]}, {"a": DAYS[1].replace(tzinfo=timezone.utc)}]

EXAMPLES = [
    ("one-and-one-point-zero-are-one-group", [{"a": 1}, {"a": 1.0}, {"a": 1}], {"_id": "$a"}),
    ("true-and-one-are-two-groups", [{"a": True}, {"a": 1}, {"a": True}], {"_id": "$a"}),
    ("one-nan-object-is-one-group", [{"a": math.nan}, {"a": 1}, {"a": math.nan}], {"_id": "$a"}),
    (
        "distinct-nan-objects-cut-runs",  # groupby's == is False between them, True for one
        [{"a": NAN, "n": 1}, {"a": float("nan"), "n": 2}, {"a": NAN, "n": 3}],
        {"_id": "$a", "n": {"$push": "$n"}},
    ),
    (
        "distinct-nan-objects-in-documents",
        [{"a": NAN}, {"a": float("nan")}, {"a": NAN}],
        {"_id": {"k": "$a"}, "n": {"$sum": 1}},
    ),
    (
        "documents-equal-but-for-field-order",
        [{"a": {"x": 1, "y": 2}}, {"a": {"y": 2, "x": 1}}, {"a": {"x": 1, "y": 2}}],
        {"_id": "$a", "n": {"$sum": 1}},
    ),
    ("naive-and-aware-dates", MIXED_DATES, {"_id": "$a"}),
    ("list-ids", [{"a": [1, 2]}, {"a": [1]}, {"a": [1, 2]}], {"_id": "$a", "n": {"$push": "$a"}}),
    ("decimal-ids", [{"a": Decimal128("1")}, {"a": Decimal128("2")}], {"_id": "$a"}),
    ("missing-key-left-out", [{"a": 1}, {"b": 2}, {}], {"_id": {"a": "$a", "b": "$b"}}),
    ("missing-id-is-null", [{"a": 1}, {}, {"a": None}], {"_id": "$a", "n": {"$sum": 1}}),
    ("falsy-id-one-group-even-of-nothing", [], {"_id": 0, "n": {"$sum": 1}}),
    ("null-id", [{"a": 2}, {"a": 3}], {"_id": None, "s": {"$sum": "$a"}, "m": {"$max": "$a"}}),
    ("empty-input", [], {"_id": "$a", "n": {"$sum": 1}}),
    ("sum-types", [{"a": 1}, {"a": Int64(2)}, {"a": 1.5}], {"_id": None, "s": {"$sum": "$a"}}),
    ("sum-decimal", [{"a": Decimal128("1.5")}, {"a": 2}], {"_id": None, "s": {"$sum": "$a"}}),
    ("sum-float-constant", [{}] * 7, {"_id": None, "s": {"$sum": 0.1}}),
    ("sum-bool-constant", [{}] * 3, {"_id": None, "s": {"$sum": True}}),
    ("avg", [{"a": 1}, {"a": "x"}, {"a": 2}], {"_id": None, "v": {"$avg": "$a"}}),
    ("avg-of-nothing", [{"b": 1}], {"_id": None, "v": {"$avg": "$a"}}),
    ("min-mixed-types-fails", [{"a": 1}, {"a": "x"}], {"_id": None, "v": {"$min": "$a"}}),
    (
        "add-to-set-falsy",
        [{"a": 0}, {"a": ""}, {"a": 1}, {"a": 1.0}],
        {"_id": 1, "v": {"$addToSet": "$a"}},
    ),
    (
        "missing-inside-an-accumulated-document",
        [{"a": 1, "b": 2}, {"a": 3}],
        {"_id": None, "v": {"$push": {"x": "$a", "y": "$b"}}},
    ),
    (
        "first-last-skip-missing",
        [{"b": 0}, {"a": 1}, {"a": 2}, {"b": 3}],
        {"_id": None, "f": {"$first": "$a"}, "l": {"$last": "$a"}},
    ),
    (
        "trunc-bad-date",
        [{"a": "2026-01-05"}],
        {"_id": {"$dateTrunc": {"date": "$a", "unit": "day"}}},
    ),
    ("trunc-null-date", [{"a": None}, {}], {"_id": {"$dateTrunc": {"date": "$a", "unit": "week"}}}),
    (
        "trunc-object-id-and-timestamp",
        [{"a": OIDS[2]}, {"a": Timestamp(1767600000, 1)}],
        {"_id": {"d": {"$dateTrunc": {"date": "$a", "unit": "month"}}}},
    ),
    (
        "trunc-missing-date-in-a-document-id",
        [{"a": 1}],
        {"_id": {"d": {"$dateTrunc": {"date": {"x": "$missing"}, "unit": "day"}}}},
    ),
]


@pytest.mark.parametrize(("docs", "spec"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_native_group_matches_mongomock_on(docs: list[Any], spec: dict[str, Any]) -> None:
    assert native_group(docs, spec) == mongomock_group(docs, spec)


LEFT_TO_MONGOMOCK = [
    ("root-variable", {"_id": "$$ROOT"}),
    ("dotted-path", {"_id": "$a.b"}),
    ("an-operator-mongomock-evaluates", {"_id": {"$add": ["$a", 1]}}),
    ("a-list-expression", {"_id": ["$a"]}),
    ("an-unknown-accumulator", {"_id": None, "n": {"$count": {}}}),
    ("two-accumulators-in-one-field", {"_id": None, "n": {"$sum": 1, "$max": "$a"}}),
    ("merge-objects", {"_id": None, "n": {"$mergeObjects": "$a"}}),
    ("no-id", {"n": {"$sum": 1}}),
    ("an-ordered-dict-spec", SON([("_id", "$a")])),
    (
        "a-non-utc-trunc",
        {"_id": {"$dateTrunc": {"date": "$a", "unit": "day", "timezone": "Europe/Paris"}}},
    ),
    ("a-trunc-by-hours", {"_id": {"$dateTrunc": {"date": "$a", "unit": "hour"}}}),
    ("a-trunc-bin-size", {"_id": {"$dateTrunc": {"date": "$a", "unit": "day", "binSize": 2}}}),
    ("a-computed-trunc-unit", {"_id": {"$dateTrunc": {"date": "$a", "unit": "$u"}}}),
]


@pytest.mark.parametrize(
    "spec", [e[1] for e in LEFT_TO_MONGOMOCK], ids=[e[0] for e in LEFT_TO_MONGOMOCK]
)
def test_other_specs_are_left_to_mongomock(spec: Any) -> None:
    assert _group.group_stage(spec) is None


# ---------------------------------------------------------------- through aggregate


def test_stages_around_a_native_group_run_in_mongomock_in_order() -> None:
    db = mongomock_client().get_database("pipeline_fast")
    docs = [{"_id": n, "k": n % 3, "v": n, "tag": "ab"[n % 2]} for n in range(12)]
    db.things.insert_many(docs)
    pipeline = [
        {"$match": {"v": {"$gte": 2}}},
        {"$addFields": {"w": {"$multiply": ["$v", 2]}}},
        {
            "$group": {
                "_id": {"k": "$k", "tag": "$tag"},
                "w": {"$sum": "$w"},
                "ids": {"$push": "$_id"},
            }
        },
        {"$sort": {"w": -1}},
        {"$group": {"_id": "$_id.k", "n": {"$sum": 1}, "top": {"$first": "$w"}}},
        {"$project": {"n": 1, "top": 1}},
    ]
    found = [d for d in db.things.find() if d["v"] >= 2]
    expected = list(_mongomock.process_pipeline(found, db, pipeline[1:], None))
    assert exact(list(db.things.aggregate(pipeline))) == exact(expected)


def test_a_session_is_refused_as_mongomock_refuses_it() -> None:
    db = mongomock_client().get_database("pipeline_fast")
    with pytest.raises(NotImplementedError, match="sessions"):
        _pipeline.run_stages([{"a": 1}], db, [{"$group": {"_id": "$a"}}], session=object())


def test_the_rollup_writes_the_rows_mongomocks_group_gives(clock: Any) -> None:
    db = mongomock_client(clock=clock).get_database("pipeline_fast")
    tenant = ObjectId()
    events = [
        {
            "tenantId": tenant,
            "eventType": kind,
            "createdAt": datetime(2026, 1, day, hour, tzinfo=timezone.utc),
        }
        for day, hour, kind in [(5, 9, "sent"), (5, 23, "sent"), (6, 0, "queued"), (6, 1, "sent")]
    ]
    db.messageEvents.insert_many(events)
    db.aggregates.create_index(
        [("tenantId", 1), ("date", 1), ("metric", 1), ("period", 1)], unique=True
    )
    from nsn_store.aggregates._periods import checked_window

    window = checked_window("day", datetime(2026, 1, 5), datetime(2026, 1, 7))
    pipeline = rollup_pipeline(tenant, window, clock.now())
    found = list(db.messageEvents.find(pipeline[0]["$match"]))
    expected = list(_mongomock.process_pipeline(found, db, pipeline[1:-1], None))
    list(db.messageEvents.aggregate(pipeline))
    rows = list(db.aggregates.find({}, {"_id": 0}))
    assert exact(rows) == exact(expected)
    assert {(r["date"], r["metric"], r["value"]) for r in rows} == {
        ("2026-01-05", "sent", 2),
        ("2026-01-06", "queued", 1),
        ("2026-01-06", "sent", 1),
    }
