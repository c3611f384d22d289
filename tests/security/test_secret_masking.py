"""One secret masker, built on the driver's URI parser (issue 9, mechanism 7).

The old masker was a regular expression that stopped a password at ``#``,
``?`` or whitespace, could not find it after a user name holding ``@`` or a
space, knew nothing of secret options (``tlsCertificateKeyFilePassword``,
``proxyPassword``, ``authMechanismProperties=AWS_SESSION_TOKEN:...``), and was
not applied to :class:`~nsn_store.errors.ConnectionFailedError` itself nor to
the embedded database's banner: the raw secret showed in messages, in the
error's ``str()``, ``repr()`` and ``.uri``, and on the CLI's stderr. Each test
below failed on the code as it was at e10bd82 and passes now.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from pymongo import errors as pymongo_errors

from nsn_store import connection
from nsn_store.cli import main
from nsn_store.connection import connect
from nsn_store.errors import ConfigurationError, ConnectionFailedError, NsnStoreError, translate
from nsn_store.masking import mask_text, mask_uri

#: Every secret below is built from these, so a test can look for any part of it.
PARTS = ("Pw0rdOne", "Pw0rdTwo")
SECRET = f"{PARTS[0]}#{PARTS[1]}"

# (URI, what must still be readable after masking), one per defect.
LEAKS = [
    pytest.param(
        f"mongodb://app:{PARTS[0]}#{PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="password-with-hash",
    ),
    pytest.param(
        f"mongodb://app:{PARTS[0]}?{PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="password-with-question-mark",
    ),
    pytest.param(
        f"mongodb://app:{PARTS[0]} {PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="password-with-space",
    ),
    pytest.param(
        f"mongodb://app:{PARTS[0]}\t{PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="password-with-tab",
    ),
    pytest.param(
        f"mongodb://app@corp:{PARTS[0]}{PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="user-with-at",
    ),
    pytest.param(
        f"mongodb://app user:{PARTS[0]}{PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="user-with-space",
    ),
    pytest.param(
        f"mongodb://app:{PARTS[0]}/{PARTS[1]}@db.example.com/nsn",
        "db.example.com/nsn",
        id="password-with-slash",
    ),
    pytest.param(
        "mongodb://db.example.com/nsn?tls=true&tlsCertificateKeyFile=/k.pem"
        f"&tlsCertificateKeyFilePassword={PARTS[0]}{PARTS[1]}",
        "tlsCertificateKeyFile=/k.pem",
        id="tls-key-password",
    ),
    pytest.param(
        "mongodb://db.example.com/nsn?authMechanism=MONGODB-AWS"
        f"&authMechanismProperties=AWS_SESSION_TOKEN:{PARTS[0]}{PARTS[1]}",
        "authMechanism=MONGODB-AWS",
        id="aws-session-token",
    ),
    # Not a URI option of this driver: pymongo refuses it without naming it, and
    # so is every piece of an option string the driver does not know.
    pytest.param(
        f"mongodb://db.example.com/nsn?proxyHost=p&proxyPassword={PARTS[0]}{PARTS[1]}",
        "db.example.com/nsn",
        id="proxy-password",
    ),
    pytest.param(
        f"mongodb://db.example.com/nsn?tlsCertificateKeyFilePassword={PARTS[0]}&{PARTS[1]}",
        "db.example.com",
        id="secret-option-then-garbage",
    ),
]


def _leaked(text: str) -> list[str]:
    return [part for part in PARTS if part in text]


@pytest.mark.parametrize(("uri", "kept"), LEAKS)
def test_mask_uri_hides_every_part_of_the_secret(uri: str, kept: str) -> None:
    masked = mask_uri(uri)
    assert _leaked(masked) == [], masked
    assert kept in masked  # masking is not just emptying the string
    assert "***" in masked


@pytest.mark.parametrize(("uri", "kept"), LEAKS)
def test_mask_text_hides_the_secret_of_a_uri_inside_a_message(uri: str, kept: str) -> None:
    message = f"cannot reach MongoDB at {uri}: timed out\nwhile trying {uri!r} again"
    masked = mask_text(message)
    assert _leaked(masked) == [], masked
    assert masked.startswith("cannot reach MongoDB at ")


def test_a_uri_secret_quoted_outside_the_uri_is_masked() -> None:
    """A driver message that repeats the password by itself is masked given the URI."""
    uri = f"mongodb://app:{PARTS[0]}{PARTS[1]}@db.example.com/nsn"
    quoted = f"authentication failed for password {PARTS[0]}{PARTS[1]}"
    assert _leaked(mask_text(quoted, uri)) == []
    error = ConnectionFailedError(quoted, uri=uri)
    assert _leaked(str(error)) == [] and str(error).startswith("authentication failed")


def test_user_names_hosts_and_harmless_options_stay_readable() -> None:
    uri = "mongodb://app:s3cret@h1:27017,h2:27018/nsn?replicaSet=rs0&tlsCertificateKeyFilePassword=k3y"
    assert mask_uri(uri) == (
        "mongodb://app:***@h1:27017,h2:27018/nsn?replicaSet=rs0&tlsCertificateKeyFilePassword=***"
    )


@pytest.mark.parametrize(("uri", "kept"), LEAKS)
def test_connection_failed_error_masks_str_repr_and_uri(uri: str, kept: str) -> None:
    error = ConnectionFailedError(f"cannot reach MongoDB at {uri}: refused", uri=uri)
    for text in (str(error), repr(error), error.uri or ""):
        assert _leaked(text) == [], text
    assert error.uri is not None and kept in error.uri


def test_unreachable_server_error_never_carries_the_secret() -> None:
    uri = f"mongodb://app:{SECRET}@127.0.0.1:1/nsn?serverSelectionTimeoutMS=200"
    with pytest.raises(ConnectionFailedError) as caught:
        connect(uri, timeout_ms=200)
    error = caught.value
    for text in (str(error), repr(error), error.uri or ""):
        assert _leaked(text) == [], text
    assert "127.0.0.1:1" in str(error)


@pytest.mark.parametrize(
    "uri",
    [
        f"mongodb://app:{SECRET}@127.0.0.1:notaport/nsn",
        f"mongodb://app@corp:{PARTS[0]}{PARTS[1]}@127.0.0.1:1/nsn?bogusOption=1",
        f"mongodb://127.0.0.1:1/nsn?tlsCertificateKeyFilePassword={SECRET}&maxPoolSize=nope",
    ],
    ids=["bad-port", "user-with-at-and-unknown-option", "secret-option-and-bad-w"],
)
def test_malformed_uri_errors_never_carry_the_secret(uri: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        connect(uri, timeout_ms=200)
    assert _leaked(str(caught.value)) == [] and _leaked(repr(caught.value)) == []


def test_translated_driver_errors_are_masked() -> None:
    uri = f"mongodb://app:{SECRET}@db.example.com/nsn"
    for exc in (
        pymongo_errors.ServerSelectionTimeoutError(f"{uri}: timed out"),
        pymongo_errors.InvalidURI(f"bad URI {uri}"),
    ):
        error = translate(exc)
        assert isinstance(error, NsnStoreError)
        assert _leaked(str(error)) == [], str(error)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every log record of every logger, at every level, while the test runs."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root, handler = logging.getLogger(), Keep(logging.DEBUG)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_driver_warnings_are_masked_and_kept_off_stderr(
    records: list[logging.LogRecord], capfd: pytest.CaptureFixture[str]
) -> None:
    """A driver warning is part of the one error line; nothing raw reaches stderr or logs."""
    uri = f"mongodb://app:{SECRET}@127.0.0.1:1/nsn?compressors=zstd&serverSelectionTimeoutMS=200"
    with pytest.raises(ConnectionFailedError) as caught:
        connect(uri, timeout_ms=200)
    assert "zstandard" in str(caught.value)  # the warning is kept, inside the message
    assert capfd.readouterr().err == ""
    assert all(_leaked(r.getMessage()) == [] for r in records)


@pytest.mark.parametrize(
    "uri",
    [
        f"mongomock://app:{PARTS[0]} {PARTS[1]}@bannerhost-{{}}/nsn",
        f"mongomock://app@corp:{PARTS[0]}{PARTS[1]}@bannerhost-{{}}/nsn",
    ],
    ids=["space", "user-with-at"],
)
def test_embedded_banner_masks_the_uri(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    result = CliRunner().invoke(main, ["status", "--uri", uri.format(uuid.uuid4().hex[:8])])
    assert "embedded in-memory database" in result.stderr
    assert _leaked(result.stdout + result.stderr) == [], result.stderr


def test_refused_embedded_uri_is_masked_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    result = CliRunner().invoke(main, ["status", "--uri", f"mongomock://app:{SECRET}@h/nsn"])
    assert result.exit_code == 2 and "takes no options" in result.stderr
    assert _leaked(result.stdout + result.stderr) == [], result.stderr


def test_secret_in_the_environment_variable_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(connection.ENV_VAR, f"mongodb://app:{SECRET}@127.0.0.1:notaport/nsn")
    result = CliRunner().invoke(main, ["verify"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and _leaked(result.stderr) == []


@pytest.mark.parametrize(
    "uri",
    [
        f"mongomock://app:{PARTS[0]}/{PARTS[1]}@localhost/nsn",
        f"mongomock://app:{PARTS[0]}/{PARTS[1]}@[::1]:1",
    ],
    ids=["slash-in-password", "slash-in-password-ipv6"],
)
def test_an_embedded_password_holding_a_slash_is_never_read_as_the_database(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the CLI fuzz test: the part after the "/" became the database name,
    which init --dry-run then printed."""
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    result = CliRunner().invoke(main, ["init", "--dry-run", "--uri", uri])
    assert result.exit_code in (0, 2)
    assert _leaked(result.stdout + result.stderr) == [], result.output
