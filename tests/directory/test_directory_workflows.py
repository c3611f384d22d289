"""Templates validated at save time; workflows and their ordered steps (CRUD)."""

from __future__ import annotations

from typing import Any

import pytest
from _directory_world import Clinic, clinic, snapshot
from _support import assert_async_twin, init_schema_async

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.errors import InvalidArgumentError, InvalidTransitionError, NotFoundError


@pytest.fixture
def world(db: Any, clock: ManualClock) -> Clinic:
    return clinic(db, clock)


# --- templates ------------------------------------------------------------------


def test_saving_an_sms_template_reports_its_placeholders_and_segments(world: Clinic) -> None:
    saved = world.templates.create("Long", "sms", "Hi {{ firstName }}, " + "x" * 150)
    assert saved.info.placeholders == ("firstName",)
    assert (saved.info.sms.encoding, saved.info.sms.segments) == ("GSM-7", 2)
    unicode = world.templates.create("Emoji", "sms", "See you soon 🙂 {{time}}")
    assert unicode.info.sms is not None and unicode.info.sms.encoding == "UCS-2"
    assert world.templates.get(saved.template["_id"])["body"].startswith("Hi {{ firstName }}")


def test_an_email_template_needs_a_subject_and_an_sms_one_has_none(world: Clinic) -> None:
    before = snapshot(world.db)
    with pytest.raises(InvalidArgumentError) as refused:
        world.templates.create("Mail", "email", "Hello")
    assert refused.value.argument == "subject"
    with pytest.raises(InvalidArgumentError, match="only email"):
        world.templates.create("Text", "sms", "Hello", subject="Hi")
    assert snapshot(world.db) == before
    saved = world.templates.create(
        "Mail", "email", "Hello {{firstName}}", subject="Your {{day}} visit"
    )
    assert (saved.info.subject_placeholders, saved.info.sms) == (("day",), None)


@pytest.mark.parametrize(
    ("body", "subject", "argument"),
    [
        ("Hi {{ first name }}", "Visit", "body"),
        ("Hi {{firstName}", "Visit", "body"),
        ("Hi }}", "Visit", "body"),
        ("Hi", "Your {{ 1st }} visit", "subject"),
    ],
    ids=["space-in-name", "unclosed", "stray-close", "bad-subject"],
)
def test_a_template_whose_placeholders_do_not_parse_is_refused_before_any_write(
    world: Clinic, body: str, subject: str, argument: str
) -> None:
    before = snapshot(world.db)
    with pytest.raises(InvalidArgumentError) as refused:
        world.templates.create("Bad", "email", body, subject=subject)
    assert refused.value.argument == argument
    assert "character" in str(refused.value)
    assert snapshot(world.db) == before


def test_update_checks_the_new_text_and_keeps_the_rest(world: Clinic) -> None:
    saved = world.templates.update(world.template, body="See you at {{time}}, {{firstName}}")
    assert saved.info.placeholders == ("time", "firstName")
    assert saved.template["name"] == "Reminder"
    with pytest.raises(InvalidArgumentError):
        world.templates.update(world.template, body="{{oops")
    assert world.templates.get(world.template)["body"] == "See you at {{time}}, {{firstName}}"


def test_templates_are_listed_by_channel(world: Clinic) -> None:
    world.templates.create("Mail", "email", "Hello", subject="Hi")
    assert [t["channel"] for t in world.templates.list(channel="email")] == ["email"]
    assert len(world.templates.list()) == 2


def test_a_template_a_step_renders_cannot_be_deleted(world: Clinic) -> None:
    workflow = world.reminders(-3600)
    with pytest.raises(InvalidTransitionError, match="remove the step"):
        world.templates.delete(world.template)
    [step] = world.workflows.steps(workflow)
    world.workflows.remove_step(workflow, step["_id"])
    assert world.templates.delete(world.template) is True
    assert world.templates.delete(world.template) is False  # gone: a repeat is harmless


# --- workflows and steps ----------------------------------------------------------


def test_workflow_crud(world: Clinic) -> None:
    workflows = world.workflows
    created = workflows.create("Reminders", description="24 h and 2 h before")
    assert workflows.get(created["_id"]) == created
    renamed = workflows.update(created["_id"], name="Visit reminders", description=None)
    assert renamed["name"] == "Visit reminders" and "description" not in renamed
    assert [w["_id"] for w in workflows.list()] == [created["_id"]]
    assert workflows.delete(created["_id"]).removed is True
    with pytest.raises(NotFoundError):
        workflows.get(created["_id"])


def test_steps_come_back_in_order_whatever_order_they_were_added_in(world: Clinic) -> None:
    workflows = world.workflows
    workflow = workflows.create("Reminders")["_id"]
    add = {"channel": "sms", "template_id": world.template}
    workflows.add_step(workflow, order=5, anchor_offset_seconds=-7200, **add)
    workflows.add_step(workflow, order=1, anchor_offset_seconds=-86400, **add)
    last = workflows.add_step(workflow, **add)  # after the last: order 6
    assert [s["order"] for s in workflows.steps(workflow)] == [1, 5, 6]
    assert (last["delaySeconds"], "anchorOffsetSeconds" in last) == (0, False)
    with pytest.raises(InvalidArgumentError, match="order 5 is taken"):
        workflows.add_step(workflow, order=5, **add)


def test_a_step_needs_a_template_of_its_channel(world: Clinic) -> None:
    workflow = world.workflows.create("Reminders")["_id"]
    with pytest.raises(InvalidArgumentError, match="is for sms"):
        world.workflows.add_step(workflow, channel="email", template_id=world.template)
    with pytest.raises(NotFoundError, match="template"):
        world.workflows.add_step(workflow, channel="sms", template_id="f" * 24)
    with pytest.raises(NotFoundError, match="workflow"):
        world.workflows.add_step("f" * 24, channel="sms", template_id=world.template)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"delay_seconds": 60, "anchor_offset_seconds": -60}, "delay_seconds"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"anchor_offset_seconds": -31_622_401}, "anchor_offset_seconds"),
        ({"anchor_offset_seconds": 1.5}, "anchor_offset_seconds"),
        ({"anchor_offset_seconds": True}, "anchor_offset_seconds"),
        ({"order": -1}, "order"),
        ({"use_ai": "yes"}, "use_ai"),
        ({"channel": "fax"}, "channel"),
    ],
    ids=["both", "negative-delay", "offset-too-far", "float", "bool", "order", "use-ai", "channel"],
)
def test_bad_step_options_are_refused_before_any_io(
    world: Clinic, options: dict[str, Any], argument: str
) -> None:
    workflows = world.workflows
    workflow = workflows.create("Reminders")["_id"]
    trips = workflows.round_trips
    kwargs = {"channel": "sms", "template_id": world.template, **options}
    with pytest.raises(InvalidArgumentError) as refused:
        workflows.add_step(workflow, **kwargs)
    assert refused.value.argument == argument
    assert workflows.round_trips == trips


def test_the_async_twins_have_the_same_surface() -> None:
    assert_async_twin(nsn_store.Workflows, nsn_store.AsyncWorkflows)
    assert_async_twin(nsn_store.Templates, nsn_store.AsyncTemplates)


async def test_the_async_twins_save_templates_and_delete_a_workflow(
    async_db: Any, clock: ManualClock
) -> None:
    await init_schema_async(async_db)
    tenant = (await nsn_store.AsyncTenants(async_db, clock=clock).get_or_create("org_a"))["_id"]
    templates = nsn_store.AsyncTemplates(async_db, tenant, clock=clock)
    saved = await templates.create("Reminder", "sms", "Hi {{firstName}}")
    workflows = nsn_store.AsyncWorkflows(async_db, tenant, clock=clock)
    workflow = (await workflows.create("Reminders"))["_id"]
    await workflows.add_step(workflow, channel="sms", template_id=saved.template["_id"])
    removal = await workflows.delete(workflow)
    assert (removal.removed, removal.steps) == (True, 1)
    assert await templates.delete(saved.template["_id"]) is True
