"""The public surface of the package: lazy, explicit, typed."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import nsn_store


def test_all_lists_every_lazy_export_once() -> None:
    assert len(nsn_store.__all__) == len(set(nsn_store.__all__))
    assert set(nsn_store.__all__) == set(nsn_store._EXPORTS)


@pytest.mark.parametrize("name", nsn_store.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(nsn_store, name)
    assert value is not None
    # It is the package's own object of that name, not a look-alike from elsewhere.
    assert getattr(value, "__module__", "").startswith("nsn_store."), value
    assert getattr(value, "__name__", name) == name


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        nsn_store.no_such_name  # noqa: B018


def test_import_does_not_pull_in_click_or_mongomock() -> None:
    code = (
        "import sys, nsn_store; "
        "print(sorted(m for m in ('click', 'mongomock') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_ships_py_typed() -> None:
    package_dir = Path(importlib.import_module("nsn_store").__file__ or "").parent
    assert (package_dir / "py.typed").is_file()


def test_every_error_derives_from_the_root() -> None:
    from nsn_store import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert classes and all(issubclass(c, errors.NsnStoreError) for c in classes)
