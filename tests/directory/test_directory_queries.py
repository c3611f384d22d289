"""Every directory read is served by its declared index in ESR order."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest
from bson import ObjectId
from test_scheduling_builders import esr_problems

from nsn_store.directory import _queries as q
from nsn_store.scheduler._queries import Query
from nsn_store.schema._registry import MIGRATIONS, SCHEMA

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _declared(query: Query) -> bool:
    return query.index == "_id_" or any(
        index.name == query.index for index in SCHEMA[query.collection].indexes
    )


def _query_id(query: Query) -> str:
    return f"{query.collection}.{query.index}[{','.join(query.filter)}]"


def _dotted(query: Query) -> list[Query]:
    """Spell each ``$elemMatch`` on an array of subdocuments as dotted fields, per ``$or`` branch.

    The ESR check reads top-level fields. A compound index on fields of one array of
    subdocuments (``by_providerAddress`` {providerConfigs.channel, providerConfigs.fromAddress})
    is multikey: it holds one key per element, and because ``$elemMatch`` puts both
    predicates on the same element the planner compounds their bounds, exactly as for an
    equality on each dotted field (MongoDB manual, "Multikey Index Bounds", compound bounds
    of multiple fields from the same array:
    https://www.mongodb.com/docs/manual/core/multikey-index-bounds/). Without
    ``$elemMatch`` it could bound only one of them, so the rewrite is for the check alone.
    An ``$or`` inside the ``$elemMatch`` is one index scan per branch: each is checked.
    """
    branches: list[dict[str, Any]] = [{}]
    for name, value in query.filter.items():
        match = value.get("$elemMatch") if isinstance(value, dict) else None
        if not isinstance(match, dict):
            branches = [{**branch, name: value} for branch in branches]
            continue
        common = {field: v for field, v in match.items() if field != "$or"}
        alternatives = [{**common, **either} for either in match.get("$or", [{}])]
        branches = [
            {**branch, **{f"{name}.{field}": v for field, v in alternative.items()}}
            for branch in branches
            for alternative in alternatives
        ]
    return [replace(query, filter=branch) for branch in branches]


QUERIES = q.all_queries(NOW)


@pytest.mark.parametrize("query", QUERIES, ids=_query_id)
def test_every_query_is_served_by_its_declared_index_in_esr_order(query: Query) -> None:
    assert _declared(query), query.index
    if query.sort and {direction for _, direction in query.sort} == {-1}:
        query = replace(query, sort=[(name, 1) for name, _ in query.sort])  # a reverse scan
    for branch in _dotted(query):
        assert esr_problems(branch) == [], branch.filter


def test_the_inbound_address_reads_name_by_providerAddress_which_0003_declares() -> None:
    by_address = [query for query in QUERIES if "providerConfigs" in query.filter]
    assert [query.index for query in by_address] == ["by_providerAddress"] * 2
    index = SCHEMA["tenants"].index("by_providerAddress")
    assert index.keys == (("providerConfigs.channel", 1), ("providerConfigs.fromAddress", 1))
    assert not index.unique
    assert "tenants" in MIGRATIONS.get("0003").collections


def test_an_or_inside_elemmatch_is_checked_branch_by_branch() -> None:
    tenant = ObjectId()
    senders = [("sms", "+14155552671"), ("email", "desk@example.com")]
    branches = _dotted(q.other_tenants_at_query(tenant, senders))
    assert [branch.filter for branch in branches] == [
        {
            "providerConfigs.channel": channel,
            "providerConfigs.fromAddress": address,
            "_id": {"$ne": tenant},
        }
        for channel, address in senders
    ]
    assert all(esr_problems(branch) == [] for branch in branches)


def test_the_dotted_check_still_refuses_an_address_read_on_another_index() -> None:
    wrong = replace(q.tenants_at_query("sms", "+14155552671"), index="by_clerkOrgId")
    assert any(esr_problems(branch) for branch in _dotted(wrong))


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
