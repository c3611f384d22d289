"""What mongomock 4.3 lacks of the aggregates rollup: ``$dateTrunc``, ``$merge``, time zones.

The rollup pipeline (:func:`nsn_store.aggregates._periods.rollup_pipeline`)
groups events by ``$dateTrunc``, formats the period start with
``$dateToString`` in ``timezone: "UTC"`` and writes the rows with ``$merge``.
mongomock implements none of the three, so the embedded database implements
the subset the library sends, with the server's semantics and error codes, and
refuses the rest with a NotImplementedError that names the option:

- ``$dateTrunc`` (https://www.mongodb.com/docs/manual/reference/operator/aggregation/dateTrunc/):
  units ``day``, ``week`` (any ``startOfWeek``) and ``month``; ``binSize`` 1;
  ``timezone`` UTC or absent. Null or missing arguments give null, as on a
  server; bad ones raise its errors (codes 5439007-5439018, 40485, 40517).
- ``$dateToString``'s ``timezone``
  (https://www.mongodb.com/docs/manual/reference/operator/aggregation/dateToString/):
  UTC only; mongomock formats the rest.
- ``$merge`` (https://www.mongodb.com/docs/manual/reference/operator/aggregation/merge/):
  the last stage, into a collection of the same database, ``on`` fields backed
  by a unique, non-partial index with exactly those fields (else code 51183,
  checked before anything is read), every whenMatched mode (``replace``,
  ``merge``, ``keepExisting``, ``fail``, a pipeline with ``$$new`` and
  ``let``) and whenNotMatched (``insert``, ``discard``, ``fail``) in the
  combinations a server accepts. Each row is written with the target
  collection's own ``insert_one``/``replace_one``/``update_one``, so its
  validator and unique indexes are enforced as on any other write; their
  errors come back as the aggregate command's error, as pymongo raises it.

The expressions are evaluated by mongomock's parser: :func:`install` wraps
its class once (every parser, the filter ``$expr`` parser included, gets
them), as :mod:`._expressions` does for its operators. A whenMatched
pipeline's ``$$new`` and ``let`` variables are bound per document by
:func:`._variables.in_pipeline`, as a command's ``let`` is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final
from zoneinfo import available_timezones

from bson import Decimal128, Int64, ObjectId, Timestamp
from pymongo.errors import DuplicateKeyError, OperationFailure, WriteError

from nsn_store.embedded import _mongomock, _variables
from nsn_store.embedded.options import fail
from nsn_store.embedded.writes import CODE_NAMES
from nsn_store.jsonschema._bsontypes import bson_type

__all__ = ["Merge", "date_trunc", "date_truncation", "install", "merge_stage", "split_merge"]

#: mongomock's "missing" value (a field path to an absent field, in some parsers).
NOTHING: Final = _mongomock.NOTHING

DUPLICATE_KEY: Final = 11000
IMMUTABLE_FIELD: Final = 66
BAD_VALUE: Final = 2
TYPE_MISMATCH: Final = 14
NO_MATCHING_DOCUMENT: Final = 13113

# ------------------------------------------------------------------ errors


def _location(message: str, code: int) -> OperationFailure:
    """Return the server's error for an assertion numbered ``code`` (codeName Location<code>)."""
    return fail(message, code, f"Location{code}")


def _type_name(value: Any) -> str:
    if value is NOTHING:
        return "missing"
    try:
        return bson_type(value)
    except TypeError:
        return type(value).__name__


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


# ------------------------------------------------------------------ $dateTrunc

TRUNC_ARGUMENTS: Final = ("date", "unit", "binSize", "timezone", "startOfWeek")
#: The units a server knows; the embedded database truncates to the first three.
TIME_UNITS: Final = (
    "day",
    "week",
    "month",
    "year",
    "quarter",
    "hour",
    "minute",
    "second",
    "millisecond",
)
SUPPORTED_UNITS: Final = ("day", "week", "month")
#: startOfWeek values (case-insensitive) and Python's weekday of each.
DAYS_OF_WEEK: Final = {
    **dict.fromkeys(("monday", "mon"), 0),
    **dict.fromkeys(("tuesday", "tue"), 1),
    **dict.fromkeys(("wednesday", "wed"), 2),
    **dict.fromkeys(("thursday", "thu"), 3),
    **dict.fromkeys(("friday", "fri"), 4),
    **dict.fromkeys(("saturday", "sat"), 5),
    **dict.fromkeys(("sunday", "sun"), 6),
}
DEFAULT_START_OF_WEEK: Final = "sunday"
#: Time zone names and offsets that are UTC, the only zone the embedded database handles.
UTC_ZONES: Final = frozenset(
    {"UTC", "GMT", "Etc/UTC", "Etc/GMT", "+00", "+0000", "+00:00", "-00", "-0000", "-00:00"}
)
_OFFSET = re.compile(r"[+-]\d{2}(:?\d{2})?")


def date_trunc(parser: Any, spec: Any) -> datetime | None:
    """Evaluate ``{$dateTrunc: spec}`` for the document ``parser`` reads.

    Arguments are read in the server's order (date, binSize, unit, startOfWeek
    for weeks, timezone): each gives null when it is null or missing, else is
    checked; the date's type is checked last, so a missing date always gives null.
    """
    _check_trunc_spec(spec)
    date = _evaluate(parser, spec["date"])
    if date is None:
        return None
    bin_size = _evaluate(parser, spec["binSize"]) if "binSize" in spec else 1
    if bin_size is None:
        return None
    bin_size = _bin_size(bin_size)
    unit = _evaluate(parser, spec["unit"])
    if unit is None:
        return None
    unit = _unit(unit)
    start_of_week = DEFAULT_START_OF_WEEK
    if unit == "week" and "startOfWeek" in spec:
        start_of_week = _evaluate(parser, spec["startOfWeek"])
        if start_of_week is None:
            return None
    weekday = _weekday(start_of_week)
    if "timezone" in spec and not _utc_zone(
        _evaluate(parser, spec["timezone"]), "$dateTrunc parameter 'timezone' value parsing failed"
    ):
        return None
    return _truncate(_as_datetime(date), unit, bin_size, weekday)


def _check_trunc_spec(spec: Any) -> None:
    if not isinstance(spec, Mapping):
        raise _location("$dateTrunc only supports an object as its argument", 5439007)
    for name in spec:
        if name not in TRUNC_ARGUMENTS:
            raise _location(f"Unrecognized argument to $dateTrunc: {name}", 5439008)
    for code, name in ((5439009, "date"), (5439010, "unit")):
        if name not in spec:
            raise _location(f"Missing '{name}' parameter to $dateTrunc", code)


def _evaluate(parser: Any, expression: Any) -> Any:
    """Return ``expression``'s value, None when it is null or missing."""
    try:
        value = parser.parse(expression)
    except KeyError:  # mongomock's missing field
        return None
    return None if value is NOTHING else value


def _bin_size(value: Any) -> int:
    integral = _integral(value)
    if integral is None:
        raise _location(
            "$dateTrunc requires 'binSize' to be a 64-bit integer, but got value "
            f"'{_shown(value)}' of type {_type_name(value)}",
            5439017,
        )
    if integral <= 0:
        raise _location(
            f"$dateTrunc requires 'binSize' to be greater than 0, but got value {integral}",
            5439018,
        )
    return integral


def _integral(value: Any) -> int | None:
    """Return ``value`` as an int if it is a BSON number with an integral 64-bit value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal128):
        value = value.to_decimal()
        if not value.is_finite():
            return None
    if isinstance(value, float) and not value.is_integer():
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if number != value or not -(2**63) <= number < 2**63:
        return None
    return number


def _unit(value: Any) -> str:
    if not isinstance(value, str):
        raise _location(
            f"$dateTrunc requires 'unit' to be a string, but got {_type_name(value)}", 5439013
        )
    if value not in TIME_UNITS:
        raise _location(
            f"$dateTrunc parameter 'unit' value cannot be recognized as a time unit: {value}",
            5439014,
        )
    return value


def _weekday(value: Any) -> int:
    if not isinstance(value, str):
        raise _location(
            f"$dateTrunc requires 'startOfWeek' to be a string, but got {_type_name(value)}",
            5439015,
        )
    if value.lower() not in DAYS_OF_WEEK:
        raise _location(
            "$dateTrunc parameter 'startOfWeek' value cannot be recognized as a day of a week: "
            f"{value}",
            5439016,
        )
    return DAYS_OF_WEEK[value.lower()]


def _utc_zone(value: Any, context: str | None) -> bool:
    """Check a ``timezone`` value: True for UTC, False for null; refuse the rest.

    A malformed value gets the server's error (40517, 40485); a real zone other
    than UTC is valid on a server but not here (NotImplementedError).
    """
    if value is None:
        return False
    prefix = f"{context} :: caused by :: " if context else ""
    if not isinstance(value, str):
        raise _location(
            f"{prefix}timezone must evaluate to a string, found {_type_name(value)}", 40517
        )
    if value in UTC_ZONES:
        return True
    if _OFFSET.fullmatch(value) or value in _zone_names():
        raise NotImplementedError(
            f"timezone {value!r} is valid on a server, but the embedded database "
            "only evaluates dates in UTC"
        )
    raise _location(f'{prefix}unrecognized time zone identifier: "{value}"', 40485)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, ObjectId):
        return value.generation_time
    if isinstance(value, Timestamp):
        return value.as_datetime()
    raise _location(
        f"$dateTrunc requires 'date' to be a date, but got {_type_name(value)}", 5439012
    )


def _truncate(moment: datetime, unit: str, bin_size: int, weekday: int) -> datetime:
    """Return the start of the ``unit`` holding ``moment``, in UTC (aware if ``moment`` is)."""
    if unit not in SUPPORTED_UNITS:
        raise NotImplementedError(
            f"$dateTrunc unit {unit!r} is valid on a server, but the embedded database "
            f"truncates only to {', '.join(SUPPORTED_UNITS)}"
        )
    if bin_size != 1:
        raise NotImplementedError(
            f"$dateTrunc binSize {bin_size} is valid on a server, but the embedded database "
            "supports only binSize 1"
        )
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "month":
        return day.replace(day=1)
    if unit == "day":
        return day
    try:
        return day - timedelta(days=(day.weekday() - weekday) % 7)
    except OverflowError:
        raise NotImplementedError(
            "$dateTrunc: the week holding this date starts before year 1, "
            "which the embedded database cannot represent"
        ) from None


def date_truncation(spec: Any) -> Callable[[Any], datetime | None] | None:
    """Return ``{$dateTrunc: spec}`` as a function of its date's value, or None.

    For a native ``$group`` (:mod:`._pipeline`): when every argument but
    ``date`` is a constant :func:`date_trunc` accepts and truncates by (a
    supported unit, ``binSize`` 1, a valid ``startOfWeek``, a UTC
    ``timezone``), its result depends on the date alone: null for a null or
    missing date (pass None), else the start of its period, with the same
    errors for a date of another type. Any other spec gives None, and the
    caller evaluates it with :func:`date_trunc`.
    """
    if type(spec) is not dict or not set(spec) <= set(TRUNC_ARGUMENTS):
        return None
    unit, bin_size = spec.get("unit"), spec.get("binSize", 1)
    start_of_week = spec.get("startOfWeek", DEFAULT_START_OF_WEEK)
    zone = spec.get("timezone", "UTC")
    if not (
        "date" in spec
        and type(unit) is str
        and unit in SUPPORTED_UNITS
        and type(bin_size) is int
        and bin_size == 1
        and type(start_of_week) is str
        and start_of_week.lower() in DAYS_OF_WEEK
        and type(zone) is str
        and zone in UTC_ZONES
    ):
        return None
    weekday = DAYS_OF_WEEK[start_of_week.lower() if unit == "week" else DEFAULT_START_OF_WEEK]

    def truncation(date: Any) -> datetime | None:
        return None if date is None else _truncate(_as_datetime(date), unit, 1, weekday)

    return truncation


# ------------------------------------------------------------ $dateToString


def date_to_string_in_utc(parser: Any, spec: Any, format_date: Callable[[Any], Any]) -> Any:
    """Evaluate ``$dateToString`` with a ``timezone``: UTC (or null, giving null) only."""
    if not _utc_zone(_evaluate(parser, spec["timezone"]), None):
        return None
    return format_date({k: v for k, v in spec.items() if k != "timezone"})


# ------------------------------------------------------------------ $merge

WHEN_MATCHED: Final = ("replace", "keepExisting", "merge", "fail")
WHEN_NOT_MATCHED: Final = ("insert", "discard", "fail")
#: The (whenMatched, whenNotMatched) pairs a server accepts; "pipeline" is a custom pipeline.
MERGE_MODES: Final = {
    "replace": WHEN_NOT_MATCHED,
    "merge": WHEN_NOT_MATCHED,
    "pipeline": WHEN_NOT_MATCHED,
    "keepExisting": ("insert",),
    "fail": ("insert",),
}
MERGE_FIELDS: Final = ("into", "on", "let", "whenMatched", "whenNotMatched")
UPDATE_CONTEXT: Final = (
    "$merge failed to update the matching document, did you attempt to modify the _id or "
    "the shard key?"
)
FAIL_CONTEXT: Final = (
    "$merge with whenMatched: fail found an existing document with the same values for the "
    "'on' fields"
)
DUPLICATE_CONTEXT: Final = "$merge failed due to a DuplicateKey error"


def split_merge(pipeline: Sequence[Any]) -> tuple[list[Any], Any]:
    """Return (the stages before ``$merge``, its spec or None); ``$merge`` must come last."""
    stages = list(pipeline)
    for position, stage in enumerate(stages):
        if isinstance(stage, Mapping) and "$merge" in stage and position != len(stages) - 1:
            raise _location("$merge can only be the final stage in the pipeline", 40601)
    if stages and isinstance(stages[-1], Mapping) and "$merge" in stages[-1]:
        return stages[:-1], stages[-1]["$merge"]
    return stages, None


@dataclass(frozen=True)
class Merge:
    """A checked ``$merge`` stage, bound to its target collection."""

    target: Any
    on: tuple[str, ...]
    when_matched: str
    pipeline: tuple[Mapping[str, Any], ...] | None
    when_not_matched: str
    let: Mapping[str, Any] | None

    def write(self, documents: Sequence[Mapping[str, Any]]) -> None:
        """Merge each pipeline output document into the target, in order."""
        unmatched = False
        for document in documents:
            unmatched |= not self._write_one(dict(document))
        if unmatched:
            raise fail(
                "$merge could not find a matching document in the target collection for at "
                "least one document in the source collection",
                NO_MATCHING_DOCUMENT,
                "MergeStageNoMatchingDocument",
            )

    def _write_one(self, document: dict[str, Any]) -> bool:
        """Merge one document; return False if it matched nothing under whenNotMatched fail."""
        if "_id" in self.on and "_id" not in document:
            document["_id"] = ObjectId()  # the server generates it before matching
        key = self._key(document)
        if self.when_matched == "fail":  # a plain insert: the unique index finds the match
            self._run(lambda: self.target.insert_one(document))
            return True
        existing = self._run(lambda: self.target.find_one(key, {"_id": 1}))
        if existing is not None:
            self._update(existing["_id"], document)
            return True
        if self.when_not_matched == "insert":
            self._run(lambda: self.target.insert_one(document))
        return self.when_not_matched != "fail"

    def _key(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Return the filter of the target document with ``document``'s ``on`` values."""
        key = {}
        for path in self.on:
            value = _path_value(document, path)
            if isinstance(value, list):
                raise _location(f"$merge write error: 'on' field '{path}' is an array", 51185)
            if value is None or value is NOTHING:
                raise _location(
                    f"$merge write error: 'on' field '{path}' cannot be missing, null, "
                    "undefined or an array",
                    51132,
                )
            key[path] = {"$eq": value}
        return key

    def _update(self, target_id: Any, document: dict[str, Any]) -> None:
        where = {"_id": target_id}
        if self.when_matched == "replace":
            self._run(lambda: self.target.replace_one(where, document))
        elif self.when_matched == "merge":
            self._run(lambda: self.target.update_one(where, {"$set": document}))
        elif self.pipeline is not None:
            stages = _variables.in_pipeline(list(self.pipeline), self._bindings(document))
            self._run(lambda: self.target.update_one(where, stages))

    def _bindings(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Return the pipeline's variables: ``new`` (the merged document) and ``let``."""
        if self.let is None:
            return {"new": document}
        parser = _mongomock.ExpressionParser(document, ignore_missing_keys=True)
        values = {name: _evaluate(parser, value) for name, value in self.let.items()}
        if "new" in self.let or self.when_not_matched == "insert":
            values["new"] = document
        return values

    def _run(self, write: Callable[[], Any]) -> Any:
        """Run one write on the target; report its error as the aggregate command does."""
        try:
            return write()
        except WriteError as error:
            raise self._command_error(error) from None

    def _command_error(self, error: WriteError) -> OperationFailure:
        reply = {k: v for k, v in (error.details or {}).items() if k != "index"}
        message = str(reply.get("errmsg", error))
        context = self._context(error.code, reply)
        if context:
            message = f"{context} :: caused by :: {message}"
        reply.update(
            ok=0.0,
            errmsg=message,
            code=error.code,
            codeName=CODE_NAMES.get(error.code or 0, "UnknownError"),
        )
        kind = DuplicateKeyError if error.code == DUPLICATE_KEY else OperationFailure
        return kind(message, error.code, reply)

    def _context(self, code: int | None, reply: Mapping[str, Any]) -> str | None:
        if code == IMMUTABLE_FIELD:
            return UPDATE_CONTEXT
        if code != DUPLICATE_KEY:
            return None
        on_fields = set(reply.get("keyPattern") or ()) == set(self.on)
        return FAIL_CONTEXT if self.when_matched == "fail" and on_fields else DUPLICATE_CONTEXT


def _path_value(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return NOTHING
        value = value[part]
    return value


def merge_stage(database: Any, spec: Any) -> Merge:
    """Check a ``$merge`` spec as a server parses it (before reading); return the stage."""
    if isinstance(spec, str):
        spec = {"into": spec}
    if not isinstance(spec, Mapping):
        raise _location(
            f"$merge only supports a string or object argument, not {_type_name(spec)}", 51182
        )
    for name in spec:
        if name not in MERGE_FIELDS:
            raise _location(f"BSON field '$merge.{name}' is an unknown field.", 40415)
    target = database.get_collection(_into(database, spec))
    on = _on(spec.get("on", "_id"))
    when_matched, pipeline = _when_matched(spec.get("whenMatched", "merge"))
    when_not_matched = _when_not_matched(spec.get("whenNotMatched", "insert"))
    if when_not_matched not in MERGE_MODES[when_matched]:
        raise _location(
            f"Combination of $merge modes 'whenMatched: {when_matched}' and "
            f"'whenNotMatched: {when_not_matched}' is not supported",
            51181,
        )
    _check_unique_index(target, on)
    let = _let(spec.get("let"), when_matched)
    return Merge(target, on, when_matched, pipeline, when_not_matched, let)


def _into(database: Any, spec: Mapping[str, Any]) -> str:
    if "into" not in spec:
        raise _location("BSON field '$merge.into' is missing but a required field", 40414)
    into = spec["into"]
    if isinstance(into, str):
        if not into:
            raise _location("$merge 'into' field cannot be an empty string", 5786800)
        return into
    if not isinstance(into, Mapping):
        raise _location(
            f"$merge 'into' field  must be either a string or an object, but found "
            f"{_type_name(into)}",
            51178,
        )
    name = into.get("coll")
    if not isinstance(name, str) or not name:
        raise _location(
            "$merge 'into' field must specify a 'coll' that is not empty, null or undefined",
            5786801,
        )
    if into.get("db") not in (None, database.name):
        raise NotImplementedError(
            "$merge into another database is valid on a server, but the embedded database "
            "merges only into a collection of the same database"
        )
    return name


def _on(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (str, list, tuple)):
        raise _location(
            "$merge 'on' field  must be either a string or an array of strings, but found "
            f"{_type_name(value)}",
            51186,
        )
    fields = [value] if isinstance(value, str) else list(value)
    for field in fields:
        if not isinstance(field, str):
            raise _location(
                f"$merge 'on' array elements must be strings, but found {_type_name(field)}",
                51134,
            )
    if not fields:
        raise _location(
            "If explicitly specifying $merge 'on', must include at least one field", 51187
        )
    for position, field in enumerate(fields):
        if field in fields[:position]:
            raise _location(f"Found a duplicate field '{field}'", 31465)
    return tuple(fields)


def _when_matched(value: Any) -> tuple[str, tuple[Mapping[str, Any], ...] | None]:
    if isinstance(value, (list, tuple)):
        return "pipeline", tuple(value)
    if not isinstance(value, str):
        raise _location(
            "$merge 'whenMatched' field  must be either a string or an array, but found "
            f"{_type_name(value)}",
            51191,
        )
    if value not in WHEN_MATCHED:
        raise _bad_enum(value, "whenMatched")
    return value, None


def _when_not_matched(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(
            f"BSON field '$merge.whenNotMatched' is the wrong type '{_type_name(value)}', "
            "expected type 'string'",
            TYPE_MISMATCH,
            "TypeMismatch",
        )
    if value not in WHEN_NOT_MATCHED:
        raise _bad_enum(value, "whenNotMatched")
    return value


def _bad_enum(value: str, field: str) -> OperationFailure:
    return fail(
        f"Enumeration value '{value}' for field '{field}' is not a valid value.",
        BAD_VALUE,
        "BadValue",
    )


def _check_unique_index(target: Any, on: tuple[str, ...]) -> None:
    """Refuse ``on`` fields that no unique index guarantees (a server's code 51183)."""
    indexes = list(target.list_indexes())
    if not indexes and on == ("_id",):
        return  # a collection $merge will create has its _id index
    if not any(_supports(index, set(on)) for index in indexes):
        raise _location("Cannot find index to verify that join fields will be unique", 51183)


def _supports(index: Mapping[str, Any], fields: set[str]) -> bool:
    """Tell whether ``index`` is unique (or ``_id_``), not partial and on exactly ``fields``."""
    key = index["key"]
    return (
        (index.get("unique") is True or index.get("name") == "_id_")
        and "partialFilterExpression" not in index
        and "collation" not in index
        and set(key) == fields
        and all(
            isinstance(d, (int, float, Int64)) and not isinstance(d, bool) for d in key.values()
        )
    )


def _let(value: Any, when_matched: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise fail(
            f"BSON field '$merge.let' is the wrong type '{_type_name(value)}', "
            "expected type 'object'",
            TYPE_MISMATCH,
            "TypeMismatch",
        )
    if when_matched != "pipeline":
        raise _location(
            f"Cannot use 'let' variables with 'whenMatched: {when_matched}' mode", 51199
        )
    if "new" in value and value["new"] != "$$ROOT":
        raise _location(
            "'let' may not define a value for the reserved 'new' variable other than '$$ROOT'",
            51273,
        )
    return value


# ------------------------------------------------------------------ installation

_installed = False


def install() -> None:
    """Teach mongomock's expression parser ``$dateTrunc`` and ``$dateToString``'s
    timezone (once; every parser class derived from it inherits them)."""
    global _installed
    if _installed:
        return
    parser_class = _mongomock.parser_class
    original_parse = parser_class.parse
    original_date = parser_class._handle_date_operator

    def parse(self: Any, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1 and "$dateTrunc" in expression:
            return date_trunc(self, expression["$dateTrunc"])
        return original_parse(self, expression)

    def _handle_date_operator(self: Any, operator: str, values: Any) -> Any:
        if operator == "$dateToString" and isinstance(values, dict) and "timezone" in values:
            return date_to_string_in_utc(
                self, values, lambda rest: original_date(self, operator, rest)
            )
        return original_date(self, operator, values)

    parser_class.parse = parse
    parser_class._handle_date_operator = _handle_date_operator
    _installed = True


install()
