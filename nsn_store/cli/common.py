"""Helpers every nsn-store command shares: options, connecting, output, errors.

Commands stay thin: parse options, call one library function, render the
result with :func:`emit`. Errors are mapped to exit codes in one place,
:func:`exit_for` (alembic's ``run_cmd`` shape), which :class:`Command` runs
around every command; :class:`Group` prints click's own usage errors the same
way. Either way the user sees exactly one line, ``error: ...``, on stderr and
exit code 2 (130 for Ctrl-C), never a traceback; under ``--json`` stdout also
gets the error as one JSON object (:func:`error_report`), so a script reading
stdout always gets JSON. Driver errors reach :func:`exit_for` already
translated by the runners; one that escapes is translated there
(:func:`nsn_store.errors.translate`), never caught ad hoc in a command.
Everything printed passes through :func:`~nsn_store.masking.mask_text` with the
secrets of every URI in play, so no password or secret option leaks.

The default database is the file-backed embedded database in the user data
directory (:func:`~nsn_store.connection.default_file_uri`). A command that
writes (:data:`WRITING_COMMANDS`, not under ``--dry-run``) opens it as the one
writer, holding its lock; :class:`Command` closes it when the command ends,
which saves it, whether the command succeeded or failed part way: what a
command wrote before failing stays written, as on a server (a failed ``init``
keeps the steps it applied and recorded, so the next ``init`` resumes). Every
other command opens the last saved state read-only, with no lock, and never saves.

Numeric options use :class:`FiniteFloatRange` (click's ``FloatRange`` that also
refuses NaN and infinities) or ``click.IntRange``, always with a maximum.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from pymongo import errors as pymongo_errors
from pymongo.database import Database

from nsn_store import connection
from nsn_store.errors import DocumentValidationError, NsnStoreError, translate
from nsn_store.masking import mask_text, mask_uri

EXIT_OK = 0
EXIT_DIFFERENCES = 1  # drift, stale export, or the user declined at a prompt
EXIT_ERROR = 2  # bad input, unreachable server, refused operation
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
#: How long a command waits for a server (tests shorten it).
CONNECT_TIMEOUT_MS = 5000

#: Commands that write the database: on a file-backed embedded database they
#: take the writer lock and save when they end. ``--dry-run`` makes any a reader.
#: ``export`` never opens a database.
WRITING_COMMANDS = frozenset(
    {"init", "upgrade", "downgrade", "drop", "simulate", "worker", "shard"}
)

# The file-backed databases the running command opened: closed (saved) when it ends.
_OPENED: ContextVar[list[Any] | None] = ContextVar("nsn_store_cli_opened", default=None)

# The URIs of this invocation (arguments, environment, the one connected to):
# their secrets are masked wherever printed text quotes them.
_URIS: ContextVar[tuple[str, ...]] = ContextVar("nsn_store_cli_uris", default=())

# Whether this invocation asked for --json: errors are then JSON on stdout too.
_JSON: ContextVar[bool] = ContextVar("nsn_store_cli_json", default=False)


def _refuse_empty_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--uri ""`` (an unset shell variable, say) is an error, never "use the default"."""
    if value == "":
        raise click.BadParameter(
            "the URI is empty: give one, or leave --uri out for the default "
            f"(${connection.ENV_VAR}, else the embedded development database)",
            ctx,
            param,
        )
    return value


uri_option = click.option(
    "--uri",
    metavar="URI",
    default=None,
    callback=_refuse_empty_uri,
    help=(
        "MongoDB URI: mongodb://, mongodb+srv://, mongomock://host/db (in memory) or "
        "mongomock:///path/to/file [default: "
        f"${connection.ENV_VAR}, else the embedded development database "
        f"${connection.DATA_DIR_VAR}/{connection.DATA_FILE} (a per-user data directory)]"
    ),
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the report as JSON (stable keys)."
)


class FiniteFloatRange(click.FloatRange):
    """click's ``FloatRange`` that refuses NaN and infinities (which pass its bounds check)."""

    name = "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class DirectoryPath(click.Path):
    """A directory path option: not empty, no NUL (the OS cannot take one)."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
        if not text:
            self.fail("the directory must not be empty (use . for this one)", param, ctx)
        if "\0" in text:
            self.fail("the path holds a NUL character", param, ctx)
        return super().convert(value, param, ctx)


def stdin_is_interactive() -> bool:
    """Tell whether a person can answer a prompt (tests patch this)."""
    return sys.stdin.isatty()


def stdout_is_terminal() -> bool:
    """Tell whether progress bars make sense on stdout."""
    return sys.stdout.isatty()


def open_database(
    uri: str | None, *, timeout_ms: int | None = None, read_only: bool | None = None
) -> Database[Any]:
    """Connect to ``uri`` (or the default), announcing the embedded database on stderr.

    ``read_only`` None means: a writer when the running command writes
    (:func:`command_writes`). A file-backed database is closed, and so saved by
    a writer, when the command ends. The announcement comes after connecting,
    so a refused URI prints only its error, and shows the URI masked.
    """
    resolved = resolve_cli_uri(uri)
    reader = not command_writes() if read_only is None else read_only
    db = connection.connect(resolved, timeout_ms=timeout_ms or CONNECT_TIMEOUT_MS, read_only=reader)
    path = connection.embedded_file(db)
    if path is not None:
        opened = _OPENED.get()
        if opened is not None:
            opened.append(db.client)
        echo(_file_banner(path, reader), err=True)
    elif connection.scheme_of(resolved) == connection.EMBEDDED_SCHEME:
        echo(
            f"nsn-store: using the embedded in-memory database {mask_uri(resolved)}; nothing "
            f"persists after this command (set --uri or ${connection.ENV_VAR} for a real server)",
            err=True,
        )
    return db


def resolve_cli_uri(uri: str | None) -> str:
    """Return the URI a command uses: ``uri``, else ``$NSN_MONGODB_URI``, else the default file.

    Remembers it, so its secrets are masked in whatever the command prints.
    """
    resolved = connection.resolve_uri(uri, default=connection.default_file_uri())
    _URIS.set((*_URIS.get(), resolved))
    return resolved


def _file_banner(path: Path, reader: bool) -> str:
    if not reader:
        done = "saved when this command ends"
    elif path.exists():
        done = "reading its last saved state"
    else:
        done = "no file yet, so empty: nsn-store init creates it"
    return (
        f"nsn-store: using the embedded development database kept in {path} ({done}; "
        f"delete the file to reset it; set --uri or ${connection.ENV_VAR} for a real server)"
    )


def require_directory(directory: Path, *, what: str) -> None:
    """Refuse a folder option naming no folder, saying where it looked and what to pass.

    ``export --check`` compares the ``collections/`` folder of an nsn-store
    checkout: run anywhere else, it would report every file missing.
    """
    if directory.is_dir():
        return
    looked = directory.absolute()
    fail(
        f"no folder {str(directory)!r} here (looked for {looked}): {what}; run from the "
        "root of an nsn-store checkout, or pass --dir PATH",
        error_type="CommandError",
        fields={"path": str(looked)},
    )


def command_writes() -> bool:
    """Tell whether the running command writes (see :data:`WRITING_COMMANDS`)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command.name not in WRITING_COMMANDS:
        return False
    return not ctx.params.get("dry_run", False)


def target_of(db: Database[Any]) -> str:
    """Name the database and where it lives, for messages and prompts."""
    return f"database {db.name!r} on {connection.describe_host(db)}"


def to_json(data: Any) -> str:
    """Render ``data`` as stable, indented JSON with secrets masked."""
    return mask(json.dumps(data, indent=2, default=_json_default))


def mask(text: str) -> str:
    """Mask ``text`` for printing: every URI in it, and the secrets of this run's URIs."""
    return mask_text(text, *_URIS.get(), os.environ.get(connection.ENV_VAR))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def echo(message: str = "", *, err: bool = False) -> None:
    """Print one message with its secrets masked (the CLI's only way to print).

    A lone surrogate (a byte of an argument that is not UTF-8) is printed as
    its escape, as no terminal encoding can write it.
    """
    text = mask(message).encode("utf-8", "backslashreplace").decode("utf-8")
    click.echo(text, err=err)


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
    return "\n".join(
        f"{key}: {_json_default(value) if isinstance(value, datetime) else value}"
        for key, value in data.items()
    )


def fail(
    message: str,
    code: int = EXIT_ERROR,
    *,
    error_type: str = "CommandError",
    fields: Mapping[str, Any] | None = None,
) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``.

    Under ``--json`` stdout also gets :func:`error_report` (``error_type`` and
    ``fields`` go into it), so the exit code and the JSON always agree.
    """
    line = one_line(message)
    echo(f"error: {line}", err=True)
    if _JSON.get():
        echo(to_json(error_report(error_type, line, code, fields)))
    raise click.exceptions.Exit(code)


def error_report(
    error_type: str, message: str, exit_code: int, fields: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the JSON shape of an error: ``{"error": {"type", "message", "exit_code", ...}}``.

    ``type`` is the nsn-store error's class name (``ConnectionFailedError``,
    ``InvalidArgumentError``, ``DatabaseLockedError``, ...), or ``UsageError``
    (a bad option or argument), ``CommandError`` (refused by the command, e.g. an
    unattended ``init``), ``OSError`` (a file), ``Interrupted`` (Ctrl-C),
    ``Aborted`` (a prompt) or ``InternalError`` (a bug). Fields that some
    errors add, only when known: ``argument``, ``holder``, ``collection``,
    ``index``, ``server_code``, ``rules`` (a document's failing ``field: rule``
    pairs), ``document_id``, ``failing``, ``path``.
    """
    known = {k: v for k, v in (fields or {}).items() if v is not None and v != [] and v != ""}
    return {"error": {"type": error_type, "message": message, "exit_code": exit_code, **known}}


def one_line(message: str) -> str:
    """Fold ``message`` onto one line and escape control characters (a NUL, say)."""
    folded = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in folded)


def exit_for(exc: BaseException) -> NoReturn:
    """Map an error a command raised to its one-line message and exit code: the one place.

    click's own exits, usage errors and aborts pass through untouched (the
    group prints them); Ctrl-C exits 130; SystemExit passes through.
    """
    if isinstance(exc, click.exceptions.Exit | click.ClickException | click.Abort):
        raise exc
    if isinstance(exc, KeyboardInterrupt):
        fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED, error_type="Interrupted")
    if isinstance(exc, pymongo_errors.PyMongoError):
        exc = translate(exc)  # the runners translate; this catches one that escaped them
    if isinstance(exc, NsnStoreError):
        fail(_message_of(exc), error_type=type(exc).__name__, fields=_fields_of(exc))
    if isinstance(exc, OSError):
        path = os.fsdecode(exc.filename) if exc.filename is not None else None
        fail(_os_error(exc), error_type="OSError", fields={"path": path})
    if not isinstance(exc, Exception):
        raise exc  # SystemExit, GeneratorExit: not errors to report
    fail(
        f"unexpected {type(exc).__name__}: {exc} (this is a bug in nsn-store)",
        error_type="InternalError",
    )


def _message_of(exc: NsnStoreError) -> str:
    """Return the message shown for ``exc``; a validation failure names its fields."""
    rules = _failing_rules(exc)
    if not rules or not isinstance(exc, DocumentValidationError):
        return str(exc)
    where = f" in {exc.collection}" if exc.collection else ""
    return f"document failed validation{where}: {'; '.join(rules)}"


def _failing_rules(exc: NsnStoreError) -> list[str]:
    """Return a rejected document's failing ``field: rule`` pairs (``phone: pattern``)."""
    if not isinstance(exc, DocumentValidationError):
        return []
    from nsn_store.migration._checkdata import failing_rules

    info = exc.details.get("errInfo")
    return failing_rules(info.get("details") if isinstance(info, dict) else None)


def _fields_of(exc: NsnStoreError) -> dict[str, Any]:
    """Return the data an error carries, for its JSON report (see :func:`error_report`)."""
    fields = {
        name: getattr(exc, name, None)
        for name in ("argument", "holder", "collection", "index", "failing")
    }
    fields["server_code"] = getattr(exc, "code", None)
    if isinstance(exc, DocumentValidationError):
        fields["rules"] = _failing_rules(exc)
        info = exc.details.get("errInfo")
        document_id = info.get("failingDocumentId") if isinstance(info, dict) else None
        fields["document_id"] = None if document_id is None else str(document_id)
    return fields


def _os_error(exc: OSError) -> str:
    """Describe a file error by its path and reason, without Python's errno prefix."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    path = os.fsdecode(exc.filename)
    shown = path if len(path) <= 200 else f"{path[:100]}...{path[-40:]} ({len(path)} characters)"
    return f"{shown!r}: {reason}"


@contextmanager
def _errors_mapped(uris: Sequence[str | None]) -> Iterator[None]:
    """Remember ``uris`` for masking and map every error raised inside to an exit."""
    token = _URIS.set((*_URIS.get(), *(uri for uri in uris if uri)))
    try:
        yield
    except BaseException as exc:
        exit_for(exc)
    finally:
        _URIS.reset(token)


@contextmanager
def _closing_files() -> Iterator[None]:
    """Close (so save, for a writer) every file-backed database opened inside, even on error."""
    opened: list[Any] = []
    token = _OPENED.set(opened)
    try:
        yield
    except BaseException as exc:
        _close(opened, failing=exc)
        raise
    else:
        _close(opened, failing=None)
    finally:
        _OPENED.reset(token)


def _close(clients: list[Any], failing: BaseException | None) -> None:
    """Close ``clients``; a failed save is reported, with the command's own error if any."""
    for client in reversed(clients):
        try:
            client.close()
        except NsnStoreError as exc:
            if failing is None or isinstance(failing, click.exceptions.Exit):
                raise
            reason = str(failing) or type(failing).__name__
            raise NsnStoreError(f"{exc} (after the command failed: {reason})") from exc


class Command(click.Command):
    """An nsn-store command: errors mapped by :func:`exit_for`, secrets masked, files saved."""

    def invoke(self, ctx: click.Context) -> Any:
        token = _JSON.set(bool(ctx.params.get("as_json")) or _JSON.get())
        try:
            with _errors_mapped([ctx.params.get("uri")]), _closing_files():
                return super().invoke(ctx)
        finally:
            _JSON.reset(token)


class Group(click.Group):
    """The ``nsn-store`` group: every error, click's usage errors too, is one line on stderr."""

    command_class = Command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        token = _URIS.set(tuple(arg for arg in argv if "://" in arg))
        # Before parsing, so a usage error under --json is JSON too ("--" ends options).
        json_token = _JSON.set("--json" in argv[: argv.index("--") if "--" in argv else None])
        try:
            with _errors_mapped([]):
                result = super().main(argv, prog_name, complete_var, False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _report_click_error(f"{one_line(exc.format_message())}{hint}", exc.exit_code)
        except click.ClickException as exc:
            _report_click_error(one_line(exc.format_message()), exc.exit_code)
        except click.Abort as exc:
            _report_abort(exc)
        finally:
            _JSON.reset(json_token)
            _URIS.reset(token)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def _report_click_error(message: str, code: int) -> NoReturn:
    """Print one of click's own errors (a bad option, say) as every other error, then exit."""
    try:
        fail(message, code, error_type="UsageError")
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)


def _report_abort(exc: click.Abort) -> NoReturn:
    """Exit 130 for Ctrl-C outside a command (click turns it into Abort), 1 for a prompt."""
    cause = exc.__cause__ or exc.__context__
    try:
        if isinstance(cause, KeyboardInterrupt):
            fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED, error_type="Interrupted")
        fail("aborted", EXIT_DIFFERENCES, error_type="Aborted")
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
