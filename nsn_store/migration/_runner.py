"""Apply, inspect and undo migration 0001: the collections, validators and indexes.

One ordered walk over the schema registry. ``init_schema`` follows the
idempotent recipe of mongodb-semantics.md §5: list the collections, create the
absent ones with their options, ``collMod`` the ones whose validator or
validation options differ, then create the missing indexes. An index that
exists under a declared name (or key) with other keys or options is a conflict:
``init`` refuses and never drops anything. ``plan``, ``schema_status`` and
``verify_schema`` only read.

Runs are serialised by :class:`~nsn_store.migration._lock.MigrationLock`, whose
lease is renewed in the background for as long as a run holds it, so a step
longer than the lease does not let a second run in. Each step is written
ahead, applied, then recorded, every write fenced:

1. the step is written to the record as ``pending`` (the record's updates
   filter on this run's fencing token, so a run that lost the record to a
   newer run writes nothing);
2. ``lock.fence()`` renews the lease, failing if another run took it over,
   immediately before the step's DDL;
3. the DDL runs;
4. ``lock.fence()`` again, then one update moves the step from ``pending``
   into ``steps`` and writes the next step as ``pending`` (its step 1).

If a run is interrupted between 3 and 4 (a lost reply, a crash), the effect
exists and the record says ``pending``. The next run reconciles first: a
pending step whose effect is present (it is no longer in the plan) is recorded
with ``reconciled: true``; one whose effect is absent is simply redone. So the
record lists each applied step once, and nothing is applied twice.

What is *not* guaranteed, because MongoDB runs DDL outside transactions: the
fence and the DDL after it are two operations. A run that stalls for a whole
lease (60 s, renewer included) exactly between them can apply that one step
after another run took over (the window is stated in
:mod:`nsn_store.migration._lock`). Records written by earlier versions of this
module (no ``pending`` field) cannot be reconciled: an interrupted run of
theirs may have left one applied step unrecorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from nsn_store.clock import Clock, SystemClock
from nsn_store.connection import describe_host
from nsn_store.errors import (
    DriftError,
    ExistingDataError,
    IndexConflictError,
    InvalidArgumentError,
    MigrationLockedError,
    translated,
)
from nsn_store.migration._diff import (
    CREATE_COLLECTION,
    CREATE_INDEX,
    UPDATE_VALIDATOR,
    CollectionState,
    Step,
    collection_status,
    plan_collection,
)
from nsn_store.migration._lock import LOCK_ID, MigrationLock, check_lock_timeout
from nsn_store.migration._results import (
    APPLIED,
    APPLYING,
    MIGRATIONS,
    DropResult,
    MigrationResult,
    StatusReport,
)
from nsn_store.schema._registry import MIGRATION_ID, SCHEMA, Schema, checksum

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 60.0

#: Progress callback: (step just applied, its 1-based position, total steps).
OnStep = Callable[[Step, int, int], None]

__all__ = ["drop_schema", "init_schema", "plan", "schema_status", "verify_schema"]


def plan(db: Database[Any], *, schema: Schema = SCHEMA) -> list[Step]:
    """Return the steps ``init_schema`` would take, in order, without writing."""
    schema = _check_schema(schema)
    states = _read_states(db, schema)
    pairs = zip(schema, states, strict=True)
    return [step for spec, state in pairs for step in plan_collection(spec, state)]


def init_schema(
    db: Database[Any],
    *,
    schema: Schema = SCHEMA,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    allow_moderate: bool = False,
    on_step: OnStep | None = None,
    clock: Clock | None = None,
) -> MigrationResult:
    """Bring ``db`` to migration 0001 and record it; write nothing when already there.

    Raises IndexConflictError (conflicting index), ExistingDataError (existing
    documents would fail a changed validator and ``allow_moderate`` is false),
    MigrationLockedError (another run holds the lock past ``lock_timeout``
    seconds, or took it over from this run, which then stops before writing
    anything more), ConnectionFailedError (the server went away; rerun to
    finish) and InvalidArgumentError (a bad argument, before any I/O).
    """
    timeout = check_lock_timeout(lock_timeout, "lock_timeout")
    schema = _check_schema(schema)
    clock = _check_clock(clock)
    if type(allow_moderate) is not bool:
        raise InvalidArgumentError(
            "allow_moderate must be True or False", argument="allow_moderate"
        )
    if on_step is not None and not callable(on_step):
        raise InvalidArgumentError("on_step must be callable or None", argument="on_step")
    digest = checksum(schema)
    host = describe_host(db)
    if not plan(db, schema=schema) and _settled(_read_record(db), digest):
        return MigrationResult(MIGRATION_ID, digest, host)  # the fast path writes nothing
    with MigrationLock(db[MIGRATIONS], clock=clock, timeout=timeout) as lock:
        steps = plan(db, schema=schema)  # again: another run may have done the work
        if not steps and _settled(_read_record(db), digest):
            return MigrationResult(MIGRATION_ID, digest, host)
        _refuse_conflicts(steps)
        moderated = _check_existing_data(db, schema, steps, allow_moderate)
        record = _Record(db, lock)
        lock.fence()
        previous = record.start(digest, host, clock.now())
        reconciled = record.reconcile(previous, steps, clock.now())
        entries = [_entry(step, moderated) for step in steps]
        if entries:
            record.write_pending(entries[0], clock.now())
        for position, step in enumerate(steps, 1):
            lock.fence()  # immediately before the DDL: stop if another run took over
            _apply(db, schema, step, moderated)
            lock.fence()
            # One update records this step and writes the next one ahead.
            following = entries[position] if position < len(entries) else None
            record.record_step(entries[position - 1], clock.now(), following)
            if on_step is not None:
                on_step(step, position, len(steps))
        lock.fence()
        record.finish(clock.now())
    if reconciled:
        log.info(
            "migration %s: recorded %d step(s) an interrupted run applied: %s",
            MIGRATION_ID,
            len(reconciled),
            ", ".join(s.describe() for s in reconciled),
        )
    log.info("migration %s applied %d steps on %s", MIGRATION_ID, len(steps), host)
    return MigrationResult(
        MIGRATION_ID, digest, host, steps, sorted(moderated), reconciled=reconciled
    )


def drop_schema(
    db: Database[Any],
    *,
    schema: Schema = SCHEMA,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Clock | None = None,
) -> DropResult:
    """Drop the schema's collections in reverse creation order and clear the record."""
    timeout = check_lock_timeout(lock_timeout, "lock_timeout")
    schema = _check_schema(schema)
    migrations = db[MIGRATIONS]
    lock = MigrationLock(migrations, clock=_check_clock(clock), timeout=timeout)
    with lock, translated():
        present = set(db.list_collection_names())
        dropped, absent = [], []
        for spec in reversed(schema):
            if spec.name in present:
                lock.fence()
                db.drop_collection(spec.name)
                dropped.append(spec.name)
            else:
                absent.append(spec.name)
        lock.fence()
        cleared = migrations.delete_one({"_id": MIGRATION_ID}).deleted_count == 1
    with translated(collection=MIGRATIONS):
        if migrations.count_documents({}) == 0:  # only the released lock was left
            db.drop_collection(MIGRATIONS)
    return DropResult(dropped, absent, cleared)


def schema_status(db: Database[Any], *, schema: Schema = SCHEMA) -> StatusReport:
    """Compare ``db`` with the schema: collections, counts, validators, indexes, record."""
    schema = _check_schema(schema)
    states = _read_states(db, schema, count=True)
    with translated(collection=MIGRATIONS):
        record = db[MIGRATIONS].find_one({"_id": MIGRATION_ID})
        lock = db[MIGRATIONS].find_one({"_id": LOCK_ID})
        names = db.list_collection_names()
    declared = set(schema.names)
    extra = sorted(
        n for n in names if n not in declared and n != MIGRATIONS and not n.startswith("system.")
    )
    return StatusReport(
        MIGRATION_ID,
        checksum(schema),
        [collection_status(spec, state) for spec, state in zip(schema, states, strict=True)],
        record=record,
        lock=lock,
        extra_collections=extra,
    )


def verify_schema(db: Database[Any], *, schema: Schema = SCHEMA) -> StatusReport:
    """Return the status when ``db`` matches the schema; else raise DriftError listing all."""
    report = schema_status(db, schema=schema)
    differences = report.differences()
    if differences:
        summary = "; ".join(differences)
        raise DriftError(
            f"{len(differences)} difference(s) from the schema: {summary}",
            differences=differences,
        )
    return report


def _read_states(
    db: Database[Any], schema: Sequence[Any], *, count: bool = False
) -> list[CollectionState]:
    with translated():
        infos = {info["name"]: info for info in db.list_collections()}
        return [_read_state(db, spec.name, infos.get(spec.name), count) for spec in schema]


def _read_state(
    db: Database[Any], name: str, info: Mapping[str, Any] | None, count: bool
) -> CollectionState:
    if info is None:
        return CollectionState(name)
    collection = db[name]
    indexes = list(collection.list_indexes())
    # From collection metadata: status must not read every document of a big collection.
    documents = collection.estimated_document_count() if count else 0
    return CollectionState(name, True, dict(info.get("options") or {}), indexes, documents)


def _check_schema(schema: Any) -> Schema:
    if not isinstance(schema, Schema):
        raise InvalidArgumentError(
            f"schema must be a Schema, not a value of type {type(schema).__name__}",
            argument="schema",
        )
    return schema


def _check_clock(clock: Any) -> Clock:
    if clock is None:
        return SystemClock()
    if not isinstance(clock, Clock):
        raise InvalidArgumentError("clock must have a now() method", argument="clock")
    return clock


def _read_record(db: Database[Any]) -> dict[str, Any] | None:
    with translated(collection=MIGRATIONS):
        record: dict[str, Any] | None = db[MIGRATIONS].find_one({"_id": MIGRATION_ID})
    return record


def _settled(record: Mapping[str, Any] | None, digest: str) -> bool:
    """True when the record says applied, with this checksum, and no step in flight."""
    if record is None:
        return False
    return bool(
        record.get("status") == APPLIED
        and record.get("checksum") == digest
        and not record.get("pending")
    )


def _refuse_conflicts(steps: list[Step]) -> None:
    conflicts = [step for step in steps if step.is_conflict]
    if not conflicts:
        return
    first = conflicts[0]
    others = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
    raise IndexConflictError(
        f"index {first.collection}.{first.index} conflicts: {first.detail['reason']}; "
        f"existing {first.detail['existing']}, declared {first.detail['requested']}{others}. "
        "init never drops an index: drop or rename it by hand, then run init again",
        collection=first.collection,
        index=first.index or "",
        existing=first.detail["existing"],
        requested=first.detail["requested"],
    )


def _check_existing_data(
    db: Database[Any], schema: Schema, steps: list[Step], allow_moderate: bool
) -> set[str]:
    """Return the collections to collMod with level "moderate"; raise if not allowed."""
    from nsn_store.migration._checkdata import find_violations

    moderated: set[str] = set()
    for step in steps:
        if step.action != UPDATE_VALIDATOR:
            continue
        spec = schema.get(step.collection)
        with translated(collection=spec.name):
            violations = find_violations(db[spec.name], spec.validator, sample=5)
        if violations.count == 0:
            continue
        if not allow_moderate:
            raise _existing_data_error(spec.name, violations)
        moderated.add(spec.name)
    return moderated


def _existing_data_error(name: str, violations: Any) -> ExistingDataError:
    ids = ", ".join(repr(sample.id) for sample in violations.samples)
    return ExistingDataError(
        f"{violations.count} existing document(s) in {name} would fail its new validator "
        f"(e.g. _id {ids}); nothing was changed. Fix them (nsn-store check-data lists them) "
        "or rerun with --allow-moderate to apply it with validationLevel 'moderate'",
        collection=name,
        failing=violations.count,
    )


def _apply(db: Database[Any], schema: Schema, step: Step, moderated: set[str]) -> None:
    spec = schema.get(step.collection)
    with translated(collection=spec.name):
        if step.action == CREATE_COLLECTION:
            db.create_collection(spec.name, **spec.create_options())
        elif step.action == UPDATE_VALIDATOR:
            options = spec.create_options()
            if spec.name in moderated:
                options["validationLevel"] = "moderate"
            db.command("collMod", spec.name, **options)
        elif step.action == CREATE_INDEX:
            index = next(ix for ix in spec.indexes if ix.name == step.index)
            db[spec.name].create_index(list(index.keys), name=index.name, **index.options())
        else:
            raise AssertionError(f"unexpected step {step.action}")  # conflicts were refused


def _entry(step: Step, moderated: set[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"action": step.action, "collection": step.collection}
    if step.index:
        entry["index"] = step.index
    if step.action == UPDATE_VALIDATOR and step.collection in moderated:
        entry["validationLevel"] = "moderate"
    return entry


def _triple(entry: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return (entry.get("action"), entry.get("collection"), entry.get("index"))


class _Record:
    """The migration record, written only by the run whose fencing token it carries.

    :meth:`start` stamps the record with this run's lock token; every later
    update filters on it, so the server refuses, atomically, any write from a
    run that a newer run has superseded (:class:`MigrationLockedError`).
    """

    def __init__(self, db: Database[Any], lock: MigrationLock) -> None:
        self.collection = db[MIGRATIONS]
        self.lock = lock
        assert lock.token is not None, "the record is written only with the lock held"
        self.token: str = lock.token

    def start(self, digest: str, host: str, now: datetime) -> dict[str, Any] | None:
        """Claim the record for this run (status ``applying``); return it as it was."""
        with translated(collection=MIGRATIONS):
            previous: dict[str, Any] | None = self.collection.find_one_and_update(
                {"_id": MIGRATION_ID},
                {
                    "$set": {
                        "checksum": digest,
                        "status": APPLYING,
                        "startedAt": now,
                        "host": host,
                        "lockToken": self.token,
                        "holder": self.lock.holder,
                    },
                    "$unset": {"appliedAt": ""},
                    "$setOnInsert": {"steps": []},
                },
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        return previous

    def reconcile(
        self, previous: Mapping[str, Any] | None, steps: list[Step], now: datetime
    ) -> list[Step]:
        """Settle the step an interrupted run left ``pending``; return it if it was applied.

        Its effect is present exactly when it is no longer in the plan: then it
        is recorded (``reconciled: true``). Otherwise it is redone by this run
        and recorded then, so only the marker is cleared here.
        """
        pending = (previous or {}).get("pending")
        if not isinstance(pending, Mapping):
            return []
        if _triple(pending) in {(s.action, s.collection, s.index) for s in steps}:
            self._update({"$unset": {"pending": ""}})
            return []
        entry = {k: v for k, v in pending.items() if k != "since"}
        self._update(
            {
                "$push": {"steps": {**entry, "at": now, "reconciled": True}},
                "$unset": {"pending": ""},
            }
        )
        action, collection, index = _triple(pending)
        return [Step(str(action), str(collection), index)]

    def write_pending(self, entry: Mapping[str, Any], now: datetime) -> None:
        """Write ahead: the step about to be applied, so an interruption is visible."""
        self._update({"$set": {"pending": {**entry, "since": now}}})

    def record_step(
        self, entry: Mapping[str, Any], now: datetime, following: Mapping[str, Any] | None
    ) -> None:
        """Append the applied step and write ``following`` ahead (or clear ``pending``).

        One update, so the record never shows a step both pending and recorded.
        """
        update: dict[str, Any] = {"$push": {"steps": {**entry, "at": now}}}
        if following is None:
            update["$unset"] = {"pending": ""}
        else:
            update["$set"] = {"pending": {**following, "since": now}}
        self._update(update)

    def finish(self, now: datetime) -> None:
        self._update({"$set": {"status": APPLIED, "appliedAt": now}})

    def _update(self, update: Mapping[str, Any]) -> None:
        with translated(collection=MIGRATIONS):
            result = self.collection.update_one(
                {"_id": MIGRATION_ID, "lockToken": self.token}, dict(update)
            )
        if result.matched_count == 0:
            with translated(collection=MIGRATIONS):
                lock = self.collection.find_one({"_id": LOCK_ID}) or {}
            holder = lock.get("holder")
            raise MigrationLockedError(
                f"{self.lock.holder} lost the migration record to another run "
                f"({holder or 'no lock holder now'}); stopped before writing anything more",
                holder=holder,
            )
