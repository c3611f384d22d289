"""CLI manners: JSON errors, Ctrl-C, empty URIs, DNS failures, database names, no needless I/O."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nsn_store import connection
from nsn_store.cli import main
from nsn_store.embedded._persist import WriterLock
from nsn_store.errors import DocumentValidationError, translated
from nsn_store.migration import init_schema

SECRET = "hunter2"
UNREACHABLE = f"mongodb://admin:{SECRET}@127.0.0.1:1/nsn?serverSelectionTimeoutMS=300"
#: The keys every JSON error has, whatever else it carries.
ERROR_KEYS = ["type", "message", "exit_code"]


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def json_error(result: Result) -> dict[str, Any]:
    """Return the error object a ``--json`` run printed on stdout (the whole of stdout)."""
    data = json.loads(result.stdout)
    assert list(data) == ["error"]
    error: dict[str, Any] = data["error"]
    assert list(error)[:3] == ERROR_KEYS
    assert error["exit_code"] == result.exit_code
    assert result.stderr.splitlines()[-1] == f"error: {error['message']}"  # after any banner
    return error


@pytest.fixture
def uri(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    return f"mongomock://manners-{uuid.uuid4().hex[:10]}/nsn"


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every DNS lookup fail as for an unknown name; return the names looked up."""
    import dns.resolver

    asked: list[str] = []

    def nxdomain(name: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(name))
        raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(str(name))])

    monkeypatch.setattr(dns.resolver, "resolve", nxdomain)
    return asked


# ---------------------------------------------------------------- errors under --json


@pytest.mark.parametrize(
    ("args", "error_type", "code"),
    [
        (("status", "--json", "--bogus"), "UsageError", 2),
        (("init", "--json", "--lock-timeout", "nan"), "UsageError", 2),
        (("status", "--json", "--uri", UNREACHABLE), "ConnectionFailedError", 2),
        (("status", "--json", "--uri", "mongodb://h/a.b"), "InvalidArgumentError", 2),
        (("status", "--json", "--uri", "postgres://u:pw@h/db"), "ConfigurationError", 2),
        (("status", "--json", "--uri", ""), "UsageError", 2),
        (("worker", "--once", "--json", "--tenant", "nope"), "InvalidIdError", 2),
        (("worker", "--once", "--json", "--sender", "os:sep"), "ConfigurationError", 2),
    ],
    ids=[
        "unknown-option",
        "bad-number",
        "unreachable",
        "database-name",
        "scheme",
        "empty-uri",
        "bad-tenant-id",
        "bad-sender",
    ],
)
def test_under_json_every_error_is_one_json_object_on_stdout(
    args: tuple[str, ...], error_type: str, code: int
) -> None:
    result = run(*args)
    assert result.exit_code == code
    error = json_error(result)
    assert error["type"] == error_type
    assert SECRET not in result.stdout + result.stderr


def test_without_json_an_error_leaves_stdout_empty() -> None:
    result = run("status", "--uri", UNREACHABLE)
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1


def test_a_json_error_carries_the_errors_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    target = tmp_path / "nsn.bson"
    with WriterLock(target, "nsn-store worker (another terminal)"):
        result = run("init", "--json", "--uri", connection.file_uri(target))
    assert result.exit_code == 2
    error = json_error(result)
    assert error["type"] == "DatabaseLockedError"
    assert "nsn-store worker (another terminal)" in error["holder"]
    refused = run("status", "--json", "--uri", "mongodb://h/a.b")
    assert json_error(refused)["argument"] == "uri"


def test_a_command_refusal_is_json_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal the command itself decides (an unattended init on a server) keeps exit 2."""
    db = connection.connect(f"mongomock://fake-{uuid.uuid4().hex[:10]}/nsn")
    monkeypatch.setattr(connection, "connect", lambda uri, **kwargs: db)
    monkeypatch.setattr(connection, "is_embedded", lambda database: False)
    result = run("init", "--uri", f"mongodb://admin:{SECRET}@db.example.com/nsn", "--json")
    assert result.exit_code == 2
    error = json_error(result)
    assert error["type"] == "CommandError" and "--yes" in error["message"]
    assert SECRET not in result.stdout + result.stderr


def test_an_unanswered_prompt_is_a_json_refusal(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run("init", "--uri", uri)
    monkeypatch.setattr("nsn_store.cli.schema.click.prompt", _raise_abort)
    result = run("drop", "--uri", uri, "--json")
    assert result.exit_code == 2  # drop turns an unanswered prompt into its own refusal
    assert json_error(result)["type"] == "CommandError"


def _raise_abort(*args: Any, **kwargs: Any) -> Any:
    import click

    raise click.Abort()


# ---------------------------------------------------------------- validation errors name the field


@pytest.fixture
def validation_error() -> DocumentValidationError:
    """A real validation failure from the embedded database: a contact with a bad phone."""
    db = connection.connect(f"mongomock://invalid-{uuid.uuid4().hex[:10]}/nsn")
    init_schema(db)
    from bson import ObjectId

    from nsn_store.clock import SystemClock

    bad = {"tenantId": ObjectId(), "phone": "555-0100", "createdAt": SystemClock().now()}
    with pytest.raises(DocumentValidationError) as caught, translated(collection="contacts"):
        db.contacts.insert_one(bad)
    return caught.value


def test_a_validation_error_names_the_failing_field_and_rule(
    uri: str, validation_error: DocumentValidationError, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise validation_error

    monkeypatch.setattr("nsn_store.cli.schema.migration.schema_status", refuse)
    plain = run("status", "--uri", uri)
    assert plain.exit_code == 2
    assert plain.stderr.splitlines()[-1] == (
        "error: document failed validation in contacts: phone: pattern"
    )
    error = json_error(run("status", "--uri", uri, "--json"))
    assert error["type"] == "DocumentValidationError"
    assert error["rules"] == ["phone: pattern"]
    assert error["collection"] == "contacts" and error["server_code"] == 121


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_inside_a_command_exits_130_with_one_line(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("nsn_store.cli.schema.migration.schema_status", interrupted)
    result = run("status", "--uri", uri)
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == "error: interrupted (Ctrl-C)"
    assert "Traceback" not in result.output
    assert json_error(run("status", "--uri", uri, "--json"))["type"] == "Interrupted"


def test_ctrl_c_while_parsing_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(type(main), "parse_args", interrupted)
    result = run("status")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines() == ["error: interrupted (Ctrl-C)"]


INTERRUPTED_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from nsn_store.cli import main
    from nsn_store.migration import _runner

    def slow_plan(db, **kwargs):
        print("READY", file=sys.stderr, flush=True)
        time.sleep(60)

    _runner.plan = slow_plan
    main(["init", "--dry-run", "--uri", "mongomock://interrupted/nsn"])
    """
)


def test_a_real_sigint_exits_130_without_a_traceback() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != connection.ENV_VAR},
    )
    assert child.stderr is not None
    lines = []
    for line in child.stderr:  # wait until the command runs
        lines.append(line)
        if line.startswith("READY"):
            break
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted (Ctrl-C)"]
    assert out == ""


# ---------------------------------------------------------------- URIs and database names


def test_an_empty_uri_is_an_error_not_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("status", "--uri", "")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--uri': the URI is empty")
    assert len(result.stderr.splitlines()) == 1
    assert "embedded development database kept in" not in result.stderr  # nothing opened


def test_an_srv_host_that_does_not_resolve_says_so(no_dns: list[str]) -> None:
    result = run("status", "--uri", f"mongodb+srv://app:{SECRET}@cluster0.nowhere.example/nsn")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "error: could not resolve the host 'cluster0.nowhere.example' of "
        "mongodb+srv://app:***@cluster0.nowhere.example/nsn (DNS lookup failed: "
    )
    assert "Traceback" not in result.output and SECRET not in result.output
    assert no_dns  # it really asked DNS
    assert (
        json_error(run("status", "--json", "--uri", "mongodb+srv://cluster0.nowhere.example/nsn"))[
            "type"
        ]
        == "ConnectionFailedError"
    )


@pytest.mark.parametrize(
    "bad_uri",
    [
        "mongodb://127.0.0.1:1/a.b",
        "mongodb+srv://cluster0.nowhere.example/a$b",
        "mongomock://localhost/a%20b",
        f"mongodb://127.0.0.1:1/{'x' * 64}",
        "mongodb://127.0.0.1:1/a%00b",
        "mongodb://127.0.0.1:1/a%2Fb",
        'mongomock://localhost/a"b',
        "mongomock://localhost/a%5Cb",
    ],
    ids=["dot", "dollar-srv", "space", "64-bytes", "nul", "slash", "quote", "backslash"],
)
def test_database_names_are_refused_before_connecting(
    bad_uri: str, no_dns: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("status", "--uri", bad_uri)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid database name")
    assert not no_dns  # refused before any lookup, let alone a connection


def test_shard_dry_run_does_not_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_connection(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("shard --dry-run connected")

    monkeypatch.setattr(connection, "connect", no_connection)
    result = run("shard", "--dry-run", "--uri", UNREACHABLE.replace("/nsn", "/prod"))
    assert result.exit_code == 0, result.output
    assert "would run (dry run) on database 'prod':" in result.stdout
    data = json.loads(run("shard", "--dry-run", "--json", "--uri", UNREACHABLE).stdout)
    assert data["database"] == "nsn" and data["applied"] is False
    refused = run("shard", "--dry-run", "--uri", "mongodb://h/bad.name")
    assert refused.exit_code == 2 and "invalid database name" in refused.stderr


def test_shard_dry_run_on_the_default_names_nsn_and_opens_nothing() -> None:
    result = run("shard", "--dry-run")
    assert result.exit_code == 0
    assert "on database 'nsn':" in result.stdout and result.stderr == ""


def test_export_check_outside_a_checkout_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("export", "--check")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert str(tmp_path / "collections") in line and "--dir" in line
    assert json_error(run("export", "--check", "--json"))["path"] == str(tmp_path / "collections")
