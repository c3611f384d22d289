"""Pytest fixtures for projects that use nsn-store (registered as a ``pytest11`` plugin).

Fixtures: ``nsn_clock`` (a ManualClock), ``nsn_client`` (a fresh embedded
server reading time from ``nsn_clock``), ``nsn_db`` (a fresh database on it)
and ``nsn_async_db`` (the same database through the async embedded client, shaped
like PyMongo's ``AsyncMongoClient``; no Motor needed). Importing
this module imports nothing heavy: the embedded database loads on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nsn_store.clock import ManualClock

NSN_DB_NAME = "nsn_test"


@pytest.fixture
def nsn_clock() -> ManualClock:
    """A clock frozen at 2026-01-05 09:00 UTC that the test moves with ``advance``."""
    return ManualClock()


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
def nsn_async_db(nsn_client: Any) -> Any:
    """The ``nsn_db`` database through the async embedded client (``AsyncMongoClient``-shaped)."""
    from nsn_store.testing import async_client

    return async_client(nsn_client)[NSN_DB_NAME]
