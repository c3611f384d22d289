"""Two tenants with overlapping data, for the tenant-scope security tests (issue 9).

Both tenants hold one document per tenant-owned collection with the same
names, emails and phone numbers; only ``tenantId`` and the ids tell them
apart. The world is seeded with raw writes, so what the scope under test does
never affects the starting state. ``snapshot`` reads every collection raw, so a
test can prove that a refused call wrote nothing anywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from _support import init_schema_async
from bson import ObjectId

from nsn_store.migration._runner import init_schema
from nsn_store.schema._registry import SCHEMA

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 1, 6, 9, 0, tzinfo=timezone.utc)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)  # beyond a real server's TTL monitor

#: (collection, reference field, collection it points into): every reference of the models.
REFERENCE_FIELDS = [
    ("scheduledMessages", "contactId", "contacts"),
    ("scheduledMessages", "templateId", "templates"),
    ("scheduledMessages", "workflowStepId", "workflowSteps"),
    ("workflowSteps", "workflowId", "workflows"),
    ("workflowSteps", "templateId", "templates"),
    ("messageEvents", "scheduledMessageId", "scheduledMessages"),
    ("aiPreviews", "userId", "users"),
]
REFERENCE_IDS = [f"{c}.{f}" for c, f, _ in REFERENCE_FIELDS]


def seed_documents(tenant: ObjectId, tag: str) -> dict[str, dict[str, Any]]:
    """Return one valid document per tenant-owned collection, with ids assigned."""
    ids = {name: ObjectId() for name in SCHEMA.names if name != "tenants"}
    t = {"tenantId": tenant, "createdAt": NOW}
    docs: dict[str, dict[str, Any]] = {
        "users": {"clerkUserId": f"user_{tag}", "role": "user", "email": "ada@example.com"},
        "contacts": {"firstName": "Ada", "email": "ada@example.com", "phone": "+15550001111"},
        "workflows": {"name": "Onboarding"},
        "templates": {"name": "Welcome", "channel": "sms", "body": "Hi"},
        "workflowSteps": {"workflowId": ids["workflows"], "templateId": ids["templates"],
                          "order": 0, "channel": "sms", "delaySeconds": 0, "useAi": False},
        "scheduledMessages": {"contactId": ids["contacts"], "templateId": ids["templates"],
                              "workflowStepId": ids["workflowSteps"], "channel": "sms",
                              "sendAt": NOW, "status": "scheduled", "attempts": 0,
                              "payload": {"name": "Ada"}},
        "messageEvents": {"eventType": "sent", "scheduledMessageId": ids["scheduledMessages"]},
        "aiPreviews": {"prompt": "Draft", "status": "pending", "expiresAt": FAR_FUTURE,
                       "userId": ids["users"]},
        "ragDocuments": {"text": "Opening hours", "title": "FAQ"},
        "counters": {"metric": "messages.sent", "shard": 0, "value": 1, "updatedAt": NOW},
        "aggregates": {"period": "day", "date": "2026-01-05", "metric": "sent", "value": 1,
                       "updatedAt": NOW},
    }  # fmt: skip
    return {name: {"_id": ids[name], **doc, **t} for name, doc in docs.items()}


@dataclass
class World:
    """Tenants ``a`` and ``b`` and the documents seeded for each."""

    a: ObjectId
    b: ObjectId
    a_docs: dict[str, dict[str, Any]]
    b_docs: dict[str, dict[str, Any]]

    def mine(self, name: str) -> ObjectId:
        return ObjectId(self.a_docs[name]["_id"])

    def theirs(self, name: str) -> ObjectId:
        return ObjectId(self.b_docs[name]["_id"])

    def body(self, name: str, *drop: str) -> dict[str, Any]:
        """Tenant a's document of ``name`` without _id, tenantId and the ``drop`` fields."""
        skip = {"_id", "tenantId", *drop}
        return {k: v for k, v in self.a_docs[name].items() if k not in skip}


def _new_world() -> World:
    a, b = ObjectId(), ObjectId()
    return World(a, b, seed_documents(a, "a"), seed_documents(b, "b"))


def seed(db: Any) -> World:
    """Create the schema on ``db`` and seed both tenants (raw writes)."""
    init_schema(db)
    world = _new_world()
    for docs in (world.a_docs, world.b_docs):
        for name, doc in docs.items():
            db[name].insert_one(dict(doc))
    return world


async def seed_async(adb: Any) -> World:
    """The asyncio twin of :func:`seed`."""
    await init_schema_async(adb)
    world = _new_world()
    for docs in (world.a_docs, world.b_docs):
        for name, doc in docs.items():
            await adb[name].insert_one(dict(doc))
    return world


def _names() -> list[str]:
    return [name for name in SCHEMA.names if name != "tenants"]


def snapshot(db: Any) -> dict[str, list[dict[str, Any]]]:
    """Every document of every tenant-owned collection, read raw."""
    return {name: sorted(db[name].find(), key=lambda d: str(d["_id"])) for name in _names()}


async def snapshot_async(adb: Any) -> dict[str, list[dict[str, Any]]]:
    """The asyncio twin of :func:`snapshot`."""
    return {
        name: sorted(await adb[name].find().to_list(None), key=lambda d: str(d["_id"]))
        for name in _names()
    }


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[type, str]:
    """Return the error ``call(*args, **kwargs)`` raised as (type, message); fail if none."""
    try:
        result = call(*args, **kwargs)
    except Exception as exc:  # the type is what is compared
        return type(exc), str(exc)
    raise AssertionError(f"the call succeeded: {result!r}")


async def outcome_async(
    call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
) -> tuple[type, str]:
    """The asyncio twin of :func:`outcome`."""
    try:
        result = await call(*args, **kwargs)
    except Exception as exc:  # the type is what is compared
        return type(exc), str(exc)
    raise AssertionError(f"the call succeeded: {result!r}")


class NoIO:
    """A database whose collections fail the test on any use: proves "before any I/O"."""

    def __getitem__(self, name: str) -> Any:
        return _NoIOCollection(name)


class _NoIOCollection:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"I/O on {self.name}.{attribute} before the refusal")
