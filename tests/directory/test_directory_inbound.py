"""Inbound SMS and email: the tenant from the receiving address, the contact from the sender."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from _directory_world import CLINIC_NUMBERS, PATIENT_E164, Clinic, clinic, snapshot
from _support import assert_async_twin, init_schema_async

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.errors import ConfigurationError, InvalidArgumentError, NotFoundError

APPOINTMENT = datetime(2026, 1, 7, 15, 0, tzinfo=timezone.utc)


@pytest.fixture
def world(db: Any, clock: ManualClock) -> Clinic:
    return clinic(db, clock)


def _receive(world: Clinic, body: str, **kwargs: Any) -> Any:
    inbound = nsn_store.Inbound(world.db, clock=world.clock)
    return inbound.receive("sms", PATIENT_E164, world.number, body, **kwargs)


@pytest.mark.parametrize(
    ("body", "action", "keyword"),
    [
        ("STOP", "opted_out", "STOP"),
        ("  stop.  ", "opted_out", "STOP"),
        ("Unsubscribe!", "opted_out", "UNSUBSCRIBE"),
        ("cancel", "opted_out", "CANCEL"),
        ("StopAll", "opted_out", "STOPALL"),
        ("STOP please", "message", None),
        ("YES", "message", None),  # a confirmation, not an opt-in here
        ("See you then", "message", None),
    ],
    ids=["stop", "padded", "unsubscribe", "cancel", "stopall", "sentence", "yes", "reply"],
)
def test_keywords_are_whole_messages(
    world: Clinic, body: str, action: str, keyword: str | None
) -> None:
    result = _receive(world, body)
    assert (result.action, result.keyword) == (action, keyword)
    assert world.contacts.get(world.contact).get("optedOut", False) is (action == "opted_out")


def test_start_opts_the_contact_back_in(world: Clinic) -> None:
    _receive(world, "STOP")
    result = _receive(world, "unstop")
    assert (result.action, result.keyword) == ("opted_in", "UNSTOP")
    assert world.contacts.get(world.contact)["optedOut"] is False


def test_a_reply_is_recorded_as_a_replied_event_of_its_tenant(world: Clinic) -> None:
    result = _receive(world, "See you then", provider_message_id="SMx", raw={"NumMedia": "0"})
    assert (result.tenant_id, result.contact_ids, result.recorded) == (
        world.tenant,
        (world.contact,),
        True,
    )
    [event] = world.db.messageEvents.find({"eventType": "replied"})
    assert (event["tenantId"], event["provider"], event["providerMessageId"]) == (
        world.tenant,
        "twilio",
        "SMx",
    )
    assert event["raw"]["from"] == PATIENT_E164 and event["raw"]["provider"] == {"NumMedia": "0"}
    assert event["raw"]["contactIds"] == [world.contact]


def test_a_webhook_delivered_twice_is_recorded_once(world: Clinic) -> None:
    workflow = world.reminders(-7200)
    world.workflows.enroll(workflow, world.contact, APPOINTMENT)
    first = _receive(world, "STOP", provider_message_id="SMdup")
    again = _receive(world, "STOP", provider_message_id="SMdup")
    assert (first.recorded, first.cancelled) == (True, 1)
    assert (again.recorded, again.cancelled) == (False, 0)
    assert world.db.messageEvents.count_documents({"eventType": "replied"}) == 1
    assert world.db.messageEvents.count_documents({"eventType": "opted_out"}) == 1


def test_a_sender_who_is_no_contact_is_recorded_without_one(world: Clinic) -> None:
    inbound = nsn_store.Inbound(world.db, clock=world.clock)
    result = inbound.receive("sms", "+14155550123", world.number, "STOP")
    assert (result.contact_ids, result.action, result.cancelled) == ((), "opted_out", 0)
    assert world.db.messageEvents.count_documents({"eventType": "replied"}) == 1


def test_every_contact_with_the_number_is_opted_out(world: Clinic) -> None:
    sibling = world.contacts.create(first_name="Bo", phone=PATIENT_E164)["_id"]
    result = _receive(world, "STOP")
    assert set(result.contact_ids) == {world.contact, sibling}
    assert all(world.contacts.get(c)["optedOut"] for c in (world.contact, sibling))


def test_an_address_no_tenant_receives_at_is_not_found_and_writes_nothing(world: Clinic) -> None:
    before = snapshot(world.db)
    inbound = nsn_store.Inbound(world.db, clock=world.clock)
    with pytest.raises(NotFoundError, match="no tenant"):
        inbound.receive("sms", PATIENT_E164, "+14155550199", "STOP")
    with pytest.raises(NotFoundError):  # the number is an SMS sender, not an email one
        inbound.receive("email", "ada@example.com", "clinic@example.com", "STOP")
    assert snapshot(world.db) == before


def test_an_address_two_tenants_claim_is_refused(world: Clinic) -> None:
    other = nsn_store.Tenants(world.db, clock=world.clock).get_or_create("org_b")["_id"]
    # Written raw: set_provider_configs itself refuses a number another tenant uses.
    world.db.tenants.update_one(
        {"_id": other},
        {
            "$set": {
                "providerConfigs": world.db.tenants.find_one({"_id": world.tenant})[
                    "providerConfigs"
                ]
            }
        },
    )
    with pytest.raises(ConfigurationError, match="several tenants"):
        _receive(world, "STOP")


def test_inbound_email_finds_the_contact_by_address(world: Clinic) -> None:
    nsn_store.Tenants(world.db, clock=world.clock).set_provider_configs(
        world.tenant,
        [
            {
                "channel": "email",
                "provider": "resend",
                "fromAddress": "visits@clinic.example",
                "credentialsRef": "env:RESEND_API_KEY",
            }
        ],
    )
    inbound = nsn_store.Inbound(world.db, clock=world.clock)
    result = inbound.receive("email", "ADA@example.com", "Visits@Clinic.example", "unsubscribe")
    assert (result.contact_ids, result.action) == ((world.contact,), "opted_out")
    assert result.to_dict()["action"] == "opted_out"


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (("fax", PATIENT_E164, CLINIC_NUMBERS[0], "STOP"), "channel"),
        (("sms", "ada", CLINIC_NUMBERS[0], "STOP"), "from_address"),
        (("sms", PATIENT_E164, {"$ne": None}, "STOP"), "to_address"),
        (("sms", PATIENT_E164, CLINIC_NUMBERS[0], None), "body"),
        (("email", "ada", "clinic@example.com", "STOP"), "from_address"),
    ],
    ids=["channel", "from", "to-operator", "body", "email-from"],
)
def test_bad_input_is_refused_before_any_io(
    world: Clinic, args: tuple[Any, ...], argument: str
) -> None:
    inbound = nsn_store.Inbound(world.db, clock=world.clock)
    with pytest.raises(InvalidArgumentError) as refused:
        inbound.receive(*args)
    assert refused.value.argument == argument
    assert inbound.round_trips == 0


def test_the_async_twin_has_the_same_surface() -> None:
    assert_async_twin(nsn_store.Inbound, nsn_store.AsyncInbound)


async def test_the_async_twin_opts_out_on_stop(async_db: Any, clock: ManualClock) -> None:
    await init_schema_async(async_db)
    tenants = nsn_store.AsyncTenants(async_db, clock=clock)
    tenant = (await tenants.get_or_create("org_a"))["_id"]
    await tenants.set_provider_configs(
        tenant,
        [
            {
                "channel": "sms",
                "provider": "twilio",
                "fromAddress": CLINIC_NUMBERS[0],
                "credentialsRef": "env:TWILIO_AUTH_TOKEN",
            }
        ],
    )
    contacts = nsn_store.AsyncContacts(async_db, tenant, clock=clock)
    contact = (await contacts.create(phone=PATIENT_E164))["_id"]
    result = await nsn_store.AsyncInbound(async_db, clock=clock).receive(
        "sms", PATIENT_E164, CLINIC_NUMBERS[0], "STOP"
    )
    assert result.contact_ids == (contact,)
    assert (await contacts.get(contact))["optedOut"] is True
