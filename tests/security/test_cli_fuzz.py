"""No traceback, no raw Python error, no secret: the CLI and ``connect`` (issue 9, mechanism 10).

At e10bd82, 32 CLI inputs printed a Python traceback (``--uri
'mongomock://[::1/db'``, a byte that is not UTF-8 in the URI, a missing TLS
file, ``inf``/``nan``/``1e308``/``1e20`` in numeric options, an unwritable or
NUL-holding ``--dir``), and ``connect`` raised a bare ``FileNotFoundError``,
``ValueError`` or ``UnicodeEncodeError``. Now every bad input gives exactly one
line on stderr, ``error: ...``, and exit code 2; ``connect`` raises an
:class:`~nsn_store.errors.NsnStoreError` subclass naming the option.

The fuzz tests drive :func:`click.testing.CliRunner` (fast, in process) with
hypothesis: 150 malformed URIs carrying secrets (passwords with ``#?@ :/``,
secret options, bytes that are not UTF-8, brackets, empty parts) over five
commands, and 300 values (NaN, infinities, huge, negative, not numbers) for
every numeric option of every command; logging is captured at DEBUG for every
logger. A few inputs also run through a real ``nsn-store`` process, where a
traceback printed by the interpreter itself would show. The whole module runs
in about 6 s here (20 s at most seen under a loaded machine).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsn_store import connection
from nsn_store.cli import common, main, ops, schema
from nsn_store.cli import worker as worker_cli
from nsn_store.connection import connect
from nsn_store.errors import ConfigurationError, InvalidArgumentError, NsnStoreError

#: Secrets hidden in the fuzzed URIs: none may ever be printed or logged.
TOKENS = ("Zk4qSecretA", "Qm7wSecretB", "Jr5tSecretC")
#: What a command exits with on valid input (0 ok, 1 differences), besides 2.
URI_COMMANDS: dict[tuple[str, ...], set[int]] = {
    ("status",): {0},
    ("verify",): {0, 1},
    ("init", "--dry-run"): {0},
    ("check-data",): {0, 1},
    ("shard", "--dry-run"): {0},
}
URI_EXAMPLES = 150
NUMBER_EXAMPLES = 300


class Reached(NsnStoreError):
    """Raised instead of opening the database: the options were accepted."""


# ------------------------------------------------------------------ helpers


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Collect every log message of every logger at every level."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    root, handler, level = logging.getLogger(), Keep(logging.DEBUG), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def invoke(args: list[str]) -> tuple[Result, list[str]]:
    with captured_logs() as logs:
        result = CliRunner().invoke(main, args)
    return result, logs


def assert_one_clean_line(result: Result, logs: list[str], codes: set[int]) -> None:
    """Exit code in ``codes`` or 2, one line on stderr, no traceback, no token anywhere."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    assert result.exit_code in codes | {2}, shown
    assert len(result.stderr.splitlines()) == 1, shown
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), shown
    everything = "\n".join([result.stdout, result.stderr, *logs])
    assert "Traceback" not in everything, shown
    assert [token for token in TOKENS if token in everything] == [], shown


@pytest.fixture
def fast_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fail fast on unreachable servers, use no environment URI, write nothing here."""
    monkeypatch.setattr(common, "CONNECT_TIMEOUT_MS", 50, raising=False)
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


# ------------------------------------------------------------- URI fuzzing

SPECIALS = st.text(alphabet="#?@ :/%&=;[]\t\udcff", max_size=3)


@st.composite
def secret_uris(draw: st.DrawFn) -> str:
    """A mostly malformed URI with TOKENS in its password and secret options."""
    scheme = draw(
        st.sampled_from(
            ["mongodb://", "mongodb+srv://", "mongomock://", "MongoDB://", "postgres://", ""]
        )
    )
    user = draw(st.sampled_from(["app", "app user", "app@corp", "", "a:b", "%zz", "u\udcff"]))
    password = draw(SPECIALS) + TOKENS[0] + draw(SPECIALS) + TOKENS[1] + draw(SPECIALS)
    # Without its "@" (forgotten), an "@" inside the password would make the
    # rest a real host name, which no masker could know to hide.
    forgotten = f"{user}:{password.replace('@', '#')}"
    userinfo = draw(st.sampled_from([f"{user}:{password}@", forgotten, ""]))
    # Hosts that fail fast: no name to resolve (a DNS lookup may hang here),
    # nothing listening on port 1. Only the embedded database gets a name.
    hosts = [
        "127.0.0.1:1",
        "[::1]:1",
        "[::1",
        "::1]",
        "127.0.0.1:notaport",
        "127.0.0.1:99999",
        "",
        "127.0.0.1,",
        "h%zz",
    ]
    host = draw(st.sampled_from([*hosts, "fuzzhost"] if scheme == "mongomock://" else hosts))
    path = draw(
        st.sampled_from(
            ["/nsn", "", "/", "/bad.name", "/d b", "/db\udcff", "/" + "x" * 70, "/%zz", "/nsn#frag"]
        )
    )
    options = draw(
        st.lists(
            st.sampled_from(
                [
                    f"tlsCertificateKeyFilePassword={draw(SPECIALS)}{TOKENS[2]}",
                    f"authMechanismProperties=AWS_SESSION_TOKEN:{TOKENS[2]}{draw(SPECIALS)}",
                    f"proxyHost=p&proxyPassword={TOKENS[2]}",
                    "serverSelectionTimeoutMS=nan",
                    "connectTimeoutMS=1e308",
                    "maxPoolSize=1e20",
                    "tlsCAFile=/nonexistent/ca.pem",
                    "tls=true&tlsCertificateKeyFile=/nonexistent/k.pem",
                    "w=-1",
                    "x",
                    "=",
                    "",
                    "compressors=zstd",
                ]
            ),
            max_size=3,
        )
    )
    separator = draw(st.sampled_from(["&", ";"]))
    query = ("?" + separator.join(options)) if options else draw(st.sampled_from(["", "?"]))
    uri = f"{scheme}{userinfo}{host}{path}{query}"
    if draw(st.booleans()):  # a byte that is not UTF-8, as Python decodes argv
        at = draw(st.integers(0, len(uri)))
        uri = uri[:at] + draw(st.sampled_from(["\udcff", "\udc80", "\x00", "\x1b"])) + uri[at:]
    return uri


@settings(
    max_examples=URI_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(uri=secret_uris(), command=st.sampled_from(sorted(URI_COMMANDS)))
def test_fuzzed_uris_give_one_line_and_never_a_secret(
    fast_cli: None, uri: str, command: tuple[str, ...]
) -> None:
    result, logs = invoke([*command, "--uri", uri])
    if command == ("shard", "--dry-run") and result.exit_code == 0:  # never connects: no banner
        everything = "\n".join([result.stdout, result.stderr, *logs])
        assert result.stderr == "" and not [t for t in TOKENS if t in everything], everything
        return
    assert_one_clean_line(result, logs, URI_COMMANDS[command])


# --------------------------------------------------------- numeric options


def _numeric_options() -> list[tuple[str, click.Option]]:
    """Every numeric option of every command, read from the commands themselves."""
    found = []
    for name, command in sorted(main.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(
                param.type, click.types._NumberParamTypeBase
            ):
                found.append((name, param))
    return found


NUMERIC = _numeric_options()
#: The arguments a command requires before its options reach anything.
ARGUMENTS: dict[str, list[str]] = {"downgrade": ["0001"]}


def test_every_numeric_option_is_found_and_bounded() -> None:
    """The fuzzing covers them all; each has both bounds and floats refuse NaN/inf."""
    names = {(command, param.opts[0]) for command, param in NUMERIC}
    assert {
        ("init", "--lock-timeout"),
        ("simulate", "--lease"),
        ("simulate", "--tick"),
        ("simulate", "--spread"),
        ("check-data", "--sample"),
    } <= names
    for command, param in NUMERIC:
        assert isinstance(param.type, click.IntRange | click.FloatRange), (command, param.name)
        assert param.type.min is not None and param.type.max is not None, (command, param.name)
        if isinstance(param.type, click.FloatRange):
            assert isinstance(param.type, common.FiniteFloatRange), (command, param.name)


SPECIAL_NUMBERS = [
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "+inf",
    "Infinity",
    "1e308",
    "1e309",
    "-1e308",
    "1e20",
    "-1e20",
    "1e-320",
    "-1",
    "-0.0",
    "0",
    "0.0001",
    "1.5",
    "",
    " ",
    "abc",
    "0x10",
    "1_000",
    "\u0661\u0662",
    "12\udcff",
    "9" * 40,
    "-" + "9" * 40,
]
NUMBERS = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**80), 2**80).map(str),
    st.text(max_size=6),
)


def _accepted(param: click.Option, value: str) -> bool:
    """Tell whether ``value`` is inside the option's documented range (its --help)."""
    kind = param.type
    assert isinstance(kind, click.IntRange | click.FloatRange)
    try:
        number: float = int(value) if isinstance(kind, click.IntRange) else float(value)
    except ValueError:
        return False
    if not math.isfinite(number):
        return False
    low_ok = number > kind.min if kind.min_open else number >= kind.min  # type: ignore[operator]
    high_ok = number < kind.max if kind.max_open else number <= kind.max  # type: ignore[operator]
    return low_ok and high_ok


@pytest.fixture
def stop_before_the_database(monkeypatch: pytest.MonkeyPatch, fast_cli: None) -> None:
    """Accepted options reach open_database, which stops the command there."""

    def reached(*args: Any, **kwargs: Any) -> Any:
        raise Reached("reached the database")

    monkeypatch.setattr(ops, "open_database", reached)
    monkeypatch.setattr(schema, "open_database", reached)
    monkeypatch.setattr(worker_cli, "open_database", reached)


@settings(
    max_examples=NUMBER_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(option=st.sampled_from(NUMERIC), value=NUMBERS)
def test_fuzzed_numeric_options_give_one_line_exit_2(
    stop_before_the_database: None, option: tuple[str, click.Option], value: str
) -> None:
    command, param = option
    flag = param.opts[0]
    arguments = ARGUMENTS.get(command, [])
    result, logs = invoke([command, *arguments, f"{flag}={value}", "--uri", "mongomock://fuzz/nsn"])
    assert_one_clean_line(result, logs, set())
    if _accepted(param, value):
        # Accepted as documented; simulate may still refuse a run too large to finish.
        assert "reached the database" in result.stderr or "the run " in result.stderr, result.stderr
    else:
        assert flag in result.stderr, result.stderr


# ------------------------------------------- the inputs that printed tracebacks

KNOWN = [
    ["status", "--uri", "mongomock://[::1/db"],
    ["status", "--uri", "mongomock://h/d\udcffb"],
    ["status", "--uri", "mongomock://h/db\x00"],
    ["status", "--uri", f"mongodb://u:{TOKENS[0]}@127.0.0.1:1/db?tls=true&tlsCAFile=/nope/ca.pem"],
    [
        "status",
        "--uri",
        "mongodb://127.0.0.1:1/db?tlsCertificateKeyFile=/nope/k.pem"
        f"&tlsCertificateKeyFilePassword={TOKENS[2]}",
    ],
    ["status", "--uri", "mongodb://127.0.0.1:1/db?tlsCRLFile=/nope/crl.pem"],
    *[
        ["simulate", flag, value]
        for flag in ("--lease", "--tick", "--spread")
        for value in ("nan", "inf", "1e308", "1e20")
    ],
    ["simulate", "--tick", "1e-320"],
    ["simulate", "--failure-rate", "nan"],
    ["simulate", "--retry-success-rate", "nan"],
    ["simulate", "--contacts", "99999999999999999999"],
    ["simulate", "--max-attempts", "99999999999999999999"],
    ["simulate", "--tenants", "10000", "--messages", "1000000"],
    *[
        ["init", "--lock-timeout", value, "--uri", "mongomock://known/nsn"]
        for value in ("nan", "inf", "1e308", "-1")
    ],
    ["check-data", "--sample", "99999999999999999999"],
    ["export", "--dir", "a\x00b"],
    ["export", "--dir", "a\x00b", "--check"],
    ["export", "--dir", ""],
    ["export", "--dir", "x" * 5000],
    ["export", "--dir", "x" * 5000, "--check"],
    ["export", "--dir", "/proc/nsn-store-cannot-create"],
]


@pytest.mark.parametrize(
    "args", KNOWN, ids=lambda args: " ".join(args)[:60].encode("ascii", "backslashreplace").decode()
)
def test_inputs_that_printed_tracebacks_now_exit_2_with_one_line(
    fast_cli: None, args: list[str]
) -> None:
    result, logs = invoke(args)
    assert_one_clean_line(result, logs, set())


def test_a_file_in_the_way_of_dir_is_one_line(fast_cli: None, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for args in (["export", "--dir", "afile"], ["export", "--dir", "afile/sub"]):
        result, logs = invoke(args)
        assert_one_clean_line(result, logs, set())
        assert "afile" in result.stderr


def test_an_unexpected_error_is_still_one_line(
    fast_cli: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here an AttributeError) prints one line naming it, never a traceback."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'name'")

    monkeypatch.setattr(connection, "connect", broken)
    result, logs = invoke(["status", "--uri", "mongomock://broken/nsn"])
    assert_one_clean_line(result, logs, set())
    assert "AttributeError" in result.stderr


def test_usage_errors_are_one_line_and_keep_exit_2(fast_cli: None) -> None:
    for args in (
        ["status", "--bogus"],
        ["nope"],
        ["status", f"mongodb://u:{TOKENS[0]}@h/db"],
        ["simulate", "--mode", "fibers"],
    ):
        result, logs = invoke(args)
        assert_one_clean_line(result, logs, set())


# --------------------------------------------------------- connect() itself


@pytest.mark.parametrize(
    ("uri", "argument"),
    [
        ("mongodb://127.0.0.1:1/db?tls=true&tlsCAFile=/nope/ca.pem", "tlsCAFile"),
        ("mongodb://127.0.0.1:1/db?tlsCertificateKeyFile=/nope/k.pem", "tlsCertificateKeyFile"),
        ("mongodb://127.0.0.1:1/db?tls=true&tlsCRLFile=/nope/crl.pem", "tlsCRLFile"),
        ("mongodb://127.0.0.1:1/db?tlscafile=/nope/ca.pem", "tlsCAFile"),
        ("mongomock://h/d\udcffb", "uri"),
        ("mongodb://127.0.0.1:1/d\udcffb", "uri"),
        ("mongomock://h/db\x00", "uri"),
    ],
    ids=[
        "missing-ca",
        "missing-key",
        "missing-crl",
        "lower-case-option",
        "embedded-not-utf8",
        "server-not-utf8",
        "nul",
    ],
)
def test_connect_refuses_bad_input_by_name_before_any_io(uri: str, argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        connect(uri, timeout_ms=50)
    assert caught.value.argument == argument
    assert isinstance(caught.value, NsnStoreError)


@pytest.mark.parametrize(
    "uri", ["mongomock://[::1/db", "mongomock://u:p@[::1/db"], ids=["bracket", "bracket-with-user"]
)
def test_connect_reports_a_malformed_embedded_uri(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="malformed mongomock URI"):
        connect(uri)


@pytest.mark.parametrize(
    "timeout",
    [float("nan"), 0, -1, 10**12, True, 1.5],
    ids=["nan", "zero", "negative", "huge", "bool", "float"],
)
def test_connect_refuses_a_bad_timeout_by_name(timeout: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        connect("mongodb://127.0.0.1:1/db", timeout_ms=timeout)
    assert caught.value.argument == "timeout_ms"


def test_a_tls_file_that_is_not_pem_is_a_configuration_error(tmp_path: Path) -> None:
    """An existing file the TLS layer cannot read (ssl.SSLError, an OSError) is named."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigurationError) as caught:
        connect(f"mongodb://127.0.0.1:1/db?tls=true&tlsCAFile={bogus}", timeout_ms=50)
    assert "malformed MongoDB URI" in str(caught.value)


# ----------------------------------------------------- a real nsn-store process


def _nsn_store() -> list[str]:
    here = Path(sys.executable).with_name("nsn-store")
    return [str(here)] if here.exists() else [sys.executable, "-m", "nsn_store"]


@pytest.mark.parametrize(
    "args",
    [
        [b"status", b"--uri", b"mongomock://h/d\xffb"],
        [b"status", b"--uri", b"mongomock://[::1/db"],
        [b"simulate", b"--lease", b"nan"],
        [
            b"status",
            b"--uri",
            f"mongodb://app:{TOKENS[0]}#{TOKENS[1]}@127.0.0.1:1/db"
            "?tls=true&tlsCAFile=/nope/ca.pem".encode(),
        ],
    ],
    ids=["not-utf8", "bracket", "nan-lease", "missing-ca-with-secret"],
)
def test_a_real_process_prints_one_line_and_exits_2(args: list[bytes], tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != connection.ENV_VAR}
    done = subprocess.run(
        [*(os.fsencode(part) for part in _nsn_store()), *args],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    stderr = done.stderr.decode("utf-8", "backslashreplace")
    assert done.returncode == 2, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr
    output = done.stdout + done.stderr
    assert [t for t in TOKENS if t.encode() in output] == [], stderr
