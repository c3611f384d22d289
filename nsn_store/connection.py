"""Connect to MongoDB or to the embedded database from one URI.

``mongodb://`` and ``mongodb+srv://`` reach a real server; ``mongomock://host/db``
gives the embedded in-memory database (:mod:`nsn_store.embedded`), shared by
every connection to ``host`` in the process and gone when it exits.
``mongomock:///path/to/file`` (three slashes: no host, the path is the file)
gives the embedded database kept in that file, a development database: it is
loaded when opened; a writer holds ``<file>.lock`` (one writer process at a
time) and saves the whole file atomically on ``db.client.close()`` (and on
``db.client.save()``, a checkpoint); a reader (``read_only=True``) takes no
lock, sees the last saved state and never saves. Its database is always
``nsn`` (a file-backed URI names no database; others are reachable as
``db.client[name]`` and saved with it). See :mod:`nsn_store.embedded._persist`.
The CLI's default is such a file in the user data directory
(:func:`default_data_dir`). A real server is pinged
on connect with a short server-selection timeout, so an unreachable one fails
fast with :class:`~nsn_store.errors.ConnectionFailedError` instead of on the
first query. Secrets never appear in messages, exceptions or logs: every URI
and every driver message is passed through :mod:`nsn_store.masking` first.

Bad input is refused before any I/O with an
:class:`~nsn_store.errors.InvalidArgumentError` naming what is wrong: an empty
URI (``""`` is not "the default": pass None for that), a URI that is not text (a
byte that is not UTF-8 arrives as a lone surrogate), holds a control character,
names a database MongoDB would refuse (:func:`check_database_name`, the same
rules for every scheme), or names a TLS file (``tlsCAFile``,
``tlsCertificateKeyFile``, ``tlsCRLFile``) that cannot be read; ``read_only``
that is not a bool; a file-backed URI whose path is empty, ends in ``/`` or
holds a NUL.

Driver errors met while connecting are classified by
:func:`nsn_store.errors.translate` (the one mapping) in :func:`_driver_failure`,
which adds where it happened; a ``mongodb+srv://`` host whose DNS lookup fails is
a :class:`~nsn_store.errors.ConnectionFailedError` saying the host could not be
resolved.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from pymongo import MongoClient, uri_parser
from pymongo import errors as pymongo_errors
from pymongo.database import Database

from nsn_store.arguments import check_limit, check_text
from nsn_store.clock import Clock
from nsn_store.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidArgumentError,
    NsnStoreError,
    translate,
)
from nsn_store.masking import mask_text, mask_uri

log = logging.getLogger(__name__)

DEFAULT_URI = "mongomock://localhost/nsn"
DEFAULT_DATABASE = "nsn"
ENV_VAR = "NSN_MONGODB_URI"
SERVER_SCHEMES = ("mongodb", "mongodb+srv")
EMBEDDED_SCHEME = "mongomock"
#: Where the CLI keeps its default file-backed embedded database (a folder).
DATA_DIR_VAR = "NSN_DATA_DIR"
#: The default database file's name inside that folder.
DATA_FILE = "nsn.bson"
_FILE_PREFIX = "mongomock:///"

#: The longest URI accepted (a long host list fits many times over).
MAX_URI_LENGTH: Final = 16_384
#: pymongo refuses timeouts of a billion milliseconds or more.
MAX_TIMEOUT_MS: Final = 999_999_999
#: URI options naming files the driver reads when the client is created.
TLS_FILE_OPTIONS: Final = ("tlsCAFile", "tlsCertificateKeyFile", "tlsCRLFile")
#: Characters MongoDB refuses in a database name on any platform (MongoDB manual,
#: "Naming Restrictions"), and the longest name in bytes (names are "fewer than 64").
DATABASE_FORBIDDEN: Final = frozenset('/\\. "$\0')
MAX_DATABASE_BYTES: Final = 63

# One client per embedded host, so connect() calls from several threads (or
# several commands in one process) see the same in-memory data.
_EMBEDDED: dict[str, Any] = {}
_EMBEDDED_LOCK = threading.Lock()


def resolve_uri(uri: str | None, default: str = DEFAULT_URI) -> str:
    """Return ``uri``, else ``$NSN_MONGODB_URI``, else ``default`` (the in-memory default).

    Only None asks for the default: an empty ``uri`` raises InvalidArgumentError
    (an unset shell variable expanded to ``--uri ""`` must not quietly reach
    another database). An empty ``$NSN_MONGODB_URI`` counts as unset.
    """
    if uri is not None:
        if uri == "":
            raise InvalidArgumentError(
                "uri is empty: give a MongoDB URI, or none at all for the default",
                argument="uri",
            )
        return uri
    return os.environ.get(ENV_VAR) or default


__all__ = [
    "DATA_DIR_VAR",
    "DATA_FILE",
    "DEFAULT_URI",
    "ENV_VAR",
    "check_database_name",
    "connect",
    "database_name",
    "default_data_dir",
    "default_file_uri",
    "describe_host",
    "embedded_file",
    "file_uri",
    "is_embedded",
    "mask_text",
    "mask_uri",
    "open_async",
    "resolve_uri",
    "scheme_of",
]


def default_data_dir() -> Path:
    """Return the per-user folder of the CLI's database: ``$NSN_DATA_DIR``, else the platform's.

    Linux and others: ``$XDG_DATA_HOME/nsn-store`` (an absolute one, as the XDG
    spec asks), else ``~/.local/share/nsn-store``; macOS:
    ``~/Library/Application Support/nsn-store``; Windows:
    ``%LOCALAPPDATA%\\nsn-store``. Reads the environment only; creates nothing.
    """
    chosen = os.environ.get(DATA_DIR_VAR)
    if chosen:
        return Path(chosen).expanduser().absolute()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "nsn-store"


def default_file_uri() -> str:
    """Return the CLI's default URI: the file ``nsn.bson`` in :func:`default_data_dir`."""
    return file_uri(default_data_dir() / DATA_FILE)


def file_uri(path: Path) -> str:
    """Return the ``mongomock:///...`` URI of the embedded database kept in ``path``."""
    return _FILE_PREFIX + quote(path.absolute().as_posix().lstrip("/"), safe="/:")


def embedded_file(db: Any) -> Path | None:
    """Return the file ``db`` is kept in (file-backed embedded database), else None."""
    persist = sys.modules.get("nsn_store.embedded._persist")  # not imported: no file in use
    client = getattr(db, "client", None) if persist is not None else None
    if persist is None or not isinstance(client, persist.FileBackedClient):
        return None
    path: Path = client.path
    return path


def scheme_of(uri: str) -> str:
    """Return the URI's scheme, lower-cased ("" when there is none)."""
    head, sep, _ = uri.partition("://")
    return head.lower() if sep else ""


def connect(
    uri: str | None = None,
    *,
    timeout_ms: int = 5000,
    clock: Clock | None = None,
    read_only: bool = False,
) -> Database[dict[str, Any]]:
    """Open the database named by ``uri`` (see :func:`resolve_uri`) and return it.

    ``read_only`` concerns the file-backed embedded database only: a reader
    takes no lock, sees the last saved state and never saves. Servers and
    in-memory databases ignore it (use a read-only MongoDB user for a server).
    Close a file-backed writer (``db.client.close()``, or ``with db.client:``)
    to save it and release its lock.

    Raises InvalidArgumentError (naming ``uri``, ``timeout_ms``, ``read_only``
    or the TLS file option) for input refused before any I/O,
    ConfigurationError for a malformed URI or an unreadable database file,
    DatabaseLockedError when another process writes the file, and
    ConnectionFailedError when a server cannot be reached within ``timeout_ms``.
    """
    resolved = _check_uri(resolve_uri(uri))
    check_limit(timeout_ms, "timeout_ms", maximum=MAX_TIMEOUT_MS)
    if not isinstance(read_only, bool):
        raise InvalidArgumentError("read_only must be True or False", argument="read_only")
    name = database_name(resolved)  # every scheme's name checked the same way, before any I/O
    if _is_file_uri(resolved):
        return _connect_file(resolved, clock, read_only)
    if scheme_of(resolved) == EMBEDDED_SCHEME:
        return _connect_embedded(resolved, name, clock)
    return _connect_server(resolved, name, timeout_ms)


def database_name(uri: str | None = None) -> str:
    """Return the name of the database :func:`connect` would open for ``uri``, without I/O.

    The URI's path names it, ``nsn`` when it names none; a file-backed URI
    always opens ``nsn``. For ``mongodb://`` and ``mongodb+srv://`` the path is
    read as the driver reads it (percent-decoded, ``+`` as a space), but a
    ``.`` is refused rather than read as ``database.collection``. Raises
    InvalidArgumentError (argument ``uri``) for a name MongoDB refuses (see
    :func:`check_database_name`) and ConfigurationError for a scheme that is
    not supported.
    """
    resolved = _check_uri(resolve_uri(uri))
    scheme = scheme_of(resolved)
    if _is_file_uri(resolved):
        return DEFAULT_DATABASE
    if scheme == EMBEDDED_SCHEME:
        path = unquote(_embedded_target(resolved)[1].lstrip("/"))
    elif scheme in SERVER_SCHEMES:
        path = unquote_plus(resolved.partition("://")[2].partition("?")[0].partition("/")[2])
        check_database_name(path or DEFAULT_DATABASE, uri=resolved)
        _check_splits(resolved)
    else:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigurationError(
            f"unsupported MongoDB URI {mask_uri(resolved)!r} ({shown}): use mongodb://, "
            "mongodb+srv://, mongomock://host/database or mongomock:///path/to/file"
        )
    return check_database_name(path or DEFAULT_DATABASE, uri=resolved)


def check_database_name(name: str, *, uri: str | None = None) -> str:
    """Return ``name`` if MongoDB accepts it as a database name, else raise InvalidArgumentError.

    A name is not empty, at most 63 bytes in UTF-8 and holds none of
    ``/ \\ . "  $``, a space or NUL (MongoDB manual, "Naming Restrictions").
    With ``uri`` the error names the URI (masked; the name itself is shown only
    when masking hides nothing, since it may be the tail of a password holding
    an unescaped ``/``) and its argument is ``uri``.
    """
    problem = _name_problem(name)
    if not problem:
        return name
    if uri is None:
        message = f"invalid database name {name!r}: {problem}"
        raise InvalidArgumentError(message, argument="database")
    shown = f" {name!r}" if mask_uri(uri) == uri else ""
    hint = "" if shown else " (percent-encode a '/' or '@' in a password)"
    raise InvalidArgumentError(
        f"invalid database name{shown} in {mask_uri(uri)!r}: {problem}{hint}", argument="uri"
    )


def _name_problem(name: str) -> str:
    """Say what MongoDB would refuse in the database name ``name`` ("" when nothing)."""
    rules = 'MongoDB refuses / \\ . space " $ and NUL in a database name'
    if not isinstance(name, str) or not name:
        return "it is empty"
    bad = sorted(DATABASE_FORBIDDEN.intersection(name))
    if bad:
        return f"it holds {', '.join(repr(c) for c in bad)} ({rules})"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_DATABASE_BYTES:
        return f"it is {size} bytes long (at most {MAX_DATABASE_BYTES})"
    return ""


def _is_file_uri(uri: str) -> bool:
    """Tell whether ``uri`` is ``mongomock:///path`` (no host: the file-backed database)."""
    return scheme_of(uri) == EMBEDDED_SCHEME and uri.partition("://")[2].startswith("/")


def open_async(db: Database[Any], uri: str) -> Any:
    """Return ``db`` (opened from ``uri``) through an async driver, for asyncio code.

    The embedded database (in memory or file-backed) gives the async embedded
    client over ``db``'s own client: the same store, and for a file the same
    writer, lock and save. A server gives PyMongo's ``AsyncMongoClient`` for
    ``uri`` (its own connection pool; close its client when done). Call it
    inside the event loop that will use it: PyMongo's async client binds to it.
    """
    if scheme_of(_check_uri(resolve_uri(uri))) == EMBEDDED_SCHEME:
        from nsn_store.testing import async_client

        return async_client(cast(Any, db.client))[db.name]
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    return client[db.name]


def is_embedded(db: Any) -> bool:
    """Tell whether ``db`` lives in the embedded in-memory database.

    Async databases (Motor, mongomock-motor) wrap a sync one as ``delegate``;
    looking through it lets sync and async code ask the same question.
    """
    mongomock = sys.modules.get("mongomock")  # not imported means not embedded
    if mongomock is None:
        return False
    # A sync Database answers any attribute with a collection, so only look
    # through ``delegate`` when ``db`` itself is not the embedded database.
    return any(
        isinstance(candidate, mongomock.database.Database)
        for candidate in (db, getattr(db, "delegate", None))
    )


def describe_host(db: Database[Any]) -> str:
    """Return where ``db`` lives, safe to record and print ("embedded" or host:port)."""
    if is_embedded(db):
        return "embedded"
    try:
        address = db.client.address
    except pymongo_errors.PyMongoError:
        address = None
    if inspect.iscoroutine(address):  # PyMongo async: a coroutine property; the nodes will do
        address.close()
        address = None
    if address is None:
        return ",".join(f"{h}:{p}" for h, p in sorted(db.client.nodes)) or "unknown"
    return f"{address[0]}:{address[1]}"


def _check_splits(uri: str) -> None:
    """Refuse a server URI the driver cannot split into hosts, database and options.

    Read without the driver (``shard --dry-run`` never connects), such a URI
    would yield a database name cut out of an unescaped password, and that name
    is printed. PyMongo's own parser decides, as it would when connecting; a
    ``+srv`` URI is split as its ``mongodb://`` spelling, so no DNS lookup runs.
    """
    try:
        with warnings.catch_warnings():  # options are the driver's to warn about, when it connects
            warnings.simplefilter("ignore")
            uri_parser.parse_uri("mongodb://" + uri.partition("://")[2], validate=False)
    except (pymongo_errors.InvalidURI, ValueError) as exc:
        raise InvalidArgumentError(
            f"uri is not a MongoDB URI the driver accepts ({mask_text(str(exc), uri)}); "
            "percent-encode '/', '?', '@' and ':' in the user name and password",
            argument="uri",
        ) from None


def _check_uri(uri: str) -> str:
    """Refuse a URI that is not text or holds a control character, before any I/O."""
    check_text(uri, "uri", maximum=MAX_URI_LENGTH)
    for position, char in enumerate(uri):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise InvalidArgumentError(
                f"uri holds a control character ({char!r} at position {position}): "
                "percent-encode it",
                argument="uri",
            )
    return uri


def _embedded_target(uri: str) -> tuple[str, str]:
    """Return the host and the raw path of ``mongomock://host/database``.

    Refuses options; ignores credentials (the embedded database has no users):
    whatever stands before the last "@" is never read as host or database (a
    password holding "/" would otherwise end up in the database name, and so in
    the output).
    """
    rest = uri.split("://", 1)[-1]
    try:
        whole = urlsplit(uri)
        parts = urlsplit(f"mongomock://{rest.rsplit('@', 1)[1]}") if "@" in rest else whole
        host = parts.hostname or "localhost"
    except ValueError:
        # An unclosed "[", or a bracketed host that is no IPv6 address; Python's
        # message quotes the host, which may hold a secret typed without its "@".
        raise ConfigurationError(
            f"malformed mongomock URI {mask_uri(uri)!r}: its host is neither a name nor an "
            "[IPv6] address"
        ) from None
    if whole.query or whole.fragment:
        raise ConfigurationError(
            f"mongomock URI {mask_uri(uri)!r} takes no options: use mongomock://host/database"
        )
    return host, parts.path


def _connect_embedded(uri: str, name: str, clock: Clock | None) -> Database[dict[str, Any]]:
    host, _ = _embedded_target(uri)
    try:
        db: Database[dict[str, Any]] = _embedded_client(host, clock)[name]
        return db
    except ValueError as exc:  # mongomock's own host parsing ("::1" read as host:port)
        raise ConfigurationError(
            f"mongomock URI {mask_uri(uri)!r} names a host the embedded database cannot use: "
            f"{_first_line(exc, uri)}"
        ) from None


def _connect_file(uri: str, clock: Clock | None, read_only: bool) -> Database[dict[str, Any]]:
    """Open the file-backed embedded database: every check first, then lock and load."""
    from nsn_store.embedded._persist import open_file

    path = _file_path(uri)
    client = open_file(path, read_only=read_only, clock=clock, command=_process_command())
    log.info(
        "opened the embedded database file %s (%s)", path, "read-only" if read_only else "writer"
    )
    db: Database[dict[str, Any]] = cast(Any, client)[DEFAULT_DATABASE]
    return db


def _file_path(uri: str) -> Path:
    """Return the file of ``mongomock:///path``, refusing what cannot name a file."""
    rest = uri[len(_FILE_PREFIX) - 1 :]  # from the path's leading "/"
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"mongomock URI {mask_uri(uri)!r} takes no options: use mongomock:///path/to/file"
        )
    path = unquote(rest)
    if sys.platform == "win32" and re.match(r"/[A-Za-z]:", path):
        path = path[1:]  # mongomock:///C:/Users/... names C:/Users/...
    problem = (
        "names no file"
        if path.strip("/") == ""
        else "names a folder (it ends in /)"
        if path.endswith("/")
        else "holds a NUL character"
        if "\0" in path
        else ""
    )
    if problem:
        raise ConfigurationError(
            f"file-backed mongomock URI {mask_uri(uri)!r} {problem}: "
            "use mongomock:///path/to/file (three slashes, then the file)"
        )
    return Path(path)


def _process_command() -> str:
    """Name this process for the writer lock: the program and its subcommand ("nsn-store init")."""
    argv = sys.argv or [""]
    program = os.path.basename(argv[0]) or "python"
    if program == "__main__.py":
        program = f"python -m {os.path.basename(os.path.dirname(argv[0]))}"
    words = [a for a in argv[1:2] if re.fullmatch(r"[A-Za-z][\w-]{0,40}", a)]
    return " ".join([program, *words])


def _embedded_client(host: str, clock: Clock | None) -> Any:
    """Return this process's client for ``host``, sharing its store across clocks."""
    from nsn_store.embedded import EmbeddedClient

    with _EMBEDDED_LOCK:
        shared = _EMBEDDED.get(host)
        if shared is None:
            shared = _EMBEDDED[host] = EmbeddedClient(host, clock=clock)
            return shared
    if clock is None or clock is shared.clock:
        return shared
    return EmbeddedClient(host, clock=clock, _store=shared._store)


def _connect_server(uri: str, name: str, timeout_ms: int) -> Database[dict[str, Any]]:
    # Python would print a driver warning with its source line: two raw lines
    # on stderr around the CLI's one-line error. Collect them (masked) instead.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _check_tls_files(uri)
        try:
            if scheme_of(uri) == "mongodb":  # strict parse; +srv would need DNS here
                uri_parser.parse_uri(uri, warn=False)
            client: MongoClient[dict[str, Any]] = MongoClient(
                uri, tz_aware=True, **_timeouts(uri, timeout_ms)
            )
        except (pymongo_errors.PyMongoError, ValueError, TypeError, OSError) as exc:
            # OSError: a TLS file that is not PEM, a wrong key password (ssl.SSLError).
            raise _driver_failure(exc, uri, caught) from exc
    try:
        client.admin.command("ping")
    except pymongo_errors.PyMongoError as exc:
        client.close()
        raise _driver_failure(exc, uri, caught) from exc
    for warning in caught:
        log.warning("MongoDB driver: %s", mask_text(str(warning.message), uri))
    log.info("connected to %s (database %s)", mask_uri(uri), name)
    return client[name]


def _driver_failure(
    exc: Exception, uri: str, caught: list[warnings.WarningMessage]
) -> NsnStoreError:
    """Return the error for a driver failure while connecting, saying where it happened.

    The kind comes from :func:`nsn_store.errors.translate`, the one mapping of
    driver errors; this adds the masked URI. A failed DNS lookup of a
    ``mongodb+srv://`` host (the driver reports it as a configuration error) says
    so. Anything else the driver raises while reading the URI (ValueError,
    TypeError, a TLS file's OSError) is a malformed URI.
    """
    shown = mask_uri(uri)
    reason = f"{_first_line(exc, uri)}{_suffix(caught, uri)}"
    if _dns_failed(exc):
        return ConnectionFailedError(
            f"could not resolve the host {_srv_host(uri)!r} of {shown} (DNS lookup failed: "
            f"{reason}): check the host name and this machine's DNS",
            uri=uri,
        )
    kind = translate(exc) if isinstance(exc, pymongo_errors.PyMongoError) else None
    if kind is None or isinstance(kind, ConfigurationError):
        return ConfigurationError(f"malformed MongoDB URI {shown!r}: {reason}")
    if isinstance(kind, ConnectionFailedError):
        return ConnectionFailedError(f"cannot reach MongoDB at {shown}: {reason}", uri=uri)
    # The server answered but refused us (authentication, authorization).
    return ConnectionFailedError(f"MongoDB at {shown} refused the connection: {reason}", uri=uri)


def _dns_failed(exc: BaseException) -> bool:
    """Tell whether ``exc`` was caused by a DNS lookup (dnspython, which +srv URIs use)."""
    dns_exception = sys.modules.get("dns.exception")  # loaded by the driver for +srv only
    if dns_exception is None:
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, dns_exception.DNSException):
            return True
        cause = cause.__cause__
    return False


def _srv_host(uri: str) -> str:
    """Return the host of a ``mongodb+srv://`` URI (after any credentials, before the path)."""
    hosts = uri.partition("://")[2].partition("?")[0].partition("/")[0]
    return hosts.rpartition("@")[2]


def _suffix(caught: list[warnings.WarningMessage], uri: str) -> str:
    """Return the driver's warnings as a suffix for a one-line error message."""
    texts = [mask_text(str(warning.message), uri) for warning in caught]
    return f" (driver warning: {'; '.join(texts)})" if texts else ""


def _check_tls_files(uri: str) -> None:
    """Refuse a TLS file option naming a file that cannot be read, naming the option.

    The driver would raise a bare FileNotFoundError while building the client.
    """
    try:
        options = (
            uri_parser.split_options(
                uri.partition("?")[2], validate=False, warn=False, normalize=False
            )
            if "?" in uri
            else {}
        )
    except (pymongo_errors.PyMongoError, ValueError):
        return  # the strict parse reports malformed options
    for name in TLS_FILE_OPTIONS:
        path = options.get(name)
        if isinstance(path, str) and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            problem = "does not exist" if not os.path.lexists(path) else "cannot be read"
            raise InvalidArgumentError(
                f"{name} {path!r} {problem} (in {mask_uri(uri)!r})", argument=name
            )


def _timeouts(uri: str, timeout_ms: int) -> dict[str, Any]:
    """Return the timeout options, leaving any the URI sets itself (URI options win)."""
    given = uri.partition("?")[2].lower()
    names = ("serverSelectionTimeoutMS", "connectTimeoutMS")
    return {name: timeout_ms for name in names if name.lower() + "=" not in given}


def _first_line(exc: BaseException, uri: str) -> str:
    """Keep the driver's long topology dump out of one-line messages; mask ``uri``'s secrets."""
    text = mask_text(str(exc), uri)
    return text.split(", Timeout:")[0].split("\n")[0]
