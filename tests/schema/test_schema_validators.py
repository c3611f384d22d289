"""The generated ``$jsonSchema`` validators: MongoDB's dialect, and what they accept.

Every acceptance case runs on two independent evaluators: the embedded
database's ``$jsonSchema`` engine (what the embedded backend enforces) and
``jsonschema``'s Draft 4 extended with ``bsonType`` (defined below, in the
test module, so it shares no code with the package).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import jsonschema
import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, ValidationError

from nsn_store.embedded.validator import compile_validator
from nsn_store.schema import _models as models
from nsn_store.schema._registry import SCHEMA
from nsn_store.schema._validators import validator_for

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 1, 5, 9, 5, tzinfo=timezone.utc)
TENANT = ObjectId("65a000000000000000000001")
OTHER = ObjectId("65a000000000000000000002")

# --- a bsonType-aware Draft 4 evaluator (independent of nsn_store) ----------

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _is_int(_: Any, value: Any) -> bool:
    return type(value) is int and INT32[0] <= value <= INT32[1]


def _is_long(_: Any, value: Any) -> bool:
    if isinstance(value, Int64):
        return True  # pymongo encodes Int64 as long whatever its magnitude
    return type(value) is int and not _is_int(_, value) and INT64[0] <= value <= INT64[1]


def _is_number(checker: Any, value: Any) -> bool:
    return any(
        test(checker, value)
        for test in (
            _is_int,
            _is_long,
            lambda _, v: type(v) is float,
            lambda _, v: isinstance(v, Decimal128),
        )
    )


BSON_CHECKS: dict[str, Callable[[Any, Any], bool]] = {
    "double": lambda _, v: type(v) is float,
    "string": lambda _, v: isinstance(v, str),
    "object": lambda _, v: isinstance(v, Mapping),
    "array": lambda _, v: isinstance(v, list | tuple),
    "objectId": lambda _, v: isinstance(v, ObjectId),
    "bool": lambda _, v: isinstance(v, bool),
    "date": lambda _, v: isinstance(v, datetime),
    "null": lambda _, v: v is None,
    "int": _is_int,
    "long": _is_long,
    "decimal": lambda _, v: isinstance(v, Decimal128),
    "number": _is_number,
}


def _bson_type(
    validator: Any, aliases: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    wanted = [aliases] if isinstance(aliases, str) else list(aliases)
    if not any(validator.is_type(instance, alias) for alias in wanted):
        yield ValidationError(f"{instance!r} is not of bsonType {wanted}")


BsonDraft4 = jsonschema.validators.extend(
    Draft4Validator,
    validators={"bsonType": _bson_type},
    type_checker=Draft4Validator.TYPE_CHECKER.redefine_many(BSON_CHECKS),
)


def jsonschema_matcher(validator: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    return BsonDraft4(validator["$jsonSchema"]).is_valid  # type: ignore[no-any-return]


def embedded_matcher(validator: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    return compile_validator(validator).matches


MATCHERS = {"jsonschema": jsonschema_matcher, "embedded": embedded_matcher}


@pytest.fixture(params=sorted(MATCHERS))
def accepts(request: pytest.FixtureRequest) -> Callable[[str, Mapping[str, Any]], bool]:
    """``accepts(collection, document)``: does the collection's validator accept it?"""
    make = MATCHERS[str(request.param)]
    return lambda name, document: make(SCHEMA[name].validator)(document)


# --- sample documents -------------------------------------------------------

SMS = models.ProviderConfig(
    channel="sms",
    provider="twilio",
    fromAddress="+15550001111",
    credentialsRef="vault://kv/tenants/acme/twilio",
)
MAIL = models.ProviderConfig(
    channel="email",
    provider="resend",
    fromAddress="Acme <hi@acme.test>",
    credentialsRef="env:RESEND_API_KEY",
)

#: One instance per collection with every optional field set.
FULL: dict[str, models.Document] = {
    "tenants": models.Tenant(
        name="Acme Dental",
        clerkOrgId="org_2abc",
        plan="pro",
        clerkUserId="user_1",
        providerConfigs=[SMS, MAIL],
        createdAt=NOW,
        updatedAt=LATER,
    ),
    "users": models.User(
        clerkUserId="user_1",
        tenantId=TENANT,
        role="owner",
        email="o@acme.test",
        createdAt=NOW,
    ),
    "contacts": models.Contact(
        tenantId=TENANT,
        firstName="Ada",
        lastName="Lovelace",
        phone="+447700900123",
        email="ada@example.org",
        optedOut=False,
        metadata={"source": "import", "n": 1},
        createdAt=NOW,
        updatedAt=LATER,
    ),
    "workflows": models.Workflow(
        tenantId=TENANT,
        name="Reminders",
        description="24h and 1h before",
        createdAt=NOW,
        updatedAt=LATER,
    ),
    "workflowSteps": models.WorkflowStep(
        workflowId=OTHER,
        tenantId=TENANT,
        order=1,
        channel="sms",
        delaySeconds=3600,
        templateId=OTHER,
        useAi=True,
        createdAt=NOW,
        anchorOffsetSeconds=-86_400,
    ),
    "templates": models.Template(
        tenantId=TENANT,
        name="Reminder",
        channel="email",
        subject="See you soon",
        body="Hi {{firstName}}",
        createdAt=NOW,
        updatedAt=LATER,
    ),
    "scheduledMessages": models.ScheduledMessage(
        tenantId=TENANT,
        contactId=OTHER,
        channel="sms",
        sendAt=LATER,
        status="processing",
        attempts=2,
        workflowStepId=OTHER,
        templateId=OTHER,
        payload={"firstName": "Ada"},
        lockedBy="worker-1",
        lockedUntil=LATER,
        lastError="timeout",
        sentAt=LATER,
        idempotencyKey="appt-42-24h",
        createdAt=NOW,
        updatedAt=LATER,
    ),
    "messageEvents": models.MessageEvent(
        tenantId=TENANT,
        eventType="delivered",
        scheduledMessageId=OTHER,
        provider="twilio",
        providerMessageId="SM123",
        occurredAt=NOW,
        raw={"MessageStatus": "delivered"},
        createdAt=NOW,
    ),
    "aiPreviews": models.AIPreview(
        tenantId=TENANT,
        prompt="Write a friendly reminder",
        status="streaming",
        expiresAt=LATER,
        userId=OTHER,
        tokens="Hi Ada,",
        createdAt=NOW,
        updatedAt=NOW,
    ),
    "ragDocuments": models.RagDocument(
        tenantId=TENANT,
        text="Opening hours: 9-5",
        title="Hours",
        metadata={"lang": "en"},
        embedding=[0.25, -1.5, 3.0],
        createdAt=NOW,
    ),
    "counters": models.Counter(
        tenantId=TENANT,
        metric="messages.sent",
        shard=15,
        value=7,
        createdAt=NOW,
        updatedAt=NOW,
    ),
    "aggregates": models.Aggregate(
        tenantId=TENANT,
        period="week",
        date="2026-01-05",
        metric="messages.sent",
        value=12,
        createdAt=NOW,
        updatedAt=NOW,
    ),
    "rateLimitBuckets": models.RateLimitBucket(
        tenantId=TENANT,
        channel="sms",
        sender="+15550001111",
        tokens=-3.5,
        capacity=2.0,
        refillPerSecond=1.0,
        updatedAt=NOW,
    ),
    "jobRuns": models.JobRun(
        job="aggregates.rollup",
        periodStart=NOW,
        periodEnd=LATER,
        holder="host-a:4242:beef",
        leaseUntil=LATER,
        startedAt=NOW,
        finishedAt=LATER,
        outcome="failed",
        error="timeout",
    ),
    "workers": models.WorkerRecord(
        host="host-a",
        pid=4242,
        version="0.1.0",
        startedAt=NOW,
        heartbeatAt=LATER,
        concurrency=8,
        tenants=[TENANT, OTHER],
    ),
}
#: The collections whose ``_id`` is a key the writer builds (a string), with a sample key.
STRING_IDS = {
    "rateLimitBuckets": f"tenant:{TENANT}|sms|+15550001111",
    "jobRuns": "aggregates.rollup|2026-01-05T09:00:00+00:00",
    "workers": "host-a:4242:beef",
}


def id_for(name: str) -> Any:
    """Return a valid ``_id`` for a document of collection ``name``."""
    return STRING_IDS.get(name, ObjectId("65b000000000000000000009"))


def _minimal(full: models.Document) -> models.Document:
    """Rebuild ``full`` from its required fields only (defaults fill the rest)."""
    required = {name for name, f in type(full).model_fields.items() if f.is_required()}
    return type(full)(**{name: getattr(full, name) for name in required})


MINIMAL = {name: _minimal(instance) for name, instance in FULL.items()}


def stored(instance: models.Document) -> dict[str, Any]:
    """Return the document as the server validates it: with its ``_id``."""
    return {"_id": id_for(instance.collection_name), **instance.to_document()}


def _wrong(value: Any) -> Any:
    """Return a value of another BSON type that a careless writer might send."""
    if isinstance(value, bool):
        return "true"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, ObjectId):
        return str(value)  # the classic bug: a hex string instead of an ObjectId
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)  # Convex-style epoch milliseconds
    if isinstance(value, str):
        return 42
    return "not-a-container"  # dict, list


def _cases() -> Iterator[Any]:
    for name, instance in FULL.items():
        full, minimal = instance.to_document(), MINIMAL[name].to_document()
        for field in minimal:
            yield pytest.param(name, _without(full, field), id=f"{name}-missing-{field}")
        for field, value in full.items():
            yield pytest.param(name, {**full, field: _wrong(value)}, id=f"{name}-wrongtype-{field}")
        for field in full.keys() - minimal.keys():
            yield pytest.param(name, {**full, field: None}, id=f"{name}-null-{field}")
        yield pytest.param(name, {**full, "nickname": "x"}, id=f"{name}-unknown-field")


def _without(document: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != field}


ENUM_FIELDS = [
    ("users", "role"),
    ("workflowSteps", "channel"),
    ("templates", "channel"),
    ("scheduledMessages", "channel"),
    ("scheduledMessages", "status"),
    ("messageEvents", "eventType"),
    ("messageEvents", "provider"),
    ("aiPreviews", "status"),
    ("aggregates", "period"),
    ("rateLimitBuckets", "channel"),
    ("jobRuns", "outcome"),
]
NON_NEGATIVE = [
    ("workflowSteps", "order"),
    ("workflowSteps", "delaySeconds"),
    ("scheduledMessages", "attempts"),
    ("counters", "shard"),
    ("workers", "pid"),
]


def _tenant_with(**config: Any) -> dict[str, Any]:
    document = FULL["tenants"].to_document()
    document["providerConfigs"] = [{**document["providerConfigs"][0], **config}]
    return document


def _with(collection: str, /, **fields: Any) -> dict[str, Any]:
    return {**FULL[collection].to_document(), **fields}


# Specific rules a user relies on, beyond the generic mutations above.
SPECIFIC_REJECTS = [
    pytest.param(
        "scheduledMessages", _with("scheduledMessages", attempts=True), id="bool-is-not-int"
    ),
    pytest.param(
        "scheduledMessages", _with("scheduledMessages", attempts=2.0), id="double-is-not-int"
    ),
    pytest.param(
        "scheduledMessages", _with("scheduledMessages", status="Sent"), id="enum-is-case-sensitive"
    ),
    pytest.param("contacts", _with("contacts", phone="07700 900123"), id="phone-not-e164"),
    pytest.param("contacts", _with("contacts", phone="+0123"), id="phone-leading-zero"),
    pytest.param("contacts", _with("contacts", email="ada at example"), id="email-malformed"),
    pytest.param("aggregates", _with("aggregates", date="2026-1-5"), id="date-not-padded"),
    pytest.param("aggregates", _with("aggregates", date="2026-13-01"), id="date-bad-month"),
    pytest.param("aggregates", _with("aggregates", date=NOW), id="date-is-a-string-not-a-date"),
    pytest.param("tenants", _with("tenants", name=""), id="name-empty"),
    pytest.param("tenants", _with("tenants", name="x" * 201), id="name-too-long"),
    pytest.param("templates", _with("templates", body="x" * 5001), id="body-too-long"),
    pytest.param("templates", _with("templates", channel="sms"), id="subject-on-sms-template"),
    pytest.param("tenants", _tenant_with(credentialsRef="AC0123456789abcdef"), id="raw-secret"),
    pytest.param("tenants", _tenant_with(provider="sendgrid"), id="nested-enum"),
    pytest.param("tenants", _tenant_with(apiKey="env:X"), id="nested-unknown-field"),
    pytest.param(
        "tenants", _with("tenants", providerConfigs=[{"channel": "sms"}]), id="nested-missing"
    ),
    pytest.param(
        "ragDocuments", _with("ragDocuments", embedding=["0.1"]), id="embedding-item-type"
    ),
    pytest.param(
        "workflowSteps", _with("workflowSteps", anchorOffsetSeconds=31_622_401), id="anchor-far"
    ),
    pytest.param(
        "workflowSteps", _with("workflowSteps", anchorOffsetSeconds=-3.0), id="anchor-double"
    ),
    pytest.param(
        "rateLimitBuckets", _with("rateLimitBuckets", capacity=0.0), id="bucket-zero-capacity"
    ),
    pytest.param(
        "rateLimitBuckets", _with("rateLimitBuckets", refillPerSecond=-1.0), id="bucket-refill"
    ),
    pytest.param("rateLimitBuckets", _with("rateLimitBuckets", tokens=2), id="bucket-int-tokens"),
    pytest.param(
        "rateLimitBuckets", _with("rateLimitBuckets", tokens=float("inf")), id="bucket-inf-tokens"
    ),
    pytest.param(
        "rateLimitBuckets", _with("rateLimitBuckets", channel="push"), id="bucket-channel"
    ),
    pytest.param("workers", _with("workers", concurrency=0), id="worker-no-concurrency"),
    pytest.param("workers", _with("workers", tenants=["not-an-id"]), id="worker-tenant-type"),
    pytest.param("jobRuns", _with("jobRuns", outcome="done"), id="job-outcome"),
    pytest.param("jobRuns", _with("jobRuns", job=""), id="job-name-empty"),
]
SPECIFIC_ACCEPTS = [
    pytest.param(
        "scheduledMessages", _with("scheduledMessages", attempts=Int64(3)), id="int64-attempts"
    ),
    pytest.param("counters", _with("counters", value=2**40), id="counter-beyond-int32"),
    pytest.param("counters", _with("counters", value=-3), id="counter-negative-value"),
    pytest.param("aggregates", _with("aggregates", value=2.5), id="aggregate-double"),
    pytest.param("aggregates", _with("aggregates", value=Int64(9)), id="aggregate-long"),
    pytest.param(
        "templates", _without(_with("templates", channel="sms"), "subject"), id="sms-no-subject"
    ),
    pytest.param(
        "contacts", _with("contacts", metadata={"any": {"nested": [1, None]}}), id="free-metadata"
    ),
    pytest.param(
        "workflowSteps", _with("workflowSteps", anchorOffsetSeconds=-31_622_400), id="anchor-year"
    ),
    pytest.param(
        "rateLimitBuckets", _with("rateLimitBuckets", tokens=-1e6), id="bucket-reserved-ahead"
    ),
    pytest.param("workers", _with("workers", pid=Int64(2**40)), id="worker-long-pid"),
]


@pytest.mark.parametrize("name", list(FULL))
@pytest.mark.parametrize("variant", ["full", "minimal"])
def test_valid_document_is_accepted(accepts: Any, name: str, variant: str) -> None:
    instance = FULL[name] if variant == "full" else MINIMAL[name]
    assert accepts(name, stored(instance))


@pytest.mark.parametrize(("name", "document"), SPECIFIC_ACCEPTS)
def test_edge_values_are_accepted(accepts: Any, name: str, document: dict[str, Any]) -> None:
    assert accepts(name, {"_id": id_for(name), **document})


@pytest.mark.parametrize(("name", "document"), [*_cases(), *SPECIFIC_REJECTS])
def test_invalid_document_is_rejected(accepts: Any, name: str, document: dict[str, Any]) -> None:
    assert not accepts(name, {"_id": id_for(name), **document})


@pytest.mark.parametrize(("name", "field"), ENUM_FIELDS, ids=[f"{n}-{f}" for n, f in ENUM_FIELDS])
def test_out_of_enum_value_is_rejected(accepts: Any, name: str, field: str) -> None:
    assert not accepts(name, stored(FULL[name]) | {field: "bogus"})


@pytest.mark.parametrize(("name", "field"), NON_NEGATIVE, ids=[f"{n}-{f}" for n, f in NON_NEGATIVE])
def test_negative_count_is_rejected(accepts: Any, name: str, field: str) -> None:
    assert not accepts(name, stored(FULL[name]) | {field: -1})
    assert accepts(name, stored(FULL[name]) | {field: 0})


def test_id_of_another_type_is_rejected(accepts: Any) -> None:
    assert not accepts("tenants", {**FULL["tenants"].to_document(), "_id": "tenant-1"})
    for name in STRING_IDS:  # a key the writer forgot: the driver's ObjectId is refused
        assert not accepts(name, {**FULL[name].to_document(), "_id": ObjectId()}), name
    assert not accepts("rateLimitBuckets", stored(FULL["rateLimitBuckets"]) | {"_id": "x" * 513})


def test_migration_0001_step_validator_refuses_the_anchor(accepts: Any) -> None:
    from nsn_store.schema._registry import INITIAL_SCHEMA

    initial = INITIAL_SCHEMA["workflowSteps"].validator
    anchored, plain = stored(FULL["workflowSteps"]), stored(MINIMAL["workflowSteps"])
    for make in MATCHERS.values():
        assert make(initial)(plain) and not make(initial)(anchored)
    assert accepts("workflowSteps", anchored)


# --- property: anything the model accepts, the server accepts ---------------

_ids = st.binary(min_size=12, max_size=12).map(ObjectId)
_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)
_keys = st.text(min_size=1, max_size=200)
_payloads = st.dictionaries(
    st.text(max_size=8), st.integers(-(2**31), 2**31) | st.text(max_size=20)
)
scheduled_messages = st.builds(
    models.ScheduledMessage,
    tenantId=_ids,
    contactId=_ids,
    channel=st.sampled_from(models.CHANNELS),
    sendAt=_times,
    status=st.sampled_from(models.MESSAGE_STATUSES),
    attempts=st.integers(0, 2**63 - 1),
    workflowStepId=st.none() | _ids,
    templateId=st.none() | _ids,
    payload=st.none() | _payloads,
    lockedBy=st.none() | _keys,
    lockedUntil=st.none() | _times,
    lastError=st.none() | st.text(max_size=2000),
    sentAt=st.none() | _times,
    idempotencyKey=st.none() | _keys,
    createdAt=_times,
    updatedAt=st.none() | _times,
)


@pytest.mark.parametrize("engine", sorted(MATCHERS))
@settings(max_examples=60, deadline=None)
@given(message=scheduled_messages)
def test_any_valid_scheduled_message_passes_its_validator(
    engine: str, message: models.ScheduledMessage
) -> None:
    matches = MATCHERS[engine](SCHEMA["scheduledMessages"].validator)
    assert matches(stored(message))


# --- the dialect: only keywords MongoDB accepts ------------------------------

#: The keywords MongoDB's $jsonSchema parser recognises
#: (MongoDB manual, $jsonSchema, "Available Keywords").
MONGODB_KEYWORDS = frozenset(
    {
        "type",
        "bsonType",
        "enum",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "title",
        "description",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "minProperties",
        "maxProperties",
        "dependencies",
        "items",
        "additionalItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "encrypt",
        "encryptMetadata",
    }
)
BSON_ALIASES = frozenset(
    {
        "double",
        "string",
        "object",
        "array",
        "binData",
        "undefined",
        "objectId",
        "bool",
        "date",
        "null",
        "regex",
        "dbPointer",
        "javascript",
        "symbol",
        "javascriptWithScope",
        "int",
        "timestamp",
        "long",
        "decimal",
        "minKey",
        "maxKey",
        "number",
    }
)
COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")


def subschemas(
    schema: Mapping[str, Any], path: str = "$"
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield every (path, subschema) of a schema tree, the root first."""
    yield path, schema
    for key in ("properties", "patternProperties"):
        for name, child in schema.get(key, {}).items():
            yield from subschemas(child, f"{path}.{name}")
    for key in ("items", "additionalItems", "additionalProperties", "not"):
        child = schema.get(key)
        children = child if isinstance(child, list) else [child]
        for index, item in enumerate(children):
            if isinstance(item, Mapping):
                yield from subschemas(item, f"{path}.{key}[{index}]")
    for key in ("allOf", "anyOf", "oneOf"):
        for index, item in enumerate(schema.get(key, [])):
            yield from subschemas(item, f"{path}.{key}[{index}]")
    for name, child in schema.get("dependencies", {}).items():
        if isinstance(child, Mapping):
            yield from subschemas(child, f"{path}.dependencies.{name}")


def dialect_problems(schema: Mapping[str, Any]) -> list[str]:
    """Return every way ``schema`` strays from what MongoDB accepts (or what we require)."""
    problems = []
    for path, node in subschemas(schema):
        problems += [
            f"{path}: unsupported keyword {k!r}" for k in node if k not in MONGODB_KEYWORDS
        ]
        if "type" in node:
            problems.append(f"{path}: JSON 'type' used; the schema must say bsonType")
        aliases = node.get("bsonType", [])
        aliases = [aliases] if isinstance(aliases, str) else aliases
        if len(set(aliases)) != len(aliases) or not set(aliases) <= BSON_ALIASES - {"null"}:
            problems.append(f"{path}: bad bsonType {aliases}")
        for key in ("title", "description"):
            if key in node and not isinstance(node[key], str):
                problems.append(f"{path}: {key} is not a string")
        required = node.get("required")
        if required is not None and (
            not required
            or len(set(required)) != len(required)
            or not set(required) <= set(node.get("properties", {}))
        ):
            problems.append(f"{path}: bad required {required}")
        enum = node.get("enum")
        if enum is not None and (not enum or len(set(map(repr, enum))) != len(enum)):
            problems.append(f"{path}: bad enum {enum}")
        for key in COUNTS:
            value = node.get(key)
            if value is not None and (type(value) is not int or value < 0):
                problems.append(f"{path}: {key} must be a non-negative integer")
        described = "properties" in node and ".dependencies." not in path  # not a mere rule
        if described and node.get("additionalProperties") is not False:
            problems.append(f"{path}: object is open (additionalProperties is not false)")
    return problems


@pytest.mark.parametrize("spec", list(SCHEMA), ids=SCHEMA.names)
def test_validator_uses_only_mongodb_dialect(spec: Any) -> None:
    assert list(spec.validator) == ["$jsonSchema"]
    assert dialect_problems(spec.validator["$jsonSchema"]) == []


@pytest.mark.parametrize("spec", list(SCHEMA), ids=SCHEMA.names)
def test_validator_is_closed_and_allows_id(spec: Any) -> None:
    root = spec.validator["$jsonSchema"]
    assert root["bsonType"] == "object"
    assert root["additionalProperties"] is False
    expected = "string" if spec.name in STRING_IDS else "objectId"
    assert root["properties"]["_id"]["bsonType"] == expected
    assert set(root["properties"]) == {"_id", *spec.model.model_fields}


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "integer"},
        {"bsonType": "int", "format": "int32"},
        {"$ref": "#/x"},
        {"properties": {"a": {"bsonType": ["string", "null"], "default": None}}},
        {"bsonType": "object", "properties": {"a": {"anyOf": [{"const": 1}]}}},
        {"bsonType": "object", "required": []},
        {"title": 3},
    ],
    ids=[
        "type-integer",
        "format",
        "ref",
        "nullable-default",
        "nested-const",
        "empty-required",
        "title",
    ],
)
def test_dialect_check_catches_pydantic_style_output(bad: dict[str, Any]) -> None:
    assert dialect_problems(bad)


def test_pydantic_json_schema_would_not_pass() -> None:
    # The reason validators are generated from annotations, not model_json_schema().
    assert dialect_problems(models.ScheduledMessage.model_json_schema())


@pytest.mark.parametrize("model", models.MODELS, ids=lambda m: m.collection_name)
def test_generation_is_deterministic(model: type[models.Document]) -> None:
    first, second = validator_for(model), validator_for(model)
    assert json.dumps(first) == json.dumps(second)
    assert json.dumps(first) == json.dumps(SCHEMA[model.collection_name].validator)


def test_optional_fields_are_not_nullable_and_not_required() -> None:
    root = SCHEMA["scheduledMessages"].validator["$jsonSchema"]
    assert "lockedUntil" not in root["required"]
    assert root["properties"]["lockedUntil"]["bsonType"] == "date"
    assert root["required"] == [
        "tenantId",
        "contactId",
        "channel",
        "sendAt",
        "status",
        "attempts",
        "createdAt",
    ]


def test_fields_with_defaults_are_required() -> None:
    assert "role" in SCHEMA["users"].validator["$jsonSchema"]["required"]
    steps = SCHEMA["workflowSteps"].validator["$jsonSchema"]["required"]
    assert {"delaySeconds", "useAi"} <= set(steps)
