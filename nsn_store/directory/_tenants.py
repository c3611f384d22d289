"""Tenants (one per Clerk organisation), their provider configs and their users.

``get_or_create`` is one upsert on the unique ``by_clerkOrgId`` index, so any
number of concurrent first sign-ins of one organisation create one tenant.
Provider configs hold references to secrets only (see
:mod:`nsn_store.directory._checks`). ``check_access`` answers "does this Clerk
user belong to this tenant" with the same :class:`~nsn_store.errors.NotFoundError`
for a missing user, another tenant's user and a missing tenant.
"""

from __future__ import annotations

from typing import Any

from nsn_store._flow import Flow, asynchronous, sync
from nsn_store._types import Document, IdLike
from nsn_store.arguments import as_object_id, check_text
from nsn_store.directory import _queries as q
from nsn_store.directory._base import DirectoryHost, find, find_one, modify, not_found
from nsn_store.directory._checks import check_email, check_name, check_provider_configs
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError, NotFoundError
from nsn_store.scheduler._updates import check_choice
from nsn_store.schema._models import ROLES

__all__ = ["AsyncTenants", "Tenants"]

#: Clerk ids (organisations, users) are the model's ``Identifier``: 1-200 characters.
_ID_LIMIT = 200


class _TenantFlows(DirectoryHost):
    """Every tenant operation, written once as a flow; the classes below declare them."""

    def _get_or_create(self, clerk_org_id: str, name: str | None = None) -> Flow[Document]:
        """Return the tenant of Clerk organisation ``clerk_org_id``, creating it the first time.

        One upsert on the unique ``by_clerkOrgId`` index: concurrent calls for one
        organisation return the same tenant. ``name`` (default: the organisation id)
        is set only when the tenant is created; an existing tenant keeps its name.
        """
        org = check_text(clerk_org_id, "clerk_org_id", maximum=_ID_LIMIT)
        display = org if name is None else check_name(name)
        query = q.tenant_by_org_query(org)
        created = {"$setOnInsert": {"name": display, "createdAt": self._now()}}
        try:
            tenant = yield modify(query, created, upsert=True)
        except DuplicateKeyError:
            # Two first upserts raced to insert and the server did not retry the loser:
            # the winner's tenant is there now.
            tenant = yield find_one(query)
        return dict(tenant)

    def _get(self, tenant_id: IdLike) -> Flow[Document]:
        """Return the tenant ``tenant_id``; NotFoundError if there is none."""
        tenant = as_object_id(tenant_id, "tenant_id")
        found = yield find_one(q.tenant_by_id_query(tenant))
        if found is None:
            raise NotFoundError(f"tenant {tenant} not found")
        return dict(found)

    def _set_provider_configs(self, tenant_id: IdLike, provider_configs: Any) -> Flow[Document]:
        """Replace the tenant's provider configs; return the tenant.

        Each config is ``{channel, provider, fromAddress, credentialsRef}``:
        ``credentialsRef`` names where the secret is (``env:TWILIO_AUTH_TOKEN``,
        ``vault://kv/twilio``); a config with any other field, or whose reference
        looks like a secret, is refused before any I/O. An SMS sender is an E.164
        number (normalised) or an alphanumeric sender id; an email sender an
        address. A sender address another tenant already uses is refused: inbound
        messages find their tenant by it.
        """
        tenant = as_object_id(tenant_id, "tenant_id")
        configs = check_provider_configs(provider_configs)
        senders = [(c["channel"], c["fromAddress"]) for c in configs]
        if senders:
            taken = yield find(q.other_tenants_at_query(tenant, senders), projection={"_id": 1})
            if taken:
                raise InvalidArgumentError(
                    "provider_configs names a sender address another tenant uses",
                    argument="provider_configs",
                )
        update = {"$set": {"providerConfigs": configs, "updatedAt": self._now()}}
        found = yield modify(q.tenant_by_id_query(tenant), update)
        if found is None:
            raise NotFoundError(f"tenant {tenant} not found")
        return dict(found)

    def _add_user(
        self,
        tenant_id: IdLike,
        clerk_user_id: str,
        *,
        role: str = "user",
        email: str | None = None,
    ) -> Flow[Document]:
        """Attach Clerk user ``clerk_user_id`` to the tenant (once); return the user.

        A user already attached to this tenant is returned as it is. Clerk user ids
        are unique across tenants (``by_clerkUserId``): a user of another tenant
        raises DuplicateKeyError.
        """
        tenant = as_object_id(tenant_id, "tenant_id")
        user = check_text(clerk_user_id, "clerk_user_id", maximum=_ID_LIMIT)
        fields: dict[str, Any] = {"role": check_choice(role, "role", ROLES)}
        if email is not None:
            fields["email"] = check_email(email)
        if (yield find_one(q.tenant_by_id_query(tenant), projection={"_id": 1})) is None:
            raise NotFoundError(f"tenant {tenant} not found")
        query = q.user_query(tenant, user)
        created = {"$setOnInsert": {**fields, "createdAt": self._now()}}
        try:
            found = yield modify(query, created, upsert=True)
        except DuplicateKeyError:
            found = yield find_one(query)  # a concurrent add of the same user won
            if found is None:
                raise  # the Clerk user belongs to another tenant
        return dict(found)

    def _check_access(self, tenant_id: IdLike, clerk_user_id: str) -> Flow[Document]:
        """Return the user if Clerk user ``clerk_user_id`` belongs to the tenant.

        A missing user, another tenant's user and a missing tenant raise the same
        NotFoundError (no existence oracle).
        """
        tenant = as_object_id(tenant_id, "tenant_id")
        user = check_text(clerk_user_id, "clerk_user_id", maximum=_ID_LIMIT)
        found = yield find_one(q.user_query(tenant, user))
        if found is None:
            raise not_found("user", user)
        return dict(found)


class Tenants(_TenantFlows):
    """Tenants, their provider configs and users (``Tenants(db, clock=None)``)."""

    get_or_create = sync(_TenantFlows._get_or_create)
    get = sync(_TenantFlows._get)
    set_provider_configs = sync(_TenantFlows._set_provider_configs)
    add_user = sync(_TenantFlows._add_user)
    check_access = sync(_TenantFlows._check_access)


class AsyncTenants(_TenantFlows):
    """The asyncio twin of :class:`Tenants` (PyMongo async, Motor, the embedded client)."""

    get_or_create = asynchronous(_TenantFlows._get_or_create)
    get = asynchronous(_TenantFlows._get)
    set_provider_configs = asynchronous(_TenantFlows._set_provider_configs)
    add_user = asynchronous(_TenantFlows._add_user)
    check_access = asynchronous(_TenantFlows._check_access)
