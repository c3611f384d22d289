"""A tenant's contacts: E.164 phones, checked emails, lookups for the inbound path, opt-out.

Every read and write carries the tenant's id, so another tenant's contact is
as absent as a missing one (the same :class:`~nsn_store.errors.NotFoundError`).

**Opt-out** sets ``optedOut``, cancels the contact's scheduled and processing
messages (a message a worker is sending at that moment may still go out; the
worker records it as sent) and records one ``opted_out`` event (``raw``:
``contactId``, ``source``, ``keyword``), whose ``_id`` derives from the contact
and the opt-out's time, so a call repeated after a lost reply completes what
is missing and adds nothing. **Opt-in** clears the flag; it restores no
cancelled message (enroll again) and records no event of its own: the closed
``eventType`` set has no ``opted_in`` (an inbound START is recorded as the
``replied`` event it is).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from nsn_store._flow import Flow, asynchronous, sync
from nsn_store._types import Document, IdLike
from nsn_store.arguments import as_object_id, check_text
from nsn_store.clock import Clock, to_bson_time
from nsn_store.directory import _queries as q
from nsn_store.directory._base import (
    TenantHost,
    find,
    find_one,
    insert_one,
    modify,
    not_found,
    update_many,
)
from nsn_store.directory._checks import (
    KEEP,
    Keep,
    check_email,
    check_metadata,
    check_phone,
    check_region,
)
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError
from nsn_store.scheduler._queries import Query, owned_query
from nsn_store.scheduler._updates import cancel_update, event_id, new_event

__all__ = ["AsyncContacts", "Contacts", "OptChange"]

#: A lookup returns at most this many contacts (one phone number is a few people at most).
LOOKUP_LIMIT = 100


@dataclass(frozen=True)
class OptChange:
    """The outcome of an opt-out or opt-in: the contact, its flag, and what changed."""

    contact_id: ObjectId
    opted_out: bool
    changed: bool  # False: the contact was already in that state
    cancelled: int  # messages this call cancelled (opt-out only)

    def to_dict(self) -> dict[str, Any]:
        """Return the change as JSON-ready values."""
        return {
            "contact_id": str(self.contact_id),
            "opted_out": self.opted_out,
            "changed": self.changed,
            "cancelled": self.cancelled,
        }


def opted_out_key(contact: ObjectId, when: datetime) -> str:
    """Return the follow-up key of the opt-out of ``contact`` made at ``when``."""
    return f"contact:{contact}:opted_out:{to_bson_time(when).isoformat()}"


class _ContactFlows(TenantHost):
    """Every contact operation, written once as a flow; the classes below declare them.

    ``default_region`` (``"US"``, ``"GB"``, ...) reads phone numbers written
    without ``+<country code>``; without it such numbers are refused.
    """

    def __init__(
        self,
        db: Any,
        tenant_id: IdLike,
        *,
        default_region: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.default_region = check_region(default_region)
        super().__init__(db, tenant_id, clock=clock)

    def _phone(self, value: Any) -> str:
        return check_phone(value, region=self.default_region)

    def _create(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Flow[Document]:
        """Create a contact; return it. A phone (normalised to E.164) or an email is needed."""
        fields = self._fields(first_name, last_name, phone, email, metadata)
        if "phone" not in fields and "email" not in fields:
            raise InvalidArgumentError("a contact needs a phone or an email", argument="phone")
        contact = {"_id": ObjectId(), "tenantId": self.tenant_id, **fields}
        contact["createdAt"] = self._now()
        yield insert_one(q.CONTACTS, contact)
        return contact

    def _fields(self, *values: Any) -> dict[str, Any]:
        """Check the optional contact fields; leave out those that are None."""
        first, last, phone, email, metadata = values
        checked = {
            "firstName": None if first is None else check_text(first, "first_name", maximum=200),
            "lastName": None if last is None else check_text(last, "last_name", maximum=200),
            "phone": None if phone is None else self._phone(phone),
            "email": None if email is None else check_email(email),
            "metadata": check_metadata(metadata),
        }
        return {key: value for key, value in checked.items() if value is not None}

    def _update(
        self,
        contact_id: IdLike,
        *,
        first_name: str | Keep | None = KEEP,
        last_name: str | Keep | None = KEEP,
        phone: str | Keep | None = KEEP,
        email: str | Keep | None = KEEP,
        metadata: dict[str, Any] | Keep | None = KEEP,
    ) -> Flow[Document]:
        """Change the given fields (None removes one); return the contact.

        The opt-out flag changes only through ``opt_out`` and ``opt_in``.
        """
        contact = as_object_id(contact_id, "contact_id")
        given = {
            "firstName": first_name,
            "lastName": last_name,
            "phone": phone,
            "email": email,
            "metadata": metadata,
        }
        kept = [None if v is KEEP else v for v in given.values()]
        values = self._fields(*kept)
        unset = {key: "" for key, value in given.items() if value is None}
        update: dict[str, Any] = {"$set": {**values, "updatedAt": self._now()}}
        if unset:
            update["$unset"] = unset
        found = yield modify(owned_query(q.CONTACTS, contact, self.tenant_id), update)
        if found is None:
            raise not_found("contact", contact)
        return dict(found)

    def _get(self, contact_id: IdLike) -> Flow[Document]:
        """Return the tenant's contact ``contact_id``; NotFoundError if there is none."""
        contact = as_object_id(contact_id, "contact_id")
        found = yield find_one(owned_query(q.CONTACTS, contact, self.tenant_id))
        if found is None:
            raise not_found("contact", contact)
        return dict(found)

    def _find_by_phone(self, phone: str) -> Flow[list[Document]]:
        """Return the tenant's contacts with this phone number (any format it parses)."""
        query = q.contacts_by_phone_query(self.tenant_id, self._phone(phone))
        return list((yield find(query, limit=LOOKUP_LIMIT)))

    def _find_by_email(self, email: str) -> Flow[list[Document]]:
        """Return the tenant's contacts with this email address (case-insensitive)."""
        query = q.contacts_by_email_query(self.tenant_id, check_email(email))
        return list((yield find(query, limit=LOOKUP_LIMIT)))

    def opt_out_flow(
        self, contact_id: IdLike, *, source: str = "api", keyword: str | None = None
    ) -> Flow[OptChange]:
        """The flow behind ``opt_out``, for services that compose it (the inbound path)."""
        return self._opt_out(contact_id, source=source, keyword=keyword)

    def opt_in_flow(self, contact_id: IdLike) -> Flow[OptChange]:
        """The flow behind ``opt_in``, for services that compose it (the inbound path)."""
        return self._opt_in(contact_id)

    def _opt_out(
        self, contact_id: IdLike, *, source: str = "api", keyword: str | None = None
    ) -> Flow[OptChange]:
        """Opt the contact out: flag it, cancel its pending messages, record the event.

        Safe to repeat: an opted-out contact keeps its flag and its ``updatedAt``
        (the opt-out's time, until the contact is next edited); its pending
        messages are cancelled again (none are left) and the event, keyed by
        that time, is not written twice.
        """
        contact = as_object_id(contact_id, "contact_id")
        origin = check_text(source, "source", maximum=50)
        said = None if keyword is None else check_text(keyword, "keyword", maximum=50)
        now = self._now()
        owned = owned_query(q.CONTACTS, contact, self.tenant_id)
        flip = {**owned.filter, "optedOut": {"$ne": True}}
        changed = yield modify(
            Query(q.CONTACTS, flip, owned.index, residual=(*owned.residual, "optedOut")),
            {"$set": {"optedOut": True, "updatedAt": now}},
        )
        current = changed if changed is not None else (yield find_one(owned))
        if current is None:
            raise not_found("contact", contact)
        result = yield update_many(
            q.contact_pending_query(self.tenant_id, contact), cancel_update(now)
        )
        when = now if changed is not None else current.get("updatedAt", now)
        raw: dict[str, Any] = {"contactId": contact, "source": origin}
        if said is not None:
            raw["keyword"] = said
        event = new_event(self.tenant_id, "opted_out", when, raw=raw)
        event["_id"] = event_id(opted_out_key(contact, when))
        with suppress(DuplicateKeyError):  # written by the call this one repeats
            yield insert_one(q.EVENTS, event)
        return OptChange(contact, True, changed is not None, result.modified_count)

    def _opt_in(self, contact_id: IdLike) -> Flow[OptChange]:
        """Opt the contact back in (clear ``optedOut``); cancelled messages stay cancelled."""
        contact = as_object_id(contact_id, "contact_id")
        owned = owned_query(q.CONTACTS, contact, self.tenant_id)
        flip = Query(
            q.CONTACTS,
            {**owned.filter, "optedOut": True},
            owned.index,
            residual=(*owned.residual, "optedOut"),
        )
        changed = yield modify(flip, {"$set": {"optedOut": False, "updatedAt": self._now()}})
        if changed is None and (yield find_one(owned, projection={"_id": 1})) is None:
            raise not_found("contact", contact)
        return OptChange(contact, False, changed is not None, 0)


class Contacts(_ContactFlows):
    """A tenant's contacts (``Contacts(db, tenant_id, default_region=None, clock=None)``)."""

    create = sync(_ContactFlows._create)
    update = sync(_ContactFlows._update)
    get = sync(_ContactFlows._get)
    find_by_phone = sync(_ContactFlows._find_by_phone)
    find_by_email = sync(_ContactFlows._find_by_email)
    opt_out = sync(_ContactFlows._opt_out)
    opt_in = sync(_ContactFlows._opt_in)


class AsyncContacts(_ContactFlows):
    """The asyncio twin of :class:`Contacts`."""

    create = asynchronous(_ContactFlows._create)
    update = asynchronous(_ContactFlows._update)
    get = asynchronous(_ContactFlows._get)
    find_by_phone = asynchronous(_ContactFlows._find_by_phone)
    find_by_email = asynchronous(_ContactFlows._find_by_email)
    opt_out = asynchronous(_ContactFlows._opt_out)
    opt_in = asynchronous(_ContactFlows._opt_in)
