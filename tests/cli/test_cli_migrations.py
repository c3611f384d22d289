"""nsn-store upgrade, downgrade and history: output, consent, exit codes, stable JSON."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from _chain_kit import STEPS, TOTAL_STEPS, fresh_steps, steps_after
from bson import ObjectId
from click.testing import CliRunner, Result

from nsn_store import connection
from nsn_store.cli import main
from nsn_store.migration._diff import CREATE_COLLECTION, CREATE_INDEX, UPDATE_VALIDATOR
from nsn_store.schema import _models as models
from nsn_store.schema._registry import MIGRATIONS, SCHEMA

SECRET = "hunter2"
REAL_URI = f"mongodb://admin:{SECRET}@db.example.com:27017/nsn"
INITIAL, WORKER_STATE, INBOUND_ADDRESS = MIGRATIONS.ids[:3]
HEAD = MIGRATIONS.head.id
NEXT = f"{len(MIGRATIONS) + 1:04d}"  # no migration has this number yet
WORKER_STATE_COLLECTIONS = {"rateLimitBuckets", "jobRuns", "workers"}


@pytest.fixture
def uri(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh embedded database that no other test sees."""
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    return f"mongomock://cli-{uuid.uuid4().hex[:10]}/nsn"


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make REAL_URI "connect" to an embedded database that passes for a real server."""
    db = connection.connect(f"mongomock://fake-{uuid.uuid4().hex[:10]}/nsn")
    monkeypatch.setattr(connection, "connect", lambda uri, **kwargs: db)
    monkeypatch.setattr(connection, "is_embedded", lambda database: False)
    return db


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def _history(uri: str) -> dict[str, Any]:
    result = run("history", "--uri", uri, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _statuses(uri: str) -> list[str]:
    return [entry["status"] for entry in _history(uri)["migrations"]]


# ------------------------------------------------------------------ upgrade


def test_upgrade_to_a_target_then_to_the_head(uri: str) -> None:
    first = run("upgrade", "0001", "--uri", uri)
    assert first.exit_code == 0, first.output
    assert f"Migration {INITIAL} on database 'nsn'" in first.stdout
    assert f"Applied {STEPS[INITIAL]} steps" in first.stdout and WORKER_STATE not in first.stdout
    assert _statuses(uri) == ["applied"] + ["pending"] * (len(MIGRATIONS) - 1)
    second = run("upgrade", "0002", "--uri", uri)
    assert second.exit_code == 0, second.output
    assert f"Migration {WORKER_STATE} on" in second.stdout
    assert "5. workflowSteps      collMod: validator differ" in second.stdout
    assert "Applied 7 steps on embedded: 3 collections created, 1 validators updated, " in (
        second.stdout
    )
    assert f"Recorded {WORKER_STATE} (checksum {MIGRATIONS[1].checksum[:12]})" in second.stdout
    assert INITIAL not in second.stdout.split("Applied")[1]  # 0001 was not recorded again
    third = run("upgrade", "0003", "--uri", uri)
    assert third.exit_code == 0, third.output
    assert f"Migration {INBOUND_ADDRESS} on" in third.stdout
    assert "       create   by_providerAddress         {providerConfigs.channel: 1, " in (
        third.stdout
    )
    assert "Plan: 1 steps: 1 indexes to create." in third.stdout
    assert (
        "Applied 1 steps on embedded: 0 collections created, 0 validators updated, "
        "1 indexes created." in third.stdout
    )
    assert third.stdout.count("Recorded") == 1
    assert f"Nothing to do: already at {HEAD}" in run("upgrade", "--uri", uri).stdout


def test_init_on_a_fresh_database_applies_every_migration(uri: str) -> None:
    result = run("init", "--uri", uri)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Migration {', '.join(MIGRATIONS.ids)} on database 'nsn' on embedded:"
    actions = [action for action, *_ in fresh_steps()]
    created, updated, indexed = (
        actions.count(a) for a in (CREATE_COLLECTION, UPDATE_VALIDATOR, CREATE_INDEX)
    )
    assert (created, TOTAL_STEPS) == (len(SCHEMA), created + updated + indexed)
    assert lines[-1 - len(MIGRATIONS) :] == [
        f"Applied {TOTAL_STEPS} steps on embedded: {created} collections created, "
        f"{updated} validators updated, {indexed} indexes created.",
        *(f"Recorded {m.id} (checksum {m.checksum[:12]}) in nsn_migrations." for m in MIGRATIONS),
    ]


def test_upgrade_dry_run_json_names_each_step_migration(uri: str) -> None:
    run("upgrade", "0001", "--uri", uri)
    result = run("upgrade", "--uri", uri, "--dry-run", "--json")
    data = json.loads(result.stdout)
    assert data["dry_run"] is True
    assert {step["migration"] for step in data["steps"]} == set(MIGRATIONS.ids[1:])
    assert len(data["steps"]) == steps_after("0001")
    assert _statuses(uri) == ["applied"] + ["pending"] * (len(MIGRATIONS) - 1)  # nothing written


@pytest.mark.parametrize("target", [NEXT, "00", "base"])
def test_a_bad_upgrade_target_is_one_line_before_connecting(uri: str, target: str) -> None:
    result = run("upgrade", target, "--uri", uri)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "embedded" not in result.stderr  # refused before the database was opened


def test_upgrade_against_a_server_asks_or_refuses(
    fake_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = run("upgrade", "0001", "--uri", REAL_URI)
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert fake_server.list_collection_names() == []
    monkeypatch.setattr("nsn_store.cli.schema.stdin_is_interactive", lambda: True)
    asked = run("upgrade", "0001", "--uri", REAL_URI, input="y\n")
    assert asked.exit_code == 0 and f"Apply these {STEPS[INITIAL]} steps" in asked.stderr
    assert WORKER_STATE_COLLECTIONS.isdisjoint(fake_server.list_collection_names())


# ------------------------------------------------------------------ downgrade


def _at_head(uri: str) -> Any:
    assert run("init", "--uri", uri).exit_code == 0
    return connection.connect(uri)


@pytest.mark.parametrize(
    ("answer", "code"), [(None, 2), ("prod\n", 1)], ids=["no-input", "wrong-name"]
)
def test_downgrade_refuses_without_yes_or_the_right_name(
    uri: str, answer: str | None, code: int
) -> None:
    db = _at_head(uri)
    result = run("downgrade", "0001", "--uri", uri, input=answer)
    assert result.exit_code == code
    assert f"This reverts {INBOUND_ADDRESS}, {WORKER_STATE} on database 'nsn'" in result.stderr
    assert "it drops workers, jobRuns, rateLimitBuckets and every document in them" in (
        result.stderr
    )
    assert "nothing was changed" in result.stderr
    assert set(db.list_collection_names()) >= WORKER_STATE_COLLECTIONS
    assert "by_providerAddress" in db.tenants.index_information()
    assert _statuses(uri) == ["applied"] * len(MIGRATIONS)


@pytest.mark.parametrize("args", [("--yes",), ()], ids=["yes-flag", "typed-name"])
def test_downgrade_with_consent_reverts_0002(uri: str, args: tuple[str, ...]) -> None:
    db = _at_head(uri)
    result = run("downgrade", "0002", "--uri", uri, "--yes")  # 0003 first
    assert result.exit_code == 0, result.output
    result = run("downgrade", "0001", "--uri", uri, *args, input=None if args else "nsn\n")
    assert result.exit_code == 0, result.output
    assert f"  revert {WORKER_STATE}:" in result.stdout
    assert "    - collMod workflowSteps (validator)" in result.stdout
    assert (
        f"Reverted {WORKER_STATE} on embedded: 4 steps, 3 collections dropped "
        "(workers, jobRuns, rateLimitBuckets)." in result.stdout
    )
    assert f"The database is at {INITIAL}." in result.stdout
    assert WORKER_STATE_COLLECTIONS.isdisjoint(db.list_collection_names())
    assert _statuses(uri) == ["applied"] + ["pending"] * (len(MIGRATIONS) - 1)
    assert run("verify", "--uri", uri).exit_code == 1  # the head is not there any more


def test_downgrade_from_the_head_to_0001_reverts_0003_then_0002(uri: str) -> None:
    db = _at_head(uri)
    result = run("downgrade", "0001", "--uri", uri, "--yes")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.index(f"  revert {INBOUND_ADDRESS}:") < text.index(f"  revert {WORKER_STATE}:")
    assert "    - drop index tenants.by_providerAddress" in text
    assert (  # 5 steps: 0003's drop index, then 0002's collMod and three drops
        f"Reverted {INBOUND_ADDRESS}, {WORKER_STATE} on embedded: "
        "5 steps, 3 collections dropped (workers, jobRuns, rateLimitBuckets)." in text
    )
    assert "by_providerAddress" not in db.tenants.index_information()


def test_downgrade_to_0002_drops_one_index_and_asks_first(uri: str) -> None:
    db = _at_head(uri)
    refused = run("downgrade", "0002", "--uri", uri)
    assert refused.exit_code == 2
    assert (
        f"This reverts {INBOUND_ADDRESS} on database 'nsn' on embedded: no collection is dropped."
        in refused.stderr
    )
    assert "by_providerAddress" in db.tenants.index_information()
    result = run("downgrade", "0002", "--uri", uri, "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        f"  revert {INBOUND_ADDRESS}:",
        "    - drop index tenants.by_providerAddress",
        "    - delete its record in nsn_migrations",
        f"Reverted {INBOUND_ADDRESS} on embedded: 1 steps, 0 collections dropped (none).",
        f"The database is at {WORKER_STATE}.",
    ]
    assert "by_providerAddress" not in db.tenants.index_information()
    assert _history(uri)["current"] == WORKER_STATE
    assert run("verify", "--uri", uri).exit_code == 1  # the head is not there any more
    assert run("upgrade", "--uri", uri).exit_code == 0
    assert run("verify", "--uri", uri).exit_code == 0


def test_downgrade_dry_run_writes_nothing(uri: str) -> None:
    db = _at_head(uri)
    text = run("downgrade", "base", "--uri", uri, "--dry-run")
    assert text.exit_code == 0 and "Dry run: nothing was written." in text.stdout
    assert f"  revert {WORKER_STATE}:" in text.stdout and f"  revert {INITIAL}:" in text.stdout
    data = json.loads(run("downgrade", "0001", "--uri", uri, "--dry-run", "--json").stdout)
    assert data["target"] == INITIAL and [m["migration"] for m in data["migrations"]] == [
        INBOUND_ADDRESS,
        WORKER_STATE,
    ]
    assert set(db.list_collection_names()) >= WORKER_STATE_COLLECTIONS


def test_downgrade_with_nothing_newer_says_so_and_needs_no_consent(uri: str) -> None:
    run("upgrade", "0001", "--uri", uri)
    result = run("downgrade", "0001", "--uri", uri)
    assert result.exit_code == 0
    assert f"Nothing to do: no migration newer than {INITIAL} is recorded" in result.stdout


def test_downgrade_json_result(uri: str) -> None:
    _at_head(uri)
    data = json.loads(run("downgrade", "0001", "--uri", uri, "--yes", "--json").stdout)
    assert list(data) == ["target", "host", "status", "reverted", "steps", "moderated"]
    assert (data["target"], data["status"], data["reverted"]) == (
        INITIAL,
        "reverted",
        [INBOUND_ADDRESS, WORKER_STATE],
    )


def test_downgrade_stops_on_data_the_restored_validator_refuses(uri: str) -> None:
    db = _at_head(uri)
    step = models.WorkflowStep(
        workflowId=ObjectId(),
        tenantId=ObjectId(),
        order=0,
        channel="sms",
        anchorOffsetSeconds=-3600,  # 0001's validator has no such field
        createdAt=datetime.now(timezone.utc),
    )
    db.workflowSteps.insert_one(step.to_document())
    refused = run("downgrade", "0001", "--uri", uri, "--yes")
    assert refused.exit_code == 2 and "--allow-moderate" in refused.stderr
    assert set(db.list_collection_names()) >= WORKER_STATE_COLLECTIONS
    allowed = run("downgrade", "0001", "--uri", uri, "--yes", "--allow-moderate")
    assert allowed.exit_code == 0
    assert "validationLevel 'moderate' applied to workflowSteps" in allowed.stdout


def test_the_default_file_keeps_what_upgrade_and_downgrade_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    assert run("upgrade").exit_code == 0
    assert run("downgrade", "0001", "--yes").exit_code == 0
    history = run("history", "--json")
    assert "reading its last saved state" in history.stderr
    assert [e["status"] for e in json.loads(history.stdout)["migrations"]] == ["applied"] + [
        "pending"
    ] * (len(MIGRATIONS) - 1)


# ------------------------------------------------------------------ history


def test_history_json_is_stable(uri: str) -> None:
    _at_head(uri)
    first = run("history", "--uri", uri, "--json")
    second = run("history", "--uri", uri, "--json")
    assert first.exit_code == 0 and first.stdout == second.stdout
    data = json.loads(first.stdout)
    assert (data["head"], data["current"]) == (HEAD, HEAD)
    assert [m["id"] for m in data["migrations"]] == list(MIGRATIONS.ids)
    assert all(m["checksum_matches"] and m["host"] == "embedded" for m in data["migrations"])


def test_history_text_shows_each_migration(uri: str) -> None:
    run("upgrade", "0001", "--uri", uri)
    lines = run("history", "--uri", uri).stdout.splitlines()
    assert lines[0] == f"Head {HEAD}; the database is at {INITIAL}."
    assert lines[1].split()[:2] == [INITIAL, "applied"]
    assert f"host embedded  checksum ok, {STEPS[INITIAL]} steps" in lines[1]
    assert [line.split() for line in lines[2:]] == [[id_, "pending"] for id_ in MIGRATIONS.ids[1:]]


def test_history_on_a_missing_database_file_is_all_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    result = run("history")
    assert result.exit_code == 0
    assert f"Head {HEAD}; the database is at base." in result.stdout
    assert not (connection.default_data_dir() / connection.DATA_FILE).exists()  # never writes


def test_status_lists_every_migration_record(uri: str) -> None:
    run("upgrade", "0001", "--uri", uri)
    status = run("status", "--uri", uri).stdout
    assert f"Migration {INITIAL}: applied ({STEPS[INITIAL]} steps recorded" in status
    assert f"Migration {WORKER_STATE}: not recorded" in status
    assert f"migration {WORKER_STATE} is not recorded in nsn_migrations" in status


@pytest.mark.parametrize(
    "args",
    [("upgrade", "--yes"), ("history",), ("history", "--json"), ("downgrade", "0001", "--yes")],
    ids=["upgrade", "history", "history-json", "downgrade"],
)
def test_passwords_never_appear(fake_server: Any, args: tuple[str, ...]) -> None:
    run("init", "--uri", REAL_URI, "--yes")
    result = run(args[0], "--uri", REAL_URI, *args[1:])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert SECRET not in result.stdout + result.stderr


def test_help_lists_the_migration_commands() -> None:
    result = run("--help")
    for command in ("upgrade", "downgrade", "history"):
        assert command in result.stdout
    assert "TARGET" in run("downgrade", "--help").stdout


def test_export_files_are_the_head_specs(tmp_path: Path) -> None:
    assert run("export", "--dir", str(tmp_path)).exit_code == 0
    names = sorted(path.name for path in tmp_path.glob("*.json"))
    assert names[-3:] == ["13-rateLimitBuckets.json", "14-jobRuns.json", "15-workers.json"]
