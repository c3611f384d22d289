"""Tenants: one per Clerk organisation under a race, provider configs that hold no secret, users."""

from __future__ import annotations

import threading
from typing import Any

import pymongo
import pytest
from _directory_world import CLINIC_NUMBERS, sms_config, snapshot
from _support import assert_async_twin, init_schema_async

import nsn_store
from nsn_store.clock import ManualClock
from nsn_store.directory import looks_like_secret
from nsn_store.errors import DuplicateKeyError, InvalidArgumentError, NotFoundError
from nsn_store.migration._runner import init_schema


@pytest.fixture
def tenants(db: Any, clock: ManualClock) -> nsn_store.Tenants:
    init_schema(db)
    return nsn_store.Tenants(db, clock=clock)


def test_get_or_create_creates_once_and_keeps_the_first_name(
    tenants: nsn_store.Tenants, db: Any
) -> None:
    first = tenants.get_or_create("org_1", name="Clinic One")
    again = tenants.get_or_create("org_1", name="Another name")
    assert again == first
    assert (first["name"], first["clerkOrgId"]) == ("Clinic One", "org_1")
    assert tenants.get_or_create("org_2")["name"] == "org_2"  # the org id when unnamed
    assert db.tenants.count_documents({}) == 2
    assert tenants.round_trips == 3  # one upsert each


def test_sixteen_threads_with_one_org_id_create_one_tenant(db: Any, clock: ManualClock) -> None:
    init_schema(db)
    barrier = threading.Barrier(16)
    ids: list[Any] = []
    errors: list[BaseException] = []

    def create() -> None:
        tenants = nsn_store.Tenants(db, clock=clock)
        barrier.wait()
        try:
            ids.append(tenants.get_or_create("org_race", name="Race")["_id"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ids) == 16 and len(set(ids)) == 1
    assert db.tenants.count_documents({"clerkOrgId": "org_race"}) == 1


class _LosingRace:
    """The database, except that the first tenant upsert loses a race it cannot retry.

    A racer inserts the organisation's tenant first and the upsert fails with a
    duplicate key, as a server that does not retry the upsert reports it.
    """

    def __init__(self, db: Any, clock: ManualClock) -> None:
        self.db, self.clock, self.lost = db, clock, False

    def __getitem__(self, name: str) -> Any:
        return self if name == "tenants" else self.db[name]

    def find_one_and_update(self, filter: Any, update: Any, **kwargs: Any) -> Any:
        if not self.lost:
            self.lost = True
            self.db.tenants.insert_one({**filter, "name": "Winner", "createdAt": self.clock.now()})
            raise pymongo.errors.DuplicateKeyError("E11000 duplicate key", 11000)
        return self.db.tenants.find_one_and_update(filter, update, **kwargs)

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self.db.tenants.find_one(*args, **kwargs)


def test_an_upsert_that_loses_the_insert_race_returns_the_winners_tenant(
    db: Any, clock: ManualClock
) -> None:
    init_schema(db)
    tenants = nsn_store.Tenants(_LosingRace(db, clock), clock=clock)
    tenant = tenants.get_or_create("org_race", name="Loser")
    assert tenant["name"] == "Winner"
    assert db.tenants.count_documents({"clerkOrgId": "org_race"}) == 1
    assert tenants.round_trips == 2  # the upsert, then the read of the winner


def test_get_raises_not_found_for_a_missing_tenant(tenants: nsn_store.Tenants) -> None:
    with pytest.raises(NotFoundError):
        tenants.get("0" * 24)


def test_provider_configs_are_stored_normalised(tenants: nsn_store.Tenants) -> None:
    tenant = tenants.get_or_create("org_1")["_id"]
    email = {
        "channel": "email",
        "provider": "resend",
        "fromAddress": " Clinic@Example.COM ",
        "credentialsRef": "vault://kv/data/resend#api_key",
    }
    stored = tenants.set_provider_configs(
        tenant, [sms_config("+1 415-555-2671"), sms_config("NoShowNinja"), email]
    )
    assert [c["fromAddress"] for c in stored["providerConfigs"]] == [
        "+14155552671",
        "NoShowNinja",  # an alphanumeric sender id
        "clinic@example.com",
    ]
    assert tenants.get(tenant)["providerConfigs"] == stored["providerConfigs"]


SECRET_REFS = {
    "a raw auth token": "0123456789abcdef0123456789abcdef",
    "a token behind a scheme": "twilio:0123456789abcdef0123456789abcdef",
    "a token as the env name": "env:0123456789abcdef0123456789abcdef",
    "an env value, not a name": "env:sk-live value",
    "a stripe-style key": "secret:sk_live_abcdefgh",
    "a resend key": "env:re_123456789abc",
    "credentials in a url": "https://user:hunter2@vault.example/kv/twilio",
    "a token parameter": "vault://kv/twilio?token=abc",
    "a pem block": "pem:-----BEGIN PRIVATE KEY-----",
    "an aws access key": "aws:AKIAIOSFODNN7EXAMPLE",
}
GOOD_REFS = [
    "env:TWILIO_AUTH_TOKEN",
    "vault://kv/data/noshowninja-production-twilio",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:twilio-AbCdEf",
    "gcp-sm:projects/nsn-prod/secrets/twilio/versions/3",
]


@pytest.mark.parametrize("ref", list(SECRET_REFS.values()), ids=list(SECRET_REFS))
def test_a_config_whose_reference_looks_like_a_secret_is_refused_unechoed(
    tenants: nsn_store.Tenants, db: Any, ref: str
) -> None:
    tenant = tenants.get_or_create("org_1")["_id"]
    before = snapshot(db)
    with pytest.raises(InvalidArgumentError) as refused:
        tenants.set_provider_configs(
            tenant, [{**sms_config(CLINIC_NUMBERS[0]), "credentialsRef": ref}]
        )
    assert refused.value.argument == "provider_configs[0].credentialsRef"
    assert ref not in str(refused.value) and ref not in repr(refused.value)
    assert snapshot(db) == before


@pytest.mark.parametrize("ref", GOOD_REFS)
def test_references_to_secret_stores_are_accepted(ref: str) -> None:
    assert not looks_like_secret(ref)


@pytest.mark.parametrize("field", ["authToken", "apiKey", "password"])
def test_a_config_carrying_any_other_field_is_refused(
    tenants: nsn_store.Tenants, db: Any, field: str
) -> None:
    tenant = tenants.get_or_create("org_1")["_id"]
    before = snapshot(db)
    config = {**sms_config(CLINIC_NUMBERS[0]), field: "f3a9c2d1e5b7a6c4d8e2f1a3b5c7d9e1"}
    with pytest.raises(InvalidArgumentError) as refused:
        tenants.set_provider_configs(tenant, [config])
    assert "f3a9c2d1" not in str(refused.value)
    assert snapshot(db) == before


def test_a_sender_address_another_tenant_uses_is_refused(tenants: nsn_store.Tenants) -> None:
    first = tenants.get_or_create("org_1")["_id"]
    second = tenants.get_or_create("org_2")["_id"]
    tenants.set_provider_configs(first, [sms_config(CLINIC_NUMBERS[0])])
    with pytest.raises(InvalidArgumentError, match="another tenant"):
        tenants.set_provider_configs(second, [sms_config(CLINIC_NUMBERS[0])])
    tenants.set_provider_configs(first, [sms_config(CLINIC_NUMBERS[0])])  # its own: fine


def test_a_mismatched_provider_is_refused(tenants: nsn_store.Tenants) -> None:
    tenant = tenants.get_or_create("org_1")["_id"]
    with pytest.raises(InvalidArgumentError, match="twilio"):
        tenants.set_provider_configs(
            tenant, [{**sms_config(CLINIC_NUMBERS[0]), "provider": "resend"}]
        )


def test_a_user_belongs_to_its_tenant_and_no_other(tenants: nsn_store.Tenants) -> None:
    mine = tenants.get_or_create("org_1")["_id"]
    theirs = tenants.get_or_create("org_2")["_id"]
    user = tenants.add_user(mine, "user_ada", role="owner", email="Ada@Example.com")
    assert (user["role"], user["email"], user["tenantId"]) == ("owner", "ada@example.com", mine)
    assert tenants.add_user(mine, "user_ada") == user  # again: the same user, unchanged
    assert tenants.check_access(mine, "user_ada") == user
    tenants.add_user(theirs, "user_bob")
    outcomes = set()
    for tenant, clerk_user in ((theirs, "user_ada"), (mine, "user_nobody"), ("f" * 24, "user_ada")):
        with pytest.raises(NotFoundError) as refused:
            tenants.check_access(tenant, clerk_user)
        outcomes.add(type(refused.value))
    assert outcomes == {NotFoundError}


def test_a_user_of_another_tenant_cannot_be_added(tenants: nsn_store.Tenants) -> None:
    mine = tenants.get_or_create("org_1")["_id"]
    theirs = tenants.get_or_create("org_2")["_id"]
    tenants.add_user(theirs, "user_bob")
    with pytest.raises(DuplicateKeyError):
        tenants.add_user(mine, "user_bob")
    with pytest.raises(NotFoundError):
        tenants.add_user("f" * 24, "user_new")


def test_the_async_twin_has_the_same_surface() -> None:
    assert_async_twin(nsn_store.Tenants, nsn_store.AsyncTenants)


async def test_the_async_twin_creates_one_tenant(async_db: Any, clock: ManualClock) -> None:
    await init_schema_async(async_db)
    tenants = nsn_store.AsyncTenants(async_db, clock=clock)
    first = await tenants.get_or_create("org_1", name="One")
    assert await tenants.get_or_create("org_1") == first
    stored = await tenants.set_provider_configs(first["_id"], [sms_config(CLINIC_NUMBERS[0])])
    assert stored["providerConfigs"][0]["fromAddress"] == CLINIC_NUMBERS[0]
    await tenants.add_user(first["_id"], "user_ada")
    assert (await tenants.check_access(first["_id"], "user_ada"))["clerkUserId"] == "user_ada"
