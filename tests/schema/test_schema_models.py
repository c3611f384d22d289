"""The collection models: what they accept, refuse, default and write."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from nsn_store.schema import _models as models

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
TENANT = ObjectId("65a000000000000000000001")

#: The required fields of each model (the smallest valid instance).
REQUIRED: dict[type[models.Document], dict[str, Any]] = {
    models.Tenant: {"name": "Acme", "clerkOrgId": "org_1", "createdAt": NOW},
    models.User: {"clerkUserId": "user_1", "createdAt": NOW},
    models.Contact: {"tenantId": TENANT, "createdAt": NOW},
    models.Workflow: {"tenantId": TENANT, "name": "Reminders", "createdAt": NOW},
    models.WorkflowStep: {
        "workflowId": TENANT,
        "tenantId": TENANT,
        "order": 0,
        "channel": "sms",
        "createdAt": NOW,
    },
    models.Template: {
        "tenantId": TENANT,
        "name": "T",
        "channel": "sms",
        "body": "Hi",
        "createdAt": NOW,
    },
    models.ScheduledMessage: {
        "tenantId": TENANT,
        "contactId": TENANT,
        "channel": "sms",
        "sendAt": NOW,
        "status": "scheduled",
        "attempts": 0,
        "createdAt": NOW,
    },
    models.MessageEvent: {"tenantId": TENANT, "eventType": "queued", "createdAt": NOW},
    models.AIPreview: {
        "tenantId": TENANT,
        "prompt": "p",
        "status": "pending",
        "expiresAt": NOW,
        "createdAt": NOW,
    },
    models.RagDocument: {"tenantId": TENANT, "text": "t", "createdAt": NOW},
    models.Counter: {
        "tenantId": TENANT,
        "metric": "m",
        "shard": 0,
        "value": 0,
        "createdAt": NOW,
        "updatedAt": NOW,
    },
    models.Aggregate: {
        "tenantId": TENANT,
        "period": "day",
        "date": "2026-01-05",
        "metric": "m",
        "value": 0,
        "createdAt": NOW,
        "updatedAt": NOW,
    },
    models.RateLimitBucket: {
        "channel": "sms",
        "tokens": 2.0,
        "capacity": 2.0,
        "refillPerSecond": 1.0,
        "updatedAt": NOW,
    },
    models.JobRun: {
        "job": "rollup",
        "periodStart": NOW,
        "periodEnd": NOW + timedelta(hours=1),
        "holder": "host:1:ab",
        "leaseUntil": NOW + timedelta(minutes=5),
        "startedAt": NOW,
        "outcome": "running",
    },
    models.WorkerRecord: {
        "host": "host",
        "pid": 4242,
        "version": "0.1.0",
        "startedAt": NOW,
        "heartbeatAt": NOW,
        "concurrency": 8,
    },
}
BY_NAME = {model.collection_name: model for model in models.MODELS}
ENUM_FIELDS: list[tuple[type[models.Document], str]] = [
    (models.User, "role"),
    (models.WorkflowStep, "channel"),
    (models.ScheduledMessage, "status"),
    (models.MessageEvent, "eventType"),
    (models.AIPreview, "status"),
    (models.Aggregate, "period"),
    (models.RateLimitBucket, "channel"),
    (models.JobRun, "outcome"),
]


def test_every_collection_has_a_model() -> None:
    assert set(REQUIRED) == set(models.MODELS)
    assert len({model.collection_name for model in models.MODELS}) == 15


def test_enumerations_are_exported_as_tuples() -> None:
    assert models.CHANNELS == ("sms", "email")
    assert models.MESSAGE_STATUSES == ("scheduled", "processing", "sent", "failed", "cancelled")
    assert models.PROVIDERS == ("twilio", "resend")
    assert models.PERIODS == ("day", "week", "month")
    assert models.ROLES == ("owner", "admin", "user")
    assert models.PREVIEW_STATUSES == ("pending", "streaming", "done", "error")
    assert "opted_out" in models.EVENT_TYPES and len(models.EVENT_TYPES) == 10


@pytest.mark.parametrize("model", models.MODELS, ids=lambda m: m.collection_name)
def test_to_document_omits_unset_optional_fields(model: type[models.Document]) -> None:
    document = model(**REQUIRED[model]).to_document()
    defaults = {
        name
        for name, f in model.model_fields.items()
        if not f.is_required() and f.default is not None
    }
    assert set(document) == set(REQUIRED[model]) | defaults
    assert None not in document.values()


@pytest.mark.parametrize("model", models.MODELS, ids=lambda m: m.collection_name)
def test_to_document_is_bson_encodable(model: type[models.Document]) -> None:
    document = model(**REQUIRED[model]).to_document()
    assert bson.decode(bson.encode(document), bson.CodecOptions(tz_aware=True)) == document


def test_explicit_none_means_absent() -> None:
    contact = models.Contact(**REQUIRED[models.Contact], email=None, phone="+15550001111")
    assert contact.to_document() == {"tenantId": TENANT, "phone": "+15550001111", "createdAt": NOW}


def test_defaults_are_written() -> None:
    assert models.User(**REQUIRED[models.User]).to_document()["role"] == "user"
    step = models.WorkflowStep(**REQUIRED[models.WorkflowStep]).to_document()
    assert (step["delaySeconds"], step["useAi"]) == (0, False)


@pytest.mark.parametrize("model", models.MODELS, ids=lambda m: m.collection_name)
def test_unknown_fields_are_forbidden(model: type[models.Document]) -> None:
    with pytest.raises(ValidationError, match="extra"):
        model(**{**REQUIRED[model], "nickname": "x"})


@pytest.mark.parametrize(
    ("model", "field"), ENUM_FIELDS, ids=[f"{m.collection_name}-{f}" for m, f in ENUM_FIELDS]
)
def test_values_outside_an_enum_are_rejected(model: type[models.Document], field: str) -> None:
    with pytest.raises(ValidationError):
        model(**{**REQUIRED[model], field: "bogus"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", -1),
        ("attempts", True),
        ("attempts", "1"),
        ("sendAt", "2026-01-05T09:00:00Z"),
        ("sendAt", 1767603600000),
        ("sendAt", datetime(2026, 1, 5, 9)),
        ("tenantId", "not-an-id"),
        ("tenantId", 12),
    ],
    ids=[
        "negative",
        "bool",
        "numeric-string",
        "iso-string",
        "epoch-ms",
        "naive-datetime",
        "bad-hex",
        "int-id",
    ],
)
def test_wrong_values_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        models.ScheduledMessage(**{**REQUIRED[models.ScheduledMessage], field: value})


def test_object_id_accepts_its_hex_form() -> None:
    contact = models.Contact(tenantId=str(TENANT), createdAt=NOW)  # type: ignore[arg-type]
    assert contact.tenantId == TENANT and isinstance(contact.to_document()["tenantId"], ObjectId)


def test_times_are_normalised_to_utc_milliseconds() -> None:
    paris = timezone(timedelta(hours=1))
    contact = models.Contact(
        tenantId=TENANT, createdAt=datetime(2026, 1, 5, 10, 0, 0, 123456, paris)
    )
    assert contact.createdAt == datetime(2026, 1, 5, 9, 0, 0, 123000, timezone.utc)
    assert contact.createdAt.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (models.Contact, "phone", "555-1234"),
        (models.Contact, "email", "nobody"),
        (models.Aggregate, "date", "05/01/2026"),
        (models.Tenant, "name", ""),
        (models.Tenant, "name", "x" * 201),
        (models.AIPreview, "prompt", "x" * 10_001),
        (models.ScheduledMessage, "lastError", "x" * 2001),
        (models.WorkflowStep, "anchorOffsetSeconds", 31_622_401),
        (models.WorkflowStep, "anchorOffsetSeconds", -31_622_401),
        (models.RateLimitBucket, "capacity", 0.0),
        (models.RateLimitBucket, "refillPerSecond", float("inf")),
        (models.RateLimitBucket, "tokens", float("nan")),
        (models.WorkerRecord, "concurrency", 0),
        (models.JobRun, "error", "x" * 2001),
    ],
    ids=[
        "phone",
        "email",
        "day",
        "empty-name",
        "long-name",
        "long-prompt",
        "long-error",
        "anchor-after-a-year",
        "anchor-before-a-year",
        "zero-capacity",
        "infinite-refill",
        "nan-tokens",
        "no-concurrency",
        "long-job-error",
    ],
)
def test_patterns_and_lengths_are_enforced(
    model: type[models.Document], field: str, value: Any
) -> None:
    with pytest.raises(ValidationError):
        model(**{**REQUIRED[model], field: value})


def test_only_email_templates_have_a_subject() -> None:
    with pytest.raises(ValidationError, match="subject"):
        models.Template(**REQUIRED[models.Template], subject="Hello")
    email = models.Template(**{**REQUIRED[models.Template], "channel": "email"}, subject="Hello")
    assert email.to_document()["subject"] == "Hello"


def test_provider_credentials_are_references_not_secrets() -> None:
    config: dict[str, Any] = {"channel": "sms", "provider": "twilio", "fromAddress": "+15550001111"}
    ok = models.ProviderConfig(**config, credentialsRef="env:TWILIO_AUTH_TOKEN")
    tenant = models.Tenant(**REQUIRED[models.Tenant], providerConfigs=[ok])
    assert tenant.to_document()["providerConfigs"][0]["credentialsRef"] == "env:TWILIO_AUTH_TOKEN"
    with pytest.raises(ValidationError):
        models.ProviderConfig(**config, credentialsRef="0123456789abcdef0123456789abcdef")


def test_assignment_is_validated() -> None:
    message = models.ScheduledMessage(**REQUIRED[models.ScheduledMessage])
    with pytest.raises(ValidationError):
        message.status = "lost"  # type: ignore[assignment]


@given(
    value=st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False),
    day=st.dates().map(lambda d: d.isoformat()),
    period=st.sampled_from(models.PERIODS),
)
def test_aggregate_round_trips_through_to_document(value: float, day: str, period: str) -> None:
    aggregate = models.Aggregate(
        **{**REQUIRED[models.Aggregate], "value": value, "date": day, "period": period}
    )
    again = models.Aggregate.model_validate(aggregate.to_document())
    assert again == aggregate
    assert type(again.value) is type(value)  # an int stays an int (BSON int/long), a float a double


def test_a_step_may_be_anchored_before_its_appointment() -> None:
    step = models.WorkflowStep(**REQUIRED[models.WorkflowStep], anchorOffsetSeconds=-86_400)
    assert step.to_document()["anchorOffsetSeconds"] == -86_400
    plain = models.WorkflowStep(**REQUIRED[models.WorkflowStep]).to_document()
    assert "anchorOffsetSeconds" not in plain
    with pytest.raises(ValidationError, match="extra"):  # migration 0001's step has no anchor
        models.InitialWorkflowStep(**REQUIRED[models.WorkflowStep], anchorOffsetSeconds=0)


def test_a_job_period_ends_after_it_starts() -> None:
    with pytest.raises(ValidationError, match="periodEnd"):
        models.JobRun(**{**REQUIRED[models.JobRun], "periodEnd": NOW})


def test_a_bucket_shared_across_tenants_has_no_tenant() -> None:
    bucket = models.RateLimitBucket(**REQUIRED[models.RateLimitBucket], sender="+15550001111")
    assert "tenantId" not in bucket.to_document()
    assert bucket.to_document()["sender"] == "+15550001111"


def test_bucket_numbers_are_written_as_doubles() -> None:
    bucket = models.RateLimitBucket(**{**REQUIRED[models.RateLimitBucket], "tokens": -3})
    document = bucket.to_document()
    assert [type(document[f]) for f in ("tokens", "capacity", "refillPerSecond")] == [float] * 3
    with pytest.raises(ValidationError):
        models.RateLimitBucket(**{**REQUIRED[models.RateLimitBucket], "tokens": "2"})
