"""BSON fidelity (issue 13, item 3): what is stored is what a server stores.

Values round-trip through BSON as a pymongo user reading from a server sees
them: millisecond datetimes in UTC, int32 versus int64 kept (a long reads back
as ``bson.Int64``), ``_id`` first, binary subtype 0 as ``bytes``, regexes as
``bson.Regex``; numeric updates keep the server's type rules. ``hello``
reports the limits and the server's time.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import bson
import pytest
from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS
from hypothesis import given, settings
from hypothesis import strategies as st
from pymongo import UpdateOne

from nsn_store.embedded import roundtrip

UTC = dt.timezone.utc


def test_datetimes_are_stored_in_utc_at_millisecond_precision_on_every_write(db: Any) -> None:
    coll = db["docs"]
    moment = dt.datetime(2026, 1, 5, 11, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    expected = dt.datetime(2026, 1, 5, 9, 0, 0, 123000, tzinfo=UTC)
    coll.insert_one({"_id": 1, "at": moment})
    coll.update_one({"_id": 2}, {"$set": {"at": moment}}, upsert=True)
    coll.insert_one({"_id": 3})
    coll.bulk_write([UpdateOne({"_id": 3}, {"$set": {"at": [moment]}})])
    assert [d["at"] for d in coll.find(sort=[("_id", 1)])] == [expected, expected, [expected]]


def test_a_long_reads_back_as_int64_and_an_int_as_int(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one(
        {"_id": 1, "small": 5, "big": 2**40, "long": Int64(5), "nested": {"big": -(2**33)}}
    )
    doc = coll.find_one({"_id": 1})
    assert doc == {"_id": 1, "small": 5, "big": 2**40, "long": 5, "nested": {"big": -(2**33)}}
    assert [type(doc[k]) for k in ("small", "big", "long")] == [int, Int64, Int64]
    assert type(doc["nested"]["big"]) is Int64


def test_inc_and_mul_keep_the_servers_numeric_types(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one(
        {
            "_id": 1,
            "long": Int64(5),
            "int": 2**31 - 1,
            "dbl": 1,
            "dec": Decimal128("1.5"),
            "m": Int64(3),
        }
    )
    coll.update_one(
        {"_id": 1}, {"$inc": {"long": 1, "int": 1, "dbl": 0.5, "dec": 1}, "$mul": {"m": 2}}
    )
    doc = coll.find_one({"_id": 1})
    assert doc == {"_id": 1, "long": 6, "int": 2**31, "dbl": 1.5, "dec": Decimal128("2.5"), "m": 6}
    # long + int stays long; an int that overflows becomes a long; a double widens.
    assert [type(doc[k]) for k in ("long", "int", "dbl", "m")] == [Int64, Int64, float, Int64]


def test_a_changed_numeric_type_is_a_modification(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "n": 1})
    result = coll.update_one({"_id": 1}, {"$set": {"n": 1.0}})
    assert result.modified_count == 1
    assert type(coll.find_one({"_id": 1})["n"]) is float
    assert coll.update_one({"_id": 1}, {"$set": {"n": 1.0}}).modified_count == 0


def test_id_is_stored_first_on_insert_and_upsert(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one({"a": 1, "_id": 5})
    coll.update_one({"a": 2, "b": 3}, {"$set": {"c": 4}}, upsert=True)
    assert list(coll.find_one({"_id": 5})) == ["_id", "a"]
    assert list(coll.find_one({"a": 2})) == ["_id", "a", "b", "c"]


def test_values_read_back_as_their_bson_types(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one(
        {
            "_id": 1,
            "bin": Binary(b"raw", 0),
            "uuid_bin": Binary(b"0" * 16, 4),
            "tuple": (1, (2, 3)),
            "regex": re.compile("^a", re.IGNORECASE),
        }
    )
    doc = coll.find_one({"_id": 1})
    assert type(doc["bin"]) is bytes and doc["bin"] == b"raw"
    assert doc["uuid_bin"] == Binary(b"0" * 16, 4)
    assert doc["tuple"] == [1, [2, 3]]
    assert isinstance(doc["regex"], Regex)
    assert doc["regex"].pattern == "^a" and doc["regex"].flags & re.IGNORECASE


def test_a_stored_document_is_not_the_callers_object(db: Any) -> None:
    coll = db["docs"]
    mine = {"_id": 1, "tags": ["a"]}
    coll.insert_one(mine)
    mine["tags"].append("b")
    assert coll.find_one({"_id": 1}) == {"_id": 1, "tags": ["a"]}


def test_hello_reports_the_limits_and_a_datetime_local_time(
    db: Any, backend: str, clock: Any
) -> None:
    for command in ("hello", "isMaster", "ismaster"):
        reply = db.command(command)
        assert reply["maxBsonObjectSize"] == 16 * 1024 * 1024
        assert reply["maxMessageSizeBytes"] == 48_000_000
        assert reply["maxWriteBatchSize"] == 100_000
        assert isinstance(reply["localTime"], dt.datetime)
        assert reply["localTime"].tzinfo is not None  # the client is tz_aware
        assert reply.get("isWritablePrimary", reply.get("ismaster")) is True
        if backend == "embedded":
            assert reply["localTime"] == clock.now()  # the embedded database's clock


def test_hello_local_time_follows_the_embedded_clock(clock: Any) -> None:
    from nsn_store.embedded import EmbeddedClient

    aware, naive = EmbeddedClient(clock=clock), EmbeddedClient(clock=clock, tz_aware=False)
    clock.advance(hours=3, microseconds=1500)
    assert aware.admin.command("hello")["localTime"] == clock.now()
    assert naive.admin.command({"isMaster": 1})["localTime"] == clock.now().replace(tzinfo=None)


@pytest.mark.parametrize("value", [dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)])
def test_dates_before_the_epoch_truncate_as_bson_does(db: Any, value: dt.datetime) -> None:
    db["docs"].insert_one({"_id": 1, "at": value})
    assert db["docs"].find_one({"_id": 1})["at"] == value.replace(microsecond=999000)


def test_arithmetic_on_nested_and_positional_paths_keeps_the_types(db: Any) -> None:
    coll = db["docs"]
    coll.insert_one({"_id": 1, "stats": {"sent": Int64(1)}, "list": [{"a": 1}, {"a": 2}]})
    coll.update_one({"_id": 1}, {"$inc": {"stats.sent": 2, "stats.new": 1, "list.0.a": 1}})
    coll.update_one({"_id": 1, "list.a": 2}, {"$inc": {"list.$.a": 5}})
    doc = coll.find_one({"_id": 1})
    assert doc == {"_id": 1, "stats": {"sent": 3, "new": 1}, "list": [{"a": 7}, {"a": 2}]}
    assert type(doc["stats"]["sent"]) is Int64


def test_a_long_that_overflows_is_refused_and_left_unchanged(db: Any) -> None:
    from pymongo.errors import WriteError

    coll = db["docs"]
    coll.insert_one({"_id": 1, "n": Int64(2**63 - 1)})
    with pytest.raises(WriteError) as caught:
        coll.update_one({"_id": 1}, {"$inc": {"n": 1}})
    assert caught.value.code == 2
    assert "Failed to apply $inc operations to current value" in str(caught.value)
    assert coll.find_one({"_id": 1}) == {"_id": 1, "n": 2**63 - 1}


# A read's copy: shared immutable values, copied containers, the round trip's exact types.
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5).filter(lambda text: "\x00" not in text),
    st.binary(max_size=4),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.builds(Binary, st.binary(max_size=4), st.integers(min_value=1, max_value=9)),
    st.builds(Decimal128, st.decimals(-(10**9), 10**9, places=3).map(str)),
    st.builds(Regex, st.text(alphabet="ab.*", max_size=3), st.sampled_from(["", "i"])),
    st.builds(Timestamp, st.integers(0, 2**31), st.integers(0, 2**31)),
    st.builds(Code, st.text(max_size=3), st.none() | st.just({"x": [1]})),
    st.builds(DBRef, st.just("c"), st.integers(0, 9), extra=st.just({"k": [1]})),
    st.builds(ObjectId),
    st.sampled_from([MinKey(), MaxKey(), DatetimeMS(-(2**62)), Int64(7)]),
)
_KEYS = st.text(alphabet="ab$.", max_size=3)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=5), st.booleans())
def test_a_reads_copy_is_the_bson_round_trip_without_sharing_a_container(
    document: dict[str, Any], aware: bool
) -> None:
    stored = roundtrip.decode(roundtrip.encode(document))
    options = roundtrip.AWARE_OPTIONS if aware else roundtrip.STORE_OPTIONS
    expected = bson.decode(roundtrip.encode(stored), codec_options=options)
    copied = roundtrip.copy(stored, aware=aware)
    assert bson.encode(copied) == bson.encode(expected)
    assert _types(copied) == _types(expected)
    assert not _shared_containers(copied, stored)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value), getattr(value, "tzinfo", None)


def _shared_containers(copied: Any, stored: Any) -> bool:
    if isinstance(stored, (dict, list, Regex, Code, DBRef)) and copied is stored:
        return True
    if isinstance(stored, dict):
        return any(_shared_containers(copied[key], item) for key, item in stored.items())
    if isinstance(stored, list):
        return any(_shared_containers(a, b) for a, b in zip(copied, stored, strict=True))
    return False
