"""What the migration chain does on a fresh database, computed from its declarations.

Tests that list or count an upgrade's steps or records read them here rather
than hard-coding 39 and 7, so adding a migration changes one declaration, not
every test that walks the chain. ``tests/schema/test_schema_chain.py`` pins
these counts for the released migrations, so a wrong computation cannot hide a
runner bug.
"""

from __future__ import annotations

from nsn_store.migration._diff import CREATE_COLLECTION, CREATE_INDEX, DROP_INDEX, UPDATE_VALIDATOR
from nsn_store.schema._registry import MIGRATIONS, Migrations

#: One step: (action, collection, index or None, migration id).
Step = tuple[str, str, str | None, str]


def fresh_steps(chain: Migrations = MIGRATIONS) -> list[Step]:
    """Return what ``init`` does on an empty database: each migration on what the previous left.

    A creation is the collection, then its indexes; a revision is a collMod if its
    validator or options change (0002's workflowSteps), then the indexes it adds
    (0003's tenants.by_providerAddress), then those it retires.
    """
    steps: list[Step] = []
    for position, migration in enumerate(chain, 1):
        for spec in migration.creates:
            steps.append((CREATE_COLLECTION, spec.name, None, migration.id))
            steps += [(CREATE_INDEX, spec.name, index.name, migration.id) for index in spec.indexes]
        for spec in migration.revises:
            old = chain.schema_at(position - 1)[spec.name]
            if spec.create_options() != old.create_options():
                steps.append((UPDATE_VALIDATOR, spec.name, None, migration.id))
            kept = {index.name for index in old.indexes}
            steps += [
                (CREATE_INDEX, spec.name, index.name, migration.id)
                for index in spec.indexes
                if index.name not in kept
            ]
            declared = {index.name for index in spec.indexes}
            steps += [
                (DROP_INDEX, spec.name, index.name, migration.id)
                for index in old.indexes
                if index.name not in declared
            ]
    return steps


#: Migration id -> its steps on a fresh database (and on a database at the one before it).
STEPS = {id_: sum(step[3] == id_ for step in fresh_steps()) for id_ in MIGRATIONS.ids}

#: Every step of the chain: what ``init`` applies to an empty database.
TOTAL_STEPS = sum(STEPS.values())


def steps_after(target: str) -> int:
    """Return the steps an upgrade from ``target`` to the head takes."""
    return sum(STEPS[id_] for id_ in MIGRATIONS.ids[MIGRATIONS.position(target) :])


def steps_until(target: str) -> int:
    """Return the steps an upgrade of an empty database to ``target`` takes."""
    return sum(STEPS[id_] for id_ in MIGRATIONS.ids[: MIGRATIONS.position(target)])
