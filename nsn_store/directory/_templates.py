"""A tenant's message templates, validated when they are saved.

A template's placeholders must parse, an email template needs a subject and an
SMS template has none; saving returns a :class:`SavedTemplate` with the
placeholders found and, for SMS, the body's encoding, length and segment count
as written (:class:`nsn_store.rendering.TemplateInfo`). A template that a
workflow step renders cannot be deleted (remove the step first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from nsn_store._flow import Flow, asynchronous, sync
from nsn_store._types import Document, IdLike
from nsn_store.arguments import as_object_id, check_limit
from nsn_store.directory import _queries as q
from nsn_store.directory._base import (
    TenantHost,
    delete_one,
    find,
    find_one,
    insert_one,
    modify,
    not_found,
)
from nsn_store.directory._checks import (
    KEEP,
    Keep,
    check_body,
    check_channel,
    check_name,
    check_subject,
    check_template,
)
from nsn_store.errors import InvalidTransitionError
from nsn_store.rendering import TemplateInfo
from nsn_store.scheduler._queries import owned_query

__all__ = ["AsyncTemplates", "SavedTemplate", "Templates"]


@dataclass(frozen=True)
class SavedTemplate:
    """A saved template and what its text holds."""

    template: Document
    info: TemplateInfo

    def to_dict(self) -> dict[str, Any]:
        """Return the template's id and info as JSON-ready values."""
        return {"template_id": str(self.template["_id"]), **self.info.to_dict()}


class _TemplateFlows(TenantHost):
    """Every template operation, written once as a flow; the classes below declare them."""

    def _create(
        self, name: str, channel: str, body: str, *, subject: str | None = None
    ) -> Flow[SavedTemplate]:
        """Save a new template; bad placeholders or a wrong subject are refused before I/O."""
        kind = check_channel(channel)
        info = check_template(kind, body, subject)
        template: dict[str, Any] = {
            "_id": ObjectId(),
            "tenantId": self.tenant_id,
            "name": check_name(name),
            "channel": kind,
            "body": body,
        }
        if subject is not None:
            template["subject"] = subject
        template["createdAt"] = self._now()
        yield insert_one(q.TEMPLATES, template)
        return SavedTemplate(template, info)

    def _update(
        self,
        template_id: IdLike,
        *,
        name: str | Keep = KEEP,
        body: str | Keep = KEEP,
        subject: str | Keep | None = KEEP,
    ) -> Flow[SavedTemplate]:
        """Change a template's name, body or subject (checked as on create; None drops it)."""
        template = as_object_id(template_id, "template_id")
        label = None if isinstance(name, Keep) else check_name(name)
        # What does not depend on the channel is checked before the read that finds it.
        if not isinstance(body, Keep):
            check_body(body)
        if not isinstance(subject, Keep) and subject is not None:
            check_subject(subject)
        owned = owned_query(q.TEMPLATES, template, self.tenant_id)
        current = yield find_one(owned)
        if current is None:
            raise not_found("template", template)
        text = current["body"] if isinstance(body, Keep) else body
        heading = current.get("subject") if isinstance(subject, Keep) else subject
        info = check_template(current["channel"], text, heading)
        changes: dict[str, Any] = {"body": text, "updatedAt": self._now()}
        if label is not None:
            changes["name"] = label
        update: dict[str, Any] = {"$set": changes}
        if heading is None:
            update["$unset"] = {"subject": ""}
        else:
            changes["subject"] = heading
        found = yield modify(owned, update)
        if found is None:
            raise not_found("template", template)  # deleted between the two calls
        return SavedTemplate(dict(found), info)

    def _get(self, template_id: IdLike) -> Flow[Document]:
        """Return the tenant's template ``template_id``; NotFoundError if there is none."""
        template = as_object_id(template_id, "template_id")
        found = yield find_one(owned_query(q.TEMPLATES, template, self.tenant_id))
        if found is None:
            raise not_found("template", template)
        return dict(found)

    def _list(self, *, channel: str | None = None, limit: int = 100) -> Flow[list[Document]]:
        """Return up to ``limit`` of the tenant's templates (of ``channel``, or all)."""
        kind = None if channel is None else check_channel(channel)
        query = q.templates_query(self.tenant_id, kind)
        return list((yield find(query, limit=check_limit(limit))))

    def _delete(self, template_id: IdLike) -> Flow[bool]:
        """Delete a template no step renders; return False if there was none to delete."""
        template = as_object_id(template_id, "template_id")
        used = yield find_one(q.template_in_use_query(self.tenant_id, template))
        if used is not None:
            raise InvalidTransitionError(
                f"template {template} is rendered by a workflow step; remove the step first"
            )
        owned = owned_query(q.TEMPLATES, template, self.tenant_id)
        result = yield delete_one(owned)
        return bool(result.deleted_count)


class Templates(_TemplateFlows):
    """A tenant's message templates (``Templates(db, tenant_id, clock=None)``)."""

    create = sync(_TemplateFlows._create)
    update = sync(_TemplateFlows._update)
    get = sync(_TemplateFlows._get)
    list = sync(_TemplateFlows._list)
    delete = sync(_TemplateFlows._delete)


class AsyncTemplates(_TemplateFlows):
    """The asyncio twin of :class:`Templates`."""

    create = asynchronous(_TemplateFlows._create)
    update = asynchronous(_TemplateFlows._update)
    get = asynchronous(_TemplateFlows._get)
    list = asynchronous(_TemplateFlows._list)
    delete = asynchronous(_TemplateFlows._delete)
