"""Message templates: placeholder syntax, rendering, and SMS length and segments.

Placeholder syntax: ``{{ name }}`` or ``{{ name.sub.field }}``; spaces inside
the braces are optional; a name starts with a letter or ``_`` and holds
letters, digits and ``_``. Nothing else is special: no logic, loops or
filters, so a template can never run code. A template whose ``{{``/``}}`` do
not form a placeholder is refused when it is saved (:func:`placeholders`).

Variables a template can use when the worker renders it (:func:`render`):

- ``contact.firstName``, ``contact.lastName``, ``contact.phone``,
  ``contact.email`` and ``contact.metadata.<key>``;
- ``payload.<key>`` (the scheduled message's ``payload``, nested keys by dots);
- ``firstName``, ``lastName`` and top-level payload keys also bare, for short
  SMS bodies: ``Hi {{firstName}}, see you at {{time}}``. A payload key wins
  over a contact field of the same bare name.

A missing variable raises :class:`MissingVariableError` naming it: a
permanent failure (sending "Hi ," to a patient is worse than not sending).
Values render with ``str``; datetimes as ISO 8601.

SMS length (:func:`sms_info`) follows the GSM 03.38 rules carriers use: text
made only of GSM-7 characters is 160 characters in one segment and 153 per
segment when concatenated (the extension characters ``^{}\\[~]|€`` count
twice); any other character switches the whole message to UCS-2: 70 in one
segment, 67 per segment (characters outside the BMP count as two).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from nsn_store.errors import NsnStoreError

__all__ = [
    "MissingVariableError",
    "SmsInfo",
    "TemplateInfo",
    "TemplateSyntaxError",
    "placeholders",
    "render",
    "sms_info",
    "template_info",
    "template_variables",
]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{\{\s*(" + _NAME + r"(?:\." + _NAME + r")*)\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")

# GSM 03.38 basic set and the extension table (each extension char costs two).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


class TemplateSyntaxError(NsnStoreError, ValueError):
    """A template's ``{{ }}`` do not form valid placeholders; ``position`` is where."""

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(message)
        self.position = position


class MissingVariableError(NsnStoreError, KeyError):
    """A placeholder names a variable the contact and payload do not have."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"the template uses {{{{ {variable} }}}}, which has no value")
        self.variable = variable

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class SmsInfo:
    """How an SMS body is encoded and how many segments carriers bill for it."""

    encoding: Literal["GSM-7", "UCS-2"]
    length: int  # in encoding units: septets for GSM-7, UTF-16 code units for UCS-2
    segments: int

    def to_dict(self) -> dict[str, Any]:
        """Return the info as JSON-ready values."""
        return {"encoding": self.encoding, "length": self.length, "segments": self.segments}


@dataclass(frozen=True)
class TemplateInfo:
    """What a template holds, found when it is saved: its variables and, for SMS, its size.

    ``sms`` measures the body as written, placeholders included: the sent text
    differs by the length of each value.
    """

    placeholders: tuple[str, ...]
    subject_placeholders: tuple[str, ...]
    sms: SmsInfo | None

    def to_dict(self) -> dict[str, Any]:
        """Return the info as JSON-ready values."""
        return {
            "placeholders": list(self.placeholders),
            "subject_placeholders": list(self.subject_placeholders),
            "sms": None if self.sms is None else self.sms.to_dict(),
        }


def template_info(channel: str, body: str, subject: str | None = None) -> TemplateInfo:
    """Parse a template's body and subject; raise :class:`TemplateSyntaxError` on bad braces."""
    return TemplateInfo(
        placeholders=tuple(placeholders(body)),
        subject_placeholders=tuple(placeholders(subject)) if subject else (),
        sms=sms_info(body) if channel == "sms" else None,
    )


def placeholders(template: str) -> list[str]:
    """Return the variables ``template`` uses, in order of first use; refuse bad syntax."""
    found: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        _refuse_stray_braces(template, position, match.start())
        if match.group(1) not in found:
            found.append(match.group(1))
        position = match.end()
    _refuse_stray_braces(template, position, len(template))
    return found


def _refuse_stray_braces(template: str, start: int, end: int) -> None:
    stray = _BRACES.search(template, start, end)
    if stray is not None:
        raise TemplateSyntaxError(
            f"'{stray.group()}' at character {stray.start()} does not form a placeholder "
            "(write {{ name }} or {{ name.field }})",
            position=stray.start(),
        )


def template_variables(
    contact: Mapping[str, Any], payload: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return the variables a message's template can use (see the module docstring)."""
    fields = {
        key: contact[key]
        for key in ("firstName", "lastName", "phone", "email")
        if contact.get(key) is not None
    }
    shown_contact = {**fields, "metadata": dict(contact.get("metadata") or {})}
    payload = dict(payload or {})
    return {**fields, **payload, "contact": shown_contact, "payload": payload}


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Return ``template`` with each placeholder replaced by its value in ``variables``."""
    placeholders(template)  # refuse bad syntax before rendering anything

    def value(match: re.Match[str]) -> str:
        return _text(_lookup(variables, match.group(1)))

    return _PLACEHOLDER.sub(value, template)


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
    current: Any = variables
    for part in path.split("."):
        if not isinstance(current, Mapping) or current.get(part) is None:
            raise MissingVariableError(path)
        current = current[part]
    return current


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def sms_info(text: str) -> SmsInfo:
    """Return the encoding, length and segment count of an SMS body."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in text):
        length = sum(2 if ch in _GSM_EXTENSION else 1 for ch in text)
        return SmsInfo("GSM-7", length, _segments(length, single=160, multi=153))
    length = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return SmsInfo("UCS-2", length, _segments(length, single=70, multi=67))


def _segments(length: int, *, single: int, multi: int) -> int:
    if length <= single:
        return 1
    return -(-length // multi)
