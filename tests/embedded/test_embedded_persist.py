"""The file-backed embedded database: atomic saves, one writer, readers during a write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nsn_store import init_schema, verify_schema
from nsn_store.embedded._persist import WriterLock, load_into, save_from
from nsn_store.errors import ConfigurationError, DatabaseLockedError
from nsn_store.testing import mongomock_client


def _saved(path: Path, documents: int) -> int:
    """Save a database with the schema and ``documents`` notes; return all documents saved."""
    client = mongomock_client()
    init_schema(client["nsn"])
    client["nsn"]["notes"].insert_many([{"n": n} for n in range(documents)])
    return save_from(client, path)


def test_a_saved_database_loads_with_its_schema_and_documents(tmp_path: Path) -> None:
    path = tmp_path / "db.bson"
    saved = _saved(path, 3)
    client = mongomock_client()
    assert load_into(client, path) == saved
    verify_schema(client["nsn"])  # raises DriftError on any difference
    assert [d["n"] for d in client["nsn"]["notes"].find().sort("n", 1)] == [0, 1, 2]


def test_a_missing_file_is_an_empty_database(tmp_path: Path) -> None:
    client = mongomock_client()
    assert load_into(client, tmp_path / "none.bson") == 0
    assert client.list_database_names() == []


def test_a_file_of_another_kind_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "other.bson"
    path.write_bytes(b"not bson at all")
    with pytest.raises(ConfigurationError, match=r"other\.bson"):
        load_into(mongomock_client(), path)


def test_a_save_that_fails_before_the_rename_leaves_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.bson"
    _saved(path, 2)
    before = path.read_bytes()
    client = mongomock_client()
    client["nsn"]["notes"].insert_one({"n": 99})

    def crash(*args: object) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        save_from(client, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["db.bson"]  # no temporary left


def test_a_process_killed_mid_save_leaves_the_previous_state_intact(tmp_path: Path) -> None:
    path = tmp_path / "db.bson"
    saved = _saved(path, 5)
    before = path.read_bytes()
    # A child that saves a large state slowly; it is killed while writing.
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from nsn_store.embedded import _persist
        from nsn_store.testing import mongomock_client
        client = mongomock_client()
        client["nsn"]["big"].insert_many([{{"n": n, "pad": "x" * 200}} for n in range(3000)])
        real = _persist._document_record  # one call per document written
        def slow(*args, **kwargs):
            time.sleep(0.001)
            return real(*args, **kwargs)
        _persist._document_record = slow
        print("saving", flush=True)
        _persist.save_from(client, Path({str(path)!r}))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "saving"
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    client = mongomock_client()
    assert load_into(client, path) == saved
    assert client["nsn"]["notes"].count_documents({}) == 5


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "db.bson"
    with WriterLock(path, "nsn-store init"), pytest.raises(DatabaseLockedError) as refused:
        WriterLock(path, "nsn-store worker").acquire()
    assert f"process {os.getpid()}" in str(refused.value)
    assert "nsn-store init" in str(refused.value)
    assert refused.value.holder is not None and "nsn-store init" in refused.value.holder
    with WriterLock(path, "nsn-store worker"):  # released: the next writer gets it
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "db.bson"
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(child.stdout)
    import json
    import socket

    lock = WriterLock(path)
    lock.path.write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead, "command": "crashed"})
    )
    with WriterLock(path, "next") as taken:
        assert taken.holder() == {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": "next",
        }
