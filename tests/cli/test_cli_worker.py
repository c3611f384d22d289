"""``nsn-store worker`` and ``nsn-store health`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from click.testing import CliRunner

from nsn_store import connection
from nsn_store.cli import main
from nsn_store.migration._runner import init_schema
from nsn_store.scheduler._service import Scheduler

TESTS = Path(__file__).parents[1]  # the tests folder: _senders lives there


def seeded(count: int, *, ago: timedelta = timedelta(seconds=1)) -> tuple[str, Any]:
    """Return a fresh embedded URI holding ``count`` due messages, and its database."""
    uri = f"mongomock://worker-{uuid.uuid4().hex[:10]}/nsn"
    db = connection.connect(uri)
    init_schema(db)
    scheduler = Scheduler(db)
    tenant = ObjectId()
    contact = db.contacts.insert_one(
        {"tenantId": tenant, "phone": "+15550100", "createdAt": scheduler.clock.now()}
    ).inserted_id
    for _ in range(count):
        scheduler.schedule(
            tenant,
            contact,
            "sms",
            scheduler.clock.now() - ago,
            payload={"body": "Your appointment is tomorrow"},
        )
    return uri, db


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_worker_once_sends_what_is_due_and_reports_json(monkeypatch: Any) -> None:
    uri, db = seeded(3)
    result = run("worker", "--once", "--json", "--uri", uri, "--log-level", "WARNING")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["claimed"], report["sent"], report["handed_back"]) == (3, 3, 0)
    assert db.scheduledMessages.count_documents({"status": "sent"}) == 3


def test_a_sender_that_fails_for_good_fails_the_messages(monkeypatch: Any) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    uri, db = seeded(2)
    result = run("worker", "--once", "--json", "--uri", uri, "--sender", "_senders:failing")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["failed"] == 2
    assert db.scheduledMessages.count_documents({"status": "failed"}) == 2


def test_a_bad_sender_is_one_line_and_exit_2() -> None:
    for spec, words in [
        ("nope", "module:attribute"),
        ("no_such_module_x:f", "cannot import"),
        ("os:nope", "has no 'nope'"),
        ("os:sep", "not callable"),
    ]:
        result = run("worker", "--once", "--sender", spec)
        assert result.exit_code == 2
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_health_exits_1_when_the_oldest_due_message_waited_too_long() -> None:
    uri, _ = seeded(1, ago=timedelta(minutes=10))
    ok = run("health", "--uri", uri, "--max-age", "900", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["healthy"] is True
    late = run("health", "--uri", uri, "--max-age", "300", "--json")
    assert late.exit_code == 1
    assert json.loads(late.stdout)["oldest_due_waited_seconds"] >= 600


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from bson import ObjectId
    from nsn_store import connection
    from nsn_store.cli import main
    from nsn_store.migration import init_schema
    from nsn_store.scheduler import Scheduler

    uri = "mongomock://sigterm/nsn"
    db = connection.connect(uri)
    init_schema(db)
    s = Scheduler(db)
    tenant = ObjectId()
    contact = db.contacts.insert_one({"tenantId": tenant, "phone": "+15550100",
                                      "createdAt": s.clock.now()}).inserted_id
    for _ in range(12):
        s.schedule(tenant, contact, "sms", s.clock.now(), payload={"body": "hi"})
    code = 0
    try:
        main(["worker", "--once", "--json", "--uri", uri, "--sender", "_senders:slow",
              "--concurrency", "2", "--batch", "6"], standalone_mode=True)
    except SystemExit as exit:
        code = exit.code or 0
    docs = list(db.scheduledMessages.find({}, {"status": 1, "attempts": 1, "lockedUntil": 1}))
    print("STATE " + json.dumps({"code": code, "messages": [
        {"status": d["status"], "attempts": d["attempts"], "locked": "lockedUntil" in d}
        for d in docs]}), flush=True)
    """
)


def test_sigterm_stops_the_worker_gracefully_and_hands_back_unstarted_claims() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stderr is not None
    for line in child.stderr:  # wait until the first send has started
        if line.startswith("sending "):
            break
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    state = json.loads(next(line for line in out.splitlines() if line.startswith("STATE "))[6:])
    report = json.loads(out[: out.index("STATE ")])
    assert state["code"] == 0, err
    assert report["stopped_by"] == "SIGTERM"
    # Claims are sized to idle senders, so what was claimed was in flight: it finished.
    assert report["sent"] >= 1 and report["sent"] + report["handed_back"] == report["claimed"]
    assert report["claimed"] < 12  # stopped before the queue was drained
    statuses = [m["status"] for m in state["messages"]]
    assert statuses.count("sent") == report["sent"]
    assert "processing" not in statuses  # nothing left waiting for a lease to expire
    for message in state["messages"]:
        if message["status"] == "scheduled":
            assert message["attempts"] == 0 and not message["locked"]
    assert "Traceback" not in err


def test_a_bad_tenant_id_is_refused_before_the_database_is_opened(
    tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("NSN_DATA_DIR", str(tmp_path))
    for command in (["worker", "--once"], ["health"]):
        result = run(*command, "--tenant", '{"$ne": null}')
        assert result.exit_code == 2
        assert "--tenant must be an ObjectId" in result.stderr
        assert "using the embedded" not in result.stderr  # nothing opened, nothing locked
    assert list(tmp_path.iterdir()) == []
