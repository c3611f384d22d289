"""The async face of the embedded database: mongomock-motor with two gaps filled.

mongomock-motor returns the *sync* collection from ``await
db.create_collection(...)`` and a plain (not awaitable) ``list_collections``;
Motor and PyMongo's async client return an async collection and an awaitable
cursor. These subclasses close those gaps and nothing else.
"""

from __future__ import annotations

from typing import Any

from mongomock_motor import (
    AsyncCommandCursor,
    AsyncMongoMockClient,
    AsyncMongoMockCollection,
    AsyncMongoMockDatabase,
)


class AsyncEmbeddedDatabase(AsyncMongoMockDatabase):  # type: ignore[misc]
    """An async database over an :class:`~nsn_store.embedded.database.EmbeddedDatabase`."""

    async def create_collection(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Create ``name`` (with validation options) and return it as an async collection."""
        created = self.delegate.create_collection(name, *args, **kwargs)
        return AsyncMongoMockCollection(self, created)  # type: ignore[arg-type]

    async def list_collections(self, *args: Any, **kwargs: Any) -> Any:
        """Return an async cursor over the collection infos."""
        return AsyncCommandCursor(self.delegate.list_collections(*args, **kwargs))  # type: ignore[call-arg]


class AsyncEmbeddedClient(AsyncMongoMockClient):  # type: ignore[misc]
    """A mongomock-motor client whose databases are :class:`AsyncEmbeddedDatabase`."""

    def get_database(self, *args: Any, **kwargs: Any) -> AsyncEmbeddedDatabase:
        """Return the async database ``name``."""
        base = super().get_database(*args, **kwargs)
        return AsyncEmbeddedDatabase(self, base.delegate)
