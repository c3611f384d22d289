"""Find existing documents that a validator would reject, before it is applied.

The server does the counting: ``{"$nor": [validator]}`` selects exactly the
documents that fail a query-style validator (a real server and the embedded
database both evaluate ``$jsonSchema`` in filters). Only a small sample is
fetched and explained with the pure ``$jsonSchema`` engine, so checking a large
collection costs one count and one small find, never a full download.

The checks are flows (:func:`violations_flow`, :func:`check_data_flow`), so a
migration's own flow runs the check before a collMod, on a sync or an async
database alike; :func:`find_violations` and :func:`check_data` run them on a
sync database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from nsn_store._flow import Flow, Op, run
from nsn_store.errors import InvalidArgumentError
from nsn_store.schema._registry import SCHEMA, CollectionSpec, Schema

logger = logging.getLogger(__name__)

#: The most failing documents explained per collection (each is fetched and explained).
MAX_SAMPLE = 1_000


@dataclass(frozen=True)
class Sample:
    """One failing document: its ``_id``, the failing rules and the full details."""

    id: Any
    rules: list[str]
    details: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": _plain(self.id), "rules": self.rules, "details": _plain(self.details)}


@dataclass(frozen=True)
class Violations:
    """How many documents of a collection fail a validator, with a few explained."""

    collection: str
    count: int
    samples: list[Sample] = field(default_factory=list)
    exists: bool = True

    @property
    def clean(self) -> bool:
        return self.count == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "exists": self.exists,
            "failing": self.count,
            "samples": [sample.to_dict() for sample in self.samples],
        }


@dataclass(frozen=True)
class CheckReport:
    """Violations per collection, in schema order."""

    results: list[Violations]

    @property
    def failing(self) -> int:
        return sum(result.count for result in self.results)

    @property
    def clean(self) -> bool:
        return self.failing == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "failing": self.failing,
            "collections": [result.to_dict() for result in self.results],
        }


def violation_filter(validator: Mapping[str, Any]) -> dict[str, Any]:
    """Return the filter matching documents that fail ``validator`` (pure)."""
    return {"$nor": [dict(validator)]}


def violations_flow(
    name: str, validator: Mapping[str, Any], *, sample: int = 5
) -> Flow[Violations]:
    """Count the documents of collection ``name`` failing ``validator``; explain a sample.

    ``sample`` (0 to :data:`MAX_SAMPLE`) is how many failing documents to fetch and
    explain; 0 only counts. Arguments are checked now, before the flow runs.
    """
    sample = check_sample(sample)
    if not isinstance(validator, Mapping):
        raise InvalidArgumentError(
            f"validator must be a mapping, not a value of type {type(validator).__name__}",
            argument="validator",
        )
    return _violations(name, validator, sample)


def _violations(name: str, validator: Mapping[str, Any], sample: int) -> Flow[Violations]:
    query = violation_filter(validator)
    count: int = yield Op("count_documents", name, (query,))
    # A limit of 0 would mean "no limit": fetch nothing when no sample is wanted.
    wanted = min(count, sample)
    documents: list[Mapping[str, Any]] = []
    if wanted:
        documents = yield Op("find", name, (query,), {"sort": [("_id", 1)], "limit": wanted})
    samples = _explain(validator, documents) if documents else []
    if count:
        logger.info("%s: %d document(s) fail the validator", name, count)
    return Violations(name, count, samples)


def find_violations(
    collection: Collection[Any], validator: Mapping[str, Any], *, sample: int = 5
) -> Violations:
    """Count the documents of ``collection`` failing ``validator`` and explain a sample.

    ``sample`` is as for :func:`violations_flow`.
    """
    flow = violations_flow(collection.name, validator, sample=sample)
    return run(collection.database, flow)


def check_data_flow(
    *, schema: Schema = SCHEMA, sample: int = 5, collections: Iterable[str] | None = None
) -> Flow[CheckReport]:
    """Report, per collection of ``schema``, the existing documents its validator rejects.

    Arguments as for :func:`check_data`, checked now, before the flow runs.
    """
    sample = check_sample(sample)
    if not isinstance(schema, Schema):
        raise InvalidArgumentError(
            f"schema must be a Schema, not a value of type {type(schema).__name__}",
            argument="schema",
        )
    return _check_data(_select(schema, collections), sample)


def _check_data(specs: list[CollectionSpec], sample: int) -> Flow[CheckReport]:
    existing = set((yield Op("list_collection_names")))
    results = []
    for spec in specs:
        if spec.name not in existing:
            results.append(Violations(spec.name, 0, exists=False))
            continue
        results.append((yield from _violations(spec.name, spec.validator, sample)))
    return CheckReport(results)


def check_data(
    db: Database[Any],
    *,
    schema: Schema = SCHEMA,
    sample: int = 5,
    collections: Iterable[str] | None = None,
) -> CheckReport:
    """Report, per collection of ``schema``, the existing documents its validator rejects.

    ``collections`` limits the check to those names (an iterable of strings, not
    one string); ``sample`` is as for :func:`violations_flow`. Bad arguments raise
    :class:`~nsn_store.errors.InvalidArgumentError` naming them, before any I/O.
    """
    flow = check_data_flow(schema=schema, sample=sample, collections=collections)
    return run(db, flow)


def check_sample(value: Any) -> int:
    """Return ``value`` if it is a whole number from 0 to :data:`MAX_SAMPLE`."""
    if type(value) is int and 0 <= value <= MAX_SAMPLE:
        return value
    shown = str(value) if type(value) is int else f"a value of type {type(value).__name__}"
    raise InvalidArgumentError(
        f"sample must be a whole number from 0 to {MAX_SAMPLE}, not {shown}", argument="sample"
    )


def _select(schema: Schema, names: Iterable[str] | None) -> list[CollectionSpec]:
    if names is None:
        return list(schema)
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise InvalidArgumentError(
            "collections must be a list of collection names (or None for all), "
            f"not a value of type {type(names).__name__}",
            argument="collections",
        )
    wanted = list(names)
    if not all(isinstance(name, str) for name in wanted):
        raise InvalidArgumentError(
            "collections must hold collection names (strings)", argument="collections"
        )
    wanted = list(dict.fromkeys(wanted))
    unknown = [name for name in wanted if name not in schema.names]
    if unknown:
        raise InvalidArgumentError(
            f"unknown collection(s): {', '.join(unknown)}; "
            f"valid names are: {', '.join(schema.names)}",
            argument="collections",
        )
    return [spec for spec in schema if spec.name in wanted]


def _explain(validator: Mapping[str, Any], documents: list[Mapping[str, Any]]) -> list[Sample]:
    """Explain each document with the pure engine (the server only says "fails")."""
    from nsn_store.embedded.validator import compile_validator

    compiled = compile_validator(validator)
    samples = []
    for document in documents:
        details = compiled.explain(document)
        samples.append(Sample(document.get("_id"), failing_rules(details), details))
    return samples


def failing_rules(details: Mapping[str, Any] | None) -> list[str]:
    """Flatten ``errInfo.details`` into readable rules such as ``phone: pattern``."""
    if not details:
        return []
    rules: list[str] = []
    _walk(details, "$", rules)
    return rules


def _walk(node: Mapping[str, Any], path: str, out: list[str]) -> None:
    operator = node.get("operatorName")
    if operator == "properties":
        for prop in node.get("propertiesNotSatisfied", []):
            child = prop.get("propertyName", "?")
            child_path = child if path == "$" else f"{path}.{child}"
            for detail in prop.get("details", []):
                _walk(detail, child_path, out)
        return
    nested = node.get("schemaRulesNotSatisfied")
    if nested is None and isinstance(node.get("details"), list):
        nested = node["details"]
    if nested is not None and operator in (None, "$jsonSchema", "items", "patternProperties"):
        base = path
        if operator == "items" and "itemIndex" in node:
            base = f"{path}[{node['itemIndex']}]"
        for rule in nested:
            _walk(rule, _child_path(base, rule), out)
        return
    out.append(f"{path}: {_describe(node)}")


def _child_path(base: str, rule: Mapping[str, Any]) -> str:
    """Extend ``base`` for the wrapper entries of ``items: [...]`` and ``patternProperties``."""
    if "operatorName" in rule:
        return base
    if "itemIndex" in rule:
        return f"{base}[{rule['itemIndex']}]"
    if "propertyName" in rule:
        return rule["propertyName"] if base == "$" else f"{base}.{rule['propertyName']}"
    return base


def _describe(node: Mapping[str, Any]) -> str:
    operator = str(node.get("operatorName", "?"))
    if operator == "required":
        return f"required (missing {', '.join(node.get('missingProperties', []))})"
    if operator == "additionalProperties" and "additionalProperties" in node:
        return f"additionalProperties (unexpected {', '.join(node['additionalProperties'])})"
    return operator


def _plain(value: Any) -> Any:
    """Make ObjectIds, datetimes and bytes JSON-friendly for ``--json``."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
