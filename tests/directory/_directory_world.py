"""Set-up shared by the directory tests: a clinic built through the API, a recording sender.

A :class:`Clinic` is one tenant with an SMS number, a contact, an SMS
template and the sync services bound to it, all made through the public API
on a fresh schema. ``two_clinics`` makes two of them with overlapping data
(same contact name, phone and email, same template and workflow names), for
the isolation tests. ``snapshot`` reads every directory collection raw, so a
test can show that a refused call wrote nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.migration._runner import init_schema
from nsn_store.worker import Delivery, SendResult, Worker

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

#: The patient's number, written as people write it, and its E.164 form.
PATIENT = "+1 (212) 555-0100"
PATIENT_E164 = "+12125550100"
CLINIC_NUMBERS = ("+14155552671", "+14155552672")
COLLECTIONS = (
    "tenants",
    "users",
    "contacts",
    "workflows",
    "workflowSteps",
    "templates",
    "scheduledMessages",
    "messageEvents",
)


def sms_config(number: str) -> dict[str, str]:
    """Return a valid SMS provider config sending from ``number``."""
    return {
        "channel": "sms",
        "provider": "twilio",
        "fromAddress": number,
        "credentialsRef": "env:TWILIO_AUTH_TOKEN",
    }


@dataclass
class Clinic:
    """One tenant with a number, a contact and a template, and its sync services."""

    db: Any
    clock: ManualClock
    tenant: ObjectId
    contact: ObjectId
    template: ObjectId
    number: str

    @property
    def contacts(self) -> nsn_store.Contacts:
        return nsn_store.Contacts(self.db, self.tenant, clock=self.clock)

    @property
    def templates(self) -> nsn_store.Templates:
        return nsn_store.Templates(self.db, self.tenant, clock=self.clock)

    @property
    def workflows(self) -> nsn_store.Workflows:
        return nsn_store.Workflows(self.db, self.tenant, clock=self.clock)

    def reminders(self, *offsets: int, name: str = "Appointment reminders") -> ObjectId:
        """Create a workflow with one SMS step per anchor offset (seconds); return its id."""
        workflows = self.workflows
        workflow = workflows.create(name)["_id"]
        for offset in offsets:
            workflows.add_step(
                workflow, channel="sms", template_id=self.template, anchor_offset_seconds=offset
            )
        return ObjectId(workflow)

    def messages(self, **condition: Any) -> list[dict[str, Any]]:
        """Return the tenant's scheduled messages (raw read), oldest sendAt first."""
        found = self.db.scheduledMessages.find({"tenantId": self.tenant, **condition})
        return sorted(found, key=lambda m: (m["sendAt"], m["_id"]))


def clinic(
    db: Any, clock: ManualClock, org: str = "org_a", number: str = CLINIC_NUMBERS[0]
) -> Clinic:
    """Create a tenant (schema first, if missing) with an SMS number, Ada and a template."""
    if "tenants" not in db.list_collection_names():
        init_schema(db)
    tenants = nsn_store.Tenants(db, clock=clock)
    tenant = tenants.get_or_create(org, name=f"Clinic {org}")["_id"]
    tenants.set_provider_configs(tenant, [sms_config(number)])
    contact = nsn_store.Contacts(db, tenant, clock=clock).create(
        first_name="Ada", phone=PATIENT, email="Ada@Example.com"
    )
    template = nsn_store.Templates(db, tenant, clock=clock).create(
        "Reminder", "sms", "Hi {{firstName}}, see you at {{time}}"
    )
    return Clinic(db, clock, tenant, contact["_id"], template.template["_id"], number)


def two_clinics(db: Any, clock: ManualClock) -> tuple[Clinic, Clinic]:
    """Two tenants with the same contact, template and workflow names, numbers apart."""
    return clinic(db, clock, "org_a", CLINIC_NUMBERS[0]), clinic(
        db, clock, "org_b", CLINIC_NUMBERS[1]
    )


def snapshot(db: Any) -> dict[str, list[dict[str, Any]]]:
    """Every document of the directory's collections, read raw."""
    return {name: sorted(db[name].find(), key=lambda d: str(d["_id"])) for name in COLLECTIONS}


class RecordingSender:
    """A sender that records (clock time, delivery) for each send."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent: list[tuple[datetime, Delivery]] = []
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> SendResult:
        with self._lock:
            self.sent.append((self.clock.now(), delivery))
        return SendResult(provider_message_id=f"SM{len(self.sent)}")


def run_worker(db: Any, clock: ManualClock, sender: Any) -> Any:
    """Run one worker pass (send everything due now) and return its report."""
    return Worker(db, sender, clock=clock, concurrency=1, watch=False).run_once()
