"""The README runs: every Python snippet and every ``nsn-store`` command line in it is executed.

- **Python** (```` ```python ```` blocks) run in README order in one fresh
  process, in one namespace (a later snippet may use the names an earlier one
  defined, as a reader would), on the embedded database, with a private
  ``$NSN_DATA_DIR`` and no ``$NSN_MONGODB_URI``. A block whose next block (in
  the same section) is a ```` ```text ```` block must print exactly that text. A block defining
  ``test_*`` functions is also run by pytest (the plugin's fixtures, as a user's
  project gets them).
- **Shell** (```` ```sh ```` blocks): each line made only of ``nsn-store``
  commands (``a && b`` included) runs through click's CliRunner, in README
  order, on one private data directory (so ``init`` then ``status`` chain as
  they do for a user). It must exit 0, or the code its comment states
  (``# exits 1 ...``). Other shell lines (``docker``, ``pip``) are not
  commands of this package and are only counted; the two set-up lines at the
  top are checked by :func:`test_the_two_set_up_commands_are_true`.
- **Not run**, only with a reason the reader sees: a Python block whose first
  line is ``# not run: <reason>``, a shell block whose first line is, or a
  shell line ending in that comment. The counts and reasons are printed at the
  end of the module (``README snippets: ...``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from nsn_store import connection
from nsn_store.cli import main

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PYTHON = ("python", "py", "python3")
SHELL = ("sh", "bash", "shell", "console")
NOT_RUN = re.compile(r"#\s*not run:\s*(?P<reason>.+?)\s*$")
EXPECTED_EXIT = re.compile(r"#.*\bexits? (?P<code>[0-9]+)\b")


@dataclass(frozen=True)
class Block:
    """One fenced block of the README."""

    language: str
    line: int  # the line of its opening fence (1-based)
    text: str
    section: str

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.section})"

    @property
    def skip_reason(self) -> str | None:
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        found = NOT_RUN.match(first.strip())
        return found.group("reason") if found else None


@dataclass
class Tally:
    """What ran and what did not, for the closing summary."""

    python_run: int = 0
    pytest_examples: int = 0
    cli_run: int = 0
    other_shell: int = 0
    not_run: list[str] = field(default_factory=list)


TALLY = Tally()


def parse(text: str) -> list[Block]:
    """Return the README's fenced blocks, each with its section heading; indented ones too."""
    blocks: list[Block] = []
    section, fence, start, language, indent, body = "top", "", 0, "", 0, []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not fence:
            if stripped.startswith("#") and not line.startswith(" "):
                section = stripped.lstrip("#").strip()
            opening = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if opening:
                fence, language, start = opening.group(1), opening.group(2).lower(), number
                indent, body = len(line) - len(stripped), []
            continue
        if stripped.startswith(fence) and not stripped[len(fence) :].strip():
            code = "\n".join(part[indent:] if part[:indent].isspace() else part for part in body)
            blocks.append(Block(language, start, code + "\n", section))
            fence = ""
            continue
        body.append(line)
    assert not fence, f"README.md:{start}: a fenced block is never closed"
    return blocks


BLOCKS = parse(README.read_text(encoding="utf-8"))


def _shown_output(block: Block) -> Block | None:
    """Return the ``text`` block showing what ``block`` prints: the next block, same section."""
    later = [b for b in BLOCKS if b.line > block.line]
    if later and later[0].language == "text" and later[0].section == block.section:
        return later[0]
    return None


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how many snippets ran, and each one not run with its reason."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():  # shown on the terminal, passing or not
        reporter.write_line("")
        reporter.write_line(
            f"README snippets: {TALLY.python_run} Python blocks run "
            f"({TALLY.pytest_examples} also as pytest tests), {TALLY.cli_run} nsn-store "
            f"command lines run, {len(TALLY.not_run)} not run, {TALLY.other_shell} other "
            "shell lines (not nsn-store commands)"
        )
        for reason in TALLY.not_run:
            reporter.write_line(f"  not run: {reason}")


# ---------------------------------------------------------------- the set-up commands


def test_the_two_set_up_commands_are_true(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the first heading: exactly two commands, one for the main job, one for the tests."""
    top = [b for b in BLOCKS if b.section == "nsn-store"]
    assert [b.language for b in top] == ["sh", "sh"], [b.where for b in top]
    main_job, tests = (b.text.strip() for b in top)
    venv = "python3 -m venv .venv && . .venv/bin/activate && "
    assert main_job == venv + "python -m pip install . && nsn-store init"
    assert tests == venv + "python -m pip install '.[test]' && python -m pytest"
    (script,) = metadata.entry_points(group="console_scripts", name="nsn-store")
    assert script.value == "nsn_store.cli:main"
    requires = metadata.requires("nsn-store") or []
    test_extra = [r.split(";")[0] for r in requires if "test" in r.partition(";")[2]]
    assert any(r.startswith("pytest>") for r in test_extra), requires
    # The main job itself, on the default embedded database in a fresh data directory.
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    monkeypatch.setenv(connection.DATA_DIR_VAR, str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert "Applied" in result.stdout and "Recorded 0001_initial_schema" in result.stdout
    assert (tmp_path / "data" / connection.DATA_FILE).exists()


# ---------------------------------------------------------------- Python


DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback

    blocks = json.load(open(sys.argv[1], encoding="utf-8"))
    namespace = {"__name__": "__readme__"}
    results = []
    for block in blocks:
        out = io.StringIO()
        # Padding keeps the README's line numbers in tracebacks.
        source = "\\n" * block["line"] + block["text"]
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(source, "README.md", "exec"), namespace)
            results.append({"ok": True, "stdout": out.getvalue()})
        except BaseException:
            results.append({"ok": False, "stdout": out.getvalue(),
                            "error": traceback.format_exc(limit=-4)})
    json.dump(results, open(sys.argv[2], "w", encoding="utf-8"))
    """
)


def _environment(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != connection.ENV_VAR}
    env[connection.DATA_DIR_VAR] = str(data_dir)
    return env


def _python_blocks() -> tuple[list[Block], list[Block]]:
    runnable, skipped = [], []
    for block in BLOCKS:
        if block.language in PYTHON:
            (skipped if block.skip_reason else runnable).append(block)
    return runnable, skipped


def test_every_python_snippet_runs(tmp_path: Path) -> None:
    runnable, skipped = _python_blocks()
    TALLY.not_run += [f"{b.where}: {b.skip_reason}" for b in skipped]
    assert runnable, "the README has no Python snippet"
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([{"line": b.line, "text": b.text} for b in runnable]))
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(spec), str(out)],
        cwd=tmp_path,
        env=_environment(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-4000:]
    results = json.loads(out.read_text())
    failures = []
    for block, result in zip(runnable, results, strict=True):
        if not result["ok"]:
            failures.append(f"{block.where} failed:\n{result['error']}")
            continue
        shown = _shown_output(block)
        if shown is not None and result["stdout"] != shown.text:
            failures.append(
                f"{block.where} printed {result['stdout']!r}, the README shows "
                f"{shown.text!r} (README.md:{shown.line})"
            )
    TALLY.python_run = len(runnable)
    assert not failures, "\n\n".join(failures)


def test_pytest_examples_run_with_the_plugin(tmp_path: Path) -> None:
    """Blocks defining ``test_*`` functions pass under pytest with nsn-store's fixtures."""
    examples = [
        b
        for b in _python_blocks()[0]
        if re.search(r"^(async )?def test_", b.text, flags=re.MULTILINE)
    ]
    TALLY.pytest_examples = len(examples)
    if not examples:
        pytest.skip("the README shows no pytest example")
    for position, block in enumerate(examples):
        (tmp_path / f"test_readme_{position}.py").write_text(block.text, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=_environment(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    where = ", ".join(b.where for b in examples)
    assert done.returncode == 0, f"{where}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


# ---------------------------------------------------------------- shell


@dataclass(frozen=True)
class CommandLine:
    """One shell line of the README made of ``nsn-store`` commands."""

    block: Block
    text: str
    commands: list[list[str]]
    exit_code: int


def _logical_lines(text: str) -> Iterator[str]:
    """Yield the shell block's lines with backslash continuations joined."""
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""


def _command_lines() -> Iterator[CommandLine | str]:
    """Yield each runnable nsn-store line, or a string saying why a line is not run."""
    for block in BLOCKS:
        if block.language not in SHELL or block.section == "nsn-store":
            continue  # the two set-up commands have their own test
        if block.skip_reason:
            yield f"{block.where}: {block.skip_reason}"
            continue
        for line in _logical_lines(block.text):
            words = shlex.split(line, comments=True)
            if not words:
                continue
            reason = NOT_RUN.search(line)
            if reason:
                yield f"{block.where}: `{line.split('#')[0].strip()}`: {reason.group('reason')}"
                continue
            parts = _split_and(words)
            if not all(part and part[0] == "nsn-store" for part in parts):
                continue  # not this package's command (docker, pip, python)
            expected = EXPECTED_EXIT.search(line)
            code = int(expected.group("code")) if expected else 0
            yield CommandLine(block, line.split(" #")[0].strip(), parts, code)


def _split_and(words: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _other_shell_lines() -> int:
    count = 0
    for block in BLOCKS:
        if block.language not in SHELL or block.section == "nsn-store" or block.skip_reason:
            continue
        for line in _logical_lines(block.text):
            words = shlex.split(line, comments=True)
            if words and not all(p and p[0] == "nsn-store" for p in _split_and(words)):
                count += 1
    return count


def test_every_nsn_store_command_line_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    monkeypatch.setenv(connection.DATA_DIR_VAR, str(tmp_path / "data"))
    monkeypatch.chdir(ROOT)  # where a reader runs them: the checkout (export --check)
    failures, ran = [], 0
    for item in _command_lines():
        if isinstance(item, str):
            TALLY.not_run.append(item)
            continue
        for words in item.commands:
            args = [os.path.expandvars(word) for word in words[1:]]
            result = CliRunner().invoke(main, args)
            if result.exit_code != item.exit_code or "Traceback" in result.output:
                failures.append(
                    f"{item.block.where}: `{item.text}` exited {result.exit_code} "
                    f"(expected {item.exit_code}):\n{result.output[-2000:]}"
                )
                break
        ran += 1
    TALLY.cli_run = ran
    TALLY.other_shell = _other_shell_lines()
    assert ran, "the README has no nsn-store command line"
    assert not failures, "\n\n".join(failures)


def test_every_snippet_is_python_shell_or_output() -> None:
    """A fenced block is code that runs, or output (text, json, no language): nothing else."""
    known = {*PYTHON, *SHELL, "", "text", "json"}
    strange = [f"{b.where}: ```{b.language}" for b in BLOCKS if b.language not in known]
    assert not strange, strange
