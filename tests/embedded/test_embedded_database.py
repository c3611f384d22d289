"""The embedded database's collection objects and options: one object per name, options kept.

``db[name]`` and ``db.get_collection(name)`` with no options return the one
collection object the database keeps for the name; any option builds a
collection of its own carrying it (the database's options fill the rest, as
in PyMongo). Dropping, renaming, ``with_options`` and tz-aware reads work
through the kept object.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bson.codec_options import CodecOptions
from hypothesis import given
from hypothesis import strategies as st
from pymongo import ReadPreference
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from nsn_store.embedded.collection import EmbeddedCollection
from nsn_store.testing import async_client, mongomock_client

NAIVE: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=False)
WHEN = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def test_every_default_spelling_returns_the_same_collection_object() -> None:
    db = mongomock_client().app
    first = db["people"]
    assert isinstance(first, EmbeddedCollection)
    assert db["people"] is first
    assert db.get_collection("people") is first
    assert db.people is first
    assert db.get_collection("people", None, None, None, None) is first
    assert db["other"] is not first


def test_options_build_a_collection_of_their_own_and_leave_the_kept_one_alone() -> None:
    db = mongomock_client().app
    kept = db["people"]
    naive = db.get_collection("people", codec_options=NAIVE)
    secondary = db.get_collection("people", read_preference=ReadPreference.SECONDARY)
    majority = db.get_collection("people", read_concern=ReadConcern("majority"))
    quiet = db.get_collection("people", write_concern=WriteConcern(w=0))
    for other in (naive, secondary, majority, quiet):
        assert isinstance(other, EmbeddedCollection)
        assert other is not kept
        assert other == kept  # same database, same name: PyMongo's equality
    assert naive.codec_options.tz_aware is False
    assert secondary.read_preference == ReadPreference.SECONDARY
    assert majority.read_concern == ReadConcern("majority")
    assert quiet.write_concern == WriteConcern(w=0)
    assert db["people"] is kept
    assert kept.codec_options.tz_aware is True
    assert kept.read_preference == ReadPreference.PRIMARY
    assert kept.read_concern == ReadConcern()


def test_the_kept_object_sees_drops_and_renames() -> None:
    db = mongomock_client().app
    people = db["people"]
    people.insert_one({"_id": 1})
    db.drop_collection("people")
    assert db["people"] is people
    assert people.count_documents({}) == 0
    assert "people" not in db.list_collection_names()
    people.insert_one({"_id": 2})
    people.rename("humans")
    assert db["humans"].find_one() == {"_id": 2}
    assert people.find_one() is None
    db["humans"].drop()
    assert db.list_collection_names() == []


def test_reads_follow_the_codec_options_of_the_database_they_come_from() -> None:
    client = mongomock_client()  # tz_aware, as nsn_store connects
    client.app.events.insert_one({"_id": 1, "at": WHEN})
    assert client.app.events.find_one()["at"] == WHEN
    naive_db = client.app.with_options(codec_options=NAIVE)
    assert naive_db is not client.app
    assert naive_db.codec_options.tz_aware is False
    assert naive_db["events"] is naive_db.events
    assert naive_db["events"] is not client.app["events"]
    assert naive_db.events.find_one()["at"] == WHEN.replace(tzinfo=None)
    assert client.app.events.find_one()["at"].tzinfo is not None


def test_database_options_reach_its_collections() -> None:
    db = mongomock_client().app
    assert db.with_options() is db
    assert db.with_options(codec_options=db.codec_options) is db
    secondary = db.with_options(read_preference=ReadPreference.SECONDARY)
    assert secondary["people"].read_preference == ReadPreference.SECONDARY
    assert secondary["people"].codec_options == db.codec_options
    majority = db.with_options(read_concern=ReadConcern("majority"))
    assert majority is not db
    assert majority["people"].read_concern == ReadConcern("majority")
    assert majority.get_collection("people", codec_options=NAIVE).read_concern == ReadConcern(
        "majority"
    )


async def test_the_async_face_wraps_the_kept_collection() -> None:
    sync = mongomock_client()
    database = async_client(sync)["app"]
    assert database["people"].delegate is sync.app["people"]
    assert database.people.delegate is sync.app.people
    await database.people.insert_one({"_id": 1})
    assert sync.app.people.find_one() == {"_id": 1}


OPTIONS = {
    "codec_options": st.sampled_from([None, NAIVE, CodecOptions(tz_aware=True)]),
    "read_preference": st.sampled_from(
        [None, ReadPreference.PRIMARY, ReadPreference.SECONDARY, ReadPreference.NEAREST]
    ),
    "write_concern": st.sampled_from([None, WriteConcern(w=0), WriteConcern(w=1)]),
    "read_concern": st.sampled_from([None, ReadConcern(), ReadConcern("majority")]),
}


@given(calls=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.fixed_dictionaries(OPTIONS))))
def test_a_collection_carries_the_options_asked_for_and_the_database_s_others(
    calls: list[tuple[str, dict[str, Any]]],
) -> None:
    db = mongomock_client().app
    for name, options in calls:
        collection = db.get_collection(name, **options)
        assert collection.name == name
        assert collection.codec_options == (options["codec_options"] or db.codec_options)
        assert collection.read_preference == (options["read_preference"] or db.read_preference)
        assert collection.read_concern == (options["read_concern"] or db.read_concern)
        assert collection.write_concern == (options["write_concern"] or WriteConcern())
        if not any(options.values()):
            assert collection is db[name]
