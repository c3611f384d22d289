"""Enrollment with the manual clock: reminders before an appointment, sent at the right instants.

The appointment (the anchor) is Wednesday 2026-01-07 15:00 UTC; the clock
starts Monday 09:00. Reminders 24 h and 2 h before are steps with
``anchorOffsetSeconds`` -86400 and -7200; the worker runs one pass at each
instant the test moves the clock to.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _directory_world import DAY, HOUR, PATIENT_E164, Clinic, RecordingSender, clinic, run_worker

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.errors import NotFoundError

APPOINTMENT = datetime(2026, 1, 7, 15, 0, tzinfo=timezone.utc)
BEFORE_24H, BEFORE_2H = -86_400, -7_200


@pytest.fixture
def world(db: Any, clock: ManualClock) -> Clinic:
    return clinic(db, clock)


def _enroll(world: Clinic, workflow: Any, anchor: datetime = APPOINTMENT, **kwargs: Any) -> Any:
    return world.workflows.enroll(
        workflow, world.contact, anchor, payload={"time": "3 pm"}, **kwargs
    )


def test_reminders_24h_and_2h_before_are_scheduled_and_sent_at_those_instants(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    enrollment = _enroll(world, workflow)
    assert [m["sendAt"] for m in enrollment.messages] == [APPOINTMENT - DAY, APPOINTMENT - 2 * HOUR]
    assert enrollment.skipped == ()
    sender = RecordingSender(clock)

    clock.set(APPOINTMENT - DAY - timedelta(seconds=1))
    assert run_worker(world.db, clock, sender).claimed == 0  # one second early: nothing due
    clock.set(APPOINTMENT - DAY)
    run_worker(world.db, clock, sender)
    clock.set(APPOINTMENT - 2 * HOUR)
    run_worker(world.db, clock, sender)

    assert [(at, d.to, d.body) for at, d in sender.sent] == [
        (APPOINTMENT - DAY, PATIENT_E164, "Hi Ada, see you at 3 pm"),
        (APPOINTMENT - 2 * HOUR, PATIENT_E164, "Hi Ada, see you at 3 pm"),
    ]
    statuses = [
        m["status"] for m in world.workflows.enrollment(workflow, world.contact, APPOINTMENT)
    ]
    assert statuses == ["sent", "sent"]


def test_a_step_with_delay_seconds_is_sent_that_long_after_the_anchor(world: Clinic) -> None:
    workflows = world.workflows
    workflow = workflows.create("Follow-up")["_id"]
    workflows.add_step(workflow, channel="sms", template_id=world.template, delay_seconds=3600)
    workflows.add_step(workflow, channel="sms", template_id=world.template)  # delay 0
    enrollment = _enroll(world, workflow)
    assert [m["sendAt"] for m in enrollment.messages] == [APPOINTMENT + HOUR, APPOINTMENT]


def test_the_instants_are_utc_seconds_before_the_anchor_whatever_the_local_time(
    world: Clinic,
) -> None:
    # An anchor given in a fixed-offset zone is the same instant; "24 h before" is 86,400 s.
    workflow = world.reminders(BEFORE_24H)
    local = APPOINTMENT.astimezone(timezone(timedelta(hours=-5)))
    enrollment = _enroll(world, workflow, local)
    assert enrollment.messages[0]["sendAt"] == APPOINTMENT - DAY


def test_enrolling_again_schedules_nothing_new(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    first = _enroll(world, workflow)
    again = _enroll(world, workflow)
    assert [m["_id"] for m in again.messages] == [m["_id"] for m in first.messages]
    assert len(world.messages()) == 2
    assert world.db.messageEvents.count_documents({"eventType": "queued"}) == 2


def test_an_enroll_costs_seven_round_trips_and_a_repeat_five(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    workflows = world.workflows
    _enroll_on(workflows, world, workflow)
    # workflow, contact, steps, existing keys, insert messages, steps again (a deletion
    # racing it), insert queued events
    assert workflows.round_trips == 7
    _enroll_on(workflows, world, workflow)
    assert workflows.round_trips == 12  # nothing to insert: the events' insert finds them


def _enroll_on(workflows: nsn_store.Workflows, world: Clinic, workflow: Any) -> Any:
    return workflows.enroll(workflow, world.contact, APPOINTMENT, payload={"time": "3 pm"})


class _Gate:
    """The database, except that each thread's first read of scheduledMessages waits for all.

    Every racer reads "no message yet" before any of them inserts: the worst
    interleaving, made certain instead of left to the thread scheduler.
    """

    def __init__(self, db: Any, parties: int) -> None:
        self.db = db
        self.barrier = threading.Barrier(parties, timeout=30)
        self.local = threading.local()

    def __getitem__(self, name: str) -> Any:
        collection = self.db[name]
        return _GatedCollection(collection, self) if name == "scheduledMessages" else collection


class _GatedCollection:
    def __init__(self, collection: Any, gate: _Gate) -> None:
        self.collection, self.gate = collection, gate

    def find(self, *args: Any, **kwargs: Any) -> list[Any]:
        found = list(self.collection.find(*args, **kwargs))
        if not getattr(self.gate.local, "waited", False):
            self.gate.local.waited = True
            self.gate.barrier.wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


def test_sixteen_concurrent_enrolls_schedule_each_step_once(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H, 0)
    gate = _Gate(world.db, 16)
    services = [nsn_store.Workflows(gate, world.tenant, clock=clock) for _ in range(16)]
    results: list[Any] = []
    errors: list[BaseException] = []

    def enroll(workflows: nsn_store.Workflows) -> None:
        try:
            results.append(_enroll_on(workflows, world, workflow))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=enroll, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = world.messages()
    assert len(stored) == 3
    ids = sorted(str(m["_id"]) for m in stored)
    assert all(sorted(str(m["_id"]) for m in r.messages) == ids for r in results)
    assert world.db.messageEvents.count_documents({"eventType": "queued"}) == 3
    # At most one racer inserted every step; the others hit the unique key and read back
    # what won (one more round trip each).
    trips = [s.round_trips for s in services]
    assert set(trips) <= {7, 8} and trips.count(8) >= 15


def test_steps_already_past_are_skipped_not_sent_late(world: Clinic, clock: ManualClock) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    clock.set(APPOINTMENT - 3 * HOUR)  # booked 3 h before: the 24 h reminder is past
    enrollment = _enroll(world, workflow)
    assert [m["sendAt"] for m in enrollment.messages] == [APPOINTMENT - 2 * HOUR]
    [skipped] = enrollment.skipped
    assert (skipped.order, skipped.send_at, skipped.reason) == (0, APPOINTMENT - DAY, "past")
    assert len(world.messages()) == 1  # no message is written for a skipped step
    sender = RecordingSender(clock)
    run_worker(world.db, clock, sender)
    assert sender.sent == []  # nothing was due late


def test_grace_accepts_a_step_a_little_late(world: Clinic, clock: ManualClock) -> None:
    workflow = world.reminders(0)  # "booked" confirmation at the anchor
    clock.set(APPOINTMENT + timedelta(seconds=30))
    assert _enroll(world, workflow).skipped[0].reason == "past"
    enrollment = _enroll(world, workflow, grace=timedelta(minutes=1))
    assert [m["status"] for m in enrollment.messages] == ["scheduled"]
    sender = RecordingSender(clock)
    run_worker(world.db, clock, sender)
    assert len(sender.sent) == 1


def test_a_step_added_later_is_scheduled_by_the_next_enroll(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H)
    _enroll(world, workflow)
    world.workflows.add_step(
        workflow, channel="sms", template_id=world.template, anchor_offset_seconds=BEFORE_2H
    )
    assert len(_enroll(world, workflow).messages) == 2


def test_reschedule_moves_the_pending_reminders_to_the_new_anchor(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    first = _enroll(world, workflow)
    later = APPOINTMENT + 2 * DAY
    moved = world.workflows.reschedule(workflow, world.contact, APPOINTMENT, later)
    assert [m["_id"] for m in moved.messages] == [m["_id"] for m in first.messages]  # moved
    assert [m["sendAt"] for m in moved.messages] == [later - DAY, later - 2 * HOUR]
    assert moved.cancelled == 0
    assert len(world.messages()) == 2
    assert world.workflows.enrollment(workflow, world.contact, APPOINTMENT) == []
    assert moved.messages[0]["payload"] == {"time": "3 pm"}  # kept

    sender = RecordingSender(clock)
    clock.set(APPOINTMENT - DAY)  # the old reminder time: nothing goes out
    run_worker(world.db, clock, sender)
    clock.set(later - DAY)
    run_worker(world.db, clock, sender)
    assert [at for at, _ in sender.sent] == [later - DAY]


def test_reschedule_is_safe_to_repeat(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    _enroll(world, workflow)
    later = APPOINTMENT + DAY
    first = world.workflows.reschedule(workflow, world.contact, APPOINTMENT, later)
    again = world.workflows.reschedule(workflow, world.contact, APPOINTMENT, later)
    assert [m["_id"] for m in again.messages] == [m["_id"] for m in first.messages]
    assert again.cancelled == 0
    assert len(world.messages()) == 2


def test_reschedule_after_a_sent_reminder_schedules_the_new_ones(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    _enroll(world, workflow)
    clock.set(APPOINTMENT - DAY)
    run_worker(world.db, clock, RecordingSender(clock))  # the 24 h reminder went out
    later = APPOINTMENT + 7 * DAY
    moved = world.workflows.reschedule(workflow, world.contact, APPOINTMENT, later)
    assert [(m["sendAt"], m["status"]) for m in moved.messages] == [
        (later - DAY, "scheduled"),  # a new message for the new appointment
        (later - 2 * HOUR, "scheduled"),  # the old one, moved
    ]
    old = world.workflows.enrollment(workflow, world.contact, APPOINTMENT)
    assert [m["status"] for m in old] == ["sent"]


def test_reschedule_to_an_earlier_time_skips_the_steps_now_past(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    _enroll(world, workflow)
    sooner = clock.now() + 5 * HOUR  # the 24 h reminder would be in the past
    moved = world.workflows.reschedule(workflow, world.contact, APPOINTMENT, sooner)
    assert [m["sendAt"] for m in moved.messages] == [sooner - 2 * HOUR]
    assert [s.reason for s in moved.skipped] == ["past"]
    assert moved.cancelled == 1  # the 24 h reminder could not move: cancelled
    assert [m["status"] for m in world.messages()] == ["scheduled", "cancelled"]


def test_unenroll_cancels_the_pending_messages_and_the_worker_sends_none(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    _enroll(world, workflow)
    assert world.workflows.unenroll(workflow, world.contact, APPOINTMENT) == 2
    assert world.workflows.unenroll(workflow, world.contact, APPOINTMENT) == 0  # repeat
    assert {m["status"] for m in world.messages()} == {"cancelled"}
    sender = RecordingSender(clock)
    for moment in (APPOINTMENT - DAY, APPOINTMENT - 2 * HOUR):
        clock.set(moment)
        run_worker(world.db, clock, sender)
    assert sender.sent == []


def test_enrolling_again_after_unenroll_schedules_the_cancelled_steps_again(
    world: Clinic,
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    first = _enroll(world, workflow)
    world.workflows.unenroll(workflow, world.contact, APPOINTMENT)
    again = _enroll(world, workflow)
    assert [m["_id"] for m in again.messages] == [m["_id"] for m in first.messages]
    assert [m["status"] for m in again.messages] == ["scheduled", "scheduled"]
    assert len(world.messages()) == 2


def test_deleting_a_workflow_removes_its_steps_and_cancels_its_pending_messages(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    other = world.reminders(BEFORE_2H, name="Other")
    _enroll(world, workflow)
    _enroll(world, other)
    removal = world.workflows.delete(workflow)
    assert (removal.removed, removal.steps, removal.cancelled) == (True, 2, 2)
    assert world.db.workflowSteps.count_documents({"workflowId": workflow}) == 0
    assert world.db.workflows.count_documents({"_id": workflow}) == 0
    statuses = sorted(m["status"] for m in world.messages())
    assert statuses == ["cancelled", "cancelled", "scheduled"]  # the other workflow's stays
    again = world.workflows.delete(workflow)  # a repeat after a lost reply
    assert (again.removed, again.steps, again.cancelled) == (False, 0, 0)
    sender = RecordingSender(clock)
    clock.set(APPOINTMENT - 2 * HOUR)
    run_worker(world.db, clock, sender)
    assert len(sender.sent) == 1  # only the other workflow's reminder


class _DeleteBeforeInsert:
    """The database, except that an action runs just before the first message insert."""

    def __init__(self, db: Any, action: Any) -> None:
        self.db, self.action = db, action

    def __getitem__(self, name: str) -> Any:
        return self if name == "scheduledMessages" else self.db[name]

    def insert_many(self, *args: Any, **kwargs: Any) -> Any:
        action, self.action = self.action, None
        if action is not None:
            action()  # the deletion runs whole between the enroll's reads and its write
        return self.db.scheduledMessages.insert_many(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db.scheduledMessages, name)


def test_an_enroll_racing_the_workflows_deletion_leaves_nothing_pending(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    racing = _DeleteBeforeInsert(world.db, lambda: world.workflows.delete(workflow))
    enrollment = nsn_store.Workflows(racing, world.tenant, clock=clock).enroll(
        workflow, world.contact, APPOINTMENT
    )
    assert enrollment.messages == ()
    assert {m["status"] for m in world.messages()} == {"cancelled"}
    sender = RecordingSender(clock)
    clock.set(APPOINTMENT - 2 * HOUR)
    run_worker(world.db, clock, sender)
    assert sender.sent == []


def test_an_enroll_racing_a_step_removal_cancels_that_steps_message(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    first, second = world.workflows.steps(workflow)
    racing = _DeleteBeforeInsert(
        world.db, lambda: world.workflows.remove_step(workflow, first["_id"])
    )
    enrollment = nsn_store.Workflows(racing, world.tenant, clock=world.clock).enroll(
        workflow, world.contact, APPOINTMENT
    )
    assert [m["workflowStepId"] for m in enrollment.messages] == [second["_id"]]
    assert [m["status"] for m in world.messages()] == ["cancelled", "scheduled"]


def test_removing_a_step_cancels_its_pending_messages_only(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    _enroll(world, workflow)
    first, second = world.workflows.steps(workflow)
    removal = world.workflows.remove_step(workflow, first["_id"])
    assert (removal.removed, removal.steps, removal.cancelled) == (True, 1, 1)
    assert [s["_id"] for s in world.workflows.steps(workflow)] == [second["_id"]]
    assert [m["status"] for m in world.messages()] == ["cancelled", "scheduled"]


def test_an_opted_out_contact_is_not_enrolled(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    world.contacts.opt_out(world.contact)
    enrollment = _enroll(world, workflow)
    assert enrollment.messages == ()
    assert [s.reason for s in enrollment.skipped] == ["opted_out", "opted_out"]
    assert world.messages() == []


def test_inbound_stop_cancels_pending_messages_and_the_worker_never_sends_them(
    world: Clinic, clock: ManualClock
) -> None:
    workflow = world.reminders(BEFORE_24H, BEFORE_2H)
    _enroll(world, workflow)
    result = nsn_store.Inbound(world.db, clock=clock).receive(
        "sms", PATIENT_E164, world.number, "Stop", provider_message_id="SMin1"
    )
    assert (result.action, result.keyword, result.cancelled) == ("opted_out", "STOP", 2)
    assert result.contact_ids == (world.contact,)
    assert {m["status"] for m in world.messages()} == {"cancelled"}
    assert world.contacts.get(world.contact)["optedOut"] is True
    sender = RecordingSender(clock)
    for moment in (APPOINTMENT - DAY, APPOINTMENT - 2 * HOUR, APPOINTMENT + DAY):
        clock.set(moment)
        run_worker(world.db, clock, sender)
    assert sender.sent == []
    assert world.db.messageEvents.count_documents({"eventType": "opted_out"}) == 1


def test_a_message_the_worker_claims_after_an_opt_out_is_cancelled_not_sent(
    world: Clinic, clock: ManualClock
) -> None:
    # An opt-out recorded straight in the contact (as an old client would) still stops
    # the send: the worker checks optedOut for every claimed message.
    workflow = world.reminders(BEFORE_2H)
    _enroll(world, workflow)
    world.db.contacts.update_one({"_id": world.contact}, {"$set": {"optedOut": True}})
    clock.set(APPOINTMENT - 2 * HOUR)
    sender = RecordingSender(clock)
    report = run_worker(world.db, clock, sender)
    assert sender.sent == [] and report.outcomes["cancelled"] == 1


def test_enroll_refuses_a_missing_workflow_or_contact(world: Clinic) -> None:
    workflow = world.reminders(BEFORE_24H)
    with pytest.raises(NotFoundError, match="workflow"):
        world.workflows.enroll(world.contact, world.contact, APPOINTMENT)
    with pytest.raises(NotFoundError, match="contact"):
        world.workflows.enroll(workflow, workflow, APPOINTMENT)
    assert world.messages() == []


async def test_the_async_twin_enrolls_reschedules_and_unenrolls(
    async_db: Any, clock: ManualClock
) -> None:
    from _support import init_schema_async

    await init_schema_async(async_db)
    tenant = (await nsn_store.AsyncTenants(async_db, clock=clock).get_or_create("org_a"))["_id"]
    contact = await nsn_store.AsyncContacts(async_db, tenant, clock=clock).create(
        first_name="Ada", phone=PATIENT_E164
    )
    saved = await nsn_store.AsyncTemplates(async_db, tenant, clock=clock).create(
        "Reminder", "sms", "Hi {{firstName}}"
    )
    workflows = nsn_store.AsyncWorkflows(async_db, tenant, clock=clock)
    workflow = (await workflows.create("Reminders"))["_id"]
    for offset in (BEFORE_24H, BEFORE_2H):
        await workflows.add_step(
            workflow, channel="sms", template_id=saved.template["_id"], anchor_offset_seconds=offset
        )
    enrollment = await workflows.enroll(workflow, contact["_id"], APPOINTMENT)
    assert [m["sendAt"] for m in enrollment.messages] == [APPOINTMENT - DAY, APPOINTMENT - 2 * HOUR]
    assert workflows.round_trips == 7 + 1 + 2 * 4  # enroll, create, two add_steps
    later = APPOINTMENT + DAY
    moved = await workflows.reschedule(workflow, contact["_id"], APPOINTMENT, later)
    assert [m["sendAt"] for m in moved.messages] == [later - DAY, later - 2 * HOUR]
    assert await workflows.unenroll(workflow, contact["_id"], later) == 2
    assert [s["order"] for s in await workflows.steps(workflow)] == [0, 1]
