"""Pytest fixtures for projects that use nsn-store (registered as a ``pytest11`` plugin).

Installing nsn-store registers them; nothing to import or configure:

- ``nsn_clock``: a :class:`~nsn_store.clock.ManualClock` at 2026-01-05 09:00 UTC
  that is also nsn-store's default clock for the test (:func:`default_clock`),
  so every ``Scheduler``, ``AIPreviews``, ``Worker``, counter and embedded
  client the test creates without ``clock=`` reads it.
- ``nsn_client``: a fresh in-memory embedded server on that clock
  (``nsn_client.run_ttl_monitor()`` expires documents by it).
- ``nsn_db``: a fresh, empty database on it.
- ``nsn_schema_db``: a fresh database with nsn-store's schema applied
  (:func:`~nsn_store.migration.init_schema`: every collection, validator and index).
- ``nsn_async_db``: ``nsn_db`` through the async embedded client (shaped like
  PyMongo's ``AsyncMongoClient``; no Motor needed); ``nsn_async_schema_db`` the
  same for ``nsn_schema_db``. Async tests need pytest-asyncio (in
  ``asyncio_mode = "auto"``, or each test marked ``@pytest.mark.asyncio``).

Importing this module imports nothing heavy: the embedded database loads on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nsn_store.clock import ManualClock
from nsn_store.testing import default_clock

NSN_DB_NAME = "nsn_test"


@pytest.fixture
def nsn_clock() -> Iterator[ManualClock]:
    """A clock frozen at 2026-01-05 09:00 UTC, nsn-store's default clock for the test."""
    with default_clock(ManualClock()) as clock:
        yield clock


@pytest.fixture
def nsn_client(nsn_clock: ManualClock) -> Iterator[Any]:
    """A fresh in-memory embedded server; ``nsn_client.run_ttl_monitor()`` expires by the clock."""
    from nsn_store.testing import mongomock_client

    client = mongomock_client(clock=nsn_clock)
    yield client
    client.close()


@pytest.fixture
def nsn_db(nsn_client: Any) -> Any:
    """A fresh, empty database on the embedded server."""
    return nsn_client[NSN_DB_NAME]


@pytest.fixture
def nsn_schema_db(nsn_db: Any, nsn_clock: ManualClock) -> Any:
    """A fresh database with nsn-store's collections, validators and indexes in place."""
    from nsn_store.migration import init_schema

    init_schema(nsn_db, clock=nsn_clock)
    return nsn_db


@pytest.fixture
def nsn_async_db(nsn_client: Any) -> Any:
    """The ``nsn_db`` database through the async embedded client (``AsyncMongoClient``-shaped)."""
    from nsn_store.testing import async_client

    return async_client(nsn_client)[NSN_DB_NAME]


@pytest.fixture
def nsn_async_schema_db(nsn_schema_db: Any, nsn_client: Any) -> Any:
    """The ``nsn_schema_db`` database through the async embedded client."""
    from nsn_store.testing import async_client

    return async_client(nsn_client)[nsn_schema_db.name]
