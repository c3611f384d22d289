"""Pydantic models of the collections: the twelve of migration 0001, the three of 0002.

Field names are the camelCase names of the data model (the README's Schema
section). The models are the
single declaration from which the ``$jsonSchema`` validators are generated
(:mod:`nsn_store.schema._validators`), so every constraint written here (types, enums,
bounds, lengths, patterns) also holds on the server.

Conventions: references are ``bson.ObjectId``; times are aware UTC datetimes
at millisecond precision (naive values are refused rather than guessed);
an optional field is either absent or set, never ``None`` in the database, so
:meth:`Document.to_document` leaves unset optional fields out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from bson import ObjectId
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    model_validator,
)

from nsn_store.clock import to_bson_time

# --- enumerations (closed sets; the validators turn them into `enum`) -------

#: How many keyed counter adds a shard remembers (``counters.applied``).
APPLIED_WINDOW = 256

Channel = Literal["sms", "email"]
MessageStatus = Literal["scheduled", "processing", "sent", "failed", "cancelled"]
EventType = Literal[
    "queued",
    "sent",
    "delivered",
    "failed",
    "undelivered",
    "bounced",
    "opened",
    "clicked",
    "replied",
    "opted_out",
]
Provider = Literal["twilio", "resend"]
Role = Literal["owner", "admin", "user"]
PreviewStatus = Literal["pending", "streaming", "done", "error"]
Period = Literal["day", "week", "month"]
JobOutcome = Literal["running", "succeeded", "failed", "skipped"]

CHANNELS: tuple[str, ...] = get_args(Channel)
MESSAGE_STATUSES: tuple[str, ...] = get_args(MessageStatus)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PROVIDERS: tuple[str, ...] = get_args(Provider)
ROLES: tuple[str, ...] = get_args(Role)
PREVIEW_STATUSES: tuple[str, ...] = get_args(PreviewStatus)
PERIODS: tuple[str, ...] = get_args(Period)
JOB_OUTCOMES: tuple[str, ...] = get_args(JobOutcome)

#: How far before or after its anchor a workflow step may be sent: one leap year.
MAX_ANCHOR_OFFSET_SECONDS = 31_622_400

# --- patterns (server regexes are unanchored searches, hence ^...$) ---------

#: E.164: a plus sign, then up to 15 digits, the first not zero.
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
#: Deliberately simple: one @, no spaces, a dot in the domain. Real checking
#: is the provider's job; this only stops obvious garbage.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
#: A calendar day "YYYY-MM-DD" (month 01-12, day 01-31).
DAY_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
#: A reference to a secret, "scheme:location" (env:TWILIO_TOKEN,
#: vault://kv/twilio, arn:aws:secretsmanager:...). Raw API keys have no
#: scheme prefix, so pasting a secret by mistake is refused.
CREDENTIALS_REF_PATTERN = r"^[a-z][a-z0-9+.-]*:[^\s]+$"


# --- field types ------------------------------------------------------------


def _object_id(value: Any) -> ObjectId:
    """Accept an ObjectId or its 24-hex-digit string form."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and ObjectId.is_valid(value):
        return ObjectId(value)
    raise ValueError(f"expected an ObjectId or 24 hex digits, got {value!r}")


def _aware_utc(value: datetime) -> datetime:
    """Refuse naive datetimes and normalise to UTC at millisecond precision."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return to_bson_time(value)


ObjectIdType = Annotated[
    ObjectId, PlainValidator(_object_id), PlainSerializer(str, when_used="json")
]
# Strict: epoch numbers and ISO strings are refused, as the server would refuse them.
UtcDatetime = Annotated[datetime, Strict(), AfterValidator(_aware_utc)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Int = Annotated[int, Strict()]
AnchorOffset = Annotated[
    int, Strict(), Field(ge=-MAX_ANCHOR_OFFSET_SECONDS, le=MAX_ANCHOR_OFFSET_SECONDS)
]
Bool = Annotated[bool, Strict()]
Double = Annotated[float, Strict()]
# Bounded, so NaN and infinities are refused too (neither compares within a range);
# an int is written as a double, the only number type the validator takes here.
Rate = Annotated[float, Strict(), Field(gt=0, le=1_000_000), AfterValidator(float)]
TokenCount = Annotated[
    float, Strict(), Field(ge=-1_000_000_000, le=1_000_000), AfterValidator(float)
]
Number = Annotated[int, Strict()] | Annotated[float, Strict()]

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PersonName = Annotated[str, StringConstraints(max_length=200)]
PlanName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Subject = Annotated[str, StringConstraints(max_length=998)]  # RFC 5322 line limit
Body = Annotated[str, StringConstraints(min_length=1, max_length=5000)]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
Tokens = Annotated[str, StringConstraints(max_length=100_000)]
Title = Annotated[str, StringConstraints(max_length=500)]
ErrorText = Annotated[str, StringConstraints(max_length=2000)]
Address = Annotated[str, StringConstraints(min_length=1, max_length=320)]
BucketKey = Annotated[str, StringConstraints(min_length=1, max_length=512)]
#: "<job name>|<period start ISO-8601 UTC>": a 200-character name, a bar, a timestamp.
JobRunKey = Annotated[str, StringConstraints(min_length=3, max_length=256)]
HostName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Phone = Annotated[str, StringConstraints(pattern=E164_PATTERN)]
Email = Annotated[str, StringConstraints(max_length=320, pattern=EMAIL_PATTERN)]
Day = Annotated[str, StringConstraints(pattern=DAY_PATTERN)]
CredentialsRef = Annotated[
    str, StringConstraints(min_length=3, max_length=500, pattern=CREDENTIALS_REF_PATTERN)
]


# --- models -----------------------------------------------------------------


class Document(BaseModel):
    """Base of every collection model: strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: The collection this model describes (set by each subclass).
    collection_name: ClassVar[str] = ""
    #: The type of ``_id`` (the server's ObjectId unless the writer chooses a key).
    id_type: ClassVar[Any] = ObjectId
    id_description: ClassVar[str] = "document id"
    #: Extra top-level `$jsonSchema` keywords (cross-field rules).
    validator_extra: ClassVar[dict[str, Any]] = {}

    def to_document(self) -> dict[str, Any]:
        """Return the BSON-ready document, leaving unset optional fields out."""
        dumped = self.model_dump(mode="python")
        return {key: value for key, value in dumped.items() if value is not None}


class ProviderConfig(BaseModel):
    """How a tenant sends on one channel; credentials are a reference, never a secret."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel = Field(description="channel this provider serves")
    provider: Provider = Field(description="messaging provider")
    fromAddress: Address = Field(description="sender phone number, sender id or email")
    credentialsRef: CredentialsRef = Field(
        description="reference to a secret (scheme:location), never the secret"
    )


class Tenant(Document):
    """An organisation (a Clerk organisation) that owns all other data."""

    collection_name: ClassVar[str] = "tenants"

    name: Name = Field(description="display name")
    clerkOrgId: Identifier = Field(description="Clerk organisation id")
    plan: PlanName | None = Field(default=None, description="billing plan")
    clerkUserId: Identifier | None = Field(default=None, description="Clerk id of the creator")
    providerConfigs: Annotated[list[ProviderConfig], Field(max_length=20)] | None = Field(
        default=None, description="per-channel provider settings"
    )
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime | None = Field(default=None, description="last change (UTC)")


class User(Document):
    """A person signed in through Clerk, optionally attached to a tenant."""

    collection_name: ClassVar[str] = "users"

    clerkUserId: Identifier = Field(description="Clerk user id")
    tenantId: ObjectIdType | None = Field(default=None, description="tenant the user belongs to")
    role: Role = Field(default="user", description="permission level")
    email: Email | None = Field(default=None, description="email address")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")


class Contact(Document):
    """A recipient of messages, owned by one tenant."""

    collection_name: ClassVar[str] = "contacts"

    tenantId: ObjectIdType = Field(description="owning tenant")
    firstName: PersonName | None = Field(default=None, description="given name")
    lastName: PersonName | None = Field(default=None, description="family name")
    phone: Phone | None = Field(default=None, description="phone number in E.164 form")
    email: Email | None = Field(default=None, description="email address")
    optedOut: Bool | None = Field(default=None, description="true once the contact opted out")
    metadata: dict[str, Any] | None = Field(default=None, description="free-form attributes")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime | None = Field(default=None, description="last change (UTC)")


class Workflow(Document):
    """A named sequence of steps that schedules messages."""

    collection_name: ClassVar[str] = "workflows"

    tenantId: ObjectIdType = Field(description="owning tenant")
    name: Name = Field(description="display name")
    description: Description | None = Field(default=None, description="what the workflow does")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime | None = Field(default=None, description="last change (UTC)")


class InitialWorkflowStep(Document):
    """One step of a workflow: send on a channel after a delay.

    The step as migration 0001 declared it; :class:`WorkflowStep` is the
    current one. Kept unchanged so that downgrading restores 0001's validator.
    """

    collection_name: ClassVar[str] = "workflowSteps"

    workflowId: ObjectIdType = Field(description="workflow this step belongs to")
    tenantId: ObjectIdType = Field(description="owning tenant")
    order: NonNegativeInt = Field(description="position in the workflow, from 0")
    channel: Channel = Field(description="channel to send on")
    delaySeconds: NonNegativeInt = Field(default=0, description="delay before sending, seconds")
    templateId: ObjectIdType | None = Field(default=None, description="template to render")
    useAi: Bool = Field(default=False, description="personalise the message with AI")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")


class WorkflowStep(InitialWorkflowStep):
    """One step of a workflow: send on a channel after a delay.

    Migration 0002 adds ``anchorOffsetSeconds``: a step that has it is sent at
    the enrollment's anchor (an appointment) plus that offset, negative for
    before; a step without it is sent ``delaySeconds`` after the anchor.
    """

    anchorOffsetSeconds: AnchorOffset | None = Field(
        default=None, description="send at anchor + this many seconds (negative: before)"
    )


class Template(Document):
    """A message body for one channel; only email templates have a subject."""

    collection_name: ClassVar[str] = "templates"
    # A subject makes sense for email only; the server enforces it too.
    validator_extra: ClassVar[dict[str, Any]] = {
        "dependencies": {"subject": {"properties": {"channel": {"enum": ["email"]}}}}
    }

    tenantId: ObjectIdType = Field(description="owning tenant")
    name: Name = Field(description="display name")
    channel: Channel = Field(description="channel the template is for")
    subject: Subject | None = Field(default=None, description="email subject (email only)")
    body: Body = Field(description="message body")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime | None = Field(default=None, description="last change (UTC)")

    @model_validator(mode="after")
    def _subject_for_email_only(self) -> Template:
        if self.subject is not None and self.channel != "email":
            raise ValueError("only email templates have a subject")
        return self


class ScheduledMessage(Document):
    """A message due at sendAt, claimed by one worker at a time under a lease."""

    collection_name: ClassVar[str] = "scheduledMessages"

    tenantId: ObjectIdType = Field(description="owning tenant")
    contactId: ObjectIdType = Field(description="recipient contact")
    channel: Channel = Field(description="channel to send on")
    sendAt: UtcDatetime = Field(description="when the message is due (UTC)")
    status: MessageStatus = Field(description="lifecycle state")
    attempts: NonNegativeInt = Field(description="delivery attempts so far")
    workflowStepId: ObjectIdType | None = Field(default=None, description="step that scheduled it")
    templateId: ObjectIdType | None = Field(default=None, description="template to render")
    payload: dict[str, Any] | None = Field(default=None, description="rendering variables")
    lockedBy: Identifier | None = Field(default=None, description="worker holding the lease")
    lockedUntil: UtcDatetime | None = Field(default=None, description="lease expiry (UTC)")
    claimToken: Identifier | None = Field(
        default=None, description="the claim that holds (or sent) it; checked by finishing writes"
    )
    lastError: ErrorText | None = Field(default=None, description="last delivery error")
    sentAt: UtcDatetime | None = Field(default=None, description="when the provider accepted it")
    idempotencyKey: Identifier | None = Field(default=None, description="caller's dedup key")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime | None = Field(default=None, description="last change (UTC)")


class MessageEvent(Document):
    """An immutable delivery event (ours or a provider webhook's)."""

    collection_name: ClassVar[str] = "messageEvents"

    tenantId: ObjectIdType = Field(description="owning tenant")
    eventType: EventType = Field(description="what happened")
    scheduledMessageId: ObjectIdType | None = Field(default=None, description="message concerned")
    provider: Provider | None = Field(default=None, description="provider that reported it")
    providerMessageId: Identifier | None = Field(default=None, description="provider's message id")
    occurredAt: UtcDatetime | None = Field(default=None, description="when it happened (UTC)")
    raw: dict[str, Any] | None = Field(default=None, description="provider payload as received")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")


class AIPreview(Document):
    """A short-lived AI draft, removed by the TTL monitor after expiresAt."""

    collection_name: ClassVar[str] = "aiPreviews"

    tenantId: ObjectIdType = Field(description="owning tenant")
    prompt: Prompt = Field(description="prompt sent to the model")
    status: PreviewStatus = Field(description="generation state")
    expiresAt: UtcDatetime = Field(description="TTL expiry (UTC)")
    userId: ObjectIdType | None = Field(default=None, description="user who asked")
    tokens: Tokens | None = Field(default=None, description="text streamed so far")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    # Addition to the data model: previews change while streaming, and the
    # convention is that documents that change carry updatedAt.
    updatedAt: UtcDatetime | None = Field(default=None, description="last change (UTC)")


class RagDocument(Document):
    """A knowledge-base passage with its optional embedding."""

    collection_name: ClassVar[str] = "ragDocuments"

    tenantId: ObjectIdType = Field(description="owning tenant")
    text: Text = Field(description="passage text")
    title: Title | None = Field(default=None, description="passage title")
    metadata: dict[str, Any] | None = Field(default=None, description="free-form attributes")
    embedding: Annotated[list[Double], Field(min_length=1, max_length=8192)] | None = Field(
        default=None, description="embedding vector (doubles)"
    )
    createdAt: UtcDatetime = Field(description="creation time (UTC)")


class Counter(Document):
    """One shard of a sharded counter; the count is the sum over shards."""

    collection_name: ClassVar[str] = "counters"

    tenantId: ObjectIdType = Field(description="owning tenant")
    metric: Identifier = Field(description="metric name, e.g. messages.sent")
    shard: NonNegativeInt = Field(description="shard number, 0..N-1")
    value: Int = Field(description="this shard's partial count (int or long)")
    applied: Annotated[list[Identifier], Field(max_length=APPLIED_WINDOW)] | None = Field(
        default=None, description="keys of the last keyed adds, so a retried add applies once"
    )
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime = Field(description="last increment (UTC)")


class Aggregate(Document):
    """A rolled-up metric value for one tenant, period and day."""

    collection_name: ClassVar[str] = "aggregates"

    tenantId: ObjectIdType = Field(description="owning tenant")
    period: Period = Field(description="rollup period")
    date: Day = Field(description="UTC start of the period, YYYY-MM-DD")
    metric: Identifier = Field(description="metric name, e.g. messages.sent")
    value: Number = Field(description="rolled-up value")
    createdAt: UtcDatetime = Field(description="creation time (UTC)")
    updatedAt: UtcDatetime = Field(description="last rollup (UTC)")


# --- migration 0002: state the worker processes share --------------------


class RateLimitBucket(Document):
    """A token bucket shared by every worker: sends allowed per tenant, channel and sender."""

    collection_name: ClassVar[str] = "rateLimitBuckets"
    id_type: ClassVar[Any] = BucketKey
    id_description: ClassVar[str] = "bucket key, e.g. tenant:<hex>|sms|+15550001111"

    tenantId: ObjectIdType | None = Field(
        default=None, description="tenant limited (absent: a sender shared across tenants)"
    )
    channel: Channel = Field(description="channel the bucket limits")
    sender: Address | None = Field(default=None, description="sending number or address")
    tokens: TokenCount = Field(description="tokens left (negative: reserved ahead)")
    capacity: Rate = Field(description="most tokens the bucket holds (the burst)")
    refillPerSecond: Rate = Field(description="tokens added per second")
    updatedAt: UtcDatetime = Field(description="when tokens were last computed (UTC)")


class JobRun(Document):
    """One period of a periodic job; its key makes each period run once across workers."""

    collection_name: ClassVar[str] = "jobRuns"
    id_type: ClassVar[Any] = JobRunKey
    id_description: ClassVar[str] = "<job name>|<period start, ISO-8601 UTC>"

    job: Name = Field(description="job name")
    periodStart: UtcDatetime = Field(description="start of the period (UTC)")
    periodEnd: UtcDatetime = Field(description="end of the period, exclusive (UTC)")
    holder: Identifier = Field(description="worker id running or that ran it")
    leaseUntil: UtcDatetime = Field(description="the holder's lease; after it, a takeover")
    startedAt: UtcDatetime = Field(description="when the holder started it (UTC)")
    finishedAt: UtcDatetime | None = Field(default=None, description="when it ended (UTC)")
    outcome: JobOutcome = Field(description="running, or how it ended")
    error: ErrorText | None = Field(default=None, description="why it failed")

    @model_validator(mode="after")
    def _period_ends_after_it_starts(self) -> JobRun:
        if self.periodEnd <= self.periodStart:
            raise ValueError("periodEnd must be after periodStart")
        return self


class WorkerRecord(Document):
    """A live worker process, refreshed by its heartbeat; a TTL index drops silent ones."""

    collection_name: ClassVar[str] = "workers"
    id_type: ClassVar[Any] = Identifier
    id_description: ClassVar[str] = "worker id"

    host: HostName = Field(description="host the worker runs on")
    pid: NonNegativeInt = Field(description="process id")
    version: Version = Field(description="nsn-store version")
    startedAt: UtcDatetime = Field(description="when the worker started (UTC)")
    heartbeatAt: UtcDatetime = Field(description="last heartbeat (UTC)")
    concurrency: Annotated[int, Strict(), Field(ge=1, le=100_000)] = Field(
        description="messages sent at once"
    )
    tenants: Annotated[list[ObjectIdType], Field(max_length=10_000)] | None = Field(
        default=None, description="tenants it serves (absent: all)"
    )


#: Every collection model as the newest migration declares it, in creation order.
MODELS: tuple[type[Document], ...] = (
    Tenant,
    User,
    Contact,
    Workflow,
    WorkflowStep,
    Template,
    ScheduledMessage,
    MessageEvent,
    AIPreview,
    RagDocument,
    Counter,
    Aggregate,
    RateLimitBucket,
    JobRun,
    WorkerRecord,
)
