"""What the migration chain does on a fresh database, computed from its declarations.

Tests that count an upgrade's steps or records read them here rather than
hard-coding 39 and 7, so adding a migration changes one declaration, not every
test that walks the chain. ``tests/schema/test_schema_chain.py`` pins these
counts for the released migrations, so a wrong computation cannot hide a
runner bug.
"""

from __future__ import annotations

from nsn_store.schema._registry import MIGRATIONS, Migration, Migrations


def declared_steps(migration: Migration, chain: Migrations = MIGRATIONS) -> int:
    """Return how many steps ``migration`` takes on the state the migrations before it leave.

    A collection it creates is one step plus one per index; a collection it revises is
    one collMod if its validator or options change, plus one per index added or dropped.
    """
    before = chain.schema_at(chain.position(migration.id) - 1)
    steps = sum(1 + len(spec.indexes) for spec in migration.creates)
    for spec in migration.revises:
        old = before[spec.name]
        steps += spec.create_options() != old.create_options()
        steps += len({i.name for i in spec.indexes} ^ {i.name for i in old.indexes})
    return steps


#: Migration id -> its steps on a fresh database (and on a database at the one before it).
STEPS = {migration.id: declared_steps(migration) for migration in MIGRATIONS}

#: Every step of the chain: what ``init`` applies to an empty database.
TOTAL_STEPS = sum(STEPS.values())


def steps_after(target: str) -> int:
    """Return the steps an upgrade from ``target`` to the head takes."""
    return sum(STEPS[id_] for id_ in MIGRATIONS.ids[MIGRATIONS.position(target) :])


def steps_until(target: str) -> int:
    """Return the steps an upgrade of an empty database to ``target`` takes."""
    return sum(STEPS[id_] for id_ in MIGRATIONS.ids[: MIGRATIONS.position(target)])
