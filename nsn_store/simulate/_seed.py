"""Seed a simulation: every tenant's clinic, contacts, workflow and messages.

:func:`build_seed` is pure (documents from ``random.Random(config.seed)`` and
``now``); :func:`seed_database` writes them in batches.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from nsn_store.simulate._report import SimulationConfig

Documents = dict[str, list[dict[str, Any]]]
SEEDED = ("tenants", "contacts", "templates", "workflows", "workflowSteps", "scheduledMessages")


def build_seed(config: SimulationConfig, run: str, now: datetime) -> Documents:
    """Build every document of the run, by collection, from ``random.Random(config.seed)``."""
    rng = random.Random(config.seed)
    docs: Documents = {name: [] for name in SEEDED}
    for t in range(config.tenants):
        for name, batch in _tenant_documents(config, rng, run, t, now).items():
            docs[name].extend(batch)
    return docs


def _tenant_documents(
    config: SimulationConfig, rng: random.Random, run: str, t: int, now: datetime
) -> Documents:
    tid = ObjectId()
    tenant = {
        "_id": tid,
        "name": f"Simulated clinic {t}",
        "plan": "simulation",
        "clerkOrgId": f"sim_{run}_{t}",
        "providerConfigs": _provider_configs(t),
        "createdAt": now,
    }
    contacts = _contacts(tid, t, config.contacts_per_tenant, now)
    templates = _templates(tid, now)
    wid = ObjectId()
    workflow = {"_id": wid, "tenantId": tid, "name": "Appointment reminders", "createdAt": now}
    steps = _steps(tid, wid, templates, now)
    messages = _messages(config, rng, t, steps, contacts, now)
    return {
        "tenants": [tenant],
        "contacts": contacts,
        "templates": templates,
        "workflows": [workflow],
        "workflowSteps": steps,
        "scheduledMessages": messages,
    }


def _provider_configs(t: int) -> list[dict[str, Any]]:
    # A credentials reference, never a secret: the fake sender needs none.
    return [
        {
            "channel": "sms",
            "provider": "twilio",
            "fromAddress": f"+1555{t:03d}0000",
            "credentialsRef": "env:SIMULATED_TWILIO",
        },
        {
            "channel": "email",
            "provider": "resend",
            "fromAddress": f"clinic{t}@sim.example",
            "credentialsRef": "env:SIMULATED_RESEND",
        },
    ]


def _contacts(tid: ObjectId, t: int, count: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "_id": ObjectId(),
            "tenantId": tid,
            "firstName": f"Patient{c}",
            "lastName": f"Clinic{t}",
            "phone": f"+1555{t:03d}{c:04d}",
            "email": f"patient{c}@clinic{t}.example",
            "createdAt": now,
        }
        for c in range(count)
    ]


def _templates(tid: ObjectId, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "_id": ObjectId(),
            "tenantId": tid,
            "name": "Reminder SMS",
            "channel": "sms",
            "body": "Hi {{firstName}}, see you tomorrow at {{time}}.",
            "createdAt": now,
        },
        {
            "_id": ObjectId(),
            "tenantId": tid,
            "name": "Reminder email",
            "channel": "email",
            "subject": "Your appointment",
            "body": "Dear {{firstName}}, see you at {{time}}.",
            "createdAt": now,
        },
    ]


def _steps(
    tid: ObjectId, workflow_id: ObjectId, templates: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "_id": ObjectId(),
            "workflowId": workflow_id,
            "tenantId": tid,
            "order": i,
            "channel": tpl["channel"],
            "delaySeconds": delay,
            "templateId": tpl["_id"],
            "useAi": False,
            "createdAt": now,
        }
        for i, (tpl, delay) in enumerate(zip(templates, (0, 3600), strict=True))
    ]


def _messages(
    config: SimulationConfig,
    rng: random.Random,
    t: int,
    steps: list[dict[str, Any]],
    contacts: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    from nsn_store.scheduler._updates import new_message

    messages = []
    for m in range(config.messages_per_tenant):
        step, contact = rng.choice(steps), rng.choice(contacts)
        send_at = now + timedelta(seconds=rng.uniform(0, config.spread))
        # payload.sim is the message's stable name: the fake sender's failure draw
        # hashes it; payload.time fills the templates' {{time}}.
        payload = {"sim": f"{t}:{m}", "time": (send_at + timedelta(days=1)).strftime("%H:%M")}
        messages.append(
            new_message(
                step["tenantId"],
                contact["_id"],
                step["channel"],
                send_at,
                now,
                payload=payload,
                workflow_step_id=step["_id"],
                template_id=step["templateId"],
            )
        )
    return messages


def seed_database(db: Any, docs: Documents, counter: Any, now: datetime) -> None:
    """Insert the seeded documents with their ``queued`` events and scheduled counts.

    This writes what ``Scheduler.schedule`` writes, built by the same builders,
    but in batches: seeding 50,000 messages one call at a time would dominate the
    run and is not what the simulation measures.
    """
    from nsn_store.scheduler._updates import new_event

    for name in SEEDED:
        for chunk in _chunks(docs[name], 1000):
            db[name].insert_many(chunk)
            if name == "scheduledMessages":
                db["messageEvents"].insert_many(
                    [new_event(m["tenantId"], "queued", now, message_id=m["_id"]) for m in chunk]
                )
    per_tenant = Counter(m["tenantId"] for m in docs["scheduledMessages"])
    for tenant_id, count in per_tenant.items():
        counter.add(tenant_id, "messages.scheduled", count)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
