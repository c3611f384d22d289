"""Check arguments where they enter the library, before any I/O.

Every public entry point passes its ids, limits, durations and times through
these functions, so a value parsed from untrusted input (a JSON body, a query
string, a CLI option) can never reach a filter as an operator. ``{"$ne": None}``
given as a tenant id would otherwise match every tenant's documents. A bad
value raises :class:`~nsn_store.errors.InvalidArgumentError` (or its
:class:`~nsn_store.errors.InvalidIdError` branch) naming the argument; the
message shows the value's type, never the value, which may be a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

import bson
from bson import ObjectId

from nsn_store.errors import InvalidArgumentError, InvalidIdError

__all__ = [
    "MAX_LIMIT",
    "as_object_id",
    "check_datetime",
    "check_document",
    "check_duration",
    "check_limit",
    "check_text",
    "optional_object_id",
]

#: The largest ``limit`` any list or claim accepts (a server's batch is 16 MiB anyway).
MAX_LIMIT: Final = 10_000

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")

# datetimes a BSON date can hold and pymongo encodes without overflow (years 1-9999).
_EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
_LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)


def as_object_id(value: Any, argument: str = "id") -> ObjectId:
    """Return ``value`` as an ObjectId: an ObjectId, or its 24-hex-digit string.

    Anything else (a dict or list, an operator, None, a number, bytes, a
    12-character string) raises :class:`InvalidIdError` naming ``argument``.
    """
    if type(value) is ObjectId:
        return value
    if isinstance(value, str) and _HEX24.fullmatch(value):
        return ObjectId(value)
    raise InvalidIdError(
        f"{argument} must be an ObjectId or its 24-hex-digit string, not {_kind(value)}",
        argument=argument,
    )


def optional_object_id(value: Any, argument: str = "id") -> ObjectId | None:
    """Return None for None, else :func:`as_object_id`."""
    return None if value is None else as_object_id(value, argument)


def check_limit(value: Any, argument: str = "limit", *, maximum: int = MAX_LIMIT) -> int:
    """Return ``value`` if it is an int in ``1..maximum``; refuse bools, floats and the rest."""
    if type(value) is not int:
        raise InvalidArgumentError(
            f"{argument} must be a whole number from 1 to {maximum}, not {_kind(value)}",
            argument=argument,
        )
    if not 1 <= value <= maximum:
        raise InvalidArgumentError(
            f"{argument} must be from 1 to {maximum}, not {value}", argument=argument
        )
    return value


def check_duration(
    value: Any,
    argument: str,
    *,
    minimum: timedelta,
    maximum: timedelta,
) -> timedelta:
    """Return ``value`` (a timedelta, or seconds as an int or float) within the bounds.

    NaN, infinities and values too large for a timedelta are refused by name.
    """
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise InvalidArgumentError(
            f"{argument} must be a timedelta or a number of seconds, not {_kind(value)}",
            argument=argument,
        )
    # A number of seconds beyond twice the maximum would overflow timedelta: refuse it as text.
    if not isinstance(value, timedelta) and (
        not math.isfinite(value) or abs(value) > maximum.total_seconds() * 2
    ):
        raise InvalidArgumentError(
            f"{argument} must be from {_seconds(minimum)} to {_seconds(maximum)}, "
            f"not {value!r} seconds",
            argument=argument,
        )
    duration = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if not minimum <= duration <= maximum:
        raise InvalidArgumentError(
            f"{argument} must be from {_seconds(minimum)} to {_seconds(maximum)}, "
            f"not {_seconds(duration)}",
            argument=argument,
        )
    return duration


def check_datetime(value: Any, argument: str) -> datetime:
    """Return ``value`` if it is a datetime a BSON date can hold (naive is taken as UTC).

    A ``date``, a string or a number is refused: the caller must say which
    instant it means.
    """
    if not isinstance(value, datetime):
        hint = " (a date has no time of day; pass a datetime)" if isinstance(value, date) else ""
        raise InvalidArgumentError(
            f"{argument} must be a datetime, not {_kind(value)}{hint}", argument=argument
        )
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    try:
        in_range = _EARLIEST <= aware <= _LATEST
    except (OverflowError, ValueError):
        in_range = False
    if not in_range:
        raise InvalidArgumentError(
            f"{argument} must be between years 1 and 9999", argument=argument
        )
    return value


def check_text(value: Any, argument: str, *, maximum: int, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a string BSON can store, of at most ``maximum`` characters.

    Refuses non-strings, empty strings (unless ``allow_empty``) and lone
    surrogates (they cannot be encoded as UTF-8, so BSON cannot hold them).
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{argument} must be a string, not {_kind(value)}", argument=argument
        )
    if not value and not allow_empty:
        raise InvalidArgumentError(f"{argument} must not be empty", argument=argument)
    if len(value) > maximum:
        raise InvalidArgumentError(
            f"{argument} must be at most {maximum} characters, not {len(value)}",
            argument=argument,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"{argument} is not valid text (it holds a lone surrogate)", argument=argument
        ) from None
    return value


def _kind(value: Any) -> str:
    """Describe a refused value by its type only: it may be untrusted or secret."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"a value of type {type(value).__name__}"


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


def check_document(value: Any, argument: str, *, maximum_bytes: int) -> dict[str, Any]:
    """Return ``value`` (a mapping) as a dict if BSON can encode it in ``maximum_bytes``.

    Refuses non-mappings, non-string keys, values BSON cannot encode (sets,
    arbitrary objects, lone surrogates, ints over 64 bits) and documents over
    the bound, before they reach a write that would fail half way.
    """
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"{argument} must be a mapping, not {_kind(value)}", argument=argument
        )
    document = dict(value)
    try:
        size = len(bson.encode(document))
    except (bson.InvalidDocument, TypeError, ValueError, OverflowError, RecursionError):
        raise InvalidArgumentError(
            f"{argument} holds a value BSON cannot encode", argument=argument
        ) from None
    if size > maximum_bytes:
        raise InvalidArgumentError(
            f"{argument} must encode to at most {maximum_bytes} bytes of BSON, not {size}",
            argument=argument,
        )
    return document
