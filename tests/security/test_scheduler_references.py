"""Issue 9, mechanisms 4 and 5: references belong to the tenant; missing and foreign look alike.

Before: ``schedule`` checked the contact but not ``template_id`` or ``workflow_step_id``, so
a message could point at another tenant's template or workflow step; and a contact or
message of another tenant raised ``TenantIsolationError`` where a missing one raised
``NotFoundError``: an existence oracle for other tenants' ids. Now every reference is
looked up with the tenant (one round trip each, whatever the data) and both cases raise
the same ``NotFoundError`` with the same words. Sync and async.
"""

from __future__ import annotations

from typing import Any

import pytest
from _scheduler_kit import Kit, async_kit_fixture, do, sync_kit_fixture, twins  # noqa: F401 (fixtures)
from bson import ObjectId

from nsn_store.errors import NotFoundError
from nsn_store.scheduler import _queries as q


async def insert(kit: Kit, collection: str, document: dict[str, Any]) -> ObjectId:
    return (await do(kit.db[collection].insert_one(document))).inserted_id


async def template(kit: Kit, tenant: ObjectId) -> ObjectId:
    return await insert(
        kit,
        q.TEMPLATES,
        {
            "tenantId": tenant,
            "name": "Reminder",
            "channel": "sms",
            "body": "Hi",
            "createdAt": kit.clock.now(),
        },
    )


async def step(kit: Kit, tenant: ObjectId) -> ObjectId:
    workflow = await insert(
        kit, "workflows", {"tenantId": tenant, "name": "Flow", "createdAt": kit.clock.now()}
    )
    return await insert(
        kit,
        q.STEPS,
        {
            "tenantId": tenant,
            "workflowId": workflow,
            "order": 0,
            "channel": "sms",
            "delaySeconds": 0,
            "useAi": False,
            "createdAt": kit.clock.now(),
        },
    )


async def refusal(kit: Kit, **references: Any) -> str:
    """Schedule with ``references``; assert it is refused as not found, writing nothing."""
    before = await kit.writes()
    with pytest.raises(NotFoundError) as refused:
        await do(
            kit.sched.schedule(
                kit.tenant,
                references.pop("contact_id", kit.contact),
                "sms",
                kit.clock.now(),
                **references,
            )
        )
    assert await kit.writes() == before
    return str(refused.value)


@pytest.mark.parametrize("reference", ["template_id", "workflow_step_id", "contact_id"])
async def another_tenants_reference_is_refused_like_a_missing_one(kit: Kit, reference: str) -> None:
    other = ObjectId()
    make = {
        "template_id": template,
        "workflow_step_id": step,
        "contact_id": lambda k, t: insert(
            k, q.CONTACTS, {"tenantId": t, "createdAt": k.clock.now()}
        ),
    }
    foreign, missing = await make[reference](kit, other), ObjectId()
    said_foreign = await refusal(kit, **{reference: foreign})
    said_missing = await refusal(kit, **{reference: missing})
    assert said_foreign == said_missing.replace(str(missing), str(foreign))


async def the_tenants_own_references_are_accepted_in_constant_round_trips(kit: Kit) -> None:
    mine_template, mine_step = await template(kit, kit.tenant), await step(kit, kit.tenant)
    before = kit.sched.round_trips
    message = await do(
        kit.sched.schedule(
            kit.tenant,
            kit.contact,
            "sms",
            kit.clock.now(),
            template_id=mine_template,
            workflow_step_id=mine_step,
        )
    )
    assert (message["templateId"], message["workflowStepId"]) == (mine_template, mine_step)
    # 3 reference lookups, the message, its queued event (the counter is not a collection call)
    assert kit.sched.round_trips - before == 5


async def cancelling_another_tenants_message_is_refused_like_a_missing_one(kit: Kit) -> None:
    [mid] = await kit.due()
    unknown = ObjectId()
    with pytest.raises(NotFoundError) as foreign:
        await do(kit.sched.cancel(ObjectId(), mid))
    with pytest.raises(NotFoundError) as missing:
        await do(kit.sched.cancel(kit.tenant, unknown))
    assert str(foreign.value) == str(missing.value).replace(str(unknown), str(mid))
    assert (await kit.message(mid))["status"] == "scheduled"


for _scenario in (
    another_tenants_reference_is_refused_like_a_missing_one,
    the_tenants_own_references_are_accepted_in_constant_round_trips,
    cancelling_another_tenants_message_is_refused_like_a_missing_one,
):
    globals().update(twins(_scenario))
