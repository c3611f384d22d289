"""Bad input is refused before any I/O, naming the argument, never echoing the value.

Every call runs against a database that fails the test on any use, so a
refusal that came after a read or a write would show as an AssertionError
instead of the InvalidArgumentError the table expects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import pytest
from bson import ObjectId

import nsn_store
from nsn_store.errors import InvalidArgumentError

ID = ObjectId()
WHEN = datetime(2026, 1, 7, 15, 0, tzinfo=timezone.utc)
OPERATOR = {"$ne": None}
SECRETISH = "s3cr3t-f3a9c2d1e5b7a6c4d8e2f1a3b5c7d9e1"


class NoIO:
    """A database whose collections fail the test on any use."""

    def __getitem__(self, name: str) -> Any:
        return _NoIOCollection(name)

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"database I/O ({attribute}) before the refusal")


class _NoIOCollection:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"I/O on {self.name}.{attribute} before the refusal")


DB = NoIO()
tenants = nsn_store.Tenants(DB)
contacts = nsn_store.Contacts(DB, ID)
templates = nsn_store.Templates(DB, ID)
workflows = nsn_store.Workflows(DB, ID)
inbound = nsn_store.Inbound(DB)

CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "tenants.get_or_create(operator)": (lambda: tenants.get_or_create(OPERATOR), "clerk_org_id"),
    "tenants.get_or_create(empty)": (lambda: tenants.get_or_create(""), "clerk_org_id"),
    "tenants.get_or_create(name)": (lambda: tenants.get_or_create("org", name=5), "name"),
    "tenants.get": (lambda: tenants.get(OPERATOR), "tenant_id"),
    "tenants.set_provider_configs(one)": (
        lambda: tenants.set_provider_configs(ID, {"channel": "sms"}),
        "provider_configs",
    ),
    "tenants.set_provider_configs(secret)": (
        lambda: tenants.set_provider_configs(
            ID,
            [
                {
                    "channel": "sms",
                    "provider": "twilio",
                    "fromAddress": "+14155552671",
                    "credentialsRef": SECRETISH,
                }
            ],
        ),
        "provider_configs[0].credentialsRef",
    ),
    "tenants.set_provider_configs(number)": (
        lambda: tenants.set_provider_configs(
            ID,
            [
                {
                    "channel": "sms",
                    "provider": "twilio",
                    "fromAddress": "+1 555 000",
                    "credentialsRef": "env:X",
                }
            ],
        ),
        "provider_configs[0].fromAddress",
    ),
    "tenants.add_user(role)": (lambda: tenants.add_user(ID, "u", role="root"), "role"),
    "tenants.add_user(email)": (lambda: tenants.add_user(ID, "u", email="u"), "email"),
    "tenants.add_user(user)": (lambda: tenants.add_user(ID, OPERATOR), "clerk_user_id"),
    "tenants.check_access": (lambda: tenants.check_access(OPERATOR, "u"), "tenant_id"),
    "contacts.create(phone)": (lambda: contacts.create(phone="call me"), "phone"),
    "contacts.create(email)": (lambda: contacts.create(email=5), "email"),
    "contacts.create(name)": (
        lambda: contacts.create(first_name=["Ada"], phone="+12125550100"),
        "first_name",
    ),
    "contacts.create(metadata)": (
        lambda: contacts.create(phone="+12125550100", metadata=[1]),
        "metadata",
    ),
    "contacts.create(metadata-operator)": (
        lambda: contacts.create(phone="+12125550100", metadata={"a": {"$gt": 1}}),
        "metadata",
    ),
    "contacts.update(id)": (lambda: contacts.update(OPERATOR, first_name="A"), "contact_id"),
    "contacts.update(phone)": (lambda: contacts.update(ID, phone="+1"), "phone"),
    "contacts.get": (lambda: contacts.get("abc"), "contact_id"),
    "contacts.find_by_phone": (lambda: contacts.find_by_phone(None), "phone"),
    "contacts.find_by_email": (lambda: contacts.find_by_email(OPERATOR), "email"),
    "contacts.opt_out(id)": (lambda: contacts.opt_out(OPERATOR), "contact_id"),
    "contacts.opt_out(source)": (lambda: contacts.opt_out(ID, source=""), "source"),
    "contacts.opt_in": (lambda: contacts.opt_in(12), "contact_id"),
    "contacts(region)": (lambda: nsn_store.Contacts(DB, ID, default_region="ZZ"), "default_region"),
    "templates.create(name)": (lambda: templates.create("", "sms", "Hi"), "name"),
    "templates.create(channel)": (lambda: templates.create("n", "fax", "Hi"), "channel"),
    "templates.create(body)": (lambda: templates.create("n", "sms", ""), "body"),
    "templates.create(long)": (lambda: templates.create("n", "sms", "x" * 5001), "body"),
    "templates.create(syntax)": (lambda: templates.create("n", "sms", "{{ x"), "body"),
    "templates.update(id)": (lambda: templates.update(None, body="Hi"), "template_id"),
    "templates.update(body)": (lambda: templates.update(ID, body="{{ x"), "body"),
    "templates.update(subject)": (lambda: templates.update(ID, subject=""), "subject"),
    "templates.get": (lambda: templates.get([ID]), "template_id"),
    "templates.list(limit)": (lambda: templates.list(limit=0), "limit"),
    "templates.list(channel)": (lambda: templates.list(channel="fax"), "channel"),
    "templates.delete": (lambda: templates.delete(OPERATOR), "template_id"),
    "workflows.create(name)": (lambda: workflows.create(""), "name"),
    "workflows.create(description)": (
        lambda: workflows.create("n", description=5),
        "description",
    ),
    "workflows.get": (lambda: workflows.get(OPERATOR), "workflow_id"),
    "workflows.list": (lambda: workflows.list(limit=10**6), "limit"),
    "workflows.update": (lambda: workflows.update(ID, name=""), "name"),
    "workflows.delete": (lambda: workflows.delete(OPERATOR), "workflow_id"),
    "workflows.add_step(template)": (
        lambda: workflows.add_step(ID, channel="sms", template_id=OPERATOR),
        "template_id",
    ),
    "workflows.steps": (lambda: workflows.steps(OPERATOR), "workflow_id"),
    "workflows.remove_step": (lambda: workflows.remove_step(ID, OPERATOR), "step_id"),
    "workflows.enroll(workflow)": (lambda: workflows.enroll(OPERATOR, ID, WHEN), "workflow_id"),
    "workflows.enroll(contact)": (lambda: workflows.enroll(ID, OPERATOR, WHEN), "contact_id"),
    "workflows.enroll(anchor-date)": (
        lambda: workflows.enroll(ID, ID, date(2026, 1, 7)),
        "anchor",
    ),
    "workflows.enroll(anchor-text)": (
        lambda: workflows.enroll(ID, ID, "2026-01-07T15:00Z"),
        "anchor",
    ),
    "workflows.enroll(payload)": (
        lambda: workflows.enroll(ID, ID, WHEN, payload=[1]),
        "payload",
    ),
    "workflows.enroll(grace)": (lambda: workflows.enroll(ID, ID, WHEN, grace=-1), "grace"),
    "workflows.enroll(grace-nan)": (
        lambda: workflows.enroll(ID, ID, WHEN, grace=float("nan")),
        "grace",
    ),
    "workflows.reschedule(new_anchor)": (
        lambda: workflows.reschedule(ID, ID, WHEN, None),
        "new_anchor",
    ),
    "workflows.unenroll(anchor)": (lambda: workflows.unenroll(ID, ID, 5), "anchor"),
    "workflows.enrollment(contact)": (
        lambda: workflows.enrollment(ID, "x" * 24, WHEN),
        "contact_id",
    ),
    "inbound.receive(provider)": (
        lambda: inbound.receive("sms", "+12125550100", "+14155552671", "STOP", provider="sns"),
        "provider",
    ),
    "inbound.receive(occurred_at)": (
        lambda: inbound.receive(
            "sms", "+12125550100", "+14155552671", "STOP", occurred_at="yesterday"
        ),
        "occurred_at",
    ),
    "inbound.receive(raw)": (
        lambda: inbound.receive("sms", "+12125550100", "+14155552671", "STOP", raw={1: 2}),
        "raw",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_before_any_io_naming_the_argument(name: str) -> None:
    call, argument = CASES[name]
    with pytest.raises(InvalidArgumentError) as refused:
        call()
    assert refused.value.argument == argument
    assert SECRETISH not in str(refused.value)


def test_no_refusal_made_a_round_trip() -> None:
    for service in (tenants, contacts, templates, workflows, inbound):
        assert service.round_trips == 0
