"""Periodic jobs: each period runs once across workers; overruns skip; catch-up is bounded.

The claim/finish/heartbeat flows are driven directly with a ``ManualClock``
(no threads) where the behaviour is the database's; the built-in jobs run
through ``Worker.run_jobs`` and ``AsyncWorker.run_jobs``.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from test_worker import World

from nsn_store._flow import Flow, Op
from nsn_store._flow import run as run_flow
from nsn_store.clock import ManualClock
from nsn_store.counters import ShardedCounter
from nsn_store.errors import InvalidArgumentError
from nsn_store.migration._runner import init_schema
from nsn_store.worker import JobContext, PeriodicJob, PeriodicJobs
from nsn_store.worker._async import AsyncWorker
from nsn_store.worker._jobs import (
    JobClaim,
    claim_period,
    extend_job_leases,
    finish_period,
    period_key,
    period_start,
    plan,
    run_document,
)
from nsn_store.worker._senders import FakeSender
from nsn_store.worker._worker import Worker

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def doc(
    start: datetime,
    *,
    outcome: str,
    started: datetime,
    finished: datetime | None,
    lease: datetime | None = None,
    every: timedelta = MINUTE,
) -> dict[str, Any]:
    document = run_document("j", start, start + every, "w", started, lease or started)
    document["outcome"] = outcome
    if finished is not None:
        document["finishedAt"] = finished
    return document


# -- periods and plans (pure) ------------------------------------------------------


def test_periods_are_aligned_to_the_epoch_and_keyed_by_their_start() -> None:
    moment = datetime(2026, 1, 5, 9, 7, 31, 250000, tzinfo=timezone.utc)
    assert period_start(moment, timedelta(minutes=5)) == datetime(
        2026, 1, 5, 9, 5, tzinfo=timezone.utc
    )
    assert period_start(moment, timedelta(days=1)) == datetime(2026, 1, 5, tzinfo=timezone.utc)
    assert period_key("rollup", T0) == "rollup|2026-01-05T09:00:00.000Z"


def test_a_new_job_runs_its_current_period_only() -> None:
    assert plan(MINUTE, 3, None, T0 + timedelta(seconds=30)).run == T0


def test_a_live_run_makes_the_others_wait_and_an_expired_one_is_taken_over() -> None:
    running = doc(T0, outcome="running", started=T0, finished=None, lease=T0 + MINUTE)
    assert plan(MINUTE, 3, running, T0 + timedelta(seconds=59)).waits
    assert plan(MINUTE, 3, running, T0 + MINUTE).take_over == running


def test_a_finished_period_waits_for_the_next_one() -> None:
    done = doc(T0, outcome="succeeded", started=T0, finished=T0 + timedelta(seconds=2))
    assert plan(MINUTE, 3, done, T0 + timedelta(seconds=50)).waits
    assert plan(MINUTE, 3, done, T0 + MINUTE).run == T0 + MINUTE


def test_an_overrun_skips_the_periods_that_came_due_while_it_ran() -> None:
    overran = doc(
        T0, outcome="succeeded", started=T0, finished=T0 + timedelta(minutes=3, seconds=5)
    )
    decided = plan(MINUTE, 3, overran, T0 + timedelta(minutes=3, seconds=6))
    assert decided.skip == (T0 + MINUTE, T0 + 4 * MINUTE) and decided.run is None
    later = plan(MINUTE, 3, overran, T0 + timedelta(minutes=4))
    assert later.skip == (T0 + MINUTE, T0 + 4 * MINUTE) and later.run == T0 + 4 * MINUTE


def test_after_downtime_only_the_newest_catch_up_periods_run() -> None:
    done = doc(T0, outcome="succeeded", started=T0, finished=T0 + timedelta(seconds=1))
    decided = plan(MINUTE, 3, done, T0 + timedelta(minutes=30, seconds=10))
    assert decided.skip == (T0 + MINUTE, T0 + 28 * MINUTE) and decided.run == T0 + 28 * MINUTE
    assert plan(MINUTE, 1, done, T0 + timedelta(minutes=30)).run == T0 + 30 * MINUTE


def test_missed_periods_before_a_late_run_are_caught_up_not_skipped() -> None:
    late = doc(
        T0,
        outcome="succeeded",
        started=T0 + 2 * MINUTE,
        finished=T0 + timedelta(minutes=2, seconds=1),
    )
    assert plan(MINUTE, 3, late, T0 + timedelta(minutes=2, seconds=2)).run == T0 + MINUTE


@pytest.mark.parametrize(
    "build",
    [
        lambda: PeriodicJob("a|b", MINUTE, print),
        lambda: PeriodicJob("", MINUTE, print),
        lambda: PeriodicJob("j", timedelta(milliseconds=500), print),
        lambda: PeriodicJob("j", timedelta(days=400), print),
        lambda: PeriodicJob("j", MINUTE, print, catch_up=0),
        lambda: PeriodicJob("j", MINUTE, "not callable"),  # type: ignore[arg-type]
        lambda: PeriodicJobs(retention=timedelta(days=7)),
        lambda: PeriodicJobs(retention=timedelta(days=90), reconcile_every=MINUTE),
    ],
)
def test_bad_jobs_are_refused_naming_the_argument(build: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        build()


def test_jobs_register_by_call_or_decorator_and_the_built_ins_are_on_by_default() -> None:
    jobs = PeriodicJobs()
    assert jobs.names == ["aggregates.rollup", "counters.reconcile"]

    @jobs.job(every=timedelta(hours=1))
    def report(context: JobContext) -> None: ...

    jobs.register("cleanup", report, every=600, catch_up=1)
    assert jobs.names[-2:] == ["report", "cleanup"] and jobs["cleanup"].every == timedelta(
        minutes=10
    )
    with pytest.raises(InvalidArgumentError, match="registered"):
        jobs.register("report", report, every=60)
    with_retention = PeriodicJobs(retention=timedelta(days=90))
    assert with_retention.names == ["aggregates.rollup", "retention"]  # reconcile is off
    assert PeriodicJobs.none().names == []


# -- one period, several workers (the database's part) ------------------------------


def test_of_several_workers_exactly_one_takes_a_period(db: Any, clock: ManualClock) -> None:
    job = PeriodicJob("j", MINUTE, print)
    claims = [run_flow(db, claim_period(job, f"w{i}", clock.now(), MINUTE)) for i in range(5)]
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].key == period_key("j", period_start(clock.now(), MINUTE))
    [stored] = db.jobRuns.find()
    assert (stored["holder"], stored["outcome"]) == ("w0", "running")


def test_a_crashed_runners_period_is_taken_over_once_its_lease_ends(
    db: Any, clock: ManualClock
) -> None:
    job = PeriodicJob("j", MINUTE, print)
    crashed = run_flow(db, claim_period(job, "dead", clock.now(), timedelta(seconds=30)))
    assert crashed is not None
    clock.advance(seconds=29)
    assert run_flow(db, claim_period(job, "w1", clock.now(), MINUTE)) is None
    clock.advance(seconds=1)
    taken = run_flow(db, claim_period(job, "w1", clock.now(), MINUTE))
    assert taken is not None and taken.taken_over and taken.key == crashed.key
    assert run_flow(db, claim_period(job, "w2", clock.now(), MINUTE)) is None
    assert not run_flow(db, finish_period(crashed, "dead", clock.now(), None))  # too late
    assert run_flow(db, finish_period(taken, "w1", clock.now(), None))
    assert db.jobRuns.find_one({"_id": taken.key})["outcome"] == "succeeded"


def test_a_heartbeat_keeps_a_long_runs_lease(db: Any, clock: ManualClock) -> None:
    job = PeriodicJob("j", MINUTE, print)
    claim = run_flow(db, claim_period(job, "w", clock.now(), timedelta(seconds=30)))
    assert claim is not None
    for _ in range(10):
        clock.advance(seconds=20)
        run_flow(db, extend_job_leases([claim], "w", clock.now(), timedelta(seconds=30)))
        assert run_flow(db, claim_period(job, "thief", clock.now(), MINUTE)) is None
    assert run_flow(db, finish_period(claim, "w", clock.now(), None))


@dataclass
class SimWorker:
    name: str
    claim: JobClaim | None = None
    ends: datetime | None = None
    crash_at: datetime | None = None


def test_ten_workers_over_ten_thousand_periods_with_crashes_run_each_period_once(
    db: Any, clock: ManualClock
) -> None:
    """10 workers look at a one-minute job at random moments over 10,000 periods. Most
    runs are short; some overrun by 1-3 periods; some crash part way (their lease then
    ends, and another worker takes the period over); now and then every worker is down
    for 5-60 periods. At the end the runs and skipped ranges tile the timeline: every
    period is covered by exactly one document; each run completed exactly once; runs
    never overlapped; the periods that came due during an overrun were skipped; after
    downtime at most ``catch_up`` periods ran late."""
    rng = random.Random(202601)
    lease, catch_up = timedelta(seconds=90), 3
    job = PeriodicJob("sim", MINUTE, print, catch_up=catch_up)
    init_schema(db)  # jobRuns with its validator and its job_1_periodStart_-1 index
    workers = [SimWorker(f"w{i}") for i in range(10)]
    completed: Counter[datetime] = Counter()
    intervals: list[tuple[datetime, datetime]] = []
    claimed_at: dict[str, tuple[datetime, bool]] = {}
    crashed: set[str] = set()
    first = period_start(clock.now(), MINUTE)
    end = first + 10_000 * MINUTE

    def crash(w: SimWorker, at: datetime) -> None:
        assert w.claim is not None
        crashed.add(w.claim.key)
        intervals.append((w.claim.started_at, at))
        w.claim = w.ends = w.crash_at = None

    def look(w: SimWorker) -> None:
        for _ in range(catch_up + 1):  # like run_jobs: catch up back to back
            now = clock.now()
            claim = run_flow(db, claim_period(job, w.name, now, lease))
            if claim is None:
                return
            claimed_at[claim.key] = (now, claim.taken_over)
            fate = rng.random()
            if fate < 0.85:  # a short run: done before anyone looks again
                assert run_flow(db, finish_period(claim, w.name, now, None))
                completed[claim.period_start] += 1
                intervals.append((now, now))
                continue
            w.claim = claim
            if fate < 0.95:
                w.ends = now + timedelta(seconds=rng.randint(70, 200))  # an overrun
            else:
                w.crash_at = now + timedelta(seconds=rng.randint(1, 60))
            return

    while clock.now() < end:
        if rng.random() < 0.002:  # every worker is down for a while
            for w in workers:
                if w.claim is not None:
                    crash(w, clock.now())
            clock.advance(minutes=rng.randint(5, 60))
        else:
            clock.advance(seconds=rng.randint(20, 80))
        now = clock.now()
        for w in workers:
            if w.claim is None:
                continue
            if w.crash_at is not None and now >= w.crash_at:
                crash(w, w.crash_at)
            elif w.ends is not None and now >= w.ends:
                assert run_flow(db, finish_period(w.claim, w.name, w.ends, None))
                completed[w.claim.period_start] += 1
                intervals.append((w.claim.started_at, w.ends))
                w.claim = w.ends = None
            else:  # a live holder heartbeats (every 20 s in a real worker: before 90 s)
                run_flow(db, extend_job_leases([w.claim], w.name, now, lease))
        idle = [w for w in workers if w.claim is None]
        for w in rng.sample(idle, 2 if rng.random() < 0.25 else 1):  # sometimes at once
            look(w)

    runs = sorted(db.jobRuns.find(), key=lambda d: d["periodStart"])
    # 1. the documents tile the timeline: each starts where the one before ends
    assert runs[0]["periodStart"] == first and runs[-1]["periodEnd"] >= end
    for before, after in itertools.pairwise(runs):
        assert after["periodStart"] == before["periodEnd"]
    # 2. each run completed exactly once; a skipped range holds no completed period
    skipped = [d for d in runs if d["outcome"] == "skipped"]
    for d in runs:
        if d["outcome"] == "succeeded":
            assert completed[d["periodStart"]] == 1, d["_id"]
        elif d["outcome"] == "running":  # still running, or crashed lately: at the end only
            assert d["_id"] in crashed | {w.claim.key for w in workers if w.claim is not None}
            assert d["periodStart"] >= end - 10 * MINUTE
    assert sum(completed.values()) == sum(1 for d in runs if d["outcome"] == "succeeded")
    assert all(completed[p] == 0 for d in skipped for p in _periods(d))
    # 3. runs never overlapped (a takeover waits for the crashed holder's lease)
    intervals.sort()
    for (_, end_a), (start_b, _) in itertools.pairwise(intervals):
        assert start_b >= end_a
    # 4. an on-time run that overran made the periods due while it ran skip
    outcome_at = {p: d["outcome"] for d in runs for p in _periods(d)}
    overran = 0
    for d in runs:
        on_time = d["outcome"] != "skipped" and d["startedAt"] < d["periodEnd"]
        if on_time and d.get("finishedAt") and d["finishedAt"] > d["periodEnd"]:
            due_meanwhile = _periods(
                {"periodStart": d["periodEnd"], "periodEnd": _ceil(d["finishedAt"])}
            )
            overran += 1
            assert all(outcome_at.get(p, "skipped") == "skipped" for p in due_meanwhile)
    # 5. catch-up is bounded: no run (but a takeover) started catch_up periods late
    by_key = {d["_id"]: d for d in runs}
    for key, (started, taken_over) in claimed_at.items():
        if not taken_over:
            assert started - by_key[key]["periodStart"] < catch_up * MINUTE, key
    takeovers = sum(1 for _, taken in claimed_at.values() if taken)
    assert overran > 50 and takeovers > 50 and len(skipped) > 50  # every path really ran
    assert len(runs) > 5_000


def _ceil(moment: datetime) -> datetime:
    start = period_start(moment, MINUTE)
    return start if start == moment else start + MINUTE


def _periods(document: dict[str, Any]) -> list[datetime]:
    start, stop = document["periodStart"], document["periodEnd"]
    return [start + i * MINUTE for i in range((stop - start) // MINUTE)]


# -- the worker runs them -----------------------------------------------------------


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock)


def worker(world: World, jobs: PeriodicJobs, **options: Any) -> Worker:
    return Worker(
        world.db,
        FakeSender(),
        clock=world.clock,
        scheduler=world.scheduler,
        watch=False,
        lease=30,
        jobs=jobs,
        **options,
    )


def test_run_jobs_runs_each_due_period_once_and_records_it(world: World) -> None:
    seen: list[JobContext] = []
    jobs = PeriodicJobs.none()
    jobs.register("hourly", seen.append, every=timedelta(hours=1))
    first, second = worker(world, jobs, worker_id="a"), worker(world, jobs, worker_id="b")
    [result] = first.run_jobs()
    assert second.run_jobs() == [] and first.run_jobs() == []
    assert (result.job, result.outcome, result.recorded) == ("hourly", "succeeded", True)
    assert seen[0].period_start == T0 and seen[0].period_end == T0 + timedelta(hours=1)
    world.clock.advance(hours=1)
    assert [r.period_start for r in second.run_jobs()] == [T0 + timedelta(hours=1)]
    assert first.report.jobs["succeeded"] == 1 and second.report.to_dict()["jobs"] == {
        "succeeded": 1,
        "failed": 0,
    }


def test_a_failing_job_is_recorded_failed_and_the_next_period_runs(world: World) -> None:
    def broken(context: JobContext) -> None:
        raise RuntimeError("the report service is down")

    jobs = PeriodicJobs.none()
    jobs.register("report", broken, every=60)
    w = worker(world, jobs)
    [result] = w.run_jobs()
    assert result.outcome == "failed" and "the report service is down" in (result.error or "")
    stored = world.db.jobRuns.find_one({"job": "report"})
    assert stored["outcome"] == "failed" and stored["error"].startswith("RuntimeError:")
    world.clock.advance(minutes=1)
    assert [r.outcome for r in w.run_jobs()] == ["failed"]


def test_a_job_may_be_a_flow_run_on_the_workers_database(world: World) -> None:
    def count_tenants(context: JobContext) -> Flow[int]:
        found = yield Op("count_documents", "tenants", ({},))
        context.db.jobNotes.insert_one({"tenants": found})
        return int(found)

    jobs = PeriodicJobs.none()
    jobs.register("count", count_tenants, every=60)
    worker(world, jobs).run_jobs()
    assert world.db.jobNotes.find_one()["tenants"] == 2


def test_the_rollup_counts_today_during_the_day_and_yesterdays_final_rows_after_midnight(
    world: World,
) -> None:
    jobs = PeriodicJobs(reconcile_every=None)
    w = worker(world, jobs)
    tenant = world.tenants[0]
    for _ in range(3):
        world.schedule(tenant)  # each scheduled message records a "queued" event
    w.run_jobs()
    today = world.db.aggregates.find_one({"tenantId": tenant, "period": "day", "metric": "queued"})
    assert (today["date"], today["value"]) == ("2026-01-05", 3)
    world.clock.set(datetime(2026, 1, 5, 23, 58, tzinfo=timezone.utc))
    w.run_jobs()
    world.clock.advance(minutes=1, seconds=30)  # 23:59:30: one more, after the last run
    world.schedule(tenant)
    world.clock.set(datetime(2026, 1, 6, 0, 0, 30, tzinfo=timezone.utc))
    w.run_jobs()
    rows = {
        (r["period"], r["date"]): r["value"]
        for r in world.db.aggregates.find({"tenantId": tenant, "metric": "queued"})
    }
    assert rows[("day", "2026-01-05")] == 4  # yesterday's final count
    assert rows[("week", "2026-01-05")] == 4 and rows[("month", "2026-01-01")] == 4


def test_reconcile_repairs_the_schedulers_counters(world: World) -> None:
    counter = ShardedCounter(world.db, clock=world.clock)
    tenant = world.tenants[0]
    for _ in range(2):
        world.schedule(tenant)
    counter.add(tenant, "messages.scheduled", 5)  # drifted: 5, the messages say 2
    w = worker(world, PeriodicJobs(rollup_every=None))
    [result] = w.run_jobs()
    assert result.job == "counters.reconcile" and result.outcome == "succeeded"
    assert counter.count(tenant, "messages.scheduled") == 2
    assert counter.count(world.tenants[1], "messages.scheduled") == 0  # no counter: none made


def test_retention_deletes_only_what_finished_longer_ago_than_its_age(world: World) -> None:
    tenant = world.tenants[0]
    world.schedule(tenant)  # sent now, so finished 50 days before retention runs
    old_pending = world.schedule(tenant, at=timedelta(days=60))
    [claimed] = world.scheduler.claim_due("w")
    world.scheduler.mark_sent(claimed, "w")
    world.clock.advance(days=50)
    recent = world.schedule(tenant)
    [claimed] = world.scheduler.claim_due("w")
    world.scheduler.mark_sent(claimed, "w")
    jobs = PeriodicJobs(rollup_every=None, retention=timedelta(days=40))
    [result] = worker(world, jobs).run_jobs()
    assert result.job == "retention" and result.outcome == "succeeded"
    left = {d["_id"] for d in world.db.scheduledMessages.find()}
    assert left == {old_pending["_id"], recent["_id"]}  # the old sent message is gone
    events = list(world.db.messageEvents.find())
    assert events and all(e["createdAt"] >= world.clock.now() - timedelta(days=40) for e in events)


async def test_the_async_worker_runs_the_same_jobs(world: World, backend: str) -> None:
    if backend != "embedded":
        pytest.skip("the async twin of a server database is covered by the server suite")
    from nsn_store.testing import async_client

    adb = async_client(world.db.client)[world.db.name]
    ran: list[str] = []

    async def coroutine_job(context: JobContext) -> None:
        ran.append(f"coroutine {context.period_start:%H:%M}")

    def plain_job(context: JobContext) -> None:
        ran.append("plain")

    jobs = PeriodicJobs()
    jobs.register("coro", coroutine_job, every=60)
    jobs.register("plain", plain_job, every=60)
    world.schedule(world.tenants[0])

    async def sender(delivery: Any) -> str:
        return "ok"

    w = AsyncWorker(adb, sender, clock=world.clock, watch=False, lease=30, jobs=jobs)
    results = await w.run_jobs()
    assert [r.job for r in results] == [
        "aggregates.rollup",
        "counters.reconcile",
        "coro",
        "plain",
    ]
    assert all(r.outcome == "succeeded" for r in results)
    assert ran == ["coroutine 09:00", "plain"]
    assert world.db.aggregates.count_documents({"metric": "queued"}) >= 1
    assert await w.run_jobs() == []


def test_a_coroutine_job_is_refused_by_the_sync_worker(world: World) -> None:
    async def job(context: JobContext) -> None: ...

    jobs = PeriodicJobs.none()
    jobs.register("coro", job, every=60)
    [result] = worker(world, jobs).run_jobs()
    assert result.outcome == "failed" and "AsyncWorker" in (result.error or "")


def test_worker_run_runs_the_jobs_on_their_own_thread(world: World) -> None:
    import threading

    ran = threading.Event()
    jobs = PeriodicJobs.none()
    jobs.register("tick", lambda context: ran.set(), every=60)
    w = worker(world, jobs)
    runner = threading.Thread(target=w.run)
    runner.start()
    try:
        assert ran.wait(10)
    finally:
        w.stop()
        runner.join(10)
    assert world.db.jobRuns.find_one({"job": "tick"})["outcome"] == "succeeded"
