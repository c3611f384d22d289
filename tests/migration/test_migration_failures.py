"""init under stress: concurrent runs, held and stale locks, a lost connection, bad data."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from _chain_kit import STEPS, TOTAL_STEPS, fresh_steps
from pymongo.errors import AutoReconnect

from nsn_store.errors import (
    ConnectionFailedError,
    ExistingDataError,
    MigrationLockedError,
)
from nsn_store.migration._diff import CREATE_INDEX
from nsn_store.migration._results import MIGRATIONS, MigrationResult
from nsn_store.migration._runner import init_schema, plan, schema_status, verify_schema
from nsn_store.schema._registry import INITIAL_SCHEMA, MIGRATION_ID, SCHEMA
from nsn_store.schema._registry import MIGRATIONS as CHAIN


def test_two_concurrent_inits_apply_once(db: Any) -> None:
    results: list[MigrationResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            results.append(init_schema(db, lock_timeout=60))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r.steps) for r in results) == [0, TOTAL_STEPS]
    recorded = {id_: len(db[MIGRATIONS].find_one({"_id": id_})["steps"]) for id_ in CHAIN.ids}
    assert recorded == STEPS  # no step applied twice
    verify_schema(db)


def _hold_lock(db: Any, clock: Any, expires_in: timedelta) -> None:
    now = clock.now()
    db[MIGRATIONS].insert_one(
        {
            "_id": "lock",
            "holder": "other-host:42:abcd",
            "acquiredAt": now,
            "expiresAt": now + expires_in,
        }
    )


def test_init_gives_up_on_a_held_lock_naming_the_holder(db: Any, clock: Any) -> None:
    _hold_lock(db, clock, timedelta(hours=1))
    with pytest.raises(MigrationLockedError, match="other-host:42:abcd") as caught:
        init_schema(db, lock_timeout=0.2, clock=clock)
    assert caught.value.holder == "other-host:42:abcd"
    assert db.list_collection_names() == [MIGRATIONS]  # nothing applied
    assert db[MIGRATIONS].find_one({"_id": "lock"})["holder"] == "other-host:42:abcd"


def test_a_run_in_progress_makes_a_second_run_time_out_naming_it(db: Any) -> None:
    first_is_running, let_first_finish = threading.Event(), threading.Event()
    holders: list[str] = []

    def pause_after_first_step(step: Any, position: int, total: int) -> None:
        if position == 1:
            holders.append(db[MIGRATIONS].find_one({"_id": "lock"})["holder"])
            first_is_running.set()
            let_first_finish.wait(timeout=30)

    first = threading.Thread(target=lambda: init_schema(db, on_step=pause_after_first_step))
    first.start()
    try:
        assert first_is_running.wait(timeout=30)
        with pytest.raises(MigrationLockedError) as caught:
            init_schema(db, lock_timeout=0.2)
        assert caught.value.holder == holders[0]
        assert holders[0] in str(caught.value)
    finally:
        let_first_finish.set()
        first.join()
    verify_schema(db)


def test_init_takes_over_a_stale_lock(db: Any, clock: Any) -> None:
    _hold_lock(db, clock, timedelta(hours=1))
    clock.advance(hours=2)
    result = init_schema(db, lock_timeout=0.2, clock=clock)
    assert len(result.steps) == TOTAL_STEPS
    assert db[MIGRATIONS].find_one({"_id": "lock"}) is None


class _FlakyCollection:
    """A collection whose create_index fails as a dropped connection would."""

    def __init__(self, owner: FlakyDatabase, collection: Any) -> None:
        self._owner = owner
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def create_index(self, *args: Any, **kwargs: Any) -> Any:
        self._owner.index_calls += 1
        if self._owner.index_calls == self._owner.fail_at:
            raise AutoReconnect("connection reset by peer (injected)")
        return self._collection.create_index(*args, **kwargs)


class FlakyDatabase:
    """Wrap a database so that its ``fail_at``-th create_index raises AutoReconnect."""

    def __init__(self, db: Any, fail_at: int) -> None:
        self._db = db
        self.fail_at = fail_at
        self.index_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def __getitem__(self, name: str) -> _FlakyCollection:
        return _FlakyCollection(self, self._db[name])


@pytest.mark.parametrize("fail_at", [1, 9, 27], ids=["first-index", "ninth-index", "last-index"])
def test_a_connection_lost_mid_init_leaves_an_accurate_status_and_rerun_finishes(
    db: Any, fail_at: int
) -> None:
    with pytest.raises(ConnectionFailedError, match="injected"):
        init_schema(FlakyDatabase(db, fail_at))
    record = db[MIGRATIONS].find_one({"_id": MIGRATION_ID})
    assert record["status"] == "applying"
    recorded = [(s["action"], s["collection"], s.get("index")) for s in record["steps"]]
    index_positions = [i for i, step in enumerate(_all_steps()) if step[0] == CREATE_INDEX]
    assert recorded == _all_steps()[: index_positions[fail_at - 1]]  # exactly what succeeded
    report = schema_status(db)
    created = {(CREATE_INDEX, s.name, ix.name) for s in INITIAL_SCHEMA for ix in s.indexes} - {
        (CREATE_INDEX, s.name, name) for s in report.collections for name in s.indexes_missing
    }
    assert created == {r for r in recorded if r[0] == CREATE_INDEX}
    assert any("'applying'" in line for line in report.differences())
    assert db[MIGRATIONS].find_one({"_id": "lock"}) is None  # released despite the failure

    finish = init_schema(db)
    assert [(s.action, s.collection, s.index) for s in finish.steps] == [
        r for r in _all_steps(every_migration=True) if r not in recorded
    ]
    verify_schema(db)
    assert db[MIGRATIONS].find_one({"_id": MIGRATION_ID})["status"] == "applied"


def _all_steps(*, every_migration: bool = False) -> list[tuple[str, str, str | None]]:
    """0001's steps in order (with every_migration, then those of each later migration)."""
    return [
        (action, collection, index)
        for action, collection, index, migration in fresh_steps()
        if every_migration or migration == MIGRATION_ID
    ]


def _tenants_with_an_invalid_document(db: Any) -> None:
    db.create_collection("tenants")  # created before any validator existed
    db.tenants.insert_many(
        [
            {"_id": "bad", "clerkOrgId": "org_a", "name": 42},
            {"_id": "extra", "clerkOrgId": "org_b", "unknownField": True},
        ]
    )


def test_init_stops_before_a_collmod_that_existing_documents_would_fail(db: Any) -> None:
    _tenants_with_an_invalid_document(db)
    with pytest.raises(ExistingDataError, match="2 existing document") as caught:
        init_schema(db)
    assert (caught.value.collection, caught.value.failing) == ("tenants", 2)
    assert "validator" not in db.tenants.options()  # no collMod
    # Only the lock ever touched nsn_migrations; no other collection was created.
    assert set(db.list_collection_names()) <= {"tenants", MIGRATIONS}
    assert db[MIGRATIONS].find_one({"_id": MIGRATION_ID}) is None


def test_allow_moderate_applies_the_validator_with_level_moderate(db: Any) -> None:
    _tenants_with_an_invalid_document(db)
    result = init_schema(db, allow_moderate=True)
    assert result.moderated == ["tenants"]
    options = db.tenants.options()
    assert options["validator"] == SCHEMA["tenants"].validator
    assert options["validationLevel"] == "moderate"
    record = db[MIGRATIONS].find_one({"_id": MIGRATION_ID})
    assert {
        "action": "update_validator",
        "collection": "tenants",
        "validationLevel": "moderate",
    }.items() <= record["steps"][0].items()
    # Honest status: the collection is not at the declared strict level.
    assert schema_status(db).differences() == ["tenants: validationLevel/validationAction differ"]
    assert [s.collection for s in plan(db)] == ["tenants"]
