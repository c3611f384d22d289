"""Helpers every nsn-store command shares: options, connecting, output, errors.

Commands stay thin: parse options, call one library function, render the
result with :func:`emit`, and let :func:`handle_errors` map failures to exit
code 2 with a one-line ``error: ...`` on stderr. Everything printed passes
through :func:`~nsn_store.connection.mask_text`, so no password leaks.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click
from pymongo import errors as pymongo_errors
from pymongo.database import Database

from nsn_store import connection
from nsn_store.errors import NsnStoreError, translate

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_DIFFERENCES = 1  # drift, stale export, or the user declined at a prompt
EXIT_ERROR = 2  # bad input, unreachable server, refused operation

uri_option = click.option(
    "--uri",
    metavar="URI",
    default=None,
    help=(
        "MongoDB URI: mongodb://, mongodb+srv:// or mongomock://host/db "
        f"[default: ${connection.ENV_VAR}, else {connection.DEFAULT_URI}]"
    ),
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the report as JSON (stable keys)."
)


def stdin_is_interactive() -> bool:
    """Tell whether a person can answer a prompt (tests patch this)."""
    return sys.stdin.isatty()


def stdout_is_terminal() -> bool:
    """Tell whether progress bars make sense on stdout."""
    return sys.stdout.isatty()


def open_database(uri: str | None, *, timeout_ms: int = 5000) -> Database[Any]:
    """Connect to ``uri`` (or the default), announcing the embedded database on stderr."""
    resolved = connection.resolve_uri(uri)
    if connection.scheme_of(resolved) == connection.EMBEDDED_SCHEME:
        echo(
            f"nsn-store: using the embedded in-memory database {resolved}; nothing persists "
            f"after this command (set --uri or ${connection.ENV_VAR} for a real server)",
            err=True,
        )
    return connection.connect(resolved, timeout_ms=timeout_ms)


def target_of(db: Database[Any]) -> str:
    """Name the database and where it lives, for messages and prompts."""
    return f"database {db.name!r} on {connection.describe_host(db)}"


def to_json(data: Any) -> str:
    """Render ``data`` as stable, indented JSON with secrets masked."""
    return connection.mask_text(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def echo(message: str = "", *, err: bool = False) -> None:
    """Print one message with every URI's password masked (the CLI's only way to print)."""
    click.echo(connection.mask_text(message), err=err)


def emit(result: Any, as_json: bool, render: Callable[[Any], str] | None = None) -> None:
    """Print ``result``: its ``to_dict()`` as JSON, else ``render(result)`` or a plain dump."""
    if as_json:
        data = result.to_dict() if hasattr(result, "to_dict") else result
        echo(to_json(data))
        return
    text = render(result) if render is not None else _plain_text(result)
    echo(text)


def _plain_text(result: Any) -> str:
    data = result.to_dict() if hasattr(result, "to_dict") else result
    if not isinstance(data, dict):
        return str(data)
    return "\n".join(f"{key}: {_json_default(value) if isinstance(value, datetime) else value}"
                     for key, value in data.items())


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def handle_errors(func: F) -> F:
    """Turn nsn-store and driver errors raised by a command into exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NsnStoreError as exc:
            fail(str(exc))
        except pymongo_errors.PyMongoError as exc:
            fail(str(translate(exc)))

    return wrapper  # type: ignore[return-value]
