"""The embedded database shaped like PyMongo's ``AsyncMongoClient``, without Motor.

The async face is a thin layer over the sync embedded client: the same store,
the same lock, the same validators and clock. Every coroutine method of
PyMongo's ``AsyncCollection`` and ``AsyncDatabase`` that the embedded database
supports is a coroutine here that runs the sync call (an in-memory operation,
so it never blocks on I/O); ``find`` returns a cursor at once and
``aggregate``/``list_indexes``/``list_collections`` are awaited for one, as
in PyMongo. Cursors support ``async for``, ``await cursor.to_list(length)``,
``sort``/``skip``/``limit``/``batch_size`` chaining and ``await explain()``.

Only PyMongo and mongomock are needed, so ``pip install nsn-store`` gives the
async paths (``AsyncScheduler``, ``simulate --mode asyncio``, the
``nsn_async_db`` fixture) without the test extra.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "AsyncEmbeddedChangeStream",
    "AsyncEmbeddedClient",
    "AsyncEmbeddedCollection",
    "AsyncEmbeddedDatabase",
]

# PyMongo's AsyncCollection coroutine methods that return a plain result.
_COLLECTION_COROUTINES = frozenset(
    {
        "bulk_write",
        "count_documents",
        "create_index",
        "create_indexes",
        "delete_many",
        "delete_one",
        "distinct",
        "drop",
        "drop_index",
        "drop_indexes",
        "estimated_document_count",
        "find_one",
        "find_one_and_delete",
        "find_one_and_replace",
        "find_one_and_update",
        "index_information",
        "insert_many",
        "insert_one",
        "options",
        "rename",
        "replace_one",
        "update_many",
        "update_one",
    }
)
# ... and those that return a cursor (awaited for it, as in PyMongo).
_COLLECTION_CURSORS = frozenset({"aggregate", "list_indexes"})
_DATABASE_COROUTINES = frozenset(
    {"command", "drop_collection", "list_collection_names", "validate_collection"}
)
_DATABASE_CURSORS = frozenset({"aggregate", "list_collections"})
# Cursor methods that narrow the query and return the cursor itself.
_CHAINING = frozenset(
    {
        "sort",
        "skip",
        "limit",
        "batch_size",
        "hint",
        "max_time_ms",
        "comment",
        "collation",
        "allow_disk_use",
        "where",
        "min",
        "max",
    }
)


def _coroutine(call: Callable[..., Any], name: str) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    run.__name__ = name
    return run


def _cursor_coroutine(call: Callable[..., Any], name: str) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> AsyncEmbeddedCursor:
        return AsyncEmbeddedCursor(call(*args, **kwargs))

    run.__name__ = name
    return run


class AsyncEmbeddedCursor:
    """An async cursor over a sync embedded cursor: ``async for`` and ``to_list``."""

    def __init__(self, cursor: Any) -> None:
        self.delegate = cursor
        self._iterator: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        if name in _CHAINING:
            method = getattr(self.delegate, name)

            def chain(*args: Any, **kwargs: Any) -> AsyncEmbeddedCursor:
                method(*args, **kwargs)
                return self

            return chain
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __aiter__(self) -> AsyncEmbeddedCursor:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self.delegate)
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None

    async def next(self) -> Any:
        """Return the next document (StopAsyncIteration at the end)."""
        return await self.__anext__()

    async def to_list(self, length: int | None = None) -> list[Any]:
        """Return the remaining documents (at most ``length`` when given)."""
        documents: list[Any] = []
        async for document in self:
            documents.append(document)
            if length is not None and len(documents) >= length:
                break
        return documents

    async def explain(self) -> Any:
        """Return the query plan, as ``Cursor.explain`` does."""
        return self.delegate.explain()

    async def close(self) -> None:
        """Close the cursor."""
        close = getattr(self.delegate, "close", None)
        if close is not None:
            close()


class AsyncEmbeddedChangeStream:
    """PyMongo's ``AsyncChangeStream`` over a sync embedded stream, never blocking the loop.

    The writer (under the store lock, in any thread) wakes the stream's loop
    with ``call_soon_threadsafe``; waiting is an ``asyncio.Event``, not a thread.
    """

    def __init__(self, stream: Any) -> None:
        self.delegate = stream
        self._loop = asyncio.get_running_loop()
        self._signal = asyncio.Event()
        stream.on_change(self._wake)

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._signal.set)

    @property
    def alive(self) -> bool:
        """Tell whether the stream is open."""
        return bool(self.delegate.alive)

    @property
    def resume_token(self) -> Any:
        """The token of the last change returned (the stream's start before any)."""
        return self.delegate.resume_token

    async def try_next(self) -> Any:
        """Return the next change, waiting up to ``max_await_time_ms``; None if none came."""
        self._signal.clear()
        event = self.delegate.take()
        if event is not None or not self.alive:
            return event
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._signal.wait(), timeout=self.delegate.wait_seconds)
        return self.delegate.take()

    async def next(self) -> Any:
        """Return the next change, waiting until one comes (StopAsyncIteration once closed)."""
        while self.alive:
            event = await self.try_next()
            if event is not None:
                return event
        raise StopAsyncIteration

    def __aiter__(self) -> AsyncEmbeddedChangeStream:
        return self

    async def __anext__(self) -> Any:
        return await self.next()

    async def close(self) -> None:
        """Close the stream."""
        self.delegate.close()

    async def __aenter__(self) -> AsyncEmbeddedChangeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncEmbeddedCollection:
    """An embedded collection with PyMongo's ``AsyncCollection`` surface."""

    def __init__(self, database: AsyncEmbeddedDatabase, collection: Any) -> None:
        self.database = database
        self.delegate = collection
        self.name: str = collection.name
        self.full_name: str = collection.full_name

    def __getattr__(self, name: str) -> Any:
        if name in _COLLECTION_COROUTINES:
            return _coroutine(getattr(self.delegate, name), name)
        if name in _COLLECTION_CURSORS:
            return _cursor_coroutine(getattr(self.delegate, name), name)
        if name.startswith("_"):
            raise AttributeError(name)
        # Sub-collections, as ``db.a.b`` in PyMongo.
        return AsyncEmbeddedCollection(self.database, self.delegate[name])

    def __getitem__(self, name: str) -> AsyncEmbeddedCollection:
        return AsyncEmbeddedCollection(self.database, self.delegate[name])

    def find(self, *args: Any, **kwargs: Any) -> AsyncEmbeddedCursor:
        """Return an async cursor (not awaited, as in PyMongo)."""
        return AsyncEmbeddedCursor(self.delegate.find(*args, **kwargs))

    def with_options(self, **kwargs: Any) -> AsyncEmbeddedCollection:
        """Return this collection with other options (codec, read and write concerns)."""
        return AsyncEmbeddedCollection(self.database, self.delegate.with_options(**kwargs))

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncEmbeddedChangeStream:
        """Open a change stream on this collection (``async for``, ``await try_next()``)."""
        return AsyncEmbeddedChangeStream(self.delegate.watch(*args, **kwargs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncEmbeddedCollection) and self.delegate == other.delegate

    def __hash__(self) -> int:
        return hash(self.full_name)

    def __repr__(self) -> str:
        return f"AsyncEmbeddedCollection({self.full_name!r})"


class AsyncEmbeddedDatabase:
    """An embedded database with PyMongo's ``AsyncDatabase`` surface."""

    def __init__(self, client: AsyncEmbeddedClient, database: Any) -> None:
        self.client = client
        self.delegate = database
        self.name: str = database.name

    def __getattr__(self, name: str) -> Any:
        if name in _DATABASE_COROUTINES:
            return _coroutine(getattr(self.delegate, name), name)
        if name in _DATABASE_CURSORS:
            return _cursor_coroutine(getattr(self.delegate, name), name)
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get_collection(name)

    def __getitem__(self, name: str) -> AsyncEmbeddedCollection:
        return self.get_collection(name)

    def get_collection(self, name: str, **kwargs: Any) -> AsyncEmbeddedCollection:
        """Return the async collection ``name``."""
        return AsyncEmbeddedCollection(self, self.delegate.get_collection(name, **kwargs))

    async def create_collection(self, name: str, **kwargs: Any) -> AsyncEmbeddedCollection:
        """Create ``name`` (validator and options as a server takes them)."""
        return AsyncEmbeddedCollection(self, self.delegate.create_collection(name, **kwargs))

    def with_options(self, **kwargs: Any) -> AsyncEmbeddedDatabase:
        """Return this database with other options."""
        return AsyncEmbeddedDatabase(self.client, self.delegate.with_options(**kwargs))

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncEmbeddedChangeStream:
        """Open a change stream on every collection of this database."""
        return AsyncEmbeddedChangeStream(self.delegate.watch(*args, **kwargs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncEmbeddedDatabase) and self.delegate == other.delegate

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"AsyncEmbeddedDatabase({self.name!r})"


class AsyncEmbeddedClient:
    """An embedded client with PyMongo's ``AsyncMongoClient`` surface.

    Built over a sync :class:`~nsn_store.embedded.client.EmbeddedClient`: both
    see the same data under the same lock, so sync and async code in one test
    share a database.
    """

    def __init__(self, sync_client: Any) -> None:
        self.delegate = sync_client

    def __getitem__(self, name: str) -> AsyncEmbeddedDatabase:
        return self.get_database(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get_database(name)

    def get_database(self, name: str | None = None, **kwargs: Any) -> AsyncEmbeddedDatabase:
        """Return the async database ``name`` (the client's default when None)."""
        database = (
            self.delegate.get_default_database(**kwargs)
            if name is None
            else self.delegate.get_database(name, **kwargs)
        )
        return AsyncEmbeddedDatabase(self, database)

    async def list_database_names(self) -> list[str]:
        """Return the names of the databases that hold collections."""
        return list(self.delegate.list_database_names())

    async def drop_database(self, name: str) -> None:
        """Drop the database ``name``."""
        self.delegate.drop_database(name)

    async def server_info(self) -> dict[str, Any]:
        """Return the embedded server's build info."""
        return dict(self.delegate.server_info())

    async def close(self) -> None:
        """Close the client (the sync client's store stays with it)."""

    async def __aenter__(self) -> AsyncEmbeddedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return "AsyncEmbeddedClient(embedded)"
