"""The embedded cursor: reads only ``skip + limit`` documents, iterates in O(1), explains.

mongomock's cursor materialises every match and then slices, and recomputes
the slice on every ``next()`` (quadratic in the number of documents read);
with a limit, this one asks the planner for the first ``skip + limit``
matches only, so an index that serves the sort stops early, and it slices
once. Like mongomock's, a cursor computes its results once (a snapshot) and
serves them from there. It carries what PyMongo's ``find`` takes beyond the
filter (``collation``, ``hint``, ``let``, ``comment``) and ``explain()``
returns the plan the planner chose, in a server's shape.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import InvalidOperation

from nsn_store.embedded import _collation, _mongomock, _planner, _variables


class EmbeddedCursor(_mongomock.Cursor):
    """A mongomock cursor that stops at its limit, takes PyMongo's options and explains."""

    _results: list[Any] | None
    _served: list[Any] | None
    _bounded = False

    def __init__(
        self,
        collection: Any,
        spec: Any = None,
        sort: Any = None,
        projection: Any = None,
        skip: int = 0,
        limit: int = 0,
        *,
        collation: Any = None,
        hint: Any = None,
        let: Any = None,
        comment: Any = None,
        batch_size: int = 0,
    ) -> None:
        super().__init__(collection, None, sort, projection, skip, limit)
        # mongomock's constructor would copy the filter through its slow patch (datetimes
        # to naive UTC milliseconds, tuples to lists); this one leaves a filter without
        # either as it is (pymongo keeps it too).
        self._spec = _mongomock.patched_filter(spec)
        self._collation = collation
        _collation.parse(collation)  # PyMongo checks the type when the cursor is made
        self._hint = hint
        self._let = let
        self._comment = comment
        self._batch_size = batch_size
        self._served = None

    def _changed(self) -> None:
        """Forget the computed results (the query changed)."""
        if self._emitted:
            raise InvalidOperation("cannot set options after executing query")
        self._results = None
        self._served = None

    def _compute_results(self, with_limit_and_skip: bool = False) -> list[Any]:
        if with_limit_and_skip and self._served is not None:
            return self._served
        limit = abs(self._limit) if self._limit else 0
        stop = self._skip + limit if with_limit_and_skip and limit else 0
        if self._results is None or (self._bounded and not stop):
            results = self.collection._get_dataset(
                self._spec,
                self._sort,
                self._projection,
                dict,
                limit=stop,
                collation=self._collation,
                hint=self._hint,
                let=self._let,
                aware=bool(self.collection.codec_options.tz_aware),
            )
            self._results = list(results)
            self._bounded = bool(stop)
        if not with_limit_and_skip:
            return self._results
        served = self._results[self._skip :]
        self._served = served[:limit] if limit else served
        return self._served

    def __next__(self) -> Any:
        served = self._compute_results(with_limit_and_skip=True)
        if self._emitted >= len(served):
            raise StopIteration
        document = served[self._emitted]
        self._emitted += 1
        return document

    next = __next__

    def sort(self, key_or_list: Any, direction: Any = None) -> EmbeddedCursor:
        """Sort by ``key_or_list`` (PyMongo's forms)."""
        sort = _mongomock.create_index_list(key_or_list, direction)
        if not sort:
            raise ValueError("key_or_list must not be the empty list")
        self._changed()
        self._sort = sort
        return self

    def skip(self, count: int) -> EmbeddedCursor:
        """Skip the first ``count`` results."""
        self._changed()
        self._skip = count
        return self

    def limit(self, count: int) -> EmbeddedCursor:
        """Return at most ``count`` results (0: no limit)."""
        self._changed()
        self._limit = count if count != 0 else None
        return self

    def hint(self, index: Any) -> EmbeddedCursor:
        """Walk ``index`` (a name or key pattern; checked when the query runs)."""
        self._changed()
        self._hint = index
        return self

    def collation(self, collation: Any) -> EmbeddedCursor:
        """Compare strings by ``collation`` (see :mod:`._collation`)."""
        self._changed()
        _collation.parse(collation)
        self._collation = collation
        return self

    def comment(self, comment: Any) -> EmbeddedCursor:
        """Attach ``comment`` (a server only logs it)."""
        self._comment = comment
        return self

    def let(self, let: Any) -> EmbeddedCursor:
        """Bind ``let`` variables for the filter's ``$expr``."""
        self._changed()
        _variables.check(let)
        self._let = let
        return self

    def batch_size(self, count: int) -> EmbeddedCursor:
        """Accept a batch size (every result is in memory: batches change nothing)."""
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError("batch_size must be an integer")
        if count < 0:
            raise ValueError("batch_size must be >= 0")
        self._batch_size = count
        return self

    def where(self, code: Any) -> EmbeddedCursor:
        """Refuse ``$where`` (JavaScript): the embedded database runs none."""
        raise NotImplementedError("$where (JavaScript) is not supported by the embedded database")

    def min(self, spec: Any) -> EmbeddedCursor:
        """Refuse ``min`` (index bounds)."""
        raise NotImplementedError("cursor.min is not supported by the embedded database")

    def max(self, spec: Any) -> EmbeddedCursor:
        """Refuse ``max`` (index bounds)."""
        raise NotImplementedError("cursor.max is not supported by the embedded database")

    def __getitem__(self, index: Any) -> Any:
        self._served = None  # a slice changes skip and limit
        return super().__getitem__(index)

    @property
    def alive(self) -> bool:
        """Tell whether results remain to be read."""
        return self._emitted < len(self._compute_results(with_limit_and_skip=True))

    def rewind(self) -> EmbeddedCursor:
        """Start again from the first result (of the same snapshot)."""
        self._emitted = 0
        return self

    def to_list(self, length: int | None = None) -> list[Any]:
        """Return the remaining results (at most ``length``), as PyMongo 4.9+ does."""
        found = []
        for document in self:
            found.append(document)
            if length is not None and len(found) >= length:
                break
        return found

    def clone(self) -> EmbeddedCursor:
        """Return an unevaluated copy of this cursor (same filter, sort, skip, limit, options)."""
        return EmbeddedCursor(
            self.collection,
            self._spec,
            self._sort,
            self._projection,
            self._skip,
            self._limit or 0,
            collation=self._collation,
            hint=self._hint,
            let=self._let,
            comment=self._comment,
            batch_size=self._batch_size,
        )

    def distinct(self, key: str, session: Any = None) -> list[Any]:
        """Return the distinct values of ``key`` among this cursor's results."""
        values: list[Any] = self.collection.distinct(
            key, self._spec, session=session, collation=self._collation, hint=self._hint
        )
        return values

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
                collation=_collation.parse(self._collation),
                let=_variables.check(self._let),
                hint=collection._hint(self._hint, command="find"),
            )
