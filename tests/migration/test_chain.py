"""The migration chain on a database: upgrade, downgrade, history, concurrency, interruption.

Each test runs on the embedded database and, when ``NSN_TEST_MONGODB_URI`` is
set, on a real server. The steps a run takes are observed by proxying the
database (``_DdlSpy``), so "applied once" and "nothing of 0001 touched" are
checked on the driver calls themselves, not only on the records.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from _chain_kit import STEPS, TOTAL_STEPS, steps_after
from bson import ObjectId
from pymongo.errors import AutoReconnect, WriteError

from nsn_store import downgrade, history, init_schema, upgrade
from nsn_store.directory import _queries as q
from nsn_store.errors import (
    ConnectionFailedError,
    ExistingDataError,
    InvalidArgumentError,
    MigrationLockedError,
)
from nsn_store.migration._diff import (
    CREATE_COLLECTION,
    CREATE_INDEX,
    DROP_COLLECTION,
    DROP_INDEX,
    UPDATE_VALIDATOR,
)
from nsn_store.migration._results import RECORDS
from nsn_store.migration._runner import downgrade_plan, plan, schema_status, verify_schema
from nsn_store.schema import _export as export
from nsn_store.schema import _models as models
from nsn_store.schema._registry import (
    INITIAL_SCHEMA,
    MIGRATIONS,
    SCHEMA,
    IndexSpec,
    Migration,
    Migrations,
)

INITIAL, WORKER_STATE, INBOUND_ADDRESS = MIGRATIONS.ids[:3]
HEAD = MIGRATIONS.head.id
#: A migration id the chain does not have yet.
NEXT = f"{len(MIGRATIONS) + 1:04d}"
WORKER_STATE_COLLECTIONS = ("rateLimitBuckets", "jobRuns", "workers")
#: 0001's collections that 0002 does not revise: an upgrade from 0001 must not touch them.
UNTOUCHED = tuple(name for name in INITIAL_SCHEMA.names if name != "workflowSteps")
DDL = frozenset({"create_collection", "create_index", "drop_index", "drop_collection", "command"})


class _DdlSpy:
    """Proxy a database, recording each DDL call as ``(method, collection, index)``."""

    def __init__(self, db: Any, calls: list[tuple[str, str, str | None]]) -> None:
        self._db = db
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._db, name)
        if name not in DDL:
            return attribute

        def spied(*args: Any, **kwargs: Any) -> Any:
            if name == "command" and args[:1] == ("collMod",):
                self._calls.append(("collMod", args[1], None))
            elif name in ("create_collection", "drop_collection"):
                self._calls.append((name, args[0], None))
            return attribute(*args, **kwargs)

        return spied

    def __getitem__(self, collection: str) -> Any:
        return _SpiedCollection(self._db[collection], self._calls)


class _SpiedCollection:
    def __init__(self, collection: Any, calls: list[tuple[str, str, str | None]]) -> None:
        self._collection = collection
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in ("create_index", "drop_index"):
            return attribute

        def spied(*args: Any, **kwargs: Any) -> Any:
            index = kwargs.get("name") if name == "create_index" else args[0]
            self._calls.append((name, self._collection.name, index))
            return attribute(*args, **kwargs)

        return spied


def _records(db: Any) -> dict[str, dict[str, Any]]:
    return {doc["_id"]: doc for doc in db[RECORDS].find({"_id": {"$ne": "lock"}})}


def _snapshot(db: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """What the server reports of ``names``: options and indexes, to compare before/after."""
    return {
        name: (db[name].options(), sorted(db[name].index_information().items())) for name in names
    }


def _rendered(db: Any, schema: Any) -> dict[str, str]:
    """Render what ``db`` holds for ``schema`` as ``nsn-store export`` renders a schema."""
    files = {}
    for order, spec in enumerate(schema, start=1):
        options = db[spec.name].options()
        indexes = [
            {
                "name": doc["name"],
                "key": {field: int(direction) for field, direction in doc["key"].items()},
                **{
                    key: doc[key]
                    for key in ("unique", "expireAfterSeconds", "partialFilterExpression")
                    if key in doc
                },
            }
            for doc in db[spec.name].list_indexes()
            if doc["name"] != "_id_"
        ]
        document = {
            "collection": spec.name,
            "order": order,
            "validator": options["validator"],
            "validationLevel": options["validationLevel"],
            "validationAction": options["validationAction"],
            "indexes": indexes,
        }
        files[export.file_name(order, spec)] = json.dumps(document, indent=2) + "\n"
    return files


# ------------------------------------------------------------------ fresh and 0001


def test_a_fresh_database_goes_to_the_head_migration_by_migration(db: Any) -> None:
    result = init_schema(db)
    assert [(m, c) for m, c in result.applied] == [(m.id, m.checksum) for m in MIGRATIONS]
    by_migration = Counter(step.migration for step in result.steps)
    assert by_migration == STEPS
    records = _records(db)
    assert list(records) == list(MIGRATIONS.ids)
    assert {id_: len(records[id_]["steps"]) for id_ in MIGRATIONS.ids} == STEPS
    assert all(records[m.id]["checksum"] == m.checksum for m in MIGRATIONS)
    verify_schema(db)
    assert _rendered(db, SCHEMA) == export.render()  # what export writes is what is there


def test_a_database_at_0001_gets_0002_and_nothing_of_0001_is_touched(db: Any) -> None:
    assert upgrade(db, "0001").applied == [(INITIAL, MIGRATIONS[0].checksum)]
    verify_schema(db, target="0001")
    before_record = _records(db)[INITIAL]
    before = _snapshot(db, INITIAL_SCHEMA.names)
    calls: list[tuple[str, str, str | None]] = []
    result = upgrade(_DdlSpy(db, calls), "0002")  # type: ignore[call-overload]
    assert {step.migration for step in result.steps} == {WORKER_STATE}
    assert result.applied == [(WORKER_STATE, MIGRATIONS[1].checksum)]
    # The driver calls: 0002's collections and one collMod of the step collection, no more.
    touched = {collection for _, collection, _ in calls}
    assert touched == {*WORKER_STATE_COLLECTIONS, "workflowSteps"}
    assert [call for call in calls if call[1] == "workflowSteps"] == [
        ("collMod", "workflowSteps", None)
    ]
    assert _records(db)[INITIAL] == before_record  # its record is not even rewritten
    after = _snapshot(db, INITIAL_SCHEMA.names)
    assert {name: after[name] for name in UNTOUCHED} == {name: before[name] for name in UNTOUCHED}
    assert after["workflowSteps"][1] == before["workflowSteps"][1]  # its indexes too
    verify_schema(db, target="0002")


def test_a_database_initialised_before_the_chain_existed_upgrades(db: Any, clock: Any) -> None:
    # What the 0001-only release wrote: the twelve collections and one record.
    init_schema(db, schema=INITIAL_SCHEMA, clock=clock)
    assert list(_records(db)) == [INITIAL]
    assert _records(db)[INITIAL]["checksum"] == MIGRATIONS[0].checksum
    result = init_schema(db, clock=clock)
    assert {step.migration for step in result.steps} == set(MIGRATIONS.ids[1:])
    assert history(db).current == HEAD


def test_upgrade_to_a_target_stops_there_and_never_goes_back(db: Any) -> None:
    assert [step.migration for step in plan(db, target="0001")] == [INITIAL] * STEPS[INITIAL]
    upgrade(db, "0001_initial_schema")
    assert not set(WORKER_STATE_COLLECTIONS) & set(db.list_collection_names())
    assert history(db).current == INITIAL
    upgrade(db)
    assert upgrade(db, "0001").status == "up-to-date"  # a downgrade is a separate command
    assert history(db).current == HEAD


# ------------------------------------------------------------------ downgrade


def test_downgrade_to_0001_leaves_exactly_the_0001_specs(db: Any) -> None:
    init_schema(db)
    result = downgrade(db, "0001")
    assert result.reverted == [INBOUND_ADDRESS, WORKER_STATE]  # newest first
    assert [(s.action, s.collection) for s in result.steps if s.migration == INBOUND_ADDRESS] == [
        (DROP_INDEX, "tenants")
    ]
    assert [(s.action, s.collection) for s in result.steps if s.migration == WORKER_STATE] == [
        (UPDATE_VALIDATOR, "workflowSteps"),
        (DROP_COLLECTION, "workers"),
        (DROP_COLLECTION, "jobRuns"),
        (DROP_COLLECTION, "rateLimitBuckets"),
    ]
    assert not set(WORKER_STATE_COLLECTIONS) & set(db.list_collection_names())
    # The database now renders exactly as export renders 0001's schema: 0001's twelve files.
    assert _rendered(db, INITIAL_SCHEMA) == export.render(MIGRATIONS.schema("0001"))
    assert MIGRATIONS.schema("0001")["workflowSteps"].validator == (
        INITIAL_SCHEMA["workflowSteps"].validator
    )
    verify_schema(db, target="0001")
    assert list(_records(db)) == [INITIAL]
    assert [entry.status for entry in history(db).entries] == ["applied"] + ["pending"] * (
        len(MIGRATIONS) - 1
    )


def test_upgrade_again_after_a_downgrade(db: Any) -> None:
    init_schema(db)
    downgrade(db, "0001")
    again = upgrade(db)
    assert {step.migration for step in again.steps} == set(MIGRATIONS.ids[1:])
    assert len(again.steps) == steps_after("0001")
    verify_schema(db)
    assert _rendered(db, SCHEMA) == export.render()


def test_downgrade_to_base_drops_only_what_the_chain_created(db: Any) -> None:
    db.create_collection("notes")  # the user's own collection
    init_schema(db)
    result = downgrade(db, "base")
    assert result.reverted == list(reversed(MIGRATIONS.ids))
    dropped = [s.collection for s in result.steps if s.action == DROP_COLLECTION]
    assert dropped == [*reversed(WORKER_STATE_COLLECTIONS), *reversed(INITIAL_SCHEMA.names)]
    assert sorted(db.list_collection_names()) in (["notes"], ["notes", RECORDS])
    assert _records(db) == {}


def test_downgrade_leaves_alone_what_an_unrecorded_migration_would_own(db: Any) -> None:
    upgrade(db, "0001")
    db.create_collection("workers")  # not 0002's: it has no record here
    assert downgrade_plan(db, "0001") == []
    assert downgrade(db, "0001").status == "up-to-date"
    assert "workers" in db.list_collection_names()


def test_downgrade_checks_the_data_before_restoring_a_validator(db: Any, clock: Any) -> None:
    init_schema(db)
    tenant = ObjectId()
    step = models.WorkflowStep(
        workflowId=ObjectId(),
        tenantId=tenant,
        order=0,
        channel="sms",
        anchorOffsetSeconds=-86_400,  # 0001's validator does not know it
        createdAt=clock.now(),
    )
    db.workflowSteps.insert_one(step.to_document())
    with pytest.raises(ExistingDataError, match="workflowSteps") as caught:
        downgrade(db, "0001")
    assert caught.value.failing == 1
    assert set(WORKER_STATE_COLLECTIONS) <= set(db.list_collection_names())  # nothing undone
    assert "by_providerAddress" in db.tenants.index_information()  # not even 0003's index
    assert history(db).current == HEAD
    result = downgrade(db, "0001", allow_moderate=True)
    assert result.moderated == ["workflowSteps"]
    assert db.workflowSteps.options()["validationLevel"] == "moderate"


def test_downgrade_refuses_a_bad_target_before_any_io(db: Any) -> None:
    for target in (NEXT, "", None, 1):
        with pytest.raises(InvalidArgumentError) as caught:
            downgrade(db, target)  # type: ignore[arg-type]
        assert caught.value.argument == "target"
    with pytest.raises(InvalidArgumentError):
        upgrade(db, "base")
    assert db.list_collection_names() == []


def test_downgrade_waits_for_the_lock_like_any_run(db: Any, clock: Any) -> None:
    init_schema(db, clock=clock)
    now = clock.now()
    lock = {"_id": "lock", "holder": "other:1:beef", "acquiredAt": now}
    db[RECORDS].insert_one({**lock, "expiresAt": now + timedelta(hours=1)})
    with pytest.raises(MigrationLockedError, match="other:1:beef"):
        downgrade(db, "0001", lock_timeout=0.1, clock=clock)
    verify_schema(db)


# ------------------------------------------------------------------ concurrency


@pytest.mark.parametrize("start", [None, "0001"], ids=["fresh", "from-0001"])
def test_concurrent_upgrades_apply_each_step_once(db: Any, start: str | None) -> None:
    if start is not None:
        upgrade(db, start)
    calls: list[tuple[str, str, str | None]] = []
    errors: list[BaseException] = []
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append(init_schema(_DdlSpy(db, calls), lock_timeout=60))  # type: ignore[call-overload]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = steps_after(start) if start else TOTAL_STEPS
    assert sorted(len(r.steps) for r in results) == [0, 0, 0, expected]
    assert len(calls) == expected and set(Counter(calls).values()) == {1}  # each DDL once
    records = _records(db)
    assert sum(len(record["steps"]) for record in records.values()) == TOTAL_STEPS
    verify_schema(db)


# ------------------------------------------------------------------ interruption


class _LosesOneReply:
    """The ``nth`` call of ``method`` is applied, then its reply is lost."""

    def __init__(self, db: Any, method: str, nth: int) -> None:
        self._db, self._method, self._nth, self._seen = db, method, nth, 0

    def _hook(self, name: str, attribute: Any) -> Any:
        if name != self._method:
            return attribute

        def lossy(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._seen += 1
            if self._seen == self._nth:
                raise AutoReconnect("connection reset after the write applied (injected)")
            return result

        return lossy

    def __getattr__(self, name: str) -> Any:
        return self._hook(name, getattr(self._db, name))

    def __getitem__(self, collection: str) -> Any:
        outer = self

        class _Collection:
            def __getattr__(self, name: str) -> Any:
                return outer._hook(name, getattr(outer._db[collection], name))

        return _Collection()


def test_an_interrupted_upgrade_resumes_where_it_stopped(db: Any) -> None:
    upgrade(db, "0001")
    # 0002's second index is built, then the reply is lost.
    with pytest.raises(ConnectionFailedError, match="injected"):
        init_schema(_LosesOneReply(db, "create_index", 2))  # type: ignore[call-overload]
    entries = {entry.id: entry for entry in history(db).entries}
    assert (entries[INITIAL].status, entries[WORKER_STATE].status) == ("applied", "applying")
    assert any("not recorded:" in line for line in schema_status(db).differences())
    calls: list[tuple[str, str, str | None]] = []
    finish = init_schema(_DdlSpy(db, calls))  # type: ignore[call-overload]
    assert [(step.action, step.collection) for step in finish.reconciled] == [
        (CREATE_INDEX, "jobRuns")
    ]
    assert ("create_index", "jobRuns", "job_1_periodStart_-1") not in calls  # not built twice
    record = _records(db)[WORKER_STATE]
    triples = [(s["action"], s["collection"], s.get("index")) for s in record["steps"]]
    assert len(triples) == len(set(triples)) == STEPS[WORKER_STATE]  # each step recorded once
    assert record["status"] == "applied" and "pending" not in record
    verify_schema(db)


def test_an_interrupted_downgrade_runs_again_to_the_end(db: Any) -> None:
    init_schema(db)
    with pytest.raises(ConnectionFailedError, match="injected"):
        downgrade(_LosesOneReply(db, "drop_collection", 2), "0001")  # type: ignore[call-overload]
    # 0003 was reverted whole (its record deleted), 0002 stopped at its second drop.
    assert [entry.status for entry in history(db).entries] == ["applied", "reverting", "pending"]
    assert any("'reverting'" in line for line in schema_status(db, target="0001").differences())
    result = downgrade(db, "0001")
    assert [s.collection for s in result.steps] == ["rateLimitBuckets"]  # what was left
    verify_schema(db, target="0001")


# ------------------------------------------------------------------ history


def test_history_lists_each_migration_with_when_where_and_checksum(db: Any, clock: Any) -> None:
    assert [(e.id, e.status, e.checksum_matches) for e in history(db).entries] == [
        (id_, "pending", None) for id_ in MIGRATIONS.ids
    ]
    init_schema(db, clock=clock)
    data = history(db).to_dict()
    assert list(data) == ["head", "current", "migrations"]
    assert (data["head"], data["current"]) == (HEAD, HEAD)
    first = data["migrations"][0]
    assert list(first) == [
        "id",
        "description",
        "known",
        "applied",
        "status",
        "applied_at",
        "started_at",
        "host",
        "checksum",
        "recorded_checksum",
        "checksum_matches",
        "steps",
    ]
    assert first["applied"] is True and first["checksum_matches"] is True
    assert first["applied_at"] == clock.now().isoformat() and first["steps"] == STEPS[INITIAL]
    db[RECORDS].update_one({"_id": WORKER_STATE}, {"$set": {"checksum": "0" * 64}})
    changed = history(db)
    assert changed.entries[1].checksum_matches is False and changed.current == INITIAL


def test_history_shows_a_record_this_version_does_not_know(db: Any) -> None:
    init_schema(db)
    db[RECORDS].insert_one({"_id": f"{NEXT}_future", "status": "applied", "checksum": "f" * 64})
    last = history(db).entries[-1]
    assert (last.id, last.known, last.applied) == (f"{NEXT}_future", False, True)
    assert history(db).current == HEAD


# ------------------------------------------------------------------ a developer's next one


def _with_next() -> Migrations:
    """The next migration as a developer would add it: a new collection, an index on contacts."""
    contacts = SCHEMA["contacts"]
    by_last_name = IndexSpec("by_lastName", (("tenantId", 1), ("lastName", 1)))
    notes = dataclasses.replace(SCHEMA["ragDocuments"], name="notes", indexes=())
    return Migrations(
        [
            *MIGRATIONS,
            Migration(
                f"{NEXT}_contact_names",
                "contacts by last name; a notes collection",
                creates=(notes,),
                revises=(dataclasses.replace(contacts, indexes=(*contacts.indexes, by_last_name)),),
            ),
        ]
    )


def test_a_next_migration_applies_and_reverts_on_its_own(db: Any) -> None:
    chain = _with_next()
    init_schema(db)
    before = _snapshot(db, SCHEMA.names)
    result = upgrade(db, migrations=chain)
    assert [(s.action, s.collection, s.index) for s in result.steps] == [
        (CREATE_COLLECTION, "notes", None),
        (CREATE_INDEX, "contacts", "by_lastName"),
    ]
    verify_schema(db, migrations=chain)
    reverted = downgrade(db, HEAD, migrations=chain)
    assert [(s.action, s.collection, s.index) for s in reverted.steps] == [
        (DROP_INDEX, "contacts", "by_lastName"),
        (DROP_COLLECTION, "notes", None),
    ]
    assert _snapshot(db, SCHEMA.names) == before
    verify_schema(db)


# ------------------------------------------------------------------ 0003: by_providerAddress


def test_a_database_at_0002_gets_one_index_on_tenants_and_nothing_else(db: Any) -> None:
    upgrade(db, "0002")
    verify_schema(db, target="0002")
    records_before = _records(db)
    before = _snapshot(db, SCHEMA.names)
    calls: list[tuple[str, str, str | None]] = []
    result = upgrade(_DdlSpy(db, calls), "0003")  # type: ignore[call-overload]
    assert result.applied == [(INBOUND_ADDRESS, MIGRATIONS.get("0003").checksum)]
    assert [(s.migration, s.action, s.collection, s.index) for s in result.steps] == [
        (INBOUND_ADDRESS, CREATE_INDEX, "tenants", "by_providerAddress")
    ]
    # The driver calls: one createIndexes on tenants; no collMod, no other collection.
    assert calls == [("create_index", "tenants", "by_providerAddress")]
    after = _snapshot(db, SCHEMA.names)
    assert {n: after[n] for n in SCHEMA.names if n != "tenants"} == {
        n: before[n] for n in SCHEMA.names if n != "tenants"
    }
    assert after["tenants"][0] == before["tenants"][0]  # options: validator and levels
    added = dict(after["tenants"][1]).keys() - dict(before["tenants"][1]).keys()
    assert added == {"by_providerAddress"}
    index = db.tenants.index_information()["by_providerAddress"]
    assert index["key"] == [("providerConfigs.channel", 1), ("providerConfigs.fromAddress", 1)]
    assert not index.get("unique")
    records = _records(db)
    assert {id_: records[id_] for id_ in records_before} == records_before  # not rewritten
    assert len(records[INBOUND_ADDRESS]["steps"]) == STEPS[INBOUND_ADDRESS] == 1
    verify_schema(db, target="0003")


def test_downgrade_to_0002_drops_only_by_providerAddress(db: Any) -> None:
    upgrade(db, "0002")
    at_0002 = _snapshot(db, SCHEMA.names)
    upgrade(db, "0003")
    calls: list[tuple[str, str, str | None]] = []
    result = downgrade(_DdlSpy(db, calls), "0002")  # type: ignore[call-overload]
    assert result.reverted == [INBOUND_ADDRESS]
    assert [(s.action, s.collection, s.index) for s in result.steps] == [
        (DROP_INDEX, "tenants", "by_providerAddress")
    ]
    assert calls == [("drop_index", "tenants", "by_providerAddress")]  # no collMod either
    assert _snapshot(db, SCHEMA.names) == at_0002
    # What the database holds renders exactly as `export` renders 0002's schema.
    assert _rendered(db, MIGRATIONS.schema("0002")) == export.render(MIGRATIONS.schema("0002"))
    verify_schema(db, target="0002")
    assert list(_records(db)) == [INITIAL, WORKER_STATE]


def test_0003_builds_on_tenants_that_already_have_provider_configs(db: Any, clock: Any) -> None:
    # Not unique: tenants without configs (all null keys) and a sender two tenants
    # already share do not stop the build; the lookup then reports both.
    upgrade(db, "0002")
    shared = models.ProviderConfig(
        channel="sms", provider="twilio", fromAddress="+14155552671", credentialsRef="env:TWILIO"
    )
    for org, configs in (
        ("org_a", [shared]),
        ("org_b", [shared]),
        ("org_c", None),
        ("org_d", None),
    ):
        tenant = models.Tenant(
            name=org, clerkOrgId=org, providerConfigs=configs, createdAt=clock.now()
        )
        db.tenants.insert_one(tenant.to_document())
    upgrade(db)
    verify_schema(db)
    found = db.tenants.find(q.tenants_at_query("sms", "+14155552671").filter)
    assert sorted(doc["clerkOrgId"] for doc in found) == ["org_a", "org_b"]


def _tenants_with_senders(db: Any, clock: Any, count: int) -> None:
    for n in range(count):
        configs = [
            models.ProviderConfig(
                channel="sms",
                provider="twilio",
                fromAddress=f"+1415555{n:04d}",
                credentialsRef="env:TWILIO",
            ),
            models.ProviderConfig(
                channel="email",
                provider="resend",
                fromAddress=f"desk{n}@example.com",
                credentialsRef="env:RESEND",
            ),
        ]
        tenant = models.Tenant(
            name=f"t{n}", clerkOrgId=f"org_{n}", providerConfigs=configs, createdAt=clock.now()
        )
        db.tenants.insert_one(tenant.to_document())


def _index_scans(explained: dict[str, Any]) -> list[str]:
    """Return the index names the winning plan scans (classic and SBE plan shapes)."""
    found: list[str] = []
    pending = [explained["queryPlanner"]["winningPlan"]]
    while pending:
        stage = pending.pop()
        if stage.get("stage") in ("IXSCAN", "EXPRESS_IXSCAN"):
            found.append(stage["indexName"])
        pending += [stage[k] for k in ("inputStage", "queryPlan") if k in stage]
        pending += stage.get("inputStages", [])
    return found


def test_the_inbound_lookup_is_planned_on_by_providerAddress(db: Any, clock: Any) -> None:
    init_schema(db)
    _tenants_with_senders(db, clock, 30)
    query = q.tenants_at_query("sms", "+14155550007")  # what Inbound.receive reads
    assert query.index == "by_providerAddress"
    explained = db.tenants.find(query.filter).explain()
    assert set(_index_scans(explained)) == {"by_providerAddress"}
    stats = explained["executionStats"]
    # $elemMatch compounds the bounds of both fields: one key, one tenant.
    assert (stats["nReturned"], stats["totalDocsExamined"]) == (1, 1)


# ------------------------------------------------------------------ 0002's collections


def test_the_database_enforces_the_0002_validators(db: Any, clock: Any) -> None:
    init_schema(db)
    now = clock.now()
    bucket = {"_id": "tenant:x|sms|+15550001111", "channel": "sms", "tokens": 2.0}
    bucket |= {"capacity": 2.0, "refillPerSecond": 2.0, "updatedAt": now}
    db.rateLimitBuckets.insert_one(bucket)
    with pytest.raises(WriteError):
        db.rateLimitBuckets.insert_one({**bucket, "_id": "other", "capacity": 0.0})
    with pytest.raises(WriteError):
        db.jobRuns.insert_one({"_id": ObjectId(), "job": "rollup"})  # a string key is required
    worker = models.WorkerRecord(
        host="h", pid=1, version="0.1.0", startedAt=now, heartbeatAt=now, concurrency=1
    )
    db.workers.insert_one({"_id": "h:1:ab", **worker.to_document()})
    with pytest.raises(WriteError):
        db.workers.update_one({"_id": "h:1:ab"}, {"$set": {"concurrency": 0}})
    assert db.workers.index_information()["heartbeatAt_1"]["expireAfterSeconds"] == 86_400


def test_a_worker_silent_for_a_day_disappears(db: Any, clock: Any, ttl_monitor: Any) -> None:
    init_schema(db)
    now = clock.now()
    for name, beat in (("old", now - timedelta(days=1, seconds=1)), ("live", now)):
        worker = models.WorkerRecord(
            host="h", pid=1, version="0.1.0", startedAt=beat, heartbeatAt=beat, concurrency=1
        )
        db.workers.insert_one({"_id": name, **worker.to_document()})
    ttl_monitor()
    assert [doc["_id"] for doc in db.workers.find()] == ["live"]


# ------------------------------------------------------------------ async


async def test_the_chain_works_on_an_async_database(async_db: Any) -> None:
    result = await init_schema(async_db)
    assert [m for m, _ in result.applied] == list(MIGRATIONS.ids)
    assert len(result.steps) == TOTAL_STEPS
    assert (await init_schema(async_db)).status == "up-to-date"
    assert (await verify_schema(async_db)).matches
    assert (await history(async_db)).current == HEAD
    assert [s.migration for s in await plan(async_db)] == []
    reverted = await downgrade(async_db, "0001")
    assert reverted.reverted == list(reversed(MIGRATIONS.ids[1:]))
    assert (await verify_schema(async_db, target="0001")).matches
    assert len((await upgrade(async_db)).steps) == steps_after("0001")
    report = await schema_status(async_db)
    assert report.matches and report.lock is None  # the async lock was released
