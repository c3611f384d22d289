"""Build the directory's reads and the enrollment keys; each read names the index serving it.

Pure: ids, times and keys come in as arguments. Every read is a
:class:`~nsn_store.scheduler._queries.Query`; ``tests/directory`` checks each
shape of :func:`all_queries` against its declared index in ESR order.

**Enrollment keys.** A message scheduled by enrollment carries the
idempotency key ``enr:<workflow>:<step>:<contact>:<anchor ms>``. The unique
index ``by_tenant_idempotencyKey`` ({tenantId, idempotencyKey}) makes each
(workflow, step, contact, anchor) one message however many enrollments race,
and the key's prefixes are index ranges: ``enr:<workflow>:`` selects a
workflow's messages (its deletion cancels them), ``enr:<workflow>:<step>:``
a step's (its removal cancels them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId

from nsn_store.clock import to_bson_time
from nsn_store.scheduler._queries import Query, owned_query
from nsn_store.scheduler._updates import CANCELLABLE

__all__ = [
    "CONTACTS",
    "EVENTS",
    "MESSAGES",
    "STEPS",
    "TEMPLATES",
    "TENANTS",
    "USERS",
    "WORKFLOWS",
    "all_queries",
    "contact_pending_query",
    "contacts_by_email_query",
    "contacts_by_phone_query",
    "enrollment_key",
    "keyed_messages_query",
    "keyed_pending_query",
    "last_step_query",
    "other_tenants_at_query",
    "prefix_pending_query",
    "step_at_order_query",
    "step_prefix",
    "step_query",
    "steps_query",
    "template_in_use_query",
    "templates_query",
    "tenant_by_id_query",
    "tenant_by_org_query",
    "tenants_at_query",
    "user_query",
    "workflow_prefix",
    "workflow_steps_query",
    "workflows_query",
]

TENANTS = "tenants"
USERS = "users"
CONTACTS = "contacts"
WORKFLOWS = "workflows"
STEPS = "workflowSteps"
TEMPLATES = "templates"
MESSAGES = "scheduledMessages"
EVENTS = "messageEvents"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


# --- enrollment keys ------------------------------------------------------------


def workflow_prefix(workflow: ObjectId) -> str:
    """Return the key prefix of every message a workflow's enrollments scheduled."""
    return f"enr:{workflow}:"


def step_prefix(workflow: ObjectId, step: ObjectId) -> str:
    """Return the key prefix of every message one step scheduled."""
    return f"{workflow_prefix(workflow)}{step}:"


def enrollment_key(workflow: ObjectId, step: ObjectId, contact: ObjectId, anchor: datetime) -> str:
    """Return the idempotency key of one step's message for (contact, anchor)."""
    millis = (to_bson_time(anchor) - _EPOCH) // _MS
    return f"{step_prefix(workflow, step)}{contact}:{millis}"


# --- tenants and users -----------------------------------------------------------


def tenant_by_org_query(clerk_org_id: str) -> Query:
    """Find the tenant of a Clerk organisation (unique: by_clerkOrgId {clerkOrgId})."""
    return Query(TENANTS, {"clerkOrgId": clerk_org_id}, "by_clerkOrgId")


def tenant_by_id_query(tenant: ObjectId) -> Query:
    """Find a tenant by ``_id``."""
    return Query(TENANTS, {"_id": tenant}, "_id_")


def tenants_at_query(channel: str, address: str) -> Query:
    """Find the tenants whose provider config sends (and receives) on ``channel`` at ``address``.

    Served by ``by_providerAddress`` {providerConfigs.channel, providerConfigs.fromAddress}
    (migration 0003), a multikey index: one key per config, so both fields bound the scan
    and ``$elemMatch`` keeps them on the same config.
    """
    match = {"$elemMatch": {"channel": channel, "fromAddress": address}}
    return Query(TENANTS, {"providerConfigs": match}, "by_providerAddress")


def other_tenants_at_query(tenant: ObjectId, senders: Sequence[tuple[str, str]]) -> Query:
    """Find another tenant that already uses one of these (channel, address) senders.

    Served by ``by_providerAddress``: each ``$or`` branch is one pair of index bounds.
    """
    either = [{"channel": channel, "fromAddress": address} for channel, address in senders]
    condition = {"providerConfigs": {"$elemMatch": {"$or": either}}, "_id": {"$ne": tenant}}
    return Query(TENANTS, condition, "by_providerAddress", residual=("_id",))


def user_query(tenant: ObjectId, clerk_user_id: str) -> Query:
    """Find a Clerk user attached to ``tenant`` (by_clerkUserId is unique across tenants)."""
    return Query(
        USERS,
        {"clerkUserId": clerk_user_id, "tenantId": tenant},
        "by_clerkUserId",
        residual=("tenantId",),
    )


# --- contacts ----------------------------------------------------------------


def contacts_by_phone_query(tenant: ObjectId, phone: str) -> Query:
    """Find a tenant's contacts with an E.164 phone number (by_phone {tenantId, phone})."""
    return Query(CONTACTS, {"tenantId": tenant, "phone": phone}, "by_phone")


def contacts_by_email_query(tenant: ObjectId, email: str) -> Query:
    """Find a tenant's contacts with an email address (by_email {tenantId, email})."""
    return Query(CONTACTS, {"tenantId": tenant, "email": email}, "by_email")


def contact_pending_query(tenant: ObjectId, contact: ObjectId) -> Query:
    """Select a contact's messages that can still be cancelled (scheduled or processing)."""
    # by_contactId {tenantId, contactId, sendAt}: a contact's messages are few; status
    # is checked on the fetched documents.
    condition = {"tenantId": tenant, "contactId": contact, "status": {"$in": list(CANCELLABLE)}}
    return Query(MESSAGES, condition, "by_contactId", residual=("status",))


# --- workflows, steps, templates -------------------------------------------------


def workflows_query(tenant: ObjectId) -> Query:
    """List a tenant's workflows (by_tenantId {tenantId})."""
    return Query(WORKFLOWS, {"tenantId": tenant}, "by_tenantId")


def steps_query(tenant: ObjectId, workflow: ObjectId) -> Query:
    """List a workflow's steps in ``order`` (by_workflowId {workflowId, order})."""
    return Query(
        STEPS,
        {"workflowId": workflow, "tenantId": tenant},
        "by_workflowId",
        [("order", 1)],
        residual=("tenantId",),
    )


def workflow_steps_query(tenant: ObjectId, workflow: ObjectId) -> Query:
    """Select every step of a workflow (by_workflowId, a prefix)."""
    return Query(
        STEPS, {"workflowId": workflow, "tenantId": tenant}, "by_workflowId", residual=("tenantId",)
    )


def step_at_order_query(tenant: ObjectId, workflow: ObjectId, order: int) -> Query:
    """Find a workflow's step at ``order`` (by_workflowId {workflowId, order})."""
    return Query(
        STEPS,
        {"workflowId": workflow, "order": order, "tenantId": tenant},
        "by_workflowId",
        residual=("tenantId",),
    )


def step_query(tenant: ObjectId, workflow: ObjectId, step: ObjectId) -> Query:
    """Find one step of one of the tenant's workflows by ``_id``."""
    return Query(
        STEPS,
        {"_id": step, "workflowId": workflow, "tenantId": tenant},
        "_id_",
        residual=("workflowId", "tenantId"),
    )


def last_step_query(tenant: ObjectId, workflow: ObjectId) -> Query:
    """Find a workflow's step with the highest ``order`` (by_workflowId, walked backwards)."""
    return Query(
        STEPS,
        {"workflowId": workflow, "tenantId": tenant},
        "by_workflowId",
        [("order", -1)],
        residual=("tenantId",),
    )


def template_in_use_query(tenant: ObjectId, template: ObjectId) -> Query:
    """Find a step that renders ``template`` (a tenant's steps are few: by_tenantId)."""
    return Query(
        STEPS, {"tenantId": tenant, "templateId": template}, "by_tenantId", residual=("templateId",)
    )


def templates_query(tenant: ObjectId, channel: str | None = None) -> Query:
    """List a tenant's templates, of one channel or all (by_channel / by_tenantId)."""
    if channel is None:
        return Query(TEMPLATES, {"tenantId": tenant}, "by_tenantId")
    return Query(TEMPLATES, {"tenantId": tenant, "channel": channel}, "by_channel")


# --- enrollment messages -------------------------------------------------------


def _keyed(keys: Iterable[str]) -> dict[str, Any]:
    # $exists restates the partial filter of by_tenant_idempotencyKey, so the
    # planner may use that partial index for this predicate.
    return {"$in": sorted(keys), "$exists": True}


def keyed_messages_query(tenant: ObjectId, keys: Iterable[str]) -> Query:
    """Find a tenant's messages with these idempotency keys (by_tenant_idempotencyKey)."""
    return Query(
        MESSAGES, {"tenantId": tenant, "idempotencyKey": _keyed(keys)}, "by_tenant_idempotencyKey"
    )


def keyed_pending_query(tenant: ObjectId, keys: Iterable[str]) -> Query:
    """Select the keyed messages that can still be cancelled."""
    condition = {
        "tenantId": tenant,
        "idempotencyKey": _keyed(keys),
        "status": {"$in": list(CANCELLABLE)},
    }
    return Query(MESSAGES, condition, "by_tenant_idempotencyKey", residual=("status",))


def prefix_pending_query(tenant: ObjectId, prefix: str) -> Query:
    """Select the cancellable messages whose key starts with ``prefix`` (one index range)."""
    key = {"$regex": "^" + re.escape(prefix), "$exists": True}
    condition = {"tenantId": tenant, "idempotencyKey": key, "status": {"$in": list(CANCELLABLE)}}
    return Query(MESSAGES, condition, "by_tenant_idempotencyKey", residual=("status",))


def all_queries(now: datetime) -> list[Query]:
    """Return one instance of every read shape the directory issues (for index checks)."""
    tenant, other, third = ObjectId(), ObjectId(), ObjectId()
    key = enrollment_key(other, third, tenant, now)
    return [
        tenant_by_org_query("org_1"),
        tenant_by_id_query(tenant),
        tenants_at_query("sms", "+14155552671"),
        other_tenants_at_query(tenant, [("sms", "+14155552671")]),
        user_query(tenant, "user_1"),
        contacts_by_phone_query(tenant, "+14155552671"),
        contacts_by_email_query(tenant, "ada@example.com"),
        contact_pending_query(tenant, other),
        workflows_query(tenant),
        steps_query(tenant, other),
        workflow_steps_query(tenant, other),
        step_at_order_query(tenant, other, 2),
        step_query(tenant, other, third),
        last_step_query(tenant, other),
        template_in_use_query(tenant, other),
        templates_query(tenant),
        templates_query(tenant, "sms"),
        keyed_messages_query(tenant, [key]),
        keyed_pending_query(tenant, [key]),
        prefix_pending_query(tenant, workflow_prefix(other)),
        prefix_pending_query(tenant, step_prefix(other, third)),
        *(owned_query(name, other, tenant) for name in (CONTACTS, WORKFLOWS, STEPS, TEMPLATES)),
    ]
