"""Walk the migration chain: upgrade, downgrade, drop, and the reads (plan, status, history).

Each operation is written once, as flows (:mod:`nsn_store._flow`), and runs on a
sync database (``init_schema(db)`` returns the result) or an async one (PyMongo
async, Motor, the embedded async client: ``await init_schema(db)``). The
runners make every driver call and translate driver errors.

Upgrading follows an idempotent recipe (MongoDB manual, db.createCollection
and createIndexes: https://www.mongodb.com/docs/manual/reference/command/createIndexes/) for each
migration of the chain in turn (see :mod:`nsn_store.migration._chain` for which
steps each migration takes): create the absent collections with their
options, ``collMod`` the ones whose validator or validation options differ,
then create the missing indexes. An index that exists under a declared name (or
key) with other keys or options is a conflict: the upgrade refuses and never
drops anything. Before a collMod the documents already stored are checked
against the new validator (the data check). ``plan``, ``schema_status``,
``verify_schema`` and ``history`` only read.

Runs are serialised by the migration lock (:mod:`nsn_store.migration._lock`),
whose lease is renewed in the background for as long as a run holds it, so a
step longer than the lease does not let a second run in. Each migration's
record (``nsn_migrations``, ``_id`` the migration id) is claimed by the run,
and each step is written ahead, applied, then recorded, every write fenced:

1. the step is written to the record as ``pending`` (the record's updates
   filter on this run's fencing token, so a run that lost the record to a
   newer run writes nothing);
2. the lock is fenced (its lease renewed, failing if another run took it
   over) immediately before the step's DDL;
3. the DDL runs;
4. the lock is fenced again, then one update moves the step from ``pending``
   into ``steps`` and writes the next step as ``pending`` (its step 1).

If a run is interrupted between 3 and 4 (a lost reply, a crash), the effect
exists and the record says ``pending``. The next run reconciles first: a
pending step whose effect is present (it is no longer in the plan) is recorded
with ``reconciled: true``; one whose effect is absent is simply redone. So the
record lists each applied step once, and nothing is applied twice.

A downgrade marks each migration it undoes ``reverting``, undoes it (steps
fenced the same way, computed from what exists, so an interrupted downgrade
simply runs again) and deletes its record.

What is *not* guaranteed, because MongoDB runs DDL outside transactions: the
fence and the DDL after it are two operations. A run that stalls for a whole
lease (60 s, renewer included) exactly between them can apply that one step
after another run took over (the window is stated in
:mod:`nsn_store.migration._lock`). Records written by earlier versions of this
module (no ``pending`` field) cannot be reconciled: an interrupted run of
theirs may have left one applied step unrecorded.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pymongo import ReturnDocument
from pymongo.database import Database

from nsn_store._flow import Flow, Op, run, run_async
from nsn_store.clock import Clock, SystemClock
from nsn_store.connection import describe_host
from nsn_store.errors import (
    DriftError,
    ExistingDataError,
    IndexConflictError,
    InvalidArgumentError,
    MigrationLockedError,
)
from nsn_store.migration._chain import MigrationPlan, plan_downgrade, plan_upgrade
from nsn_store.migration._checkdata import Violations, violations_flow
from nsn_store.migration._diff import (
    CREATE_COLLECTION,
    CREATE_INDEX,
    DROP_COLLECTION,
    DROP_INDEX,
    UPDATE_VALIDATOR,
    CollectionState,
    Step,
    collection_status,
)
from nsn_store.migration._lock import (
    LOCK_ID,
    AsyncMigrationLock,
    LockFlows,
    MigrationLock,
    check_lock_timeout,
)
from nsn_store.migration._results import (
    APPLIED,
    APPLYING,
    RECORDS,
    REVERTING,
    DowngradeResult,
    DropResult,
    History,
    HistoryEntry,
    MigrationResult,
    StatusReport,
)
from nsn_store.schema._registry import (
    BASE,
    MIGRATION_ID,
    MIGRATIONS,
    Migration,
    Migrations,
    Schema,
)

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from nsn_store.embedded._async import AsyncEmbeddedDatabase

    #: An async database (Motor's classes are untyped, so any value passes too).
    AsyncDb = AsyncDatabase[Any] | AsyncEmbeddedDatabase

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 60.0

#: Progress callback: (step just applied, its 1-based position, total steps).
OnStep = Callable[[Step, int, int], None]

R = TypeVar("R")

__all__ = [
    "downgrade",
    "downgrade_plan",
    "drop_schema",
    "history",
    "init_schema",
    "plan",
    "runs_async",
    "schema_status",
    "upgrade",
    "verify_schema",
]


def runs_async(db: Any) -> bool:
    """Tell whether ``db`` is an async database, whose calls return awaitables.

    PyMongo's ``AsyncDatabase`` and the embedded async client have coroutine
    methods; Motor's return futures, and its classes have ``get_io_loop``.
    """
    method = getattr(db, "list_collection_names", None)
    return inspect.iscoroutinefunction(method) or hasattr(type(db), "get_io_loop")


# ---------------------------------------------------------------- arguments


@dataclass(frozen=True)
class _Options:
    """The checked arguments of one operation (checked before any I/O)."""

    chain: Migrations
    target: int
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    allow_moderate: bool = False
    on_step: OnStep | None = None
    clock: Clock = SystemClock()  # noqa: RUF009 (stateless; every caller passes its own)

    @property
    def schema(self) -> Schema:
        """Return the collections as the target leaves them."""
        return self.chain.schema_at(self.target)

    @property
    def target_id(self) -> str:
        return self.chain[self.target - 1].id if self.target else BASE


def _options(
    *,
    schema: Any = None,
    migrations: Any = MIGRATIONS,
    target: Any = None,
    lock_timeout: Any = DEFAULT_LOCK_TIMEOUT,
    allow_moderate: Any = False,
    on_step: Any = None,
    clock: Any = None,
) -> _Options:
    chain = _check_chain(schema, migrations)
    timeout = check_lock_timeout(lock_timeout, "lock_timeout")
    if type(allow_moderate) is not bool:
        raise InvalidArgumentError(
            "allow_moderate must be True or False", argument="allow_moderate"
        )
    if on_step is not None and not callable(on_step):
        raise InvalidArgumentError("on_step must be callable or None", argument="on_step")
    position = chain.position(target)  # UnknownMigrationError names the target
    return _Options(chain, position, timeout, allow_moderate, on_step, _check_clock(clock))


def _check_chain(schema: Any, migrations: Any) -> Migrations:
    """Return the chain to walk: ``migrations``, or ``schema`` as its only migration."""
    if schema is not None:
        if not isinstance(schema, Schema):
            raise InvalidArgumentError(
                f"schema must be a Schema, not a value of type {type(schema).__name__}",
                argument="schema",
            )
        return Migrations([Migration(MIGRATION_ID, "a schema given", creates=tuple(schema))])
    if not isinstance(migrations, Migrations):
        raise InvalidArgumentError(
            f"migrations must be a Migrations chain, not {type(migrations).__name__}",
            argument="migrations",
        )
    return migrations


def _check_clock(clock: Any) -> Clock:
    if clock is None:
        return SystemClock()
    if not isinstance(clock, Clock):
        raise InvalidArgumentError("clock must have a now() method", argument="clock")
    return clock


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Snapshot:
    """What the database holds: each chain collection's state, the records, the lock."""

    states: dict[str, CollectionState]
    records: dict[str, dict[str, Any]]
    lock: dict[str, Any] | None
    names: list[str]


def _read_flow(chain: Migrations, *, count: bool = False) -> Flow[_Snapshot]:
    """Read every collection the chain declares, and ``nsn_migrations`` (one find)."""
    infos = {info["name"]: info for info in (yield Op("list_collections"))}
    declared = dict.fromkeys(name for m in chain for name in m.collections)
    states = {}
    for name in declared:
        states[name] = yield from _read_state(name, infos.get(name), count)
    documents = (yield Op("find", RECORDS, ({},))) if RECORDS in infos else []
    records = {str(doc["_id"]): dict(doc) for doc in documents if doc["_id"] != LOCK_ID}
    lock = next((dict(doc) for doc in documents if doc["_id"] == LOCK_ID), None)
    return _Snapshot(states, records, lock, sorted(infos))


def _read_state(name: str, info: Mapping[str, Any] | None, count: bool) -> Flow[CollectionState]:
    if info is None:
        return CollectionState(name)
    indexes = yield Op("list_indexes", name)
    # From collection metadata: status must not read every document of a big collection.
    documents = (yield Op("estimated_document_count", name)) if count else 0
    return CollectionState(name, True, dict(info.get("options") or {}), indexes, documents)


def _upgrade_plans(options: _Options, snapshot: _Snapshot) -> list[MigrationPlan]:
    return plan_upgrade(options.chain, options.target, snapshot.states, snapshot.records)


def _plan_flow(options: _Options) -> Flow[list[Step]]:
    snapshot = yield from _read_flow(options.chain)
    return [step for p in _upgrade_plans(options, snapshot) for step in p.steps]


def _status_flow(options: _Options) -> Flow[StatusReport]:
    snapshot = yield from _read_flow(options.chain, count=True)
    schema = options.schema
    reached = options.chain[: options.target]
    records = [(m.id, m.checksum, snapshot.records.get(m.id)) for m in reached]
    extra = [
        name
        for name in snapshot.names
        if name not in schema.names and name != RECORDS and not name.startswith("system.")
    ]
    reached_ids = {m.id for m in reached}
    newer = [(id_, rec) for id_, rec in sorted(snapshot.records.items()) if id_ not in reached_ids]
    head_id, head_sum, head_record = records[-1] if records else (BASE, "", None)
    return StatusReport(
        head_id,
        head_sum,
        [collection_status(spec, snapshot.states[spec.name]) for spec in schema],
        record=head_record,
        lock=snapshot.lock,
        extra_collections=extra,
        records=records,
        newer=newer,
    )


def _verify_flow(options: _Options) -> Flow[StatusReport]:
    report = yield from _status_flow(options)
    differences = report.differences()
    if differences:
        summary = "; ".join(differences)
        raise DriftError(
            f"{len(differences)} difference(s) from the schema: {summary}",
            differences=differences,
        )
    return report


def _history_flow(chain: Migrations) -> Flow[History]:
    snapshot = yield from _read_flow(chain)
    entries = [
        HistoryEntry(m.id, m.description, m.checksum, snapshot.records.get(m.id)) for m in chain
    ]
    for id_ in sorted(set(snapshot.records) - set(chain.ids)):  # written by a newer version
        record = snapshot.records[id_]
        entries.append(HistoryEntry(id_, "", str(record.get("checksum")), record, known=False))
    return History(entries, chain.head.id)


# ---------------------------------------------------------------- locked operations


class _Locked(Generic[R]):
    """An operation that writes: a read-only check, then the work under the lock."""

    def __init__(self, db: Any, options: _Options) -> None:
        self.db = db
        self.options = options

    def check(self) -> Flow[R | None]:
        """Return the result when there is nothing to do (no lock taken), else None."""
        return None
        yield  # a flow that makes no call

    def apply(self, lock: LockFlows) -> Flow[R]:
        raise NotImplementedError
        yield

    def after(self, result: R) -> Flow[R]:
        """Run once the lock is released (drop removes ``nsn_migrations`` there)."""
        return result
        yield


def _execute(db: Any, operation: _Locked[R]) -> R | Coroutine[Any, Any, R]:
    return _execute_async(db, operation) if runs_async(db) else _execute_sync(db, operation)


def _execute_sync(db: Any, operation: _Locked[R]) -> R:
    done = run(db, operation.check())
    if done is not None:
        return done
    options = operation.options
    with MigrationLock(db[RECORDS], clock=options.clock, timeout=options.lock_timeout) as lock:
        result = run(db, operation.apply(lock))
    return run(db, operation.after(result))


async def _execute_async(db: Any, operation: _Locked[R]) -> R:
    done = await run_async(db, operation.check())
    if done is not None:
        return done
    options = operation.options
    lock = AsyncMigrationLock(db[RECORDS], clock=options.clock, timeout=options.lock_timeout)
    async with lock:
        result = await run_async(db, operation.apply(lock))
    return await run_async(db, operation.after(result))


def _reads(db: Any, flow: Flow[R]) -> R | Coroutine[Any, Any, R]:
    return run_async(db, flow) if runs_async(db) else run(db, flow)


class _Upgrade(_Locked[MigrationResult]):
    def check(self) -> Flow[MigrationResult | None]:
        snapshot = yield from _read_flow(self.options.chain)
        plans = _upgrade_plans(self.options, snapshot)
        return self._result() if _up_to_date(plans) else None  # the fast path writes nothing

    def apply(self, lock: LockFlows) -> Flow[MigrationResult]:
        snapshot = yield from _read_flow(self.options.chain)  # again: another run may be done
        plans = _upgrade_plans(self.options, snapshot)
        if _up_to_date(plans):
            return self._result()
        steps = [step for p in plans for step in p.steps]
        _refuse_conflicts(steps)
        moderated = yield from _check_existing_data(steps, self.options.allow_moderate)
        progress = _Progress(self.options.on_step, len(steps))
        host = describe_host(self.db)
        applied, reconciled = [], []
        for migration_plan in plans:
            if migration_plan.settled and not migration_plan.steps:
                continue  # applied and intact: not touched
            record = _Record(migration_plan.id, lock)
            reconciled += yield from _apply_plan(record, migration_plan, moderated, host, progress)
            applied.append((migration_plan.id, migration_plan.migration.checksum))
        _log_applied(applied, reconciled, progress.done, host)
        return self._result(host, progress.done, sorted(moderated), reconciled, applied)

    def _result(
        self,
        host: str | None = None,
        steps: list[Step] | None = None,
        moderated: list[str] | None = None,
        reconciled: list[Step] | None = None,
        applied: list[tuple[str, str]] | None = None,
    ) -> MigrationResult:
        target = self.options.chain[self.options.target - 1]
        return MigrationResult(
            target.id,
            target.checksum,
            describe_host(self.db) if host is None else host,
            steps or [],
            moderated or [],
            reconciled=reconciled or [],
            applied=applied or [],
        )


def _up_to_date(plans: list[MigrationPlan]) -> bool:
    return all(p.settled and not p.steps for p in plans)


class _Progress:
    """Counts applied steps across migrations and reports each to ``on_step``."""

    def __init__(self, on_step: OnStep | None, total: int) -> None:
        self.on_step = on_step
        self.total = total
        self.done: list[Step] = []

    def applied(self, step: Step) -> None:
        self.done.append(step)
        if self.on_step is not None:
            self.on_step(step, len(self.done), self.total)


def _apply_plan(
    record: _Record, plan: MigrationPlan, moderated: set[str], host: str, progress: _Progress
) -> Flow[list[Step]]:
    """Apply one migration's steps, each written ahead and recorded; return the reconciled."""
    clock, lock = record.lock.clock, record.lock
    yield from lock.fence_flow()
    previous = yield from record.start(plan.migration.checksum, host, clock.now())
    reconciled = yield from record.reconcile(previous, list(plan.steps), clock.now())
    entries = [_entry(step, moderated) for step in plan.steps]
    if entries:
        yield from record.write_pending(entries[0], clock.now())
    for position, step in enumerate(plan.steps, 1):
        yield from lock.fence_flow()  # immediately before the DDL: stop if another run took over
        yield from _apply_step(step, moderated)
        yield from lock.fence_flow()
        # One update records this step and writes the next one ahead.
        following = entries[position] if position < len(entries) else None
        yield from record.record_step(entries[position - 1], clock.now(), following)
        progress.applied(step)
    yield from lock.fence_flow()
    yield from record.finish(clock.now())
    return reconciled


def _log_applied(
    applied: list[tuple[str, str]], reconciled: list[Step], steps: list[Step], host: str
) -> None:
    if reconciled:
        log.info(
            "recorded %d step(s) an interrupted run applied: %s",
            len(reconciled),
            ", ".join(f"{s.migration} {s.describe()}" for s in reconciled),
        )
    for migration_id, _ in applied:
        count = sum(1 for step in steps if step.migration == migration_id)
        log.info("migration %s applied %d steps on %s", migration_id, count, host)


class _Downgrade(_Locked[DowngradeResult]):
    def check(self) -> Flow[DowngradeResult | None]:
        snapshot = yield from _read_flow(self.options.chain)
        plans = self._plans(snapshot)
        return None if plans else self._result([], [], [])

    def apply(self, lock: LockFlows) -> Flow[DowngradeResult]:
        snapshot = yield from _read_flow(self.options.chain)
        plans = self._plans(snapshot)
        if not plans:
            return self._result([], [], [])
        steps = [step for p in plans for step in p.steps]
        moderated = yield from _check_existing_data(steps, self.options.allow_moderate)
        progress = _Progress(self.options.on_step, len(steps))
        host = describe_host(self.db)
        for migration_plan in plans:  # newest first
            record = _Record(migration_plan.id, lock)
            yield from lock.fence_flow()
            yield from record.start_revert(host, self.options.clock.now())
            for step in migration_plan.steps:
                yield from lock.fence_flow()
                yield from _apply_step(step, moderated)
                progress.applied(step)
            yield from lock.fence_flow()
            yield from record.delete()
            log.info("migration %s reverted on %s", migration_plan.id, host)
        reverted = [p.id for p in plans]
        return self._result(reverted, progress.done, sorted(moderated), host)

    def _plans(self, snapshot: _Snapshot) -> list[MigrationPlan]:
        options = self.options
        return plan_downgrade(options.chain, options.target, snapshot.states, snapshot.records)

    def _result(
        self, reverted: list[str], steps: list[Step], moderated: list[str], host: str | None = None
    ) -> DowngradeResult:
        host = describe_host(self.db) if host is None else host
        return DowngradeResult(self.options.target_id, host, reverted, steps, moderated)


class _Drop(_Locked[DropResult]):
    def apply(self, lock: LockFlows) -> Flow[DropResult]:
        present = set((yield Op("list_collection_names")))
        dropped, absent = [], []
        for spec in reversed(self.options.schema):
            if spec.name in present:
                yield from lock.fence_flow()
                yield Op("drop_collection", "", (spec.name,))
                dropped.append(spec.name)
            else:
                absent.append(spec.name)
        yield from lock.fence_flow()
        ids = list(self.options.chain.ids)
        deleted = yield Op("delete_many", RECORDS, ({"_id": {"$in": ids}},))
        return DropResult(dropped, absent, deleted.deleted_count >= 1)

    def after(self, result: DropResult) -> Flow[DropResult]:
        if (yield Op("count_documents", RECORDS, ({},))) == 0:  # only the released lock was left
            yield Op("drop_collection", "", (RECORDS,))
        return result


# ---------------------------------------------------------------- steps


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


def _check_existing_data(steps: Iterable[Step], allow_moderate: bool) -> Flow[set[str]]:
    """Return the collections to collMod with level "moderate"; raise if not allowed."""
    moderated: set[str] = set()
    for step in steps:
        if step.action != UPDATE_VALIDATOR:
            continue
        validator = step.detail["options"]["validator"]
        violations = yield from violations_flow(step.collection, validator, sample=5)
        if violations.count == 0:
            continue
        if not allow_moderate:
            raise _existing_data_error(step.collection, violations)
        moderated.add(step.collection)
    return moderated


def _existing_data_error(name: str, violations: Violations) -> ExistingDataError:
    ids = ", ".join(repr(sample.id) for sample in violations.samples)
    return ExistingDataError(
        f"{violations.count} existing document(s) in {name} would fail its new validator "
        f"(e.g. _id {ids}); nothing was changed. Fix them (nsn-store check-data lists them) "
        "or rerun with --allow-moderate to apply it with validationLevel 'moderate'",
        collection=name,
        failing=violations.count,
    )


def _apply_step(step: Step, moderated: set[str]) -> Flow[None]:
    """Make the one driver call a step needs; its detail carries the options."""
    name = step.collection
    if step.action == CREATE_COLLECTION:
        yield Op("create_collection", "", (name,), dict(step.detail["options"]))
    elif step.action == UPDATE_VALIDATOR:
        options = dict(step.detail["options"])
        if name in moderated:
            options["validationLevel"] = "moderate"
        yield Op("command", "", ("collMod", name), options)
    elif step.action == CREATE_INDEX:
        keys = [(str(field), direction) for field, direction in step.detail["key"]]
        yield Op("create_index", name, (keys,), {"name": step.index, **step.detail["options"]})
    elif step.action == DROP_INDEX:
        yield Op("drop_index", name, (step.index,))
    elif step.action == DROP_COLLECTION:
        yield Op("drop_collection", "", (name,))
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
    """One migration's record, written only by the run whose fencing token it carries.

    :meth:`start` stamps the record with this run's lock token; every later
    update filters on it, so the server refuses, atomically, any write from a
    run that a newer run has superseded (:class:`MigrationLockedError`).
    """

    def __init__(self, migration_id: str, lock: LockFlows) -> None:
        assert lock.token is not None, "the record is written only with the lock held"
        self.id = migration_id
        self.lock = lock
        self.token: str = lock.token

    def start(self, digest: str, host: str, now: datetime) -> Flow[dict[str, Any] | None]:
        """Claim the record for this run (status ``applying``); return it as it was."""
        update = {
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
        }
        options = {"upsert": True, "return_document": ReturnDocument.BEFORE}
        previous: dict[str, Any] | None = yield Op(
            "find_one_and_update", RECORDS, ({"_id": self.id}, update), options
        )
        return previous

    def start_revert(self, host: str, now: datetime) -> Flow[None]:
        """Claim the record for a downgrade: status ``reverting`` until it is deleted."""
        stamp = {
            "status": REVERTING,
            "revertingSince": now,
            "host": host,
            "lockToken": self.token,
            "holder": self.lock.holder,
        }
        yield Op("update_one", RECORDS, ({"_id": self.id}, {"$set": stamp}))

    def reconcile(
        self, previous: Mapping[str, Any] | None, steps: list[Step], now: datetime
    ) -> Flow[list[Step]]:
        """Settle the step an interrupted run left ``pending``; return it if it was applied.

        Its effect is present exactly when it is no longer in the plan: then it
        is recorded (``reconciled: true``). Otherwise it is redone by this run
        and recorded then, so only the marker is cleared here.
        """
        pending = (previous or {}).get("pending")
        if not isinstance(pending, Mapping):
            return []
        if _triple(pending) in {step.triple() for step in steps}:
            yield from self._update({"$unset": {"pending": ""}})
            return []
        entry = {k: v for k, v in pending.items() if k != "since"}
        yield from self._update(
            {
                "$push": {"steps": {**entry, "at": now, "reconciled": True}},
                "$unset": {"pending": ""},
            }
        )
        action, collection, index = _triple(pending)
        return [Step(str(action), str(collection), index, migration=self.id)]

    def write_pending(self, entry: Mapping[str, Any], now: datetime) -> Flow[None]:
        """Write ahead: the step about to be applied, so an interruption is visible."""
        yield from self._update({"$set": {"pending": {**entry, "since": now}}})

    def record_step(
        self, entry: Mapping[str, Any], now: datetime, following: Mapping[str, Any] | None
    ) -> Flow[None]:
        """Append the applied step and write ``following`` ahead (or clear ``pending``).

        One update, so the record never shows a step both pending and recorded.
        """
        update: dict[str, Any] = {"$push": {"steps": {**entry, "at": now}}}
        if following is None:
            update["$unset"] = {"pending": ""}
        else:
            update["$set"] = {"pending": {**following, "since": now}}
        yield from self._update(update)

    def finish(self, now: datetime) -> Flow[None]:
        yield from self._update({"$set": {"status": APPLIED, "appliedAt": now}})

    def delete(self) -> Flow[None]:
        """Remove the record (the migration is undone), if this run still owns it."""
        result = yield Op("delete_one", RECORDS, (self._mine(),))
        if result.deleted_count == 0:
            raise (yield from self._lost())

    def _update(self, update: Mapping[str, Any]) -> Flow[None]:
        result = yield Op("update_one", RECORDS, (self._mine(), dict(update)))
        if result.matched_count == 0:
            raise (yield from self._lost())

    def _mine(self) -> dict[str, Any]:
        return {"_id": self.id, "lockToken": self.token}

    def _lost(self) -> Flow[MigrationLockedError]:
        lock = (yield Op("find_one", RECORDS, ({"_id": LOCK_ID},))) or {}
        holder = lock.get("holder")
        return MigrationLockedError(
            f"{self.lock.holder} lost the record of {self.id} to another run "
            f"({holder or 'no lock holder now'}); stopped before writing anything more",
            holder=holder,
        )


# ---------------------------------------------------------------- public entry points


@overload
def upgrade(
    db: Database[Any],
    target: str | None = None,
    *,
    migrations: Migrations = ...,
    lock_timeout: float = ...,
    allow_moderate: bool = ...,
    on_step: OnStep | None = ...,
    clock: Clock | None = ...,
) -> MigrationResult: ...


@overload
def upgrade(
    db: AsyncDb,
    target: str | None = None,
    *,
    migrations: Migrations = ...,
    lock_timeout: float = ...,
    allow_moderate: bool = ...,
    on_step: OnStep | None = ...,
    clock: Clock | None = ...,
) -> Coroutine[Any, Any, MigrationResult]: ...


def upgrade(
    db: Any,
    target: str | None = None,
    *,
    migrations: Migrations = MIGRATIONS,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    allow_moderate: bool = False,
    on_step: OnStep | None = None,
    clock: Clock | None = None,
) -> Any:
    """Apply the migrations up to ``target`` (default: the newest) and record each one.

    ``target`` is a migration id, a unique prefix of one ("0002") or "head".
    Migrations already applied are left untouched; an upgrade never goes back
    (see :func:`downgrade`). On an async database this returns a coroutine.

    Raises IndexConflictError (conflicting index), ExistingDataError (existing
    documents would fail a changed validator and ``allow_moderate`` is false),
    MigrationLockedError (another run holds the lock past ``lock_timeout``
    seconds, or took it over from this run, which then stops before writing
    anything more), ConnectionFailedError (the server went away; rerun to
    finish) and InvalidArgumentError (a bad argument, before any I/O).
    """
    options = _options(
        migrations=migrations,
        target=target,
        lock_timeout=lock_timeout,
        allow_moderate=allow_moderate,
        on_step=on_step,
        clock=clock,
    )
    _refuse_base(options, "upgrade")
    return _execute(db, _Upgrade(db, options))


@overload
def init_schema(
    db: Database[Any],
    *,
    schema: Schema | None = None,
    lock_timeout: float = ...,
    allow_moderate: bool = ...,
    on_step: OnStep | None = ...,
    clock: Clock | None = ...,
) -> MigrationResult: ...


@overload
def init_schema(
    db: AsyncDb,
    *,
    schema: Schema | None = None,
    lock_timeout: float = ...,
    allow_moderate: bool = ...,
    on_step: OnStep | None = ...,
    clock: Clock | None = ...,
) -> Coroutine[Any, Any, MigrationResult]: ...


def init_schema(
    db: Any,
    *,
    schema: Schema | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    allow_moderate: bool = False,
    on_step: OnStep | None = None,
    clock: Clock | None = None,
) -> Any:
    """Bring ``db`` to the newest migration, recording each one; write nothing when there.

    :func:`upgrade` to the head (a database at 0001 gets 0002 without anything
    of 0001 being touched). ``schema``, for tools and tests, applies that
    schema as the only migration instead of the chain. Raises as :func:`upgrade`.
    On an async database this returns a coroutine.
    """
    options = _options(
        schema=schema,
        lock_timeout=lock_timeout,
        allow_moderate=allow_moderate,
        on_step=on_step,
        clock=clock,
    )
    return _execute(db, _Upgrade(db, options))


@overload
def downgrade(
    db: Database[Any],
    target: str,
    *,
    migrations: Migrations = ...,
    lock_timeout: float = ...,
    allow_moderate: bool = ...,
    on_step: OnStep | None = ...,
    clock: Clock | None = ...,
) -> DowngradeResult: ...


@overload
def downgrade(
    db: AsyncDb,
    target: str,
    *,
    migrations: Migrations = ...,
    lock_timeout: float = ...,
    allow_moderate: bool = ...,
    on_step: OnStep | None = ...,
    clock: Clock | None = ...,
) -> Coroutine[Any, Any, DowngradeResult]: ...


def downgrade(
    db: Any,
    target: str,
    *,
    migrations: Migrations = MIGRATIONS,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    allow_moderate: bool = False,
    on_step: OnStep | None = None,
    clock: Clock | None = None,
) -> Any:
    """Undo, newest first, every recorded migration newer than ``target``.

    ``target`` is a migration id, a unique prefix of one, or "base" (undo them
    all). Each migration undone drops the collections it created and restores
    the spec of those it revised (validator, options, indexes); documents in
    the dropped collections are gone. Its record is deleted. Before a
    validator is restored, the stored documents are checked against it, as an
    upgrade does (``allow_moderate`` as there). Raises as :func:`upgrade`. On
    an async database this returns a coroutine.
    """
    if target is None:
        raise InvalidArgumentError(
            "downgrade needs a target: a migration id or 'base'", argument="target"
        )
    options = _options(
        migrations=migrations,
        target=target,
        lock_timeout=lock_timeout,
        allow_moderate=allow_moderate,
        on_step=on_step,
        clock=clock,
    )
    return _execute(db, _Downgrade(db, options))


def _refuse_base(options: _Options, operation: str) -> None:
    if options.target == 0:
        raise InvalidArgumentError(
            f"{operation} needs a migration to reach, not base", argument="target"
        )


@overload
def drop_schema(
    db: Database[Any],
    *,
    schema: Schema | None = None,
    lock_timeout: float = ...,
    clock: Clock | None = ...,
) -> DropResult: ...


@overload
def drop_schema(
    db: AsyncDb,
    *,
    schema: Schema | None = None,
    lock_timeout: float = ...,
    clock: Clock | None = ...,
) -> Coroutine[Any, Any, DropResult]: ...


def drop_schema(
    db: Any,
    *,
    schema: Schema | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Clock | None = None,
) -> Any:
    """Drop every collection of the chain in reverse creation order and clear the records."""
    options = _options(schema=schema, lock_timeout=lock_timeout, clock=clock)
    return _execute(db, _Drop(db, options))


@overload
def plan(
    db: Database[Any],
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = ...,
) -> list[Step]: ...


@overload
def plan(
    db: AsyncDb,
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = ...,
) -> Coroutine[Any, Any, list[Step]]: ...


def plan(
    db: Any,
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = MIGRATIONS,
) -> Any:
    """Return the steps an upgrade to ``target`` would take, in order, without writing.

    Each step names its migration (``step.migration``).
    """
    options = _options(schema=schema, migrations=migrations, target=target)
    return _reads(db, _plan_flow(options))


def _downgrade_plan_flow(options: _Options) -> Flow[list[tuple[str, list[Step]]]]:
    snapshot = yield from _read_flow(options.chain)
    plans = plan_downgrade(options.chain, options.target, snapshot.states, snapshot.records)
    return [(p.id, list(p.steps)) for p in plans]


@overload
def downgrade_plan(
    db: Database[Any], target: str, *, migrations: Migrations = ...
) -> list[tuple[str, list[Step]]]: ...


@overload
def downgrade_plan(
    db: AsyncDb, target: str, *, migrations: Migrations = ...
) -> Coroutine[Any, Any, list[tuple[str, list[Step]]]]: ...


def downgrade_plan(db: Any, target: str, *, migrations: Migrations = MIGRATIONS) -> Any:
    """Return what a downgrade to ``target`` would undo, without writing.

    One ``(migration id, steps)`` pair per recorded migration newer than
    ``target``, newest first; a migration whose collections are already gone
    has no steps but would still be reverted (its record deleted).
    """
    options = _options(migrations=migrations, target=target)
    return _reads(db, _downgrade_plan_flow(options))


@overload
def schema_status(
    db: Database[Any],
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = ...,
) -> StatusReport: ...


@overload
def schema_status(
    db: AsyncDb,
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = ...,
) -> Coroutine[Any, Any, StatusReport]: ...


def schema_status(
    db: Any,
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = MIGRATIONS,
) -> Any:
    """Compare ``db`` with the schema at ``target`` (default: the head).

    Collections, counts, validators, indexes, and each migration's record.
    """
    options = _options(schema=schema, migrations=migrations, target=target)
    return _reads(db, _status_flow(options))


@overload
def verify_schema(
    db: Database[Any],
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = ...,
) -> StatusReport: ...


@overload
def verify_schema(
    db: AsyncDb,
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = ...,
) -> Coroutine[Any, Any, StatusReport]: ...


def verify_schema(
    db: Any,
    *,
    schema: Schema | None = None,
    target: str | None = None,
    migrations: Migrations = MIGRATIONS,
) -> Any:
    """Return the status when ``db`` matches the schema at ``target``; else raise DriftError."""
    options = _options(schema=schema, migrations=migrations, target=target)
    return _reads(db, _verify_flow(options))


@overload
def history(db: Database[Any], *, migrations: Migrations = ...) -> History: ...


@overload
def history(db: AsyncDb, *, migrations: Migrations = ...) -> Coroutine[Any, Any, History]: ...


def history(db: Any, *, migrations: Migrations = MIGRATIONS) -> Any:
    """Return each migration of the chain, oldest first: applied or not, when, where.

    Records of migrations this version does not declare (a newer version wrote
    them) come last, marked ``known=False``.
    """
    return _reads(db, _history_flow(_check_chain(None, migrations)))
