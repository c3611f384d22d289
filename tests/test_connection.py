"""Connecting: URI resolution, masking, bad input and unreachable servers."""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymongo import MongoClient

from nsn_store import connection
from nsn_store.connection import DEFAULT_URI, connect, describe_host, is_embedded, resolve_uri
from nsn_store.errors import ConfigurationError, ConnectionFailedError, InvalidArgumentError
from nsn_store.masking import mask_text, mask_uri

UNREACHABLE = "mongodb://admin:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=300"


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("mongodb://user:pw@host/db", "mongodb://user:***@host/db"),
        (
            "mongodb+srv://u:s3cr%40t@cluster.example.net/?retryWrites=true",
            "mongodb+srv://u:***@cluster.example.net/?retryWrites=true",
        ),
        # The driver cannot read this one: everything up to the last "@" is hidden.
        ("mongodb://user:p@ss/word@h1:1,h2:2/db", "mongodb://***@h1:1,h2:2/db"),
        ("mongodb://user@host/db", "mongodb://user@host/db"),
        ("mongodb://host:27017/db", "mongodb://host:27017/db"),
        ("mongomock://localhost/nsn", "mongomock://localhost/nsn"),
    ],
    ids=[
        "password",
        "srv-escaped",
        "unescaped-at-and-slash",
        "user-only",
        "no-credentials",
        "embedded",
    ],
)
def test_mask_uri_hides_the_password(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


def test_mask_text_masks_every_uri_in_a_message() -> None:
    text = "tried mongodb://a:one@h1/db, then mongodb+srv://b:two@h2 and gave up"
    assert mask_text(text) == "tried mongodb://a:***@h1/db, then mongodb+srv://b:***@h2 and gave up"


PASSWORD_CHARS = st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"))


@given(password=st.text(alphabet=PASSWORD_CHARS, min_size=1))
def test_mask_uri_never_shows_the_password(password: str) -> None:
    """Any password, escaped or not ("@", "?", "#", "/", ":", spaces): only the host stays.

    The user name stays too when the driver reads the URI unambiguously.
    """
    masked = mask_uri(f"mongodb://user:{password}@db.example.com:27017/nsn")
    assert masked in {
        "mongodb://user:***@db.example.com:27017/nsn",
        "mongodb://***@db.example.com:27017/nsn",
    }


def test_resolve_uri_prefers_argument_then_environment_then_embedded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(connection.ENV_VAR, raising=False)
    assert resolve_uri(None) == DEFAULT_URI
    monkeypatch.setenv(connection.ENV_VAR, "mongodb://env-host/db")
    assert resolve_uri(None) == "mongodb://env-host/db"
    assert resolve_uri("mongomock://arg/db") == "mongomock://arg/db"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("postgres://u:pw@host/db", "scheme 'postgres'"),
        ("localhost:27017", "no scheme"),
        ("mongodb://", "hostname"),
        ("mongodb://host:notaport/db", "Port"),
        ("mongodb://host:99999/db", "Port must be an integer"),
        ("mongodb://host/db?noSuchOption=1", "Unknown option"),
        ("mongomock://localhost/nsn?x=1", "takes no options"),
        ("mongomock://localhost/bad.name", "invalid database name"),
    ],
    ids=[
        "wrong-scheme",
        "no-scheme",
        "no-host",
        "port-not-a-number",
        "port-out-of-range",
        "unknown-option",
        "embedded-with-options",
        "bad-database-name",
    ],
)
def test_malformed_uri_raises_configuration_error_naming_the_problem(
    uri: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        connect(uri, timeout_ms=300)
    assert ":pw@" not in str(caught.value)  # the password is masked even in errors


def test_unreachable_server_raises_connection_failed_with_masked_uri() -> None:
    with pytest.raises(ConnectionFailedError) as caught:
        connect(UNREACHABLE, timeout_ms=300)
    message = str(caught.value)
    assert "mongodb://admin:***@127.0.0.1:1" in message
    assert "hunter2" not in message
    assert caught.value.uri is not None and "hunter2" not in caught.value.uri


def _fresh_embedded_uri(database: str = "") -> str:
    return f"mongomock://conn-{uuid.uuid4().hex[:8]}/{database}"


def test_embedded_database_name_comes_from_the_path_default_nsn() -> None:
    assert connect(_fresh_embedded_uri()).name == "nsn"
    assert connect(_fresh_embedded_uri("tenant_db")).name == "tenant_db"


def test_embedded_connections_in_threads_share_one_store() -> None:
    uri = _fresh_embedded_uri("shared")
    connect(uri)["things"].insert_one({"_id": 1})
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(connect(uri)["things"].find_one()))
    worker.start()
    worker.join()
    assert seen == [{"_id": 1}]


def test_embedded_hosts_are_separate_stores() -> None:
    connect(_fresh_embedded_uri("x"))["things"].insert_one({"_id": 1})
    assert connect(_fresh_embedded_uri("x"))["things"].count_documents({}) == 0


def test_is_embedded_and_describe_host() -> None:
    embedded = connect(_fresh_embedded_uri())
    assert is_embedded(embedded) and describe_host(embedded) == "embedded"
    server: MongoClient[dict[str, object]] = MongoClient("mongodb://127.0.0.1:1", connect=False)
    try:
        assert not is_embedded(server["nsn"])
    finally:
        server.close()


def test_a_connection_with_its_own_clock_still_sees_the_shared_data() -> None:
    from nsn_store.clock import ManualClock

    uri = _fresh_embedded_uri("clocked")
    plain = connect(uri)
    plain.create_collection("things", validator={"$jsonSchema": {"required": ["n"]}})
    clocked = connect(uri, clock=ManualClock())
    assert clocked.client.clock is not plain.client.clock
    assert clocked["things"].options()["validator"] == {"$jsonSchema": {"required": ["n"]}}


def test_an_empty_uri_is_refused_not_read_as_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(connection.ENV_VAR, "mongomock://from-env/nsn")
    with pytest.raises(InvalidArgumentError, match="uri is empty") as caught:
        connect("")
    assert caught.value.argument == "uri"
    assert resolve_uri(None) == "mongomock://from-env/nsn"
    monkeypatch.setenv(connection.ENV_VAR, "")  # an empty variable counts as unset
    assert resolve_uri(None) == DEFAULT_URI


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("mongodb://h:27017/app", "app"),
        ("mongodb://h:27017/", "nsn"),
        ("mongodb://h:27017", "nsn"),
        ("mongodb://u:p%2Fw@h/app?retryWrites=true", "app"),
        ("mongodb+srv://cluster0.example.net/app", "app"),
        ("mongomock://localhost/app", "app"),
        ("mongomock://u:pw@localhost/app", "app"),
        ("mongomock:///tmp/dev.bson", "nsn"),
        (f"mongomock://localhost/{'x' * 63}", "x" * 63),
    ],
    ids=[
        "server",
        "server-slash",
        "server-none",
        "options",
        "srv",
        "embedded",
        "creds",
        "file",
        "63",
    ],
)
def test_database_name_reads_the_uri_without_io(uri: str, name: str) -> None:
    assert connection.database_name(uri) == name


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("mongodb://127.0.0.1:1/a.b", "holds '.'"),
        ("mongodb+srv://cluster0.example.net/a$b", "holds '$'"),
        ("mongomock://localhost/a%20b", "holds ' '"),
        ("mongodb://127.0.0.1:1/a+b", "holds ' '"),  # the driver reads + as a space
        (f"mongodb://127.0.0.1:1/{'x' * 64}", "64 bytes long (at most 63)"),
        (f"mongomock://localhost/{'é' * 32}", "64 bytes long"),
        ("mongodb://127.0.0.1:1/a%00b", "holds '\\x00'"),
        ("mongodb://127.0.0.1:1/a%5Cb", "holds '\\\\'"),
        ('mongodb://127.0.0.1:1/a"b', "holds '\"'"),
    ],
    ids=[
        "dot",
        "dollar-srv",
        "space",
        "plus",
        "64-bytes",
        "64-utf8-bytes",
        "nul",
        "backslash",
        "quote",
    ],
)
def test_every_scheme_refuses_bad_database_names_before_any_io(uri: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(problem)) as caught:
        connect(uri, timeout_ms=300)  # an unreachable server would raise ConnectionFailedError
    assert caught.value.argument == "uri"


def test_check_database_name_alone() -> None:
    assert connection.check_database_name("nsn") == "nsn"
    for bad in ["", "a.b", "x" * 64]:
        with pytest.raises(InvalidArgumentError) as caught:
            connection.check_database_name(bad)
        assert caught.value.argument == "database"


def test_a_database_name_after_a_secret_is_not_shown() -> None:
    """An unescaped "/" in a password puts its tail in the path: the error hides it."""
    with pytest.raises(InvalidArgumentError) as caught:
        connect("mongodb://user:p@ss/zq9x@h1:1/db", timeout_ms=300)
    assert "zq9x" not in str(caught.value) and "p@ss" not in str(caught.value)
    assert "percent-encode" in str(caught.value)


def test_an_srv_host_that_does_not_resolve_is_a_connection_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dns.name
    import dns.resolver

    def nxdomain(name: object, *args: object, **kwargs: object) -> object:
        raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(str(name))])

    monkeypatch.setattr(dns.resolver, "resolve", nxdomain)
    with pytest.raises(ConnectionFailedError) as caught:
        connect("mongodb+srv://app:hunter2@cluster0.nowhere.example/nsn", timeout_ms=300)
    message = str(caught.value)
    assert message.startswith("could not resolve the host 'cluster0.nowhere.example' of ")
    assert "DNS lookup failed" in message and "hunter2" not in message


def test_an_unparsable_embedded_host_is_refused_without_quoting_it() -> None:
    """A password typed without its "@" reads as a bracketed host: never echo it."""
    with pytest.raises(ConfigurationError, match="neither a name nor an") as caught:
        connect("mongomock://app:Zk4qSecretA][Qm7wSecretB127.0.0.1:1/nsn")
    assert "Secret" not in str(caught.value)


def test_a_password_with_an_unescaped_slash_never_becomes_the_database_name() -> None:
    """Read without the driver, the tail of such a password looked like the database name
    (``shard --dry-run`` printed it); the driver's own split refuses the URI instead."""
    uri = "mongodb://app:Zk4qSecretA/Qm7wSecretB?@127.0.0.1:1/nsn"
    with pytest.raises(InvalidArgumentError) as refused:
        connection.database_name(uri)
    assert refused.value.argument == "uri"
    assert "Qm7wSecretB" not in str(refused.value) and "Zk4qSecretA" not in str(refused.value)
