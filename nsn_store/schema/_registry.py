"""The schema registry: the twelve collections of migration 0001, in plan order.

This is the one ordered declaration the rest of the package walks: ``init``
forward, ``drop`` reversed, ``status``/``verify`` diffed against the server,
``export`` rendered to ``collections/*.json``. No second list of collection
names exists anywhere.

Index keys are ordered ``(field, direction)`` pairs because MongoDB treats
``{a: 1, b: 1}`` and ``{b: 1, a: 1}`` as different indexes with different uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import BaseModel
from pymongo import IndexModel

from nsn_store.errors import ConfigurationError
from nsn_store.schema import _models as models
from nsn_store.schema._validators import validator_for

MIGRATION_ID = "0001_initial_schema"


class UnknownCollectionError(ConfigurationError, KeyError):
    """A collection name that the schema does not declare.

    A :class:`ConfigurationError` as the contract says, and a ``KeyError`` so
    ``schema["typo"]`` behaves like any mapping lookup.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class IndexSpec:
    """One declared index: a name, ordered key pairs and options."""

    name: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    expire_after_seconds: int | None = None
    partial_filter: Mapping[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        """Return the options that are set, spelled as the server reports them."""
        options: dict[str, Any] = {}
        if self.unique:
            options["unique"] = True
        if self.expire_after_seconds is not None:
            options["expireAfterSeconds"] = self.expire_after_seconds
        if self.partial_filter is not None:
            options["partialFilterExpression"] = dict(self.partial_filter)
        return options

    def document(self) -> dict[str, Any]:
        """Return the index as in ``collections/*.json``: name, ordered key, options."""
        return {"name": self.name, "key": dict(self.keys), **self.options()}

    def to_index_model(self) -> IndexModel:
        """Return the pymongo ``IndexModel`` that creates this index."""
        return IndexModel(list(self.keys), name=self.name, **self.options())


@dataclass(frozen=True)
class ShardKey:
    """How a collection scales out: its shard key (None: unsharded) and why.

    Read by :func:`nsn_store.migration.shard_plan`, which checks each key against
    the collection's unique indexes (MongoDB manual, "Shard Keys").
    """

    key: Mapping[str, int | str] | None
    reason: str


#: The default: a small collection stays on the database's primary shard.
UNSHARDED = ShardKey(None, "not in the scale-out plan")

#: Per-tenant routing for a collection whose unique index pins the key to ``tenantId``.
TENANT_RANGED: Mapping[str, int | str] = {"tenantId": 1}

#: Per-tenant routing plus an even spread of one large tenant over many chunks.
TENANT_HASHED_ID: Mapping[str, int | str] = {"tenantId": 1, "_id": "hashed"}


@dataclass(frozen=True)
class CollectionSpec:
    """One collection: its model, indexes, the validator generated from the model, its shard key."""

    name: str
    model: type[BaseModel]
    indexes: tuple[IndexSpec, ...]
    validator: dict[str, Any] = field(repr=False)
    validation_level: str = "strict"
    validation_action: str = "error"
    shard_key: ShardKey = UNSHARDED

    def create_options(self) -> dict[str, Any]:
        """Return the ``create``/``collMod`` options that carry the validator."""
        return {
            "validator": self.validator,
            "validationLevel": self.validation_level,
            "validationAction": self.validation_action,
        }

    def index(self, name: str) -> IndexSpec:
        """Return the declared index called ``name``."""
        for spec in self.indexes:
            if spec.name == name:
                return spec
        raise ConfigurationError(f"collection {self.name!r} declares no index {name!r}")


class Schema(Sequence[CollectionSpec]):
    """The ordered collection specs; index by position or by collection name."""

    def __init__(self, specs: Iterable[CollectionSpec]) -> None:
        self._specs = tuple(specs)
        self.names: tuple[str, ...] = tuple(spec.name for spec in self._specs)
        if len(set(self.names)) != len(self.names):
            raise ConfigurationError(f"duplicate collection names in schema: {self.names}")

    @overload
    def __getitem__(self, key: int | str) -> CollectionSpec: ...

    @overload
    def __getitem__(self, key: slice) -> Sequence[CollectionSpec]: ...

    def __getitem__(self, key: int | str | slice) -> CollectionSpec | Sequence[CollectionSpec]:
        if isinstance(key, str):
            return self.get(key)
        return self._specs[key]

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[CollectionSpec]:
        return iter(self._specs)

    def __contains__(self, item: object) -> bool:
        return item in self.names if isinstance(item, str) else item in self._specs

    def __repr__(self) -> str:
        return f"Schema({', '.join(self.names)})"

    def get(self, name: str) -> CollectionSpec:
        """Return the spec of collection ``name``; ConfigurationError if undeclared."""
        for spec in self._specs:
            if spec.name == name:
                return spec
        raise UnknownCollectionError(
            f"unknown collection {name!r}; the schema declares: {', '.join(self.names)}"
        )


def spec_document(spec: CollectionSpec) -> dict[str, Any]:
    """Return the canonical description of a spec (what ``checksum`` hashes)."""
    return {
        "collection": spec.name,
        "validator": spec.validator,
        "validationLevel": spec.validation_level,
        "validationAction": spec.validation_action,
        # pairs, not a dict: the canonical JSON sorts dict keys, and key order matters.
        "indexes": [
            {"name": index.name, "keys": [list(pair) for pair in index.keys], **index.options()}
            for index in spec.indexes
        ],
    }


def _index(name: str, *fields: str, **options: Any) -> IndexSpec:
    """Declare an ascending index on ``fields`` (every index of 0001 is ascending)."""
    return IndexSpec(name, tuple((f, 1) for f in fields), **options)


def _collection(
    model: type[models.Document], *indexes: IndexSpec, shard: ShardKey = UNSHARDED
) -> CollectionSpec:
    return CollectionSpec(
        model.collection_name, model, indexes, validator_for(model), shard_key=shard
    )


SCHEMA = Schema(
    [
        _collection(
            models.Tenant,
            _index("by_clerkOrgId", "clerkOrgId", unique=True),
            shard=ShardKey(
                None,
                "one small document per tenant; unique clerkOrgId is global",
            ),
        ),
        _collection(
            models.User,
            _index("by_tenantId", "tenantId"),
            _index("by_clerkUserId", "clerkUserId", unique=True),
            shard=ShardKey(
                None,
                "small; unique clerkUserId is global, so a tenant prefix would break it",
            ),
        ),
        _collection(
            models.Contact,
            _index("by_tenantId", "tenantId"),
            _index("by_phone", "tenantId", "phone"),
            _index("by_email", "tenantId", "email"),
            shard=ShardKey(
                TENANT_HASHED_ID,
                (
                    "large and no unique index: tenantId targets every per-tenant lookup, "
                    "the hashed _id spreads a big tenant's contacts (and bulk imports) over chunks"
                ),
            ),
        ),
        _collection(
            models.Workflow,
            _index("by_tenantId", "tenantId"),
            shard=ShardKey(
                None,
                "a handful per tenant",
            ),
        ),
        _collection(
            models.WorkflowStep,
            _index("by_workflowId", "workflowId", "order"),
            _index("by_tenantId", "tenantId"),
            shard=ShardKey(
                None,
                "a handful per workflow",
            ),
        ),
        _collection(
            models.Template,
            _index("by_tenantId", "tenantId"),
            _index("by_channel", "tenantId", "channel"),
            shard=ShardKey(
                None,
                "a handful per tenant",
            ),
        ),
        _collection(
            models.ScheduledMessage,
            _index("by_tenantId", "tenantId", "status", "sendAt"),
            # ESR: equality on status, then sendAt serves both the range and the sort
            # of the due scan (status=scheduled, sendAt<=now, oldest first).
            _index("by_sendAt", "status", "sendAt"),
            # Expired leases: status=processing and lockedUntil<=now.
            _index("by_status", "status", "lockedUntil"),
            _index("by_contactId", "tenantId", "contactId", "sendAt"),
            # Addition: schedule(idempotency_key=...) dedups per tenant; partial so
            # messages without a key never collide.
            _index(
                "by_tenant_idempotencyKey",
                "tenantId",
                "idempotencyKey",
                unique=True,
                partial_filter={"idempotencyKey": {"$exists": True}},
            ),
            # Addition: backlog's "failed in the last day" (status=failed, updatedAt>=t).
            _index("by_status_updatedAt", "status", "updatedAt"),
            shard=ShardKey(
                TENANT_RANGED,
                (
                    "the unique {tenantId, idempotencyKey} index only allows a key that is a "
                    "prefix of it; ranged tenantId keeps tenants splittable at tenant "
                    "boundaries and allows per-tenant zones; the cross-tenant due scan is a "
                    "broadcast that each shard serves from its own by_sendAt index"
                ),
            ),
        ),
        _collection(
            models.MessageEvent,
            _index("by_scheduledMessageId", "tenantId", "scheduledMessageId", "createdAt"),
            _index("by_tenantId", "tenantId", "createdAt"),
            _index("by_eventType", "tenantId", "eventType", "createdAt"),
            # Addition: a webhook delivered twice records one event.
            _index(
                "by_provider_message_event",
                "tenantId",
                "provider",
                "providerMessageId",
                "eventType",
                unique=True,
                partial_filter={"providerMessageId": {"$exists": True}},
            ),
            shard=ShardKey(
                TENANT_RANGED,
                (
                    "append-only and the largest; the unique {tenantId, provider, "
                    "providerMessageId, eventType} webhook index only allows a tenantId "
                    "prefix; every read (timeline, rollups) is per tenant"
                ),
            ),
        ),
        _collection(
            models.AIPreview,
            _index("by_tenantId", "tenantId"),
            _index("by_expiresAt", "expiresAt", expire_after_seconds=0),
            shard=ShardKey(
                None,
                (
                    "the TTL index bounds it to the previews alive right now; shard with "
                    "{tenantId: 1, _id: 'hashed'} if streaming writes ever outgrow one shard"
                ),
            ),
        ),
        _collection(
            models.RagDocument,
            _index("by_tenantId", "tenantId"),
            shard=ShardKey(
                TENANT_HASHED_ID,
                (
                    "large (text and embeddings), no unique index, read per tenant: tenant "
                    "targeting plus an even spread inside big knowledge bases"
                ),
            ),
        ),
        _collection(
            models.Counter,
            _index("by_tenant_metric_shard", "tenantId", "metric", "shard", unique=True),
            shard=ShardKey(
                {"tenantId": 1, "metric": 1},
                (
                    "bumped on every message transition, so its writes must spread like the "
                    "messages'; a prefix of the unique {tenantId, metric, shard} index, and "
                    "count() reads one contiguous range"
                ),
            ),
        ),
        _collection(
            models.Aggregate,
            _index("by_tenant_date_metric", "tenantId", "date", "metric", "period", unique=True),
            _index("by_tenant_period", "tenantId", "period", "date"),
            shard=ShardKey(
                {"tenantId": 1, "date": 1},
                (
                    "grows by date for every tenant; a prefix of the unique {tenantId, date, "
                    "metric, period} index, series reads are one tenant's date range"
                ),
            ),
        ),
    ]
)


def checksum(schema: Schema = SCHEMA) -> str:
    """Return the sha256 hex digest of the canonical JSON of every spec, in order."""
    specs = [spec_document(spec) for spec in schema]
    canonical = json.dumps(specs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
