"""Inbound messages: an SMS or email that a contact sent to a tenant's address.

:meth:`Inbound.receive` resolves the tenant from the receiving address (the
tenant whose provider config sends from it), the contacts from the sender
(their phone for SMS, their email for email), records a ``replied`` event,
and treats the standard keywords as opt-out and opt-in.

**Keywords.** A message whose whole text, trimmed, case-insensitive and with
trailing punctuation ignored, is one of :data:`OPT_OUT_KEYWORDS` (STOP,
STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT: the CTIA and Twilio
defaults, which carriers also enforce) opts every matched contact out, which
cancels their pending messages; one of :data:`OPT_IN_KEYWORDS` (START,
UNSTOP) opts them back in. YES is not an opt-in here, though Twilio counts
it as one: reminders ask patients to reply YES to confirm. "STOP please" is
an ordinary reply, as it is for carriers.

**Repeats.** With ``provider_message_id`` the unique
``by_provider_message_event`` index records a webhook delivered twice once
(``recorded`` is False the second time); the opt-out or opt-in is applied
again either way, which changes nothing the first delivery did not. Without
it every call records an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from bson import ObjectId

from nsn_store._flow import Flow, asynchronous, sync
from nsn_store._types import DocumentIn
from nsn_store.arguments import check_datetime, check_document, check_text
from nsn_store.directory import _queries as q
from nsn_store.directory._base import DirectoryHost, find, insert_one
from nsn_store.directory._checks import PROVIDER_FOR, check_channel, check_email, check_phone
from nsn_store.directory._contacts import LOOKUP_LIMIT, _ContactFlows
from nsn_store.errors import ConfigurationError, DuplicateKeyError, NotFoundError
from nsn_store.scheduler._updates import PAYLOAD_LIMIT, TEXT_LIMIT, check_choice, new_event
from nsn_store.schema._models import PROVIDERS

__all__ = ["OPT_IN_KEYWORDS", "OPT_OUT_KEYWORDS", "AsyncInbound", "Inbound", "InboundResult"]

OPT_OUT_KEYWORDS: Final = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS: Final = frozenset({"START", "UNSTOP"})
#: An inbound body is stored in the event; a long email is cut to this many characters.
BODY_LIMIT: Final = 10_000

Action = Literal["opted_out", "opted_in", "message"]


@dataclass(frozen=True)
class InboundResult:
    """What an inbound message did: its tenant, the contacts it came from, the action."""

    tenant_id: ObjectId
    contact_ids: tuple[ObjectId, ...]
    action: Action
    keyword: str | None
    recorded: bool  # False: this provider message was recorded before (a webhook retry)
    cancelled: int  # pending messages an opt-out cancelled

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values."""
        return {
            "tenant_id": str(self.tenant_id),
            "contact_ids": [str(c) for c in self.contact_ids],
            "action": self.action,
            "keyword": self.keyword,
            "recorded": self.recorded,
            "cancelled": self.cancelled,
        }


def keyword_action(body: str) -> tuple[str | None, Action]:
    """Return the keyword ``body`` is (if any) and what it asks for."""
    word = body.strip().rstrip(".!?,;: ").upper()
    if word in OPT_OUT_KEYWORDS:
        return word, "opted_out"
    if word in OPT_IN_KEYWORDS:
        return word, "opted_in"
    return None, "message"


def _address(channel: str, value: Any, argument: str) -> str:
    return check_email(value, argument) if channel == "email" else check_phone(value, argument)


class _InboundFlows(DirectoryHost):
    """The inbound entry point, written once as a flow (not bound to a tenant: it finds it)."""

    def _receive(
        self,
        channel: str,
        from_address: str,
        to_address: str,
        body: str,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        occurred_at: datetime | None = None,
        raw: DocumentIn | None = None,
    ) -> Flow[InboundResult]:
        """Record an inbound message for the tenant receiving at ``to_address``.

        NotFoundError if no tenant receives on ``channel`` at that address;
        ConfigurationError if several do. See the module docstring for keywords.
        """
        kind = check_channel(channel)
        sender = _address(kind, from_address, "from_address")
        receiver = _address(kind, to_address, "to_address")
        cut = body[:BODY_LIMIT] if isinstance(body, str) else body  # the event keeps the start
        text = check_text(cut, "body", maximum=BODY_LIMIT, allow_empty=True)
        source = (
            PROVIDER_FOR[kind]
            if provider is None
            else check_choice(provider, "provider", PROVIDERS)
        )
        message_id = (
            None
            if provider_message_id is None
            else check_text(provider_message_id, "provider_message_id", maximum=TEXT_LIMIT)
        )
        when = None if occurred_at is None else check_datetime(occurred_at, "occurred_at")
        extra = None if raw is None else check_document(raw, "raw", maximum_bytes=PAYLOAD_LIMIT)
        keyword, action = keyword_action(text)
        tenant = yield from self._tenant(kind, receiver)
        lookup = q.contacts_by_phone_query if kind == "sms" else q.contacts_by_email_query
        people = yield find(lookup(tenant, sender), projection={"_id": 1}, limit=LOOKUP_LIMIT)
        contacts = tuple(person["_id"] for person in people)
        details: dict[str, Any] = {
            "channel": kind,
            "from": sender,
            "to": receiver,
            "body": text,
            "contactIds": list(contacts),
            "action": action,
        }
        if keyword is not None:
            details["keyword"] = keyword
        if extra is not None:
            details["provider"] = extra
        event = new_event(
            tenant,
            "replied",
            self._now(),
            provider=source,
            provider_message_id=message_id,
            occurred_at=when,
            raw=details,
        )
        event["_id"] = ObjectId()
        try:
            yield insert_one(q.EVENTS, event)
            recorded = True
        except DuplicateKeyError:
            recorded = False  # by_provider_message_event: this webhook came before
        cancelled = yield from self._apply(tenant, contacts, action, keyword)
        return InboundResult(tenant, contacts, action, keyword, recorded, cancelled)

    def _tenant(self, channel: str, address: str) -> Flow[ObjectId]:
        """Return the one tenant receiving on ``channel`` at ``address``."""
        owners = yield find(q.tenants_at_query(channel, address), projection={"_id": 1}, limit=2)
        if not owners:
            raise NotFoundError(f"no tenant receives {channel} at this address")
        if len(owners) > 1:
            raise ConfigurationError(f"several tenants receive {channel} at this address")
        tenant: ObjectId = owners[0]["_id"]
        return tenant

    def _apply(
        self, tenant: ObjectId, contacts: tuple[ObjectId, ...], action: Action, keyword: str | None
    ) -> Flow[int]:
        """Opt the contacts out or in as the keyword asks; return how many messages cancelled."""
        flows = _ContactFlows(self.db, tenant, clock=self.clock)
        cancelled = 0
        for contact in contacts:
            if action == "opted_out":
                change = yield from flows.opt_out_flow(contact, source="inbound", keyword=keyword)
                cancelled += change.cancelled
            elif action == "opted_in":
                yield from flows.opt_in_flow(contact)
        return cancelled


class Inbound(_InboundFlows):
    """The data-layer entry point for inbound SMS and email (``Inbound(db, clock=None)``)."""

    receive = sync(_InboundFlows._receive)


class AsyncInbound(_InboundFlows):
    """The asyncio twin of :class:`Inbound`."""

    receive = asynchronous(_InboundFlows._receive)
