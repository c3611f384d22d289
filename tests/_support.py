"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import inspect
from typing import Any

from nsn_store.schema._registry import SCHEMA


def public_surface(cls: type) -> dict[str, inspect.Signature]:
    """Return the public methods of ``cls`` (inherited ones too) with their signatures."""
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def assert_async_twin(sync_cls: type, async_cls: type, *, plain: tuple[str, ...] = ()) -> None:
    """Assert the async class mirrors the sync one: same names, same signatures, and
    every method awaitable on the async side (except the ``plain`` ones) and not on
    the sync side."""
    sync, asynchronous = public_surface(sync_cls), public_surface(async_cls)
    assert sync == asynchronous
    for name in set(asynchronous) - set(plain):
        assert inspect.iscoroutinefunction(getattr(async_cls, name)), name
        assert not inspect.iscoroutinefunction(getattr(sync_cls, name)), name


async def init_schema_async(adb: Any, names: tuple[str, ...] | None = None) -> None:
    """Create the collections of SCHEMA (or ``names``) with validators and indexes, awaiting
    each call, so it works on mongomock-motor, Motor and PyMongo's async client alike."""
    for spec in SCHEMA:
        if names is None or spec.name in names:
            await adb.create_collection(spec.name, **spec.create_options())
            await adb[spec.name].create_indexes([i.to_index_model() for i in spec.indexes])
