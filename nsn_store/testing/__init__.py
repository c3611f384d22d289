"""Test helpers for code that uses nsn-store: a fresh embedded server per test, one clock.

The embedded database enforces validators, unique indexes and server error
codes, so a test that passes here exercises the same rules a server applies.
Use :func:`mongomock_client` for sync code and :func:`async_client` to drive
async code (shaped like PyMongo's ``AsyncMongoClient``) over the same store.

:func:`default_clock` makes one clock the clock of every nsn-store service
created without ``clock=`` (``Scheduler``, ``AIPreviews``, ``Worker``,
counters, aggregates, RAG documents) and of every embedded client, so a test
moves time for all of them with one ``advance``. The pytest plugin
(:mod:`nsn_store.testing._plugin`) does this for its ``nsn_clock`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from nsn_store.clock import DEFAULT_CLOCK, Clock

if TYPE_CHECKING:
    from nsn_store.embedded._async import AsyncEmbeddedClient
    from nsn_store.embedded.client import EmbeddedClient

__all__ = ["async_client", "default_clock", "mongomock_client"]

AnyClock = TypeVar("AnyClock", bound=Clock)


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


@contextmanager
def default_clock(clock: AnyClock) -> Iterator[AnyClock]:
    """Make ``clock`` the default clock of nsn-store while the block runs; yield it.

    Every service and embedded client created without ``clock=`` reads
    ``nsn_store.clock.DEFAULT_CLOCK``; inside the block that object answers
    ``now()`` from ``clock`` (in every thread), so a ``Scheduler``, an
    ``AIPreviews``, a ``Worker`` and the database's TTL monitor all agree on
    "now". A service given its own ``clock=`` keeps it. Blocks nest; leaving
    one restores the clock it replaced, also on error.
    """
    if not isinstance(clock, Clock):
        raise TypeError(f"clock must have a now() method, not {type(clock).__name__}")
    replaced = vars(DEFAULT_CLOCK).get("now")  # an outer block's clock, or None
    # One shared object, read by every module that imported it: replacing its
    # now() reaches them all, which rebinding the module attribute would not.
    setattr(DEFAULT_CLOCK, "now", clock.now)  # noqa: B010 (an instance attribute, on purpose)
    try:
        yield clock
    finally:
        if replaced is None:
            delattr(DEFAULT_CLOCK, "now")
        else:
            setattr(DEFAULT_CLOCK, "now", replaced)  # noqa: B010
