"""The results of migration runs: what upgrade and downgrade did, what drop removed,
what status and history saw.

Plain dataclasses with ``to_dict()`` methods whose keys are stable, so the CLI's
``--json`` output can be parsed by scripts and diffed between runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nsn_store.masking import mask_text
from nsn_store.migration._diff import CollectionStatus, Step

#: The collection that records each applied migration (one document per migration,
#: ``_id`` the migration id) and holds the migration lock (``_id: "lock"``).
RECORDS = "nsn_migrations"
#: The name older code and tests use for :data:`RECORDS`.
MIGRATIONS = RECORDS
APPLYING = "applying"
APPLIED = "applied"
#: A downgrade in progress: the migration's effects are being undone.
REVERTING = "reverting"


def is_settled(record: Mapping[str, Any] | None, checksum: str) -> bool:
    """True when ``record`` says applied, with ``checksum``, and no step in flight."""
    if record is None:
        return False
    return bool(
        record.get("status") == APPLIED
        and record.get("checksum") == checksum
        and not record.get("pending")
    )


def _newer_difference(migration_id: str, record: Mapping[str, Any], target: str) -> str:
    if record.get("status") == REVERTING:
        return (
            f"migration {migration_id} is 'reverting' (an interrupted downgrade: "
            "run downgrade again to finish it)"
        )
    return (
        f"migration {migration_id} is recorded ({record.get('status')}) beyond {target} "
        "(a downgrade, or a newer nsn-store, would explain it)"
    )


def record_differences(
    migration_id: str, checksum: str, record: Mapping[str, Any] | None
) -> list[str]:
    """Return what is wrong with one migration's record (empty: applied and current)."""
    if record is None:
        return [f"migration {migration_id} is not recorded in {RECORDS}"]
    lines = []
    pending = record.get("pending")
    if isinstance(pending, dict):
        lines.append(
            f"migration {migration_id}: step {describe_entry(pending)} is not recorded: "
            "an interrupted run started it and may have applied it "
            "(run init again to reconcile the record)"
        )
    status = record.get("status")
    if status == REVERTING:
        lines.append(
            f"migration {migration_id} is 'reverting' (an interrupted downgrade: "
            "run downgrade again to finish it, or upgrade to apply it again)"
        )
    elif status != APPLIED:
        lines.append(
            f"migration {migration_id} is {status!r} "
            "(an interrupted run: run init again to finish it)"
        )
    if record.get("checksum") != checksum:
        lines.append(
            f"migration {migration_id} was recorded with checksum "
            f"{str(record.get('checksum'))[:12]}, the schema's is {checksum[:12]}"
        )
    return lines


def plain(value: Any) -> Any:
    """Return ``value`` with datetimes as ISO strings, ready for ``json.dumps``."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def describe_entry(entry: dict[str, Any]) -> str:
    """Render a record entry as ``create_index contacts.by_phone``."""
    target = str(entry.get("collection"))
    if entry.get("index"):
        target += f".{entry['index']}"
    return f"{entry.get('action')} {target}"


@dataclass(frozen=True)
class MigrationResult:
    """What an upgrade did: the steps applied, in order (empty when up to date).

    ``migration_id`` and ``checksum`` are those of the migration upgraded to;
    each step names its migration; ``applied`` lists the migrations this run
    recorded, oldest first.
    """

    migration_id: str
    checksum: str
    host: str
    steps: list[Step] = field(default_factory=list)
    moderated: list[str] = field(default_factory=list)
    #: Steps an interrupted run applied without recording them, recorded by this
    #: run (not applied again). Not in ``to_dict``, whose keys ``--json`` promises.
    reconciled: list[Step] = field(default_factory=list)
    #: The migrations recorded by this run (with their checksums), oldest first.
    applied: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return APPLIED if self.steps or self.applied else "up-to-date"

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration_id,
            "checksum": self.checksum,
            "host": self.host,
            "status": self.status,
            "steps": [step.to_dict() for step in self.steps],
            "moderated": list(self.moderated),
        }


@dataclass(frozen=True)
class DowngradeResult:
    """What a downgrade undid: the migrations reverted (newest first) and their steps."""

    target: str
    host: str
    reverted: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    moderated: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "reverted" if self.reverted else "up-to-date"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "host": self.host,
            "status": self.status,
            "reverted": list(self.reverted),
            "steps": [step.to_dict() for step in self.steps],
            "moderated": list(self.moderated),
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One migration of the chain and what the database recorded of it."""

    id: str
    description: str
    checksum: str
    record: Mapping[str, Any] | None = field(default=None, repr=False)
    #: False for a record this version's chain does not declare (a newer version wrote it).
    known: bool = True

    @property
    def applied(self) -> bool:
        return self.record is not None and self.record.get("status") == APPLIED

    @property
    def status(self) -> str:
        """``applied``, ``applying`` or ``reverting`` as recorded, or ``pending`` (never run)."""
        return str(self.record.get("status")) if self.record is not None else "pending"

    @property
    def checksum_matches(self) -> bool | None:
        """Whether the recorded checksum is the declared one (None: not recorded)."""
        return None if self.record is None else self.record.get("checksum") == self.checksum

    def to_dict(self) -> dict[str, Any]:
        record = self.record or {}
        host = record.get("host")
        return {
            "id": self.id,
            "description": self.description,
            "known": self.known,
            "applied": self.applied,
            "status": self.status,
            "applied_at": plain(record.get("appliedAt")),
            "started_at": plain(record.get("startedAt")),
            "host": mask_text(str(host)) if host is not None else None,
            "checksum": self.checksum,
            "recorded_checksum": record.get("checksum"),
            "checksum_matches": self.checksum_matches,
            "steps": len(record.get("steps", [])),
        }


@dataclass(frozen=True)
class History:
    """Every migration of the chain, oldest first, with what the database recorded."""

    entries: list[HistoryEntry]
    head: str

    @property
    def current(self) -> str | None:
        """Return the newest migration applied without a gap before it (None: none)."""
        current = None
        for entry in self.entries:
            if not (entry.known and entry.applied and entry.checksum_matches):
                break
            current = entry.id
        return current

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "current": self.current,
            "migrations": [entry.to_dict() for entry in self.entries],
        }


@dataclass(frozen=True)
class DropResult:
    """What ``drop_schema`` removed, in the order it dropped them."""

    dropped: list[str]
    absent: list[str]
    record_cleared: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "dropped": list(self.dropped),
            "absent": list(self.absent),
            "record_cleared": self.record_cleared,
        }


@dataclass(frozen=True)
class StatusReport:
    """The database compared with the schema at a migration (the head by default).

    ``migration_id``, ``checksum`` and ``record`` are those of that migration;
    ``records`` holds the record of every migration up to it (None where the
    database has none), whose problems are differences too.
    """

    migration_id: str
    checksum: str
    collections: list[CollectionStatus]
    record: dict[str, Any] | None = None
    lock: dict[str, Any] | None = None
    extra_collections: list[str] = field(default_factory=list)
    #: (migration id, its checksum, its record or None), oldest first.
    records: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    #: Records of migrations beyond this one (newer in the chain, or unknown to it).
    newer: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences()

    def differences(self) -> list[str]:
        """Return every difference (collections, indexes, migration records)."""
        lines = [line for status in self.collections for line in status.differences()]
        chain = self.records or [(self.migration_id, self.checksum, self.record)]
        for migration_id, checksum, record in chain:
            lines += record_differences(migration_id, checksum, record)
        for migration_id, record in self.newer:
            lines.append(_newer_difference(migration_id, record, self.migration_id))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration_id,
            "checksum": self.checksum,
            "matches": self.matches,
            "collections": [status.to_dict() for status in self.collections],
            "record": plain(self.record),
            "lock": plain(self.lock),
            "extra_collections": list(self.extra_collections),
            "differences": self.differences(),
        }
