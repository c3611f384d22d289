"""Test helpers for code that uses nsn-store: a fresh embedded server per test.

The embedded database enforces validators, unique indexes and server error
codes, so a test that passes here exercises the same rules a server applies.
Use :func:`mongomock_client` for sync code and :func:`async_client` to drive
async code (shaped like PyMongo's ``AsyncMongoClient``) over the same store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nsn_store.clock import Clock

if TYPE_CHECKING:
    from nsn_store.embedded._async import AsyncEmbeddedClient
    from nsn_store.embedded.client import EmbeddedClient

__all__ = ["async_client", "mongomock_client"]


def mongomock_client(clock: Clock | None = None) -> EmbeddedClient:
    """Return a client on a fresh, isolated in-memory server that reads time from ``clock``."""
    from nsn_store.embedded.client import EmbeddedClient

    return EmbeddedClient(clock=clock)


def async_client(sync_client: EmbeddedClient) -> AsyncEmbeddedClient:
    """Return an async client over ``sync_client``'s store (same data, same lock).

    Shaped like PyMongo's ``AsyncMongoClient``: collection methods are
    coroutines, ``find`` returns a cursor with ``await cursor.to_list(None)``
    and ``async for``; it needs neither Motor nor mongomock-motor.
    """
    from nsn_store.embedded._async import AsyncEmbeddedClient

    return AsyncEmbeddedClient(sync_client)
