"""The one sync/async mechanism: a flow runs the same way on both runners."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from nsn_store._flow import (
    Flow,
    FlowHost,
    Op,
    TripCounter,
    asynchronous,
    command,
    run,
    run_async,
    sync,
)
from nsn_store.errors import DuplicateKeyError


def _insert_twice(name: str) -> Flow[list[str]]:
    """Insert one document twice; the second insert's error is thrown into the flow."""
    seen = []
    yield Op("insert_one", name, ({"_id": 1},))
    try:
        yield Op("insert_one", name, ({"_id": 1},))
    except DuplicateKeyError as exc:
        seen.append(f"duplicate in {exc.collection}")
    docs = yield Op("find", name, ({},))
    seen.append(f"{len(docs)} stored")
    reply = yield command({"ping": 1})
    seen.append(f"ping {int(reply['ok'])}")
    return seen


EXPECTED = ["duplicate in items", "1 stored", "ping 1"]


def test_the_sync_runner_translates_errors_into_the_flow_and_counts_trips(db: Any) -> None:
    trips = TripCounter()
    assert run(db, _insert_twice("items"), trips) == EXPECTED
    assert trips.count == 4


async def test_the_async_runner_gives_the_same_result(async_db: Any) -> None:
    trips = TripCounter()
    assert await run_async(async_db, _insert_twice("items"), trips) == EXPECTED
    assert trips.count == 4


def test_an_error_the_flow_does_not_catch_reaches_the_caller_translated(db: Any) -> None:
    def twice() -> Flow[None]:
        yield Op("insert_one", "items", ({"_id": 1},))
        yield Op("insert_one", "items", ({"_id": 1},))

    with pytest.raises(DuplicateKeyError) as raised:
        run(db, twice())
    assert raised.value.__cause__ is not None  # the driver's error stays available


def test_flows_compose_with_yield_from(db: Any) -> None:
    def count() -> Flow[int]:
        return (yield Op("count_documents", "items", ({},)))

    def insert_then_count() -> Flow[int]:
        yield Op("insert_one", "items", ({"x": 1},))
        return (yield from count())

    assert run(db, insert_then_count()) == 1


class _ItemFlows(FlowHost):
    def __init__(self, db: Any) -> None:
        self.db = db
        self.trips = TripCounter()

    def _add(self, name: str, *, value: int = 1) -> Flow[int]:
        """Insert one item and return how many there are."""
        yield Op("insert_one", "items", ({"name": name, "value": value},))
        return (yield Op("count_documents", "items", ({},)))


class _Items(_ItemFlows):
    add = sync(_ItemFlows._add)


class _AsyncItems(_ItemFlows):
    add = asynchronous(_ItemFlows._add)


def test_a_sync_declaration_runs_the_flow_and_keeps_its_signature(db: Any) -> None:
    items = _Items(db)
    assert items.add("a") == 1
    assert items.add("b", value=2) == 2
    assert items.trips.count == 4
    assert _Items.add.__doc__ == "Insert one item and return how many there are."
    flow = inspect.signature(_ItemFlows._add)
    assert inspect.signature(_Items.add).parameters == flow.parameters


async def test_an_async_declaration_is_a_coroutine_over_the_same_flow(async_db: Any) -> None:
    items = _AsyncItems(async_db)
    assert inspect.iscoroutinefunction(_AsyncItems.add)
    assert await items.add("a") == 1
    assert await items.add("b", value=2) == 2
    assert items.trips.count == 4


def test_a_declaration_is_named_and_annotated_as_the_public_method_it_declares() -> None:
    for declared in (_Items.add, _AsyncItems.add):
        assert declared.__name__ == "add"
        assert declared.__qualname__.endswith("_ItemFlows.add")
        assert inspect.signature(declared).return_annotation == "int"
