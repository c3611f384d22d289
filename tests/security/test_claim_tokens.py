"""Issue 9, mechanism 2: each claim_due call reads back only what it won, by its own token.

Before: the read-back after the claim matched ``lockedBy`` and ``lockedUntil``, so two
claims by one worker id in the same millisecond each received the other's wins (one
message handed to two senders), and a finishing write checked only the worker id, so a
claim that lost its lease to a later claim under the same worker id could still finish it.
Each scenario runs on the sync and the async scheduler.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from _scheduler_kit import Kit, async_kit_fixture, do, once_before, sync_kit_fixture, twins  # noqa: F401 (fixtures)

from nsn_store.errors import LeaseLostError
from nsn_store.scheduler import _queries as q
from nsn_store.scheduler import _updates as u

LEASE = timedelta(minutes=5)


async def two_claims_in_one_millisecond_share_nothing(kit: Kit) -> None:
    """Claim A finds 4 candidates; claim B (same scheduler, same worker id, same instant)
    takes the 2 oldest before A's update runs; A wins the other 2 and must get only those."""
    ids = await kit.due(4)
    second = once_before(
        kit, "update_many", q.MESSAGES, lambda: kit.sched.claim_due("w", limit=2, lease=LEASE)
    )
    first = await kit.claim("w", limit=4, lease=LEASE)
    won_a, won_b = {m["_id"] for m in first}, {m["_id"] for m in second[0]}
    assert won_a.isdisjoint(won_b), "one message handed to two claims"
    assert won_a | won_b == set(ids) and len(first) + len(second[0]) == 4
    assert {m["claimToken"] for m in first}.isdisjoint({m["claimToken"] for m in second[0]})


async def a_superseded_claim_cannot_finish_under_the_same_worker_id(kit: Kit) -> None:
    """The first claim's lease ran out and a second claim by the same worker id took the
    message: the first claim's document no longer finishes it, the second's does."""
    [mid] = await kit.due()
    [old] = await kit.claim("w", lease=LEASE)
    kit.clock.advance(LEASE)
    [new] = await kit.claim("w", lease=LEASE)
    assert new["_id"] == mid and new["claimToken"] != old["claimToken"]
    for finish in (
        lambda: kit.sched.mark_sent(old, "w"),
        lambda: kit.sched.mark_failed(old, "w", "timeout"),
        lambda: kit.sched.extend_lease(old, "w", LEASE),
    ):
        with pytest.raises(LeaseLostError):
            await do(finish())
    assert (await kit.message(mid))["claimToken"] == new["claimToken"]
    assert (await do(kit.sched.mark_sent(new, "w")))["status"] == "sent"
    assert len(await kit.events(mid, "sent")) == 1


async def a_bare_id_is_checked_by_worker_id_only(kit: Kit) -> None:
    """Documented and weaker: without the claimed document there is no token to check."""
    [mid] = await kit.due()
    await kit.claim("w", lease=LEASE)
    with pytest.raises(LeaseLostError):
        await do(kit.sched.mark_sent(mid, "other"))
    assert (await do(kit.sched.mark_sent(mid, "w")))["status"] == "sent"


async def a_sent_message_keeps_the_token_of_the_claim_that_sent_it(kit: Kit) -> None:
    [mid] = await kit.due()
    [claimed] = await kit.claim("w", lease=LEASE)
    assert len(claimed["claimToken"]) == 32  # 128 random bits, hex
    await do(kit.sched.mark_sent(claimed, "w"))
    assert (await kit.message(mid))["claimToken"] == claimed["claimToken"]


for _scenario in (
    two_claims_in_one_millisecond_share_nothing,
    a_superseded_claim_cannot_finish_under_the_same_worker_id,
    a_bare_id_is_checked_by_worker_id_only,
    a_sent_message_keeps_the_token_of_the_claim_that_sent_it,
):
    globals().update(twins(_scenario))


def test_six_threads_sharing_a_scheduler_and_a_worker_id_never_share_a_message(
    sync_kit: Kit,
) -> None:
    """The issue's reproduction: the clock is frozen, so every claim has the same lease end."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    kit = sync_kit
    due = [
        u.new_message(kit.tenant, kit.contact, "sms", kit.clock.now(), kit.clock.now())
        for _ in range(120)
    ]
    kit.db[q.MESSAGES].insert_many(due)
    barrier = Barrier(6)

    def drain() -> list[object]:
        barrier.wait()
        won = []
        while batch := kit.sched.claim_due("shared", limit=5, lease=LEASE):
            won += [message["_id"] for message in batch]
        return won

    with ThreadPoolExecutor(6) as pool:
        claimed = [
            mid for future in [pool.submit(drain) for _ in range(6)] for mid in future.result()
        ]
    assert len(claimed) == len(set(claimed)) == 120
