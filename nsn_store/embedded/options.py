"""Collection options as a server checks and stores them (``create`` and ``collMod``).

Values are validated as the server does (wrong types give TypeMismatch, unknown
enumeration values BadValue) and the validator is compiled at the moment it is
set, so a malformed ``$jsonSchema`` fails ``create_collection``/``collMod``
with the server's parse error rather than on the first write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import OperationFailure

from nsn_store.embedded.store import CollectionOptions

BAD_VALUE = 2
TYPE_MISMATCH = 14

LEVELS = ("off", "strict", "moderate")
ACTIONS = ("error", "warn", "errorAndLog")
VALIDATION_FIELDS = ("validator", "validationLevel", "validationAction")

# Options a server accepts that the embedded database cannot honour: refusing
# them is better than silently creating a collection that behaves differently.
UNSUPPORTED_CREATE = (
    "capped",
    "size",
    "max",
    "timeseries",
    "expireAfterSeconds",
    "clusteredIndex",
    "viewOn",
    "pipeline",
    "collation",
    "changeStreamPreAndPostImages",
    "encryptedFields",
    "storageEngine",
    "indexOptionDefaults",
)


def fail(message: str, code: int, code_name: str) -> OperationFailure:
    """Return an OperationFailure shaped like a server reply."""
    details = {"ok": 0.0, "errmsg": message, "code": code, "codeName": code_name}
    return OperationFailure(message, code, details)


def build(command: str, requested: Mapping[str, Any]) -> CollectionOptions:
    """Return new options for ``create`` from its validation fields."""
    options = CollectionOptions()
    apply_validation(options, command, requested, from_collmod=False)
    return options


def check_create_fields(fields: Mapping[str, Any]) -> None:
    """Refuse ``create`` options the embedded database does not implement."""
    for name in fields:
        if name in UNSUPPORTED_CREATE:
            raise NotImplementedError(
                f"create_collection option {name!r} is valid on a server but not "
                "supported by the nsn-store embedded database"
            )
        if name not in VALIDATION_FIELDS:
            raise fail(f"BSON field 'create.{name}' is an unknown field.", 40415, "Location40415")


def apply_validation(
    options: CollectionOptions, command: str, requested: Mapping[str, Any], *, from_collmod: bool
) -> None:
    """Validate the validation fields of ``requested`` and store them in ``options``.

    Everything is checked before anything changes, so a rejected ``collMod``
    leaves the collection as it was.
    """
    level = _enum(command, "validationLevel", requested, LEVELS)
    action = _enum(command, "validationAction", requested, ACTIONS)
    validator = requested.get("validator")
    compiled = options.compiled
    if "validator" in requested:
        validator, compiled = _compile(command, validator)
    document = options.document
    if "validator" in requested:
        document["validator"] = validator
    if level is not None:
        document["validationLevel"] = level
    if action is not None:
        document["validationAction"] = action
    if from_collmod and (level is not None or action is not None):
        # The server stores the defaulted twin when collMod sets only one of
        # the two, so both then appear in listCollections.
        document.setdefault("validationLevel", "strict")
        document.setdefault("validationAction", "error")
    options.compiled = compiled
    _order(document)


def _order(document: dict[str, Any]) -> None:
    """Keep the server's field order: validator, validationLevel, validationAction."""
    ordered = {name: document.pop(name) for name in VALIDATION_FIELDS if name in document}
    rest = dict(document)
    document.clear()
    document.update(rest)
    document.update(ordered)


def _enum(command: str, name: str, requested: Mapping[str, Any], allowed: tuple[str, ...]) -> Any:
    if name not in requested:
        return None
    value = requested[name]
    if not isinstance(value, str):
        raise fail(
            f"BSON field '{command}.{name}' is the wrong type '{_type_name(value)}', "
            "expected type 'string'",
            TYPE_MISMATCH,
            "TypeMismatch",
        )
    if value not in allowed:
        raise fail(
            f"Enumeration value '{value}' for field '{command}.{name}' is not a valid value.",
            BAD_VALUE,
            "BadValue",
        )
    return value


def _compile(command: str, validator: Any) -> tuple[Any, Any]:
    """Return (validator as stored, compiled validator or None for "no validator")."""
    if not isinstance(validator, Mapping):
        raise fail(
            f"BSON field '{command}.validator' is the wrong type '{_type_name(validator)}', "
            "expected type 'object'",
            TYPE_MISMATCH,
            "TypeMismatch",
        )
    stored = dict(validator)
    if not stored:
        return stored, None  # an empty validator means "no validation"
    from nsn_store.embedded.validator import compile_validator

    return stored, compile_validator(stored, context="validator")


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (list, tuple)):
        return "array"
    return "null" if value is None else type(value).__name__
