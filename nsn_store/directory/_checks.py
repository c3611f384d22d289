"""Check directory arguments where they enter the library, before any I/O.

Phone numbers are parsed by ``phonenumbers`` (Google's libphonenumber) and
stored in E.164 (``+14155552671``); a number it does not call valid for its
region is refused. Email addresses are trimmed and lower-cased (providers and
people treat them case-insensitively; one spelling makes the inbound lookup an
index equality). Provider configs hold a *reference* to a secret: a config
with any field beyond the four of the model, or whose ``credentialsRef`` looks
like a secret itself, is refused. Every refusal names the argument and never
echoes the value (it may be a secret or personal data).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

import phonenumbers

from nsn_store.arguments import check_document, check_duration, check_text
from nsn_store.errors import InvalidArgumentError
from nsn_store.rendering import TemplateInfo, TemplateSyntaxError, placeholders, template_info
from nsn_store.scheduler._updates import check_choice
from nsn_store.schema._models import (
    CHANNELS,
    CREDENTIALS_REF_PATTERN,
    EMAIL_PATTERN,
    PROVIDERS,
)

__all__ = [
    "KEEP",
    "MAX_OFFSET",
    "PROVIDER_FOR",
    "Keep",
    "check_body",
    "check_channel",
    "check_email",
    "check_grace",
    "check_metadata",
    "check_name",
    "check_offsets",
    "check_optional_text",
    "check_order",
    "check_phone",
    "check_provider_configs",
    "check_region",
    "check_subject",
    "check_template",
    "looks_like_secret",
]


class Keep(enum.Enum):
    """The default of an update's keyword: leave the field as it is (None removes it)."""

    KEEP = "keep"

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep.KEEP

#: A step's offset from the anchor is at most a leap year either way (migration 0002's bound).
MAX_OFFSET: Final = 31_622_400
#: The longest order number a step may take (workflows hold a handful of steps).
MAX_ORDER: Final = 10_000
#: Metadata is free-form; keep it a small part of the contact document.
METADATA_LIMIT: Final = 16 * 1024
#: The provider that serves each channel.
PROVIDER_FOR: Final = {"sms": "twilio", "email": "resend"}
_CONFIG_FIELDS: Final = frozenset({"channel", "provider", "fromAddress", "credentialsRef"})
_EMAIL = re.compile(EMAIL_PATTERN)
_CREDENTIALS_REF = re.compile(CREDENTIALS_REF_PATTERN)
#: An alphanumeric SMS sender id: up to 11 letters, digits or spaces, at least one letter.
_SENDER_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
#: An environment variable's name, what ``env:NAME`` must hold.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What secrets look like: provider key prefixes, PEM blocks, credentials in a URL,
# secret-bearing query parameters, and long runs of mixed letters and digits
# (Twilio auth tokens are 32 hex digits; API keys are long random strings).
_SECRET_MARKERS = re.compile(
    r"sk_(live|test)_|rk_(live|test)_|\bre_[A-Za-z0-9]{8,}|xox[abprs]-|AKIA[0-9A-Z]{12}"
    r"|-----BEGIN|//[^/@\s]*:[^/@\s]*@"
    r"|[?&;](token|secret|password|passwd|pwd|key|apikey|api_key|auth)=",
    re.IGNORECASE,
)
_LONG_RUN = re.compile(r"[A-Za-z0-9]{20,}")


def check_name(value: Any, argument: str = "name") -> str:
    """Return a display name: 1-200 characters."""
    return check_text(value, argument, maximum=200)


def check_optional_text(value: Any, argument: str, *, maximum: int) -> str | None:
    """Return None for None, else text of at most ``maximum`` characters (may be empty)."""
    return None if value is None else check_text(value, argument, maximum=maximum, allow_empty=True)


def check_channel(value: Any, argument: str = "channel") -> str:
    """Return ``sms`` or ``email``."""
    return check_choice(value, argument, CHANNELS)


def check_region(value: Any, argument: str = "default_region") -> str | None:
    """Return None or a region code ``phonenumbers`` knows (``US``, ``GB``, ...)."""
    if value is None:
        return None
    if not isinstance(value, str) or value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidArgumentError(
            f"{argument} must be a two-letter region code such as 'US' or 'GB'", argument=argument
        )
    return value.upper()


def check_phone(value: Any, argument: str = "phone", *, region: str | None = None) -> str:
    """Return the phone number ``value`` in E.164, or refuse it.

    Without a leading ``+`` the number is read as a national number of
    ``region`` (refused when there is none). Refused too: text that is not a
    number, and numbers libphonenumber does not hold valid for their region.
    """
    text = check_text(value, argument, maximum=64)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        hint = " (give it in +<country code> form or set default_region)" if not region else ""
        raise InvalidArgumentError(
            f"{argument} is not a phone number: {_parse_reason(exc)}{hint}", argument=argument
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidArgumentError(
            f"{argument} is not a valid phone number for its country", argument=argument
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse_reason(exc: phonenumbers.NumberParseException) -> str:
    reasons = {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no known country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "it holds no number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }
    return reasons.get(exc.error_type, "it cannot be parsed")


def check_email(value: Any, argument: str = "email") -> str:
    """Return an email address trimmed and lower-cased; refuse one without ``x@y.z`` shape."""
    text = check_text(value, argument, maximum=320).strip().lower()
    if not _EMAIL.fullmatch(text):
        raise InvalidArgumentError(f"{argument} is not an email address", argument=argument)
    return text


def check_metadata(value: Any, argument: str = "metadata") -> dict[str, Any] | None:
    """Return free-form metadata (a mapping of at most 16 KiB of BSON) or None."""
    if value is None:
        return None
    document = check_document(value, argument, maximum_bytes=METADATA_LIMIT)
    _refuse_operator_keys(document, argument)
    return document


def _refuse_operator_keys(value: Any, argument: str) -> None:
    """Refuse keys a server reads as operators or paths (``$set``, ``a.b``), at any depth."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key.startswith("$") or "." in key:
                raise InvalidArgumentError(
                    f"{argument} keys may not start with '$' or hold '.'", argument=argument
                )
            _refuse_operator_keys(item, argument)
    elif isinstance(value, list):
        for item in value:
            _refuse_operator_keys(item, argument)


def check_order(value: Any) -> int | None:
    """Return None (next after the last step) or a step position from 0 to 10,000."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_ORDER:
        raise InvalidArgumentError(
            f"order must be a whole number from 0 to {MAX_ORDER}", argument="order"
        )
    return value


def check_offsets(delay_seconds: Any, anchor_offset_seconds: Any) -> tuple[int, int | None]:
    """Return ``(delaySeconds, anchorOffsetSeconds or None)`` for a new step.

    A step is sent at ``anchor + anchorOffsetSeconds`` (signed: negative is
    before the anchor) or, without it, at ``anchor + delaySeconds`` (>= 0).
    """
    if delay_seconds is not None and anchor_offset_seconds is not None:
        raise InvalidArgumentError(
            "give delay_seconds or anchor_offset_seconds, not both", argument="delay_seconds"
        )
    offset = _seconds(anchor_offset_seconds, "anchor_offset_seconds", -MAX_OFFSET)
    return _seconds(delay_seconds, "delay_seconds", 0) or 0, offset


def _seconds(value: Any, argument: str, minimum: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not minimum <= value <= MAX_OFFSET:
        raise InvalidArgumentError(
            f"{argument} must be a whole number of seconds from {minimum} to {MAX_OFFSET}",
            argument=argument,
        )
    return value


def check_grace(value: Any) -> timedelta:
    """Return how late a step may still be scheduled (0 to 1 day; a timedelta or seconds)."""
    return check_duration(value, "grace", minimum=timedelta(0), maximum=timedelta(days=1))


def check_template(channel: str, body: Any, subject: Any) -> TemplateInfo:
    """Check a template's text before it is saved; return its placeholders and SMS size.

    The body is 1-5,000 characters; an email template needs a subject (1-998
    characters, the RFC 5322 line limit) and an SMS template has none; the
    placeholders of both must parse (:func:`nsn_store.rendering.placeholders`).
    """
    text = check_body(body)
    if channel == "email":
        if subject is None:
            raise InvalidArgumentError("an email template needs a subject", argument="subject")
        check_subject(subject)
    elif subject is not None:
        raise InvalidArgumentError("only email templates have a subject", argument="subject")
    return template_info(channel, text, subject)


def check_body(value: Any) -> str:
    """Return a template body (1-5,000 characters) whose placeholders parse."""
    return _parsed(check_text(value, "body", maximum=5000), "body")


def check_subject(value: Any) -> str:
    """Return an email subject (1-998 characters, RFC 5322's line) whose placeholders parse."""
    return _parsed(check_text(value, "subject", maximum=998), "subject")


def _parsed(text: str, argument: str) -> str:
    try:
        placeholders(text)
    except TemplateSyntaxError as exc:
        raise InvalidArgumentError(f"{argument}: {exc}", argument=argument) from None
    return text


# --- provider configs: references to secrets, never secrets -------------------


def looks_like_secret(text: str) -> bool:
    """Return whether ``text`` looks like a credential rather than a reference to one."""
    if _SECRET_MARKERS.search(text):
        return True
    return any(
        re.search(r"[0-9]", run) and re.search(r"[A-Za-z]", run) for run in _LONG_RUN.findall(text)
    )


def check_credentials_ref(value: Any, argument: str) -> str:
    """Return a ``scheme:location`` reference to a secret; refuse anything like a secret."""
    text = check_text(value, argument, maximum=500)
    refusal = (
        f"{argument} must be a reference to a secret (scheme:location, such as "
        "env:TWILIO_AUTH_TOKEN or vault://kv/twilio), not the secret"
    )
    if not _CREDENTIALS_REF.search(text) or looks_like_secret(text):
        raise InvalidArgumentError(refusal, argument=argument)
    scheme, _, location = text.partition(":")
    if scheme == "env" and not _ENV_NAME.fullmatch(location):
        raise InvalidArgumentError(refusal, argument=argument)
    return text


def check_from_address(channel: str, value: Any, argument: str) -> str:
    """Return a sender: an E.164 number or an alphanumeric sender id (sms), or an email."""
    if channel == "email":
        return check_email(value, argument)
    text = check_text(value, argument, maximum=64)
    if _SENDER_ID.fullmatch(text):
        return text
    return check_phone(text, argument)


def check_provider_config(value: Any, argument: str) -> dict[str, str]:
    """Return one provider config, checked field by field."""
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{argument} must be a mapping", argument=argument)
    if set(value) != _CONFIG_FIELDS:
        raise InvalidArgumentError(
            f"{argument} must hold exactly channel, provider, fromAddress and credentialsRef "
            "(credentials stay in a secret store; credentialsRef names where)",
            argument=argument,
        )
    channel = check_channel(value["channel"], f"{argument}.channel")
    provider = check_choice(value["provider"], f"{argument}.provider", PROVIDERS)
    if provider != PROVIDER_FOR[channel]:
        raise InvalidArgumentError(
            f"{argument}.provider must be {PROVIDER_FOR[channel]} for {channel}",
            argument=f"{argument}.provider",
        )
    return {
        "channel": channel,
        "provider": provider,
        "fromAddress": check_from_address(channel, value["fromAddress"], f"{argument}.fromAddress"),
        "credentialsRef": check_credentials_ref(
            value["credentialsRef"], f"{argument}.credentialsRef"
        ),
    }


def check_provider_configs(value: Any) -> list[dict[str, str]]:
    """Return a tenant's provider configs: at most 20, no sender address twice."""
    if isinstance(value, Mapping | str | bytes) or not hasattr(value, "__iter__"):
        raise InvalidArgumentError(
            "provider_configs must be a list of configs", argument="provider_configs"
        )
    configs = [check_provider_config(c, f"provider_configs[{i}]") for i, c in enumerate(value)]
    if len(configs) > 20:
        raise InvalidArgumentError(
            "provider_configs holds at most 20 configs", argument="provider_configs"
        )
    senders = [(c["channel"], c["fromAddress"]) for c in configs]
    if len(set(senders)) != len(senders):
        raise InvalidArgumentError(
            "provider_configs names one sender address twice", argument="provider_configs"
        )
    return configs
