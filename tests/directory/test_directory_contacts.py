"""Contacts: E.164 phones, checked emails, lookups in any format, opt-out and opt-in."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from _directory_world import DAY, PATIENT, PATIENT_E164, Clinic, clinic, snapshot
from _support import assert_async_twin, init_schema_async

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.errors import InvalidArgumentError, NotFoundError

APPOINTMENT = datetime(2026, 1, 7, 15, 0, tzinfo=timezone.utc)


@pytest.fixture
def world(db: Any, clock: ManualClock) -> Clinic:
    return clinic(db, clock)


@pytest.mark.parametrize(
    ("written", "region", "e164"),
    [
        ("+1 (212) 555-0100", None, "+12125550100"),
        ("212.555.0100", "US", "+12125550100"),
        ("+44 7911 123456", None, "+447911123456"),
        ("07911 123456", "GB", "+447911123456"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),  # an international number ignores the region
    ],
    ids=["us-international", "us-national", "gb-international", "gb-national", "fr-in-us"],
)
def test_phones_are_stored_in_e164(
    world: Clinic, written: str, region: str | None, e164: str
) -> None:
    contacts = nsn_store.Contacts(world.db, world.tenant, default_region=region, clock=world.clock)
    assert contacts.create(phone=written)["phone"] == e164


@pytest.mark.parametrize(
    ("phone", "region"),
    [
        ("212 555 0100", None),  # national, and no region to read it in
        ("+1 555 000 1111", None),  # area code 555 is not assigned
        ("not a number", "US"),
        ("+999 1234", None),  # no such country code
        ("+1 212 555 0100 555 0100", None),
    ],
    ids=["no-region", "unassigned", "words", "no-country", "too-long"],
)
def test_a_phone_libphonenumber_does_not_accept_is_refused_before_any_write(
    world: Clinic, phone: str, region: str | None
) -> None:
    before = snapshot(world.db)
    contacts = nsn_store.Contacts(world.db, world.tenant, default_region=region, clock=world.clock)
    with pytest.raises(InvalidArgumentError) as refused:
        contacts.create(first_name="Bo", phone=phone)
    assert refused.value.argument == "phone"
    assert snapshot(world.db) == before


def test_emails_are_trimmed_lowercased_and_checked(world: Clinic) -> None:
    assert world.contacts.create(email="  Bo@Example.ORG ")["email"] == "bo@example.org"
    with pytest.raises(InvalidArgumentError, match="email"):
        world.contacts.create(email="bo at example")


def test_a_contact_needs_a_phone_or_an_email(world: Clinic) -> None:
    with pytest.raises(InvalidArgumentError, match="phone or an email"):
        world.contacts.create(first_name="Nobody")


def test_lookups_find_the_contact_by_phone_in_any_format_and_email_in_any_case(
    world: Clinic,
) -> None:
    contacts = nsn_store.Contacts(world.db, world.tenant, default_region="US", clock=world.clock)
    [by_phone] = contacts.find_by_phone("(212) 555-0100")
    [by_email] = contacts.find_by_email("ADA@example.com")
    assert by_phone["_id"] == by_email["_id"] == world.contact
    assert contacts.find_by_phone("+1 415 555 2671") == []


def test_update_sets_fields_and_none_removes_one(world: Clinic) -> None:
    updated = world.contacts.update(world.contact, last_name="Lovelace", email=None)
    assert (updated["lastName"], updated["phone"]) == ("Lovelace", PATIENT_E164)
    assert "email" not in updated and "updatedAt" in updated
    changed = world.contacts.update(world.contact, phone="+44 7911 123456", metadata={"vip": True})
    assert (changed["phone"], changed["metadata"]) == ("+447911123456", {"vip": True})
    with pytest.raises(InvalidArgumentError, match="metadata"):
        world.contacts.update(world.contact, metadata={"$where": "1"})


def test_opt_out_cancels_pending_messages_and_records_one_event(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(-86_400, -7_200)
    world.workflows.enroll(workflow, world.contact, APPOINTMENT)
    change = world.contacts.opt_out(world.contact)
    assert (change.opted_out, change.changed, change.cancelled) == (True, True, 2)
    assert {m["status"] for m in world.messages()} == {"cancelled"}
    again = world.contacts.opt_out(world.contact)  # repeated after a lost reply
    assert (again.changed, again.cancelled) == (False, 0)
    [event] = world.db.messageEvents.find({"eventType": "opted_out"})
    assert event["raw"] == {"contactId": world.contact, "source": "api"}
    assert event["tenantId"] == world.tenant


def test_opt_in_clears_the_flag_and_restores_nothing(world: Clinic, clock: ManualClock) -> None:
    workflow = world.reminders(-7_200)
    world.workflows.enroll(workflow, world.contact, APPOINTMENT)
    world.contacts.opt_out(world.contact)
    change = world.contacts.opt_in(world.contact)
    assert (change.opted_out, change.changed) == (False, True)
    assert world.contacts.opt_in(world.contact).changed is False
    assert world.contacts.get(world.contact)["optedOut"] is False
    assert [m["status"] for m in world.messages()] == ["cancelled"]
    # Enrolling again after the opt-in schedules the reminder again.
    assert [
        m["status"] for m in world.workflows.enroll(workflow, world.contact, APPOINTMENT).messages
    ] == ["scheduled"]


def test_opt_out_of_a_missing_contact_is_not_found_and_writes_nothing(world: Clinic) -> None:
    before = snapshot(world.db)
    with pytest.raises(NotFoundError):
        world.contacts.opt_out("f" * 24)
    with pytest.raises(NotFoundError):
        world.contacts.opt_in("f" * 24)
    assert snapshot(world.db) == before


def test_opting_out_an_opted_out_contact_changes_nothing_even_after_an_edit(
    world: Clinic, clock: ManualClock
) -> None:
    world.contacts.opt_out(world.contact)
    clock.advance(DAY)
    world.contacts.update(world.contact, first_name="Ada B.")
    again = world.contacts.opt_out(world.contact)
    assert (again.changed, again.cancelled) == (False, 0)
    assert world.contacts.get(world.contact)["optedOut"] is True


def test_the_async_twin_has_the_same_surface() -> None:
    assert_async_twin(
        nsn_store.Contacts, nsn_store.AsyncContacts, plain=("opt_in_flow", "opt_out_flow")
    )


async def test_the_async_twin_creates_finds_and_opts_out(async_db: Any, clock: ManualClock) -> None:
    await init_schema_async(async_db)
    tenant = (await nsn_store.AsyncTenants(async_db, clock=clock).get_or_create("org_a"))["_id"]
    contacts = nsn_store.AsyncContacts(async_db, tenant, default_region="US", clock=clock)
    created = await contacts.create(first_name="Ada", phone=PATIENT)
    assert [c["_id"] for c in await contacts.find_by_phone("212-555-0100")] == [created["_id"]]
    assert (await contacts.opt_out(created["_id"])).changed is True
    assert (await contacts.get(created["_id"]))["optedOut"] is True
