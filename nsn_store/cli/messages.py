"""Dead-letter commands: ``nsn-store messages failed | requeue | show``.

Thin commands over :meth:`Scheduler.failed <nsn_store.scheduler.Scheduler.failed>`,
``requeue`` and ``show``: ``failed`` lists the messages that failed for good
with their last error, ``requeue`` puts them back to ``scheduled`` now with
their attempts reset (one write however many match, so a repeat requeues
nothing more), ``show`` prints one message with its event timeline. Ids and
times are checked before the database is opened. Text that came from a
provider (errors, webhook payloads) is printed on one line with control
characters escaped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

from nsn_store.arguments import as_object_id
from nsn_store.cli.common import Group, emit, json_option, one_line, open_database, uri_option
from nsn_store.scheduler import DeadLetter, MessageHistory, Scheduler

#: The most dead letters one ``messages failed`` lists.
MAX_LIST = 10_000


class Moment(click.DateTime):
    """An ISO 8601 time: ``2026-01-05``, ``2026-01-05T09:00``, ``...Z``, ``...+02:00``.

    A time without an offset is UTC, as everywhere in nsn-store.
    """

    name = "time"

    def __init__(self) -> None:
        super().__init__(formats=["ISO 8601"])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text[-1:] in ("Z", "z"):
            text = f"{text[:-1]}+00:00"  # Python 3.10's fromisoformat has no Z
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-01-05T09:00:00Z)", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


tenant_option = click.option("--tenant", default=None, metavar="ID", help="Only this tenant's.")
since_option = click.option(
    "--since",
    type=Moment(),
    default=None,
    metavar="TIME",
    help="Failed at or after TIME (ISO 8601; without an offset, UTC).",
)
until_option = click.option(
    "--until",
    type=Moment(),
    default=None,
    metavar="TIME",
    help="Failed before TIME (ISO 8601; without an offset, UTC).",
)


@click.group(cls=Group)
def messages() -> None:
    """Dead letters: list, requeue and show messages that failed for good."""


@messages.command()
@tenant_option
@since_option
@until_option
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST),
    default=100,
    show_default=True,
    help="List at most this many (oldest failure first).",
)
@uri_option
@json_option
def failed(
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    uri: str | None,
    as_json: bool,
) -> None:
    """List messages that failed for good, with their last error.

    Oldest failure first; to page on, pass the last one's time as --since.
    """
    only = None if tenant is None else as_object_id(tenant, "--tenant")  # before connecting
    _check_window(since, until)
    db = open_database(uri)
    letters = Scheduler(db).failed(only, since=since, until=until, limit=limit)
    report = {"count": len(letters), "limit": limit, "messages": [d.to_dict() for d in letters]}
    emit(report, as_json, lambda _: _render_letters(letters, limit))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_window(since: datetime | None, until: datetime | None) -> None:
    """Refuse an empty window before connecting (the library would, after)."""
    if since is not None and until is not None and until <= since:
        raise click.UsageError("--until must come after --since")


def _render_letters(letters: list[DeadLetter], limit: int) -> str:
    if not letters:
        return "no messages failed for good"
    lines = [f"{_count(len(letters), 'message')} failed for good (oldest failure first):"]
    for d in letters:
        failed_at = d.failed_at.isoformat() if d.failed_at is not None else "unknown"
        attempts = _count(d.attempts, "attempt")
        lines.append(
            f"  {d.message_id}  tenant {d.tenant_id}  {d.channel}  {attempts}  "
            f"failed {failed_at}: {one_line(d.last_error or 'no error recorded')}"
        )
    if len(letters) == limit:
        lines.append(f"(the first {limit}: pass --since with the last time, or a larger --limit)")
    return "\n".join(lines)


@messages.command()
@click.option("--id", "ids", multiple=True, metavar="ID", help="Requeue this message (repeatable).")
@click.option("--tenant", default=None, metavar="ID", help="Requeue this tenant's failures.")
@since_option
@until_option
@uri_option
@json_option
def requeue(
    ids: tuple[str, ...],
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    uri: str | None,
    as_json: bool,
) -> None:
    """Put failed messages back to scheduled now, their attempts reset.

    Select them by --id (repeatable), or by --tenant and/or a --since/--until
    window of failure times. One write however many match; running it again
    requeues nothing more.
    """
    if ids and (tenant is not None or since is not None or until is not None):
        raise click.UsageError("--id selects by itself: leave out --tenant, --since and --until")
    if not ids and tenant is None and since is None and until is None:
        raise click.UsageError("say what to requeue: --id, --tenant, --since or --until")
    _check_window(since, until)
    chosen = [as_object_id(i, "--id") for i in ids] or None  # all checked before connecting
    only = None if tenant is None else as_object_id(tenant, "--tenant")
    db = open_database(uri, read_only=False)
    count = Scheduler(db).requeue(chosen, tenant_id=only, since=since, until=until)
    emit(
        {"requeued": count},
        as_json,
        lambda _: f"requeued {_count(count, 'failed message')}: scheduled now, attempts reset",
    )


@messages.command()
@click.argument("message_id", metavar="ID")
@click.option("--tenant", default=None, metavar="ID", help="Only if it is this tenant's.")
@uri_option
@json_option
def show(message_id: str, tenant: str | None, uri: str | None, as_json: bool) -> None:
    """Print a message and its event timeline, oldest event first."""
    mid = as_object_id(message_id, "ID")  # both checked before connecting
    only = None if tenant is None else as_object_id(tenant, "--tenant")
    db = open_database(uri)
    history = Scheduler(db).show(mid, tenant_id=only)
    emit(history, as_json, _render_history)


#: The message fields ``show`` prints first, in this order (the rest follow).
SHOWN_FIRST = ("status", "channel", "attempts", "sendAt", "lastError", "contactId")


def _render_history(history: MessageHistory) -> str:
    plain = history.to_dict()
    message = plain["message"]
    lines = [f"message {message['_id']} (tenant {message['tenantId']})"]
    rest = [key for key in message if key not in (*SHOWN_FIRST, "_id", "tenantId")]
    for key in [*(k for k in SHOWN_FIRST if k in message), *rest]:
        lines.append(f"  {key}: {_value(message[key])}")
    lines.append(f"events ({len(plain['events'])}, oldest first):")
    for event in plain["events"]:
        lines.append(f"  {_event_line(event)}")
    return "\n".join(lines)


def _event_line(event: dict[str, Any]) -> str:
    parts = [event["createdAt"], event["eventType"]]
    parts += [event[k] for k in ("provider", "providerMessageId") if k in event]
    if "raw" in event:
        parts.append(_value(event["raw"]))
    return "  ".join(one_line(str(part)) for part in parts)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return one_line(", ".join(f"{k}={_value(v)}" for k, v in value.items()))
    return one_line(str(value))


MESSAGES_COMMANDS = [messages]
