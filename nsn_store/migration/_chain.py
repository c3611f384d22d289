"""Plan a walk along the migration chain (pure: states and records in, steps out).

Upgrading to a target walks the migrations up to it, oldest first. The
migrations whose records are settled (applied, with their current checksum,
nothing in flight) form a prefix that is not run again: a database at 0001
gets 0002 and nothing of 0001 is touched. A settled migration still repairs
drift (an index dropped by hand) in the collections it is the last, up to the
target, to declare. From the first unsettled migration on, each one is planned
against its own declaration, in order, on the state the previous ones leave
(:func:`~nsn_store.migration._diff.after_step`): a fresh database creates
workflowSteps with 0001's validator, then 0002 collMods it, exactly as a
database that lived through both releases did.

Downgrading to a target undoes, newest first, each recorded migration newer
than it: the collections it created are dropped, the ones it revised get back
the spec they had before (validator, options and indexes), and nothing else
is touched. A migration with no record is skipped: whatever exists under its
names was not created by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from nsn_store.migration._diff import (
    DROP_COLLECTION,
    CollectionState,
    Step,
    after_step,
    drop_removed_indexes,
    plan_collection,
    restore_collection,
)
from nsn_store.migration._results import is_settled
from nsn_store.schema._registry import CollectionSpec, Migration, Migrations

States = Mapping[str, CollectionState]
Records = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class MigrationPlan:
    """What one migration would do now: its steps and the record it has."""

    migration: Migration
    steps: tuple[Step, ...]
    record: Mapping[str, Any] | None
    #: Applied with this checksum and nothing in flight (an upgrade leaves it alone).
    settled: bool

    @property
    def id(self) -> str:
        return self.migration.id


def plan_upgrade(
    chain: Migrations, target: int, states: States, records: Records
) -> list[MigrationPlan]:
    """Return the plan of each of the first ``target`` migrations, oldest first."""
    current = dict(states)
    plans: list[MigrationPlan] = []
    prefix_settled = True
    # An upgrade never goes back: a collection a newer recorded migration revised is its.
    reach = max([target, *(n for n, id_ in enumerate(chain.ids, 1) if id_ in records)])
    for position in range(1, target + 1):
        migration = chain[position - 1]
        record = records.get(migration.id)
        settled = prefix_settled and is_settled(record, migration.checksum)
        prefix_settled = settled
        steps: list[Step] = []
        for name in migration.collections:
            if settled and last_to_declare(chain, reach, name) != position:
                continue  # a later migration owns it now and repairs it
            before = _before(chain, position, name)
            state = current.get(name, CollectionState(name))
            found = _upgrade_steps(migration.spec(name), before, state)
            current[name] = _walk(state, found)
            steps += [replace(step, migration=migration.id) for step in found]
        plans.append(MigrationPlan(migration, tuple(steps), record, settled))
    return plans


def plan_downgrade(
    chain: Migrations, target: int, states: States, records: Records
) -> list[MigrationPlan]:
    """Return the plan of each recorded migration newer than ``target``, newest first."""
    current = dict(states)
    plans: list[MigrationPlan] = []
    for position in range(len(chain), target, -1):
        migration = chain[position - 1]
        record = records.get(migration.id)
        if record is None:
            continue  # never applied here: nothing of it to undo
        steps: list[Step] = []
        for spec in reversed(migration.revises):
            state = current.get(spec.name, CollectionState(spec.name))
            found = restore_collection(_previous(chain, position, spec.name), spec, state)
            current[spec.name] = _walk(state, found)
            steps += found
        for spec in reversed(migration.creates):
            if current.get(spec.name, CollectionState(spec.name)).exists:
                steps.append(Step(DROP_COLLECTION, spec.name))
                current[spec.name] = CollectionState(spec.name)
        steps = [replace(step, migration=migration.id) for step in steps]
        plans.append(MigrationPlan(migration, tuple(steps), record, settled=False))
    return plans


def last_to_declare(chain: Migrations, target: int, name: str) -> int:
    """Return the position of the newest migration up to ``target`` that declares ``name``."""
    positions = [n for n in range(1, target + 1) if name in chain[n - 1].collections]
    return positions[-1] if positions else 0


def _upgrade_steps(
    spec: CollectionSpec, before: CollectionSpec | None, state: CollectionState
) -> list[Step]:
    steps = plan_collection(spec, state)
    if before is not None:  # a revision may also retire an index it no longer declares
        steps += drop_removed_indexes(before, spec, state)
    return steps


def _before(chain: Migrations, position: int, name: str) -> CollectionSpec | None:
    """Return the spec ``name`` had before migration ``position`` (None: it creates it)."""
    schema = chain.schema_at(position - 1)
    return schema.get(name) if name in schema.names else None


def _previous(chain: Migrations, position: int, name: str) -> CollectionSpec:
    before = _before(chain, position, name)
    assert before is not None, f"a revision of {name} has an earlier declaration"
    return before


def _walk(state: CollectionState, steps: list[Step]) -> CollectionState:
    for step in steps:
        state = after_step(state, step)
    return state
