"""Template placeholders, rendering and SMS segments (pure: no database)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsn_store.rendering import (
    MissingVariableError,
    TemplateSyntaxError,
    placeholders,
    render,
    sms_info,
    template_variables,
)

CONTACT = {
    "firstName": "Ada",
    "lastName": "Byron",
    "phone": "+15550100",
    "metadata": {"clinic": "North"},
}


def test_placeholders_are_listed_once_in_order_of_first_use() -> None:
    body = "Hi {{firstName}}, {{ payload.time }} at {{contact.metadata.clinic}} {{firstName}}"
    assert placeholders(body) == ["firstName", "payload.time", "contact.metadata.clinic"]


@pytest.mark.parametrize(
    ("body", "position"),
    [
        ("Hi {{ first name }}", 3),
        ("Hi {{firstName}", 3),
        ("Hi }} there", 3),
        ("{{}}", 0),
        ("{{ 1st }}", 0),
        ("ok {{a}} then {{ b.", 14),
    ],
    ids=["space-in-name", "unclosed", "stray-close", "empty", "digit-first", "stray-after-valid"],
)
def test_bad_syntax_is_refused_with_the_position(body: str, position: int) -> None:
    with pytest.raises(TemplateSyntaxError) as refused:
        placeholders(body)
    assert refused.value.position == position
    assert f"character {position}" in str(refused.value)


def test_render_uses_contact_fields_payload_and_namespaces() -> None:
    variables = template_variables(CONTACT, {"time": "10:30", "doctor": {"name": "Dr. Lee"}})
    body = "Hi {{firstName}}: {{ time }} with {{payload.doctor.name}} ({{contact.metadata.clinic}})"
    assert render(body, variables) == "Hi Ada: 10:30 with Dr. Lee (North)"


def test_a_payload_key_wins_over_a_contact_field_of_the_same_bare_name() -> None:
    variables = template_variables(CONTACT, {"firstName": "Augusta"})
    assert render("{{firstName}} / {{contact.firstName}}", variables) == "Augusta / Ada"


def test_datetimes_render_as_iso_8601() -> None:
    moment = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    assert render("at {{when}}", template_variables({}, {"when": moment})) == (
        "at 2026-01-05T09:30:00+00:00"
    )


@pytest.mark.parametrize("name", ["email", "payload.time", "contact.metadata.room", "nope"])
def test_a_missing_variable_is_named(name: str) -> None:
    with pytest.raises(MissingVariableError) as missing:
        render("x {{ " + name + " }}", template_variables(CONTACT, {}))
    assert missing.value.variable == name
    assert name in str(missing.value)


def test_text_without_placeholders_renders_unchanged() -> None:
    assert render("Reply STOP to opt out.", {}) == "Reply STOP to opt out."


@pytest.mark.parametrize(
    ("text", "encoding", "length", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),
        ("{" * 81, "GSM-7", 162, 2),
        ("é" * 160, "GSM-7", 160, 1),
        ("ç" * 70, "UCS-2", 70, 1),
        ("ç" * 71, "UCS-2", 71, 2),
        ("a" * 134 + "ç", "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),
        ("😀" * 36, "UCS-2", 72, 2),
    ],
    ids=[
        "empty",
        "gsm-160",
        "gsm-161",
        "gsm-306",
        "gsm-307",
        "euro-extension",
        "brace-extension",
        "e-acute-is-gsm",
        "ucs2-70",
        "ucs2-71",
        "one-char-switches",
        "emoji-35",
        "emoji-36",
    ],
)
def test_sms_length_and_segments_follow_gsm_03_38(
    text: str, encoding: str, length: int, segments: int
) -> None:
    info = sms_info(text)
    assert (info.encoding, info.length, info.segments) == (encoding, length, segments)


@given(st.text(max_size=400))
def test_segments_are_enough_for_the_length_and_never_one_too_many(text: str) -> None:
    info = sms_info(text)
    single, multi = (160, 153) if info.encoding == "GSM-7" else (70, 67)
    if info.length <= single:
        assert info.segments == 1
    else:
        assert (info.segments - 1) * multi < info.length <= info.segments * multi


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_every_listed_placeholder_renders_from_its_variable(values: dict[str, str]) -> None:
    body = " ".join("{{ " + key + " }}" for key in values)
    assert placeholders(body) == list(values)
    assert render(body, values) == " ".join(values.values())
