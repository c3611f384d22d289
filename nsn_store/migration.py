"""Apply, inspect and undo migration 0001: the collections, validators and indexes.

One ordered walk over the schema registry. ``init_schema`` follows the
idempotent recipe of mongodb-semantics.md §5: list the collections, create the
absent ones with their options, ``collMod`` the ones whose validator or
validation options differ, then create the missing indexes. An index that
exists under a declared name (or key) with other keys or options is a conflict:
``init`` refuses and never drops anything. Every applied step is appended to the
migration record in ``nsn_migrations`` as soon as it succeeds, so an
interrupted run leaves an accurate status and the next run finishes the job.
``plan``, ``schema_status`` and ``verify_schema`` only read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo.database import Database

from nsn_store.clock import Clock, SystemClock
from nsn_store.connection import describe_host
from nsn_store.errors import (
    DriftError,
    ExistingDataError,
    IndexConflictError,
    translated,
)
from nsn_store.migration_diff import (
    CREATE_COLLECTION,
    CREATE_INDEX,
    UPDATE_VALIDATOR,
    CollectionState,
    Step,
    collection_status,
    plan_collection,
)
from nsn_store.migration_lock import LOCK_ID, MigrationLock
from nsn_store.migration_results import (
    APPLIED,
    APPLYING,
    MIGRATIONS,
    DropResult,
    MigrationResult,
    StatusReport,
)
from nsn_store.schema import MIGRATION_ID, SCHEMA, Schema, checksum

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 60.0

#: Progress callback: (step just applied, its 1-based position, total steps).
OnStep = Callable[[Step, int, int], None]

__all__ = [
    "MIGRATIONS",
    "DropResult",
    "MigrationResult",
    "StatusReport",
    "Step",
    "drop_schema",
    "init_schema",
    "plan",
    "schema_status",
    "verify_schema",
]


def plan(db: Database[Any], *, schema: Schema = SCHEMA) -> list[Step]:
    """Return the steps ``init_schema`` would take, in order, without writing."""
    states = _read_states(db, schema)
    return [step for spec, state in zip(schema, states) for step in plan_collection(spec, state)]


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
    seconds) and ConnectionFailedError (the server went away; rerun to finish).
    """
    clock = clock or SystemClock()
    digest = checksum(schema)
    host = describe_host(db)
    if not plan(db, schema=schema) and _recorded(db, digest):
        return MigrationResult(MIGRATION_ID, digest, host)  # the fast path writes nothing
    with MigrationLock(db[MIGRATIONS], clock=clock, timeout=lock_timeout) as lock:
        steps = plan(db, schema=schema)  # again: another run may have done the work
        if not steps and _recorded(db, digest):
            return MigrationResult(MIGRATION_ID, digest, host)
        _refuse_conflicts(steps)
        moderated = _check_existing_data(db, schema, steps, allow_moderate)
        _start_record(db, digest, host, clock.now())
        for position, step in enumerate(steps, 1):
            _apply(db, schema, step, moderated)
            _record_step(db, step, clock.now(), moderated)
            lock.refresh()
            if on_step is not None:
                on_step(step, position, len(steps))
        _finish_record(db, clock.now())
    log.info("migration %s applied %d steps on %s", MIGRATION_ID, len(steps), host)
    return MigrationResult(MIGRATION_ID, digest, host, steps, sorted(moderated))


def drop_schema(
    db: Database[Any],
    *,
    schema: Schema = SCHEMA,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Clock | None = None,
) -> DropResult:
    """Drop the schema's collections in reverse creation order and clear the record."""
    migrations = db[MIGRATIONS]
    lock = MigrationLock(migrations, clock=clock or SystemClock(), timeout=lock_timeout)
    with lock, translated():
        present = set(db.list_collection_names())
        dropped, absent = [], []
        for spec in reversed(schema):
            if spec.name in present:
                db.drop_collection(spec.name)
                dropped.append(spec.name)
            else:
                absent.append(spec.name)
        cleared = migrations.delete_one({"_id": MIGRATION_ID}).deleted_count == 1
    with translated(collection=MIGRATIONS):
        if migrations.count_documents({}) == 0:  # only the released lock was left
            db.drop_collection(MIGRATIONS)
    return DropResult(dropped, absent, cleared)


def schema_status(db: Database[Any], *, schema: Schema = SCHEMA) -> StatusReport:
    """Compare ``db`` with the schema: collections, counts, validators, indexes, record."""
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
        [collection_status(spec, state) for spec, state in zip(schema, states)],
        record=record,
        lock=lock,
        extra_collections=extra,
    )


def verify_schema(db: Database[Any], *, schema: Schema = SCHEMA) -> StatusReport:
    """Return the status when ``db`` matches the schema; raise DriftError listing every difference."""
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


def _recorded(db: Database[Any], digest: str) -> bool:
    with translated(collection=MIGRATIONS):
        record = db[MIGRATIONS].find_one({"_id": MIGRATION_ID}, {"status": 1, "checksum": 1})
    if record is None:
        return False
    return bool(record.get("status") == APPLIED and record.get("checksum") == digest)


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
    from nsn_store.checkdata import find_violations

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


def _start_record(db: Database[Any], digest: str, host: str, now: datetime) -> None:
    with translated(collection=MIGRATIONS):
        db[MIGRATIONS].update_one(
            {"_id": MIGRATION_ID},
            {
                "$set": {"checksum": digest, "status": APPLYING, "startedAt": now, "host": host},
                "$unset": {"appliedAt": ""},
                "$setOnInsert": {"steps": []},
            },
            upsert=True,
        )


def _record_step(db: Database[Any], step: Step, now: datetime, moderated: set[str]) -> None:
    entry: dict[str, Any] = {"action": step.action, "collection": step.collection, "at": now}
    if step.index:
        entry["index"] = step.index
    if step.action == UPDATE_VALIDATOR and step.collection in moderated:
        entry["validationLevel"] = "moderate"
    with translated(collection=MIGRATIONS):
        db[MIGRATIONS].update_one({"_id": MIGRATION_ID}, {"$push": {"steps": entry}})


def _finish_record(db: Database[Any], now: datetime) -> None:
    with translated(collection=MIGRATIONS):
        db[MIGRATIONS].update_one(
            {"_id": MIGRATION_ID}, {"$set": {"status": APPLIED, "appliedAt": now}}
        )
