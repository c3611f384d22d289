"""Deliveries: everything a sender needs, loaded for a whole claimed batch at once.

:func:`load_deliveries` is a flow (:mod:`nsn_store._flow`) that costs at most
three round trips per batch whatever its size: the batch's contacts, its
templates and its tenants, each one ``find`` on ``_id`` with ``$in``.
Contacts and templates are looked up together with the message's tenant, so a
message that names another tenant's contact or template finds nothing and
fails for good, exactly like a missing one.

Each message becomes a :class:`Delivery` or a :class:`Refusal`:

- the contact opted out: refused as ``opted_out`` (the worker cancels the
  message and records an ``opted_out`` event; it is never sent);
- no contact, no address for the channel (a phone number for ``sms``, an email
  address for ``email``), no template text, an email without a subject, or a
  placeholder without a value: refused as ``permanent`` with the reason.

The template is the message's ``templateId`` template; a message without one
uses ``payload.body`` (and ``payload.subject`` for email) as its template.
Placeholders are those of :mod:`nsn_store.rendering`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bson import ObjectId

from nsn_store._flow import Flow, Op
from nsn_store.rendering import MissingVariableError, TemplateSyntaxError, render
from nsn_store.rendering import template_variables as variables_for

__all__ = ["DEFAULT_PROVIDER", "Delivery", "Refusal", "load_deliveries"]

DEFAULT_PROVIDER = {"sms": "twilio", "email": "resend"}
_ADDRESS = {"sms": ("phone", "phone number"), "email": ("email", "email address")}
_CONTACT_FIELDS = {
    "firstName": 1,
    "lastName": 1,
    "phone": 1,
    "email": 1,
    "optedOut": 1,
    "metadata": 1,
    "tenantId": 1,
}
_TEMPLATE_FIELDS = {"body": 1, "subject": 1, "channel": 1, "tenantId": 1}


@dataclass(frozen=True)
class Delivery:
    """One message, ready to send: rendered, addressed and tenant-checked.

    ``idempotency_key`` is ``<message id>:<attempt>``: the same while one
    attempt is retried by the sender or the provider's client, new for the next
    attempt; pass it to providers that deduplicate on one (Resend's
    ``Idempotency-Key`` header). ``credentials_ref`` is the tenant's reference
    to a secret (``scheme:location``), never the secret itself.
    """

    message_id: ObjectId
    tenant_id: ObjectId
    contact_id: ObjectId
    channel: str
    to: str
    body: str
    attempt: int
    provider: str
    subject: str | None = None
    from_address: str | None = None
    credentials_ref: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    message: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def idempotency_key(self) -> str:
        """Return ``<message id>:<attempt>``."""
        return f"{self.message_id}:{self.attempt}"


@dataclass(frozen=True)
class Refusal:
    """A claimed message the worker must not send, and why."""

    message: Mapping[str, Any]
    kind: Literal["opted_out", "permanent"]
    reason: str


def load_deliveries(messages: Sequence[Mapping[str, Any]]) -> Flow[list[Delivery | Refusal]]:
    """Return a Delivery or a Refusal for each claimed message, in order (<= 3 round trips)."""
    if not messages:
        return []
    tenants = sorted({m["tenantId"] for m in messages})
    contacts = yield from _by_id(
        "contacts", {m["contactId"] for m in messages}, tenants, _CONTACT_FIELDS
    )
    templates = yield from _by_id(
        "templates",
        {m["templateId"] for m in messages if m.get("templateId") is not None},
        tenants,
        _TEMPLATE_FIELDS,
    )
    owners = yield from _by_id("tenants", set(tenants), None, {"providerConfigs": 1})
    return [_prepare(m, contacts, templates, owners) for m in messages]


def _by_id(
    collection: str, ids: set[Any], tenants: list[Any] | None, projection: Mapping[str, int]
) -> Flow[dict[Any, Mapping[str, Any]]]:
    if not ids:
        return {}
    query: dict[str, Any] = {"_id": {"$in": sorted(ids)}}
    if tenants is not None:
        query["tenantId"] = {"$in": tenants}
    found = yield Op("find", collection, (query, dict(projection)))
    return {doc["_id"]: doc for doc in found}


def _owned(
    found: Mapping[Any, Mapping[str, Any]], key: Any, tenant: Any
) -> Mapping[str, Any] | None:
    doc = found.get(key)
    return doc if doc is not None and doc.get("tenantId") == tenant else None


def _prepare(
    message: Mapping[str, Any],
    contacts: Mapping[Any, Mapping[str, Any]],
    templates: Mapping[Any, Mapping[str, Any]],
    owners: Mapping[Any, Mapping[str, Any]],
) -> Delivery | Refusal:
    tenant, channel = message["tenantId"], message["channel"]
    contact = _owned(contacts, message["contactId"], tenant)
    if contact is None:
        return Refusal(message, "permanent", "its contact does not exist")
    if contact.get("optedOut"):
        return Refusal(message, "opted_out", "the contact opted out")
    field_name, what = _ADDRESS[channel]
    if not contact.get(field_name):
        return Refusal(message, "permanent", f"the contact has no {what} for {channel}")
    texts = _texts(message, templates)
    if isinstance(texts, Refusal):
        return texts
    body, subject = texts
    if channel == "email" and not subject:
        return Refusal(message, "permanent", "an email needs a subject")
    variables = variables_for(contact, message.get("payload"))
    try:
        rendered = render(body, variables)
        rendered_subject = render(subject, variables) if subject else None
    except (MissingVariableError, TemplateSyntaxError) as exc:
        return Refusal(message, "permanent", str(exc))
    config = _provider_config(owners.get(tenant), channel)
    return Delivery(
        message_id=message["_id"],
        tenant_id=tenant,
        contact_id=message["contactId"],
        channel=channel,
        to=str(contact[field_name]),
        body=rendered,
        subject=rendered_subject,
        attempt=int(message.get("attempts") or 0),
        provider=str(config.get("provider") or DEFAULT_PROVIDER[channel]),
        from_address=config.get("fromAddress"),
        credentials_ref=config.get("credentialsRef"),
        payload=dict(message.get("payload") or {}),
        message=message,
    )


def _texts(
    message: Mapping[str, Any], templates: Mapping[Any, Mapping[str, Any]]
) -> tuple[str, str | None] | Refusal:
    template_id = message.get("templateId")
    if template_id is not None:
        template = _owned(templates, template_id, message["tenantId"])
        if template is None:
            return Refusal(message, "permanent", "its template does not exist")
        return str(template["body"]), template.get("subject")
    payload = message.get("payload") or {}
    if not isinstance(payload.get("body"), str) or not payload["body"]:
        return Refusal(message, "permanent", "it has no template and no payload.body")
    subject = payload.get("subject")
    return payload["body"], subject if isinstance(subject, str) else None


def _provider_config(tenant: Mapping[str, Any] | None, channel: str) -> Mapping[str, Any]:
    for config in (tenant or {}).get("providerConfigs") or []:
        if config.get("channel") == channel:
            return dict(config)
    return {}
