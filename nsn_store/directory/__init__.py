"""Tenants, users, contacts, templates, workflows, enrollment and inbound messages.

The rest of the backend that the Convex sketch had, on the flow mechanism
(:mod:`nsn_store._flow`): every service has a sync class and an asyncio twin
(``Async<name>``) declared over the same flows, checks its arguments before
any I/O, and carries the tenant's id on every tenant-owned read and write.

- :class:`Tenants` (``get_or_create`` by Clerk organisation, provider configs,
  users, ``check_access``),
- :class:`Contacts` (E.164 phones, lookups, opt-out and opt-in),
- :class:`Templates` (validated at save time),
- :class:`Workflows` (workflows, ordered steps, ``enroll``, ``reschedule``,
  ``unenroll``),
- :class:`Inbound` (inbound SMS and email, STOP/START keywords).
"""

from nsn_store.directory._checks import KEEP, looks_like_secret
from nsn_store.directory._contacts import AsyncContacts, Contacts, OptChange
from nsn_store.directory._enrollment import Enrollment, SkippedStep, step_time
from nsn_store.directory._inbound import (
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    AsyncInbound,
    Inbound,
    InboundResult,
)
from nsn_store.directory._templates import AsyncTemplates, SavedTemplate, Templates
from nsn_store.directory._tenants import AsyncTenants, Tenants
from nsn_store.directory._workflows import AsyncWorkflows, Removal, Workflows

__all__ = [
    "KEEP",
    "OPT_IN_KEYWORDS",
    "OPT_OUT_KEYWORDS",
    "AsyncContacts",
    "AsyncInbound",
    "AsyncTemplates",
    "AsyncTenants",
    "AsyncWorkflows",
    "Contacts",
    "Enrollment",
    "Inbound",
    "InboundResult",
    "OptChange",
    "Removal",
    "SavedTemplate",
    "SkippedStep",
    "Templates",
    "Tenants",
    "Workflows",
    "looks_like_secret",
    "step_time",
]
