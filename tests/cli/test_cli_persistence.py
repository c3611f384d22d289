"""The CLI's default database is a file: commands chain across processes, one writer at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nsn_store import connection, init_schema
from nsn_store.cli.worker import _checkpoints
from nsn_store.connection import connect, default_data_dir, file_uri
from nsn_store.embedded._persist import WriterLock
from nsn_store.errors import (
    ConfigurationError,
    DatabaseLockedError,
    InvalidArgumentError,
    NsnStoreError,
)
from nsn_store.schema._registry import SCHEMA


def _program() -> list[str]:
    """The installed ``nsn-store`` script next to this Python, else ``python -m nsn_store``."""
    script = Path(sys.executable).with_name("nsn-store")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nsn_store"]


def nsn_store(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``nsn-store *args`` in a fresh process on the default database in ``data_dir``."""
    env = {key: value for key, value in os.environ.items() if key != connection.ENV_VAR}
    env[connection.DATA_DIR_VAR] = str(data_dir)
    return subprocess.run(
        [*_program(), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_init_then_status_then_verify_chain_across_processes(data_dir: Path) -> None:
    init = nsn_store(data_dir, "init")
    assert init.returncode == 0, init.stderr
    assert f"development database kept in {data_dir / 'nsn.bson'}" in init.stderr
    status = nsn_store(data_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    collections = json.loads(status.stdout)["collections"]
    assert [c["name"] for c in collections if c["exists"]] == list(SCHEMA.names)
    assert len(collections) == len(SCHEMA)
    verify = nsn_store(data_dir, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not (data_dir / "nsn.bson.lock").exists()  # the writer gave its lock up


def test_a_second_writer_is_refused_naming_the_holder(data_dir: Path) -> None:
    assert nsn_store(data_dir, "init").returncode == 0
    before = (data_dir / "nsn.bson").read_bytes()
    with WriterLock(data_dir / "nsn.bson", "nsn-store worker (test holder)"):
        refused = nsn_store(data_dir, "drop", "--yes")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [refused.stderr.strip()]  # one line
    assert refused.stderr.startswith("error: ")
    assert f"process {os.getpid()} on " in refused.stderr
    assert "nsn-store worker (test holder)" in refused.stderr
    assert (data_dir / "nsn.bson").read_bytes() == before  # nothing was dropped


def test_readers_work_while_a_writer_holds_the_lock(data_dir: Path) -> None:
    assert nsn_store(data_dir, "init").returncode == 0
    with WriterLock(data_dir / "nsn.bson", "nsn-store worker"):
        verify = nsn_store(data_dir, "verify")
        status = nsn_store(data_dir, "status")
        dry_run = nsn_store(data_dir, "init", "--dry-run")
    assert verify.returncode == 0, verify.stderr
    assert status.returncode == 0 and "The database matches the schema." in status.stdout
    assert "reading its last saved state" in status.stderr
    assert dry_run.returncode == 0 and "Nothing to do" in dry_run.stdout


def test_a_writer_that_fails_part_way_keeps_what_it_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a command wrote before failing stays written, as on a server (init resumes)."""
    from click.testing import CliRunner

    from nsn_store.cli import main

    monkeypatch.delenv(connection.ENV_VAR, raising=False)

    def half_init(db: Any, **options: Any) -> None:
        db.create_collection("tenants")
        raise NsnStoreError("interrupted after the first step")

    monkeypatch.setattr("nsn_store.cli.schema.migration.init_schema", half_init)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 2
    assert "error: interrupted after the first step" in result.stderr
    saved = connect(connection.default_file_uri(), read_only=True)
    assert saved.list_collection_names() == ["tenants"]


def test_a_file_uri_writer_saves_on_close_and_locks_until_then(tmp_path: Path) -> None:
    uri = file_uri(tmp_path / "dev db.bson")
    writer = connect(uri)
    writer.notes.insert_one({"_id": 1})
    with pytest.raises(DatabaseLockedError, match=f"process {os.getpid()}"):
        connect(uri)
    assert connect(uri, read_only=True).list_collection_names() == []  # nothing saved yet
    assert writer.client.save() == 1  # a checkpoint
    assert connect(uri, read_only=True).notes.find_one() == {"_id": 1}
    writer.notes.insert_one({"_id": 2})
    writer.client.close()
    writer.client.close()  # a second close does nothing
    with connect(uri).client as again:
        assert again["nsn"].notes.count_documents({}) == 2


def test_a_reader_never_saves(tmp_path: Path) -> None:
    uri = file_uri(tmp_path / "db.bson")
    reader = connect(uri, read_only=True)
    reader.notes.insert_one({"_id": 1})
    with pytest.raises(ConfigurationError, match="read-only"):
        reader.client.save()
    reader.client.close()
    assert not (tmp_path / "db.bson").exists()


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("mongomock:///", "names no file"),
        ("mongomock:///tmp/folder/", "names a folder"),
        ("mongomock:///tmp/a%00b", "NUL"),
        ("mongomock:///tmp/db.bson?x=1", "takes no options"),
    ],
    ids=["no-path", "folder", "nul", "options"],
)
def test_a_file_uri_that_names_no_file_is_refused(uri: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        connect(uri)


def test_arguments_are_checked_before_any_file_is_touched(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        connect(file_uri(tmp_path / "db.bson"), read_only="yes")  # type: ignore[arg-type]
    assert refused.value.argument == "read_only"
    with pytest.raises(InvalidArgumentError, match="timeout_ms"):
        connect(file_uri(tmp_path / "db.bson"), timeout_ms=-1)
    assert list(tmp_path.iterdir()) == []  # no lock, no file


def test_a_folder_is_not_a_database_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a folder"):
        connect(file_uri(tmp_path))


def test_host_uris_stay_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    connect("mongomock://stays-in-memory/nsn").notes.insert_one({"_id": 1})
    assert connection.embedded_file(connect("mongomock://stays-in-memory/nsn")) is None
    assert not default_data_dir().exists()


def test_the_worker_saves_at_checkpoints_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "db.bson"
    db = connect(file_uri(path))
    init_schema(db)
    with _checkpoints(db, 0.05):
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.exists()  # saved before the worker stopped
        assert threading.active_count() >= 2
    db.client.close()
    assert set(SCHEMA.names) <= set(connect(file_uri(path), read_only=True).list_collection_names())


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_DATA_HOME": "/xdg"}, "/xdg/nsn-store"),
        ("linux", {"XDG_DATA_HOME": "relative"}, "~/.local/share/nsn-store"),
        ("linux", {}, "~/.local/share/nsn-store"),
        ("darwin", {}, "~/Library/Application Support/nsn-store"),
        ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/nsn-store"),
    ],
    ids=["xdg", "xdg-relative-ignored", "linux", "macos", "windows"],
)
def test_the_default_data_dir_follows_the_platform(
    monkeypatch: pytest.MonkeyPatch, platform: str, env: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv(connection.DATA_DIR_VAR)
    for name in ("XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert default_data_dir() == Path(expected).expanduser()


def test_nsn_data_dir_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(connection.DATA_DIR_VAR, str(tmp_path))
    assert connection.default_file_uri() == file_uri(tmp_path / "nsn.bson")


def test_a_worker_stopped_by_sigterm_saves_and_releases_the_lock(data_dir: Path) -> None:
    assert nsn_store(data_dir, "init").returncode == 0
    path, lock = data_dir / "nsn.bson", data_dir / "nsn.bson.lock"
    before = path.stat().st_ino
    env = {key: value for key, value in os.environ.items() if key != connection.ENV_VAR}
    env[connection.DATA_DIR_VAR] = str(data_dir)
    worker = subprocess.Popen(
        [*_program(), "worker", "--poll", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the worker never took the lock"
    time.sleep(2)  # the lock comes just before run() installs its signal handlers
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "stopped by SIGTERM" in out
    assert not lock.exists()
    assert path.stat().st_ino != before  # saved on shutdown: a new file renamed over the old
