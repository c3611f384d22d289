"""The one typed surface through which the embedded database reaches mongomock.

mongomock ships a ``py.typed`` marker whose stubs present its top-level names
as PyMongo's classes and leave its modules (``filtering``, ``helpers``,
``aggregate``, ``store``, ``collection``) untyped. The embedded modules import
what they use of mongomock from here only, each name with the signature they
rely on, so the rest of the package type-checks strictly with no
``type: ignore``:

- functions are mongomock's own objects under a typed name (no wrapper, no
  cost on the hot paths);
- the classes the embedded database extends (collection, database, client,
  cursor, stores, the expression parser) are declared for the type checker
  as classes whose other attributes are ``Any``, and are mongomock's classes
  at run time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from bson import ObjectId

T = TypeVar("T")


def _module(name: str) -> Any:
    """Return a mongomock module as Any: its functions carry no annotations."""
    return importlib.import_module(f"mongomock.{name}")


_filtering = _module("filtering")
_helpers = _module("helpers")
_aggregate = _module("aggregate")
_collection = _module("collection")
_command_cursor = _module("command_cursor")
_store = _module("store")

#: mongomock's "no value here" sentinel (an absent field in a candidate list).
NOTHING: Any = _filtering.NOTHING

# --------------------------------------------------------------- filtering

filter_applies: Callable[[Mapping[str, Any], Mapping[str, Any]], bool] = _filtering.filter_applies
iter_key_candidates: Callable[[str, Mapping[str, Any]], list[Any]] = _filtering.iter_key_candidates
resolve_sort_key: Callable[[str, Mapping[str, Any]], tuple[int, Any]] = _filtering.resolve_sort_key
#: Wraps a value so that ``<`` compares it as BSON does (across types).
BsonComparable: Callable[[Any], Any] = _filtering.BsonComparable
register_parse_expression: Callable[[Callable[..., Any]], None] = (
    _filtering.register_parse_expression
)

# ----------------------------------------------------------------- helpers

get_value_by_dot: Callable[[Any, str], Any] = _helpers.get_value_by_dot
create_index_list: Callable[..., list[tuple[str, Any]]] = _helpers.create_index_list
gen_index_name: Callable[[Iterable[tuple[str, Any]]], str] = _helpers.gen_index_name
get_current_timestamp: Callable[[], Any] = _helpers.get_current_timestamp
hashdict: Callable[[Mapping[str, Any]], Any] = _helpers.hashdict


def patch_datetime_awareness_in_document(value: T) -> T:
    """Return ``value`` with aware datetimes as the naive UTC ones mongomock stores.

    mongomock's function, with its work on plain dicts, lists and scalars done
    here without its ``isinstance`` chain (the same result: new containers,
    datetimes at millisecond precision in naive UTC); anything else
    (OrderedDict, SON, subclasses, an empty Timestamp) goes to mongomock's.
    """
    return cast("T", _patch(value))


def _patch(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _PLAIN else _patch(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else _patch(v) for v in value]
    if kind is datetime:
        millis = (value.microsecond // 1000) * 1000
        if value.tzinfo:
            return (value - value.utcoffset()).replace(tzinfo=None, microsecond=millis)
        return value.replace(microsecond=millis)
    if kind in _PLAIN or kind is ObjectId:
        return value
    return _helpers.patch_datetime_awareness_in_document(value)


def patched_filter(spec: T) -> T:
    """Return a filter as :func:`patch_datetime_awareness_in_document` does, unchanged
    (not copied) when it holds no datetime nor tuple, which is what most filters are."""
    return patch_datetime_awareness_in_document(spec) if _needs_patch(spec) else spec


def _needs_patch(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        for item in value.values():  # noqa: SIM110 (a loop: no generator frame per call)
            if type(item) not in _PLAIN and _needs_patch(item):
                return True
        return False
    if kind is tuple:
        return True  # a tuple is sent as an array: the patch makes it a list
    if kind is list:
        for item in value:  # noqa: SIM110 (as above)
            if type(item) not in _PLAIN and _needs_patch(item):
                return True
        return False
    if kind in _PLAIN:
        return False
    return isinstance(value, (datetime, Mapping, list, tuple))


_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def make_datetime_timezone_aware_in_document(value: T) -> T:
    """Return ``value`` with naive (UTC) datetimes made aware, as a tz_aware read returns them."""
    return cast("T", _helpers.make_datetime_timezone_aware_in_document(value))


# -------------------------------------------------------------- pipelines

process_pipeline: Callable[[list[Any], Any, Any, Any], Any] = _aggregate.process_pipeline
validate_document_stages: Callable[[list[Any]], None] = _collection._validate_document_stages


class CommandCursorLike(Protocol):
    """What a mongomock command cursor offers: iteration over result documents."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def __next__(self) -> dict[str, Any]: ...


def command_cursor(documents: Iterable[Mapping[str, Any]]) -> CommandCursorLike:
    """Return a mongomock command cursor over ``documents`` (as ``list_indexes`` returns)."""
    return cast("CommandCursorLike", _command_cursor.CommandCursor(list(documents)))


# ----------------------------------------------------------------- classes

if TYPE_CHECKING:

    class _Open:
        """A class whose undeclared attributes are Any (mongomock's are untyped)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

    class Collection(_Open):
        """mongomock's Collection."""

        def with_options(self, *args: Any) -> Any: ...

    class Database(_Open):
        """mongomock's Database."""

        def get_collection(self, *args: Any) -> Any: ...

        def with_options(self, *args: Any) -> Any: ...

        def drop_collection(self, *args: Any, **kwargs: Any) -> Any: ...

        def command(self, *args: Any, **kwargs: Any) -> Any: ...

    class MongoClient(_Open):
        """mongomock's MongoClient."""

    class Cursor(_Open):
        """mongomock's Cursor."""

        def __iter__(self) -> Iterator[Any]: ...

        def __getitem__(self, index: Any) -> Any: ...

    class CollectionStore(_Open):
        """mongomock's per-collection store."""

        _documents: dict[Any, Any]
        indexes: dict[str, Any]
        _ttl_indexes: dict[str, Any]
        name: str

        def drop(self) -> None: ...

        def create_index(self, index_name: str, index_dict: dict[str, Any]) -> None: ...

        def drop_index(self, index_name: str) -> None: ...

    class DatabaseStore(_Open):
        """mongomock's per-database store."""

        _collections: dict[str, Any]

    class ServerStore(_Open):
        """mongomock's per-server store."""

        _databases: dict[str, Any]

    class ExpressionParser(_Open):
        """mongomock's aggregation expression parser."""

        def parse(self, expression: Any) -> Any: ...

        def _parse_basic_expression(self, expression: Any) -> Any: ...

        def _handle_comparison_operator(self, operator: str, values: Any) -> Any: ...

else:
    import mongomock

    Collection = mongomock.Collection
    Database = mongomock.Database
    MongoClient = mongomock.MongoClient
    Cursor = _collection.Cursor
    CollectionStore = _store.CollectionStore
    DatabaseStore = _store.DatabaseStore
    ServerStore = _store.ServerStore
    ExpressionParser = _aggregate._Parser

#: mongomock's parser class itself, for code that extends every parser at once.
parser_class: Any = _aggregate._Parser
