"""One declared index as an ordered list of entries, kept in sync with the stored documents.

An entry is the flat tuple ``(r1, v1, ..., rn, vn, seq)``: for each indexed
field a type rank and a value, then the document's insertion sequence number
(its place in the collection's natural order, which the store maps back to
the document). Ranks are
mongomock's BSON comparison ranks (null 5, numbers 10, strings 15, objects 20,
arrays 25, binary 30, ObjectId 35, booleans 40, dates 45, regexes 50), so tuple
order is the order mongomock sorts and compares in; a descending field stores
``(-r, Desc(v))`` so the list is in the index's declared order.

Only "simple" values (null, numbers other than NaN, plain strings, ObjectIds
(as their 12 bytes, which order as ObjectIds do), booleans, dates) keep their
value. Anything else is stored as ``(rank, 0)``
and counted in ``complex`` for its field: the planner never seeks a range in,
or serves a sort from, a field that holds one (mongomock compares such values
with rules a tuple cannot mirror, or refuses to). An array makes the index
multikey (``multikey`` counts the documents per field): each element is an
entry of its own, as on a server. A missing field is indexed as null.

A dotted field's entries are the values mongomock's matcher reaches along the
path, which steps into the dictionaries of an array but not into an array
nested in it; ``$elemMatch`` does look into such an element. ``nested`` counts
the documents per field with an array directly inside an array on the path,
so the planner knows when the bounds an ``$elemMatch`` implies cannot miss one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from itertools import product
from typing import Any

from bson import ObjectId
from bson.regex import Regex
from sortedcontainers import SortedList

from nsn_store.embedded._mongomock import NOTHING, filter_applies, iter_key_candidates

Pair = tuple[Any, Any]
Entry = tuple[Any, ...]
#: Keep an entry (True), skip it (False) or seek to a probe (an Entry): see SortedIndex.scan.
Check = Callable[[Entry], "bool | Entry"]

NULL_RANK, NUMBER_RANK, STRING_RANK, OBJECT_RANK, ARRAY_RANK = 5, 10, 15, 20, 25
BINARY_RANK, OBJECT_ID_RANK, BOOL_RANK, DATE_RANK, REGEX_RANK = 30, 35, 40, 45, 50
NAN_RANK = 9  # NaN sorts before every number on a server and matches no range
UNKNOWN_RANK = 60  # types mongomock cannot compare (Decimal128, Timestamp, ...)
NULL: Pair = (NULL_RANK, 0)


class Desc:
    """A value that sorts in reverse: the stored form of a descending index field."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Desc) and bool(self.value == other.value)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Desc):
            return NotImplemented
        return bool(other.value < self.value)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Desc):
            return NotImplemented
        return bool(self.value < other.value)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Desc({self.value!r})"


class _Bound:
    """A probe element above (``TOP``) or below (``BOTTOM``) every stored element."""

    __slots__ = ("above",)

    def __init__(self, above: bool) -> None:
        self.above = above

    def __eq__(self, other: object) -> bool:
        return self is other

    def __lt__(self, other: object) -> bool:
        return not self.above and self is not other

    def __gt__(self, other: object) -> bool:
        return self.above and self is not other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return "TOP" if self.above else "BOTTOM"


TOP, BOTTOM = _Bound(True), _Bound(False)


def encode(value: Any) -> tuple[Pair, bool]:
    """Return ``((rank, value), simple)`` for one indexed value (never an array)."""
    if value is None:
        return NULL, True
    kind = type(value)
    if kind is bool:
        return (BOOL_RANK, value), True
    if isinstance(value, int):
        return (NUMBER_RANK, value), True
    if kind is float:
        if math.isnan(value):
            return (NAN_RANK, 0), False
        return (NUMBER_RANK, value), True
    if kind is str:
        return (STRING_RANK, value), True
    if kind is ObjectId:
        return (OBJECT_ID_RANK, value.binary), True  # bytes compare in C, in ObjectId order
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return (DATE_RANK, value), True
    return (_complex_rank(value), 0), False


def _complex_rank(value: Any) -> int:
    if isinstance(value, Mapping):
        return OBJECT_RANK
    if isinstance(value, (list, tuple)):
        return ARRAY_RANK
    if isinstance(value, (bytes, bytearray)) or type(value).__name__ == "UUID":
        return BINARY_RANK
    if isinstance(value, (re.Pattern, Regex)):
        return REGEX_RANK
    if isinstance(value, str):
        return STRING_RANK  # a str subclass (bson Code): not equal to its text
    return UNKNOWN_RANK


def stored(pair: Pair, descending: bool) -> Pair:
    """Return ``pair`` as a field of that direction stores it."""
    return (-pair[0], Desc(pair[1])) if descending else pair


def field_pairs(doc: Mapping[str, Any], field: str) -> tuple[set[Pair], bool, bool]:
    """Return (keys, multikey, complex) of ``doc`` for one index field, mongomock's way.

    The candidates are those mongomock's matcher compares (``iter_key_candidates``
    follows dotted paths through arrays); an array contributes its elements.
    """
    candidates: Sequence[Any] = (
        [doc.get(field, NOTHING)] if "." not in field else iter_key_candidates(field, doc)
    )
    multikey = len(candidates) > 1
    pairs: set[Pair] = set()
    complex_ = False
    for candidate in candidates or (NOTHING,):
        if candidate is NOTHING:
            pairs.add(NULL)
            continue
        if isinstance(candidate, list):
            multikey = True
            if not candidate:
                pairs.add((ARRAY_RANK, 0))
                complex_ = True
            for element in candidate:
                pair, simple = encode(element)
                pairs.add(pair)
                complex_ |= not simple
            continue
        pair, simple = encode(candidate)
        pairs.add(pair)
        complex_ |= not simple
    return pairs, multikey, complex_


def holds_nested_array(doc: Mapping[str, Any], field: str) -> bool:
    """Tell whether an array on the way to dotted ``field`` holds an array as an element.

    mongomock's ``$elemMatch`` matches such an element as a document of its
    own (reaching the dictionaries inside it), where the path to ``field``
    skips it: an entry of the index may then be missing for the element that
    matched.
    """
    parts = field.split(".")
    for end in range(1, len(parts)):
        for candidate in iter_key_candidates(".".join(parts[:end]), doc):
            if isinstance(candidate, (list, tuple)):
                for element in candidate:
                    if isinstance(element, (list, tuple)):
                        return True
    return False


def _present(doc: Mapping[str, Any], field: str) -> bool:
    if "." not in field:
        return field in doc
    return any(c is not NOTHING for c in iter_key_candidates(field, doc))


SCALARS = (str, int, float, bool, datetime, ObjectId, type(None))


def watched_fields(spec: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Return the top-level fields an index's entries depend on, or None if not that simple."""
    names = [str(field) for field, _ in spec["key"]]
    partial = spec.get("partialFilterExpression") or {}
    if any(str(name).startswith("$") for name in partial):
        return None
    names += [str(name) for name in partial]
    if any("." in name for name in names):
        return None
    return tuple(dict.fromkeys(names))


def unchanged(
    watched: tuple[str, ...] | None, old: Mapping[str, Any], new: Mapping[str, Any]
) -> bool:
    """Tell whether ``new`` holds exactly ``old``'s scalar values in every watched field."""
    if watched is None:
        return False
    for name in watched:
        a, b = old.get(name, NOTHING), new.get(name, NOTHING)
        if a is b:
            continue
        if type(a) is not type(b) or not isinstance(a, SCALARS) or a != b:
            return False
        if type(a) is datetime and a.tzinfo != b.tzinfo:
            return False
    return True


def _exists_fields(partial: Mapping[str, Any] | None) -> frozenset[str] | None:
    """Return the fields of a partial filter made only of top-level ``{f: {$exists: true}}``."""
    if not partial:
        return None
    names = []
    for name, condition in partial.items():
        if (
            str(name).startswith("$")
            or "." in str(name)
            or not isinstance(condition, Mapping)
            or list(condition) != ["$exists"]
            or condition["$exists"] is not True
        ):
            return None
        names.append(str(name))
    return frozenset(names)


class Held:
    """What one document contributes to an index: its entries and per-field flags.

    A document whose indexed fields all hold simple values contributes one
    entry and no flags: the index keeps that entry tuple itself, not a Held.
    """

    __slots__ = ("complex", "entries", "multikey", "nested")

    def __init__(
        self,
        entries: frozenset[Entry],
        multikey: tuple[bool, ...],
        complex_: tuple[bool, ...],
        nested: tuple[bool, ...],
    ) -> None:
        self.entries = entries
        self.multikey = multikey
        self.complex = complex_
        self.nested = nested


class SortedIndex:
    """The entries of one declared index, in its declared order, with multikey bookkeeping."""

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.fields: tuple[str, ...] = tuple(str(field) for field, _ in spec["key"])
        self.directions: tuple[int, ...] = tuple(
            -1 if direction < 0 else 1 for _, direction in spec["key"]
        )
        self.descending: tuple[bool, ...] = tuple(d < 0 for d in self.directions)
        self.positions: dict[str, int] = {name: i for i, name in enumerate(self.fields)}
        self.partial: Mapping[str, Any] | None = spec.get("partialFilterExpression")
        self.sparse = bool(spec.get("sparse"))
        self.entries: SortedList = SortedList()
        self.watched = watched_fields(spec)
        self._flat = all("." not in field for field in self.fields)
        self._layout = tuple(zip(self.fields, self.descending, strict=True))
        self._exists_only = _exists_fields(self.partial)
        self.multikey = [0] * len(self.fields)
        self.complex = [0] * len(self.fields)
        self.nested = [0] * len(self.fields)  # documents with an array in an array on the path
        self._held: dict[int, Held | Entry] = {}  # by sequence number: a Held, or its one entry

    @property
    def is_multikey(self) -> bool:
        return any(self.multikey)

    @property
    def key_pattern(self) -> dict[str, Any]:
        return dict(self.spec["key"])

    def __len__(self) -> int:
        return len(self._held)

    def _compute(self, seq: int, doc: Mapping[str, Any]) -> Held | Entry | None:
        """Return what ``doc`` contributes: its one entry (simple values), a Held, or None."""
        if self.partial is not None and not self._inside(doc):
            return None
        if self.sparse and not any(_present(doc, field) for field in self.fields):
            return None
        if self._flat:
            entry = self._scalar_entry(seq, doc)
            if entry is not None:
                return entry
        per_field, multikey, complex_, nested = [], [], [], []
        for field, direction in zip(self.fields, self.directions, strict=True):
            pairs, many, odd = field_pairs(doc, field)
            per_field.append([stored(pair, direction < 0) for pair in pairs])
            multikey.append(many)
            complex_.append(odd)
            nested.append("." in field and holds_nested_array(doc, field))
        if len(per_field) == 1:
            entries = frozenset((*pair, seq) for pair in per_field[0])
        else:
            entries = frozenset(
                (*(item for pair in combo for item in pair), seq) for combo in product(*per_field)
            )
        return Held(entries, tuple(multikey), tuple(complex_), tuple(nested))

    def _inside(self, doc: Mapping[str, Any]) -> bool:
        """Tell whether ``doc`` matches the partial filter (top-level ``$exists``: no matcher)."""
        if self._exists_only is not None:
            return self._exists_only <= doc.keys()  # in C: this runs on every write
        assert self.partial is not None
        return bool(filter_applies(self.partial, doc))

    def _scalar_entry(self, seq: int, doc: Mapping[str, Any]) -> Entry | None:
        """Return the one entry of a document whose indexed fields are all simple, else None.

        :func:`encode` inlined for the exact types it keeps (this runs on every write).
        """
        entry: list[Any] = []
        for field, descending in self._layout:
            value = doc.get(field, NOTHING)
            kind = type(value)
            if kind is str:
                pair: Pair = (STRING_RANK, value)
            elif kind is ObjectId:
                pair = (OBJECT_ID_RANK, value.binary)
            elif value is NOTHING or value is None:
                pair = NULL
            elif kind is datetime:
                if value.tzinfo is not None:
                    value = value.astimezone(timezone.utc).replace(tzinfo=None)
                pair = (DATE_RANK, value)
            elif kind is int:
                pair = (NUMBER_RANK, value)
            elif kind is bool:
                pair = (BOOL_RANK, value)
            elif kind is float and not math.isnan(value):
                pair = (NUMBER_RANK, value)
            else:
                return None
            if descending:
                entry += (-pair[0], Desc(pair[1]))
            else:
                entry += pair
        entry.append(seq)
        return tuple(entry)

    def _count(self, held: Held, step: int) -> None:
        flags = zip(held.multikey, held.complex, held.nested, strict=True)
        for i, (many, odd, deep) in enumerate(flags):
            self.multikey[i] += step * many
            self.complex[i] += step * odd
            self.nested[i] += step * deep

    def build(self, documents: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Index every ``(seq, doc)`` at once (index creation)."""
        entries: list[Entry] = []
        for seq, doc in documents:
            held = self._compute(seq, doc)
            if held is None:
                continue
            self._held[seq] = held
            if type(held) is tuple:
                entries.append(held)
            else:
                assert isinstance(held, Held)
                self._count(held, 1)
                entries.extend(held.entries)
        self.entries = SortedList(entries)

    def put(self, seq: int, doc: Mapping[str, Any]) -> None:
        """Index ``doc`` (number ``seq``), replacing what its previous version held."""
        new = self._compute(seq, doc)
        old = self._held.get(seq)
        if type(new) is tuple and type(old) is tuple:  # one simple entry before and after
            if old != new:
                self.entries.remove(old)
                self.entries.add(new)
                self._held[seq] = new
            return
        if isinstance(new, Held) and isinstance(old, Held) and old.entries == new.entries:
            self._count(old, -1)
            self._count(new, 1)
            self._held[seq] = new
            return
        self.remove(seq)
        if new is None:
            return
        self._held[seq] = new
        if type(new) is tuple:
            self.entries.add(new)
            return
        assert isinstance(new, Held)
        self._count(new, 1)
        for entry in new.entries:
            self.entries.add(entry)

    def remove(self, seq: int) -> None:
        """Drop every entry of document number ``seq`` (if it had any)."""
        held = self._held.pop(seq, None)
        if held is None:
            return
        if type(held) is tuple:
            self.entries.remove(held)
            return
        assert isinstance(held, Held)
        self._count(held, -1)
        for entry in held.entries:
            self.entries.remove(entry)

    def span(self, low: Entry, high: Entry) -> tuple[int, int]:
        """Return the positions ``[start, stop)`` of the entries between two probes."""
        return self.entries.bisect_left(low), self.entries.bisect_left(high)

    def dated_until(self, cutoff: datetime) -> set[int]:
        """Return the documents whose first field holds a date at or before ``cutoff`` (naive UTC).

        One range of the ordered entries: an array of dates has an entry per
        element, so its earliest date decides, as the server's TTL monitor reads it.
        """
        if self.directions[0] > 0:
            low: Entry = (DATE_RANK, BOTTOM)
            high: Entry = (DATE_RANK, cutoff, TOP)
        else:
            low, high = (-DATE_RANK, Desc(cutoff), BOTTOM), (-DATE_RANK, TOP)
        start, stop = self.span(low, high)
        return {entry[-1] for entry in self.walk(start, stop, reverse=False)}

    def walk(self, start: int, stop: int, reverse: bool) -> Iterator[Entry]:
        """Iterate the entries at positions ``[start, stop)``, backwards when ``reverse``."""
        return iter(self.entries.islice(start, stop, reverse=reverse))

    def scan(
        self,
        start: int,
        stop: int,
        reverse: bool,
        check: Check | None,
        skipped: Callable[[], None] = lambda: None,
    ) -> Iterator[Entry]:
        """Iterate the entries in ``[start, stop)`` that ``check`` keeps, seeking past the rest.

        ``check(entry)`` returns True to keep the entry, False to skip it, or a
        probe: then the walk goes on from the first entry at or after the probe
        (forward walks; a backward walk only skips), as a server's index bounds
        checker seeks past keys outside the bounds of later fields.
        """
        if check is None:
            yield from self.entries.islice(start, stop, reverse=reverse)
            return
        if reverse:
            for entry in self.entries.islice(start, stop, reverse=True):
                if check(entry) is True:
                    yield entry
                else:
                    skipped()
            return
        position = start
        while position < stop:
            resume = stop
            for offset, entry in enumerate(self.entries.islice(position, stop)):
                verdict = check(entry)
                if verdict is True:
                    yield entry
                    continue
                skipped()
                if verdict is not False:
                    resume = max(self.entries.bisect_left(verdict), position + offset + 1)
                    break
            position = resume
