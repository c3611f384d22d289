"""``nsn-store status`` shows the live workers of the registry (migration 0002)."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from nsn_store import connection
from nsn_store._flow import run
from nsn_store.cli import main
from nsn_store.clock import SystemClock
from nsn_store.migration import init_schema
from nsn_store.worker._registry import register, worker_document


def _database() -> tuple[str, object]:
    uri = f"mongomock://status-{uuid.uuid4().hex[:10]}/nsn"
    db = connection.connect(uri)
    init_schema(db)
    return uri, db


def test_status_lists_a_live_worker_in_json_and_text() -> None:
    uri, db = _database()
    run(db, register("box-1:42", worker_document(SystemClock().now(), 8, None)))

    reply = CliRunner().invoke(main, ["status", "--uri", uri, "--json"])
    assert reply.exit_code == 0, reply.output
    workers = json.loads(reply.stdout)["workers"]
    assert [(w["worker_id"], w["concurrency"], w["tenants"]) for w in workers] == [
        ("box-1:42", 8, None)
    ]

    text = CliRunner().invoke(main, ["status", "--uri", uri]).stdout
    assert "Workers: 1 live" in text and "box-1:42" in text and "concurrency 8" in text


def test_status_says_when_no_worker_is_live() -> None:
    uri, _ = _database()
    reply = CliRunner().invoke(main, ["status", "--uri", uri, "--json"])
    assert json.loads(reply.stdout)["workers"] == []
    text = CliRunner().invoke(main, ["status", "--uri", uri]).stdout
    assert "Workers: none heard from in the last 3 minutes" in text


def test_status_before_init_has_no_workers_key_value() -> None:
    uri = f"mongomock://status-{uuid.uuid4().hex[:10]}/nsn"
    reply = CliRunner().invoke(main, ["status", "--uri", uri, "--json"])
    assert json.loads(reply.stdout)["workers"] is None
