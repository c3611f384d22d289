"""Pure tests of the scheduling builders: index shapes (ESR), claim conditions, backoff."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock.filtering import filter_applies

from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u
from nsn_store.schema._models import MessageEvent, ScheduledMessage
from nsn_store.schema._registry import SCHEMA

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
RANGE_OPERATORS = {"$lt", "$lte", "$gt", "$gte"}


def _index_keys(collection: str, name: str) -> list[str]:
    if name == "_id_":
        return ["_id"]
    spec = SCHEMA.get(collection).index(name)
    assert all(direction == 1 for _, direction in spec.keys)
    return [key for key, _ in spec.keys]


def _is_range(value: Any) -> bool:
    return isinstance(value, dict) and bool(RANGE_OPERATORS & set(value))


def esr_problems(query: q.Query) -> list[str]:
    """Return how ``query`` breaks the ESR rule on its declared index (empty if it does not)."""
    keys = _index_keys(query.collection, query.index)
    served = {f: v for f, v in query.filter.items() if f not in query.residual}
    if [f for f, _ in query.sort] == keys and set(served) <= set(keys):
        # A walk in full index order (the fairness probe): no in-memory sort, and
        # each filtered key bounds the walk (a server seeks past what is out of bounds).
        return [] if all(d == 1 for _, d in query.sort) else ["the sort must be ascending"]
    equality = {f for f, v in served.items() if not _is_range(v)}
    ranges = [f for f, v in served.items() if _is_range(v)]
    sort = [f for f, _ in query.sort if f not in equality]
    problems = []
    if set(keys[: len(equality)]) != equality:
        problems.append(f"equality fields {sorted(equality)} are not the prefix of {keys}")
    after = keys[len(equality) :]
    if after[: len(sort)] != sort:
        problems.append(f"sort {sort} does not follow the equality fields in {keys}")
    after = after[len(sort) :]
    range_only = [f for f in ranges if f not in sort]
    if set(after[: len(range_only)]) != set(range_only):
        problems.append(f"range fields {range_only} do not come after the sort in {keys}")
    if set(query.residual) & set(keys):
        problems.append(f"residual fields {query.residual} are in the index {keys}")
    if any(direction != 1 for _, direction in query.sort):
        problems.append("the sort must run in index order (ascending)")
    return problems


def _query_id(query: q.Query) -> str:
    return f"{query.collection}.{query.index}[{','.join(query.filter)}]"


@pytest.mark.parametrize("query", q.all_queries(NOW), ids=_query_id)
def test_every_query_is_served_by_its_declared_index_in_esr_order(query: q.Query) -> None:
    assert esr_problems(query) == []


def test_the_esr_check_rejects_a_range_before_the_sort() -> None:
    # by_status is {status, lockedUntil}: sorting by sendAt on it needs an in-memory sort.
    wrong = q.Query(
        q.MESSAGES, {"status": "scheduled", "sendAt": {"$lte": NOW}}, "by_status", [("sendAt", 1)]
    )
    assert esr_problems(wrong)


def test_the_due_scan_uses_by_sendAt_and_sorts_by_sendAt() -> None:
    query = q.due_query(NOW)
    assert (query.index, query.sort) == ("by_sendAt", [("sendAt", 1)])
    assert query.filter == {"status": "scheduled", "sendAt": {"$lte": NOW}}


def _message(status: str, send_at: datetime, locked_until: datetime | None = None) -> dict:
    doc = {"_id": ObjectId(), "status": status, "sendAt": send_at}
    if locked_until is not None:
        doc["lockedUntil"] = locked_until
    return doc


MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("doc", "claimable"),
    [
        (_message("scheduled", NOW - MINUTE), True),
        (_message("scheduled", NOW), True),
        (_message("scheduled", NOW + MINUTE), False),
        (_message("processing", NOW - MINUTE, NOW - MINUTE), True),
        (_message("processing", NOW - MINUTE, NOW), True),
        (_message("processing", NOW - MINUTE, NOW + MINUTE), False),
        (_message("sent", NOW - MINUTE), False),
        (_message("failed", NOW - MINUTE), False),
        (_message("cancelled", NOW - MINUTE), False),
    ],
    ids=[
        "scheduled-past",
        "scheduled-now",
        "scheduled-future",
        "lease-expired",
        "lease-ends-now",
        "lease-live",
        "sent",
        "failed",
        "cancelled",
    ],
)
def test_claim_filter_matches_only_claimable_messages(doc: dict, claimable: bool) -> None:
    assert filter_applies(q.claim_query([doc["_id"]], NOW).filter, doc) is claimable
    assert filter_applies(q.claim_query([ObjectId()], NOW).filter, doc) is False


def test_a_claimed_message_no_longer_matches_the_claim_filter() -> None:
    doc = _message("scheduled", NOW - MINUTE)
    end = u.lease_end(NOW, timedelta(minutes=5))
    doc.update(u.claim_update("w1", NOW, end, "token-1")["$set"])
    assert not filter_applies(q.claim_query([doc["_id"]], NOW).filter, doc)
    assert filter_applies(q.held_query([doc["_id"]], "token-1").filter, doc)
    # Another claim by the same worker id in the same millisecond does not read it back.
    assert not filter_applies(q.held_query([doc["_id"]], "token-2").filter, doc)
    assert filter_applies(q.claim_query([doc["_id"]], end).filter, doc)  # claimable once expired


def test_holder_filter_needs_the_worker_and_a_live_lease() -> None:
    doc = {"_id": ObjectId(), "status": "processing", "lockedBy": "w1", "lockedUntil": NOW + MINUTE}
    assert filter_applies(u.holder_filter(doc["_id"], "w1", NOW), doc)
    assert not filter_applies(u.holder_filter(doc["_id"], "w2", NOW), doc)
    assert not filter_applies(u.holder_filter(doc["_id"], "w1", NOW + MINUTE), doc)


def test_a_claimed_document_gives_the_shard_key_to_finishing_writes() -> None:
    tenant, other = ObjectId(), ObjectId()
    doc = {
        "_id": ObjectId(),
        "tenantId": tenant,
        "status": "processing",
        "lockedBy": "w1",
        "lockedUntil": NOW + MINUTE,
    }
    assert q.message_ref(doc) == (doc["_id"], tenant)
    assert q.message_ref(str(doc["_id"])) == (doc["_id"], None)
    targeted = u.holder_filter(doc["_id"], "w1", NOW, tenant)
    assert targeted["tenantId"] == tenant and filter_applies(targeted, doc)
    assert not filter_applies(u.holder_filter(doc["_id"], "w1", NOW, other), doc)


def test_pick_candidates_merges_both_scans_oldest_first_without_duplicates() -> None:
    old, mid, new = (_message("scheduled", NOW - MINUTE * k) for k in (3, 2, 1))
    picked = q.pick_candidates([mid, new], [old, mid], limit=10)
    assert picked == [old["_id"], mid["_id"], new["_id"]]
    assert q.pick_candidates([mid, new], [old], limit=2) == [old["_id"], mid["_id"]]


def test_lease_end_is_at_bson_precision_and_positive() -> None:
    assert u.lease_end(NOW, timedelta(seconds=1, microseconds=1500)) == NOW + timedelta(
        seconds=1, milliseconds=1
    )
    with pytest.raises(ValueError, match="positive"):
        u.lease_end(NOW, timedelta(0))


def test_backoff_schedule_is_reproducible_with_a_seeded_rng() -> None:
    base = timedelta(seconds=30)
    first = [u.backoff(n, base, random.Random(7)) for n in range(1, 6)]
    again = [u.backoff(n, base, random.Random(7)) for n in range(1, 6)]
    assert first == again
    fraction = random.Random(7).random()
    assert first[0] == timedelta(milliseconds=int((15 + 15 * fraction) * 1000))


@settings(deadline=None)  # a noisy shared machine must not fail a pure property
@given(attempts=st.integers(1, 200), seed=st.integers(0, 2**32), base_s=st.integers(1, 600))
def test_backoff_is_within_half_step_and_step_and_capped(
    attempts: int, seed: int, base_s: int
) -> None:
    base = timedelta(seconds=base_s)
    step = min(u.MAX_BACKOFF.total_seconds(), base_s * 2.0 ** (attempts - 1))
    delay = u.backoff(attempts, base, random.Random(seed)).total_seconds()
    assert step / 2 - 0.001 <= delay <= step
    assert delay <= u.MAX_BACKOFF.total_seconds()


@pytest.mark.parametrize(
    ("attempts", "retry", "expected"),
    [(1, True, True), (4, True, True), (5, True, False), (6, True, False), (1, False, False)],
    ids=["first", "before-last", "last", "beyond", "no-retry"],
)
def test_should_retry_until_max_attempts(attempts: int, retry: bool, expected: bool) -> None:
    assert u.should_retry(attempts, 5, retry) is expected


def test_new_message_leaves_optional_fields_out_and_fits_the_model() -> None:
    tenant, contact = ObjectId(), ObjectId()
    doc = u.new_message(tenant, contact, "sms", NOW + MINUTE, NOW)
    assert set(doc) == {
        "tenantId",
        "contactId",
        "channel",
        "sendAt",
        "status",
        "attempts",
        "createdAt",
    }
    ScheduledMessage.model_validate(doc)
    full = u.new_message(
        tenant,
        contact,
        "email",
        NOW,
        NOW,
        payload={"a": 1},
        workflow_step_id=ObjectId(),
        template_id=ObjectId(),
        idempotency_key="k",
    )
    ScheduledMessage.model_validate(full)
    assert full["idempotencyKey"] == "k"


def test_new_event_leaves_optional_fields_out_and_fits_the_model() -> None:
    event = u.new_event(ObjectId(), "queued", NOW)
    assert set(event) == {"tenantId", "eventType", "createdAt"}
    MessageEvent.model_validate(event)
    raw = u.failure_raw("timeout", 2, NOW + MINUTE)
    MessageEvent.model_validate(
        u.new_event(ObjectId(), "failed", NOW, message_id=ObjectId(), raw=raw)
    )
    assert raw == {"error": "timeout", "attempts": 2, "final": False, "retryAt": NOW + MINUTE}


def test_finishing_updates_release_the_lease() -> None:
    for update in (
        u.sent_update(NOW),
        u.retry_update(NOW, NOW, "x"),
        u.failed_update(NOW, "x"),
        u.cancel_update(NOW),
    ):
        assert {"lockedBy": "", "lockedUntil": ""}.items() <= update["$unset"].items()


def test_a_failure_drops_the_claim_and_a_send_or_cancel_keeps_it() -> None:
    """A sent or cancelled message keeps its claim's token (a repeated mark_sent finds it);
    a failure drops it, so a later cancel cannot pass for a cancel during that claim."""
    assert "claimToken" in u.retry_update(NOW, NOW, "x")["$unset"]
    assert "claimToken" in u.failed_update(NOW, "x")["$unset"]
    assert "claimToken" not in u.sent_update(NOW)["$unset"]
    assert "claimToken" not in u.cancel_update(NOW)["$unset"]


@pytest.mark.parametrize(
    ("channel", "provider", "provider_id", "expected"),
    [
        ("sms", None, "SM1", "twilio"),
        ("email", None, "re_1", "resend"),
        ("sms", "twilio", None, "twilio"),
        ("sms", None, None, None),
    ],
    ids=["sms-default", "email-default", "explicit", "no-id"],
)
def test_sent_provider_defaults_from_the_channel(
    channel: str, provider: str | None, provider_id: str | None, expected: str | None
) -> None:
    assert u.sent_provider(channel, provider, provider_id) == expected


def test_clip_error_bounds_text_and_names_exceptions() -> None:
    assert len(u.clip_error("x" * 5000)) == u.ERROR_LIMIT
    assert u.clip_error(TimeoutError("slow")) == "TimeoutError: slow"


def test_split_abandoned_gives_up_only_after_the_last_attempt() -> None:
    docs = [{"_id": ObjectId(), "attempts": n} for n in (1, 2, 3, 4)]
    retry, abandoned = q.split_abandoned(docs, 3)
    assert [d["attempts"] for d in retry] == [1, 2]
    assert [d["attempts"] for d in abandoned] == [3, 4]
