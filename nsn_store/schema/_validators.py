"""Generate MongoDB ``$jsonSchema`` validators from the collection models.

The validator is built from the model's field annotations, not from
pydantic's JSON Schema: that output uses draft-2020 keywords the server
refuses (``type: integer``, ``$ref``, ``$defs``, ``default``, ``anyOf`` with
``null``, ``format``). What comes out uses only MongoDB's dialect:

- ``bsonType`` aliases: ``int``/``long`` for integers, ``double``, ``date``,
  ``objectId``, ``bool``, ``string``, ``object``, ``array``;
- ``required`` for every field that is not optional (fields with a default
  are required too: :meth:`Document.to_document` always writes them);
- optional fields may be absent but are never typed ``null``, so an explicit
  null is refused, as the data model asks;
- ``additionalProperties: false`` everywhere a model is described, with
  ``_id`` listed at the top level (otherwise every document is refused).

Keys are emitted in one fixed order, so the generated files diff cleanly.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from bson import ObjectId
from pydantic import BaseModel
from pydantic.fields import FieldInfo

#: The order in which keywords appear in every generated subschema.
KEY_ORDER: tuple[str, ...] = (
    "bsonType",
    "title",
    "description",
    "enum",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "additionalProperties",
    "dependencies",
)

# Constraint attribute (annotated_types / pydantic) -> keyword, per target type.
_NUMBER_BOUNDS = {"ge": "minimum", "le": "maximum", "multiple_of": "multipleOf"}
_EXCLUSIVE_BOUNDS = {"gt": ("minimum", "exclusiveMinimum"), "lt": ("maximum", "exclusiveMaximum")}
_LENGTHS = {
    "string": {"min_length": "minLength", "max_length": "maxLength"},
    "array": {"min_length": "minItems", "max_length": "maxItems"},
}

_INTEGER = ["int", "long"]


def validator_for(model: type[BaseModel]) -> dict[str, Any]:
    """Return ``{"$jsonSchema": ...}`` for a collection model."""
    return {"$jsonSchema": _object_schema(model, root=True)}


def _object_schema(model: type[BaseModel], *, root: bool) -> dict[str, Any]:
    """Describe a model as a closed BSON object."""
    schema: dict[str, Any] = {"bsonType": "object"}
    if root:
        schema["title"] = str(getattr(model, "collection_name", "") or model.__name__)
    summary = _summary(model)
    if summary:
        schema["description"] = summary
    properties: dict[str, Any] = {}
    if root:
        properties["_id"] = _id_schema(model)
    required: list[str] = []
    for name, field in model.model_fields.items():
        annotation, optional = _strip_none(field.annotation)
        properties[name] = _field_schema(annotation, field)
        if not optional:
            required.append(name)
    if required:  # the server refuses an empty `required`
        schema["required"] = required
    schema["properties"] = properties
    schema["additionalProperties"] = False
    if root:
        schema.update(getattr(model, "validator_extra", {}) or {})
    return _ordered(schema)


def _id_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Describe ``_id``: an ObjectId unless the model names another type (a chosen key)."""
    schema = _type_schema(getattr(model, "id_type", ObjectId), [])
    schema["description"] = str(getattr(model, "id_description", "document id"))
    return _ordered(schema)


def _summary(model: type[BaseModel]) -> str:
    """Return the first line of a model's own docstring (echoed in errInfo)."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc).splitlines()[0] if doc else ""


def _field_schema(annotation: Any, field: FieldInfo) -> dict[str, Any]:
    """Describe one model field, constraints and description included."""
    schema = _type_schema(annotation, list(field.metadata))
    if field.description:
        schema["description"] = field.description
    return _ordered(schema)


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """Split ``X | None`` into ``(X, True)``; anything else into ``(it, False)``."""
    if not _is_union(annotation):
        return annotation, False
    members = [arg for arg in get_args(annotation) if arg is not type(None)]
    optional = len(members) != len(get_args(annotation))
    rest = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
    return rest, optional


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _type_schema(annotation: Any, metadata: list[Any]) -> dict[str, Any]:
    """Describe a type, then apply the constraints found in ``metadata``."""
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        return _type_schema(base, [*_expand(extra), *_expand(metadata)])
    schema = _bare_type_schema(annotation)
    _apply_constraints(schema, _expand(metadata))
    return _ordered(schema)


def _bare_type_schema(annotation: Any) -> dict[str, Any]:
    """Describe a type without constraints."""
    origin = get_origin(annotation)
    if _is_union(annotation):
        return {"bsonType": _merge_types(_type_schema(arg, []) for arg in get_args(annotation))}
    if origin is Literal:
        values = list(get_args(annotation))
        return {"bsonType": _literal_type(values), "enum": values}
    if origin is list or annotation is list:
        args = get_args(annotation)
        return {"bsonType": "array", **({"items": _type_schema(args[0], [])} if args else {})}
    if origin is dict or annotation is dict or origin is Mapping:
        return {"bsonType": "object"}  # free-form: metadata, payload, raw
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return _object_schema(annotation, root=False)
    return {"bsonType": _scalar_type(annotation)}


def _scalar_type(annotation: Any) -> str | list[str]:
    """Return the BSON alias of a scalar Python type (bool before int: bool is not a number)."""
    scalars: list[tuple[type, str | list[str]]] = [
        (bool, "bool"),
        (int, list(_INTEGER)),
        (float, "double"),
        (str, "string"),
        (datetime, "date"),
        (ObjectId, "objectId"),
    ]
    for python_type, alias in scalars:
        if annotation is python_type or (
            inspect.isclass(annotation) and issubclass(annotation, python_type)
        ):
            return alias
    raise TypeError(f"no BSON type for annotation {annotation!r}")


def _literal_type(values: list[Any]) -> str | list[str]:
    aliases = [_scalar_type(type(value)) for value in values]
    return _merge_types({"bsonType": alias} for alias in aliases)


def _merge_types(schemas: Iterable[dict[str, Any]]) -> str | list[str]:
    """Union the ``bsonType`` of several schemas, keeping first-seen order."""
    merged: list[str] = []
    for schema in schemas:
        if set(schema) != {"bsonType"}:
            raise TypeError(f"cannot express a union member with constraints: {schema}")
        alias = schema["bsonType"]
        for name in [alias] if isinstance(alias, str) else alias:
            if name not in merged:
                merged.append(name)
    return merged[0] if len(merged) == 1 else merged


def _expand(metadata: Iterable[Any]) -> list[Any]:
    """Flatten nested ``Field(...)`` infos into their constraint objects."""
    flat: list[Any] = []
    for item in metadata:
        flat.extend(_expand(item.metadata) if isinstance(item, FieldInfo) else [item])
    return flat


def _apply_constraints(schema: dict[str, Any], metadata: list[Any]) -> None:
    """Translate annotated-types / pydantic constraints into MongoDB keywords."""
    kind = schema.get("bsonType")
    for item in metadata:
        for attr, keyword in _NUMBER_BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                schema[keyword] = value
        for attr, (keyword, flag) in _EXCLUSIVE_BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                schema[keyword], schema[flag] = value, True
        for attr, keyword in _LENGTHS.get(kind if isinstance(kind, str) else "", {}).items():
            value = getattr(item, attr, None)
            if value is not None:
                schema[keyword] = value
        pattern = getattr(item, "pattern", None)
        if pattern is not None:
            schema["pattern"] = pattern.pattern if isinstance(pattern, re.Pattern) else pattern


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with its keys in :data:`KEY_ORDER` (others after, as given)."""
    rank = {key: index for index, key in enumerate(KEY_ORDER)}
    return dict(sorted(schema.items(), key=lambda item: rank.get(item[0], len(rank))))
