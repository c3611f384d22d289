"""``$expr`` field paths to absent fields evaluate as missing, as on a server."""

from __future__ import annotations

from typing import Any


def test_expr_on_a_missing_field_is_missing_not_an_error(db: Any) -> None:
    db.items.insert_many([{"_id": 1, "a": 1}, {"_id": 2}])
    assert [d["_id"] for d in db.items.find({"$expr": {"$eq": ["$a", 1]}})] == [1]
    assert [d["_id"] for d in db.items.find({"$expr": {"$ne": ["$a", 1]}})] == [2]
    assert list(db.items.find({"$expr": {"$eq": ["$a", None]}})) == []  # missing is not null
    assert [d["_id"] for d in db.items.find({"$expr": {"$gt": ["$a", 0]}})] == [1]


def test_pipelines_keep_if_null_of_a_missing_field(db: Any) -> None:
    db.items.insert_one({"_id": 1})
    db.items.update_one({"_id": 1}, [{"$set": {"t": {"$concat": [{"$ifNull": ["$t", ""]}, "x"]}}}])
    assert db.items.find_one({"_id": 1}) == {"_id": 1, "t": "x"}
