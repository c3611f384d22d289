"""Plan and apply the scale-out: one shard key (or none) per collection.

Every tenant-owned query starts with ``tenantId``, so every shard key starts
with it: per-tenant reads and writes are routed to the shards that hold that
tenant, never broadcast. What follows ``tenantId`` depends on the collection:

* a unique index of ours must start with the shard key's fields (MongoDB
  enforces uniqueness per shard, so it can only accept a unique index whose
  values never span shards). The partial unique indexes on
  ``scheduledMessages`` and ``messageEvents`` therefore pin those keys to
  ``{tenantId: 1}``;
* where no unique index constrains the choice, ``{tenantId: 1, _id: "hashed"}``
  keeps tenant targeting and spreads one large tenant over many chunks;
* small, global collections (tenants, users, workflows...) stay unsharded on
  the database's primary shard.

Each collection's key and the reason for it are declared once, with the
collection, in the registry (:class:`nsn_store.schema.ShardKey`).

:func:`shard_plan` is pure; :func:`apply_shard_plan` turns the plan into admin
commands and runs them only on a sharded cluster (a ``mongos``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nsn_store._flow import Flow, Op, command, run
from nsn_store.errors import ConfigurationError, InvalidArgumentError
from nsn_store.schema._registry import SCHEMA, CollectionSpec, Schema

logger = logging.getLogger(__name__)

KeyValue = int | str
Strategy = Literal["ranged", "compound-hashed", "hashed", "unsharded"]

#: Indexes that ``shard`` creates for a key no declared index supports carry
#: this prefix. The prefix alone proves nothing (anyone can name an index
#: ``shardkey_email``): ``status``/``verify`` accept only the exact index of
#: :func:`shard_key_index`.
SHARD_KEY_INDEX_PREFIX = "shardkey_"


@dataclass(frozen=True)
class ShardKeyChoice:
    """The shard key chosen for one collection (``key`` is None: unsharded)."""

    collection: str
    key: dict[str, KeyValue] | None
    reason: str
    unique: bool = False
    index: str | None = None  # a declared index whose prefix supports the key

    @property
    def index_name(self) -> str:
        """Name of the index that supports the key (``shardkey_<fields>`` if a new one)."""
        if self.index is not None:
            return self.index
        fields = "_".join(f"{name}_{kind}" for name, kind in (self.key or {}).items())
        return SHARD_KEY_INDEX_PREFIX + fields

    @property
    def strategy(self) -> Strategy:
        if self.key is None:
            return "unsharded"
        hashed = [name for name, kind in self.key.items() if kind == "hashed"]
        if not hashed:
            return "ranged"
        return "hashed" if len(self.key) == 1 else "compound-hashed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "key": self.key,
            "strategy": self.strategy,
            "index": self.index_name if self.key else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ShardPlan:
    """One choice per collection of the schema, in the schema's order."""

    choices: tuple[ShardKeyChoice, ...]

    @property
    def sharded(self) -> tuple[ShardKeyChoice, ...]:
        return tuple(choice for choice in self.choices if choice.key is not None)

    def get(self, collection: str) -> ShardKeyChoice:
        for choice in self.choices:
            if choice.collection == collection:
                return choice
        raise ConfigurationError(f"no shard plan entry for collection {collection!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"collections": [choice.to_dict() for choice in self.choices]}


@dataclass(frozen=True)
class ShardResult:
    """The admin commands of a plan and whether they were run."""

    database: str
    commands: list[dict[str, Any]]
    applied: bool
    plan: ShardPlan = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "applied": self.applied,
            "commands": self.commands,
            **self.plan.to_dict(),
        }


def check_shard_key(
    spec: CollectionSpec, key: Mapping[str, KeyValue], *, unique: bool = False
) -> None:
    """Refuse a shard key that one of the collection's unique indexes would violate.

    MongoDB's rule (``ShardKeyPattern::isUniqueIndexCompatible``): a unique index
    must start with the shard key's field names, or with ``_id``. Directions
    and ``hashed`` do not matter to that comparison, but a hashed key cannot
    itself be unique (``shardCollection`` with ``unique: true``).
    """
    _check_spec(spec)
    _check_key(key)
    if not key:
        raise ConfigurationError(f"{spec.name}: a shard key needs at least one field")
    fields = list(key)
    if unique and "hashed" in key.values():
        raise ConfigurationError(
            f"{spec.name}: a hashed shard key {dict(key)} cannot enforce uniqueness"
        )
    for index in spec.indexes:
        index_fields = [name for name, _ in index.keys]
        if not index.unique or index_fields[:1] == ["_id"]:
            continue
        if index_fields[: len(fields)] != fields:
            raise ConfigurationError(
                f"{spec.name}: shard key {dict(key)} is refused: unique index "
                f"{index.name} {dict(index.keys)} does not start with its fields "
                f"{fields} (a sharded collection only enforces uniqueness on "
                "indexes prefixed by the shard key)"
            )


def shard_plan(schema: Schema = SCHEMA) -> ShardPlan:
    """Choose a shard key (or none) for every collection, each checked against its indexes."""
    if isinstance(schema, str | bytes | Mapping) or not isinstance(schema, Iterable):
        raise InvalidArgumentError(
            f"schema must be a Schema, not a value of type {type(schema).__name__}",
            argument="schema",
        )
    specs = list(schema)
    for spec in specs:
        _check_spec(spec, "schema")
    choices = []
    for spec in specs:
        key, reason = spec.shard_key.key, spec.shard_key.reason
        if key is None:
            choices.append(ShardKeyChoice(spec.name, None, reason))
            continue
        check_shard_key(spec, key)
        choices.append(
            ShardKeyChoice(spec.name, dict(key), reason, index=supporting_index(spec, key))
        )
    return ShardPlan(tuple(choices))


def shard_key_index(spec: CollectionSpec) -> dict[str, Any] | None:
    """Return ``{"name", "key"}`` of the index ``shard`` creates for ``spec``, or None.

    None when the plan leaves the collection unsharded, when a declared index
    already supports its key (then ``shard`` creates nothing), or when the key
    does not suit ``spec`` (then ``shard`` refuses the plan). ``status`` and
    ``verify`` accept an index beyond the schema's only when it is exactly this
    one: same name, same key, no options, since ``shard`` creates it with none.
    """
    key = spec.shard_key.key
    if key is None:
        return None
    try:
        check_shard_key(spec, key)
    except ConfigurationError:
        return None
    if supporting_index(spec, key) is not None:
        return None
    choice = ShardKeyChoice(spec.name, dict(key), "")
    return {"name": choice.index_name, "key": dict(key)}


def supporting_index(spec: CollectionSpec, key: Mapping[str, KeyValue]) -> str | None:
    """Return a declared index that can serve as the shard key index, if any.

    ``shardCollection`` accepts an index whose key starts with the shard key
    (same fields and directions), unless it is partial; the shortest such
    index is the cheapest for the balancer's range scans.
    """
    wanted = list(key.items())
    usable = [
        index
        for index in spec.indexes
        if index.partial_filter is None and list(index.keys[: len(wanted)]) == wanted
    ]
    return min(usable, key=lambda index: len(index.keys)).name if usable else None


def shard_commands(database: str, plan: ShardPlan) -> list[dict[str, Any]]:
    """Build the admin commands for ``plan`` (pure): enable, index, shard each collection.

    A key that no declared index supports (the hashed ones) gets its index
    first, because ``shardCollection`` only creates it on an empty collection.
    """
    check_database_name(database)
    _check_plan(plan)
    commands: list[dict[str, Any]] = [{"enableSharding": database}]
    for choice in plan.sharded:
        assert choice.key is not None
        if choice.index is None:
            commands.append(
                {
                    "createIndexes": choice.collection,
                    "indexes": [{"name": choice.index_name, "key": dict(choice.key)}],
                    "$db": database,
                }
            )
        shard: dict[str, Any] = {
            "shardCollection": f"{database}.{choice.collection}",
            "key": dict(choice.key),
        }
        if choice.unique:
            shard["unique"] = True
        commands.append(shard)
    return commands


def apply_shard_plan(
    client_or_db: Any,
    plan: ShardPlan | None = None,
    *,
    dry_run: bool = True,
    database: str | None = None,
) -> ShardResult:
    """Return the plan's admin commands and, unless ``dry_run``, run them on a mongos."""
    if type(dry_run) is not bool:
        raise InvalidArgumentError("dry_run must be True or False", argument="dry_run")
    if database is not None:
        check_database_name(database)
    plan = shard_plan() if plan is None else _check_plan(plan)
    client, name = _client_and_name(client_or_db, database)
    commands = shard_commands(name, plan)
    if dry_run:
        return ShardResult(name, commands, applied=False, plan=plan)
    require_mongos(client)
    for admin_command in commands:
        _run(client, admin_command)
    return ShardResult(name, commands, applied=True, plan=plan)


#: Characters MongoDB refuses in a database name (any platform), and its length limit.
_DATABASE_FORBIDDEN = frozenset('/\\. "$\0')
_DATABASE_MAX_BYTES = 63


def check_database_name(value: Any, argument: str = "database") -> str:
    """Return ``value`` if MongoDB accepts it as a database name; else InvalidArgumentError."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(
            f"{argument} must be a non-empty database name", argument=argument
        )
    if _DATABASE_FORBIDDEN & set(value):
        raise InvalidArgumentError(
            f'{argument} must not contain any of / \\ . space " $ or NUL', argument=argument
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{argument} is not valid text", argument=argument) from None
    if size > _DATABASE_MAX_BYTES:
        raise InvalidArgumentError(
            f"{argument} must be at most {_DATABASE_MAX_BYTES} bytes, not {size}",
            argument=argument,
        )
    return value


def _check_spec(spec: Any, argument: str = "spec") -> CollectionSpec:
    if not isinstance(spec, CollectionSpec):
        raise InvalidArgumentError(
            f"{argument} must hold collection specs, not a value of type {type(spec).__name__}",
            argument=argument,
        )
    return spec


def _check_key(key: Any) -> None:
    """A shard key is a mapping of field names to 1, -1 or "hashed"."""
    if not isinstance(key, Mapping):
        raise InvalidArgumentError(
            f"key must be a mapping of field names to 1, -1 or 'hashed', not a value of "
            f"type {type(key).__name__}",
            argument="key",
        )
    for name, kind in key.items():
        if (
            not isinstance(name, str)
            or not name
            or (kind not in (1, -1, "hashed") or isinstance(kind, bool))
        ):
            raise InvalidArgumentError(
                "key must map field names to 1, -1 or 'hashed'", argument="key"
            )


def _check_plan(plan: Any) -> ShardPlan:
    if not isinstance(plan, ShardPlan):
        raise InvalidArgumentError(
            f"plan must be a ShardPlan, not a value of type {type(plan).__name__}",
            argument="plan",
        )
    return plan


def _run(client: Any, document: Mapping[str, Any]) -> None:
    body = {k: v for k, v in document.items() if k != "$db"}
    target = client[document["$db"]] if "$db" in document else client.admin
    logger.info("running %s", body)
    run(target, _one(command(body)))


def _one(op: Op) -> Flow[Any]:
    """The flow of one admin command (the runner translates its errors)."""
    return (yield op)


def _client_and_name(client_or_db: Any, database: str | None) -> tuple[Any, str]:
    if hasattr(client_or_db, "client") and hasattr(client_or_db, "list_collection_names"):
        return client_or_db.client, database or client_or_db.name
    if database:
        return client_or_db, database
    try:
        return client_or_db, client_or_db.get_default_database().name
    except Exception as exc:
        raise ConfigurationError(
            "no database to shard: pass a database or a URI that names one"
        ) from exc


def require_mongos(client: Any) -> None:
    """Raise ConfigurationError unless ``client`` talks to a mongos (a sharded cluster).

    A mongos answers ``hello`` with ``msg: "isdbgrid"`` (MongoDB manual, "hello");
    a replica set, a standalone and the embedded database do not.
    """
    reply = run(client.admin, _one(command({"hello": 1})))
    if reply.get("msg") != "isdbgrid":
        raise ConfigurationError(
            "not a sharded cluster (mongos): connect to a mongos router to apply the plan"
        )


def describe(choices: Sequence[ShardKeyChoice]) -> list[str]:
    """Render choices as one line each: collection, key, strategy, reason."""
    lines = []
    for choice in choices:
        key = json.dumps(choice.key) if choice.key is not None else "-"
        index = f" [index: {choice.index_name}]" if choice.key else ""
        lines.append(
            f"{choice.collection:<18} {key!s:<34} {choice.strategy:<16} {choice.reason}{index}"
        )
    return lines
