"""Backends for the test suite.

Every behaviour test takes ``db`` (or ``async_db``) and runs once per backend:
``embedded`` (the schema-aware mongomock of ``nsn_store.embedded``) always,
and ``server`` when ``NSN_TEST_MONGODB_URI`` points at a real MongoDB. Without
that variable the server cases are reported as skipped, never faked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings
from pymongo import MongoClient
from pymongo.database import Database

from nsn_store.clock import ManualClock

# In CI every property test searches the same examples on every run, so a red run is
# never a roll of the dice; locally each run searches afresh (and finds more).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

SERVER_URI = os.environ.get("NSN_TEST_MONGODB_URI")
SKIP_SERVER = "NSN_TEST_MONGODB_URI is not set: no real MongoDB server to test against"


def _fresh_name() -> str:
    return f"nsn_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _private_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Point ``$NSN_DATA_DIR`` at a folder of this test only, so no test (CLI runs
    in-process included) reads or writes the user's real default database file.

    The folder is only named here; the first save creates it, so tests that never
    use the default cost nothing.
    """
    base = tmp_path_factory.getbasetemp() / "nsn-data"
    monkeypatch.setenv("NSN_DATA_DIR", str(base / uuid.uuid4().hex[:12]))


@pytest.fixture
def clock() -> ManualClock:
    """A clock frozen at 2026-01-05 09:00 UTC (a Monday) that tests move by hand."""
    return ManualClock()


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "server" and not SERVER_URI:
        pytest.skip(SKIP_SERVER)
    return str(request.param)


@pytest.fixture
def client(backend: str, clock: ManualClock) -> Iterator[Any]:
    """A sync client: a fresh embedded store sharing ``clock``, or the real server."""
    if backend == "embedded":
        from nsn_store.testing import mongomock_client

        yield mongomock_client(clock=clock)
        return
    real: MongoClient[dict[str, Any]] = MongoClient(
        SERVER_URI, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    yield real
    real.close()


@pytest.fixture
def db(client: Any) -> Iterator[Database[dict[str, Any]]]:
    """A fresh, empty database on the current backend, dropped afterwards."""
    name = _fresh_name()
    yield client[name]
    client.drop_database(name)


@pytest.fixture
def ttl_monitor(backend: str, client: Any) -> Any:
    """Run one pass of the TTL monitor now (embedded only: a server's runs on its own)."""
    if backend != "embedded":
        pytest.skip("a real server's TTL monitor cannot be triggered by a test")
    return client.run_ttl_monitor


@pytest.fixture
def open_async_db(backend: str, db: Any) -> Any:
    """How a run opens ``db`` through an async driver (``run_simulation(open_async_db=...)``):
    the async embedded client over the same store, or PyMongo's AsyncMongoClient."""
    if backend == "embedded":
        from nsn_store.testing import async_client

        return lambda: async_client(db.client)[db.name]
    from pymongo import AsyncMongoClient

    return lambda: AsyncMongoClient(SERVER_URI, tz_aware=True)[db.name]


@pytest.fixture(params=["embedded", "server-pymongo", "server-motor"])
async def async_db(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Any]:
    """A fresh async database: the async embedded client over the embedded store, or a real
    server through PyMongo's ``AsyncMongoClient`` and through Motor."""
    kind = str(request.param)
    name = _fresh_name()
    if kind == "embedded":
        from nsn_store.testing import async_client, mongomock_client

        yield async_client(mongomock_client(clock=clock))[name]
        return
    if not SERVER_URI:
        pytest.skip(SKIP_SERVER)
    if kind == "server-pymongo":
        from pymongo import AsyncMongoClient

        real: Any = AsyncMongoClient(SERVER_URI, tz_aware=True, serverSelectionTimeoutMS=5000)
    else:
        from motor.motor_asyncio import AsyncIOMotorClient

        real = AsyncIOMotorClient(SERVER_URI, tz_aware=True, serverSelectionTimeoutMS=5000)
    yield real[name]
    await real.drop_database(name)
    closing = real.close()
    if closing is not None:
        await closing
