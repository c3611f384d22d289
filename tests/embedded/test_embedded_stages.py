"""``$dateTrunc``, ``$dateToString`` in UTC and ``$merge``: what the aggregates rollup sends.

Each case runs on the embedded database and, when configured, on a real server
with the same expectations; the few that pin an embedded limitation (an option
a server accepts and the embedded database refuses by name) skip on a server.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

from nsn_store.aggregates._periods import merge_when_matched


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


def truncated(db: Any, at: Any, **spec: Any) -> Any:
    """Return ``$dateTrunc`` of ``at`` (stored in a document) with ``spec``."""
    db.probe.delete_many({})
    db.probe.insert_one({"at": at})
    pipeline = [{"$project": {"_id": 0, "t": {"$dateTrunc": {"date": "$at", **spec}}}}]
    (row,) = db.probe.aggregate(pipeline)
    return row["t"]


@pytest.fixture
def embedded_only(backend: str) -> None:
    if backend != "embedded":
        pytest.skip("pins an embedded limitation; a server accepts this option")


# ---------------------------------------------------------------- $dateTrunc: weeks

WEEKS = [
    ("sunday-last-ms-is-previous-monday-week", utc(2026, 1, 11, 23, 59, 59, 999000), {}, 5),
    ("monday-midnight-starts-a-week", utc(2026, 1, 12), {}, 12),
    ("tuesday", utc(2026, 1, 13, 8), {}, 12),
    ("sunday-start-of-week-on-a-sunday", utc(2026, 1, 11, 20), {"startOfWeek": "sunday"}, 11),
    ("sunday-start-of-week-on-a-saturday", utc(2026, 1, 17, 23), {"startOfWeek": "sun"}, 11),
    ("case-insensitive-abbreviation", utc(2026, 1, 16, 1), {"startOfWeek": "FRI"}, 16),
    ("thursday-before-a-friday-start", utc(2026, 1, 15, 23), {"startOfWeek": "Friday"}, 9),
]


@pytest.mark.parametrize(
    ("at", "options", "day"), [w[1:] for w in WEEKS], ids=[w[0] for w in WEEKS]
)
def test_date_trunc_weeks_start_on_the_named_day(
    db: Any, at: datetime, options: dict[str, Any], day: int
) -> None:
    spec = {"unit": "week", "timezone": "UTC", **({"startOfWeek": "monday"} | options)}
    assert truncated(db, at, **spec) == utc(2026, 1, day)


def test_date_trunc_weeks_default_to_sunday_and_cross_the_year(db: Any) -> None:
    assert truncated(db, utc(2026, 1, 1, 8), unit="week") == utc(2025, 12, 28)
    assert truncated(db, utc(2026, 1, 1, 8), unit="week", startOfWeek="mon") == utc(2025, 12, 29)


# ----------------------------------------------------- $dateTrunc: months and days

MONTHS = [
    ("last-ms-of-january", utc(2026, 1, 31, 23, 59, 59, 999000), utc(2026, 1, 1)),
    ("first-of-february", utc(2026, 2, 1), utc(2026, 2, 1)),
    ("last-ms-of-the-year", utc(2025, 12, 31, 23, 59, 59, 999000), utc(2025, 12, 1)),
    ("leap-day", utc(2028, 2, 29, 23), utc(2028, 2, 1)),
    ("after-the-leap-day", utc(2028, 3, 1), utc(2028, 3, 1)),
]


@pytest.mark.parametrize(("at", "expected"), [m[1:] for m in MONTHS], ids=[m[0] for m in MONTHS])
def test_date_trunc_months_start_on_the_first(db: Any, at: datetime, expected: datetime) -> None:
    assert truncated(db, at, unit="month", timezone="UTC") == expected
    assert truncated(db, at, unit="month") == expected  # no timezone means UTC


def test_date_trunc_days_start_at_midnight_utc(db: Any) -> None:
    assert truncated(db, utc(2026, 1, 5, 23, 59, 59, 999000), unit="day") == utc(2026, 1, 5)
    assert truncated(db, utc(2026, 1, 6), unit="day", binSize=1) == utc(2026, 1, 6)


def test_date_trunc_of_null_or_missing_arguments_is_null(db: Any) -> None:
    db.probe.insert_one({"at": utc(2026, 1, 5, 9), "none": None})
    nulls = {
        "missing-date": {"date": "$absent", "unit": "week", "binSize": "bad"},
        "null-date": {"date": "$none", "unit": "day"},
        "null-unit": {"date": "$at", "unit": None},
        "null-bin-size": {"date": "$at", "unit": "day", "binSize": "$none"},
        "null-start-of-week": {"date": "$at", "unit": "week", "startOfWeek": "$absent"},
        "null-timezone": {"date": "$at", "unit": "day", "timezone": "$none"},
    }
    project = {name: {"$dateTrunc": spec} for name, spec in nulls.items()}
    (row,) = db.probe.aggregate([{"$project": {"_id": 0, **project}}])
    assert row == dict.fromkeys(nulls)


ERRORS = [
    ("not-an-object", "A", 5439007),
    ("unknown-argument", {"date": "$at", "unit": "day", "endDate": 1}, 5439008),
    ("missing-date", {"unit": "day"}, 5439009),
    ("missing-unit", {"date": "$at"}, 5439010),
    ("string-date", {"date": "2026-01-05", "unit": "day"}, 5439012),
    ("numeric-unit", {"date": "$at", "unit": 1}, 5439013),
    ("bin-size-zero", {"date": "$at", "unit": "day", "binSize": 0}, 5439018),
    ("bin-size-fraction", {"date": "$at", "unit": "day", "binSize": 2.5}, 5439017),
    ("numeric-start-of-week", {"date": "$at", "unit": "week", "startOfWeek": 1}, 5439015),
    ("unknown-day", {"date": "$at", "unit": "week", "startOfWeek": "FRIDIE"}, 5439016),
    ("numeric-timezone", {"date": "$at", "unit": "day", "timezone": 1}, 40517),
    ("unknown-timezone", {"date": "$at", "unit": "day", "timezone": "America/Invalid"}, 40485),
]


@pytest.mark.parametrize(("spec", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_date_trunc_refuses_bad_arguments_with_the_server_codes(
    db: Any, spec: Any, code: int
) -> None:
    db.probe.insert_one({"at": utc(2026, 1, 5, 9)})
    with pytest.raises(OperationFailure) as caught:
        list(db.probe.aggregate([{"$project": {"t": {"$dateTrunc": spec}}}]))
    assert caught.value.code == code


UNSUPPORTED = [
    ("hour", {"unit": "hour"}, "unit 'hour'"),
    ("bin-size-two", {"unit": "day", "binSize": 2}, "binSize 2"),
    ("paris", {"unit": "day", "timezone": "Europe/Paris"}, "timezone 'Europe/Paris'"),
    ("offset", {"unit": "day", "timezone": "+05:30"}, "timezone '+05:30'"),
]


@pytest.mark.parametrize(
    ("spec", "named"), [u[1:] for u in UNSUPPORTED], ids=[u[0] for u in UNSUPPORTED]
)
@pytest.mark.usefixtures("embedded_only")
def test_date_trunc_options_beyond_the_subset_are_refused_by_name(
    db: Any, spec: dict[str, Any], named: str
) -> None:
    with pytest.raises(NotImplementedError, match=re.escape(named)):
        truncated(db, utc(2026, 1, 5, 9), **spec)


@pytest.mark.usefixtures("embedded_only")
def test_date_trunc_an_unknown_unit_gets_the_server_code(db: Any) -> None:
    with pytest.raises(OperationFailure) as caught:
        truncated(db, utc(2026, 1, 5, 9), unit="century")
    assert caught.value.code == 5439014


def test_date_trunc_evaluates_in_an_expr_filter_too(db: Any) -> None:
    db.probe.insert_many([{"at": utc(2026, 1, 12)}, {"at": utc(2026, 1, 13, 5)}])
    week_start = {"$dateTrunc": {"date": "$at", "unit": "week", "startOfWeek": "monday"}}
    found = db.probe.find({"$expr": {"$eq": ["$at", week_start]}}, {"_id": 0})
    assert list(found) == [{"at": utc(2026, 1, 12)}]


# ---------------------------------------------------------------- $dateToString


def test_date_to_string_in_utc_formats_the_utc_date(db: Any) -> None:
    db.probe.insert_one({"at": utc(2026, 1, 31, 23, 30)})
    spec = {"date": "$at", "format": "%Y-%m-%d", "timezone": "UTC"}
    (row,) = db.probe.aggregate([{"$project": {"_id": 0, "day": {"$dateToString": spec}}}])
    assert row == {"day": "2026-01-31"}


@pytest.mark.usefixtures("embedded_only")
def test_date_to_string_in_another_zone_is_refused_by_name(db: Any) -> None:
    db.probe.insert_one({"at": utc(2026, 1, 31, 23, 30)})
    spec = {"date": "$at", "format": "%Y-%m-%d", "timezone": "Asia/Tokyo"}
    with pytest.raises(NotImplementedError, match="Asia/Tokyo"):
        list(db.probe.aggregate([{"$project": {"day": {"$dateToString": spec}}}]))


# ---------------------------------------------------------------- $merge


@pytest.fixture
def target(db: Any) -> Any:
    """``dst``: a unique index on ``k``; row ``a`` exists (x 1, y 2)."""
    db.dst.create_index("k", unique=True)
    db.dst.insert_one({"_id": 1, "k": "a", "x": 1, "y": 2})
    return db.dst


def merged(db: Any, rows: list[dict[str, Any]], **merge: Any) -> list[Any]:
    """Merge ``rows`` (from ``src``, without their ``_id``) into ``dst``; return the output."""
    db.src.delete_many({})
    db.src.insert_many(rows)
    stage = {"$merge": {"into": "dst", "on": "k", **merge}}
    return list(db.src.aggregate([{"$project": {"_id": 0}}, stage]))


def contents(collection: Any) -> list[Any]:
    return sorted(collection.find({}, {"_id": 0}), key=lambda d: d["k"])


def test_merge_on_fields_without_a_unique_index_is_refused_before_any_write(db: Any) -> None:
    db.src.insert_one({"k": "a"})
    db.dst.create_index("k")  # not unique
    db.dst.create_index([("k", 1), ("j", 1)], unique=True)  # unique, but not exactly "k"
    db.dst.create_index("j", unique=True, partialFilterExpression={"j": {"$exists": True}})
    for on in ("k", ["j"], ["k", "x"]):
        with pytest.raises(OperationFailure) as caught:
            list(
                db.src.aggregate([{"$project": {"_id": 0}}, {"$merge": {"into": "dst", "on": on}}])
            )
        assert caught.value.code == 51183, on
    assert db.dst.count_documents({}) == 0


def test_merge_on_a_compound_unique_index_in_any_field_order(db: Any) -> None:
    db.dst.create_index([("b", 1), ("a", -1)], unique=True)
    db.src.insert_one({"a": 1, "b": 2, "v": 3})
    db.src.aggregate([{"$project": {"_id": 0}}, {"$merge": {"into": "dst", "on": ["a", "b"]}}])
    assert list(db.dst.find({}, {"_id": 0})) == [{"a": 1, "b": 2, "v": 3}]


def test_merge_on_id_into_a_new_collection_creates_it(db: Any) -> None:
    db.src.insert_many([{"_id": 1, "v": 1}, {"_id": 2, "v": 2}])
    assert list(db.src.aggregate([{"$merge": "fresh"}])) == []
    assert list(db.fresh.find().sort("_id", 1)) == [{"_id": 1, "v": 1}, {"_id": 2, "v": 2}]


WHEN_MATCHED = [
    ("replace", "replace", [{"k": "a", "x": 10}, {"k": "b", "x": 20}]),
    ("merge", "merge", [{"k": "a", "x": 10, "y": 2}, {"k": "b", "x": 20}]),
    ("keep-existing", "keepExisting", [{"k": "a", "x": 1, "y": 2}, {"k": "b", "x": 20}]),
    (
        "pipeline",
        [{"$set": {"x": {"$add": ["$x", "$$new.x"]}, "seen": True}}],
        [{"k": "a", "x": 11, "y": 2, "seen": True}, {"k": "b", "x": 20}],
    ),
]


@pytest.mark.parametrize(
    ("when_matched", "expected"), [w[1:] for w in WHEN_MATCHED], ids=[w[0] for w in WHEN_MATCHED]
)
def test_merge_when_matched_modes(
    db: Any, target: Any, when_matched: Any, expected: list[Any]
) -> None:
    output = merged(db, [{"k": "a", "x": 10}, {"k": "b", "x": 20}], whenMatched=when_matched)
    assert output == []
    assert contents(target) == expected
    assert target.find_one({"k": "a"})["_id"] == 1  # the matched document keeps its _id


def test_merge_when_matched_fail_refuses_an_existing_match(db: Any, target: Any) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        merged(db, [{"k": "a", "x": 10}], whenMatched="fail", whenNotMatched="insert")
    assert caught.value.code == 11000
    merged(db, [{"k": "b", "x": 20}], whenMatched="fail")
    assert contents(target) == [{"k": "a", "x": 1, "y": 2}, {"k": "b", "x": 20}]


def test_merge_pipeline_reads_let_variables(db: Any, target: Any) -> None:
    update = [{"$set": {"x": {"$multiply": ["$$new.x", "$$factor"]}}}]
    merged(db, [{"k": "a", "x": 10}], whenMatched=update, let={"factor": 3})
    assert contents(target) == [{"k": "a", "x": 30, "y": 2}]


def test_merge_when_not_matched_discard_and_fail(db: Any, target: Any) -> None:
    merged(db, [{"k": "a", "x": 10}, {"k": "b"}], whenMatched="merge", whenNotMatched="discard")
    assert contents(target) == [{"k": "a", "x": 10, "y": 2}]
    with pytest.raises(OperationFailure) as caught:
        merged(db, [{"k": "c"}], whenMatched="replace", whenNotMatched="fail")
    assert caught.value.code == 13113
    assert db.dst.count_documents({"k": "c"}) == 0


def test_the_rollup_when_matched_pipeline_moves_updated_at_only_on_a_change(
    db: Any, target: Any
) -> None:
    db.dst.update_one({"k": "a"}, {"$set": {"value": 1, "updatedAt": utc(2026, 1, 1)}})
    merged(
        db, [{"k": "a", "value": 1, "updatedAt": utc(2026, 2, 1)}], whenMatched=merge_when_matched()
    )
    assert target.find_one({"k": "a"})["updatedAt"] == utc(2026, 1, 1)
    merged(
        db, [{"k": "a", "value": 2, "updatedAt": utc(2026, 2, 1)}], whenMatched=merge_when_matched()
    )
    assert (target.find_one({"k": "a"})["value"], target.find_one({"k": "a"})["updatedAt"]) == (
        2,
        utc(2026, 2, 1),
    )


MISUSES = [
    ("not-last", [{"$merge": {"into": "dst", "on": "k"}}, {"$project": {"_id": 0}}], 40601),
    (
        "unsupported-combination",
        [
            {
                "$merge": {
                    "into": "dst",
                    "on": "k",
                    "whenMatched": "keepExisting",
                    "whenNotMatched": "discard",
                }
            }
        ],
        51181,
    ),
    ("unknown-mode", [{"$merge": {"into": "dst", "on": "k", "whenMatched": "upsert"}}], 2),
    ("let-without-pipeline", [{"$merge": {"into": "dst", "on": "k", "let": {"a": 1}}}], 51199),
    ("on-not-strings", [{"$merge": {"into": "dst", "on": [1]}}], 51134),
    (
        "on-field-missing",
        [{"$project": {"_id": 0, "k": 0}}, {"$merge": {"into": "dst", "on": "k"}}],
        51132,
    ),
]


@pytest.mark.parametrize(
    ("pipeline", "code"), [m[1:] for m in MISUSES], ids=[m[0] for m in MISUSES]
)
def test_merge_misuse_gets_the_server_codes(
    db: Any, target: Any, pipeline: list[Any], code: int
) -> None:
    db.src.insert_one({"k": "z"})
    with pytest.raises(OperationFailure) as caught:
        list(db.src.aggregate(pipeline))
    assert caught.value.code == code
    assert db.dst.count_documents({}) == 1


# ------------------------------------------- the target's validator and unique indexes


@pytest.fixture
def validated(db: Any) -> Any:
    """``dst`` with a validator (``value`` an int) and unique indexes on ``k`` and ``code``."""
    schema = {"required": ["k", "value"], "properties": {"value": {"bsonType": "int"}}}
    db.create_collection("dst", validator={"$jsonSchema": schema})
    db.dst.create_index("k", unique=True)
    db.dst.create_index("code", unique=True, sparse=True)
    db.dst.insert_one({"_id": 1, "k": "a", "value": 1, "code": "A"})
    return db.dst


INVALID_MERGES = [
    ("insert", {}, [{"k": "b", "value": "two"}]),
    ("merge", {"whenMatched": "merge"}, [{"k": "a", "value": "one"}]),
    ("replace", {"whenMatched": "replace"}, [{"k": "a"}]),
    ("pipeline", {"whenMatched": [{"$set": {"value": "$$new.value"}}]}, [{"k": "a", "value": 1.5}]),
]


@pytest.mark.parametrize(
    ("options", "rows"), [i[1:] for i in INVALID_MERGES], ids=[i[0] for i in INVALID_MERGES]
)
def test_merged_documents_are_validated_like_any_write(
    db: Any, validated: Any, options: dict[str, Any], rows: list[Any]
) -> None:
    with pytest.raises(OperationFailure) as caught:
        merged(db, rows, **options)
    assert caught.value.code == 121
    assert "errInfo" in caught.value.details
    assert list(validated.find({}, {"_id": 0})) == [{"k": "a", "value": 1, "code": "A"}]


def test_bypass_document_validation_lets_a_merge_through(db: Any, validated: Any) -> None:
    db.src.insert_one({"k": "b", "value": "two"})
    stage = {"$merge": {"into": "dst", "on": "k"}}
    list(db.src.aggregate([{"$project": {"_id": 0}}, stage], bypassDocumentValidation=True))
    assert validated.find_one({"k": "b"}, {"_id": 0}) == {"k": "b", "value": "two"}


def test_merged_documents_respect_the_other_unique_indexes(db: Any, validated: Any) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        merged(db, [{"k": "b", "value": 2, "code": "A"}])
    assert caught.value.code == 11000
    assert validated.count_documents({}) == 1
