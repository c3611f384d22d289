"""A tenant's workflows and their steps, and enrolling contacts in them.

Steps come back in ``order``. A step names the template it renders (of the
tenant, on the step's channel) and when it is sent relative to the
enrollment's anchor: ``anchor_offset_seconds`` (signed) or ``delay_seconds``
(``>= 0``); see :mod:`nsn_store.directory._enrollment`.

**Deleting** a workflow deletes its steps, then the workflow, then cancels
the pending messages its enrollments scheduled (one index range over their
keys). Each write is safe to repeat whether or not the others ran, so a call
repeated after a lost reply, or after a crash half way, finishes the job; a
workflow that is gone (or another tenant's) reports ``removed=False``. An
enrollment racing the deletion re-reads the steps after it writes and cancels
what it wrote for steps that are gone (what it wrote before the deletion's
cancel, that cancel takes), so no message of a deleted step stays pending.
Removing a step does the same for that step's messages.
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
    delete_many,
    delete_one,
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
    check_channel,
    check_name,
    check_offsets,
    check_optional_text,
    check_order,
)
from nsn_store.directory._enrollment import _EnrollmentFlows
from nsn_store.errors import InvalidArgumentError
from nsn_store.scheduler._queries import owned_query
from nsn_store.scheduler._updates import cancel_update, check_flag

__all__ = ["AsyncWorkflows", "Removal", "Workflows"]


@dataclass(frozen=True)
class Removal:
    """What a workflow deletion or step removal did."""

    removed: bool  # False: nothing of this tenant by that id (gone already, or never)
    steps: int  # steps deleted
    cancelled: int  # pending messages cancelled

    def to_dict(self) -> dict[str, Any]:
        """Return the removal as JSON-ready values."""
        return {"removed": self.removed, "steps": self.steps, "cancelled": self.cancelled}


class _WorkflowFlows(_EnrollmentFlows):
    """Every workflow operation, written once as a flow; the classes below declare them."""

    def _create(self, name: str, *, description: str | None = None) -> Flow[Document]:
        """Create a workflow; return it."""
        workflow: dict[str, Any] = {
            "_id": ObjectId(),
            "tenantId": self.tenant_id,
            "name": check_name(name),
        }
        text = check_optional_text(description, "description", maximum=2000)
        if text is not None:
            workflow["description"] = text
        workflow["createdAt"] = self._now()
        yield insert_one(q.WORKFLOWS, workflow)
        return workflow

    def _get(self, workflow_id: IdLike) -> Flow[Document]:
        """Return the tenant's workflow ``workflow_id``; NotFoundError if there is none."""
        workflow = as_object_id(workflow_id, "workflow_id")
        found = yield find_one(owned_query(q.WORKFLOWS, workflow, self.tenant_id))
        if found is None:
            raise not_found("workflow", workflow)
        return dict(found)

    def _list(self, *, limit: int = 100) -> Flow[list[Document]]:
        """Return up to ``limit`` of the tenant's workflows."""
        found = yield find(q.workflows_query(self.tenant_id), limit=check_limit(limit))
        return list(found)

    def _update(
        self,
        workflow_id: IdLike,
        *,
        name: str | Keep = KEEP,
        description: str | Keep | None = KEEP,
    ) -> Flow[Document]:
        """Rename a workflow or change its description (None removes it); return it."""
        workflow = as_object_id(workflow_id, "workflow_id")
        changes: dict[str, Any] = {"updatedAt": self._now()}
        if not isinstance(name, Keep):
            changes["name"] = check_name(name)
        update: dict[str, Any] = {"$set": changes}
        if description is None:
            update["$unset"] = {"description": ""}
        elif not isinstance(description, Keep):
            changes["description"] = check_optional_text(description, "description", maximum=2000)
        found = yield modify(owned_query(q.WORKFLOWS, workflow, self.tenant_id), update)
        if found is None:
            raise not_found("workflow", workflow)
        return dict(found)

    def _delete(self, workflow_id: IdLike) -> Flow[Removal]:
        """Delete a workflow with its steps, cancelling its pending messages (repeatable)."""
        workflow = as_object_id(workflow_id, "workflow_id")
        steps = yield delete_many(q.workflow_steps_query(self.tenant_id, workflow))
        gone = yield delete_one(owned_query(q.WORKFLOWS, workflow, self.tenant_id))
        pending = q.prefix_pending_query(self.tenant_id, q.workflow_prefix(workflow))
        cancelled = yield update_many(pending, cancel_update(self._now()))
        return Removal(
            bool(gone.deleted_count), int(steps.deleted_count), int(cancelled.modified_count)
        )

    def _add_step(
        self,
        workflow_id: IdLike,
        *,
        channel: str,
        template_id: IdLike,
        order: int | None = None,
        delay_seconds: int | None = None,
        anchor_offset_seconds: int | None = None,
        use_ai: bool = False,
    ) -> Flow[Document]:
        """Add a step (after the last one unless ``order`` is given); return it.

        The step renders ``template_id`` (the tenant's, on ``channel``) and is sent
        at ``anchor + anchor_offset_seconds`` (signed) or ``anchor + delay_seconds``
        (default 0). A taken ``order`` is refused.
        """
        workflow = as_object_id(workflow_id, "workflow_id")
        template = as_object_id(template_id, "template_id")
        kind, position = check_channel(channel), check_order(order)
        delay, offset = check_offsets(delay_seconds, anchor_offset_seconds)
        ai = check_flag(use_ai, "use_ai")
        if (yield find_one(owned_query(q.WORKFLOWS, workflow, self.tenant_id))) is None:
            raise not_found("workflow", workflow)
        found = yield find_one(owned_query(q.TEMPLATES, template, self.tenant_id))
        if found is None:
            raise not_found("template", template)
        if found["channel"] != kind:
            raise InvalidArgumentError(
                f"template {template} is for {found['channel']}, not {kind}", argument="template_id"
            )
        position = yield from self._position(workflow, position)
        step: dict[str, Any] = {
            "_id": ObjectId(),
            "workflowId": workflow,
            "tenantId": self.tenant_id,
            "order": position,
            "channel": kind,
            "delaySeconds": delay,
            "templateId": template,
            "useAi": ai,
            "createdAt": self._now(),
        }
        if offset is not None:
            step["anchorOffsetSeconds"] = offset
        yield insert_one(q.STEPS, step)
        return step

    def _position(self, workflow: ObjectId, order: int | None) -> Flow[int]:
        """Return the new step's order: the one asked for if free, else after the last."""
        if order is not None:
            taken = yield find_one(
                q.step_at_order_query(self.tenant_id, workflow, order), projection={"_id": 1}
            )
            if taken is not None:
                raise InvalidArgumentError(
                    f"order {order} is taken in this workflow", argument="order"
                )
            return order
        last = yield find_one(q.last_step_query(self.tenant_id, workflow), projection={"order": 1})
        return 0 if last is None else int(last["order"]) + 1

    def _steps(self, workflow_id: IdLike) -> Flow[list[Document]]:
        """Return the workflow's steps in ``order``; NotFoundError if there is no workflow."""
        workflow = as_object_id(workflow_id, "workflow_id")
        if (yield find_one(owned_query(q.WORKFLOWS, workflow, self.tenant_id))) is None:
            raise not_found("workflow", workflow)
        return list((yield find(q.steps_query(self.tenant_id, workflow))))

    def _remove_step(self, workflow_id: IdLike, step_id: IdLike) -> Flow[Removal]:
        """Remove a step, cancelling the pending messages it scheduled (repeatable)."""
        workflow = as_object_id(workflow_id, "workflow_id")
        step = as_object_id(step_id, "step_id")
        gone = yield delete_one(q.step_query(self.tenant_id, workflow, step))
        pending = q.prefix_pending_query(self.tenant_id, q.step_prefix(workflow, step))
        cancelled = yield update_many(pending, cancel_update(self._now()))
        count = int(gone.deleted_count)
        return Removal(bool(count), count, int(cancelled.modified_count))


class Workflows(_WorkflowFlows):
    """A tenant's workflows, steps and enrollments (``Workflows(db, tenant_id, clock=None)``)."""

    create = sync(_WorkflowFlows._create)
    get = sync(_WorkflowFlows._get)
    list = sync(_WorkflowFlows._list)
    update = sync(_WorkflowFlows._update)
    delete = sync(_WorkflowFlows._delete)
    add_step = sync(_WorkflowFlows._add_step)
    steps = sync(_WorkflowFlows._steps)
    remove_step = sync(_WorkflowFlows._remove_step)
    enroll = sync(_WorkflowFlows._enroll)
    reschedule = sync(_WorkflowFlows._reschedule)
    unenroll = sync(_WorkflowFlows._unenroll)
    enrollment = sync(_WorkflowFlows._enrollment)


class AsyncWorkflows(_WorkflowFlows):
    """The asyncio twin of :class:`Workflows`."""

    create = asynchronous(_WorkflowFlows._create)
    get = asynchronous(_WorkflowFlows._get)
    list = asynchronous(_WorkflowFlows._list)
    update = asynchronous(_WorkflowFlows._update)
    delete = asynchronous(_WorkflowFlows._delete)
    add_step = asynchronous(_WorkflowFlows._add_step)
    steps = asynchronous(_WorkflowFlows._steps)
    remove_step = asynchronous(_WorkflowFlows._remove_step)
    enroll = asynchronous(_WorkflowFlows._enroll)
    reschedule = asynchronous(_WorkflowFlows._reschedule)
    unenroll = asynchronous(_WorkflowFlows._unenroll)
    enrollment = asynchronous(_WorkflowFlows._enrollment)
