"""Schema commands: init, upgrade, downgrade, history, drop, status, verify, export.

Each command parses its options, calls one library function from
:mod:`nsn_store.migration` (or :mod:`nsn_store.schema._export`) and renders the
result. Exit codes: 0 success, 1 differences found (drift, stale export) or a
prompt answered no, 2 errors (bad URI, unreachable server, conflicts, a refused
unattended run).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from pymongo.database import Database

from nsn_store import connection
from nsn_store.cli.common import (
    EXIT_DIFFERENCES,
    Command,
    DirectoryPath,
    FiniteFloatRange,
    echo,
    emit,
    fail,
    json_option,
    open_database,
    require_directory,
    stdin_is_interactive,
    stdout_is_terminal,
    target_of,
    to_json,
    uri_option,
)
from nsn_store.errors import DriftError
from nsn_store.migration import _results as results
from nsn_store.migration import _runner as migration
from nsn_store.migration._diff import (
    CREATE_COLLECTION,
    DROP_COLLECTION,
    UPDATE_VALIDATOR,
    Step,
    format_key,
)
from nsn_store.schema._registry import MIGRATIONS, SCHEMA, CollectionSpec, IndexSpec


def scheduled_backlog(db: Database[Any]) -> dict[str, Any]:
    """Return the scheduled-message backlog for ``status`` (hook: scheduler helper)."""
    from nsn_store.scheduler._service import Scheduler

    return dict(Scheduler(db).backlog().to_dict())


def _workers(db: Database[Any], report: results.StatusReport) -> list[dict[str, Any]] | None:
    """Return the live workers once the workers registry (migration 0002) exists."""
    from nsn_store.worker._registry import list_workers

    registry = [s for s in report.collections if s.name == "workers"]
    if not (registry and registry[0].exists):
        return None
    return [worker.to_dict() for worker in list_workers(db)]


def _backlog(db: Database[Any], report: results.StatusReport) -> dict[str, Any] | None:
    """Return the backlog once the scheduled-message collection exists."""
    scheduled = [s for s in report.collections if s.name == "scheduledMessages"]
    return scheduled_backlog(db) if scheduled and scheduled[0].exists else None


# ---------------------------------------------------------------- rendering


def _index_options(index: IndexSpec) -> str:
    parts = []
    for name, value in index.options().items():
        if name == "unique":
            parts.append("unique")
        elif name == "partialFilterExpression":
            parts.append(f"partial {json.dumps(value)}")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def _collection_verdict(spec: CollectionSpec, steps: list[Step]) -> str:
    """Say what happens to the collection itself: created, collModded (by which migration)."""
    if not steps:
        return "up to date"
    verdicts: list[str] = []
    for step in steps:
        if step.action == CREATE_COLLECTION:
            options = step.detail.get("options", {})
            level = options.get("validationLevel", spec.validation_level)
            action = options.get("validationAction", spec.validation_action)
            verdict = f"create collection (validator, {level}/{action})"
        else:
            verdict = "collMod: " + ", ".join(step.detail.get("changes", ())) + " differ"
        verdicts.append(verdict if not verdicts else f"then {step.migration}: {verdict}")
    return "; ".join(verdicts)


def _index_lines(index: IndexSpec, step: Step | None) -> list[str]:
    options = _index_options(index)
    shown = format_key(index.keys) + (f" {options}" if options else "")
    verdict = "present" if step is None else "CONFLICT" if step.is_conflict else "create"
    lines = [f"       {verdict:<9}{index.name:<27}{shown}"]
    if step is not None and step.is_conflict:
        lines.append(
            f"                {step.detail.get('reason')}: found "
            f"{format_key(step.detail['existing']['key'])} "
            f"{step.detail['existing']['options'] or ''}".rstrip()
        )
    return lines


def render_plan(db: Database[Any], steps: list[Step], target: str | None = None) -> str:
    """Render the plan: every collection in order with its indexes and what the upgrade does."""
    schema = MIGRATIONS.schema(target)
    by_index = {(step.collection, step.index): step for step in steps if step.index}
    lines = [f"Migration {_migrations_of(steps, target)} on {target_of(db)}:"]
    for position, spec in enumerate(schema, 1):
        own = [s for s in steps if s.collection == spec.name and s.index is None]
        lines.append(f"{position:3d}. {spec.name:<18} {_collection_verdict(spec, own)}")
        for index in spec.indexes:
            lines += _index_lines(index, by_index.get((spec.name, index.name)))
    lines.append(_plan_summary(steps))
    return "\n".join(lines)


def _migrations_of(steps: list[Step], target: str | None) -> str:
    """Name the migrations the steps belong to (the target's when there are none)."""
    ids = list(dict.fromkeys(str(step.migration) for step in steps if step.migration))
    return ", ".join(ids) if ids else MIGRATIONS.get(target or "head").id


def _plan_summary(steps: list[Step]) -> str:
    if not steps:
        return "Nothing to do: every collection, validator and index is in place."
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.action] = counts.get(step.action, 0) + 1
    words = {
        "create_collection": "collections to create",
        "update_validator": "validators to update (collMod)",
        "create_index": "indexes to create",
        "index_conflict": "index conflicts",
    }
    parts = [f"{counts[a]} {w}" for a, w in words.items() if a in counts]
    return f"Plan: {len(steps)} steps: " + ", ".join(parts) + "."


def render_result(result: results.MigrationResult) -> str:
    """Render what init or upgrade did."""
    if not result.steps and not result.applied:
        return f"Nothing to do: already at {result.migration_id} ({result.host})."
    made = sum(1 for s in result.steps if s.action == CREATE_COLLECTION)
    updated = sum(1 for s in result.steps if s.action == UPDATE_VALIDATOR)
    indexes = len(result.steps) - made - updated
    lines = [
        f"Applied {len(result.steps)} steps on {result.host}: {made} collections created, "
        f"{updated} validators updated, {indexes} indexes created."
    ]
    lines += [
        f"Recorded {migration_id} (checksum {digest[:12]}) in {results.RECORDS}."
        for migration_id, digest in result.applied
    ]
    if result.moderated:
        lines.append(
            "validationLevel 'moderate' applied to "
            + ", ".join(result.moderated)
            + ": existing documents fail the new validator (see nsn-store check-data)."
        )
    return "\n".join(lines)


def render_downgrade_plan(
    db: Database[Any], target: str, plans: list[tuple[str, list[Step]]]
) -> str:
    """Render what a downgrade would undo, migration by migration, newest first."""
    if not plans:
        return f"Nothing to do: no migration newer than {target} is recorded on {target_of(db)}."
    lines = [f"Downgrade to {target} on {target_of(db)}:"]
    for migration_id, steps in plans:
        lines.append(f"  revert {migration_id}:")
        lines += [f"    - {step.describe()}" for step in steps] or ["    - (nothing left)"]
        lines.append(f"    - delete its record in {results.RECORDS}")
    return "\n".join(lines)


def render_downgrade(result: results.DowngradeResult) -> str:
    """Render what a downgrade did."""
    if not result.reverted:
        return f"Nothing to do: nothing newer than {result.target} is recorded ({result.host})."
    dropped = [s.collection for s in result.steps if s.action == DROP_COLLECTION]
    lines = [
        f"Reverted {', '.join(result.reverted)} on {result.host}: {len(result.steps)} steps, "
        f"{len(dropped)} collections dropped ({', '.join(dropped) or 'none'}).",
        f"The database is at {result.target}.",
    ]
    if result.moderated:
        lines.append(
            "validationLevel 'moderate' applied to "
            + ", ".join(result.moderated)
            + ": existing documents fail the restored validator (see nsn-store check-data)."
        )
    return "\n".join(lines)


def render_history(history: results.History) -> str:
    """Render the chain: one line per migration, applied or not, when, where, checksum."""
    lines = [f"Head {history.head}; the database is at {history.current or 'base'}."]
    for entry in history.entries:
        data = entry.to_dict()
        if entry.record is None:
            lines.append(f"  {entry.id:<24} pending")
            continue
        when = data["applied_at"] or data["started_at"] or "-"
        matches = "checksum ok" if entry.checksum_matches else "checksum DIFFERS"
        known = "" if entry.known else " (not in this version's chain)"
        lines.append(
            f"  {entry.id:<24} {entry.status:<9} {when}  host {data['host']}  {matches}, "
            f"{data['steps']} steps{known}"
        )
    return "\n".join(lines)


def render_drop(result: results.DropResult) -> str:
    lines = [
        f"Dropped {len(result.dropped)} collections in reverse creation order: "
        + (", ".join(result.dropped) or "none")
    ]
    if result.absent:
        lines.append("Already absent: " + ", ".join(result.absent))
    lines.append("Migration record cleared." if result.record_cleared else "No migration record.")
    return "\n".join(lines)


def render_status(report: results.StatusReport) -> str:
    """Render a status report: the records, one line per collection, then differences."""
    lines = _record_lines(report)
    for position, status in enumerate(report.collections, 1):
        lines.append(f"{position:3d}. {status.name:<18} {_status_line(status)}")
    if report.extra_collections:
        lines.append(
            "Other collections (not in the schema): " + ", ".join(report.extra_collections)
        )
    if report.lock:
        lines.append(
            f"Migration lock held by {report.lock.get('holder')} "
            f"until {report.lock.get('expiresAt')}"
        )
    differences = report.differences()
    if differences:
        lines.append(f"{len(differences)} difference(s):")
        lines += [f"  - {line}" for line in differences]
    else:
        lines.append("The database matches the schema.")
    return "\n".join(lines)


def render_workers(workers: list[dict[str, Any]]) -> str:
    """Render the live workers: a count, then one line each (id, host:pid, heartbeat)."""
    if not workers:
        from nsn_store.worker._registry import DEFAULT_STALE_AFTER

        minutes = int(DEFAULT_STALE_AFTER.total_seconds() // 60)
        return f"Workers: none heard from in the last {minutes} minutes"
    lines = [f"Workers: {len(workers)} live"]
    for worker in workers:
        scope = "all tenants" if worker["tenants"] is None else f"{len(worker['tenants'])} tenants"
        lines.append(
            f"  {worker['worker_id']}  {worker['host']}:{worker['pid']}  v{worker['version']}  "
            f"concurrency {worker['concurrency']}, {scope}, heartbeat {worker['heartbeat_at']}"
        )
    return "\n".join(lines)


def render_backlog(backlog: dict[str, Any]) -> str:
    """Render the scheduled-message backlog in one line."""
    return (
        f"Scheduled messages: {backlog['due_now']} due now (oldest sendAt "
        f"{backlog['oldest_due_send_at'] or '-'}), {backlog['processing_live']} processing, "
        f"{backlog['processing_expired']} with expired leases, "
        f"{backlog['failed_last_day']} failed in the last day"
    )


def _record_lines(report: results.StatusReport) -> list[str]:
    return [_record_line(id_, record) for id_, _, record in report.records]


def _record_line(migration_id: str, record: dict[str, Any] | None) -> str:
    if record is None:
        return f"Migration {migration_id}: not recorded"
    when = record.get("appliedAt") or record.get("startedAt")
    steps = len(record.get("steps", []))
    return (
        f"Migration {migration_id}: {record.get('status')} ({steps} steps recorded, "
        f"{when}, host {record.get('host')})"
    )


def _status_line(status: Any) -> str:
    if not status.exists:
        return "MISSING"
    parts = [
        f"{status.count} docs",
        "validator ok" if status.validator_equal else "validator DIFFERS",
    ]
    if not status.options_equal:
        parts.append("level/action DIFFER")
    if status.indexes_missing:
        parts.append("missing: " + ", ".join(status.indexes_missing))
    if status.indexes_different:
        parts.append("different: " + ", ".join(d.name for d in status.indexes_different))
    if status.indexes_extra:
        parts.append("extra: " + ", ".join(status.indexes_extra))
    if len(parts) == 2 and status.validator_equal:
        parts.append("indexes ok")
    return ", ".join(parts)


# ---------------------------------------------------------------- commands


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[migration.OnStep | None]:
    """Yield an on_step callback drawing a progress bar, or None when not on a terminal."""
    if not enabled or total == 0:
        yield None
        return
    with click.progressbar(length=total, label="Applying", file=sys.stderr) as bar:
        yield lambda step, position, count: bar.update(1)


def _confirm_apply(db: Database[Any], steps: list[Step]) -> None:
    """Ask before writing to a real server; refuse when nobody can answer."""
    if not stdin_is_interactive():
        fail(
            f"refusing to apply {_migrations_of(steps, None)} to {target_of(db)} without "
            "confirmation: stdin is not a terminal; review the plan and rerun with --yes"
        )
    question = f"Apply these {len(steps)} steps to {target_of(db)}?"
    if not click.confirm(question, default=False, err=True):
        echo("Aborted: nothing was written.", err=True)
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


F = TypeVar("F", bound=Callable[..., Any])


def _migration_options(validator: str) -> Callable[[F], F]:
    """The options every migration command takes: --allow-moderate and --lock-timeout.

    ``validator`` says which validator existing documents may fail ("changed" for
    upgrades, "restored" for downgrades).
    """
    moderate = click.option(
        "--allow-moderate",
        is_flag=True,
        help=f"When existing documents fail a {validator} validator, apply it with "
        "validationLevel 'moderate' instead of stopping.",
    )
    timeout = click.option(
        "--lock-timeout",
        type=FiniteFloatRange(0, 86_400),
        default=migration.DEFAULT_LOCK_TIMEOUT,
        show_default=True,
        help="Seconds to wait for another migration run to finish.",
    )

    def decorate(command: F) -> F:
        return moderate(timeout(command))

    return decorate


@click.command("init", cls=Command)
@uri_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@_migration_options("changed")
def init_command(
    uri: str | None,
    as_json: bool,
    yes: bool,
    dry_run: bool,
    allow_moderate: bool,
    lock_timeout: float,
) -> None:
    """Bring the database to the newest migration: collections, validators, indexes."""
    _upgrade(uri, None, as_json, yes, dry_run, allow_moderate, lock_timeout)


def _upgrade(
    uri: str | None,
    target: str | None,
    as_json: bool,
    yes: bool,
    dry_run: bool,
    allow_moderate: bool,
    lock_timeout: float,
) -> None:
    """Plan, show, approve (a real server), then apply the migrations up to ``target``."""
    if MIGRATIONS.position(target) == 0:  # a bad target is refused before connecting
        fail("upgrade needs a migration to reach, not base (nsn-store downgrade base undoes all)")
    db = open_database(uri)
    steps = migration.plan(db, target=target)
    if dry_run:
        if as_json:
            echo(to_json({"dry_run": True, "steps": [s.to_dict() for s in steps]}))
        else:
            echo(render_plan(db, steps, target) + "\nDry run: nothing was written.")
        return
    if not as_json:
        echo(render_plan(db, steps, target))
    conflicted = any(step.is_conflict for step in steps)
    if steps and not conflicted and not yes and not connection.is_embedded(db):
        _confirm_apply(db, steps)
    with _progress(len(steps), stdout_is_terminal() and not as_json) as on_step:
        if target is None:  # init, or upgrade to the head
            result = migration.init_schema(
                db, allow_moderate=allow_moderate, lock_timeout=lock_timeout, on_step=on_step
            )
        else:
            result = migration.upgrade(
                db,
                target,
                allow_moderate=allow_moderate,
                lock_timeout=lock_timeout,
                on_step=on_step,
            )
    emit(result, as_json, render_result)


@click.command("upgrade", cls=Command)
@click.argument("target", required=False, default=None, metavar="[TARGET]")
@uri_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@_migration_options("changed")
def upgrade_command(
    target: str | None,
    uri: str | None,
    as_json: bool,
    yes: bool,
    dry_run: bool,
    allow_moderate: bool,
    lock_timeout: float,
) -> None:
    """Apply the migrations up to TARGET (default: the newest), each recorded.

    TARGET is a migration id, a unique prefix of one (0002) or head. Applied
    migrations are left untouched; see nsn-store history.
    """
    _upgrade(uri, target, as_json, yes, dry_run, allow_moderate, lock_timeout)


@click.command("downgrade", cls=Command)
@click.argument("target", metavar="TARGET")
@uri_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Downgrade without asking for the database name.")
@click.option("--dry-run", is_flag=True, help="Print what would be undone and write nothing.")
@_migration_options("restored")
def downgrade_command(
    target: str,
    uri: str | None,
    as_json: bool,
    yes: bool,
    dry_run: bool,
    allow_moderate: bool,
    lock_timeout: float,
) -> None:
    """Undo, newest first, the migrations newer than TARGET (base: all of them).

    Each drops the collections it created, with every document in them, and
    restores the collections it revised. Asks for the database name, as drop
    does, unless --yes.
    """
    target_id = MIGRATIONS.get(target).id if target != "base" else "base"
    db = open_database(uri)
    plans = migration.downgrade_plan(db, target)
    if as_json and dry_run:
        echo(to_json({"dry_run": True, "target": target_id, "migrations": _plan_dicts(plans)}))
        return
    if not as_json:
        echo(render_downgrade_plan(db, target_id, plans))
    if dry_run:
        echo("Dry run: nothing was written.")
        return
    if plans and not yes:
        reverted = ", ".join(migration_id for migration_id, _ in plans)
        _confirm_by_name(db, f"This reverts {reverted} on {target_of(db)}: {_losses(plans)}.")
    total = sum(len(steps) for _, steps in plans)
    with _progress(total, stdout_is_terminal() and not as_json) as on_step:
        result = migration.downgrade(
            db, target, allow_moderate=allow_moderate, lock_timeout=lock_timeout, on_step=on_step
        )
    emit(result, as_json, render_downgrade)


def _plan_dicts(plans: list[tuple[str, list[Step]]]) -> list[dict[str, Any]]:
    return [{"migration": id_, "steps": [s.to_dict() for s in steps]} for id_, steps in plans]


def _losses(plans: list[tuple[str, list[Step]]]) -> str:
    """Say what a downgrade destroys: the collections it drops, with their documents."""
    dropped = [s.collection for _, steps in plans for s in steps if s.action == DROP_COLLECTION]
    if not dropped:
        return "no collection is dropped"
    return f"it drops {', '.join(dropped)} and every document in them"


@click.command("history", cls=Command)
@uri_option
@json_option
def history_command(uri: str | None, as_json: bool) -> None:
    """List the migrations: applied or not, when, by which host, checksum match (never writes)."""
    db = open_database(uri)
    emit(migration.history(db), as_json, render_history)


@click.command("drop", cls=Command)
@uri_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Drop without asking for the database name.")
def drop_command(uri: str | None, as_json: bool, yes: bool) -> None:
    """Drop the schema's collections (reverse creation order) and the migration records."""
    db = open_database(uri)
    if not yes:
        warning = (
            f"This drops {len(SCHEMA)} collections and every document in them from {target_of(db)}."
        )
        _confirm_by_name(db, warning, command="drop", nothing="nothing was dropped")
    emit(migration.drop_schema(db), as_json, render_drop)


def _confirm_by_name(
    db: Database[Any],
    warning: str,
    *,
    command: str = "downgrade",
    nothing: str = "nothing was changed",
) -> None:
    """Ask for the database name before destroying data; refuse when nobody answers."""
    echo(warning, err=True)
    try:
        typed = click.prompt(
            "Type the database name to confirm", default="", show_default=False, err=True
        )
    except click.Abort:
        echo(err=True)  # end the unanswered prompt line
        fail(f"{command} needs --yes or the database name typed at the prompt; {nothing}")
    if typed.strip() != db.name:
        echo(f"{typed.strip()!r} is not {db.name!r}: {nothing}.", err=True)
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


@click.command("status", cls=Command)
@uri_option
@json_option
def status_command(uri: str | None, as_json: bool) -> None:
    """Show each collection's state against the schema (never writes)."""
    db = open_database(uri)
    report = migration.schema_status(db)
    backlog = _backlog(db, report)
    workers = _workers(db, report)
    if as_json:
        echo(to_json({**report.to_dict(), "backlog": backlog, "workers": workers}))
        return
    emit(report, False, render_status)
    if backlog is not None:
        echo(render_backlog(backlog))
    if workers is not None:
        echo(render_workers(workers))


@click.command("verify", cls=Command)
@uri_option
@json_option
def verify_command(uri: str | None, as_json: bool) -> None:
    """Exit 0 when the database matches the schema, 1 on drift, 2 on errors."""
    db = open_database(uri)
    try:
        report = migration.verify_schema(db)
    except DriftError as exc:
        if as_json:
            echo(to_json({"matches": False, "differences": exc.differences}))
        else:
            echo(f"Drift: {len(exc.differences)} difference(s) from {MIGRATIONS.head.id}:")
            echo("\n".join(f"  - {line}" for line in exc.differences))
        raise click.exceptions.Exit(EXIT_DIFFERENCES) from exc
    if as_json:
        echo(to_json(report.to_dict()))
    else:
        echo(f"The database matches {report.migration_id} ({len(report.collections)} collections).")


@click.command("export", cls=Command)
@click.option(
    "--dir",
    "directory",
    type=DirectoryPath(),
    default=Path("collections"),
    show_default=True,
    help="Directory of the JSON files.",
)
@click.option("--check", is_flag=True, help="Compare instead of writing; exit 1 on differences.")
@json_option
def export_command(directory: Path, check: bool, as_json: bool) -> None:
    """Write collections/*.json: the validators and indexes that init applies."""
    from nsn_store.schema import _export as export

    if not check:
        written = [str(path) for path in export.write(directory)]
        emit({"written": written}, as_json, lambda r: f"Wrote {len(written)} files to {directory}")
        return
    require_directory(directory, what="export --check compares the files in collections/")
    differences = export.check(directory)
    if as_json:
        echo(to_json({"up_to_date": not differences, "differences": differences}))
    elif differences:
        echo(f"{directory} differs from the schema (run nsn-store export):")
        echo("\n".join(f"  - {line}" for line in differences))
    else:
        echo(f"{directory} is up to date.")
    if differences:
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


SCHEMA_COMMANDS = [
    init_command,
    upgrade_command,
    downgrade_command,
    history_command,
    drop_command,
    status_command,
    verify_command,
    export_command,
]
