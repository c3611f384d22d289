"""``nsn-store messages failed | requeue | show``: dead letters as an operator handles them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from click.testing import CliRunner, Result

from nsn_store import connection
from nsn_store.cli import main
from nsn_store.connection import connect, file_uri
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler._service import Scheduler

SECRET = "hunter2"
UNREACHABLE = f"mongodb://admin:{SECRET}@127.0.0.1:1/nsn?serverSelectionTimeoutMS=300"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


class World:
    """An embedded database with failed messages of two tenants (written by the scheduler)."""

    def __init__(self, uri: str, db: Any) -> None:
        self.uri, self.db = uri, db
        self.sched = Scheduler(db, max_attempts=1)
        self.a, self.b = ObjectId(), ObjectId()
        self.contacts = {
            t: db.contacts.insert_one({"tenantId": t, "createdAt": T0}).inserted_id
            for t in (self.a, self.b)
        }

    def fail(self, tenant: ObjectId, error: str) -> ObjectId:
        """Schedule one message of ``tenant`` due now and fail it for good with ``error``."""
        now = self.sched.clock.now()
        mid = self.sched.schedule(tenant, self.contacts[tenant], "sms", now)["_id"]
        [held] = self.sched.claim_due("w1", tenants=[tenant])
        self.sched.mark_failed(held, "w1", error)
        return mid

    def status(self, mid: ObjectId) -> str:
        return str(self.db.scheduledMessages.find_one({"_id": mid})["status"])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    uri = f"mongomock://messages-{uuid.uuid4().hex[:10]}/nsn"
    db = connect(uri)
    init_schema(db)
    return World(uri, db)


def test_failed_lists_each_message_with_its_last_error(world: World) -> None:
    first = world.fail(world.a, "carrier rejected: 30007")
    second = world.fail(world.b, "number\x1b[31m unreachable")  # provider text, a control char
    result = run("messages", "failed", "--uri", world.uri)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "2 messages failed for good (oldest failure first):"
    assert str(first) in lines[1] and "carrier rejected: 30007" in lines[1]
    assert str(second) in lines[2] and "\\x1b[31m unreachable" in lines[2]  # escaped
    assert "\x1b" not in result.stdout


def test_failed_json_has_stable_keys_and_filters_by_tenant_and_time(world: World) -> None:
    mine = world.fail(world.a, "busy")
    world.fail(world.b, "busy")
    result = run("messages", "failed", "--uri", world.uri, "--tenant", str(world.a), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["count"], report["limit"]) == (1, 100)
    [letter] = report["messages"]
    assert sorted(letter) == [
        "attempts", "channel", "contact_id", "failed_at", "last_error", "message_id", "send_at",
        "tenant_id",
    ]  # fmt: skip
    assert (letter["message_id"], letter["last_error"]) == (str(mine), "busy")
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    empty = run("messages", "failed", "--uri", world.uri, "--since", later)
    assert (empty.exit_code, empty.stdout.strip()) == (0, "no messages failed for good")


def test_a_full_page_says_how_to_see_more(world: World) -> None:
    for _ in range(3):
        world.fail(world.a, "busy")
    result = run("messages", "failed", "--uri", world.uri, "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "the first 2: pass --since" in result.stdout.splitlines()[-1]


def test_requeue_by_tenant_puts_them_back_once(world: World) -> None:
    mine = [world.fail(world.a, "outage") for _ in range(3)]
    theirs = world.fail(world.b, "outage")
    result = run("messages", "requeue", "--tenant", str(world.a), "--uri", world.uri, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"requeued": 3}
    assert [world.status(m) for m in mine] == ["scheduled"] * 3
    assert world.status(theirs) == "failed"
    again = run("messages", "requeue", "--tenant", str(world.a), "--uri", world.uri)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "requeued 0 failed messages: scheduled now, attempts reset"


def test_requeue_by_ids_and_by_window(world: World) -> None:
    ids = [world.fail(world.a, "outage") for _ in range(3)]
    result = run(
        "messages", "requeue", "--id", str(ids[0]), "--id", str(ids[1]), "--uri", world.uri
    )
    assert result.exit_code == 0, result.output
    assert [world.status(m) for m in ids] == ["scheduled", "scheduled", "failed"]
    window = run("messages", "requeue", "--since", "2000-01-01", "--uri", world.uri, "--json")
    assert json.loads(window.stdout) == {"requeued": 1}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "say what to requeue"),
        (("--id", str(ObjectId()), "--tenant", str(ObjectId())), "--id selects by itself"),
        (("--id", "nope"), "--id"),
        (("--tenant", "{'$ne': None}"), "--tenant"),
        (("--since", "yesterday"), "--since"),
        (("--since", "2026-01-02", "--until", "2026-01-01"), "until"),
    ],
    ids=["nothing", "id-and-tenant", "bad-id", "operator", "bad-time", "empty-window"],
)
def test_a_bad_requeue_is_one_line_and_exit_2_before_connecting(
    args: tuple[str, ...], words: str
) -> None:
    result = run("messages", "requeue", *args, "--uri", UNREACHABLE)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert words in result.stderr and "cannot reach" not in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_show_prints_the_message_and_its_timeline(world: World) -> None:
    mid = world.fail(world.a, "carrier rejected")
    result = run("messages", "show", str(mid), "--uri", world.uri)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"message {mid} (tenant {world.a})"
    assert "  status: failed" in lines and "  lastError: carrier rejected" in lines
    assert lines[lines.index("events (2, oldest first):") + 1 :][0].split()[1] == "queued"
    assert "error=carrier rejected" in lines[-1] and "final=True" in lines[-1]
    as_json = json.loads(run("messages", "show", str(mid), "--uri", world.uri, "--json").stdout)
    assert as_json["message"]["_id"] == str(mid)
    assert [e["eventType"] for e in as_json["events"]] == ["queued", "failed"]


def test_show_of_an_unknown_or_foreign_message_is_not_found(world: World) -> None:
    mid = world.fail(world.a, "busy")
    missing = run("messages", "show", str(ObjectId()), "--uri", world.uri)
    foreign = run("messages", "show", str(mid), "--tenant", str(world.b), "--uri", world.uri)
    for result in (missing, foreign):
        assert result.exit_code == 2 and "not found" in result.stderr
    bad = run("messages", "show", "nope", "--uri", UNREACHABLE, "--json")
    assert bad.exit_code == 2 and "cannot reach" not in bad.stderr
    assert json.loads(bad.stdout)["error"]["type"] == "InvalidIdError"


def test_an_unreachable_server_is_one_line_with_the_uri_masked() -> None:
    result = run("messages", "failed", "--uri", UNREACHABLE)
    assert result.exit_code == 2
    assert "error: cannot reach MongoDB at mongodb://admin:***@127.0.0.1:1" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_requeue_saves_a_file_backed_database(tmp_path: Path) -> None:
    uri = file_uri(tmp_path / "dev.bson")
    with connect(uri).client as client:
        db = client.get_database("nsn")
        init_schema(db)
        world = World(uri, db)
        mid = world.fail(world.a, "outage")
    assert run("messages", "requeue", "--id", str(mid), "--uri", uri).exit_code == 0
    saved = connect(uri, read_only=True)
    assert saved.scheduledMessages.find_one({"_id": mid})["status"] == "scheduled"
    listed = run("messages", "failed", "--uri", uri, "--json")  # a reader: no lock, no save
    assert listed.exit_code == 0 and json.loads(listed.stdout)["count"] == 0
