"""Documents as a server stores them: BSON-encoded, within 16 MiB, decoded back.

Every write path of the embedded collection hands its post-image to
:func:`to_stored` before it reaches the store, so what is stored is what a
server would store and a pymongo user would read back: datetimes at
millisecond precision (naive UTC, as mongomock keeps them), int32 versus int64
by range (a BSON long decodes as ``bson.Int64``, as pymongo decodes it by
default), tuples as lists, ``_id`` first, and ``bson.errors.InvalidDocument``
or ``OverflowError`` with pymongo's own messages for what BSON cannot encode.
``bson.encode``/``bson.decode`` are pymongo's C extension, so the round trip
costs a few microseconds per document.

The size errors are the ones pymongo and a MongoDB 7.0 server give (MongoDB
manual, "BSON Document Size"; server ``insert.cpp`` ``fixDocumentForInsert``,
``update_stage.cpp`` and ``upsert_stage.cpp``):

- a single ``insert_one`` whose command exceeds 16 MiB + 16382 bytes raises
  ``DocumentTooLarge`` client-side (pymongo's command size check); a smaller
  document over 16 MiB is refused by the server with BadValue (2), "object to
  insert too large";
- an update whose result exceeds 16 MiB fails with 17419 "Resulting document
  after update is larger than 16777216" (MongoDB 8.0 reports the same message
  as BSONObjectTooLarge, 10334); an upsert's new document with 17420.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import bson
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.timestamp import Timestamp
from bson.tz_util import utc
from pymongo.errors import DocumentTooLarge, WriteError

from nsn_store.embedded._mongomock import get_current_timestamp

MAX_BSON_SIZE = 16 * 1024 * 1024  # maxBsonObjectSize in a server's hello reply
MAX_MESSAGE_SIZE = 48_000_000  # maxMessageSizeBytes
MAX_WRITE_BATCH_SIZE = 100_000  # maxWriteBatchSize
COMMAND_OVERHEAD = 16382  # pymongo's allowance for the command around the documents
BAD_VALUE = 2
UPDATE_TOO_LARGE = 17419
UPSERT_TOO_LARGE = 17420
EXECUTOR_PREFIX = "Plan executor error during {command} :: caused by :: "

# mongomock accepts only pymongo's default codec options (besides tz_aware,
# which matters only when reading), so documents are encoded as pymongo
# encodes them by default and decoded as a server round trip gives them:
# naive UTC datetimes (the form mongomock stores) and out-of-range dates as
# DatetimeMS rather than an error.
ENCODE_OPTIONS: CodecOptions[dict[str, Any]] = DEFAULT_CODEC_OPTIONS
STORE_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=False, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
# A read by a tz_aware client: the same, with UTC-aware datetimes (bson's utc, as mongomock's).
AWARE_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
# The stored types a read may share with the store: no caller can change them.
# Naive datetimes too, unless the read is tz-aware (then _copy_value replaces them).
_SHARED_AWARE = frozenset(
    {str, int, float, bool, type(None), bytes, ObjectId, Int64, Binary, Decimal128, Timestamp}
    | {MinKey, MaxKey, DatetimeMS}
)
_SHARED = _SHARED_AWARE | {datetime}


def encode(document: Mapping[str, Any]) -> bytes:
    """Return ``document`` as BSON, raising what pymongo raises for unencodable values."""
    return bson.encode(document, codec_options=ENCODE_OPTIONS)


def decode(data: bytes) -> dict[str, Any]:
    """Return the stored form of the BSON document ``data``."""
    return bson.decode(data, codec_options=STORE_OPTIONS)


def copy(document: Mapping[str, Any], *, aware: bool) -> dict[str, Any]:
    """Return a deep copy of a stored document as a read returns it (``aware``: tz-aware dates).

    Stored documents are already in stored form, so a BSON round trip would
    change nothing but the copy and, when ``aware``, the datetimes' tzinfo.
    Documents and arrays are copied; values of the immutable BSON types are
    shared (a caller can change none of them); any other value (``Regex``,
    ``Code``, ``DBRef``...) takes the BSON round trip. About five times
    faster than ``bson.decode(bson.encode(...))``, which rebuilds every string.
    """
    return _copy_document(document, _SHARED_AWARE if aware else _SHARED)


def _copy_document(document: Mapping[str, Any], shared: frozenset[type]) -> dict[str, Any]:
    copied: dict[str, Any] = {}
    for key, value in document.items():
        kind = type(value)
        if kind in shared:
            copied[key] = value
        elif kind is dict:
            copied[key] = _copy_document(value, shared)
        elif kind is list:
            copied[key] = _copy_list(value, shared)
        else:
            copied[key] = _copy_value(value, shared is _SHARED_AWARE)
    return copied


def _copy_list(items: list[Any], shared: frozenset[type]) -> list[Any]:
    return [
        value
        if type(value) in shared
        else _copy_document(value, shared)
        if type(value) is dict
        else _copy_list(value, shared)
        if type(value) is list
        else _copy_value(value, shared is _SHARED_AWARE)
        for value in items
    ]


def _copy_value(value: Any, aware: bool) -> Any:
    if type(value) is datetime:  # only a tz-aware read gets here with one
        return value.replace(tzinfo=utc)
    options = AWARE_OPTIONS if aware else STORE_OPTIONS
    return bson.decode(encode({"v": value}), codec_options=options)["v"]


def canonical(document: Any, data: bytes) -> bool:
    """Tell whether ``data``, the BSON of ``document``, is also the BSON of its stored form.

    Not for a document that is not a plain dict (a ``RawBSONDocument`` keeps
    its own field order), nor when a sub-document may be DBRef-shaped (``$ref``
    anywhere: it decodes to a DBRef, which encodes its fields in its own
    order); a false alarm only costs an encode later.
    """
    return type(document) is dict and b"$ref\x00" not in data


def to_stored(document: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Return (the document as a server stores it, its BSON size)."""
    data = encode(document)
    return decode(data), len(data)


def fill_empty_timestamps(document: dict[str, Any]) -> bool:
    """Replace top-level empty ``Timestamp(0, 0)`` values on insert, as a server does.

    Return whether one was replaced (the document's BSON then changed).
    """
    filled = False
    for key, value in document.items():
        if type(value) is Timestamp and not value.time and not value.inc:
            document[key] = get_current_timestamp()
            filled = True
    return filled


def check_command_size(command: str, size: int) -> None:
    """Raise pymongo's client-side DocumentTooLarge for a command over its limit."""
    limit = MAX_BSON_SIZE + COMMAND_OVERHEAD
    if size <= limit:
        return
    if command == "insert":
        raise DocumentTooLarge(
            f"BSON document too large ({size} bytes) - the connected server supports "
            f"BSON document sizes up to {limit} bytes."
        )
    raise DocumentTooLarge(f"{command} command document too large")


def check_insert_size(size: int) -> None:
    """Refuse a document over 16 MiB on insert as the server does (BadValue, 2)."""
    if size > MAX_BSON_SIZE:
        message = f"object to insert too large. size in bytes: {size}, max size: {MAX_BSON_SIZE}"
        raise WriteError(message, BAD_VALUE, {"index": 0, "code": BAD_VALUE, "errmsg": message})


def check_update_size(size: int, *, upsert: bool) -> None:
    """Refuse an update (17419) or upsert (17420) whose result is over 16 MiB."""
    if size <= MAX_BSON_SIZE:
        return
    if upsert:
        raise executor_error(f"Document to upsert is larger than {MAX_BSON_SIZE}", UPSERT_TOO_LARGE)
    raise executor_error(
        f"Resulting document after update is larger than {MAX_BSON_SIZE}", UPDATE_TOO_LARGE
    )


def executor_error(reason: str, code: int, **details: Any) -> WriteError:
    """Return an error raised while an update runs, worded as the server words it."""
    message = EXECUTOR_PREFIX.format(command="update") + reason
    return WriteError(message, code, {"index": 0, "code": code, "errmsg": message, **details})


def for_find_and_modify(message: str) -> str:
    """Return an update executor message as findAndModify words it."""
    update_prefix = EXECUTOR_PREFIX.format(command="update")
    if message.startswith(update_prefix):
        return EXECUTOR_PREFIX.format(command="findAndModify") + message[len(update_prefix) :]
    return message


def check_encodable(command: str | None, *parts: Any) -> None:
    """Encode a command's filter and update as pymongo does before sending it.

    Raises InvalidDocument/OverflowError with pymongo's messages even when
    nothing matches, and DocumentTooLarge for a command over pymongo's limit
    (``command`` None: a bulk write, whose operations the server checks).
    """
    size = 0
    for part in parts:
        if type(part) is dict or isinstance(part, Mapping):
            size += len(encode(part))
        elif isinstance(part, list):  # a pipeline update is an array of stages
            size += len(encode({"stages": part}))
    if command is not None:
        check_command_size(command, size)
