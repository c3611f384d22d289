"""The embedded database: a schema-aware, thread-safe mongomock.

``EmbeddedClient`` behaves like a MongoDB server where tests need it to:
validators enforced on every write, server error codes, atomic single-document
operations, ``_id`` lookups without scans and TTL expiry driven by a clock.
It is imported lazily so ``import nsn_store.embedded.validator`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmbeddedClient"]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedClient":
        from nsn_store.embedded.client import EmbeddedClient

        globals()[name] = EmbeddedClient
        return EmbeddedClient
    raise AttributeError(f"module 'nsn_store.embedded' has no attribute {name!r}")
