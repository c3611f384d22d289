"""The parsed form of a ``$jsonSchema``: one :class:`SchemaNode` per (sub)schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nsn_store.jsonschema._bsontypes import NUMERIC_ALIASES

__all__ = ["FAMILY", "KEYWORDS", "UNSUPPORTED", "SchemaNode"]

#: The 31 keywords a MongoDB ``$jsonSchema`` accepts (``encrypt``/``encryptMetadata`` included).
KEYWORDS: frozenset[str] = frozenset(
    {
        "additionalItems", "additionalProperties", "allOf", "anyOf", "bsonType",
        "dependencies", "description", "enum", "exclusiveMaximum", "exclusiveMinimum",
        "items", "maxItems", "maxLength", "maxProperties", "maximum", "minItems",
        "minLength", "minProperties", "minimum", "multipleOf", "not", "oneOf",
        "pattern", "patternProperties", "properties", "required", "title", "type",
        "uniqueItems", "encrypt", "encryptMetadata",
    }
)  # fmt: skip
UNSUPPORTED: frozenset[str] = frozenset(
    {"$ref", "$schema", "default", "definitions", "format", "id"}
)

#: Which family of values each single stated type belongs to (for dropped keywords).
FAMILY = {alias: "number" for alias in NUMERIC_ALIASES} | {
    "string": "string", "array": "array", "object": "object"
}  # fmt: skip


@dataclass
class SchemaNode:
    """One parsed (sub)schema; ``root`` is True for the document-level schema."""

    raw: Mapping[str, Any]
    root: bool
    type_keyword: str | None = None
    types: frozenset[str] | None = None  # BSON aliases, ``number`` expanded
    dropped: frozenset[str] = frozenset()  # keyword families a single stated type disables
    pattern: re.Pattern[str] | None = None
    max_length: int | None = None
    min_length: int | None = None
    multiple_of: Decimal | None = None
    maximum: Any = None
    minimum: Any = None
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    items: SchemaNode | list[SchemaNode] | None = None
    additional_items: bool | SchemaNode | None = None
    properties: dict[str, SchemaNode] | None = None
    pattern_properties: list[tuple[str, re.Pattern[str], SchemaNode]] = field(default_factory=list)
    additional_properties: bool | SchemaNode | None = None
    required: tuple[str, ...] = ()
    min_properties: int | None = None
    max_properties: int | None = None
    dependencies: list[tuple[str, list[str] | SchemaNode]] = field(default_factory=list)
    all_of: list[SchemaNode] | None = None
    any_of: list[SchemaNode] | None = None
    one_of: list[SchemaNode] | None = None
    not_: SchemaNode | None = None
    enum: list[Any] | None = None
    enum_strings: frozenset[str] | None = None  # the string members, when all are plain str
    encrypted: bool = False

    @property
    def has_allowed_properties(self) -> bool:
        """Tell whether ``additionalProperties``/``patternProperties`` are in force."""
        return "additionalProperties" in self.raw or "patternProperties" in self.raw

    @property
    def always_false(self) -> bool:
        """A root schema whose type excludes objects matches no stored document."""
        return self.root and self.types is not None and "object" not in self.types
