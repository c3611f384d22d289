"""Tenant isolation for every directory function: two tenants, overlapping data.

Tenants ``a`` and ``b`` each have Ada (same name, phone and email), a template
and a workflow of the same names, and Ada enrolled at the same appointment.
Every call tenant ``a`` makes with one of ``b``'s ids must behave exactly as
with an id that exists nowhere (same error type and message, or the same
result) and write nothing anywhere; lookups and lists see ``a``'s data only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from _directory_world import PATIENT_E164, Clinic, snapshot, two_clinics
from bson import ObjectId

import nsn_store
from nsn_store.clock import ManualClock

APPOINTMENT = datetime(2026, 1, 7, 15, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 1, 9, 15, 0, tzinfo=timezone.utc)


@dataclass
class Pair:
    """The two clinics, each with a one-step workflow and Ada enrolled."""

    a: Clinic
    b: Clinic
    a_workflow: ObjectId
    b_workflow: ObjectId
    a_step: ObjectId
    b_step: ObjectId
    b_user: str = "user_b"

    def theirs(self, kind: str) -> ObjectId:
        return {
            "contact": self.b.contact,
            "template": self.b.template,
            "workflow": self.b_workflow,
            "step": self.b_step,
        }[kind]


@pytest.fixture
def pair(db: Any, clock: ManualClock) -> Pair:
    a, b = two_clinics(db, clock)
    made = {}
    for clinic in (a, b):
        workflow = clinic.reminders(-7200)
        clinic.workflows.enroll(workflow, clinic.contact, APPOINTMENT)
        made[clinic.tenant] = (workflow, clinic.workflows.steps(workflow)[0]["_id"])
    nsn_store.Tenants(db, clock=clock).add_user(b.tenant, "user_b")
    (a_workflow, a_step), (b_workflow, b_step) = made[a.tenant], made[b.tenant]
    return Pair(a, b, a_workflow, b_workflow, a_step, b_step)


Attempt = Callable[[Pair, ObjectId], Any]

#: (kind of id the call takes from tenant b, the call tenant a makes with it)
ATTEMPTS: dict[str, tuple[str, Attempt]] = {
    "contacts.get": ("contact", lambda p, x: p.a.contacts.get(x)),
    "contacts.update": ("contact", lambda p, x: p.a.contacts.update(x, first_name="Eve")),
    "contacts.opt_out": ("contact", lambda p, x: p.a.contacts.opt_out(x)),
    "contacts.opt_in": ("contact", lambda p, x: p.a.contacts.opt_in(x)),
    "templates.get": ("template", lambda p, x: p.a.templates.get(x)),
    "templates.update": ("template", lambda p, x: p.a.templates.update(x, body="Hi")),
    "templates.delete": ("template", lambda p, x: p.a.templates.delete(x)),
    "workflows.get": ("workflow", lambda p, x: p.a.workflows.get(x)),
    "workflows.update": ("workflow", lambda p, x: p.a.workflows.update(x, name="Eve")),
    "workflows.delete": ("workflow", lambda p, x: p.a.workflows.delete(x)),
    "workflows.steps": ("workflow", lambda p, x: p.a.workflows.steps(x)),
    "workflows.add_step": (
        "workflow",
        lambda p, x: p.a.workflows.add_step(x, channel="sms", template_id=p.a.template),
    ),
    "workflows.add_step(template)": (
        "template",
        lambda p, x: p.a.workflows.add_step(p.a_workflow, channel="sms", template_id=x),
    ),
    "workflows.remove_step": ("step", lambda p, x: p.a.workflows.remove_step(p.a_workflow, x)),
    "workflows.remove_step(workflow)": (
        "workflow",
        lambda p, x: p.a.workflows.remove_step(x, p.b_step),
    ),
    "workflows.enroll(workflow)": (
        "workflow",
        lambda p, x: p.a.workflows.enroll(x, p.a.contact, APPOINTMENT),
    ),
    "workflows.enroll(contact)": (
        "contact",
        lambda p, x: p.a.workflows.enroll(p.a_workflow, x, APPOINTMENT),
    ),
    "workflows.reschedule(workflow)": (
        "workflow",
        lambda p, x: p.a.workflows.reschedule(x, p.b.contact, APPOINTMENT, LATER),
    ),
    "workflows.reschedule(contact)": (
        "contact",
        lambda p, x: p.a.workflows.reschedule(p.a_workflow, x, APPOINTMENT, LATER),
    ),
    "workflows.unenroll(workflow)": (
        "workflow",
        lambda p, x: p.a.workflows.unenroll(x, p.b.contact, APPOINTMENT),
    ),
    "workflows.unenroll(contact)": (
        "contact",
        lambda p, x: p.a.workflows.unenroll(p.a_workflow, x, APPOINTMENT),
    ),
    "workflows.enrollment": (
        "contact",
        lambda p, x: p.a.workflows.enrollment(p.a_workflow, x, APPOINTMENT),
    ),
}


def _outcome(call: Callable[[], Any], target: ObjectId) -> tuple[Any, ...]:
    """Return what a call did, with the id it named written as <id>."""
    try:
        result = call()
    except Exception as exc:  # the type and message are what is compared
        return type(exc), str(exc).replace(str(target), "<id>")
    return ("returned", repr(result).replace(str(target), "<id>"))


@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_another_tenants_id_behaves_as_a_missing_one_and_writes_nothing(
    pair: Pair, name: str
) -> None:
    kind, attempt = ATTEMPTS[name]
    theirs, missing = pair.theirs(kind), ObjectId()
    before = snapshot(pair.a.db)
    foreign = _outcome(lambda: attempt(pair, theirs), theirs)
    assert snapshot(pair.a.db) == before
    absent = _outcome(lambda: attempt(pair, missing), missing)
    assert foreign == absent
    assert snapshot(pair.a.db) == before


def test_check_access_treats_another_tenants_user_as_missing(pair: Pair) -> None:
    tenants = nsn_store.Tenants(pair.a.db, clock=pair.a.clock)
    outcomes = {
        _outcome(lambda u=user: tenants.check_access(pair.a.tenant, u), ObjectId())[0]
        for user in (pair.b_user, "user_nobody")
    }
    assert outcomes == {nsn_store.NotFoundError}
    assert tenants.check_access(pair.b.tenant, pair.b_user)["tenantId"] == pair.b.tenant


def test_lookups_and_lists_see_only_the_tenants_own_data(pair: Pair) -> None:
    a = pair.a
    assert [c["_id"] for c in a.contacts.find_by_phone(PATIENT_E164)] == [a.contact]
    assert [c["_id"] for c in a.contacts.find_by_email("ada@example.com")] == [a.contact]
    assert [t["_id"] for t in a.templates.list()] == [a.template]
    assert [w["_id"] for w in a.workflows.list()] == [pair.a_workflow]
    assert [
        m["tenantId"] for m in a.workflows.enrollment(pair.a_workflow, a.contact, APPOINTMENT)
    ] == [a.tenant]


def test_tenant_a_changing_its_own_data_leaves_tenant_bs_untouched(pair: Pair) -> None:
    a, b = pair.a, pair.b
    theirs = snapshot(b.db)
    a.contacts.opt_out(a.contact)
    a.workflows.reschedule(pair.a_workflow, a.contact, APPOINTMENT, LATER)
    a.workflows.unenroll(pair.a_workflow, a.contact, LATER)
    a.workflows.delete(pair.a_workflow)
    after = snapshot(b.db)
    for name in ("contacts", "scheduledMessages", "workflowSteps", "workflows"):
        mine = [d for d in theirs[name] if d.get("tenantId") == b.tenant]
        assert [d for d in after[name] if d.get("tenantId") == b.tenant] == mine, name
    assert [m["status"] for m in b.messages()] == ["scheduled"]


def test_inbound_stop_to_one_clinic_opts_out_only_its_contact(pair: Pair) -> None:
    a, b = pair.a, pair.b
    result = nsn_store.Inbound(a.db, clock=a.clock).receive("sms", PATIENT_E164, b.number, "STOP")
    assert (result.tenant_id, result.contact_ids) == (b.tenant, (b.contact,))
    assert b.contacts.get(b.contact)["optedOut"] is True
    assert "optedOut" not in a.contacts.get(a.contact)
    assert [m["status"] for m in a.messages()] == ["scheduled"]
    assert [m["status"] for m in b.messages()] == ["cancelled"]
    events = list(a.db.messageEvents.find({"eventType": {"$in": ["replied", "opted_out"]}}))
    assert {e["tenantId"] for e in events} == {b.tenant}


@pytest.mark.parametrize("tenant_id", [{"$ne": None}, None, 12, "f" * 23, ["f" * 24]], ids=repr)
@pytest.mark.parametrize(
    "service",
    [nsn_store.Contacts, nsn_store.Templates, nsn_store.Workflows],
    ids=lambda s: s.__name__,
)
def test_a_service_refuses_a_tenant_id_that_is_not_an_id(service: Any, tenant_id: Any) -> None:
    with pytest.raises(nsn_store.InvalidIdError):
        service(object(), tenant_id)
