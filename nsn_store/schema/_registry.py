"""The schema registry: the migration chain and the collections each one declares.

:data:`MIGRATIONS` is the ordered chain (0001 creates the twelve collections of
the approved plan, in its order; 0002 adds the worker's shared state; 0003 adds
the index that finds a tenant by its inbound address); each
:class:`Migration` declares the collections it creates and the ones it revises.
:data:`SCHEMA` is the head, every collection as the newest migration leaves
it: the one ordered declaration the rest of the package walks (``init``
forward, ``drop`` reversed, ``status``/``verify`` diffed against the server,
``export`` rendered to ``collections/*.json``). No second list of collection
names exists anywhere. A migration, once released, is never edited: a change
is a new migration at the end of the chain.

Index keys are ordered ``(field, direction)`` pairs because MongoDB treats
``{a: 1, b: 1}`` and ``{b: 1, a: 1}`` as different indexes with different uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import BaseModel
from pymongo import IndexModel

from nsn_store.errors import ConfigurationError, InvalidArgumentError
from nsn_store.schema import _models as models
from nsn_store.schema._validators import validator_for

MIGRATION_ID = "0001_initial_schema"
WORKER_STATE_ID = "0002_worker_state"
INBOUND_ADDRESS_ID = "0003_inbound_address"
#: A migration id: four digits (its place in the chain), an underscore, a slug.
MIGRATION_ID_PATTERN = re.compile(r"^[0-9]{4}_[a-z0-9_]{1,60}$")
#: Targets that name no migration: before the first, and the newest.
BASE, HEAD = "base", "head"


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
    #: Every document belongs to one tenant, so TenantScope serves it (tenants and the
    #: worker's shared state do not).
    tenant_owned: bool = True

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


@dataclass(frozen=True)
class Migration:
    """One link of the chain: the collections it creates and those it revises.

    A revision is the collection's whole new spec (validator and indexes): the
    runner collMods the validator and creates the indexes it adds, and a
    downgrade restores the spec the collection had before.
    """

    id: str
    description: str
    creates: tuple[CollectionSpec, ...] = ()
    revises: tuple[CollectionSpec, ...] = ()

    @property
    def checksum(self) -> str:
        """Return the sha256 of what it declares (0001's is ``checksum`` of its schema)."""
        documents = [spec_document(spec) for spec in self.creates]
        documents += [{"revises": spec_document(spec)} for spec in self.revises]
        return _digest(documents)

    @property
    def collections(self) -> tuple[str, ...]:
        """Return the collections it touches: those it creates, then those it revises."""
        return tuple(spec.name for spec in (*self.creates, *self.revises))

    def spec(self, name: str) -> CollectionSpec:
        """Return the spec this migration declares for collection ``name``."""
        for spec in (*self.creates, *self.revises):
            if spec.name == name:
                return spec
        raise UnknownCollectionError(f"migration {self.id} does not touch collection {name!r}")

    def apply(self, schema: Schema) -> Schema:
        """Return ``schema`` as this migration leaves it (revised in place, created appended)."""
        revised = {spec.name: spec for spec in self.revises}
        unknown = sorted(set(revised) - set(schema.names))
        if unknown:
            raise ConfigurationError(f"migration {self.id} revises undeclared {unknown}")
        return Schema([*(revised.get(spec.name, spec) for spec in schema), *self.creates])


class Migrations(Sequence[Migration]):
    """The ordered migration chain; look a migration up by position, id or id prefix."""

    def __init__(self, migrations: Iterable[Migration]) -> None:
        self._migrations = tuple(migrations)
        self.ids: tuple[str, ...] = tuple(migration.id for migration in self._migrations)
        if not self._migrations:
            raise ConfigurationError("a migration chain needs at least one migration")
        for position, migration in enumerate(self._migrations, 1):
            if not MIGRATION_ID_PATTERN.match(migration.id):
                raise ConfigurationError(f"migration id {migration.id!r} is not NNNN_slug")
            if int(migration.id[:4]) != position:
                raise ConfigurationError(f"migration {migration.id} is number {position}")
        schemas = [Schema([])]
        for migration in self._migrations:  # also refuses a collection created twice
            schemas.append(migration.apply(schemas[-1]))
        self._schemas = tuple(schemas)

    @overload
    def __getitem__(self, key: int) -> Migration: ...

    @overload
    def __getitem__(self, key: slice) -> Sequence[Migration]: ...

    def __getitem__(self, key: int | slice) -> Migration | Sequence[Migration]:
        return self._migrations[key]

    def __len__(self) -> int:
        return len(self._migrations)

    def __iter__(self) -> Iterator[Migration]:
        return iter(self._migrations)

    def __repr__(self) -> str:
        return f"Migrations({', '.join(self.ids)})"

    @property
    def head(self) -> Migration:
        """Return the newest migration."""
        return self._migrations[-1]

    def get(self, target: str) -> Migration:
        """Return the migration ``target`` names: its id, or a prefix of one id ("0002")."""
        return self._migrations[self.position(target) - 1]

    def position(self, target: str | None) -> int:
        """Return how many migrations are applied at ``target`` (base 0, head or None all)."""
        if target is None or target == HEAD:
            return len(self._migrations)
        if target == BASE:
            return 0
        known = ", ".join((*self.ids, BASE, HEAD))
        if not isinstance(target, str) or not target:
            raise UnknownMigrationError(f"a migration target is an id, {BASE} or {HEAD}: {known}")
        if target in self.ids:
            return self.ids.index(target) + 1
        matches = [n for n, id_ in enumerate(self.ids, 1) if id_.startswith(target)]
        if len(matches) != 1:
            kind = "matches several migrations" if matches else "names no migration"
            raise UnknownMigrationError(f"{target!r} {kind}; known: {known}")
        return matches[0]

    def schema(self, target: str | None = None) -> Schema:
        """Return the collections as migration ``target`` (default the head) leaves them."""
        return self._schemas[self.position(target)]

    def schema_at(self, position: int) -> Schema:
        """Return the collections after the first ``position`` migrations."""
        return self._schemas[position]


class UnknownMigrationError(InvalidArgumentError, KeyError):
    """A target that names no migration of the chain (or several): a bad ``target``."""

    def __init__(self, message: str, *, argument: str = "target") -> None:
        super().__init__(message, argument=argument)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


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
    model: type[models.Document],
    *indexes: IndexSpec,
    shard: ShardKey = UNSHARDED,
    tenant_owned: bool = True,
) -> CollectionSpec:
    return CollectionSpec(
        model.collection_name,
        model,
        indexes,
        validator_for(model),
        shard_key=shard,
        tenant_owned=tenant_owned,
    )


def _revised(spec: CollectionSpec, model: type[models.Document]) -> CollectionSpec:
    """Return ``spec`` with the validator of ``model`` (same indexes and shard key)."""
    return dataclasses.replace(spec, model=model, validator=validator_for(model))


def _indexed(spec: CollectionSpec, *indexes: IndexSpec) -> CollectionSpec:
    """Return ``spec`` with ``indexes`` added after its own (same validator and shard key)."""
    return dataclasses.replace(spec, indexes=(*spec.indexes, *indexes))


#: Migration 0001's collections, in the approved plan's order. Released: never edit.
INITIAL_SCHEMA = Schema(
    [
        _collection(
            models.Tenant,
            _index("by_clerkOrgId", "clerkOrgId", unique=True),
            shard=ShardKey(
                None,
                "one small document per tenant; unique clerkOrgId is global",
            ),
            tenant_owned=False,
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
            models.InitialWorkflowStep,
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

#: Migration 0002: the state every worker process shares, so it lives in the database.
WORKER_STATE = Migration(
    WORKER_STATE_ID,
    "rate-limit buckets, periodic job runs and live workers; workflowSteps.anchorOffsetSeconds",
    creates=(
        _collection(
            models.RateLimitBucket,
            _index("tenantId_1", "tenantId"),
            shard=ShardKey(None, "small: one document per tenant, channel and sender"),
            tenant_owned=False,  # a sender's bucket may be shared by tenants
        ),
        _collection(
            models.JobRun,
            # The latest periods of one job first: "did this job run lately?".
            IndexSpec("job_1_periodStart_-1", (("job", 1), ("periodStart", -1))),
            shard=ShardKey(None, "one document per job and period; pruned by retention"),
            tenant_owned=False,
        ),
        _collection(
            models.WorkerRecord,
            # TTL: a worker silent for a day disappears.
            _index("heartbeatAt_1", "heartbeatAt", expire_after_seconds=86_400),
            shard=ShardKey(None, "one document per live worker"),
            tenant_owned=False,
        ),
    ),
    revises=(_revised(INITIAL_SCHEMA["workflowSteps"], models.WorkflowStep),),
)

#: Migration 0003: the inbound path finds the tenant that receives at an address.
INBOUND_ADDRESS = Migration(
    INBOUND_ADDRESS_ID,
    "tenants.by_providerAddress: the tenant that receives on a channel at an address",
    revises=(
        _indexed(
            WORKER_STATE.apply(INITIAL_SCHEMA)["tenants"],  # tenants as 0002 leaves it
            # Multikey (providerConfigs is an array of subdocuments): the index holds one
            # key per config, so {providerConfigs: {$elemMatch: {channel, fromAddress}}}
            # is bounded on both fields of the same config. Not unique: every tenant
            # without providerConfigs would index as (null, null) and collide, and a
            # database where two tenants already share a sender could not build it;
            # "no other tenant sends from it" is Tenants.set_provider_configs' check.
            _index("by_providerAddress", "providerConfigs.channel", "providerConfigs.fromAddress"),
        ),
    ),
)

#: The migration chain, oldest first. Add a migration at the end; never edit one.
MIGRATIONS = Migrations(
    [
        Migration(
            MIGRATION_ID,
            "the twelve collections of the approved plan, in its order",
            creates=tuple(INITIAL_SCHEMA),
        ),
        WORKER_STATE,
        INBOUND_ADDRESS,
    ]
)

#: The head: every collection as the newest migration leaves it, in creation order.
SCHEMA = MIGRATIONS.schema()


def _digest(documents: list[Any]) -> str:
    canonical = json.dumps(documents, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def checksum(schema: Schema = SCHEMA) -> str:
    """Return the sha256 hex digest of the canonical JSON of every spec, in order."""
    return _digest([spec_document(spec) for spec in schema])
