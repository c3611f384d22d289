"""The embedded query planner: which index serves a filter and sort, and running that plan.

Every read of the embedded database (find, count, update, delete,
findAndModify, the leading ``$match``/``$sort``/``$limit`` of a pipeline) asks
:func:`find` for the matching stored documents. The plan is chosen as a server
chooses one for the ESR rule: an ``_id`` lookup when the filter pins ``_id``;
else, per declared index, the longest prefix of fields with point conditions
(equality, ``$in`` as a union of points), then a range on the next field, and
the sort is *served* when the remaining sort fields follow the index (all in
its direction or all reversed), so the walk stops at ``limit``. The index only
narrows the candidates: the full filter still decides, so the result is the
one a collection scan gives, in the same order:

- unsorted results come in natural (insertion) order, as from a scan, but
  for an ``_id`` lookup of several ids: those come in ``_id`` order, as the
  server's ``_id`` index returns them;
- sorted results follow mongomock's stable sort: ties keep natural order
  (entries with equal sort values are regrouped by insertion sequence).

``{path: {$elemMatch: {field: ..., ...}}}`` bounds the index fields
``path.field``: one element of the array meets all of its conditions, so each
is necessary, and the entries of fields sharing the array hold every
combination of their values, so the bounds of the fields under one
``$elemMatch`` compound, as on a server (MongoDB manual, "Compound Bounds for
Multikey Index": https://www.mongodb.com/docs/manual/core/multikey-index-bounds/).
Only a query of fields compared with scalars (or ``$and`` of such) is read,
and not for a sparse or partial index, nor for a field whose path crosses an
array held in an array (mongomock's ``$elemMatch`` looks into it, the path
does not).

When unsure the planner scans: on ``$or``/``$nor`` alone, unplannable values
(regexes, documents, arrays, NaN), a range or sort on a field that holds
arrays or non-scalar values, a sparse or partial index the filter does not
provably stay inside, a collation (index keys compare binary), or
``$natural``. A hint names the index to walk (all of it if the filter bounds
nothing), as on a server: a hinted sparse or partial index returns only the
documents it holds.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from nsn_store.embedded import _mongomock
from nsn_store.embedded._collation import Collation, sort_key
from nsn_store.embedded._match import RANKS as SCALAR_TYPES
from nsn_store.embedded._sorted_index import (
    BOOL_RANK,
    BOTTOM,
    DATE_RANK,
    NULL,
    NUMBER_RANK,
    OBJECT_ID_RANK,
    STRING_RANK,
    TOP,
    Check,
    Desc,
    Entry,
    Pair,
    SortedIndex,
    stored,
)
from nsn_store.embedded.query import compile_filter, id_candidates

if TYPE_CHECKING:
    from nsn_store.embedded.store import EmbeddedCollectionStore

Doc = dict[str, Any]
Sort = list[tuple[str, Any]]
#: Each range operator: (name, is a lower bound, inclusive), in the order the planner reads them.
RANGES = (("$gt", True, False), ("$gte", True, True), ("$lt", False, False), ("$lte", False, True))
MAX_RANGES = 1000  # a larger product of $in points is not planned on that index
MAX_CACHED_PLANS = 512  # query shapes remembered per collection
REPLAN_EVERY = 64  # uses of a cached plan before choosing again


# ---------------------------------------------------------------- conditions


@dataclass(slots=True)
class Bounds:
    """What a filter says about one field: points, or a range within one type rank."""

    points: list[Pair] | None = None
    low: tuple[Pair, bool] | None = None  # (pair, inclusive)
    high: tuple[Pair, bool] | None = None
    rank: int | None = None

    @property
    def excludes_null(self) -> bool:
        return (self.points is not None and NULL not in self.points) or self.rank is not None


def eq_points(value: Any) -> list[Pair] | None:
    """Return the keys a mongomock equality with ``value`` can match, or None if unplannable.

    mongomock compares with Python ``==``, so ``1`` also matches ``True`` (and
    ``1.0``), and an ObjectId also matches its hex string inside an array.
    """
    if value is None:
        return [NULL]
    kind = type(value)
    if kind is bool:
        return [(BOOL_RANK, value), (NUMBER_RANK, int(value))]
    if isinstance(value, int) or (kind is float and not math.isnan(value)):
        points: list[Pair] = [(NUMBER_RANK, value)]
        if value in (0, 1):
            points.append((BOOL_RANK, bool(value)))
        return points
    if kind is str:
        return [(STRING_RANK, value)]
    if kind is ObjectId:
        return [(OBJECT_ID_RANK, value.binary), (STRING_RANK, str(value))]
    if isinstance(value, datetime):
        return [(DATE_RANK, _naive(value))]
    return None


def _range_pair(value: Any) -> Pair | None:
    """Return the key of a range bound (its own type bracket), or None if unplannable."""
    if value is None:
        return None  # {$gte: null} matches nulls but not missing fields: leave it to a scan
    points = eq_points(value)
    return points[0] if points else None


def _naive(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


class Conditions(dict[str, list[Any]]):
    """Each field's conditions, and (``elements``) those its ``$elemMatch`` clauses imply.

    ``elements`` maps ``path.field`` to the conditions on ``field`` of each
    ``{path: {$elemMatch: {field: ..., ...}}}``: a matching document has an
    element of the array at ``path`` that meets them all, so each is necessary
    on ``path.field`` (see :func:`_with_elements` for the indexes they bound).
    """

    elements: dict[str, list[Any]] | None = None  # set on the instance when there are some


def conditions(spec: Mapping[str, Any], found: Conditions | None = None) -> Conditions:
    """Return each field's conditions from the top level and (nested) ``$and`` clauses."""
    if found is None:
        found = Conditions()
    for key, value in spec.items():
        if key == "$and" and isinstance(value, list):
            for clause in value:
                if isinstance(clause, Mapping):
                    conditions(clause, found)
        elif not key.startswith("$"):
            bucket = found.get(key)
            if bucket is None:
                found[key] = [value]
            else:
                bucket.append(value)
            if type(value) is dict and "$elemMatch" in value:
                _element_conditions(key, value, found)
    return found


def _element_conditions(path: str, condition: dict[str, Any], found: Conditions) -> None:
    """Record what ``{path: condition}`` implies of ``path.field`` through its ``$elemMatch``.

    mongomock matches ``$elemMatch`` by applying its query to each element of
    the array as a document: an element's ``field`` is then one of the values
    the path ``path.field`` reaches (the index's entries), unless the element
    is itself an array (see :func:`._sorted_index.holds_nested_array`). Only
    a query of fields compared with scalars (and ``$and`` of such) is read:
    anything else mongomock may refuse and then compare the element whole.
    """
    query = condition["$elemMatch"]
    if not _is_operators(condition) or type(query) is not dict or not _plain_element_query(query):
        return
    if not _plain_path(path):
        return
    elements = found.elements
    if elements is None:
        elements = found.elements = {}
    for name, more in conditions(query).items():
        if _plain_path(name):
            elements.setdefault(f"{path}.{name}", []).extend(more)


def _plain_element_query(query: dict[str, Any]) -> bool:
    """Tell whether ``query`` is fields compared with scalars, or ``$and`` of such queries."""
    if not query:
        return False
    for key, condition in query.items():
        if type(key) is not str:
            return False
        if key == "$and":
            if type(condition) is not list or not condition:
                return False
            for clause in condition:
                if type(clause) is not dict or not _plain_element_query(clause):
                    return False
        elif key.startswith("$") or not _plain_condition(condition):
            return False
    return True


_COMPARISONS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


def _plain_condition(condition: Any) -> bool:
    if type(condition) is not dict:
        return type(condition) in SCALAR_TYPES
    if not condition:
        return False
    for op, operand in condition.items():
        if op in _COMPARISONS:
            if type(operand) not in SCALAR_TYPES:
                return False
        elif op == "$in" or op == "$nin":
            if type(operand) is not list:
                return False
            for member in operand:
                if type(member) not in SCALAR_TYPES:
                    return False
        elif op != "$exists":
            return False
    return True


def _plain_path(path: str) -> bool:
    """Tell whether each part of ``path`` names a field (mongomock reads a number as a position)."""
    for part in path.split("."):
        if not part or part.startswith("$"):
            return False
        try:
            int(part)
        except ValueError:
            continue
        return False
    return True


def _is_operators(condition: Any) -> bool:
    if type(condition) is not dict and not isinstance(condition, Mapping):
        return False
    if not condition:
        return False
    for key in condition:  # a loop, not all(...): this runs for every condition of every query
        if not (key.startswith("$") if type(key) is str else str(key).startswith("$")):
            return False
    return True


def field_bounds(conds: Sequence[Any], multikey: bool) -> Bounds | None:
    """Return the tightest plannable bounds of one field's conditions, or None.

    Points (equality, ``$eq``, ``$in``: the condition with the fewest) win over
    ranges. One pass without generators: this runs for every index field of
    every planned query.
    """
    best: list[Pair] | None = None
    lows: list[tuple[Pair, bool]] = []
    highs: list[tuple[Pair, bool]] = []
    for condition in conds:
        if not _is_operators(condition):
            if not isinstance(condition, (Mapping, list, tuple)):
                points = eq_points(condition)
                if points is not None and (best is None or len(points) < len(best)):
                    best = points
            continue
        if "$eq" in condition:
            points = eq_points(condition["$eq"])
            if points is not None and (best is None or len(points) < len(best)):
                best = points
        values = condition.get("$in")
        if isinstance(values, (list, tuple)):
            points = _union(values)
            if points is not None and (best is None or len(points) < len(best)):
                best = points
        for op, low, inclusive in RANGES:
            if op in condition:
                pair = _range_pair(condition[op])
                if pair is not None:
                    (lows if low else highs).append((pair, inclusive))
    if best is not None:
        return Bounds(points=best if len(best) == 1 else sorted(set(best)))
    if not lows and not highs:
        return None
    return _range_bounds(lows, highs, multikey)


def _union(values: list[Any] | tuple[Any, ...]) -> list[Pair] | None:
    """Return the keys an ``$in`` of ``values`` can match, or None if one is unplannable."""
    union: list[Pair] = []
    for value in values:
        points = eq_points(value)
        if points is None:
            return None
        union += points
    return union


def _range_bounds(
    lows: list[tuple[Pair, bool]], highs: list[tuple[Pair, bool]], multikey: bool
) -> Bounds:
    rank = lows[0][0][0] if lows else highs[0][0][0]
    if len(lows) > 1:
        lows = [b for b in lows if b[0][0] == rank]
    if highs and (len(highs) > 1 or highs[0][0][0] != rank):
        highs = [b for b in highs if b[0][0] == rank]
    if multikey:  # each bound may hold for another element: keep one side only
        return Bounds(low=lows[0], rank=rank) if lows else Bounds(high=highs[0], rank=rank)
    low = high = None
    if lows:
        low = lows[0] if len(lows) == 1 else max(lows, key=lambda b: (b[0][1], not b[1]))
    if highs:
        high = highs[0] if len(highs) == 1 else min(highs, key=lambda b: (b[0][1], b[1]))
    return Bounds(low=low, high=high, rank=rank)


# ------------------------------------------------------------------- plans


@dataclass(slots=True)
class Plan:
    """A chosen access path: an index's ranges (or ``_id`` lookups, or a scan) and its sort."""

    kind: str  # "COLLSCAN", "IDHACK", "IXSCAN"
    index: SortedIndex | None = None
    ranges: list[tuple[Entry, Entry]] = field(default_factory=list)
    ids: list[Any] | None = None
    served: bool = False  # the sort comes from the walk order
    reverse: bool = False
    sort_key: list[tuple[int, bool]] = field(default_factory=list)  # (field, inverted)
    bounded: int = 0  # fields with bounds
    count: int = 0  # entries in the ranges
    bounds: dict[str, Bounds] = field(default_factory=dict)
    check: Check | None = None  # the bounds of the fields after the ranges (see _checker)
    # The positions of each range's entries, found when planning (the store lock is held
    # from planning to the walk, so they still hold then).
    spans: list[tuple[int, int]] = field(default_factory=list)


def _probe(prefix: tuple[Any, ...], bounds: Bounds | None, descending: bool) -> tuple[Entry, Entry]:
    if bounds is None:
        return prefix, (*prefix, TOP)
    rank = bounds.rank
    assert rank is not None
    low: Entry = (*prefix, rank)  # (rank,) sorts before every (rank, value)
    high: Entry = (*prefix, rank, TOP)
    if bounds.low is not None:
        (pair, inclusive) = bounds.low
        low = (*prefix, *pair) if inclusive else (*prefix, *pair, TOP)
    if bounds.high is not None:
        (pair, inclusive) = bounds.high
        high = (*prefix, *pair, TOP) if inclusive else (*prefix, *pair)
    if not descending:
        return low, high
    # A descending field stores (-rank, Desc(value)): the value range flips.
    flipped_low: Entry = (*prefix, -rank)
    flipped_high: Entry = (*prefix, -rank, TOP)
    if bounds.high is not None:
        pair, inclusive = bounds.high
        flipped_low = (
            (*prefix, *stored(pair, True)) if inclusive else (*prefix, *stored(pair, True), TOP)
        )
    if bounds.low is not None:
        pair, inclusive = bounds.low
        flipped_high = (
            (*prefix, *stored(pair, True), TOP) if inclusive else (*prefix, *stored(pair, True))
        )
    return flipped_low, flipped_high


def _usable(index: SortedIndex, found: Mapping[str, Bounds], spec: Mapping[str, Any]) -> bool:
    """Tell whether every document ``spec`` can match is in the index (sparse, partial)."""
    if index.sparse and not any(found.get(f) and found[f].excludes_null for f in index.fields):
        return False
    return index.partial is None or implies(spec, found, index.partial)


def implies(
    spec: Mapping[str, Any], found: Mapping[str, Bounds], partial: Mapping[str, Any]
) -> bool:
    """Tell (conservatively) whether every document matching ``spec`` matches ``partial``."""
    given = conditions(spec)
    for name, condition in partial.items():
        if name == "$and" and isinstance(condition, list):
            if not all(isinstance(c, Mapping) and implies(spec, found, c) for c in condition):
                return False
        elif name.startswith("$"):
            return False
        elif condition == {"$exists": True} or condition == {"$exists": 1}:
            bounded = name in found and found[name].excludes_null
            if not (bounded or condition in given.get(name, [])):
                return False
        elif condition not in given.get(name, []):
            return False
    return True


def plan_index(
    index: SortedIndex,
    spec: Mapping[str, Any],
    sort: Sort,
    limit: int,
    conds: Conditions,
    *,
    hinted: bool = False,
) -> Plan | None:
    """Return the plan ``index`` offers for ``spec`` and ``sort``, or None if it cannot help.

    ``hinted``: the index was named by a hint, so it is used even when it
    bounds nothing, and (as on a server) a sparse or partial index then
    returns only the documents it holds.
    """
    if conds.elements:
        conds = _with_elements(index, conds)
    found: dict[str, Bounds] = {}
    prefix_points: list[list[Pair]] = []
    range_bounds: Bounds | None = None
    multikey, complex_ = index.multikey, index.complex
    for i, name in enumerate(index.fields):
        field_conds = conds.get(name)
        if field_conds is None:
            break
        bounds = field_bounds(field_conds, bool(multikey[i]))
        if bounds is None:
            break
        if bounds.points is None and complex_[i]:
            break  # a range over values mongomock compares its own way: scan instead
        found[name] = bounds
        if bounds.points is None:
            range_bounds = bounds
            break
        prefix_points.append(bounds.points)
    if (
        not hinted
        and (index.sparse or index.partial is not None)
        and not _usable(index, found, spec)
    ):
        return None
    served = _served(index, prefix_points, sort) if sort else None
    if not found and served is None and not hinted:
        return None
    combinations = 1
    for points in prefix_points:
        combinations *= len(points)
    if combinations > MAX_RANGES:
        if not hinted:
            return None
        found, prefix_points, range_bounds = {}, [], None  # the whole index
    ranges = _ranges(index, prefix_points, range_bounds)
    reverse, sort_key = served if served is not None else (False, [])
    plan = Plan(
        "IXSCAN",
        index,
        ranges,
        served=served is not None,
        reverse=reverse,
        sort_key=sort_key,
        bounded=len(found),
        bounds=found,
    )
    span, spans, count = index.span, plan.spans, 0
    for low, high in ranges:
        begin, stop = span(low, high)
        spans.append((begin, stop))
        count += stop - begin
    plan.count = count
    return plan


def _with_elements(index: SortedIndex, conds: Conditions) -> Conditions:
    """Return ``conds`` with the ``$elemMatch`` conditions on ``index``'s fields it may use.

    Those of a field whose path crosses no array held in an array: then the
    element that matched has its values among the field's entries. A sparse
    or partial index may not hold the document at all (its test reads the
    path, not the element), so it gets none. The entries of fields sharing
    the array are every combination of the values along the path, so the
    bounds of fields under one ``$elemMatch`` compound (as a server compounds
    them: https://www.mongodb.com/docs/manual/core/multikey-index-bounds/).
    """
    elements = conds.elements
    if not elements or index.sparse or index.partial is not None:
        return conds
    merged: Conditions | None = None
    for i, name in enumerate(index.fields):
        more = elements.get(name)
        if more is None or index.nested[i]:
            continue
        if merged is None:
            merged = Conditions()
            merged.update(conds)
        merged[name] = [*conds.get(name, ()), *more]
    return conds if merged is None else merged


def _served(
    index: SortedIndex, prefix_points: list[list[Pair]], sort: Sort
) -> tuple[bool, list[tuple[int, bool]]] | None:
    """Return :func:`_serves` for ``sort`` less the fields pinned to one point."""
    fields = index.fields
    constant = {fields[i] for i, points in enumerate(prefix_points) if len(points) == 1}
    rest = [(name, direction) for name, direction in sort if name not in constant]
    return _serves(index, len(prefix_points), rest)


def _checker(index: SortedIndex, conds: Conditions, found: Mapping[str, Bounds]) -> Check | None:
    """Return a check of the bounds the filter sets on the index fields the ranges leave open.

    Each such field's bounds are necessary for a document to match (the full
    filter still decides), so an entry outside them is skipped and, on an
    ascending field, the walk seeks to the next key that can be inside: the
    next point, the start of the range, or past the values of the fields
    before (as a server's index bounds checker does). A range is only checked
    on a field holding no values the entries cannot order.
    """
    if conds.elements:
        conds = _with_elements(index, conds)
    checks: list[_FieldCheck] = []
    for i, name in enumerate(index.fields):
        field_conds = conds.get(name)
        if field_conds is None or name in found:
            continue
        bounds = field_bounds(field_conds, bool(index.multikey[i]))
        if bounds is None or (bounds.points is None and index.complex[i]):
            continue
        field_check = _FieldCheck(i, bounds, index.descending[i])
        before = checks[-1] if checks else None
        if before is not None and before.offset == 2 * (i - 1) and before.points is not None:
            field_check.previous = before  # past this field's bounds: the next point before it
        checks.append(field_check)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def check(entry: Entry) -> bool | Entry:
        for field_check in checks:
            verdict = field_check(entry)
            if verdict is not True:
                return verdict
        return True

    return check


class _FieldCheck:
    """One field's bounds, tested on an entry, with the probe that seeks past a miss."""

    __slots__ = (
        "descending",
        "high",
        "low",
        "offset",
        "points",
        "previous",
        "rank",
        "sorted_points",
    )

    def __init__(self, position: int, bounds: Bounds, descending: bool) -> None:
        self.previous: _FieldCheck | None = None  # the points check of the field just before
        self.offset = 2 * position
        self.descending = descending
        self.points = None if bounds.points is None else frozenset(bounds.points)
        self.sorted_points = bounds.points or []
        self.rank = -1 if bounds.rank is None else bounds.rank  # ranges have one
        self.low, self.high = bounds.low, bounds.high

    def __call__(self, entry: Entry) -> bool | Entry:
        rank, value = entry[self.offset], entry[self.offset + 1]
        if self.descending:
            rank, value = -rank, value.value
        try:
            if self.points is not None:
                if (rank, value) in self.points:
                    return True
                return False if self.descending else self._next_point(entry, (rank, value))
            if rank == self.rank and self._inside(value):
                return True
            return False if self.descending else self._past_range(entry, rank, value)
        except TypeError:  # a value the entries cannot order against the bound: just skip it
            return False

    def _inside(self, value: Any) -> bool:
        if self.low is not None:
            (_, low), inclusive = self.low
            if value < low or (value == low and not inclusive):
                return False
        if self.high is not None:
            (_, high), inclusive = self.high
            if value > high or (value == high and not inclusive):
                return False
        return True

    def _next_point(self, entry: Entry, pair: Pair) -> Entry:
        following = bisect.bisect_right(self.sorted_points, pair)
        if following < len(self.sorted_points):
            return (*entry[: self.offset], *self.sorted_points[following])
        return self._beyond(entry)

    def _beyond(self, entry: Entry) -> Entry:
        """Return the probe past every key with ``entry``'s values before this field.

        When the field before is a points field (ascending), that is its next
        point (or past the field before it, and so on), not merely its next
        value: one seek instead of two per exhausted combination.
        """
        previous = self.previous
        if previous is None or previous.descending or self.descending:
            return (*entry[: self.offset], TOP)
        pair = (entry[previous.offset], entry[previous.offset + 1])
        return previous._next_point(entry, pair)

    def _past_range(self, entry: Entry, rank: int, value: Any) -> Entry:
        prefix = entry[: self.offset]
        below = rank < self.rank or (rank == self.rank and not self._above(value))
        if not below:
            return self._beyond(entry)
        if self.low is None:
            return (*prefix, self.rank)
        (_, low), inclusive = self.low
        return (*prefix, self.rank, low) if inclusive else (*prefix, self.rank, low, TOP)

    def _above(self, value: Any) -> bool:
        if self.high is None:
            return False
        (_, high), inclusive = self.high
        return bool(value > high or (value == high and not inclusive))


def _serves(
    index: SortedIndex, start: int, rest: Sort
) -> tuple[bool, list[tuple[int, bool]]] | None:
    """Return (walk backwards, merge key) if the walk can give ``rest``'s order, else None.

    ``start`` fields are pinned to points. Within one combination of points the
    entries are ordered by the fields after them, so the sort fields past the
    prefix must be exactly the next index fields, in order, all in the index's
    direction or all reversed; sort fields among the prefix are constant per
    combination, and the combinations are merged on the whole sort key.
    """
    if not rest or index.is_multikey:
        return None
    positions = index.positions
    key: list[tuple[int, bool]] = []
    signs, following = set(), start
    for name, direction in rest:
        position = positions.get(name)
        if position is None or index.complex[position] or direction not in (1, -1):
            return None
        ascending = direction * index.directions[position] == 1
        if position >= start:
            if position != following:
                return None
            following += 1
            signs.add(ascending)
        key.append((position, not ascending))
    if len(signs) > 1:
        return None
    return signs == {False}, key


def _ranges(
    index: SortedIndex, prefix_points: list[list[Pair]], range_bounds: Bounds | None
) -> list[tuple[Entry, Entry]]:
    """Return the probes of each combination of points (``itertools.product`` order)."""
    descending = index.descending
    prefixes: list[tuple[Any, ...]] = [()]
    for i, points in enumerate(prefix_points):
        if descending[i]:
            points = [(-rank, Desc(value)) for rank, value in points]
        prefixes = [prefix + pair for prefix in prefixes for pair in points]
    position = len(prefix_points)
    more = range_bounds if position < len(descending) else None
    flipped = position < len(descending) and descending[position]
    return [_probe(prefix, more, flipped) for prefix in prefixes]


def choose(
    store: EmbeddedCollectionStore,
    spec: Mapping[str, Any],
    sort: Sort,
    limit: int,
    hint: str | None = None,
    *,
    cached: bool = False,
) -> Plan:
    """Return the plan for ``spec``/``sort``: ``_id`` lookup, the cheapest index, or a scan.

    ``hint`` is the name of the index a hint chose (see :func:`.indexes.hinted_index`).
    ``cached``: reuse the index chosen for the last query of the same shape
    (see :class:`_Cached`); every index gives the same results, so the cache
    can only change the cost, never an answer.
    """
    if hint is not None:
        return _hinted(store, spec, sort, limit, hint)
    ids = id_candidates(spec)
    if ids is not None:
        return Plan("IDHACK", ids=ids)
    for name, _ in sort:
        if name == "$natural":
            return Plan("COLLSCAN")
    conds = conditions(spec)
    if not conds and not sort:
        return Plan("COLLSCAN")
    if not cached:
        return _cheapest(store, spec, sort, limit, conds)
    key: tuple[Any, ...] = (_shape(conds), tuple(sort), bool(limit))
    if conds.elements:
        key += (_shape(conds.elements),)
    entry: _Cached | None = store.plans.get(key)
    if entry is not None:
        plan = entry.reuse(store, spec, sort, limit, conds)
        if plan is not None:
            return plan
    plan = _cheapest(store, spec, sort, limit, conds)
    if len(store.plans) >= MAX_CACHED_PLANS:
        store.plans.clear()
    store.plans[key] = _Cached(plan.index.name if plan.index is not None else None, plan.count)
    return plan


class _Cached:
    """The index chosen for a query shape, reused while it stays about as cheap.

    Like a server's plan cache: the plan is chosen again after
    :data:`REPLAN_EVERY` uses, when the cached index would read more than
    twice the entries it read when chosen (the data moved), and whenever an
    index is created or dropped (the store clears its cache).
    """

    __slots__ = ("count", "name", "uses")

    def __init__(self, name: str | None, count: int) -> None:
        self.name, self.count, self.uses = name, count, 0

    def reuse(
        self,
        store: EmbeddedCollectionStore,
        spec: Mapping[str, Any],
        sort: Sort,
        limit: int,
        conds: Conditions,
    ) -> Plan | None:
        self.uses += 1
        if self.uses >= REPLAN_EVERY:
            return None
        if self.name is None:
            return Plan("COLLSCAN")
        index = store.sorted_indexes.get(self.name)
        plan = None if index is None else plan_index(index, spec, sort, limit, conds)
        if plan is None or plan.count > 2 * self.count + 64:
            return None
        plan.check = _checker(plan.index, conds, plan.bounds) if plan.index else None
        return plan


def _shape(conds: Mapping[str, list[Any]]) -> tuple[Any, ...]:
    """Return what the plan of a filter depends on: each field's kinds of condition.

    A kind is a condition's operators (or a sub-document's fields), else its
    type, and nothing of the values: a cached plan is re-planned when these
    values make its index unusable (see :class:`_Cached`). A loop, not nested
    generators: this runs for every planned query.
    """
    shape: list[Any] = []
    for name, found in conds.items():
        if len(found) == 1:
            condition = found[0]
            kinds: tuple[Any, ...] = (
                (tuple(condition),) if type(condition) is dict else (type(condition),)
            )
        else:
            kinds = tuple([tuple(c) if type(c) is dict else type(c) for c in found])
        shape.append((name, kinds))
    return tuple(shape)


def _cheapest(
    store: EmbeddedCollectionStore,
    spec: Mapping[str, Any],
    sort: Sort,
    limit: int,
    conds: Conditions,
) -> Plan:
    """Return the cheapest plan over every index (a scan when none helps)."""
    best: tuple[Any, ...] | None = None
    chosen = Plan("COLLSCAN")
    first_sorted = sort[0][0] if sort else None
    elements = conds.elements or {}
    for order, index in enumerate(store.sorted_indexes.values()):
        first = index.fields[0]
        if first not in conds and first != first_sorted and first not in elements:
            continue  # it neither bounds the filter nor gives the sort: plan_index says None
        plan = plan_index(index, spec, sort, limit, conds)
        if plan is None:
            continue
        cost = min(plan.count, limit) if plan.served and limit else plan.count
        rank = (cost, not plan.served, -plan.bounded, order)
        if best is None or rank < best:
            best, chosen = rank, plan
    if chosen.index is not None:
        chosen.check = _checker(chosen.index, conds, chosen.bounds)
    return chosen


def _hinted(
    store: EmbeddedCollectionStore, spec: Mapping[str, Any], sort: Sort, limit: int, hint: str
) -> Plan:
    """Return the plan on the hinted index (``_id_`` and ``$natural`` read every document)."""
    index = store.sorted_indexes.get(hint)
    if index is None:
        ids = id_candidates(spec) if hint == "_id_" else None
        return Plan("IDHACK", ids=ids) if ids is not None else Plan("COLLSCAN")
    conds = conditions(spec)
    plan = plan_index(index, spec, sort, limit, conds, hinted=True)
    assert plan is not None  # a hinted plan always exists
    plan.check = _checker(index, conds, plan.bounds)
    return plan


# --------------------------------------------------------------- execution


@dataclass
class Stats:
    """What running a plan examined (``executionStats``)."""

    keys: int = 0
    docs: int = 0

    def skipped(self) -> None:
        """Count a key examined and left out by the bounds of later index fields."""
        self.keys += 1


def find(
    store: EmbeddedCollectionStore,
    spec: Mapping[str, Any],
    *,
    sort: Any = None,
    limit: int = 0,
    collation: Collation | None = None,
    let: Mapping[str, Any] | None = None,
    hint: str | None = None,
    stats: Stats | None = None,
    plan: Plan | None = None,
) -> list[Doc]:
    """Return the stored documents matching ``spec``, sorted, at most ``limit`` (0: all).

    Exactly what a scan in natural order, then mongomock's stable sort, then the
    limit would return. ``collation`` (:mod:`._collation`), ``let``
    (:mod:`._variables`) and ``hint`` (an index name) are already checked.
    The caller holds the store lock.
    """
    spec = _mongomock.patched_filter(spec)
    order = normalise_sort(sort)
    matches = compile_filter(spec, collation=collation, let=let)
    stats = stats if stats is not None else Stats()
    if plan is None:
        plan = _plan(store, spec, order, limit, collation, hint)
    if plan.kind == "IXSCAN" and plan.served:
        found = _walk_sorted(store, plan, matches, limit, stats)
        if not stats.docs:
            matches({})  # still reject an invalid filter, as mongomock does
    elif plan.kind == "COLLSCAN" and not spec and not order:
        documents = list(store._documents.values())  # {} matches everything
        stats.docs += len(documents)
        found = documents[:limit] if limit else documents
    else:
        candidates = list(_candidates(store, plan, spec, stats))
        if not candidates:
            matches({})  # still reject an invalid filter, as mongomock does
        stop = limit if limit and not order else 0
        found = _filtered(candidates, matches, stop, stats)
        if order:
            found = apply_sort(found, order, collation)
            if limit:
                found = found[:limit]
    return found


def _plan(
    store: EmbeddedCollectionStore,
    spec: Mapping[str, Any],
    order: Sort,
    limit: int,
    collation: Collation | None,
    hint: str | None,
    *,
    explaining: bool = False,
) -> Plan:
    if collation is None:
        return choose(store, spec, order, limit, hint, cached=not explaining)
    # Index keys compare binary, not by the collation: read all of the hinted index, or scan.
    return choose(store, {}, [], 0, hint) if hint is not None else Plan("COLLSCAN")


def normalise_sort(sort: Any) -> Sort:
    """Return ``sort`` (dict, pairs or None) as a list of (field, direction)."""
    if not sort:
        return []
    pairs = sort.items() if isinstance(sort, Mapping) else sort
    return [(str(name), direction) for name, direction in pairs]


def _filtered(
    candidates: Iterable[Doc], matches: Callable[[Doc], bool], stop: int, stats: Stats
) -> list[Doc]:
    found = []
    for doc in candidates:
        stats.docs += 1
        if matches(doc):
            found.append(doc)
            if stop and len(found) >= stop:
                break
    return found


def _candidates(
    store: EmbeddedCollectionStore, plan: Plan, spec: Mapping[str, Any], stats: Stats
) -> Iterator[Doc]:
    documents = store._documents
    if plan.kind == "COLLSCAN":
        yield from list(documents.values())
        return
    if plan.kind == "IDHACK":
        assert plan.ids is not None
        found = []
        for key in dict.fromkeys(plan.ids):
            doc = documents.get(key)
            if doc is not None:
                found.append(doc)
        stats.keys += len(found)
        if len(found) > 1:  # the _id index returns them in _id order
            _in_id_order(found)
        yield from found
        return
    assert plan.index is not None
    seen: set[int] = set()
    keys = 0
    index, check, skipped = plan.index, plan.check, stats.skipped
    for start, stop in plan.spans:
        for entry in index.scan(start, stop, False, check, skipped):
            keys += 1
            seen.add(entry[-1])
    stats.keys += keys
    by_seq = store.by_seq
    for seq in sorted(seen):
        yield documents[by_seq[seq]]


def _in_id_order(found: list[Doc]) -> None:
    """Sort ``found`` by ``_id`` as BSON orders them (one type: its own order, in C)."""
    kind: type | None = type(found[0]["_id"])
    for doc in found:
        if type(doc["_id"]) is not kind:
            kind = None
            break
    if kind is ObjectId:  # ObjectIds order by their 12 bytes
        found.sort(key=lambda doc: doc["_id"].binary)
    elif kind is str or kind is int:  # strings by code point (UTF-8 bytes), integers by value
        found.sort(key=lambda doc: doc["_id"])
    else:
        found.sort(key=lambda doc: _mongomock.BsonComparable(doc["_id"]))


def _walk_sorted(
    store: EmbeddedCollectionStore,
    plan: Plan,
    matches: Callable[[Doc], bool],
    limit: int,
    stats: Stats,
) -> list[Doc]:
    """Walk the ranges in sort order; regroup ties by natural order; stop at ``limit``."""
    assert plan.index is not None
    index, documents, by_seq = plan.index, store._documents, store.by_seq
    walks = [
        index.scan(start, stop, plan.reverse, plan.check, stats.skipped)
        for start, stop in plan.spans
    ]
    if not walks:  # $in: [] matches nothing
        return []
    merged: Iterator[Entry]
    if len(walks) == 1:  # one walk is in order: the key only groups ties
        key = _tie_key(plan.sort_key)
        merged = walks[0]
    else:
        inverted = {part[1] for part in plan.sort_key}
        if len(inverted) == 1:  # all one way: merge on the stored values, reversed if inverted
            key = _tie_key(plan.sort_key)
            merged = heapq.merge(*walks, key=key, reverse=inverted == {True})
        else:
            key = _merge_key(plan.sort_key)
            merged = heapq.merge(*walks, key=key)
    found: list[Doc] = []
    for _, group in itertools.groupby(merged, key=key):
        entries = list(group)
        if len(entries) > 1:
            entries.sort(key=_sequence)
        for entry in entries:
            stats.keys += 1
            stats.docs += 1
            doc = documents[by_seq[entry[-1]]]
            if matches(doc):
                found.append(doc)
                if limit and len(found) >= limit:
                    return found
    return found


_sequence = operator.itemgetter(-1)  # an entry's insertion sequence number


def _tie_key(parts: list[tuple[int, bool]]) -> Callable[[Entry], Any]:
    """Return the stored sort values of an entry, in C (ties group on them as on the sort)."""
    positions: list[int] = []
    for position, _ in parts:
        positions += (2 * position, 2 * position + 1)
    return operator.itemgetter(*positions)


def _merge_key(parts: list[tuple[int, bool]]) -> Callable[[Entry], tuple[Any, ...]]:
    """Return the key that orders entries as the sort asks (inverting reversed fields)."""

    def key(entry: Entry) -> tuple[Any, ...]:
        found: list[Any] = []
        for position, inverted in parts:
            rank, value = entry[2 * position], entry[2 * position + 1]
            found += (Desc(rank), Desc(value)) if inverted else (rank, value)
        return tuple(found)

    return key


def apply_sort(documents: list[Doc], order: Sort, collation: Collation | None = None) -> list[Doc]:
    """Sort as mongomock's ``_get_dataset`` does: stable sorts from the last key to the first.

    Under ``collation`` strings compare in its order (:func:`._collation.sort_key`).
    """
    dataset: Iterable[Doc] = documents
    for name, direction in reversed(order):
        if name == "$natural":
            if direction < 0:
                dataset = list(reversed(list(dataset)))
            continue
        if name.startswith("$"):
            raise NotImplementedError(f"Sorting by {name} is not implemented in mongomock yet")
        dataset = sorted(dataset, key=_sort_key(name, collation), reverse=direction < 0)
    return list(dataset)


def _sort_key(name: str, collation: Collation | None) -> Callable[[Doc], Any]:
    if collation is None:
        return lambda doc: _mongomock.resolve_sort_key(name, doc)

    def key(doc: Doc) -> Any:
        rank, comparable = _mongomock.resolve_sort_key(name, doc)
        comparable.obj = sort_key(collation, comparable.obj)
        return rank, comparable

    return key


# ----------------------------------------------------------------- explain


def explain(
    store: EmbeddedCollectionStore,
    namespace: str,
    spec: Mapping[str, Any],
    *,
    sort: Any = None,
    limit: int = 0,
    skip: int = 0,
    collation: Collation | None = None,
    let: Mapping[str, Any] | None = None,
    hint: str | None = None,
) -> Doc:
    """Return ``explain()`` output shaped as a server's: queryPlanner and executionStats."""
    spec = _mongomock.patch_datetime_awareness_in_document(spec)
    order = normalise_sort(sort)
    wanted = skip + limit if limit else 0
    plan = _plan(store, spec, order, wanted, collation, hint, explaining=True)
    stats = Stats()
    found = find(
        store, spec, sort=order, limit=wanted, collation=collation, let=let, stats=stats, plan=plan
    )
    returned = len(found[skip:])
    tree = _tree(plan, spec, order, limit, skip)
    return {
        "explainVersion": "1",
        "queryPlanner": {
            "namespace": namespace,
            "indexFilterSet": False,
            "parsedQuery": dict(spec),
            "planCacheShapeHash": None,
            "maxIndexedOrSolutionsReached": False,
            "winningPlan": tree,
            "rejectedPlans": [],
        },
        "executionStats": {
            "executionSuccess": True,
            "nReturned": returned,
            "executionTimeMillis": 0,
            "totalKeysExamined": stats.keys,
            "totalDocsExamined": stats.docs,
            "executionStages": tree,
        },
        "ok": 1.0,
    }


def _tree(plan: Plan, spec: Mapping[str, Any], order: Sort, limit: int, skip: int) -> Doc:
    node = _access_stage(plan, spec)
    if order and not plan.served:
        node = {
            "stage": "SORT",
            "sortPattern": dict(order),
            "memLimit": 104857600,
            "type": "simple",
            "inputStage": node,
        }
        if limit:
            node["limitAmount"] = skip + limit
    if skip:
        node = {"stage": "SKIP", "skipAmount": skip, "inputStage": node}
    if limit and not (order and not plan.served):
        node = {"stage": "LIMIT", "limitAmount": limit, "inputStage": node}
    return node


def _access_stage(plan: Plan, spec: Mapping[str, Any]) -> Doc:
    if plan.kind == "COLLSCAN":
        return {"stage": "COLLSCAN", "filter": dict(spec), "direction": "forward"}
    if plan.kind == "IDHACK":
        if set(spec) == {"_id"} and len(plan.ids or ()) == 1:
            return {"stage": "IDHACK"}
        scan = {
            "stage": "IXSCAN",
            "keyPattern": {"_id": 1},
            "indexName": "_id_",
            "isMultiKey": False,
            "multiKeyPaths": {"_id": []},
            "isUnique": True,
            "isSparse": False,
            "isPartial": False,
            "indexVersion": 2,
            "direction": "forward",
            "indexBounds": {"_id": [f"[{v!r}, {v!r}]" for v in plan.ids or ()]},
        }
        return {"stage": "FETCH", "filter": dict(spec), "inputStage": scan}
    index = plan.index
    assert index is not None
    scan = {
        "stage": "IXSCAN",
        "keyPattern": index.key_pattern,
        "indexName": index.name,
        "isMultiKey": index.is_multikey,
        "multiKeyPaths": {
            name: [name] if index.multikey[i] else [] for i, name in enumerate(index.fields)
        },
        "isUnique": bool(index.spec.get("unique")),
        "isSparse": index.sparse,
        "isPartial": index.partial is not None,
        "indexVersion": 2,
        "direction": "backward" if plan.reverse else "forward",
        "indexBounds": {name: _describe(plan.bounds.get(name)) for name in index.fields},
    }
    return {"stage": "FETCH", "filter": dict(spec), "inputStage": scan}


def _describe(bounds: Bounds | None) -> list[str]:
    if bounds is None:
        return ["[MinKey, MaxKey]"]
    if bounds.points is not None:
        return [f"[{v!r}, {v!r}]" for _, v in bounds.points]
    low = f"[<type {bounds.rank} start>"
    if bounds.low:
        low = f"{'[' if bounds.low[1] else '('}{bounds.low[0][1]!r}"
    high = f"<type {bounds.rank} end>]"
    if bounds.high:
        high = f"{bounds.high[0][1]!r}{']' if bounds.high[1] else ')'}"
    return [f"{low}, {high}"]


__all__ = ["BOTTOM", "Bounds", "Plan", "Stats", "apply_sort", "choose", "explain", "find"]
