"""Enrollment: one contact's messages for one workflow and one anchor (an appointment).

**When a step is sent.** A step with ``anchorOffsetSeconds`` is sent at
``anchor + anchorOffsetSeconds``, a signed offset: ``-86400`` is 24 h before
the appointment, ``-7200`` 2 h before, ``3600`` an hour after. A step without
it is sent at ``anchor + delaySeconds`` (``>= 0``, as in migration 0001).
Times are UTC instants, so "24 h before" is exactly 86,400 s before, across
any daylight-saving change of the contact's local time.

**Steps already past.** A step whose time is earlier than ``now - grace``
when ``enroll`` (or ``reschedule``) runs is skipped, not sent late: no message
is written and the result lists it in ``skipped`` with reason ``past``.
``grace`` (default 0, at most a day) accepts a little lateness, for a
confirmation at offset 0 of an anchor that has just passed. An opted-out
contact's steps are all skipped with reason ``opted_out``.

**Idempotent.** Each step's message carries the key
``enr:<workflow>:<step>:<contact>:<anchor ms>`` under the unique
``by_tenant_idempotencyKey`` index: enrolling again, or many times at once,
schedules each step once and returns the stored messages (a step added to the
workflow since is scheduled by the next ``enroll``). A message of the
enrollment that was cancelled (``unenroll``, an opt-out since withdrawn) is
scheduled again by a new ``enroll``; one sent or failed stays as it is.
Each scheduled message gets its ``queued`` event, keyed by the message as
:meth:`nsn_store.Scheduler.schedule` keys it. A call that wrote messages
reads the steps once more and cancels what it wrote for a step removed
meanwhile (a workflow deletion or ``remove_step`` racing it).

**Reschedule** moves the enrollment's scheduled messages to the new anchor
(their key and ``sendAt`` change in one write each), cancels those it cannot
move (processing, or now past), then completes the enrollment at the new
anchor as ``enroll`` would: afterwards the contact is enrolled at the new
anchor exactly as ``enroll(new_anchor)`` leaves it, and nothing is pending at
the old one. Repeating it changes nothing more. **Unenroll** cancels the
enrollment's scheduled and processing messages (a message a worker is
sending at that moment may still go out; the worker records it as sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from bson import ObjectId
from pymongo import UpdateOne

from nsn_store._flow import Flow, Op
from nsn_store._types import Document, DocumentIn, IdLike
from nsn_store.arguments import as_object_id, check_datetime, check_document
from nsn_store.clock import to_bson_time
from nsn_store.directory import _queries as q
from nsn_store.directory._base import (
    TenantHost,
    find,
    find_one,
    insert_many,
    not_found,
    update_many,
)
from nsn_store.directory._checks import check_grace
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError
from nsn_store.scheduler._queries import owned_query
from nsn_store.scheduler._updates import (
    CANCELLED,
    PAYLOAD_LIMIT,
    SCHEDULED,
    cancel_update,
    follow_up_key,
    new_event,
    new_message,
)

__all__ = ["Enrollment", "SkippedStep", "step_time"]

SkipReason = Literal["past", "opted_out"]


@dataclass(frozen=True)
class SkippedStep:
    """A step the call did not schedule, when it would have been sent, and why."""

    step_id: ObjectId
    order: int
    send_at: datetime
    reason: SkipReason

    def to_dict(self) -> dict[str, Any]:
        """Return the step as JSON-ready values."""
        return {
            "step_id": str(self.step_id),
            "order": self.order,
            "send_at": self.send_at.isoformat(),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Enrollment:
    """A contact's enrollment at one anchor: its stored messages (in step order) and skips.

    ``messages`` holds each step's message in whatever state it is (scheduled,
    processing, sent, failed, cancelled); ``cancelled`` counts the messages a
    ``reschedule`` cancelled at the old anchor.
    """

    workflow_id: ObjectId
    contact_id: ObjectId
    anchor: datetime
    messages: tuple[Document, ...]
    skipped: tuple[SkippedStep, ...]
    cancelled: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the enrollment as JSON-ready values."""
        return {
            "workflow_id": str(self.workflow_id),
            "contact_id": str(self.contact_id),
            "anchor": self.anchor.isoformat(),
            "messages": [
                {
                    "message_id": str(m["_id"]),
                    "step_id": str(m.get("workflowStepId")),
                    "send_at": m["sendAt"].isoformat(),
                    "status": m["status"],
                }
                for m in self.messages
            ],
            "skipped": [s.to_dict() for s in self.skipped],
            "cancelled": self.cancelled,
        }


def step_time(step: Mapping[str, Any], anchor: datetime) -> datetime:
    """Return when ``step`` is sent for ``anchor`` (see the module docstring)."""
    offset = step.get("anchorOffsetSeconds")
    seconds = offset if offset is not None else step.get("delaySeconds", 0)
    try:
        return to_bson_time(anchor + timedelta(seconds=seconds))
    except OverflowError:
        raise InvalidArgumentError(
            "anchor plus a step's offset falls outside years 1 to 9999", argument="anchor"
        ) from None


@dataclass(frozen=True)
class _Slot:
    """One step of an enrollment: its key and when it is sent."""

    step: Mapping[str, Any]
    key: str
    send_at: datetime


def _payload(value: Any) -> dict[str, Any] | None:
    return None if value is None else check_document(value, "payload", maximum_bytes=PAYLOAD_LIMIT)


def _anchor(value: Any, argument: str = "anchor") -> datetime:
    return to_bson_time(check_datetime(value, argument))


def _bulk(updates: list[UpdateOne]) -> Op:
    return Op("bulk_write", q.MESSAGES, (updates,), {"ordered": False})


class _EnrollmentFlows(TenantHost):
    """The enrollment operations, written once as flows (composed into the workflow service)."""

    def _enroll(
        self,
        workflow_id: IdLike,
        contact_id: IdLike,
        anchor: datetime,
        *,
        payload: DocumentIn | None = None,
        grace: timedelta | float = 0,
    ) -> Flow[Enrollment]:
        """Schedule one message per step at ``anchor`` plus the step's offset (idempotent).

        Steps already past are skipped and listed in ``skipped``; see the module
        docstring for offsets, ``grace`` and what repeating the call does.
        """
        workflow = as_object_id(workflow_id, "workflow_id")
        contact = as_object_id(contact_id, "contact_id")
        at, variables, late = _anchor(anchor), _payload(payload), check_grace(grace)
        person, steps = yield from self._load(workflow, contact)
        messages, skipped = yield from self._complete(workflow, person, steps, at, variables, late)
        return Enrollment(workflow, contact, at, tuple(messages), tuple(skipped))

    def _reschedule(
        self,
        workflow_id: IdLike,
        contact_id: IdLike,
        anchor: datetime,
        new_anchor: datetime,
        *,
        payload: DocumentIn | None = None,
        grace: timedelta | float = 0,
    ) -> Flow[Enrollment]:
        """Move the enrollment at ``anchor`` to ``new_anchor``; return the new enrollment.

        Scheduled messages move (``payload``, if given, replaces theirs); those that
        cannot move are cancelled (counted in ``cancelled``); steps with no message
        are scheduled as ``enroll(new_anchor)`` would.
        """
        workflow = as_object_id(workflow_id, "workflow_id")
        contact = as_object_id(contact_id, "contact_id")
        old, new = _anchor(anchor), _anchor(new_anchor, "new_anchor")
        variables, late = _payload(payload), check_grace(grace)
        person, steps = yield from self._load(workflow, contact)
        cancelled = 0
        if old != new:
            before = yield from self._keyed(self._slots(workflow, contact, steps, old))
            cancelled = yield from self._move(workflow, person, steps, before, new, variables, late)
            if variables is None:  # new messages take the payload the enrollment had
                variables = next((m["payload"] for m in before.values() if "payload" in m), None)
        messages, skipped = yield from self._complete(workflow, person, steps, new, variables, late)
        return Enrollment(workflow, contact, new, tuple(messages), tuple(skipped), cancelled)

    def _unenroll(self, workflow_id: IdLike, contact_id: IdLike, anchor: datetime) -> Flow[int]:
        """Cancel the enrollment's scheduled and processing messages; return how many."""
        workflow = as_object_id(workflow_id, "workflow_id")
        contact = as_object_id(contact_id, "contact_id")
        at = _anchor(anchor)
        _, steps = yield from self._load(workflow, contact)
        keys = [slot.key for slot in self._slots(workflow, contact, steps, at)]
        if not keys:
            return 0
        result = yield update_many(
            q.keyed_pending_query(self.tenant_id, keys), cancel_update(self._now())
        )
        return int(result.modified_count)

    def _enrollment(
        self, workflow_id: IdLike, contact_id: IdLike, anchor: datetime
    ) -> Flow[list[Document]]:
        """Return the enrollment's stored messages, in step order (any status)."""
        workflow = as_object_id(workflow_id, "workflow_id")
        contact = as_object_id(contact_id, "contact_id")
        at = _anchor(anchor)
        _, steps = yield from self._load(workflow, contact)
        slots = self._slots(workflow, contact, steps, at)
        stored = yield from self._keyed(slots)
        return [stored[slot.key] for slot in slots if slot.key in stored]

    # -- parts -------------------------------------------------------------------

    def _load(self, workflow: ObjectId, contact: ObjectId) -> Flow[tuple[Document, list[Document]]]:
        """Return the tenant's contact and the workflow's steps (NotFoundError for either)."""
        found = yield find_one(
            owned_query(q.WORKFLOWS, workflow, self.tenant_id), projection={"_id": 1}
        )
        if found is None:
            raise not_found("workflow", workflow)
        person = yield find_one(
            owned_query(q.CONTACTS, contact, self.tenant_id), projection={"optedOut": 1}
        )
        if person is None:
            raise not_found("contact", contact)
        steps = yield find(q.steps_query(self.tenant_id, workflow))
        return dict(person), list(steps)

    def _slots(
        self, workflow: ObjectId, contact: ObjectId, steps: Iterable[Document], anchor: datetime
    ) -> list[_Slot]:
        return [
            _Slot(
                step,
                q.enrollment_key(workflow, step["_id"], contact, anchor),
                step_time(step, anchor),
            )
            for step in steps
        ]

    def _keyed(self, slots: Iterable[_Slot]) -> Flow[dict[str, Document]]:
        """Return the stored messages of these slots, by key (one read)."""
        keys = [slot.key for slot in slots]
        if not keys:
            return {}
        found = yield find(q.keyed_messages_query(self.tenant_id, keys))
        return {doc["idempotencyKey"]: doc for doc in found}

    def _complete(
        self,
        workflow: ObjectId,
        person: Document,
        steps: list[Document],
        anchor: datetime,
        payload: dict[str, Any] | None,
        grace: timedelta,
    ) -> Flow[tuple[list[Document], list[SkippedStep]]]:
        """Schedule every step of the enrollment that has no live message; return the state."""
        slots = self._slots(workflow, person["_id"], steps, anchor)
        stored = yield from self._keyed(slots)
        now = self._now()
        fresh: list[dict[str, Any]] = []
        revive: list[UpdateOne] = []
        skipped: list[SkippedStep] = []
        for slot in slots:
            doc = stored.get(slot.key)
            if doc is not None and doc["status"] != CANCELLED:
                continue
            reason = _skip_reason(person, slot.send_at, now - grace)
            if reason is not None:
                skipped.append(
                    SkippedStep(slot.step["_id"], slot.step["order"], slot.send_at, reason)
                )
            elif doc is None:
                fresh.append(self._message(person["_id"], slot, now, payload))
            else:
                revive.append(self._revival(doc, slot, now, payload))
        if fresh or revive:
            stored = yield from self._write(slots, stored, fresh, revive)
            slots, stored = yield from self._recheck(workflow, slots, stored)
        messages = [stored[slot.key] for slot in slots if slot.key in stored]
        yield from self._queued(messages)
        return messages, skipped

    def _message(
        self, contact: ObjectId, slot: _Slot, now: datetime, payload: dict[str, Any] | None
    ) -> dict[str, Any]:
        return new_message(
            self.tenant_id,
            contact,
            slot.step["channel"],
            slot.send_at,
            now,
            payload=payload,
            workflow_step_id=slot.step["_id"],
            template_id=slot.step.get("templateId"),
            idempotency_key=slot.key,
            message_id=ObjectId(),
        )

    def _revival(
        self, doc: Document, slot: _Slot, now: datetime, payload: dict[str, Any] | None
    ) -> UpdateOne:
        """Schedule a cancelled message of the enrollment again, as a fresh message."""
        changes: dict[str, Any] = {
            "status": SCHEDULED,
            "channel": slot.step["channel"],
            "sendAt": slot.send_at,
            "attempts": 0,
            "updatedAt": now,
        }
        if slot.step.get("templateId") is not None:
            changes["templateId"] = slot.step["templateId"]
        if payload is not None:
            changes["payload"] = payload
        return UpdateOne(
            {"_id": doc["_id"], "tenantId": self.tenant_id, "status": CANCELLED},
            {"$set": changes, "$unset": {"claimToken": "", "lastError": "", "sentAt": ""}},
        )

    def _write(
        self,
        slots: list[_Slot],
        stored: dict[str, Document],
        fresh: list[dict[str, Any]],
        revive: list[UpdateOne],
    ) -> Flow[dict[str, Document]]:
        """Insert and revive messages; return the stored state (re-read after a race)."""
        raced = bool(revive)
        if fresh:
            try:
                yield insert_many(q.MESSAGES, fresh)
            except DuplicateKeyError:
                raced = True  # a concurrent enrollment wrote some of these keys first
        if revive:
            yield _bulk(revive)
        if raced:
            return (yield from self._keyed(slots))
        return {**stored, **{doc["idempotencyKey"]: doc for doc in fresh}}

    def _recheck(
        self, workflow: ObjectId, slots: list[_Slot], stored: dict[str, Document]
    ) -> Flow[tuple[list[_Slot], dict[str, Document]]]:
        """Cancel what this call wrote for steps removed while it wrote; return what is left.

        A deletion removes the steps first and cancels their messages last, so a
        write that lands after that cancel is seen here (its step is gone), and
        one that lands before it is cancelled by it.
        """
        current = yield find(q.steps_query(self.tenant_id, workflow), projection={"_id": 1})
        alive = {step["_id"] for step in current}
        gone = [slot.key for slot in slots if slot.step["_id"] not in alive]
        if not gone:
            return slots, stored
        yield update_many(q.keyed_pending_query(self.tenant_id, gone), cancel_update(self._now()))
        kept = [slot for slot in slots if slot.step["_id"] in alive]
        return kept, (yield from self._keyed(kept))

    def _queued(self, messages: list[Document]) -> Flow[None]:
        """Ensure each message's ``queued`` event (keyed: written once whoever writes it)."""
        events = [
            new_event(
                self.tenant_id,
                "queued",
                m["createdAt"],
                message_id=m["_id"],
                key=follow_up_key(m["_id"], "queued"),
            )
            for m in messages
        ]
        if events:
            with suppress(DuplicateKeyError):  # written by an earlier or concurrent call
                yield insert_many(q.EVENTS, events)

    def _move(
        self,
        workflow: ObjectId,
        person: Document,
        steps: list[Document],
        before: dict[str, Document],
        anchor: datetime,
        payload: dict[str, Any] | None,
        grace: timedelta,
    ) -> Flow[int]:
        """Move the old anchor's scheduled messages to ``anchor``; cancel what is left there."""
        now = self._now()
        by_step = {doc.get("workflowStepId"): doc for doc in before.values()}
        moves = [
            self._relocation(doc, slot, now, payload)
            for slot in self._slots(workflow, person["_id"], steps, anchor)
            if (doc := by_step.get(slot.step["_id"])) is not None
            and doc["status"] == SCHEDULED
            and _skip_reason(person, slot.send_at, now - grace) is None
        ]
        if moves:
            # A step whose message the new anchor already has stays put: cancelled below.
            with suppress(DuplicateKeyError):
                yield _bulk(moves)
        if not before:
            return 0
        pending = q.keyed_pending_query(self.tenant_id, list(before))
        result = yield update_many(pending, cancel_update(now))
        return int(result.modified_count)

    def _relocation(
        self, doc: Document, slot: _Slot, now: datetime, payload: dict[str, Any] | None
    ) -> UpdateOne:
        changes: dict[str, Any] = {
            "sendAt": slot.send_at,
            "idempotencyKey": slot.key,
            "updatedAt": now,
        }
        if payload is not None:
            changes["payload"] = payload
        old = {"_id": doc["_id"], "tenantId": self.tenant_id, "status": SCHEDULED}
        return UpdateOne({**old, "idempotencyKey": doc["idempotencyKey"]}, {"$set": changes})


def _skip_reason(
    person: Mapping[str, Any], send_at: datetime, earliest: datetime
) -> SkipReason | None:
    if person.get("optedOut"):
        return "opted_out"
    if send_at < earliest:
        return "past"
    return None
