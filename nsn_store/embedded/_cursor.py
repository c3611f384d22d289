"""The embedded cursor: mongomock's, but it reads only ``skip + limit`` documents and explains.

mongomock's cursor materialises every match and then slices; with a limit,
this one asks the planner for the first ``skip + limit`` matches only, so an
index that serves the sort stops early. Like mongomock's, a cursor computes
its results once (a snapshot) and serves them from there. ``explain()``
returns the plan the planner chose, in a server's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mongomock import helpers
from mongomock.collection import Cursor

from nsn_store.embedded import _planner

_Cursor: Any = Any if TYPE_CHECKING else Cursor  # mongomock's stubs present pymongo's


class EmbeddedCursor(_Cursor):
    """A mongomock cursor that stops at its limit and explains its plan."""

    _bounded = False
    _results: list[Any] | None
    _factory_last_generated_results: Any

    @classmethod
    def adopt(cls, cursor: Any) -> EmbeddedCursor:
        """Return ``cursor`` (a mongomock cursor) as an embedded cursor, same state."""
        adopted: EmbeddedCursor = cls.__new__(cls)
        adopted.__dict__.update(cursor.__dict__)
        return adopted

    def _compute_results(self, with_limit_and_skip: bool = False) -> list[Any]:
        stop = self._skip + abs(self._limit) if with_limit_and_skip and self._limit else 0
        stale = self._factory_last_generated_results != self._factory
        if not self._results or stale or (self._bounded and not stop):
            results = self._factory(limit=stop, collation=self._collation)
            if self.collection.codec_options.tz_aware:
                results = [helpers.make_datetime_timezone_aware_in_document(x) for x in results]
            self._factory_last_generated_results = self._factory
            self._results = list(results)
            self._bounded = bool(stop)
        if with_limit_and_skip:
            results = self._results[self._skip :]
            return results[: abs(self._limit)] if self._limit else results
        return self._results  # type: ignore[no-any-return]

    def clone(self) -> EmbeddedCursor:
        """Return an unevaluated copy of this cursor (same filter, sort, skip, limit)."""
        copy = EmbeddedCursor(
            self.collection,
            self._spec,
            self._sort,
            self._projection,
            self._skip,
            self._limit,
            collation=self._collation,
        )
        copy._factory = self._factory
        return copy

    def explain(self) -> dict[str, Any]:
        """Return the winning plan and execution stats, shaped as a server's ``explain``."""
        collection = self.collection
        with collection._db_store.lock:
            return _planner.explain(
                collection._store,
                collection.full_name,
                self._spec,
                sort=self._sort,
                limit=abs(self._limit or 0),
                skip=self._skip,
                collation=self._collation,
            )
