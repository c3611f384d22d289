"""The architecture, checked from the import graph: layers, one backend path, no cycles.

Edges are the imports a module makes when it is imported (module level, outside
``if TYPE_CHECKING:``); imports inside functions are deliberate laziness and
are checked only for mongomock.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import nsn_store

PACKAGE = Path(nsn_store.__file__).parent

#: Where mongomock may be imported: the adapter and the test helpers built on it.
MONGOMOCK_HOMES = ("nsn_store.embedded", "nsn_store.testing")

#: The one function that tells backends apart, and the one caller allowed to use it
#: (the CLI's approval prompt: an embedded target needs no human approval).
BACKEND_QUESTION = "is_embedded"
BACKEND_ASKERS = ("nsn_store.connection", "nsn_store.cli.schema")


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


MODULES = dict(_modules())


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield import statements; at module level, skip functions and TYPE_CHECKING blocks."""
    if not module_level:
        yield from (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
        return
    todo = list(getattr(tree, "body", []))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            todo += [n for handler in node.handlers for n in handler.body]


def _targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Yield the modules an import statement loads (a ``from pkg import submodule`` loads it)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        yield candidate if candidate in MODULES else base


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"))


def _graph() -> dict[str, set[str]]:
    """Module -> the nsn_store modules it imports at import time (ancestors excluded)."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        edges = set()
        for node in _imports(_tree(name), module_level=True):
            for target in _targets(node):
                if target in MODULES and not (name + ".").startswith(target + "."):
                    edges.add(target)
        graph[name] = edges - {name}
    return graph


def test_only_the_embedded_adapter_and_the_test_helpers_import_mongomock() -> None:
    offenders = sorted(
        name
        for name in MODULES
        if not name.startswith(MONGOMOCK_HOMES)
        for node in _imports(_tree(name), module_level=False)
        for target in _targets(node)
        if target.split(".")[0] in ("mongomock", "mongomock_motor")
    )
    assert offenders == []


def test_no_library_module_asks_which_backend_it_is_on() -> None:
    askers = sorted(
        name
        for name in MODULES
        if BACKEND_QUESTION in MODULES[name].read_text(encoding="utf-8")
        and not name.startswith("nsn_store.embedded")
    )
    assert set(askers) <= set(BACKEND_ASKERS), askers
    for name in MODULES:
        source = MODULES[name].read_text(encoding="utf-8")
        assert "_init_kwargs" not in source, name  # pymongo's private constructor record
        assert "_is_mongomock" not in source, name


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_foundation_modules_import_no_service() -> None:
    """errors, clock, _types and _flow sit under everything: they import no layer above."""
    foundation = ["nsn_store.errors", "nsn_store.clock", "nsn_store._types", "nsn_store._flow"]
    allowed = {*foundation, "nsn_store.masking", "nsn_store.arguments"}
    graph = _graph()
    for name in foundation:
        assert graph[name] <= allowed, (name, graph[name] - allowed)


def test_every_module_imports_on_its_own() -> None:
    """Each module can be the first one imported: no hidden order dependency."""
    for info in pkgutil.walk_packages(nsn_store.__path__, "nsn_store."):
        if info.name == "nsn_store.testing._plugin":
            continue  # a pytest plugin: pytest imports it
        importlib.import_module(info.name)


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def _twins() -> list[tuple[type, type]]:
    pairs = []
    for name in nsn_store.__all__:
        twin = f"Async{name}"
        if twin in nsn_store.__all__ and inspect.isclass(getattr(nsn_store, name)):
            pairs.append((getattr(nsn_store, name), getattr(nsn_store, twin)))
    return pairs


#: The services that talk to the database: each has an asyncio twin named Async<name>.
SERVICES = (
    "AIPreviews",
    "Aggregates",
    "RagDocuments",
    "Scheduler",
    "ShardedCounter",
    "TenantScope",
    "Worker",
)


@pytest.mark.parametrize("name", SERVICES)
def test_every_public_sync_service_has_an_async_twin(name: str) -> None:
    assert f"Async{name}" in nsn_store.__all__


@pytest.mark.parametrize(("sync_cls", "async_cls"), _twins(), ids=lambda cls: cls.__name__)
def test_an_async_twin_has_the_same_surface_as_its_sync_class(
    sync_cls: type, async_cls: type
) -> None:
    sync_methods = _public_methods(sync_cls)
    async_methods = _public_methods(async_cls)
    assert sorted(async_methods) == sorted(sync_methods)
    for name, signature in sync_methods.items():
        assert list(async_methods[name].parameters) == list(signature.parameters), name
