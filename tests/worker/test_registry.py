"""The workers registry: an entry while a worker runs, heartbeats, gone after a clean stop."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from test_worker import World

from nsn_store import __version__
from nsn_store._flow import run as run_flow
from nsn_store.clock import ManualClock
from nsn_store.errors import InvalidArgumentError
from nsn_store.worker import LiveWorker, PeriodicJobs, list_workers, list_workers_async
from nsn_store.worker._async import AsyncWorker
from nsn_store.worker._delivery import Delivery
from nsn_store.worker._registry import deregister, heartbeat, register, worker_document
from nsn_store.worker._worker import Worker


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock)


def test_a_worker_is_listed_while_it_runs_and_removed_when_it_stops(world: World) -> None:
    world.schedule(world.tenants[0])
    seen: list[list[LiveWorker]] = []

    def sender(delivery: Delivery) -> str:
        seen.append(list_workers(world.db, clock=world.clock))
        return "ok"

    tenants = [world.tenants[0]]
    w = Worker(
        world.db,
        sender,
        worker_id="box-1:42",
        clock=world.clock,
        scheduler=world.scheduler,
        watch=False,
        lease=30,
        concurrency=3,
        tenants=tenants,
    )
    w.run_once()
    [[live]] = seen
    assert (live.worker_id, live.concurrency, live.tenants, live.version) == (
        "box-1:42",
        3,
        tuple(tenants),
        __version__,
    )
    assert live.started_at == live.heartbeat_at == world.clock.now() and live.pid > 0
    assert live.to_dict()["tenants"] == [str(world.tenants[0])]
    assert list_workers(world.db, clock=world.clock) == []
    assert world.db.workers.count_documents({}) == 0


def test_a_silent_worker_is_not_live_and_a_heartbeat_brings_a_lost_entry_back(
    world: World,
) -> None:
    document = worker_document(world.clock.now(), 8, None)
    run_flow(world.db, register("w1", document))
    world.clock.advance(minutes=2)
    run_flow(world.db, register("w2", worker_document(world.clock.now(), 8, None)))
    world.clock.advance(minutes=2)  # w1 silent for 4 minutes, w2 for 2
    assert [w.worker_id for w in list_workers(world.db, clock=world.clock)] == ["w2"]
    run_flow(world.db, deregister("w1"))
    run_flow(world.db, heartbeat("w1", document, world.clock.now()))  # e.g. after a TTL pass
    live = list_workers(world.db, clock=world.clock, stale_after=60)
    assert [w.worker_id for w in live] == ["w1"]
    assert world.db.workers.find_one({"_id": "w1"})["startedAt"] < world.clock.now()


def test_the_registry_document_holds_what_the_contract_names(world: World) -> None:
    run_flow(world.db, register("w", worker_document(world.clock.now(), 2, [world.tenants[1]])))
    stored = world.db.workers.find_one({"_id": "w"})
    assert set(stored) == {
        "_id",
        "host",
        "pid",
        "version",
        "startedAt",
        "heartbeatAt",
        "concurrency",
        "tenants",
    }


def test_a_running_worker_heartbeats_its_entry(world: World) -> None:
    started = threading.Event()
    w = Worker(
        world.db,
        lambda delivery: "ok",
        clock=world.clock,
        scheduler=world.scheduler,
        watch=False,
        lease=3,
        heartbeat=0.1,
        jobs=PeriodicJobs.none(),
    )
    runner = threading.Thread(target=lambda: (started.set(), w.run()))
    runner.start()
    started.wait(5)
    try:
        world.clock.advance(minutes=10)
        for _ in range(100):  # until a heartbeat at the new time lands (0.1 s apart)
            if list_workers(world.db, clock=world.clock, stale_after=1):
                break
            threading.Event().wait(0.05)
        assert [x.worker_id for x in list_workers(world.db, clock=world.clock, stale_after=1)] == [
            w.worker_id
        ]
    finally:
        w.stop()
        runner.join(10)
    assert list_workers(world.db, clock=world.clock) == []


def test_stale_after_is_checked(world: World) -> None:
    with pytest.raises(InvalidArgumentError, match="stale_after"):
        list_workers(world.db, stale_after=timedelta(0))


async def test_the_async_twins_register_and_list(world: World, backend: str) -> None:
    if backend != "embedded":
        pytest.skip("the async twin of a server database is covered by the server suite")
    from nsn_store.testing import async_client

    adb = async_client(world.db.client)[world.db.name]
    world.schedule(world.tenants[0])
    seen: list[list[LiveWorker]] = []

    async def sender(delivery: Delivery) -> str:
        seen.append(await list_workers_async(adb, clock=world.clock))
        return "ok"

    w = AsyncWorker(adb, sender, worker_id="async-1", clock=world.clock, watch=False, lease=30)
    await w.run_once()
    assert [[x.worker_id for x in live] for live in seen] == [["async-1"]]
    assert await list_workers_async(adb, clock=world.clock) == []
