"""Issue 9, mechanism 8: due-ness and lease expiry are judged by the database server's clock.

Before: each worker judged by its own clock, so a worker whose clock ran ahead claimed
messages before they were due and took over leases that were still live (a message sent
twice), and one whose clock ran behind kept finishing messages whose lease had ended.
Now the scheduler corrects its clock by the offset the server reports (``hello``'s
``localTime``, measured around the round trip, re-measured every ``offset_refresh``
seconds). The embedded database answers ``hello`` from its own clock, which here is the
test's ``ManualClock``; a worker's skewed clock is that clock plus a fixed skew.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from _scheduler_kit import Kit, async_kit_fixture, do, sync_kit_fixture, twins  # noqa: F401 (fixtures)
from pymongo.errors import OperationFailure

from nsn_store.clock import ManualClock, ServerClock, server_offset
from nsn_store.errors import LeaseLostError
from nsn_store.scheduler._service import Scheduler

LEASE = timedelta(minutes=5)
SKEW = timedelta(minutes=10)


class SkewedClock:
    """A worker's clock: the server's (the kit's ManualClock) off by ``skew``."""

    def __init__(self, server: ManualClock, skew: timedelta) -> None:
        self.server, self.skew = server, skew

    def now(self) -> datetime:
        return self.server.now() + self.skew


async def a_worker_whose_clock_runs_ahead_steals_no_live_lease(kit: Kit) -> None:
    [mid] = await kit.due()
    later = await do(
        kit.sched.schedule(kit.tenant, kit.contact, "sms", kit.clock.now() + timedelta(minutes=1))
    )
    [held] = await kit.claim("w1", lease=LEASE)
    ahead = kit.scheduler(clock=SkewedClock(kit.clock, SKEW))
    assert await do(ahead.claim_due("w2", lease=LEASE)) == []  # neither the live lease
    assert (await kit.message(later["_id"]))["status"] == "scheduled"  # nor the early one
    assert ahead.server_clock.offset == -SKEW
    assert (await do(kit.sched.mark_sent(held, "w1")))["status"] == "sent"
    assert len(await kit.events(mid, "sent")) == 1


async def a_worker_whose_clock_runs_behind_takes_over_an_expired_lease(kit: Kit) -> None:
    [mid] = await kit.due()
    await kit.claim("w1", lease=LEASE)
    behind = kit.scheduler(clock=SkewedClock(kit.clock, -SKEW))
    assert await do(behind.claim_due("w2", lease=LEASE)) == []  # still live
    kit.clock.advance(LEASE)
    [taken] = await do(behind.claim_due("w2", lease=LEASE))
    assert taken["_id"] == mid and taken["lockedUntil"] == kit.clock.now() + LEASE


async def a_worker_whose_clock_runs_behind_cannot_finish_after_its_lease(kit: Kit) -> None:
    await kit.due()
    behind = kit.scheduler(clock=SkewedClock(kit.clock, -SKEW))
    [held] = await do(behind.claim_due("w1", lease=LEASE))
    assert held["lockedUntil"] == kit.clock.now() + LEASE  # the lease is in server time
    kit.clock.advance(LEASE)
    for finish in (
        lambda: behind.mark_sent(held, "w1"),
        lambda: behind.extend_lease(held, "w1", LEASE),
    ):
        with pytest.raises(LeaseLostError):
            await do(finish())


async def a_shared_manual_clock_gives_a_zero_offset(kit: Kit) -> None:
    await kit.due()
    assert kit.sched.server_clock.offset == timedelta(0)
    assert not kit.sched.server_clock.stale()


for _scenario in (
    a_worker_whose_clock_runs_ahead_steals_no_live_lease,
    a_worker_whose_clock_runs_behind_takes_over_an_expired_lease,
    a_worker_whose_clock_runs_behind_cannot_finish_after_its_lease,
    a_shared_manual_clock_gives_a_zero_offset,
):
    globals().update(twins(_scenario))


class CountingDatabase:
    """Delegates to a database, counting the commands sent (``hello`` measures the offset)."""

    def __init__(self, db: Any) -> None:
        self.db, self.commands = db, []

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self.commands.append(args[0])
        return self.db.command(*args, **kwargs)

    def __getitem__(self, name: str) -> Any:
        return self.db[name]


@pytest.mark.parametrize(("refresh", "hellos"), [(60.0, 1), (0.0, 4)])
def test_the_offset_is_measured_once_per_refresh(
    sync_kit: Kit, refresh: float, hellos: int
) -> None:
    counting = CountingDatabase(sync_kit.db)
    sched = Scheduler(counting, clock=sync_kit.clock, offset_refresh=refresh)
    for _ in range(4):
        sched.backlog()
    assert counting.commands == ["hello"] * hellos
    assert sched.round_trips == 4 * 5  # a backlog reads 5 times; commands are not counted


def test_server_time_off_trusts_the_local_clock(sync_kit: Kit) -> None:
    """For virtual time (the simulation): no hello, the scheduler's own clock decides."""
    kit = sync_kit
    counting = CountingDatabase(kit.db)
    ahead = Scheduler(counting, clock=SkewedClock(kit.clock, SKEW), server_time=False)
    kit.sched.schedule(kit.tenant, kit.contact, "sms", kit.clock.now() + timedelta(minutes=1))
    assert len(ahead.claim_due("w", lease=LEASE)) == 1 and counting.commands == []


class NoHelloDatabase(CountingDatabase):
    """A server that refuses ``hello`` (as one before MongoDB 4.4.2 would)."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self.commands.append(args[0])
        raise OperationFailure("no such command: 'hello'", code=59)


def test_a_server_that_refuses_hello_leaves_the_local_clock_in_charge(
    sync_kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    refusing = NoHelloDatabase(sync_kit.db)
    sched = Scheduler(refusing, clock=SkewedClock(sync_kit.clock, SKEW))
    assert sched.backlog().now == sync_kit.clock.now() + SKEW
    assert sched.backlog().due_now == 0 and refusing.commands == ["hello"]  # asked once
    assert "refused hello" in caplog.text


T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def test_the_offset_is_taken_at_the_middle_of_the_round_trip() -> None:
    server = T0 + timedelta(minutes=5, seconds=1)
    assert server_offset(T0, server, T0 + timedelta(seconds=2)) == timedelta(minutes=5)
    assert server_offset(T0, T0 - SKEW, T0) == -SKEW


def test_a_server_clock_goes_stale_after_its_refresh_interval() -> None:
    ticks = [100.0]
    clock = ServerClock(ManualClock(T0), refresh=60, monotonic=lambda: ticks[0])
    assert clock.stale() and clock.now() == T0
    clock.update(T0, T0 + SKEW, T0)
    assert not clock.stale() and clock.now() == T0 + SKEW
    ticks[0] += 59.9
    assert not clock.stale()
    ticks[0] += 0.1
    assert clock.stale()
    clock.update(T0, None, T0)  # no localTime: keep the last offset
    assert clock.offset == SKEW and not clock.stale()
