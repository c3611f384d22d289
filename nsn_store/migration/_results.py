"""The results of migration runs: what init did, what drop removed, what status saw.

Plain dataclasses with ``to_dict()`` methods whose keys are stable, so the CLI's
``--json`` output can be parsed by scripts and diffed between runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nsn_store.migration._diff import CollectionStatus, Step

MIGRATIONS = "nsn_migrations"
APPLYING = "applying"
APPLIED = "applied"


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
    """What ``init_schema`` did: the steps applied, in order (empty when up to date)."""

    migration_id: str
    checksum: str
    host: str
    steps: list[Step] = field(default_factory=list)
    moderated: list[str] = field(default_factory=list)
    #: Steps an interrupted run applied without recording them, recorded by this
    #: run (not applied again). Not in ``to_dict``, whose keys ``--json`` promises.
    reconciled: list[Step] = field(default_factory=list)

    @property
    def status(self) -> str:
        return APPLIED if self.steps else "up-to-date"

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
    """The database compared with the schema, collection by collection."""

    migration_id: str
    checksum: str
    collections: list[CollectionStatus]
    record: dict[str, Any] | None = None
    lock: dict[str, Any] | None = None
    extra_collections: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences()

    def differences(self) -> list[str]:
        """Return every difference (collections, indexes, migration record)."""
        lines = [line for status in self.collections for line in status.differences()]
        return lines + self._record_differences()

    def _record_differences(self) -> list[str]:
        if self.record is None:
            return [f"migration {self.migration_id} is not recorded in {MIGRATIONS}"]
        lines = []
        pending = self.record.get("pending")
        if isinstance(pending, dict):
            lines.append(
                f"migration {self.migration_id}: step {describe_entry(pending)} is not recorded: "
                "an interrupted run started it and may have applied it "
                "(run init again to reconcile the record)"
            )
        if self.record.get("status") != APPLIED:
            lines.append(
                f"migration {self.migration_id} is {self.record.get('status')!r} "
                "(an interrupted run: run init again to finish it)"
            )
        if self.record.get("checksum") != self.checksum:
            lines.append(
                f"migration {self.migration_id} was recorded with checksum "
                f"{str(self.record.get('checksum'))[:12]}, the schema's is {self.checksum[:12]}"
            )
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
