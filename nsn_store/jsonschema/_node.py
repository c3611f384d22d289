"""The parsed form of a ``$jsonSchema``: one :class:`SchemaNode` per (sub)schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
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

    # What a value must be checked for (computed once, after parsing): a node
    # without a family's keywords skips that family's checks.
    @cached_property
    def checks_objects(self) -> bool:
        """Tell whether an object value has keywords to satisfy (beyond its type)."""
        return bool(
            self.properties
            or self.has_allowed_properties
            or self.required
            or self.min_properties is not None
            or self.max_properties is not None
            or self.dependencies
        )

    @cached_property
    def checks_arrays(self) -> bool:
        """Tell whether an array value has keywords to satisfy (beyond its type)."""
        return (
            self.min_items is not None
            or self.max_items is not None
            or self.unique_items
            or self.items is not None
        )

    @cached_property
    def checks_strings(self) -> bool:
        """Tell whether a string value has keywords to satisfy (beyond its type)."""
        return (
            self.pattern is not None or self.max_length is not None or self.min_length is not None
        )

    @cached_property
    def checks_numbers(self) -> bool:
        """Tell whether a number has keywords to satisfy (beyond its type)."""
        return self.multiple_of is not None or self.maximum is not None or self.minimum is not None

    @cached_property
    def checks_logic(self) -> bool:
        """Tell whether ``allOf``/``anyOf``/``oneOf``/``not``/``enum`` apply."""
        parts = (self.all_of, self.any_of, self.one_of, self.not_, self.enum)
        return any(part is not None for part in parts)

    @cached_property
    def has_allowed_properties(self) -> bool:
        """Tell whether ``additionalProperties``/``patternProperties`` are in force."""
        return "additionalProperties" in self.raw or "patternProperties" in self.raw

    @property
    def always_false(self) -> bool:
        """A root schema whose type excludes objects matches no stored document."""
        return self.root and self.types is not None and "object" not in self.types
