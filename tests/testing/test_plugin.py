"""The pytest plugin's fixtures: one clock for the database and every service, a schema'd db."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from nsn_store import AIPreviews, Scheduler, Worker
from nsn_store.clock import DEFAULT_CLOCK, ManualClock, SystemClock
from nsn_store.schema._registry import SCHEMA
from nsn_store.testing import default_clock


def _tenant_and_contact(db: Any, now: Any) -> tuple[ObjectId, ObjectId]:
    tenant = db.tenants.insert_one(
        {"name": "Acme Dental", "clerkOrgId": f"org_{ObjectId()}", "createdAt": now}
    ).inserted_id
    contact = db.contacts.insert_one(
        {"tenantId": tenant, "phone": "+15550100", "createdAt": now}
    ).inserted_id
    return tenant, contact


def test_nsn_schema_db_has_every_collection_with_its_validator(nsn_schema_db: Any) -> None:
    assert set(SCHEMA.names) <= set(nsn_schema_db.list_collection_names())
    for spec in SCHEMA:
        options = nsn_schema_db[spec.name].options()
        assert options["validator"] == spec.validator, spec.name


def test_nsn_clock_is_the_default_clock_of_every_service(
    nsn_schema_db: Any, nsn_clock: ManualClock
) -> None:
    assert DEFAULT_CLOCK.now() == nsn_clock.now()
    tenant, contact = _tenant_and_contact(nsn_schema_db, nsn_clock.now())
    scheduler = Scheduler(nsn_schema_db)  # no clock passed
    # Due tomorrow by the test's clock, which is long past by the wall clock.
    scheduler.schedule(
        tenant, contact, "sms", nsn_clock.now() + timedelta(days=1), payload={"body": "hi"}
    )
    sent: list[Any] = []
    worker = Worker(nsn_schema_db, lambda delivery: sent.append(delivery) or "SM1")
    assert worker.run_once().sent == 0
    nsn_clock.advance(days=1)
    assert worker.run_once().sent == 1 and len(sent) == 1
    message = nsn_schema_db.scheduledMessages.find_one()
    assert message["status"] == "sent" and message["sentAt"] == nsn_clock.now()


def test_nsn_clock_reaches_previews_and_the_ttl_monitor(
    nsn_schema_db: Any, nsn_client: Any, nsn_clock: ManualClock
) -> None:
    tenant, _ = _tenant_and_contact(nsn_schema_db, nsn_clock.now())
    previews = AIPreviews(nsn_schema_db)
    preview = previews.create(tenant, "Draft a reminder", ttl=timedelta(minutes=5))
    assert preview["expiresAt"] == nsn_clock.now() + timedelta(minutes=5)
    nsn_clock.advance(minutes=5)
    assert previews.get(tenant, preview["_id"]) is None  # expired by the same clock
    assert nsn_client.run_ttl_monitor() == 1


def test_a_service_given_its_own_clock_keeps_it(nsn_db: Any, nsn_clock: ManualClock) -> None:
    own = ManualClock(nsn_clock.now() + timedelta(hours=3))
    assert AIPreviews(nsn_db, clock=own).clock is own


def test_default_clock_nests_and_restores() -> None:
    outer, inner = ManualClock(), ManualClock(ManualClock().now() + timedelta(days=2))
    with default_clock(outer):
        with default_clock(inner):
            assert DEFAULT_CLOCK.now() == inner.now()
        assert DEFAULT_CLOCK.now() == outer.now()
    assert "now" not in vars(DEFAULT_CLOCK)
    assert abs(DEFAULT_CLOCK.now() - SystemClock().now()) < timedelta(minutes=1)


def test_default_clock_restores_after_an_error() -> None:
    with pytest.raises(RuntimeError), default_clock(ManualClock()):
        raise RuntimeError("boom")
    assert "now" not in vars(DEFAULT_CLOCK)


def test_default_clock_refuses_what_is_not_a_clock() -> None:
    with pytest.raises(TypeError, match="now"), default_clock(object()):  # type: ignore[type-var]
        pass


async def test_nsn_async_schema_db_shares_the_data(
    nsn_async_schema_db: Any, nsn_schema_db: Any
) -> None:
    names = await nsn_async_schema_db.list_collection_names()
    assert set(SCHEMA.names) <= set(names)
    await nsn_async_schema_db.ragDocuments.count_documents({})
