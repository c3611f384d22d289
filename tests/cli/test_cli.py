"""The nsn-store CLI: output, prompts, exit codes, JSON and password masking."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from _chain_kit import STEPS, TOTAL_STEPS
from click.testing import CliRunner, Result

from nsn_store import connection
from nsn_store.cli import main
from nsn_store.schema._registry import MIGRATIONS, SCHEMA

SECRET = "hunter2"
REAL_URI = f"mongodb://admin:{SECRET}@db.example.com:27017/nsn"
UNREACHABLE = f"mongodb://admin:{SECRET}@127.0.0.1:1/nsn?serverSelectionTimeoutMS=300"


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


def _numbered_names(text: str) -> list[str]:
    return re.findall(r"^\s*\d+\. (\S+)", text, flags=re.MULTILINE)


@pytest.fixture
def default_file(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default database: the file in this test's private ``$NSN_DATA_DIR``."""
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    return connection.default_data_dir() / connection.DATA_FILE


def test_init_on_the_embedded_default_prints_the_plan_in_order(default_file: Path) -> None:
    result = run("init")
    assert result.exit_code == 0, result.output
    assert f"embedded development database kept in {default_file}" in result.stderr
    assert "saved when this command ends" in result.stderr
    assert _numbered_names(result.stdout) == list(SCHEMA.names)
    for spec in SCHEMA:
        for index in spec.indexes:
            assert re.search(rf"create\s+{index.name}\s", result.stdout), index.name
    assert f"Applied {TOTAL_STEPS} steps" in result.stdout
    saved = connection.connect(connection.file_uri(default_file), read_only=True)
    assert set(SCHEMA.names) <= set(saved.list_collection_names())


def test_the_default_file_keeps_init_for_the_next_commands(default_file: Path) -> None:
    assert run("init").exit_code == 0
    status = run("status")
    assert "reading its last saved state" in status.stderr
    assert "The database matches the schema." in status.stdout
    assert run("verify").exit_code == 0
    assert not default_file.with_name(default_file.name + ".lock").exists()


def test_a_reader_on_a_missing_default_file_says_init_creates_it(default_file: Path) -> None:
    result = run("status")
    assert result.exit_code == 0
    assert "no file yet, so empty: nsn-store init creates it" in result.stderr
    assert not default_file.exists()  # a reader never saves


def test_init_twice_says_nothing_to_do(uri: str) -> None:
    run("init", "--uri", uri)
    result = run("init", "--uri", uri)
    assert result.exit_code == 0
    assert "Nothing to do" in result.stdout
    assert _numbered_names(result.stdout) == list(SCHEMA.names)


def test_dry_run_prints_the_plan_and_writes_nothing(uri: str) -> None:
    result = run("init", "--uri", uri, "--dry-run")
    assert result.exit_code == 0
    assert _numbered_names(result.stdout) == list(SCHEMA.names)
    assert "Dry run: nothing was written." in result.stdout
    assert connection.connect(uri).list_collection_names() == []


def test_dry_run_json_lists_the_steps(uri: str) -> None:
    data = json.loads(run("init", "--uri", uri, "--dry-run", "--json").stdout)
    assert data["dry_run"] is True and len(data["steps"]) == TOTAL_STEPS
    assert connection.connect(uri).list_collection_names() == []


def test_dry_run_json_has_the_documented_shape(uri: str) -> None:
    """The keys the README promises: {"dry_run", "steps"}, each step the same as init's."""
    data = json.loads(run("init", "--uri", uri, "--dry-run", "--json").stdout)
    assert list(data) == ["dry_run", "steps"]
    for step in data["steps"]:
        assert list(step)[:4] == ["action", "collection", "index", "detail"]
    assert [s["action"] for s in data["steps"]][:2] == ["create_collection", "create_index"]
    applied = json.loads(run("init", "--uri", uri, "--json").stdout)
    assert [step["action"] for step in applied["steps"]] == [s["action"] for s in data["steps"]]


def test_progress_is_drawn_on_a_terminal(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nsn_store.cli.schema.stdout_is_terminal", lambda: True)
    result = run("init", "--uri", uri)
    assert result.exit_code == 0 and "Applying" in result.stderr


def test_init_against_a_server_refuses_when_nobody_can_confirm(fake_server: Any) -> None:
    result = run("init", "--uri", REAL_URI)
    assert result.exit_code == 2
    assert "refusing" in result.stderr and "--yes" in result.stderr
    assert _numbered_names(result.stdout) == list(SCHEMA.names)  # the plan was shown
    assert fake_server.list_collection_names() == []


@pytest.mark.parametrize(
    ("answer", "code", "applied"), [("n\n", 1, False), ("y\n", 0, True)], ids=["no", "yes"]
)
def test_init_against_a_server_asks_first(
    fake_server: Any, monkeypatch: pytest.MonkeyPatch, answer: str, code: int, applied: bool
) -> None:
    monkeypatch.setattr("nsn_store.cli.schema.stdin_is_interactive", lambda: True)
    result = run("init", "--uri", REAL_URI, input=answer)
    assert f"Apply these {TOTAL_STEPS} steps to database 'nsn'" in result.stderr
    assert result.exit_code == code
    assert (set(SCHEMA.names) <= set(fake_server.list_collection_names())) is applied


def test_init_yes_skips_the_prompt(fake_server: Any) -> None:
    result = run("init", "--uri", REAL_URI, "--yes")
    assert result.exit_code == 0 and "Apply these" not in result.stderr
    assert set(SCHEMA.names) <= set(fake_server.list_collection_names())


def test_init_refuses_a_conflicting_index_with_exit_2(uri: str) -> None:
    run("init", "--uri", uri)
    db = connection.connect(uri)
    db.tenants.drop_index("by_clerkOrgId")
    db.tenants.create_index([("clerkOrgId", 1)], name="by_clerkOrgId")
    result = run("init", "--uri", uri)
    assert result.exit_code == 2
    assert "CONFLICT" in result.stdout
    assert "error: index tenants.by_clerkOrgId conflicts" in result.stderr


def test_init_stops_on_existing_invalid_data_unless_allow_moderate(uri: str) -> None:
    db = connection.connect(uri)
    db.create_collection("tenants")
    db.tenants.insert_one({"_id": "old", "clerkOrgId": "org_1", "name": 7})
    refused = run("init", "--uri", uri)
    assert refused.exit_code == 2 and "--allow-moderate" in refused.stderr
    allowed = run("init", "--uri", uri, "--allow-moderate")
    assert allowed.exit_code == 0
    assert "validationLevel 'moderate' applied to tenants" in allowed.stdout


def _initialised(uri: str) -> Any:
    assert run("init", "--uri", uri).exit_code == 0
    return connection.connect(uri)


@pytest.mark.parametrize(
    ("answer", "code"), [(None, 2), ("prod\n", 1)], ids=["no-input", "wrong-name"]
)
def test_drop_refuses_without_yes_or_the_right_name(
    uri: str, answer: str | None, code: int
) -> None:
    db = _initialised(uri)
    result = run("drop", "--uri", uri, input=answer)
    assert result.exit_code == code
    assert "nothing was dropped" in result.stderr
    assert set(SCHEMA.names) <= set(db.list_collection_names())


@pytest.mark.parametrize("args", [("--yes",), ()], ids=["yes-flag", "typed-name"])
def test_drop_with_yes_or_the_typed_name_drops_in_reverse(uri: str, args: tuple[str, ...]) -> None:
    db = _initialised(uri)
    result = run("drop", "--uri", uri, *args, input=None if args else "nsn\n")
    assert result.exit_code == 0, result.output
    assert (
        f"Dropped {len(SCHEMA)} collections in reverse creation order: "
        + ", ".join(reversed(SCHEMA.names))
        in result.stdout
    )
    assert db.list_collection_names() == []


def test_verify_exit_codes(uri: str) -> None:
    db = _initialised(uri)
    assert run("verify", "--uri", uri).exit_code == 0
    db.users.drop_index("by_clerkUserId")
    drift = run("verify", "--uri", uri)
    assert drift.exit_code == 1
    assert "users: index by_clerkUserId missing" in drift.stdout
    assert run("verify", "--uri", UNREACHABLE).exit_code == 2


def test_status_shows_every_collection_and_the_backlog(uri: str) -> None:
    _initialised(uri)
    result = run("status", "--uri", uri)
    assert result.exit_code == 0
    assert _numbered_names(result.stdout) == list(SCHEMA.names)
    out = result.stdout
    for migration_id, steps in STEPS.items():
        assert f"Migration {migration_id}: applied ({steps} steps recorded" in out
    assert "Scheduled messages: 0 due now (oldest sendAt -)" in result.stdout
    assert "The database matches the schema." in result.stdout


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        (
            "status",
            [
                "migration",
                "checksum",
                "matches",
                "collections",
                "record",
                "lock",
                "extra_collections",
                "differences",
                "backlog",
                "workers",
            ],
        ),
        (
            "verify",
            [
                "migration",
                "checksum",
                "matches",
                "collections",
                "record",
                "lock",
                "extra_collections",
                "differences",
            ],
        ),
        ("init", ["migration", "checksum", "host", "status", "steps", "moderated"]),
    ],
    ids=["status", "verify", "init"],
)
def test_json_output_is_parseable_and_stable(uri: str, command: str, keys: list[str]) -> None:
    _initialised(uri)
    first = run(command, "--uri", uri, "--json")
    second = run(command, "--uri", uri, "--json")
    assert first.exit_code == 0
    assert list(json.loads(first.stdout)) == keys
    assert _without_clock(json.loads(first.stdout)) == _without_clock(json.loads(second.stdout))


def _without_clock(data: dict[str, Any]) -> dict[str, Any]:
    """Drop the backlog's "now", the one value that changes between two runs."""
    if data.get("backlog"):
        data["backlog"].pop("now")
    return data


def test_verify_json_on_drift(uri: str) -> None:
    _initialised(uri).drop_collection("counters")
    result = run("verify", "--uri", uri, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "matches": False,
        "differences": ["counters: collection missing"],
    }


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("init", "--yes"), 0),
        (("init", "--dry-run", "--json"), 0),
        (("status",), 0),
        (("status", "--json"), 0),
        (("verify",), 1),
        (("drop", "--yes"), 0),
    ],
    ids=["init", "dry-run-json", "status", "status-json", "verify", "drop"],
)
@pytest.mark.parametrize(
    "password",
    [SECRET, f"{SECRET}#x", f"{SECRET} ?x"],
    ids=["plain", "hash", "space-question-mark"],
)
def test_passwords_never_appear_in_output(
    fake_server: Any, args: tuple[str, ...], code: int, password: str
) -> None:
    result = run(args[0], "--uri", REAL_URI.replace(SECRET, password), *args[1:])
    # The command really ran to its normal end (a crash would print no password either).
    assert result.exit_code == code, result.output
    assert result.stdout.strip()
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["init", "drop", "status", "verify"])
def test_unreachable_server_exits_2_with_the_masked_uri(command: str) -> None:
    result = run(command, "--uri", UNREACHABLE)
    assert result.exit_code == 2
    assert "error: cannot reach MongoDB at mongodb://admin:***@127.0.0.1:1" in result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("bad_uri", "problem"),
    [
        ("postgres://u:pw@host/db", "scheme 'postgres'"),
        ("mongodb://host:port/db", "Port"),
        ("mongodb://", "hostname"),
    ],
    ids=["wrong-scheme", "bad-port", "no-host"],
)
def test_malformed_uri_exits_2_naming_the_problem(bad_uri: str, problem: str) -> None:
    result = run("status", "--uri", bad_uri)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and problem in result.stderr


def test_uri_comes_from_the_environment(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(connection.ENV_VAR, uri)
    assert run("init").exit_code == 0
    assert set(SCHEMA.names) <= set(connection.connect(uri).list_collection_names())


def test_export_writes_then_check_detects_a_stale_file(tmp_path: Path) -> None:
    target = tmp_path / "collections"
    written = run("export", "--dir", str(target))
    assert written.exit_code == 0 and len(list(target.glob("*.json"))) == len(SCHEMA)
    assert run("export", "--dir", str(target), "--check").exit_code == 0
    first = min(target.glob("*.json"))
    first.write_text(first.read_text().replace('"unique": true', '"unique": false'))
    stale = run("export", "--dir", str(target), "--check")
    assert stale.exit_code == 1
    assert first.name in stale.stdout


def test_usage_errors_are_one_line_and_exit_2() -> None:
    result = run("status", "--bogus")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: No such option '--bogus'. (see 'main status --help')"
    ]


def test_a_bad_number_names_the_option_and_its_range() -> None:
    result = run("init", "--lock-timeout", "nan")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--lock-timeout': ")
    assert len(result.stderr.splitlines()) == 1


def test_a_refused_embedded_uri_prints_only_its_error() -> None:
    """The banner comes after connecting, so a refused URI gives exactly one line."""
    result = run("status", "--uri", "mongomock://localhost/bad.name")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: invalid database name 'bad.name' in 'mongomock://localhost/bad.name': "
        "it holds '.' (MongoDB refuses / \\ . space \" $ and NUL in a database name)"
    ]


def test_export_to_a_directory_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = run("export", "--dir", str(tmp_path / "afile" / "collections"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {str(tmp_path / 'afile' / 'collections')!r}: Not a directory"
    ]


def _readme_init_sample() -> list[str]:
    """Return the lines of the README's sample `nsn-store init` output (CLI reference)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    intro = "`nsn-store init` on the embedded default (stderr first, then stdout):"
    block = readme.split(intro, 1)[1].split("```", 2)[1]
    return block.strip("\n").splitlines()


def test_the_readme_sample_of_init_is_what_init_prints(default_file: Path) -> None:
    result = run("init")
    assert result.exit_code == 0, result.output
    printed = (result.stderr + result.stdout).replace(str(default_file), "{file}").splitlines()
    sample = [
        line.replace("/home/you/.local/share/nsn-store/nsn.bson", "{file}")
        for line in _readme_init_sample()
    ]
    assert sample[-1].startswith("Recorded ") and "  ..." in sample
    # Every shown line, in order; "..." stands for the lines left out.
    position = 0
    for line in sample:
        if line.strip() == "...":
            continue
        assert line in printed[position:], line
        position = printed.index(line, position) + 1
    assert printed[-len(MIGRATIONS) - 2 :] == sample[-len(MIGRATIONS) - 2 :]  # the totals
