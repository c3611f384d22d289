"""Schema commands: init, drop, status, verify, export.

Each command parses its options, calls one library function from
:mod:`nsn_store.migration` (or :mod:`nsn_store.schema._export`) and renders the
result. Exit codes: 0 success, 1 differences found (drift, stale export) or a
prompt answered no, 2 errors (bad URI, unreachable server, conflicts, a refused
unattended run).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from nsn_store.migration._diff import CREATE_COLLECTION, UPDATE_VALIDATOR, Step, format_key
from nsn_store.schema._registry import MIGRATION_ID, SCHEMA, CollectionSpec, IndexSpec


def scheduled_backlog(db: Database[Any]) -> dict[str, Any]:
    """Return the scheduled-message backlog for ``status`` (hook: scheduler helper)."""
    from nsn_store.scheduler._service import Scheduler

    return dict(Scheduler(db).backlog().to_dict())


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


def _collection_verdict(spec: CollectionSpec, steps: dict[tuple[str, str | None], Step]) -> str:
    if (spec.name, None) not in steps:
        return "up to date"
    step = steps[(spec.name, None)]
    if step.action == CREATE_COLLECTION:
        return f"create collection (validator, {spec.validation_level}/{spec.validation_action})"
    return "collMod: " + ", ".join(step.detail.get("changes", ())) + " differ"


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


def render_plan(db: Database[Any], steps: list[Step]) -> str:
    """Render the plan: every collection in order with its indexes and what init does."""
    by_target = {(step.collection, step.index): step for step in steps}
    lines = [f"Migration {MIGRATION_ID} on {target_of(db)}:"]
    for position, spec in enumerate(SCHEMA, 1):
        lines.append(f"{position:3d}. {spec.name:<18} {_collection_verdict(spec, by_target)}")
        for index in spec.indexes:
            lines += _index_lines(index, by_target.get((spec.name, index.name)))
    lines.append(_plan_summary(steps))
    return "\n".join(lines)


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
    """Render what init did."""
    if not result.steps:
        return f"Nothing to do: already at {MIGRATION_ID} ({result.host})."
    made = sum(1 for s in result.steps if s.action == CREATE_COLLECTION)
    updated = sum(1 for s in result.steps if s.action == UPDATE_VALIDATOR)
    indexes = len(result.steps) - made - updated
    lines = [
        (
            f"Applied {len(result.steps)} steps on {result.host}: {made} collections created, "
            f"{updated} validators updated, {indexes} indexes created."
        ),
        (
            f"Recorded {result.migration_id} (checksum {result.checksum[:12]}) in "
            f"{results.MIGRATIONS}."
        ),
    ]
    if result.moderated:
        lines.append(
            "validationLevel 'moderate' applied to "
            + ", ".join(result.moderated)
            + ": existing documents fail the new validator (see nsn-store check-data)."
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
    """Render a status report: one line per collection, then the record and differences."""
    lines = [_record_line(report)]
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


def render_backlog(backlog: dict[str, Any]) -> str:
    """Render the scheduled-message backlog in one line."""
    return (
        f"Scheduled messages: {backlog['due_now']} due now (oldest sendAt "
        f"{backlog['oldest_due_send_at'] or '-'}), {backlog['processing_live']} processing, "
        f"{backlog['processing_expired']} with expired leases, "
        f"{backlog['failed_last_day']} failed in the last day"
    )


def _record_line(report: results.StatusReport) -> str:
    record = report.record
    if record is None:
        return f"Migration {report.migration_id}: not recorded"
    when = record.get("appliedAt") or record.get("startedAt")
    steps = len(record.get("steps", []))
    return (
        f"Migration {report.migration_id}: {record.get('status')} ({steps} steps recorded, "
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
            f"refusing to apply {MIGRATION_ID} to {target_of(db)} without confirmation: "
            "stdin is not a terminal; review the plan and rerun with --yes"
        )
    question = f"Apply these {len(steps)} steps to {target_of(db)}?"
    if not click.confirm(question, default=False, err=True):
        echo("Aborted: nothing was written.", err=True)
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


@click.command("init", cls=Command)
@uri_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option(
    "--allow-moderate",
    is_flag=True,
    help="When existing documents fail a changed validator, apply it with "
    "validationLevel 'moderate' instead of stopping.",
)
@click.option(
    "--lock-timeout",
    type=FiniteFloatRange(0, 86_400),
    default=migration.DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    help="Seconds to wait for another init run to finish.",
)
def init_command(
    uri: str | None,
    as_json: bool,
    yes: bool,
    dry_run: bool,
    allow_moderate: bool,
    lock_timeout: float,
) -> None:
    """Create the collections, validators and indexes of migration 0001."""
    db = open_database(uri)
    steps = migration.plan(db)
    if dry_run:
        if as_json:
            echo(to_json({"dry_run": True, "steps": [s.to_dict() for s in steps]}))
        else:
            echo(render_plan(db, steps) + "\nDry run: nothing was written.")
        return
    if not as_json:
        echo(render_plan(db, steps))
    conflicted = any(step.is_conflict for step in steps)
    if steps and not conflicted and not yes and not connection.is_embedded(db):
        _confirm_apply(db, steps)
    with _progress(len(steps), stdout_is_terminal() and not as_json) as on_step:
        result = migration.init_schema(
            db, allow_moderate=allow_moderate, lock_timeout=lock_timeout, on_step=on_step
        )
    emit(result, as_json, render_result)


@click.command("drop", cls=Command)
@uri_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Drop without asking for the database name.")
def drop_command(uri: str | None, as_json: bool, yes: bool) -> None:
    """Drop the schema's collections (reverse creation order) and the migration record."""
    db = open_database(uri)
    if not yes:
        _confirm_drop(db)
    emit(migration.drop_schema(db), as_json, render_drop)


def _confirm_drop(db: Database[Any]) -> None:
    echo(
        f"This drops {len(SCHEMA)} collections and every document in them from {target_of(db)}.",
        err=True,
    )
    try:
        typed = click.prompt(
            "Type the database name to confirm", default="", show_default=False, err=True
        )
    except click.Abort:
        echo(err=True)  # end the unanswered prompt line
        fail("drop needs --yes or the database name typed at the prompt; nothing was dropped")
    if typed.strip() != db.name:
        echo(f"{typed.strip()!r} is not {db.name!r}: nothing was dropped.", err=True)
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


@click.command("status", cls=Command)
@uri_option
@json_option
def status_command(uri: str | None, as_json: bool) -> None:
    """Show each collection's state against the schema (never writes)."""
    db = open_database(uri)
    report = migration.schema_status(db)
    backlog = _backlog(db, report)
    if as_json:
        echo(to_json({**report.to_dict(), "backlog": backlog}))
        return
    emit(report, False, render_status)
    if backlog is not None:
        echo(render_backlog(backlog))


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
            echo(f"Drift: {len(exc.differences)} difference(s) from {MIGRATION_ID}:")
            echo("\n".join(f"  - {line}" for line in exc.differences))
        raise click.exceptions.Exit(EXIT_DIFFERENCES) from exc
    if as_json:
        echo(to_json(report.to_dict()))
    else:
        echo(f"The database matches {MIGRATION_ID} ({len(report.collections)} collections).")


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


SCHEMA_COMMANDS = [init_command, drop_command, status_command, verify_command, export_command]
