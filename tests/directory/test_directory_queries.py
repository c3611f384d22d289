"""Every directory read is served by its declared index in ESR order, or is a named proposal."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from bson import ObjectId
from test_scheduling_builders import esr_problems

from nsn_store.directory import _queries as q
from nsn_store.scheduler._queries import Query
from nsn_store.schema._registry import SCHEMA

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _declared(query: Query) -> bool:
    return query.index == "_id_" or any(
        index.name == query.index for index in SCHEMA[query.collection].indexes
    )


def _query_id(query: Query) -> str:
    return f"{query.collection}.{query.index}[{','.join(query.filter)}]"


SERVED = [query for query in q.all_queries(NOW) if query.index not in q.PROPOSED_INDEXES]
PROPOSED = [query for query in q.all_queries(NOW) if query.index in q.PROPOSED_INDEXES]


@pytest.mark.parametrize("query", SERVED, ids=_query_id)
def test_every_query_is_served_by_its_declared_index_in_esr_order(query: Query) -> None:
    assert _declared(query), query.index
    if query.sort and {direction for _, direction in query.sort} == {-1}:
        query = replace(query, sort=[(name, 1) for name, _ in query.sort])  # a reverse scan
    assert esr_problems(query) == []


@pytest.mark.parametrize("query", PROPOSED, ids=_query_id)
def test_the_reads_that_need_a_proposed_index_name_it_and_it_is_not_declared_yet(
    query: Query,
) -> None:
    # When a migration adds the index, move these reads to the served list above.
    collection, key, why = q.PROPOSED_INDEXES[query.index]
    assert collection == query.collection and why
    assert not _declared(query)
    assert key[0][0].split(".")[0] in query.filter


def test_enrollment_keys_nest_workflow_step_contact_and_anchor() -> None:
    workflow, step, contact = ObjectId(), ObjectId(), ObjectId()
    key = q.enrollment_key(workflow, step, contact, NOW)
    assert key == f"enr:{workflow}:{step}:{contact}:{int(NOW.timestamp() * 1000)}"
    assert key.startswith(q.step_prefix(workflow, step)) and key.startswith(
        q.workflow_prefix(workflow)
    )
    assert len(key) <= 200  # the model's Identifier
    later = NOW.replace(microsecond=999)  # below BSON's millisecond: the same key
    assert q.enrollment_key(workflow, step, contact, later) == key


def test_a_prefix_query_is_an_anchored_literal_prefix() -> None:
    prefix = q.workflow_prefix(ObjectId())
    query = q.prefix_pending_query(ObjectId(), prefix)
    assert query.filter["idempotencyKey"]["$regex"] == "^" + prefix  # no character to escape
    assert query.filter["idempotencyKey"]["$exists"] is True  # the partial index's filter
