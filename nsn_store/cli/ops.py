"""Operations commands: ``simulate``, ``check-data`` and ``shard``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from nsn_store import connection
from nsn_store.arguments import MAX_LIMIT
from nsn_store.cli.common import (
    EXIT_DIFFERENCES,
    EXIT_OK,
    Command,
    FiniteFloatRange,
    emit,
    json_option,
    open_database,
    resolve_cli_uri,
    stdout_is_terminal,
    uri_option,
)

#: Bounds of a simulated run, so a typo cannot start a run that never ends.
MAX_SIMULATED_MESSAGES = 1_000_000  # tenants x messages, and tenants x contacts
MAX_TICKS = 1_000_000  # cron runs the run may need (see simulate_report.max_ticks)
DAY = 86_400.0
YEAR = 365 * DAY


@click.command(cls=Command)
@click.option(
    "--tenants",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="Tenants to seed (the original load: 100).",
)
@click.option(
    "--messages",
    "messages_per_tenant",
    type=click.IntRange(1, MAX_SIMULATED_MESSAGES),
    default=500,
    show_default=True,
    help="Scheduled messages per tenant.",
)
@click.option(
    "--spread",
    type=FiniteFloatRange(0, YEAR),
    default=600.0,
    show_default=True,
    help="Seconds over which sendAt is spread (virtual, or real with --clock wall).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Workers (each with its own worker id, as separate processes).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="Senders per worker (threads or asyncio tasks).",
)
@click.option(
    "--mode",
    type=click.Choice(["threads", "asyncio"]),
    default="threads",
    show_default=True,
    help="nsn_store.Worker (threads) or AsyncWorker (asyncio).",
)
@click.option(
    "--clock",
    type=click.Choice(["virtual", "wall"]),
    default="virtual",
    show_default=True,
    help="virtual: a manual clock ticked like a cron; wall: real time, real claim lag.",
)
@click.option(
    "--failure-rate",
    type=FiniteFloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Share of first send attempts that fail.",
)
@click.option(
    "--retry-success-rate",
    type=FiniteFloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Share of retries that succeed.",
)
@click.option(
    "--seed",
    type=click.IntRange(-(2**63), 2**63 - 1),
    default=42,
    show_default=True,
    help="Seed: the same seed gives the same counts.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, MAX_LIMIT),
    default=50,
    show_default=True,
    help="Messages claimed per claim_due call.",
)
@click.option(
    "--lease",
    type=FiniteFloatRange(0, DAY, min_open=True),
    default=120.0,
    show_default=True,
    help="Lease in seconds.",
)
@click.option(
    "--tick",
    type=FiniteFloatRange(0.001, DAY),
    default=60.0,
    show_default=True,
    help="Virtual seconds between cron runs.",
)
@click.option(
    "--contacts",
    "contacts_per_tenant",
    type=click.IntRange(1, 10_000),
    default=10,
    show_default=True,
    help="Contacts per tenant.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 20),
    default=5,
    show_default=True,
    help="Attempts before a message fails for good.",
)
@click.option(
    "--crashes",
    type=click.IntRange(0, 256),
    default=0,
    show_default=True,
    help="Workers that claim a batch and die without finishing it.",
)
@click.option(
    "--backoff",
    type=FiniteFloatRange(0.001, 6 * 3600),
    default=30.0,
    show_default=True,
    help="The scheduler's base retry backoff, in seconds.",
)
@click.option(
    "--latency",
    type=FiniteFloatRange(0, 60),
    default=0.0,
    show_default=True,
    help="The fake sender's latency per send, in wall seconds.",
)
@uri_option
@json_option
def simulate(uri: str | None, as_json: bool, **options: Any) -> None:
    """Seed tenants and messages, drive workers through them, report the run.

    Exits 1 when a message was sent twice or lost.
    """
    from nsn_store.simulate._report import SimulationConfig
    from nsn_store.simulate._run import run_simulation

    config = SimulationConfig(**options)
    _check_run_size(config)
    db = open_database(uri)
    resolved = resolve_cli_uri(uri)
    opener = (lambda: connection.open_async(db, resolved)) if config.mode == "asyncio" else None
    with _progress(config.total, enabled=stdout_is_terminal() and not as_json) as progress:
        report = run_simulation(db, config, progress=progress, open_async_db=opener)
    emit(report, as_json, render_simulation)
    if not report.ok:
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


def _check_run_size(config: Any) -> None:
    """Refuse a run too large to finish: too many documents or cron ticks.

    A wall-clock run is bounded by the same horizon in real seconds; it stops
    once every message is finished.
    """
    from nsn_store.simulate._report import max_ticks

    for what, count in (
        ("messages", config.total),
        ("contacts", config.tenants * config.contacts_per_tenant),
    ):
        if count > MAX_SIMULATED_MESSAGES:
            raise click.UsageError(
                f"the run would seed {count} {what}, more than {MAX_SIMULATED_MESSAGES}: "
                "lower --tenants or --messages/--contacts"
            )
    ticks = max_ticks(config)
    if ticks > MAX_TICKS:
        raise click.UsageError(
            f"the run may need {ticks} ticks of {config.tick:g} s, more than {MAX_TICKS}: "
            "raise --tick or lower --spread, --lease or --max-attempts"
        )


def render_simulation(r: Any) -> str:
    """Render a SimulationReport as the lines ``simulate`` prints."""
    c = r.config
    crashed = f", abandoned by crashed workers {r.crashed_claims}" if r.crashed_claims else ""
    kind = "Worker threads" if c.mode == "threads" else "AsyncWorker tasks"
    head = (
        f"simulation: {c.tenants} tenants x {c.messages_per_tenant} messages = {r.total}, "
        f"{c.workers} workers x {c.concurrency} ({kind}), {c.clock} clock, seed {c.seed}"
    )
    counts = (
        f"  sent {r.sent}, failed for good {r.failed}, retries {r.retries}, "
        f"claims {r.claims}{crashed}"
    )
    verdict = f"  duplicates {r.duplicates}, lost {r.lost}  ->  {'OK' if r.ok else 'FAILED'}"
    if c.clock == "virtual":
        lag = (
            f"  lag sendAt->claim (virtual s): p50 {r.lag_p50:.1f}, p95 {r.lag_p95:.1f}, "
            f"max {r.lag_max:.1f} ({r.ticks} ticks of {c.tick:g}s, "
            f"{r.virtual_seconds:.0f}s virtual)"
        )
    else:
        lag = (
            f"  lag sendAt->claim (wall s): p50 {r.lag_p50:.3f}, p95 {r.lag_p95:.3f}, "
            f"max {r.lag_max:.3f} (workers wake at the next sendAt; "
            f"{r.virtual_seconds:.1f}s real)"
        )
    speed = (
        f"  throughput {r.throughput:.1f} messages/s over {r.run_seconds:.1f}s of "
        f"workers; seeding {r.seed_seconds:.1f}s, rollup {r.rollup_seconds:.1f}s, "
        f"wall {r.wall_seconds:.1f}s"
    )
    totals = f"  counters {r.counters}, aggregate rows {r.aggregate_rows}"
    return f"{head}\n{counts}\n{verdict}\n{lag}\n{speed}\n{totals}"


@contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Any]:
    """Yield a ``progress(done, total)`` callback drawing a bar, or None."""
    if not enabled:
        yield None
        return
    with click.progressbar(length=total, label="sending") as bar:
        state = {"shown": 0}

        def progress(done: int, _total: int) -> None:
            bar.update(done - state["shown"])
            state["shown"] = done

        yield progress


@click.command("check-data", cls=Command)
@click.option(
    "--collection",
    "collections",
    multiple=True,
    metavar="NAME",
    help="Check only this collection (repeatable). Default: all.",
)
@click.option(
    "--sample",
    type=click.IntRange(0, MAX_LIMIT),
    default=5,
    show_default=True,
    help="Failing documents to explain per collection.",
)
@uri_option
@json_option
def check_data(collections: tuple[str, ...], sample: int, uri: str | None, as_json: bool) -> None:
    """Report existing documents that the schema's validators would reject.

    Exits 0 when every document fits, 1 when some do not, 2 on errors.
    """
    from nsn_store.migration._checkdata import check_data as run_check

    db = open_database(uri)
    report = run_check(db, sample=sample, collections=collections or None)
    emit(report, as_json, _render_check)
    raise click.exceptions.Exit(EXIT_OK if report.clean else EXIT_DIFFERENCES)


def _render_check(report: Any) -> str:
    lines = []
    for result in report.results:
        if not result.exists:
            lines.append(f"{result.collection}: not created yet")
            continue
        lines.append(f"{result.collection}: {result.count} failing document(s)")
        for sample in result.samples:
            lines.append(f"  {sample.id}: {'; '.join(sample.rules) or 'see details'}")
    verdict = (
        "all documents fit the schema"
        if report.clean
        else (f"{report.failing} document(s) would fail validation")
    )
    return "\n".join([*lines, verdict])


@click.command(cls=Command)
@click.option("--dry-run", is_flag=True, help="Print the plan and commands; change nothing.")
@uri_option
@json_option
def shard(dry_run: bool, uri: str | None, as_json: bool) -> None:
    """Print the shard key of each collection with the reason, and apply it on a mongos.

    The plan is static (it comes from the schema), so ``--dry-run`` needs only
    the database's name, read from the URI: it never connects.
    """
    from nsn_store.migration._sharding import apply_shard_plan, shard_plan

    if dry_run:
        name = connection.database_name(resolve_cli_uri(uri))
        result = apply_shard_plan(None, shard_plan(), dry_run=True, database=name)
    else:
        result = apply_shard_plan(open_database(uri), shard_plan(), dry_run=False)
    emit(result, as_json, _render_shard)


def _render_shard(result: Any) -> str:
    from nsn_store.migration._sharding import describe

    lines = describe(result.plan.choices)
    verb = "applied" if result.applied else "would run (dry run)"
    lines.append(f"{verb} on database {result.database!r}:")
    # JSON, so each command can be pasted into mongosh as it is.
    lines.extend(f"  {json.dumps(command)}" for command in result.commands)
    return "\n".join(lines)


OPS_COMMANDS = [simulate, check_data, shard]
