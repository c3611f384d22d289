"""Compare declared collection specs with what a database reports (pure functions).

Nothing here does I/O: :mod:`nsn_store.migration` reads a :class:`CollectionState`
per collection and these functions turn it into the steps ``init`` would take
(:func:`plan_collection`), the steps that undo a revision (:func:`restore_collection`)
or the differences ``status``/``verify`` report (:func:`collection_status`);
:func:`after_step` tells what a collection looks like once a step is applied, so a
plan can walk several migrations before any of them runs.

Indexes are compared as the server does (MongoDB manual, createIndexes,
"Index Options" and "Behavior"): the key as
ordered ``(field, direction)`` pairs, because ``{a: 1, b: 1}`` and ``{b: 1, a: 1}``
serve different queries, plus the options with the bookkeeping fields (``v``,
``ns``, ``background``) dropped and an absent ``unique``/``sparse`` taken as false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nsn_store.migration._sharding import shard_key_index
from nsn_store.schema._registry import CollectionSpec, IndexSpec

#: Index fields that never make two indexes differ.
IGNORED_INDEX_FIELDS = frozenset(
    {"name", "key", "v", "ns", "background", "dropDups", "textIndexVersion", "2dsphereIndexVersion"}
)
#: Boolean index options whose absence means false.
FALSE_BY_DEFAULT = ("unique", "sparse", "hidden")
DEFAULT_LEVEL = "strict"
DEFAULT_ACTION = "error"

CREATE_COLLECTION = "create_collection"
UPDATE_VALIDATOR = "update_validator"
CREATE_INDEX = "create_index"
INDEX_CONFLICT = "index_conflict"
#: Only a downgrade (or a revision that removes an index) drops anything.
DROP_INDEX = "drop_index"
DROP_COLLECTION = "drop_collection"
#: The index every collection has; never declared, never dropped.
ID_INDEX = {"name": "_id_", "key": {"_id": 1}}


@dataclass(frozen=True)
class CollectionState:
    """What the database reports for one collection (``exists=False`` if absent)."""

    name: str
    exists: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    indexes: Sequence[Mapping[str, Any]] = ()
    count: int = 0


@dataclass(frozen=True)
class Step:
    """One change a migration makes (or, for ``index_conflict``, refuses to make).

    ``detail`` carries what the change needs (the options to create or collMod
    with, an index's key and options), so a step can be applied on its own;
    ``migration`` names the migration it belongs to.
    """

    action: str
    collection: str
    index: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    migration: str | None = None

    @property
    def is_conflict(self) -> bool:
        return self.action == INDEX_CONFLICT

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "collection": self.collection,
            "index": self.index,
            "detail": dict(self.detail),
            "migration": self.migration,
        }

    def triple(self) -> tuple[str, str, str | None]:
        """Return ``(action, collection, index)``: what a record entry names."""
        return (self.action, self.collection, self.index)

    def describe(self) -> str:
        """Return a one-line human description."""
        if self.action == CREATE_COLLECTION:
            return f"create collection {self.collection}"
        if self.action == DROP_COLLECTION:
            return f"drop collection {self.collection}"
        if self.action == DROP_INDEX:
            return f"drop index {self.collection}.{self.index}"
        if self.action == UPDATE_VALIDATOR:
            changes = ", ".join(self.detail.get("changes", ()))
            return f"collMod {self.collection} ({changes})"
        if self.action == CREATE_INDEX:
            key = f" {format_key(self.detail['key'])}" if "key" in self.detail else ""
            return f"create index {self.collection}.{self.index}{key}"
        return f"index conflict {self.collection}.{self.index}: {self.detail.get('reason')}"


def format_key(key: Sequence[Sequence[Any]]) -> str:
    """Render ordered key pairs as ``{a: 1, b: -1}``."""
    return "{" + ", ".join(f"{f}: {d}" for f, d in key) + "}"


def _number(value: Any) -> Any:
    """Fold integral floats to int: servers and drivers disagree on 1 vs 1.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def index_key(key: Mapping[str, Any] | Sequence[Sequence[Any]]) -> tuple[tuple[str, Any], ...]:
    """Return an index key as ordered ``(field, direction)`` pairs."""
    items = key.items() if isinstance(key, Mapping) else key
    return tuple((str(name), _number(direction)) for name, direction in items)


def index_options(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return the options that identify or distinguish an index, normalised."""
    options = {k: _number(v) for k, v in document.items() if k not in IGNORED_INDEX_FIELDS}
    for flag in FALSE_BY_DEFAULT:
        if not options.get(flag, False):
            options.pop(flag, None)
    return dict(sorted(options.items()))


def normalise_index(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{"key": pairs, "options": {...}}`` for comparing two index documents."""
    return {"key": index_key(document["key"]), "options": index_options(document)}


def declared_index(index: IndexSpec) -> dict[str, Any]:
    return normalise_index(index.document())


def _printable(normal: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": [list(pair) for pair in normal["key"]], "options": dict(normal["options"])}


def collection_option_changes(spec: CollectionSpec, options: Mapping[str, Any]) -> list[str]:
    """Name the collection options (validator, level, action) that differ from ``spec``."""
    changes = []
    if options.get("validator", {}) != spec.validator:
        changes.append("validator")
    if options.get("validationLevel", DEFAULT_LEVEL) != spec.validation_level:
        changes.append("validationLevel")
    if options.get("validationAction", DEFAULT_ACTION) != spec.validation_action:
        changes.append("validationAction")
    return changes


def _index_verdict(index: IndexSpec, existing: Sequence[Mapping[str, Any]]) -> Step | None:
    """Return the step one declared index needs (None when it is already there)."""
    wanted = declared_index(index)
    by_name = {doc["name"]: doc for doc in existing}
    current = by_name.get(index.name)
    if current is not None:
        found = normalise_index(current)
        if found == wanted:
            return None
        return _conflict(index.name, "same name, different key or options", found, wanted)
    for doc in existing:
        if index_key(doc["key"]) == wanted["key"]:
            reason = f"same key already indexed as {doc['name']!r}"
            return _conflict(index.name, reason, normalise_index(doc), wanted, doc["name"])
    return _create(index.name, wanted)


def _create(name: str, wanted: Mapping[str, Any]) -> Step:
    return Step(CREATE_INDEX, "", name, _printable(wanted))


def _conflict(
    name: str,
    reason: str,
    found: Mapping[str, Any],
    wanted: Mapping[str, Any],
    existing_name: str | None = None,
) -> Step:
    detail = {"reason": reason, "existing": _printable(found), "requested": _printable(wanted)}
    if existing_name:
        detail["existing_name"] = existing_name
    return Step(INDEX_CONFLICT, "", name, detail)


def plan_collection(spec: CollectionSpec, state: CollectionState) -> list[Step]:
    """Return the steps that bring one collection in line with ``spec``, in order."""
    steps: list[Step] = []
    if not state.exists:
        steps.append(Step(CREATE_COLLECTION, spec.name, detail={"options": _create_options(spec)}))
    else:
        changes = collection_option_changes(spec, state.options)
        if changes:
            detail = {"changes": changes, "options": _create_options(spec)}
            steps.append(Step(UPDATE_VALIDATOR, spec.name, detail=detail))
    existing = state.indexes if state.exists else ()
    for index in spec.indexes:
        step = _index_verdict(index, existing)
        if step is not None:
            steps.append(Step(step.action, spec.name, step.index, step.detail))
    return steps


def _create_options(spec: CollectionSpec) -> dict[str, Any]:
    return {
        "validator": spec.validator,
        "validationLevel": spec.validation_level,
        "validationAction": spec.validation_action,
    }


def drop_removed_indexes(
    before: CollectionSpec, after: CollectionSpec, state: CollectionState
) -> list[Step]:
    """Return the drops of indexes ``before`` declared, ``after`` does not, still present."""
    kept = {index.name for index in after.indexes}
    present = {document["name"] for document in state.indexes} if state.exists else set()
    return [
        Step(DROP_INDEX, after.name, index.name)
        for index in before.indexes
        if index.name not in kept and index.name in present
    ]


def restore_collection(
    before: CollectionSpec, after: CollectionSpec, state: CollectionState
) -> list[Step]:
    """Return the steps that undo a revision from ``before`` to ``after`` (nothing else).

    The validator and options go back to ``before``'s, indexes the revision
    added are dropped and those it removed are created again; an index the
    revision did not declare is left alone, and so is an absent collection.
    """
    if not state.exists:
        return []
    steps = plan_collection(before, state)  # collMod back, recreate removed indexes
    steps = [step for step in steps if step.action != INDEX_CONFLICT]
    return steps + drop_removed_indexes(after, before, state)


def after_step(state: CollectionState, step: Step) -> CollectionState:
    """Return what ``state`` becomes once ``step`` is applied (for planning ahead)."""
    if step.action == CREATE_COLLECTION:
        options = dict(step.detail.get("options", {}))
        return CollectionState(state.name, True, options, [dict(ID_INDEX)], 0)
    if step.action == DROP_COLLECTION:
        return CollectionState(state.name)
    if step.action == UPDATE_VALIDATOR:
        options = {**state.options, **step.detail.get("options", {})}
        return CollectionState(state.name, True, options, state.indexes, state.count)
    if step.action == CREATE_INDEX:
        document = index_document(str(step.index), step.detail)
        return CollectionState(state.name, True, state.options, [*state.indexes, document])
    if step.action == DROP_INDEX:
        kept = [doc for doc in state.indexes if doc["name"] != step.index]
        return CollectionState(state.name, True, state.options, kept, state.count)
    return state


def index_document(name: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    """Return the index a create-index step's detail describes, as the server lists it."""
    key = {str(field_): direction for field_, direction in detail["key"]}
    return {"name": name, "key": key, **dict(detail.get("options", {}))}


@dataclass(frozen=True)
class IndexDifference:
    """A declared index present under its name but with other keys or options."""

    name: str
    expected: Mapping[str, Any]
    actual: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "expected": dict(self.expected), "actual": dict(self.actual)}


@dataclass(frozen=True)
class CollectionStatus:
    """How one collection compares with its spec."""

    name: str
    exists: bool
    count: int
    validator_equal: bool
    options_equal: bool
    indexes_missing: list[str] = field(default_factory=list)
    indexes_extra: list[str] = field(default_factory=list)
    indexes_different: list[IndexDifference] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences()

    def differences(self) -> list[str]:
        """Return every difference as a human-readable line."""
        if not self.exists:
            return [f"{self.name}: collection missing"]
        lines = []
        if not self.validator_equal:
            lines.append(f"{self.name}: validator differs")
        if not self.options_equal:
            lines.append(f"{self.name}: validationLevel/validationAction differ")
        lines += [f"{self.name}: index {n} missing" for n in self.indexes_missing]
        lines += [f"{self.name}: unexpected index {n}" for n in self.indexes_extra]
        lines += [
            f"{self.name}: index {d.name} differs (expected {_brief(d.expected)}, "
            f"found {_brief(d.actual)})"
            for d in self.indexes_different
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exists": self.exists,
            "count": self.count,
            "validator_equal": self.validator_equal,
            "options_equal": self.options_equal,
            "indexes_missing": list(self.indexes_missing),
            "indexes_extra": list(self.indexes_extra),
            "indexes_different": [d.to_dict() for d in self.indexes_different],
            "matches": self.matches,
        }


def _brief(normal: Mapping[str, Any]) -> str:
    options = "".join(f" {k}={v}" for k, v in normal["options"].items())
    return format_key(normal["key"]) + options


def collection_status(spec: CollectionSpec, state: CollectionState) -> CollectionStatus:
    """Compare one collection's reported state with its spec."""
    if not state.exists:
        missing = [index.name for index in spec.indexes]
        return CollectionStatus(spec.name, False, 0, False, False, indexes_missing=missing)
    changes = collection_option_changes(spec, state.options)
    found = {doc["name"]: normalise_index(doc) for doc in state.indexes if doc["name"] != "_id_"}
    missing, different = [], []
    for index in spec.indexes:
        wanted = declared_index(index)
        if index.name not in found:
            missing.append(index.name)
        elif found[index.name] != wanted:
            different.append(
                IndexDifference(index.name, _printable(wanted), _printable(found[index.name]))
            )
    declared = {index.name for index in spec.indexes}
    extra = []
    # The one index beyond the schema that is not drift: the shard plan's own, exactly.
    # Any other (a unique ``shardkey_email`` would block other tenants' inserts) is.
    shard_index = shard_key_index(spec)
    for name, normal in found.items():
        if name in declared:
            continue
        if shard_index is not None and name == shard_index["name"]:
            wanted = {"key": index_key(shard_index["key"]), "options": {}}
            if normal != wanted:
                different.append(IndexDifference(name, _printable(wanted), _printable(normal)))
            continue
        extra.append(name)
    return CollectionStatus(
        spec.name,
        True,
        state.count,
        validator_equal="validator" not in changes,
        options_equal=not {"validationLevel", "validationAction"} & set(changes),
        indexes_missing=missing,
        indexes_extra=extra,
        indexes_different=different,
    )
