"""Issue 9, mechanism 6: a migration lock that cannot lapse mid-step.

A step may run longer than the lock's lease (a large index build, the data
check), so the lease is renewed in the background while it runs; every write
of a run is fenced, so a run whose lease was taken over stops before writing
anything more; and a run interrupted between a step's effect and its record is
reconciled by the next ``init``, so the record lists every step exactly once.

Time is a ``ManualClock`` moved by the tests (no real 60 s waits); slow steps
and faults are injected by wrapping the database.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from _chain_kit import fresh_steps
from pymongo.errors import AutoReconnect

from nsn_store.errors import (
    ConnectionFailedError,
    ExistingDataError,
    InvalidArgumentError,
    MigrationLockedError,
)
from nsn_store.migration._diff import CREATE_COLLECTION, CREATE_INDEX, UPDATE_VALIDATOR
from nsn_store.migration._lock import LOCK_ID, MigrationLock
from nsn_store.migration._results import MIGRATIONS
from nsn_store.migration._runner import drop_schema, init_schema, schema_status, verify_schema
from nsn_store.schema._models import Tenant
from nsn_store.schema._registry import MIGRATION_ID
from nsn_store.schema._registry import MIGRATIONS as CHAIN

LEASE = timedelta(seconds=60)  # the default lease of init's lock
# What init does on an empty database: each migration of the chain in turn.
ALL_STEPS = [(action, collection, index) for action, collection, index, _ in fresh_steps()]
TOTAL_STEPS = len(ALL_STEPS)
INDEXES = sum(action == CREATE_INDEX for action, _, _ in ALL_STEPS)  # create_index calls
DDL = frozenset({"create_collection", "create_index", "command"})
OTHER_HOLDER = "other-host:7:beef"


# ------------------------------------------------------------------ injection


@dataclass
class Call:
    """One hooked driver call: which method, on which collection, and how to run it."""

    method: str
    collection: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    proceed: Callable[[], Any]

    def step(self) -> tuple[str, str, str | None] | None:
        """The migration step this DDL call performs, as (action, collection, index)."""
        if self.method == "create_collection":
            return (CREATE_COLLECTION, self.args[0], None)
        if self.method == "create_index":
            return (CREATE_INDEX, str(self.collection), self.kwargs.get("name"))
        if self.method == "command" and self.args[:1] == ("collMod",):
            return (UPDATE_VALIDATOR, self.args[1], None)
        return None


Hook = Callable[[Call], Any]
HOOKED = DDL | {"update_one", "count_documents"}


class _HookedCollection:
    def __init__(self, collection: Any, hook: Hook) -> None:
        self._collection = collection
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in HOOKED:
            return attribute
        collection = self._collection.name

        def hooked(*args: Any, **kwargs: Any) -> Any:
            return self._hook(
                Call(name, collection, args, kwargs, lambda: attribute(*args, **kwargs))
            )

        return hooked


class HookedDatabase:
    """Proxy a database so that its DDL and some collection calls go through ``hook``."""

    def __init__(self, db: Any, hook: Hook) -> None:
        self._db = db
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._db, name)
        if name not in HOOKED:
            return attribute

        def hooked(*args: Any, **kwargs: Any) -> Any:
            return self._hook(Call(name, None, args, kwargs, lambda: attribute(*args, **kwargs)))

        return hooked

    def __getitem__(self, name: str) -> _HookedCollection:
        return _HookedCollection(self._db[name], self._hook)


def _lock_document(db: Any) -> dict[str, Any] | None:
    document: dict[str, Any] | None = db[MIGRATIONS].find_one({"_id": LOCK_ID})
    return document


def _wait(condition: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def _let_time_pass(db: Any, clock: Any, total: timedelta) -> bool:
    """Move the clock by ``total`` in half-lease strides, as real time would pass.

    After each stride the lease has at most half of it left unless the holder
    renewed it meanwhile; give the holder's renewal (a second of real time) a
    chance to happen, as it would during the stride. Return False when it did not.
    """
    stride = LEASE / 2
    renewed = True
    for _ in range(int(total / stride)):
        clock.advance(stride)

        def lease_was_renewed() -> bool:
            lock = _lock_document(db)
            return lock is not None and lock["expiresAt"] - clock.now() > stride

        renewed = _wait(lease_was_renewed, 1.0)
        if not renewed:
            break
    return renewed


def _recorded_steps(db: Any) -> list[tuple[str, str, str | None]]:
    """Every step the records list, migration by migration."""
    records = [db[MIGRATIONS].find_one({"_id": id_}) or {"steps": []} for id_ in CHAIN.ids]
    return [(s["action"], s["collection"], s.get("index")) for r in records for s in r["steps"]]


def _renewer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nsn-migration-lease")]


# ------------------------------------------------------- a step longer than the lease


def _slow_index_build(db: Any, clock: Any, inside: Callable[[], None]) -> Hook:
    seen = {"indexes": 0}

    def hook(call: Call) -> Any:
        if call.method == "create_index":
            seen["indexes"] += 1
            if seen["indexes"] == 5:  # a large index build: two leases long
                inside()
        return call.proceed()

    return hook


def _slow_data_check(db: Any, clock: Any, inside: Callable[[], None]) -> Hook:
    def hook(call: Call) -> Any:
        if call.method == "count_documents" and call.collection == "tenants":
            inside()  # the existing-data check of a big collection
        return call.proceed()

    return hook


@pytest.mark.parametrize(
    "slow", [_slow_index_build, _slow_data_check], ids=["index-build", "data-check"]
)
def test_a_step_longer_than_the_lease_does_not_let_a_second_init_in(
    db: Any, clock: Any, slow: Callable[..., Hook]
) -> None:
    # A collection created before any validator, with a valid document: init
    # collMods it, and checks its existing documents first.
    db.create_collection("tenants")
    tenant = Tenant(name="Acme", clerkOrgId="org_1", createdAt=clock.now())
    db.tenants.insert_one(tenant.to_document())
    second: list[Any] = []

    def inside_the_step() -> None:
        second.append(_let_time_pass(db, clock, 2 * LEASE))
        try:
            second.append(init_schema(db, lock_timeout=0.1, clock=clock))
        except MigrationLockedError as exc:
            second.append(exc)

    result = init_schema(
        HookedDatabase(db, slow(db, clock, inside_the_step)),  # type: ignore[arg-type]
        clock=clock,
    )
    renewed, outcome = second
    assert renewed, "the lease was not renewed while the step ran"
    assert isinstance(outcome, MigrationLockedError), f"a second init ran inside: {outcome}"
    assert outcome.holder and outcome.holder in str(outcome)
    # The first run applied and recorded every step, each once; nobody else did.
    assert Counter(_recorded_steps(db)) == Counter(
        (s.action, s.collection, s.index) for s in result.steps
    )
    assert len(result.steps) == TOTAL_STEPS
    verify_schema(db)
    assert _lock_document(db) is None and _renewer_threads() == []


# ------------------------------------------------------------ fenced writes


def test_a_holder_whose_lease_was_taken_over_writes_nothing_more(db: Any, clock: Any) -> None:
    snapshot: dict[str, Any] = {}
    after_takeover: list[str] = []

    def hook(call: Call) -> Any:
        if snapshot:
            if call.method in DDL or call.collection != MIGRATIONS:
                after_takeover.append(call.method)
            return call.proceed()
        result = call.proceed()
        if call.method == "create_index" and len(_recorded_steps(db)) >= 3:
            # This run's lease lapsed (a stalled process) and another run took it over.
            now = clock.now()
            db[MIGRATIONS].replace_one(
                {"_id": LOCK_ID},
                {
                    "holder": OTHER_HOLDER,
                    "token": "theirs",
                    "acquiredAt": now,
                    "expiresAt": now + timedelta(hours=1),
                },
            )
            snapshot["record"] = db[MIGRATIONS].find_one({"_id": MIGRATION_ID})
            snapshot["lock"] = _lock_document(db)
            snapshot["collections"] = sorted(db.list_collection_names())
        return result

    with pytest.raises(MigrationLockedError, match=OTHER_HOLDER) as caught:
        init_schema(HookedDatabase(db, hook), clock=clock)  # type: ignore[arg-type]
    assert caught.value.holder == OTHER_HOLDER
    assert after_takeover == []  # no DDL, no other collection touched
    assert db[MIGRATIONS].find_one({"_id": MIGRATION_ID}) == snapshot["record"]
    assert _lock_document(db) == snapshot["lock"]  # the new holder's lock is left alone
    assert sorted(db.list_collection_names()) == snapshot["collections"]
    assert _renewer_threads() == []


def test_a_lock_taken_over_is_not_renewed_or_released_by_its_old_holder(
    db: Any, clock: Any
) -> None:
    lock = MigrationLock(db[MIGRATIONS], clock=clock, timeout=0)
    with lock:
        clock.advance(2 * LEASE)
        assert _wait(lambda: _lock_document(db)["expiresAt"] > clock.now())  # renewed
        # Model a process stalled for a whole lease: its lease ends, another run takes it.
        db[MIGRATIONS].update_one({"_id": LOCK_ID}, {"$set": {"expiresAt": clock.now()}})
        taker = MigrationLock(db[MIGRATIONS], clock=clock, timeout=0, holder=OTHER_HOLDER)
        taker.acquire()
        theirs = _lock_document(db)
        with pytest.raises(MigrationLockedError, match=OTHER_HOLDER):
            lock.fence()
        assert _lock_document(db) == theirs
    assert _lock_document(db) == theirs  # the old holder's release left it alone
    taker.release()
    assert _lock_document(db) is None


# --------------------------------------------------------- interrupted runs


def _reply_lost_on(method: str, nth: int) -> Callable[[Call, dict[str, int]], Any]:
    """The ``nth`` ``method`` call is applied, then its reply is lost."""

    def fault(call: Call, seen: dict[str, int]) -> Any:
        result = call.proceed()
        if call.method == method:
            seen[method] = seen.get(method, 0) + 1
            if seen[method] == nth:
                raise AutoReconnect("connection reset after the write applied (injected)")
        return result

    return fault


def _record_lost_after_index(nth: int) -> Callable[[Call, dict[str, int]], Any]:
    """The ``nth`` index is built, then the write recording it fails."""

    def fault(call: Call, seen: dict[str, int]) -> Any:
        if call.method == "create_index":
            seen["indexes"] = seen.get("indexes", 0) + 1
        elif (
            call.method == "update_one"
            and call.collection == MIGRATIONS
            and "$push" in call.args[1]
            and seen.get("indexes") == nth
            and not seen.get("failed")
        ):
            seen["failed"] = 1
            raise AutoReconnect("connection reset before the record was written (injected)")
        return call.proceed()

    return fault


FAULTS = [
    ("index-reply-lost", _reply_lost_on("create_index", 9)),
    ("collection-reply-lost", _reply_lost_on("create_collection", 4)),
    ("record-write-lost", _record_lost_after_index(9)),
    ("last-index-reply-lost", _reply_lost_on("create_index", INDEXES)),
]


@pytest.mark.parametrize("fault", [f[1] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_an_interrupted_run_is_reconciled_by_the_next_init(
    db: Any, clock: Any, fault: Callable[[Call, dict[str, int]], Any]
) -> None:
    first: list[tuple[str, str, str | None]] = []
    seen: dict[str, int] = {}

    def faulty(call: Call) -> Any:
        step = call.step()
        result = fault(call, seen)  # raises after (or instead of) the call
        if step is not None:
            first.append(step)
        return result

    def applied_then_lost(call: Call) -> Any:
        try:
            return faulty(call)
        except AutoReconnect:
            step = call.step()
            if step is not None:  # the DDL applied before its reply was lost
                first.append(step)
            raise

    with pytest.raises(ConnectionFailedError, match="injected"):
        init_schema(HookedDatabase(db, applied_then_lost), clock=clock)  # type: ignore[arg-type]
    unrecorded = [step for step in first if step not in _recorded_steps(db)]
    assert len(unrecorded) == 1  # the interruption left exactly one applied step unrecorded
    report = schema_status(db)
    assert not report.matches  # status shows the run was interrupted

    second: list[tuple[str, str, str | None]] = []

    def spy(call: Call) -> Any:
        step = call.step()
        if step is not None:
            second.append(step)
        return call.proceed()

    init_schema(HookedDatabase(db, spy), clock=clock)  # type: ignore[arg-type]
    assert set(first).isdisjoint(second)  # nothing applied twice
    assert sorted(first + second, key=ALL_STEPS.index) == ALL_STEPS
    # The record matches reality: every step recorded exactly once, and status agrees.
    record = schema_status(db).record
    assert record is not None and record["status"] == "applied"
    assert Counter(_recorded_steps(db)) == Counter(ALL_STEPS)
    assert schema_status(db).differences() == []
    assert init_schema(db, clock=clock).steps == []  # and a further run has nothing to do


def test_status_names_the_step_an_interrupted_run_left_unrecorded(db: Any, clock: Any) -> None:
    seen: dict[str, int] = {}
    fault = _reply_lost_on("create_index", 2)
    with pytest.raises(ConnectionFailedError):
        init_schema(
            HookedDatabase(db, lambda call: fault(call, seen)),  # type: ignore[arg-type]
            clock=clock,
        )
    index = [step for step in ALL_STEPS if step[0] == CREATE_INDEX][1][2]
    differences = schema_status(db).differences()
    unrecorded = [line for line in differences if "not recorded:" in line]
    assert len(unrecorded) == 1, differences
    assert f".{index}" in unrecorded[0]


# ----------------------------------------------- the renewer never outlives a run


def _fails_on_first_index(call: Call) -> Any:
    if call.method == "create_index":
        raise AutoReconnect("connection reset (injected)")
    return call.proceed()


def test_the_renewer_runs_during_every_step_and_stops_on_every_exit(db: Any, clock: Any) -> None:
    during: list[int] = []
    init_schema(db, clock=clock, on_step=lambda *_: during.append(len(_renewer_threads())))
    assert during and set(during) == {1}
    assert _renewer_threads() == []
    drop_schema(db, clock=clock)

    with pytest.raises(ConnectionFailedError):
        init_schema(HookedDatabase(db, _fails_on_first_index), clock=clock)  # type: ignore[arg-type]
    assert _renewer_threads() == []

    def boom(*_: Any) -> None:
        raise KeyboardInterrupt  # a user's Ctrl-C in the progress callback

    drop_schema(db, clock=clock)
    with pytest.raises(KeyboardInterrupt):
        init_schema(db, clock=clock, on_step=boom)
    assert _renewer_threads() == [] and _lock_document(db) is None

    drop_schema(db, clock=clock)
    db.create_collection("tenants")
    db.tenants.insert_one({"_id": "bad", "clerkOrgId": "org_a", "name": 42})
    with pytest.raises(ExistingDataError):
        init_schema(db, clock=clock)
    assert _renewer_threads() == [] and _lock_document(db) is None


# ------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"lock_timeout": float("nan")}, "lock_timeout"),
        ({"lock_timeout": float("inf")}, "lock_timeout"),
        ({"lock_timeout": -1}, "lock_timeout"),
        ({"lock_timeout": "60"}, "lock_timeout"),
        ({"lock_timeout": 1e308}, "lock_timeout"),
        ({"on_step": "print"}, "on_step"),
        ({"clock": "now"}, "clock"),
        ({"schema": ["tenants"]}, "schema"),
        ({"allow_moderate": "no"}, "allow_moderate"),
    ],
    ids=["nan", "inf", "negative", "string", "huge", "on_step", "clock", "schema", "moderate"],
)
def test_init_refuses_bad_arguments_by_name_before_writing(
    db: Any, kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        init_schema(db, **kwargs)
    assert caught.value.argument == argument
    assert db.list_collection_names() == []


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": -0.5}, "timeout"),
        ({"lease": timedelta(0)}, "lease"),
        ({"lease": float("inf")}, "lease"),
        ({"lease": "60"}, "lease"),
        ({"poll": 0}, "poll"),
        ({"holder": ""}, "holder"),
        ({"holder": {"$ne": None}}, "holder"),
    ],
)
def test_the_lock_refuses_bad_arguments_by_name(
    db: Any, clock: Any, kwargs: dict[str, Any], argument: str
) -> None:
    options: dict[str, Any] = {"timeout": 1.0, **kwargs}
    with pytest.raises(InvalidArgumentError) as caught:
        MigrationLock(db[MIGRATIONS], clock=clock, **options)
    assert caught.value.argument == argument


def test_drop_refuses_a_bad_lock_timeout_before_dropping(db: Any) -> None:
    init_schema(db)
    with pytest.raises(InvalidArgumentError) as caught:
        drop_schema(db, lock_timeout=float("nan"))
    assert caught.value.argument == "lock_timeout"
    verify_schema(db)
